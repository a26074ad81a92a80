//! Follows the node's decision log: prints each record to stdout with the Kubernetes node name
//! (so `kubectl logs` and any log pipeline see every decision) and counts it.
//!
//! Rotation by rename (`decisions.log` becomes `decisions.log.1` and the hook starts a new
//! `decisions.log`): the old file stays open and is read to its end, until it has been quiet for
//! [`ROTATION_GRACE`] (a hook that opened it just before the rename may still append one record),
//! then the file that followed it is read from its start: `decisions.log`, or, when more
//! rotations happened meanwhile, the rotated file one number below the old one's new name. Truncation in place (copytruncate) restarts at
//! offset 0. A missing log is waited for; any other failure (unreadable, a directory) marks the
//! follower down in `/metrics` and `/readyz` and is retried: the HTTP side keeps answering.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::status::Shared;

/// A log line longer than this is not a record pss-guard wrote; it is counted and dropped.
pub const MAX_LINE: usize = 1024 * 1024;
/// How long a renamed log must stay quiet before the follower moves to the new file.
pub const ROTATION_GRACE: Duration = Duration::from_secs(1);
/// Rotated files looked at when finding the one that followed a rotated file.
const MAX_ROTATED: u32 = 64;
/// Pause before following again after a failure.
const RETRY: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct FollowOptions {
    pub log: PathBuf,
    /// The Kubernetes node name (downward API); replaces the host name in printed records.
    pub node: Option<String>,
    /// Print and count the records already in the log, not only new ones.
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

/// Runs forever (on its own thread): follows, and after a failure records it and starts again.
pub fn run(opts: &FollowOptions, shared: &Shared) {
    let mut at_end = !opts.from_start;
    loop {
        // A bug must not leave `/metrics` claiming the follower is up: a panic is a failure too.
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            follow(opts, shared, &mut at_end)
        }))
        .unwrap_or_else(|_| Err(io::Error::other("the follower panicked")));
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

/// Follows the log from an open by path, and each file that followed it in rotation, until
/// the chain is lost (`Ok`: open by path again) or reading fails (`Err`).
fn follow(opts: &FollowOptions, shared: &Shared, at_end: &mut bool) -> io::Result<()> {
    let f = match File::open(&opts.log) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // No container has started since install: nothing to follow yet, nothing wrong.
            set_up(shared);
            *at_end = false;
            std::thread::sleep(opts.poll);
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let mut next = Some(f);
    while let Some(f) = next.take() {
        next = follow_file(f, opts, shared, at_end)?;
    }
    Ok(())
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

/// Reads one file to its end and on, until it has been rotated away and stayed quiet for the
/// grace period; returns the file that followed it, if known.
fn follow_file(
    f: File,
    opts: &FollowOptions,
    shared: &Shared,
    at_end: &mut bool,
) -> io::Result<Option<File>> {
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let id = (meta.dev(), meta.ino());
    let mut r = BufReader::new(f);
    let mut pos = if *at_end {
        r.seek(SeekFrom::End(0))?
    } else {
        0
    };
    *at_end = false;
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
                if skipping {
                    // The tail of an over-long line, already counted.
                } else if complete && buf.len() <= MAX_LINE {
                    emit(&buf, opts, shared);
                } else {
                    shared.metrics().unparsed();
                }
                skipping = !complete;
                buf.clear();
            }
            continue;
        }
        if let Some(t) = rotated {
            if t.elapsed() >= ROTATION_GRACE {
                if !buf.is_empty() && !skipping {
                    // A record cut off at the end of a rotated file: never completed.
                    shared.metrics().unparsed();
                }
                return Ok(successor(&opts.log, id));
            }
            std::thread::sleep(opts.poll);
            continue;
        }
        match std::fs::metadata(&opts.log) {
            Ok(m) if (m.dev(), m.ino()) == id => {
                if m.len() < pos {
                    shared.status().follower.truncations += 1;
                    pos = r.seek(SeekFrom::Start(0))?;
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
