//! The follower's read position in the decision log, kept on the host
//! (`/var/lib/pss-guard/log-position`), so that an agent that restarts (a rollout, an eviction,
//! a node reboot) carries on where the last one stopped: every record reaches stdout and the
//! metrics once.
//!
//! A position names a file by device and inode, and a byte offset in it that is always at the
//! end of a complete line. Inode numbers are reused once a file is deleted, so it also carries a
//! fingerprint of the file's first bytes (up to [`HEAD`], never past the offset): bytes the hook
//! has appended never change, so the file it was taken from still matches, and a new file that
//! got the old number does not (its first record has another time and container).
//!
//! Printing a record and moving the position happen under one lock ([`Cursor::advance`]); the
//! position is written (temp file, fsync, rename, fsync of the directory) at most once per
//! [`SAVE_INTERVAL`] while it moves, and once more when the agent stops on SIGTERM
//! ([`Cursor::save_now`], under the same lock, so the file names exactly the last record
//! printed). A clean restart repeats nothing and loses nothing; a crash (SIGKILL, OOM kill, power
//! loss) repeats the records printed since the last save, at most [`SAVE_INTERVAL`]'s worth.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::fsutil;
use crate::status::Shared;

/// Bytes at the start of a file that identify it together with its inode.
pub const HEAD: u64 = 256;
/// A moving position is written at most this often.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// The position file's format version.
const SCHEMA: u32 = 1;

/// A fingerprint of a file's first `len` bytes (FNV-1a, 64 bits): enough to tell two decision
/// logs apart, whose first record differ in time and container; not a defence against a
/// writer that forges the log (the log directory is root's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub len: u64,
    pub fnv: u64,
}

impl Head {
    fn of(bytes: &[u8]) -> Head {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Head {
            len: bytes.len() as u64,
            fnv: h,
        }
    }

    /// The fingerprint of `f`'s first `min(HEAD, upto)` bytes; `None` when it is shorter.
    pub fn read(f: &File, upto: u64) -> Option<Head> {
        let want = usize::try_from(upto.min(HEAD)).ok()?;
        let mut buf = vec![0u8; want];
        let mut got = 0;
        while got < want {
            match f.read_at(&mut buf[got..], got as u64) {
                Ok(0) => return None,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
        Some(Head::of(&buf))
    }

    /// Whether `f` starts with the bytes this fingerprint was taken from.
    pub fn matches(&self, f: &File) -> bool {
        self.len == 0 || Head::read(f, self.len).is_some_and(|h| h == *self)
    }
}

/// Where the follower is: after the last complete line it handled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
    pub head: Head,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    schema: u32,
    /// The log path the agent followed, as it was given; a position for another log is not used.
    log: PathBuf,
    dev: u64,
    ino: u64,
    offset: u64,
    head_len: u64,
    head_fnv: String,
}

#[derive(Default)]
struct State {
    at: Option<Position>,
    saved: Option<Position>,
    last_save: Option<Instant>,
    last_error: Option<String>,
}

/// The position shared by the follower thread (which moves it) and the SIGTERM handler (which
/// saves it one last time).
pub struct Cursor {
    file: Option<PathBuf>,
    log: PathBuf,
    state: Mutex<State>,
}

impl Cursor {
    /// `file`: where the position is kept (`None`: in memory only).
    pub fn new(file: Option<PathBuf>, log: PathBuf) -> Cursor {
        Cursor {
            file,
            log,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The position file, if any, when it exists and names this log; an unreadable or foreign
    /// one is `Err` with the reason (the caller then starts as on a fresh node).
    pub fn load(&self) -> Result<Option<Position>, String> {
        let Some(file) = &self.file else {
            return Ok(None);
        };
        let bytes = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("reading {}: {e}", file.display())),
        };
        let s: Saved = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{}: not a position file: {e}", file.display()))?;
        if s.schema != SCHEMA {
            return Err(format!(
                "{}: schema {}, this agent reads {SCHEMA}",
                file.display(),
                s.schema
            ));
        }
        if s.log != self.log {
            return Err(format!(
                "{} is a position in {}, not in {}",
                file.display(),
                s.log.display(),
                self.log.display()
            ));
        }
        let fnv = u64::from_str_radix(&s.head_fnv, 16)
            .map_err(|e| format!("{}: head_fnv: {e}", file.display()))?;
        let p = Position {
            dev: s.dev,
            ino: s.ino,
            offset: s.offset,
            head: Head {
                len: s.head_len,
                fnv,
            },
        };
        if p.head.len > p.offset.min(HEAD) {
            return Err(format!("{}: head_len past the offset", file.display()));
        }
        let mut st = self.lock();
        st.saved = Some(p.clone());
        Ok(Some(p))
    }

