//! Follows the node's decision log: prints each record to stdout with the Kubernetes node name
//! (so `kubectl logs` and any log pipeline see every decision) and counts it.
//!
//! Where it starts: at the position the last run saved on the host ([`crate::position`]), so a
//! restarted agent prints every record once: the same file from its offset; a file rotated away
//! meanwhile (found among `decisions.log.N` by inode and fingerprint) from its offset, then each
//! file that followed it; a file truncated below the offset from 0. Without a saved position (a
//! fresh node) the current log is read from its start, or, when it is larger than
//! [`FRESH_LIMIT`], from the first line of its last [`FRESH_LIMIT`] bytes (said on stderr).
//! `--from-start` ignores the saved position and reads the current log from its start.
//!
//! Rotation by rename (`decisions.log` becomes `decisions.log.1` and the hook starts a new
//! `decisions.log`): the old file stays open and is read to its end, until it has been quiet for
//! [`ROTATION_GRACE`] (a hook that opened it just before the rename may still append one record),
//! then the file that followed it is read from its start: `decisions.log`, or, when more
//! rotations happened meanwhile, the rotated file one number below the old one's new name.
//! Truncation in place (copytruncate) restarts at offset 0. A missing log is waited for; any
//! other failure (unreadable, a directory) marks the follower down in `/metrics` and `/readyz`
//! and is retried from the position reached: the HTTP side keeps answering.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::position::{Cursor, HEAD, Head, Position};
use crate::status::Shared;

/// A log line longer than this is not a record pss-guard wrote; it is counted and dropped.
pub const MAX_LINE: usize = 1024 * 1024;
/// How long a renamed log must stay quiet before the follower moves to the new file.
pub const ROTATION_GRACE: Duration = Duration::from_secs(1);
/// Rotated files looked at when finding the one that followed a rotated file, or the file of a
/// saved position.
const MAX_ROTATED: u32 = 64;
/// Without a saved position, at most this much of the current log is read: the hook rotates at
/// 10 MiB by default (`[log] max_bytes`), so the whole file unless rotation was made larger.
pub const FRESH_LIMIT: u64 = 16 * 1024 * 1024;
/// Pause before following again after a failure.
const RETRY: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct FollowOptions {
    pub log: PathBuf,
    /// The Kubernetes node name (downward API); replaces the host name in printed records.
    pub node: Option<String>,
    /// Ignore the saved position: print and count the current log from its start.
    pub from_start: bool,
    pub poll: Duration,
}

/// Handles one complete log line: counts it and returns what to print.
pub fn process_line(line: &[u8], node: Option<&str>, shared: &Shared) -> Option<String> {
    let line = String::from_utf8_lossy(line);
    let line = line.trim_end();
    if line.is_empty() {
        return None;
    }
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(mut rec)) => {
            if let Some(n) = node {
                rec.insert("node".into(), Value::String(n.to_owned()));
            }
            let rec = Value::Object(rec);
            shared.metrics().observe(&rec);
            shared.publish(&rec);
            serde_json::to_string(&rec).ok()
        }
        _ => {
            shared.metrics().unparsed();
            None
        }
    }
}

/// Where following starts when the log is opened by path.
#[derive(Debug)]
enum Start {
    /// A position (saved by an earlier run, or reached by this one): its file, found by inode
    /// and fingerprint among the log and its rotated files, from its offset.
    At(Position),
    /// No saved position (a fresh node): the current log from its start, or its last
    /// [`FRESH_LIMIT`] bytes.
    Fresh,
    /// `--from-start`: the current log from its start.
    Beginning,
}

/// Runs forever (on its own thread): follows, and after a failure records it and starts again
/// from the position reached.
pub fn run(opts: &FollowOptions, shared: &Shared, cursor: &Cursor) {
    let mut start = if opts.from_start {
        Start::Beginning
    } else {
        match cursor.load() {
            Ok(Some(p)) => Start::At(p),
            Ok(None) => Start::Fresh,
            Err(e) => {
                eprintln!("pss-guard-agent: {e}; starting as on a fresh node");
                Start::Fresh
            }
        }
    };
    loop {
        // A bug must not leave `/metrics` claiming the follower is up: a panic is a failure too.
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            follow(opts, shared, cursor, &start)
        }))
        .unwrap_or_else(|_| Err(io::Error::other("the follower panicked")));
        if let Some(p) = cursor.current() {
            start = Start::At(p);
        }
        if let Err(e) = res {
            let msg = format!("following {}: {e}", opts.log.display());
            eprintln!("pss-guard-agent: {msg}");
            let mut st = shared.status();
            st.follower.up = false;
            st.follower.errors += 1;
            st.follower.last_error = Some(msg);
            drop(st);
            std::thread::sleep(RETRY);
        }
    }
}

fn set_up(shared: &Shared) {
    let mut st = shared.status();
    st.follower.up = true;
    st.follower.last_error = None;
}

