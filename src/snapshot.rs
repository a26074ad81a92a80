//! The cluster snapshot the agent (`pss-guard-agent`, agent/) writes on the node and the hook
//! reads on every start: each namespace's Pod Security labels, each RuntimeClass's handler and
//! the API server's version. The hook never talks to the API server; without a snapshot the
//! node's defaults apply, and while the agent is down the last snapshot stays in force.
//!
//! One JSON header line, then one line per namespace, sorted by name (bytewise):
//!
//! ```text
//! {"schema":2,"written":"2026-11-30T03:00:00.000000Z","runtime_classes":{"gvisor":"runsc"},"kubernetes_version":"v1.34"}
//! {"namespace":"team-a","labels":{"pod-security.kubernetes.io/enforce":"restricted"}}
//! {"namespace":"team-b","labels":{}}
//! ```
//!
//! A cluster's snapshot is hundreds of kilobytes, and the hook runs at every container start: it
//! reads the header and binary-searches the sorted lines with a few small positioned reads,
//! never the whole file. [`render`] is the only writer of the format.
//!
//! One namespace's line never decides how another resolves: the search reads only the names of
//! the lines it passes (a line of any length is stepped over), and a namespace whose own line is
//! longer than [`MAX_ENTRY`] or does not parse is reported as [`Entry::Unreadable`], which the
//! hook resolves as Pod Security Admission resolves an enforce label it cannot parse.
//!
//! The file is opened as the decision log is (no symlink, only a regular file) and is used only
//! when root (or the user the hook runs as) owns it and neither its group nor others may write
//! it: whoever can write it chooses every namespace's level.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// The snapshot schema this version writes and reads.
pub const SCHEMA: u32 = 2;
/// A header longer than this is not one the agent wrote.
const MAX_HEADER: usize = 256 * 1024;
/// A namespace line longer than this cannot be read. The agent keeps six labels of at most 63
/// bytes each (`psa::LABELS`, `psa::MAX_LABEL_VALUE`) and a name of at most 63: under 1 KiB, even
/// with every byte of a value escaped.
pub const MAX_ENTRY: usize = 4 * 1024;
/// Positioned reads are this large: a namespace line is ~100 bytes.
const CHUNK: usize = 512;
/// Stepping over a line too long to read reads this much at a time.
const SKIP_CHUNK: usize = 64 * 1024;

/// What the snapshot says of one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Its Pod Security labels.
    Labels(BTreeMap<String, String>),
    /// Its line is there but cannot be read; why.
    Unreadable(String),
}

/// What the hook needs of the snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// When the agent last wrote it.
    pub written: Option<SystemTime>,
    /// The asked-for namespace's entry; `None` when the snapshot does not list it.
    pub labels: Option<Entry>,
    /// RuntimeClass name to handler, when asked for.
    pub runtime_classes: BTreeMap<String, String>,
    /// The API server's version as the agent last saw it (`v1.34`), when it could ask.
    pub kubernetes_version: Option<String>,
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
    #[error("namespace snapshot {0:?} not used: {1}")]
    Untrusted(std::path::PathBuf, String),
}

#[derive(Serialize, Deserialize)]
struct Header {
    schema: u32,
    written: String,
    #[serde(default)]
    runtime_classes: BTreeMap<String, String>,
    /// Added within schema 2: a hook that does not know it ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kubernetes_version: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    namespace: std::borrow::Cow<'a, str>,
    labels: BTreeMap<String, String>,
}

/// What the agent knows of the cluster, for [`render`].
#[derive(Clone, Copy, Debug)]
pub struct Cluster<'a> {
    /// Each namespace's Pod Security labels.
    pub namespaces: &'a BTreeMap<String, BTreeMap<String, String>>,
    /// RuntimeClass name to handler.
    pub runtime_classes: &'a BTreeMap<String, String>,
    /// The API server's version, `v1.N`.
    pub kubernetes_version: Option<&'a str>,
}

