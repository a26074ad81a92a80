//! The node's decision log: one JSON object per decision, appended with a single `write(2)` to a
//! file opened with `O_APPEND`, so concurrent hooks never interleave or lose records.
//!
//! Records carry names, IDs, the violated checks and every evaluated check's outcome (`checks`:
//! pass, fail, not observable with why, covered by which check); never environment values,
//! arguments or annotation values, which can hold secrets. Each record starts with `"schema"`, the version of
//! the record format ([`SCHEMA_VERSION`]), so log pipelines can tell formats apart.
//!
//! Rotation by size, done by the hook that finds the file over the limit after its own append:
//! the rotating hook holds a non-blocking `flock` on `<log>.lock` (a hook that cannot get it
//! skips rotation: another one is doing it, and no hook ever waits), re-checks under the lock
//! that the path still names the file it measured, shifts `<log>.1 .. <log>.N-1` up by one and
//! renames `<log>` to `<log>.1`. A rename moves the inode, so a hook that opened the file before
//! the rename still appends its whole record to it, now `<log>.1`; the next hook creates a
//! fresh `<log>`. Records are dropped only by retention: the file shifted past `<log>.N`.

use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use serde::Serialize;

use crate::report::{ChecksJson, Decision, Kind, ViolationJson, checks_json, violations_json};

/// The version of the record format: bumped when a field changes meaning or goes away.
pub const SCHEMA_VERSION: u32 = 1;

/// When to rotate the decision log and how many rotated files to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate once the file is larger than this.
    pub max_bytes: u64,
    /// Rotated files kept (`<log>.1` .. `<log>.keep`).
    pub keep: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_bytes: 10 * 1024 * 1024,
            keep: 5,
        }
    }
}

#[derive(Serialize)]
struct Record<'a> {
    schema: u32,
    time: String,
    node: &'a str,
    decision: Kind,
    /// Only in observe mode: `"observe"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<&'static str>,
    container_id: &'a str,
    container: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod_uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<&'a str>,
    policy: String,
    violations: Vec<ViolationJson<'a>>,
    /// Every check of the enforced level and its outcome (absent when nothing was evaluated).
    #[serde(skip_serializing_if = "Option::is_none")]
    checks: Option<ChecksJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    audit_policy: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    audit_violations: Vec<ViolationJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warn_policy: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warn_violations: Vec<ViolationJson<'a>>,
    /// Where the modes came from: node defaults, namespace labels, command line.
    policy_from: &'static str,
    /// The version `latest` (and any version above it) was evaluated at, and why that one.
    latest: String,
    latest_from: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    notes: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    cri_view: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exempt: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy_error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'a str>,
    eval_us: u64,
}

/// The record as one line, newline included.
pub fn render(d: &Decision, node: &str, time: String) -> Vec<u8> {
    let kube = d.identity.kube.as_ref();
    let rec = Record {
        schema: SCHEMA_VERSION,
        time,
        node,
        decision: d.kind(),
        mode: (d.mode == crate::config::Mode::Observe).then_some("observe"),
        container_id: &d.identity.container_id,
        container: d.identity.container_name(),
        namespace: kube.map(|k| k.namespace.as_str()),
        pod: kube.map(|k| k.pod.as_str()),
        pod_uid: kube.and_then(|k| k.pod_uid.as_deref()),
        image: kube.and_then(|k| k.image.as_deref()),
        policy: d.modes.enforce.to_string(),
        violations: d.report().map(violations_json).unwrap_or_default(),
        checks: d.report().map(checks_json),
        audit_policy: d.audit().map(|a| a.policy.to_string()),
        audit_violations: d.audit().map(violations_json).unwrap_or_default(),
        warn_policy: d.warn().map(|w| w.policy.to_string()),
        warn_violations: d.warn().map(violations_json).unwrap_or_default(),
        policy_from: d.policy_from.as_str(),
        latest: format!("v1.{}", d.latest.minor),
        latest_from: &d.latest.from,
        notes: &d.notes,
        cri_view: d.cri_view.as_deref(),
        exempt: d.exempt(),
        error: d.error(),
        policy_error: d.policy_error.as_deref(),
        note: d.identity.note.as_deref(),
        eval_us: d.eval_us,
    };
    let mut line = serde_json::to_vec(&rec).unwrap_or_else(|_| b"{}".to_vec());
    line.push(b'\n');
    line
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("creating log directory {0:?}")]
    Dir(std::path::PathBuf, #[source] io::Error),
    #[error("opening decision log {0:?}")]
    Open(std::path::PathBuf, #[source] io::Error),
    #[error("decision log {0:?} is not a regular file")]
    NotRegular(std::path::PathBuf),
    #[error("writing decision log {0:?}")]
    Write(std::path::PathBuf, #[source] io::Error),
    #[error("short write to decision log {0:?} ({1} of {2} bytes)")]
    Short(std::path::PathBuf, usize, usize),
}

/// Appends one record, then rotates the file if it has grown past `rotation.max_bytes`. A
/// rotation that fails is not an error of the append: the record is written, and the next hook
/// tries again.
pub fn append_rotating(path: &Path, line: &[u8], rotation: Rotation) -> Result<(), LogError> {
    let f = append_file(path, line)?;
    if f.metadata().is_ok_and(|m| m.len() > rotation.max_bytes) {
        let _ = rotate(path, &f, rotation);
    }
    Ok(())
}

/// Appends one record. The file is created 0640 and never opened through a symlink or as a
/// FIFO (which would block the hook until a reader came).
pub fn append(path: &Path, line: &[u8]) -> Result<(), LogError> {
    append_file(path, line).map(drop)
}

fn append_file(path: &Path, line: &[u8]) -> Result<std::fs::File, LogError> {
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        // Concurrent hooks race to create it: another one winning is success.
        match std::fs::DirBuilder::new().mode(0o750).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(LogError::Dir(dir.to_owned(), e)),
        }
    }
    let f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| LogError::Open(path.to_owned(), e))?;
    let meta = f
        .metadata()
        .map_err(|e| LogError::Open(path.to_owned(), e))?;
    if !meta.file_type().is_file() {
        return Err(LogError::NotRegular(path.to_owned()));
    }
    // One write(2): O_APPEND makes the offset update and the write one atomic step.
    let n = nix::unistd::write(&f, line)
        .map_err(|e| LogError::Write(path.to_owned(), io::Error::from(e)))?;
    if n != line.len() {
        return Err(LogError::Short(path.to_owned(), n, line.len()));
    }
    Ok(f)
}