fn emit(line: &[u8], opts: &FollowOptions, shared: &Shared) {
    if let Some(out) = process_line(line, opts.node.as_deref(), shared) {
        let mut so = io::stdout().lock();
        // A closed stdout must not stop the counting.
        let _ = writeln!(so, "{out}");
        let _ = so.flush();
    }
}

/// Follows the log from where `start` says, and each file that followed it in rotation, until
/// the chain is lost (`Ok`: start again from the position reached) or reading fails (`Err`).
fn follow(opts: &FollowOptions, shared: &Shared, cursor: &Cursor, start: &Start) -> io::Result<()> {
    let Some((f, offset)) = open_start(opts, shared, start)? else {
        // No container has started since install: nothing to follow yet, nothing wrong.
        set_up(shared);
        std::thread::sleep(opts.poll);
        return Ok(());
    };
    let mut next = Some((f, offset));
    while let Some((f, offset)) = next.take() {
        next = follow_file(f, offset, opts, shared, cursor)?.map(|f| (f, 0));
    }
    Ok(())
}

/// `File::open`, with a missing file as `None`.
fn open_if_there(path: &Path) -> io::Result<Option<File>> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// What became of the file a position names.
enum Found {
    /// The log or one of its rotated files, with the position's inode and first bytes (and
    /// device, when the position has no fingerprint yet: an empty file; the device alone may
    /// change across a reboot), at least as long as the offset.
    Same(File),
    /// The log still has the position's device and inode but is shorter than the offset, or
    /// starts otherwise: truncated in place (and written again).
    Truncated(File),
    Gone,
}

fn find(log: &Path, p: &Position) -> io::Result<Found> {
    for n in 0..=MAX_ROTATED {
        let path = if n == 0 {
            log.to_path_buf()
        } else {
            rotated_path(log, n)
        };
        let Some(f) = open_if_there(&path)? else {
            if n == 0 {
                continue;
            }
            return Ok(Found::Gone);
        };
        let m = f.metadata()?;
        if !m.is_file() || m.ino() != p.ino {
            continue;
        }
        let same_dev = m.dev() == p.dev;
        if (p.head.len > 0 || same_dev) && p.head.matches(&f) && m.len() >= p.offset {
            return Ok(Found::Same(f));
        }
        if n == 0 && same_dev {
            return Ok(Found::Truncated(f));
        }
    }
    Ok(Found::Gone)
}

/// The offset of the first line that starts at or after `from`.
fn first_line_at_or_after(f: &File, from: u64) -> io::Result<u64> {
    if from == 0 {
        return Ok(0);
    }
    // A line starts at `from` when the byte before it ends one.
    let mut at = from - 1;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read_at(&mut buf, at)?;
        if n == 0 {
            return Ok(at);
        }
        if let Some(i) = buf[..n].iter().position(|b| *b == b'\n') {
            return Ok(at + i as u64 + 1);
        }
        at += n as u64;
    }
}

/// The file and offset following starts at; `None` while there is nothing to follow yet.
fn open_start(
    opts: &FollowOptions,
    shared: &Shared,
    start: &Start,
) -> io::Result<Option<(File, u64)>> {
    let log = &opts.log;
    match start {
        Start::At(p) => {
            match find(log, p)? {
                Found::Same(f) => return Ok(Some((f, p.offset))),
                Found::Truncated(f) => {
                    eprintln!(
                        "pss-guard-agent: {} was truncated below the position ({}): reading it from its start",
                        log.display(),
                        p.offset
                    );
                    shared.status().follower.truncations += 1;
                    return Ok(Some((f, 0)));
                }
                Found::Gone => {}
            }
            let Some(f) = open_if_there(log)? else {
                return Ok(None);
            };
            eprintln!(
                "pss-guard-agent: the file of the log position (inode {}, offset {}) is no longer {} or one of its rotated files: reading {} from its start",
                p.ino,
                p.offset,
                log.display(),
                log.display()
            );
            Ok(Some((f, 0)))
        }
        Start::Beginning => Ok(open_if_there(log)?.map(|f| (f, 0))),
        Start::Fresh => {
            let Some(f) = open_if_there(log)? else {
                return Ok(None);
            };
            let len = f.metadata()?.len();
            if len <= FRESH_LIMIT {
                return Ok(Some((f, 0)));
            }
            let off = first_line_at_or_after(&f, len - FRESH_LIMIT)?;
            eprintln!(
                "pss-guard-agent: no saved log position and {} is {len} bytes, more than {FRESH_LIMIT}: starting at offset {off}, the first record of its last {} MiB",
                log.display(),
                FRESH_LIMIT / (1024 * 1024)
            );
            Ok(Some((f, off)))
        }
    }
}

/// `<log>.<n>`, the name the hook's rotation gives the n-th newest rotated file.
fn rotated_path(log: &Path, n: u32) -> PathBuf {
    let mut s = log.as_os_str().to_owned();
    s.push(format!(".{n}"));
    s.into()
}