/// The snapshot's bytes for what the agent knows of the cluster.
pub fn render(written: SystemTime, cluster: Cluster) -> Vec<u8> {
    let header = Header {
        schema: SCHEMA,
        written: crate::time::rfc3339(written),
        runtime_classes: cluster.runtime_classes.clone(),
        kubernetes_version: cluster.kubernetes_version.map(str::to_owned),
    };
    let mut out = serde_json::to_vec(&header).unwrap_or_default();
    out.push(b'\n');
    // BTreeMap iterates in bytewise order of the names: the order the hook searches in.
    for (name, labels) in cluster.namespaces {
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
        Err(Open::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(Open::Io(e)) => return Err(io(e)),
        Err(Open::Untrusted(why)) => return Err(SnapshotError::Untrusted(path.to_owned(), why)),
    };
    let len = f.metadata().map_err(io)?.len();
    let header = match read_line(&f, 0, len, MAX_HEADER).map_err(io)? {
        None => return Err(parse("no header line".into())),
        Some(LineRead::Long(_)) => {
            return Err(parse(format!("a header longer than {MAX_HEADER} bytes")));
        }
        Some(LineRead::Whole(line, next)) => (line, next),
    };
    let (header, body) = header;
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
        kubernetes_version: header.kubernetes_version,
    }))
}

enum Open {
    Io(std::io::Error),
    Untrusted(String),
}

/// As the decision log is opened: never through a symlink, only a regular file, without
/// blocking (a FIFO would wait for a writer). Then only a file that root, or the user this
/// hook runs as, owns and that neither group nor others may write.
fn open(path: &Path) -> Result<File, Open> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => Open::Untrusted("it is a symbolic link".into()),
            _ => Open::Io(e),
        })?;
    let meta = f.metadata().map_err(Open::Io)?;
    if !meta.file_type().is_file() {
        return Err(Open::Untrusted("it is not a regular file".into()));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        return Err(Open::Untrusted(format!(
            "it is owned by uid {}, not root",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(Open::Untrusted(format!(
            "its mode {:o} lets group or others write it",
            meta.mode() & 0o7777
        )));
    }
    Ok(f)
}

enum Found {
    Io(std::io::Error),
    Bad(String),
}

/// A line read from its start.
enum LineRead {
    /// The whole line without its newline, and where the next starts.
    Whole(Vec<u8>, u64),
    /// The line is longer than the limit: its first `limit` bytes.
    Long(Vec<u8>),
}

/// The line that starts at `start` (before `end`), if it is at most `limit` bytes long; `None`
/// at `end`.
fn read_line(f: &File, start: u64, end: u64, limit: usize) -> std::io::Result<Option<LineRead>> {
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
            if line.len() > limit {
                line.truncate(limit);
                return Ok(Some(LineRead::Long(line)));
            }
            return Ok(Some(LineRead::Whole(line, pos + i as u64 + 1)));
        }
        line.extend_from_slice(got);
        pos += got.len() as u64;
        if line.len() > limit {
            line.truncate(limit);
            return Ok(Some(LineRead::Long(line)));
        }
    }
    Ok(Some(LineRead::Whole(line, end)))
}

/// Where the line after the byte at `pos` starts: just past the first newline at or after
/// `pos`, or `end`. Reads as far as it must: a line of any length is stepped over.
fn after_newline(f: &File, mut pos: u64, end: u64) -> std::io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    while pos < end {
        let n = f.read_at(&mut buf, pos)?;
        let got = buf.get(..n.min((end - pos) as usize)).unwrap_or_default();
        if got.is_empty() {
            break;
        }
        if let Some(i) = memchr::memchr(b'\n', got) {
            return Ok(pos + i as u64 + 1);
        }
        pos += got.len() as u64;
        // Not in the first small read: this is a long line, read on in larger steps.
        buf.resize(SKIP_CHUNK, 0);
    }
    Ok(end)
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

