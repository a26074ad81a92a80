//! The node's decision log: one JSON object per decision, appended with a single `write(2)` to a
//! file opened with `O_APPEND`, so concurrent hooks never interleave or lose records.
//!
//! Records carry names, IDs and the violated checks; never environment values, arguments or
//! annotation values, which can hold secrets.

use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use serde::Serialize;

use crate::report::{Decision, Kind, ViolationJson, violations_json};

#[derive(Serialize)]
struct Record<'a> {
    time: String,
    node: &'a str,
    decision: Kind,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    audit_policy: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    audit_violations: Vec<ViolationJson<'a>>,
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
        time,
        node,
        decision: d.kind(),
        container_id: &d.identity.container_id,
        container: d.identity.container_name(),
        namespace: kube.map(|k| k.namespace.as_str()),
        pod: kube.map(|k| k.pod.as_str()),
        pod_uid: kube.and_then(|k| k.pod_uid.as_deref()),
        image: kube.and_then(|k| k.image.as_deref()),
        policy: d.enforce.to_string(),
        violations: d.report().map(violations_json).unwrap_or_default(),
        audit_policy: d.audit().map(|a| a.policy.to_string()),
        audit_violations: d.audit().map(violations_json).unwrap_or_default(),
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

/// Appends one record. The file is created 0640 and never opened through a symlink or as a
/// FIFO (which would block the hook until a reader came).
pub fn append(path: &Path, line: &[u8]) -> Result<(), LogError> {
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
    Ok(())
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
