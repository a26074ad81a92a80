//! The cluster snapshot the agent (`pss-guard-agent`, agent/) writes on the node and the hook
//! reads on every start: each namespace's Pod Security labels and each RuntimeClass's handler.
//! The hook never talks to the API server; without a snapshot the node's defaults apply, and
//! while the agent is down the last snapshot stays in force.
//!
//! ```json
//! {"schema":1,"written":"2026-11-30T03:00:00Z",
//!  "namespaces":{"team-a":{"pod-security.kubernetes.io/enforce":"restricted"},"team-b":{}},
//!  "runtime_classes":{"gvisor":"runsc"}}
//! ```
//!
//! Only the container's own namespace is kept while reading: with thousands of namespaces the
//! others are skipped, not built.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Deserializer;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

/// The snapshot schema this hook reads.
pub const SCHEMA: u32 = 1;
/// Real snapshots are ~100 bytes a namespace; this bounds a broken one.
const MAX_BYTES: usize = 32 * 1024 * 1024;

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
    #[error("namespace snapshot {0:?} is larger than {MAX_BYTES} bytes")]
    TooLarge(std::path::PathBuf),
    #[error("parsing namespace snapshot {0:?}")]
    Parse(std::path::PathBuf, #[source] serde_json::Error),
}

/// Reads the snapshot at `path` for `namespace` (and the RuntimeClasses when `runtime_classes`).
/// `Ok(None)` when there is no snapshot.
pub fn read(
    path: &Path,
    namespace: Option<&str>,
    runtime_classes: bool,
) -> Result<Option<View>, SnapshotError> {
    let bytes = match crate::bounded::read_bounded(path, MAX_BYTES) {
        Ok(b) => b,
        Err(crate::bounded::ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None);
        }
        Err(crate::bounded::ReadError::Io(e)) => {
            return Err(SnapshotError::Read(path.to_owned(), e));
        }
        Err(crate::bounded::ReadError::TooLarge) => {
            return Err(SnapshotError::TooLarge(path.to_owned()));
        }
    };
    parse(&bytes, namespace, runtime_classes)
        .map(Some)
        .map_err(|e| SnapshotError::Parse(path.to_owned(), e))
}

/// Parses a snapshot, keeping only what was asked for.
pub fn parse(
    bytes: &[u8],
    namespace: Option<&str>,
    runtime_classes: bool,
) -> Result<View, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let view = Top {
        namespace,
        runtime_classes,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(view)
}

/// The top-level object: `schema` must be ours, `written` is read, unknown keys are skipped.
struct Top<'a> {
    namespace: Option<&'a str>,
    runtime_classes: bool,
}

impl<'de> DeserializeSeed<'de> for Top<'_> {
    type Value = View;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<View, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = View;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a pss-guard namespace snapshot")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<View, A::Error> {
        let mut view = View::default();
        let mut schema = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "schema" => schema = Some(map.next_value::<u32>()?),
                "written" => {
                    let w: String = map.next_value()?;
                    view.written = Some(crate::time::parse_rfc3339(&w).ok_or_else(|| {
                        de::Error::custom(format!("written {w:?} is not an RFC 3339 UTC time"))
                    })?);
                }
                "namespaces" => {
                    view.labels = map.next_value_seed(Pick(self.namespace))?;
                }
                "runtime_classes" if self.runtime_classes => {
                    view.runtime_classes = map.next_value()?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        match schema {
            Some(SCHEMA) => Ok(view),
            Some(n) => Err(de::Error::custom(format!(
                "schema {n}, this hook reads schema {SCHEMA}"
            ))),
            None => Err(de::Error::missing_field("schema")),
        }
    }
}

/// The `namespaces` object, keeping only one namespace's labels.
struct Pick<'a>(Option<&'a str>);

impl<'de> DeserializeSeed<'de> for Pick<'_> {
    type Value = Option<BTreeMap<String, String>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Pick<'_> {
    type Value = Option<BTreeMap<String, String>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("namespaces: an object of label objects")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if Some(name.as_ref()) == self.0 {
                if found.is_some() {
                    return Err(de::Error::custom(format!("namespace {name:?} twice")));
                }
                found = Some(map.next_value::<BTreeMap<String, String>>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNAP: &str = r#"{"schema":1,"written":"2026-11-30T03:00:00Z","future":[1,{"x":2}],
        "namespaces":{"a":{"pod-security.kubernetes.io/enforce":"restricted"},"b":{}},
        "runtime_classes":{"gvisor":"runsc"}}"#;

    #[test]
    fn keeps_only_the_namespace_asked_for() {
        let v = parse(SNAP.as_bytes(), Some("a"), false).unwrap();
        let labels = v.labels.unwrap();
        assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
        assert!(v.runtime_classes.is_empty());
        assert_eq!(
            v.written,
            crate::time::parse_rfc3339("2026-11-30T03:00:00Z")
        );
        assert_eq!(
            parse(SNAP.as_bytes(), Some("b"), false).unwrap().labels,
            Some(BTreeMap::new())
        );
        assert_eq!(
            parse(SNAP.as_bytes(), Some("zz"), false).unwrap().labels,
            None
        );
        let v = parse(SNAP.as_bytes(), None, true).unwrap();
        assert_eq!(v.runtime_classes["gvisor"], "runsc");
    }

    #[test]
    fn broken_snapshots_are_errors() {
        for bad in [
            "",
            "{}",
            r#"{"schema":2,"namespaces":{}}"#,
            r#"{"schema":1,"written":"yesterday"}"#,
            r#"{"schema":1,"namespaces":{"a":{"k":1}}}"#,
            r#"{"schema":1,"namespaces":{"a":{},"a":{}}}"#,
            r#"{"schema":1} trailing"#,
        ] {
            assert!(
                parse(bad.as_bytes(), Some("a"), true).is_err(),
                "accepted {bad}"
            );
        }
    }

    #[test]
    fn a_missing_file_is_no_snapshot() {
        assert_eq!(
            read(
                Path::new("/nonexistent/pss-guard/cluster.json"),
                Some("a"),
                false
            )
            .unwrap(),
            None
        );
    }
}
