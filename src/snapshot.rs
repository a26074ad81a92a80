//! The cluster snapshot the agent (`pss-guard-agent`, agent/) writes on the node and the hook
//! reads on every start: each namespace's Pod Security labels and each RuntimeClass's handler.
//! The hook never talks to the API server; without a snapshot the node's defaults apply, and
//! while the agent is down the last snapshot stays in force.
//!
//! One JSON header line, then one line per namespace, sorted by name (bytewise):
//!
//! ```text
//! {"schema":2,"written":"2026-11-30T03:00:00.000000Z","runtime_classes":{"gvisor":"runsc"}}
//! {"namespace":"team-a","labels":{"pod-security.kubernetes.io/enforce":"restricted"}}
//! {"namespace":"team-b","labels":{}}
//! ```
//!
//! A cluster's snapshot is hundreds of kilobytes, and the hook runs at every container start: it
//! reads the header and binary-searches the sorted lines with a few small positioned reads,
//! never the whole file. [`render`] is the only writer of the format.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// The snapshot schema this version writes and reads.
pub const SCHEMA: u32 = 2;
/// A header or a namespace line longer than this is not one the agent wrote.
const MAX_LINE: usize = 256 * 1024;
/// Positioned reads are this large: a namespace line is ~100 bytes.
const CHUNK: usize = 512;

/// What the hook needs of the snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// When the agent last wrote it.
    pub written: Option<SystemTime>,
    /// The asked-for namespace's labels; `None` when the snapshot does not list it.
    pub labels: Option<BTreeMap<String, String>>,
    /// RuntimeClass name to handler, when asked for.
    pub runtime_classes: BTreeMap<String, String>,
}

impl View {
    pub fn age(&self, now: SystemTime) -> Option<Duration> {
        self.written.and_then(|w| now.duration_since(w).ok())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("reading namespace snapshot {0:?}")]
    Read(std::path::PathBuf, #[source] std::io::Error),
    #[error("parsing namespace snapshot {0:?}: {1}")]
    Parse(std::path::PathBuf, String),
}

#[derive(Serialize, Deserialize)]
struct Header {
    schema: u32,
    written: String,
    #[serde(default)]
    runtime_classes: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    namespace: std::borrow::Cow<'a, str>,
    labels: BTreeMap<String, String>,
}

/// The snapshot's bytes for these namespaces (each name's Pod Security labels) and
/// RuntimeClasses (name to handler).
pub fn render(
    written: SystemTime,
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
    runtime_classes: &BTreeMap<String, String>,
) -> Vec<u8> {
    let header = Header {
        schema: SCHEMA,
        written: crate::time::rfc3339(written),
        runtime_classes: runtime_classes.clone(),
    };
    let mut out = serde_json::to_vec(&header).unwrap_or_default();
    out.push(b'\n');
    // BTreeMap iterates in bytewise order of the names: the order the hook searches in.
    for (name, labels) in namespaces {
        let line = Line {
            namespace: name.into(),
            labels: labels.clone(),
        };
        if serde_json::to_writer(&mut out, &line).is_ok() {
            out.push(b'\n');
        }
    }
    out
}

/// Reads the snapshot at `path` for `namespace` (and the RuntimeClasses when `runtime_classes`).
/// `Ok(None)` when there is no snapshot.
pub fn read(
    path: &Path,
    namespace: Option<&str>,
    runtime_classes: bool,
) -> Result<Option<View>, SnapshotError> {
    let io = |e| SnapshotError::Read(path.to_owned(), e);
    let parse = |msg: String| SnapshotError::Parse(path.to_owned(), msg);
    let f = match open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let len = f.metadata().map_err(io)?.len();
    let (header, body) = line_at(&f, 0, len)
        .map_err(io)?
        .ok_or_else(|| parse("no header line".into()))?;
    let header: Header = serde_json::from_slice(&header).map_err(|e| parse(e.to_string()))?;
    if header.schema != SCHEMA {
        return Err(parse(format!(
            "schema {}, this hook reads schema {SCHEMA}",
            header.schema
        )));
    }
    let written = crate::time::parse_rfc3339(&header.written).ok_or_else(|| {
        parse(format!(
            "written {:?} is not an RFC 3339 UTC time",
            header.written
        ))
    })?;
    let labels = match namespace {
        Some(ns) => find(&f, body, len, ns).map_err(|e| match e {
            Found::Io(e) => io(e),
            Found::Bad(msg) => parse(msg),
        })?,
        None => None,
    };
    Ok(Some(View {
        written: Some(written),
        labels,
        runtime_classes: if runtime_classes {
            header.runtime_classes
        } else {
            BTreeMap::new()
        },
    }))
}

/// Only a regular file, opened without blocking (a FIFO would wait for a writer).
fn open(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    crate::bounded::require_regular(&f)?;
    Ok(f)
}

enum Found {
    Io(std::io::Error),
    Bad(String),
}

/// The line that starts at `start` (before `end`) without its newline, and where the next
/// starts; `None` at `end`.
fn line_at(f: &File, start: u64, end: u64) -> std::io::Result<Option<(Vec<u8>, u64)>> {
    if start >= end {
        return Ok(None);
    }
    let mut line = Vec::new();
    let mut buf = [0u8; CHUNK];
    let mut pos = start;
    while pos < end {
        let n = f.read_at(&mut buf, pos)?;
        let got = buf.get(..n.min((end - pos) as usize)).unwrap_or_default();
        if got.is_empty() {
            break;
        }
        if let Some(i) = memchr::memchr(b'\n', got) {
            line.extend_from_slice(got.get(..i).unwrap_or_default());
            return Ok(Some((line, pos + i as u64 + 1)));
        }
        line.extend_from_slice(got);
        pos += got.len() as u64;
        if line.len() > MAX_LINE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "a line longer than 256 KiB",
            ));
        }
    }
    Ok(Some((line, end)))
}