/// `<log>.<n>`.
pub fn rotated_path(path: &Path, n: u32) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    s.into()
}

/// Rotates `path` if it still names `written` (the file this hook appended to). Returns whether
/// it rotated.
fn rotate(path: &Path, written: &std::fs::File, rotation: Rotation) -> io::Result<bool> {
    use nix::fcntl::{Flock, FlockArg};
    use std::os::unix::fs::MetadataExt;
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(rotated_lock_path(path))?;
    // Never wait: a hook that cannot lock leaves rotation to the one holding the lock.
    let _guard = match Flock::lock(lock, FlockArg::LockExclusiveNonblock) {
        Ok(g) => g,
        Err(_) => return Ok(false),
    };
    let mine = written.metadata()?;
    let now = std::fs::symlink_metadata(path)?;
    // Another hook rotated between our append and the lock: the path is a new, small file.
    if now.ino() != mine.ino() || now.dev() != mine.dev() || now.len() <= rotation.max_bytes {
        return Ok(false);
    }
    let keep = rotation.keep.max(1);
    for n in (1..keep).rev() {
        match std::fs::rename(rotated_path(path, n), rotated_path(path, n + 1)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    std::fs::rename(path, rotated_path(path, 1))?;
    Ok(true)
}

fn rotated_lock_path(path: &Path) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".lock");
    s.into()
}

/// The node name for records: the policy's, else the host name.
pub fn node_name(configured: Option<&str>) -> String {
    if let Some(n) = configured {
        return n.to_owned();
    }
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_file_0640_and_appends_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/decisions.log");
        append(&p, b"{\"a\":1}\n").unwrap();
        append(&p, b"{\"a\":2}\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n"
        );
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o007, 0, "world bits set: {mode:o}");
        let dmode = std::fs::metadata(p.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dmode & 0o002, 0);
    }

    #[test]
    fn racing_writers_that_all_create_the_directory_lose_no_record() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("new-dir/decisions.log");
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let p = p.clone();
                std::thread::spawn(move || append(&p, format!("{{\"n\":{i}}}\n").as_bytes()))
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        assert_eq!(std::fs::read_to_string(&p).unwrap().lines().count(), 16);
    }

    #[test]
    fn rotation_shifts_files_and_keeps_every_record() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("decisions.log");
        let rot = Rotation {
            max_bytes: 100,
            keep: 100,
        };
        for i in 0..50 {
            append_rotating(&p, format!("{{\"n\":{i:04}}}\n").as_bytes(), rot).unwrap();
        }
        let mut all = Vec::new();
        for n in (1..=100).rev() {
            if let Ok(t) = std::fs::read_to_string(rotated_path(&p, n)) {
                assert!(t.len() as u64 <= 100 + 11, "{n}: {t:?}");
                all.extend(t.lines().map(str::to_owned));
            }
        }
        let current = std::fs::read_to_string(&p).unwrap_or_default();
        all.extend(current.lines().map(str::to_owned));
        let want: Vec<String> = (0..50).map(|i| format!("{{\"n\":{i:04}}}")).collect();
        assert_eq!(all, want, "oldest file first, every record once");
        assert!(rotated_path(&p, 2).exists());
    }

    #[test]
    fn rotation_keeps_only_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("decisions.log");
        let rot = Rotation {
            max_bytes: 10,
            keep: 2,
        };
        for i in 0..10 {
            append_rotating(&p, format!("{{\"n\":{i:04}}}\n").as_bytes(), rot).unwrap();
        }
        assert!(rotated_path(&p, 2).exists());
        assert!(!rotated_path(&p, 3).exists());
        assert_eq!(
            std::fs::read_to_string(rotated_path(&p, 1)).unwrap(),
            "{\"n\":0009}\n"
        );
    }

    #[test]
    fn refuses_symlink_and_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "").unwrap();
        let link = dir.path().join("link.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(append(&link, b"x\n").is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "");
        let fifo = dir.path().join("fifo.log");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(append(&fifo, b"x\n").is_err());
    }
}