/// Binary search over the sorted namespace lines in `[lo, end)` for `ns`. Only the sought
/// namespace's own line is parsed; of every other line only its name is read.
fn find(f: &File, mut lo: u64, end: u64, ns: &str) -> Result<Option<Entry>, Found> {
    let mut hi = end;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let start = if mid == lo {
            lo
        } else {
            after_newline(f, mid - 1, hi).map_err(Found::Io)?
        };
        if start >= hi {
            // No line starts in [mid, hi): the one sought, if any, starts before mid.
            hi = mid;
            continue;
        }
        let Some(line) = read_line(f, start, end, MAX_ENTRY).map_err(Found::Io)? else {
            hi = mid;
            continue;
        };
        let head = match &line {
            LineRead::Whole(l, _) | LineRead::Long(l) => l,
        };
        match name_of(head)?.cmp(ns.as_bytes()) {
            std::cmp::Ordering::Less => {
                lo = match line {
                    LineRead::Whole(_, next) => next,
                    LineRead::Long(_) => after_newline(f, start, end).map_err(Found::Io)?,
                }
            }
            std::cmp::Ordering::Greater => hi = start,
            std::cmp::Ordering::Equal => {
                return Ok(Some(match line {
                    LineRead::Long(_) => {
                        Entry::Unreadable(format!("its line is longer than {MAX_ENTRY} bytes"))
                    }
                    LineRead::Whole(l, _) => match serde_json::from_slice::<Line>(&l) {
                        Ok(parsed) => Entry::Labels(parsed.labels),
                        Err(e) => Entry::Unreadable(format!("its line does not parse: {e}")),
                    },
                }));
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

    fn cluster<'a>(
        namespaces: &'a BTreeMap<String, BTreeMap<String, String>>,
        runtime_classes: &'a BTreeMap<String, String>,
    ) -> Cluster<'a> {
        Cluster {
            namespaces,
            runtime_classes,
            kubernetes_version: None,
        }
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
        let p = write(dir.path(), &render(t, cluster(&namespaces, &classes)));
        for (name, l) in &namespaces {
            let v = read(&p, Some(name), false).unwrap().unwrap();
            assert_eq!(v.labels, Some(Entry::Labels(l.clone())), "{name}");
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
        let p = write(
            dir.path(),
            &render(t, cluster(&BTreeMap::new(), &BTreeMap::new())),
        );
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
        ] {
            let p = write(dir.path(), bad);
            assert!(read(&p, Some("a"), true).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(
            read(&dir.path().join("none.json"), Some("a"), false).unwrap(),
            None
        );
    }

    #[test]
    fn an_entry_that_cannot_be_read_is_that_namespaces_alone() {
        let dir = tempfile::tempdir().unwrap();
        let head = "{\"schema\":2,\"written\":\"2026-11-30T03:00:00Z\"}\n";
        let enforce = |v: &str| format!("{{\"pod-security.kubernetes.io/enforce\":\"{v}\"}}");
        // Every position of the long line among its neighbours, and lines long enough that
        // the search's probes land inside them.
        for long_at in 0..5 {
            let mut text = head.to_owned();
            let mut want = Vec::new();
            for i in 0..5 {
                let name = format!("ns-{i}");
                if i == long_at {
                    let many: Vec<String> = (0..5000)
                        .map(|j| format!("\"pod-security.kubernetes.io/x{j}\":\"{j}\""))
                        .collect();
                    text += &format!(
                        "{{\"namespace\":\"{name}\",\"labels\":{{{}}}}}\n",
                        many.join(",")
                    );
                } else {
                    text += &format!(
                        "{{\"namespace\":\"{name}\",\"labels\":{}}}\n",
                        enforce("restricted")
                    );
                }
                want.push(name);
            }
            let p = write(dir.path(), text.as_bytes());
            for (i, name) in want.iter().enumerate() {
                let got = read(&p, Some(name), false).unwrap().unwrap().labels;
                if i == long_at {
                    assert!(
                        matches!(got, Some(Entry::Unreadable(ref why)) if why.contains("longer than")),
                        "{got:?}"
                    );
                } else {
                    assert_eq!(
                        got,
                        Some(Entry::Labels(labels(&[(
                            "pod-security.kubernetes.io/enforce",
                            "restricted"
                        )]))),
                        "{name} with the long line at {long_at}"
                    );
                }
            }
            assert_eq!(read(&p, Some("ns-9"), false).unwrap().unwrap().labels, None);
        }
        // A line that does not parse: that namespace only.
        let text = format!(
            "{head}{{\"namespace\":\"a\",\"labels\":{{\"k\":1}}}}\n{{\"namespace\":\"b\",\"labels\":{}}}\n",
            enforce("baseline")
        );
        let p = write(dir.path(), text.as_bytes());
        assert!(matches!(
            read(&p, Some("a"), false).unwrap().unwrap().labels,
            Some(Entry::Unreadable(_))
        ));
        assert!(matches!(
            read(&p, Some("b"), false).unwrap().unwrap().labels,
            Some(Entry::Labels(_))
        ));
    }

    #[test]
    fn a_symlink_or_a_file_others_may_write_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        let p = write(
            dir.path(),
            &render(t, cluster(&BTreeMap::new(), &BTreeMap::new())),
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read(&p, Some("a"), false).unwrap().is_some());
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        let e = read(&link, Some("a"), false).unwrap_err();
        assert!(matches!(e, SnapshotError::Untrusted(..)), "{e:?}");
        for mode in [0o664, 0o646, 0o666] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = read(&p, Some("a"), false).unwrap_err();
            assert!(matches!(e, SnapshotError::Untrusted(..)), "{mode:o}: {e:?}");
        }
    }
}