/// The first line start at or after `pos` in `[pos, end)`.
fn next_start(f: &File, pos: u64, end: u64) -> std::io::Result<u64> {
    // The byte before `pos` ends a line iff it is a newline; otherwise skip to the next one.
    match line_at(f, pos - 1, end)? {
        Some((_, next)) => Ok(next),
        None => Ok(end),
    }
}

/// The name a namespace line is for: `{"namespace":"<name>",` (DNS labels need no escapes).
fn name_of(line: &[u8]) -> Result<&[u8], Found> {
    const PREFIX: &[u8] = b"{\"namespace\":\"";
    let rest = line
        .strip_prefix(PREFIX)
        .ok_or_else(|| Found::Bad("a namespace line without its name first".into()))?;
    let end =
        memchr::memchr(b'"', rest).ok_or_else(|| Found::Bad("an unterminated name".into()))?;
    Ok(rest.get(..end).unwrap_or_default())
}

/// Binary search over the sorted namespace lines in `[lo, end)` for `ns`.
fn find(
    f: &File,
    mut lo: u64,
    end: u64,
    ns: &str,
) -> Result<Option<BTreeMap<String, String>>, Found> {
    let mut hi = end;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let start = if mid == lo {
            lo
        } else {
            next_start(f, mid, hi).map_err(Found::Io)?
        };
        if start >= hi {
            // No line starts in [mid, hi): the one sought, if any, starts before mid.
            hi = mid;
            continue;
        }
        let Some((line, next)) = line_at(f, start, end).map_err(Found::Io)? else {
            hi = mid;
            continue;
        };
        match name_of(&line)?.cmp(ns.as_bytes()) {
            std::cmp::Ordering::Less => lo = next,
            std::cmp::Ordering::Greater => hi = start,
            std::cmp::Ordering::Equal => {
                let parsed: Line =
                    serde_json::from_slice(&line).map_err(|e| Found::Bad(e.to_string()))?;
                return Ok(Some(parsed.labels));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn write(dir: &Path, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join("cluster.json");
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn every_namespace_is_found_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let mut namespaces = BTreeMap::new();
        for i in 0..300 {
            let l = if i % 3 == 0 {
                BTreeMap::new()
            } else {
                labels(&[(
                    "pod-security.kubernetes.io/enforce",
                    if i % 2 == 0 { "restricted" } else { "baseline" },
                )])
            };
            // Names of varied length, so line starts fall anywhere relative to the chunks.
            namespaces.insert(format!("ns-{i}-{}", "x".repeat(i % 37)), l);
        }
        let classes = labels(&[("gvisor", "runsc")]);
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        let p = write(dir.path(), &render(t, &namespaces, &classes));
        for (name, l) in &namespaces {
            let v = read(&p, Some(name), false).unwrap().unwrap();
            assert_eq!(v.labels.as_ref(), Some(l), "{name}");
            assert_eq!(v.written, Some(t));
        }
        for absent in [
            "",
            "a",
            "ns-",
            "ns-1-xx",
            "zzz",
            "ns-299-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        ] {
            assert_eq!(
                read(&p, Some(absent), false).unwrap().unwrap().labels,
                None,
                "{absent:?}"
            );
        }
        let v = read(&p, None, true).unwrap().unwrap();
        assert_eq!(v.runtime_classes, classes);
        // No namespaces at all.
        let p = write(dir.path(), &render(t, &BTreeMap::new(), &BTreeMap::new()));
        assert_eq!(read(&p, Some("a"), false).unwrap().unwrap().labels, None);
    }

    #[test]
    fn broken_snapshots_are_errors_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            &b""[..],
            b"{}\n",
            b"{\"schema\":1,\"written\":\"2026-11-30T03:00:00Z\"}\n",
            b"{\"schema\":2,\"written\":\"yesterday\"}\n",
            b"{\"schema\":2,\"written\":\"2026-11-30T03:00:00Z\"}\n{\"labels\":{},\"namespace\":\"a\"}\n",
            b"{\"schema\":2,\"written\":\"2026-11-30T03:00:00Z\"}\n{\"namespace\":\"a\",\"labels\":{\"k\":1}}\n",
        ] {
            let p = write(dir.path(), bad);
            assert!(read(&p, Some("a"), true).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(
            read(&dir.path().join("none.json"), Some("a"), false).unwrap(),
            None
        );
    }
}