/// The file that came after `id` in rotation: rotation shifts `<log>.1 .. <log>.N-1` up by one
/// and renames `<log>` to `<log>.1`, so if `id` is now `<log>.k`, its successor is `<log>.k-1`
/// (or `<log>` for k = 1). Every candidate is opened before it is matched, so a rotation during
/// the scan cannot hand over the wrong file; `None` when `id` is not found (then the caller
/// opens `<log>` by path, and files rotated in between are skipped).
fn successor(log: &Path, id: (u64, u64)) -> Option<File> {
    let mut newer: Option<File> = None;
    for n in 0..=MAX_ROTATED {
        let path = if n == 0 {
            log.to_path_buf()
        } else {
            rotated_path(log, n)
        };
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(_) if n == 0 => continue,
            Err(_) => return None,
        };
        let m = f.metadata().ok()?;
        if (m.dev(), m.ino()) == id {
            return newer;
        }
        newer = Some(f);
    }
    None
}

/// Reads one file from `offset` to its end and on, until it has been rotated away and stayed
/// quiet for the grace period; returns the file that followed it, if known.
fn follow_file(
    f: File,
    offset: u64,
    opts: &FollowOptions,
    shared: &Shared,
    cursor: &Cursor,
) -> io::Result<Option<File>> {
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let id = (meta.dev(), meta.ino());
    let mut r = BufReader::new(f);
    let mut pos = r.seek(SeekFrom::Start(offset))?;
    let mut head = Head::read(r.get_ref(), pos).unwrap_or_default();
    let at = |offset: u64, head: Head| Position {
        dev: id.0,
        ino: id.1,
        offset,
        head,
    };
    cursor.advance(at(pos, head), || {});
    set_up(shared);
    let mut buf = Vec::new();
    let mut skipping = false;
    let mut rotated: Option<Instant> = None;
    loop {
        let limit = (MAX_LINE + 1).saturating_sub(buf.len()) as u64;
        let n = (&mut r).take(limit).read_until(b'\n', &mut buf)?;
        if n > 0 {
            pos += n as u64;
            if rotated.is_some() {
                rotated = Some(Instant::now());
            }
            let complete = buf.last() == Some(&b'\n');
            if complete || buf.len() > MAX_LINE {
                if complete {
                    if head.len < HEAD.min(pos)
                        && let Some(h) = Head::read(r.get_ref(), pos)
                    {
                        head = h;
                    }
                    // The line is printed (or dropped) and the position moved past it in one
                    // step: a position saved on SIGTERM never names a record twice.
                    cursor.advance(at(pos, head), || {
                        if skipping {
                            // The tail of an over-long line, already counted.
                        } else if buf.len() <= MAX_LINE {
                            emit(&buf, opts, shared);
                        } else {
                            shared.metrics().unparsed();
                        }
                    });
                } else if !skipping {
                    shared.metrics().unparsed();
                }
                skipping = !complete;
                buf.clear();
                cursor.save_if_due(shared);
            }
            continue;
        }
        cursor.save_if_due(shared);
        if let Some(t) = rotated {
            if t.elapsed() >= ROTATION_GRACE {
                if !buf.is_empty() && !skipping {
                    // A record cut off at the end of a rotated file: never completed.
                    shared.metrics().unparsed();
                }
                match successor(&opts.log, id) {
                    Some(f) => return Ok(Some(f)),
                    // Renamed, and the hook has not created the new log yet: wait for it.
                    None if open_if_there(&opts.log)?.is_none() => {
                        std::thread::sleep(opts.poll);
                        continue;
                    }
                    None => return Ok(None),
                }
            }
            std::thread::sleep(opts.poll);
            continue;
        }
        match std::fs::metadata(&opts.log) {
            Ok(m) if (m.dev(), m.ino()) == id => {
                if m.len() < pos {
                    shared.status().follower.truncations += 1;
                    pos = r.seek(SeekFrom::Start(0))?;
                    head = Head::read(r.get_ref(), 0).unwrap_or_default();
                    cursor.advance(at(pos, head), || {});
                    buf.clear();
                    skipping = false;
                } else {
                    std::thread::sleep(opts.poll);
                }
            }
            Ok(_) => {
                shared.status().follower.rotations += 1;
                rotated = Some(Instant::now());
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                shared.status().follower.rotations += 1;
                rotated = Some(Instant::now());
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_line_sets_the_node_and_counts() {
        let shared = Shared::new(None, false, false, false);
        let line = br#"{"decision":"refused","namespace":"default","node":"host","new_field":[1]}"#;
        let out = process_line(line, Some("node-1"), &shared).unwrap_or_default();
        assert!(out.contains("\"node\":\"node-1\""), "{out}");
        assert!(out.contains("\"new_field\":[1]"), "{out}");
        assert!(process_line(b"not json\n", None, &shared).is_none());
        assert!(process_line(b"[1]\n", None, &shared).is_none());
        assert!(process_line(b"\n", None, &shared).is_none());
        let mut text = String::new();
        shared.metrics().render(&mut text);
        assert!(text.contains("pss_guard_log_unparsed_total 2"), "{text}");
        assert!(text.contains("pss_guard_log_lines_total 3"), "{text}");
    }
}