    /// The position reached so far in this run.
    pub fn current(&self) -> Option<Position> {
        self.lock().at.clone()
    }

    /// Runs `print` (which prints or drops one line) and moves the position to `to`, as one
    /// step as far as [`Cursor::save_now`] is concerned.
    pub fn advance(&self, to: Position, print: impl FnOnce()) {
        let mut st = self.lock();
        print();
        st.at = Some(to);
    }

    /// Writes the position if it moved and the last write is [`SAVE_INTERVAL`] old.
    pub fn save_if_due(&self, shared: &Shared) {
        let mut st = self.lock();
        if st.at == st.saved || st.last_save.is_some_and(|t| t.elapsed() < SAVE_INTERVAL) {
            return;
        }
        self.save(&mut st, shared);
    }

    /// Writes the position if it moved and ends the process (SIGTERM), still holding the lock:
    /// no record is printed after the position that was written.
    pub fn save_and_exit(&self, shared: &Shared) -> ! {
        let mut st = self.lock();
        if st.at != st.saved {
            self.save(&mut st, shared);
        }
        std::process::exit(0)
    }

    /// Writes the position now if it moved.
    pub fn save_now(&self, shared: &Shared) {
        let mut st = self.lock();
        if st.at != st.saved {
            self.save(&mut st, shared);
        }
    }

    fn save(&self, st: &mut State, shared: &Shared) {
        let (Some(file), Some(p)) = (&self.file, st.at.clone()) else {
            return;
        };
        st.last_save = Some(Instant::now());
        let s = Saved {
            schema: SCHEMA,
            log: self.log.clone(),
            dev: p.dev,
            ino: p.ino,
            offset: p.offset,
            head_len: p.head.len,
            head_fnv: format!("{:016x}", p.head.fnv),
        };
        let mut bytes = serde_json::to_vec(&s).unwrap_or_default();
        bytes.push(b'\n');
        match fsutil::write_atomic(file, &bytes, 0o644) {
            Ok(()) => {
                st.saved = Some(p);
                st.last_error = None;
            }
            Err(e) => {
                let msg = format!("saving the log position to {}: {e}", file.display());
                if st.last_error.as_deref() != Some(msg.as_str()) {
                    eprintln!("pss-guard-agent: {msg}");
                }
                st.last_error = Some(msg);
                shared.status().follower.position_errors += 1;
            }
        }
    }
}

/// The default position file under the host root.
pub fn default_path(host_root: &Path) -> PathBuf {
    host_root.join("var/lib/pss-guard/log-position")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_position_loads_back_and_a_foreign_one_does_not() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("state/log-position");
        let log = dir.path().join("decisions.log");
        std::fs::write(&log, "{\"a\":1}\n").unwrap_or_else(|e| panic!("{e}"));
        let shared = Shared::new(None, false, false, false);
        let c = Cursor::new(Some(file.clone()), log.clone());
        assert_eq!(c.load(), Ok(None));
        let f = File::open(&log).unwrap_or_else(|e| panic!("{e}"));
        let head = Head::read(&f, 8).unwrap_or_default();
        assert_eq!(head.len, 8);
        assert!(head.matches(&f));
        let p = Position {
            dev: 1,
            ino: 2,
            offset: 8,
            head,
        };
        c.advance(p.clone(), || {});
        c.save_if_due(&shared);
        // Not moved since: nothing to write, and not yet due either.
        c.save_now(&shared);
        let again = Cursor::new(Some(file.clone()), log.clone());
        assert_eq!(again.load(), Ok(Some(p)));
        let other = Cursor::new(Some(file.clone()), dir.path().join("other.log"));
        assert!(other.load().is_err());
        std::fs::write(&file, "{").unwrap_or_else(|e| panic!("{e}"));
        assert!(again.load().is_err());
        // A file that starts otherwise does not match the fingerprint.
        std::fs::write(&log, "{\"a\":2}\n").unwrap_or_else(|e| panic!("{e}"));
        let f = File::open(&log).unwrap_or_else(|e| panic!("{e}"));
        assert!(!head.matches(&f));
        assert_eq!(Head::read(&f, 1000), None);
    }
}
