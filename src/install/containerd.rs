//! containerd: one base runtime spec per runc-based runtime handler, carrying the pss-guard hook,
//! and the handler's `base_runtime_spec` pointed at it.
//!
//! The config is edited with `toml_edit`, so the operator's comments, ordering and quoting
//! survive. Config version 2 (containerd 1.6/1.7) keeps the handlers under
//! `plugins."io.containerd.grpc.v1.cri".containerd.runtimes`, version 3 (2.x) under
//! `plugins."io.containerd.cri.v1.runtime".containerd.runtimes`. containerd reads base specs
//! only at start-up, so nothing here takes effect before a restart.
//!
//! A handler that already has a base spec (EKS AL2023's `/etc/containerd/base-runtime-spec.json`)
//! keeps everything in it: ours is that spec plus the hook. A handler without one gets
//! containerd's CRI default spec written out by us, minus what a base spec must not carry
//! (rlimits, seccomp, AppArmor, noNewPrivileges: a base spec skips CRI's
//! `WithoutDefaultSecuritySettings`, so they would reach every container).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use toml_edit::{DocumentMut, Item, Table, TableLike};

use super::files;

pub const V2_CRI_PLUGIN: &str = "io.containerd.grpc.v1.cri";
pub const V3_CRI_PLUGIN: &str = "io.containerd.cri.v1.runtime";
/// A string that only containerd 2.x binaries carry: the version of a node with no config file.
const V3_MARKER: &[u8] = b"io.containerd.cri.v1.runtime";
/// Where containerd binaries live on the distributions we know.
const CONTAINERD_BINARIES: [&str; 4] = [
    "/usr/bin/containerd",
    "/usr/local/bin/containerd",
    "/usr/sbin/containerd",
    "/bin/containerd",
];
/// The runtime types whose shim runs an OCI runtime (runc, crun) that executes spec hooks.
/// Kata, gVisor and others keep hooks inside a VM or sandbox, or ignore them.
const RUNC_TYPES: [&str; 3] = [
    "io.containerd.runc.v2",
    "io.containerd.runc.v1",
    "io.containerd.runtime.v1.linux",
];
const DEFAULT_RUNTIME_TYPE: &str = "io.containerd.runc.v2";
/// containerd's default `default_runtime_name`.
pub const DEFAULT_HANDLER: &str = "runc";
/// The hook's timeout in the base spec (seconds); the hook kills itself before it.
pub const HOOK_TIMEOUT_SECS: u64 = 10;

#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    #[error("is not valid TOML")]
    Parse(#[source] toml_edit::TomlError),
    #[error(
        "has config version {0}; pss-guard edits version 2 (containerd 1.6/1.7) and 3 (2.x): run `containerd config migrate` first"
    )]
    UnsupportedVersion(i64),
    #[error(
        "has no `version` key, which containerd reads as the legacy version 1: run `containerd config migrate` first"
    )]
    NoVersion,
    #[error(
        "does not exist and the containerd version cannot be told from the binary; pass --containerd-config-version 2 or 3"
    )]
    UnknownVersion,
    #[error("{0} is not a table")]
    NotATable(String),
    #[error("handler {handler:?}: base spec {path:?} is not a JSON object")]
    BaseSpecShape { handler: String, path: PathBuf },
    #[error("handler {handler:?}: base spec {path:?} cannot be parsed")]
    BaseSpecParse {
        handler: String,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("handler {handler:?}: base spec {path:?} cannot be read")]
    BaseSpecRead {
        handler: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigVersion {
    V2,
    V3,
}

impl ConfigVersion {
    pub fn number(self) -> i64 {
        match self {
            ConfigVersion::V2 => 2,
            ConfigVersion::V3 => 3,
        }
    }

    fn cri_plugin(self) -> &'static str {
        match self {
            ConfigVersion::V2 => V2_CRI_PLUGIN,
            ConfigVersion::V3 => V3_CRI_PLUGIN,
        }
    }

    /// The table holding `default_runtime_name` and `runtimes`.
    fn containerd_table(self) -> [&'static str; 3] {
        ["plugins", self.cri_plugin(), "containerd"]
    }
}

impl std::str::FromStr for ConfigVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "2" => Ok(ConfigVersion::V2),
            "3" => Ok(ConfigVersion::V3),
            _ => Err(format!("containerd config version {s:?}: expected 2 or 3")),
        }
    }
}

/// What the installer remembers per handler, to undo exactly what it did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandlerState {
    /// The handler's `base_runtime_spec` before pss-guard, if it had one.
    pub original_base_runtime_spec: Option<String>,
    /// The handler's table did not exist (containerd's implicit default handler).
    #[serde(default)]
    pub created_table: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub handlers: BTreeMap<String, HandlerState>,
}

/// A runtime handler as the config declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handler {
    pub name: String,
    pub runtime_type: String,
    /// As written, `""` included (containerd's own default config writes it).
    pub base_runtime_spec: Option<String>,
    /// Not in the config: containerd's built-in default handler.
    pub implicit: bool,
}

impl Handler {
    pub fn runs_hooks(&self) -> bool {
        RUNC_TYPES.contains(&self.runtime_type.as_str())
    }
}

/// The hook entry for one handler.
pub fn hook_entry(bin: &Path, handler: &str, policy: Option<&Path>) -> Value {
    let mut args = vec![
        "pss-guard".to_owned(),
        "hook".into(),
        "--runtime".into(),
        "containerd".into(),
        "--handler".into(),
        handler.into(),
    ];
    if let Some(p) = policy {
        args.push("--policy".into());
        args.push(p.to_string_lossy().into_owned());
    }
    json!({"path": bin.to_string_lossy(), "args": args, "timeout": HOOK_TIMEOUT_SECS})
}

/// A hook entry pss-guard wrote (this version or an earlier one, at any path).
fn is_ours(hook: &Value, bin: &Path) -> bool {
    let path_matches = hook["path"].as_str().is_some_and(|p| Path::new(p) == bin);
    let argv0 = hook["args"][0].as_str() == Some("pss-guard");
    path_matches || argv0
}

/// containerd's CRI default spec (`populateDefaultUnixSpec`) without rlimits, seccomp, AppArmor
/// and noNewPrivileges. CRI replaces cgroupsPath, namespaces paths, mounts it manages and the
/// process, so only the defaults matter.
pub fn cri_default_spec() -> Value {
    let caps = crate::facts::CONTAINERD_DEFAULT_CAPS;
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "user": {"uid": 0, "gid": 0},
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps}
        },
        "root": {"path": "rootfs"},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"},
                           {"type": "mount"}, {"type": "network"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                            "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                            "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"]
        }
    })
}

/// `spec` with every pss-guard hook removed and `hook` appended to `createRuntime`.
pub fn with_hook(spec: &Value, hook: &Value, bin: &Path) -> Option<Value> {
    let mut spec = without_hook(spec, bin)?;
    let obj = spec.as_object_mut()?;
    let hooks = obj.entry("hooks").or_insert_with(|| json!({}));
    let hooks = hooks.as_object_mut()?;
    let stage = hooks
        .entry("createRuntime")
        .or_insert_with(|| Value::Array(Vec::new()));
    stage.as_array_mut()?.push(hook.clone());
    Some(spec)
}

/// `spec` with every pss-guard hook removed, and stages or `hooks` left empty removed too.
pub fn without_hook(spec: &Value, bin: &Path) -> Option<Value> {
    let mut spec = spec.clone();
    let obj = spec.as_object_mut()?;
    if let Some(hooks) = obj.get_mut("hooks").and_then(Value::as_object_mut) {
        for list in hooks.values_mut() {
            if let Some(a) = list.as_array_mut() {
                a.retain(|h| !is_ours(h, bin));
            }
        }
        hooks.retain(|_, v| v.as_array().is_none_or(|a| !a.is_empty()));
        if hooks.is_empty() {
            obj.remove("hooks");
        }
    }
    Some(spec)
}

pub fn render_spec(spec: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(spec).unwrap_or_default();
    out.push(b'\n');
    out
}

pub fn parse(text: &str) -> Result<DocumentMut, ContainerdError> {
    text.parse::<DocumentMut>().map_err(ContainerdError::Parse)
}

/// The config's version; `None` for a config with no settings at all (a fresh node).
pub fn version_of(doc: &DocumentMut) -> Result<Option<ConfigVersion>, ContainerdError> {
    match doc.get("version").and_then(Item::as_integer) {
        Some(2) => Ok(Some(ConfigVersion::V2)),
        Some(3) => Ok(Some(ConfigVersion::V3)),
        Some(n) => Err(ContainerdError::UnsupportedVersion(n)),
        None if doc.as_table().is_empty() => Ok(None),
        None => Err(ContainerdError::NoVersion),
    }
}

/// The config version the node's containerd binary writes by default.
pub fn version_from_binary(root: &Path) -> Option<ConfigVersion> {
    for bin in CONTAINERD_BINARIES {
        let Ok(bytes) = std::fs::read(files::under(root, Path::new(bin))) else {
            continue;
        };
        let v3 = bytes.windows(V3_MARKER.len()).any(|w| w == V3_MARKER);
        return Some(if v3 {
            ConfigVersion::V3
        } else {
            ConfigVersion::V2
        });
    }
    None
}

fn get_table<'a>(t: &'a Table, path: &[&str]) -> Option<&'a dyn TableLike> {
    let mut cur: &dyn TableLike = t;
    for key in path {
        cur = cur.get(key)?.as_table_like()?;
    }
    Some(cur)
}

fn get_table_mut<'a>(t: &'a mut Table, path: &[&str]) -> Option<&'a mut dyn TableLike> {
    let mut cur: &mut dyn TableLike = t;
    for key in path {
        cur = cur.get_mut(key)?.as_table_like_mut()?;
    }
    Some(cur)
}

/// The table at `path`, created (as implicit tables, so no empty headers appear) when missing.
fn ensure_table<'a>(
    t: &'a mut Table,
    path: &[&str],
) -> Result<&'a mut dyn TableLike, ContainerdError> {
    let mut cur: &mut dyn TableLike = t;
    for (i, key) in path.iter().enumerate() {
        if !cur.contains_key(key) {
            let mut nt = Table::new();
            nt.set_implicit(true);
            cur.insert(key, Item::Table(nt));
        }
        cur = cur
            .get_mut(key)
            .and_then(Item::as_table_like_mut)
            .ok_or_else(|| ContainerdError::NotATable(path[..=i].join(".")))?;
    }
    Ok(cur)
}

/// The handler pods without a RuntimeClass run with: the config's `default_runtime_name` (read
/// where its version keeps it), else containerd's own default. A config that does not parse
/// gives containerd's default too: the installer reports that config separately.
pub fn default_handler_of(text: &str) -> String {
    let Ok(doc) = parse(text) else {
        return DEFAULT_HANDLER.to_owned();
    };
    let Ok(Some(v)) = version_of(&doc) else {
        return DEFAULT_HANDLER.to_owned();
    };
    get_table(doc.as_table(), &v.containerd_table())
        .and_then(|t| t.get("default_runtime_name"))
        .and_then(Item::as_str)
        .unwrap_or(DEFAULT_HANDLER)
        .to_owned()
}

/// Every handler in the config, plus containerd's default handler when the config does not
/// declare it.
pub fn handlers(doc: &DocumentMut, v: ConfigVersion) -> Vec<Handler> {
    let ctd = v.containerd_table();
    let default = get_table(doc.as_table(), &ctd)
        .and_then(|t| t.get("default_runtime_name"))
        .and_then(Item::as_str)
        .unwrap_or(DEFAULT_HANDLER)
        .to_owned();
    let mut out = Vec::new();
    let runtimes_path = [ctd[0], ctd[1], ctd[2], "runtimes"];
    if let Some(rt) = get_table(doc.as_table(), &runtimes_path) {
        for (name, item) in rt.iter() {
            let Some(t) = item.as_table_like() else {
                continue;
            };
            let s = |k: &str| t.get(k).and_then(Item::as_str).map(str::to_owned);
            out.push(Handler {
                name: name.to_owned(),
                // containerd's own default when runtime_type is left out.
                runtime_type: s("runtime_type").unwrap_or_else(|| DEFAULT_RUNTIME_TYPE.into()),
                base_runtime_spec: s("base_runtime_spec"),
                implicit: false,
            });
        }
    }
    if !out.iter().any(|h| h.name == default) {
        out.push(Handler {
            name: default,
            runtime_type: DEFAULT_RUNTIME_TYPE.into(),
            base_runtime_spec: None,
            implicit: true,
        });
    }
    out
}

/// Sets (or, with `None`, removes) a handler's `base_runtime_spec`, creating the handler's table
/// with `runtime_type` when containerd only had it implicitly.
pub fn set_base_runtime_spec(
    doc: &mut DocumentMut,
    v: ConfigVersion,
    handler: &str,
    value: Option<&str>,
) -> Result<(), ContainerdError> {
    let ctd = v.containerd_table();
    let path = [ctd[0], ctd[1], ctd[2], "runtimes", handler];
    match value {
        Some(p) => {
            let exists = get_table(doc.as_table(), &path).is_some();
            let t = ensure_table(doc.as_table_mut(), &path)?;
            if !exists {
                t.insert("runtime_type", toml_edit::value(DEFAULT_RUNTIME_TYPE));
            }
            set_keeping_layout(t, "base_runtime_spec", p);
        }
        None => {
            if let Some(t) = get_table_mut(doc.as_table_mut(), &path) {
                t.remove("base_runtime_spec");
            }
        }
    }
    Ok(())
}

/// Sets a string key without disturbing the file's layout: an existing value keeps its
/// surrounding whitespace and comments, a new key takes the indentation of its siblings.
fn set_keeping_layout(t: &mut dyn TableLike, key: &str, v: &str) {
    if let Some(Item::Value(old)) = t.get_mut(key) {
        let decor = old.decor().clone();
        let mut new = toml_edit::Value::from(v);
        *new.decor_mut() = decor;
        *old = new;
        return;
    }
    let indent = t
        .iter()
        .filter(|(_, i)| i.is_value())
        .find_map(|(k, _)| t.key(k).and_then(|k| k.leaf_decor().prefix().cloned()));
    t.insert(key, toml_edit::value(v));
    if let (Some(indent), Some(mut k)) = (indent, t.key_mut(key)) {
        k.leaf_decor_mut().set_prefix(indent);
    }
}

/// Removes a handler table that pss-guard created, if nothing but its own keys is left in it.
pub fn remove_created_table(doc: &mut DocumentMut, v: ConfigVersion, handler: &str) {
    let ctd = v.containerd_table();
    let path = [ctd[0], ctd[1], ctd[2], "runtimes"];
    let Some(rt) = get_table_mut(doc.as_table_mut(), &path) else {
        return;
    };
    let only_ours = rt
        .get(handler)
        .and_then(Item::as_table_like)
        .is_some_and(|t| {
            t.iter()
                .all(|(k, v)| k == "runtime_type" && v.as_str() == Some(DEFAULT_RUNTIME_TYPE))
        });
    if only_ours {
        rt.remove(handler);
    }
}

/// A fresh config holding only the version, for a node that has none.
pub fn new_document(v: ConfigVersion) -> DocumentMut {
    let mut doc = DocumentMut::new();
    doc.insert("version", toml_edit::value(v.number()));
    doc
}

/// Reads a handler's current base spec (as the host sees it, below `root`).
pub fn load_base_spec(
    root: &Path,
    handler: &str,
    host_path: &str,
) -> Result<Value, ContainerdError> {
    let path = files::under(root, Path::new(host_path));
    let bytes = std::fs::read(&path).map_err(|source| ContainerdError::BaseSpecRead {
        handler: handler.to_owned(),
        path: PathBuf::from(host_path),
        source,
    })?;
    let v: Value =
        serde_json::from_slice(&bytes).map_err(|source| ContainerdError::BaseSpecParse {
            handler: handler.to_owned(),
            path: PathBuf::from(host_path),
            source,
        })?;
    if !v.is_object() {
        return Err(ContainerdError::BaseSpecShape {
            handler: handler.to_owned(),
            path: PathBuf::from(host_path),
        });
    }
    Ok(v)
}

/// The file name of a handler's base spec: handler names are free-form TOML keys.
pub fn spec_file_name(handler: &str) -> String {
    let safe: String = handler
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("base-runtime-spec-{safe}.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2: &str = r#"# node config
version = 2

[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"

  # the default handler
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata]
    runtime_type = "io.containerd.kata.v2"
"#;

    #[test]
    fn version_2_handlers_are_found_with_their_types() {
        let doc = parse(V2).unwrap();
        assert_eq!(version_of(&doc).unwrap(), Some(ConfigVersion::V2));
        let hs = handlers(&doc, ConfigVersion::V2);
        let names: Vec<_> = hs
            .iter()
            .map(|h| (h.name.as_str(), h.runs_hooks()))
            .collect();
        assert_eq!(names, vec![("runc", true), ("kata", false)]);
    }

    #[test]
    fn setting_the_base_spec_keeps_comments() {
        let mut doc = parse(V2).unwrap();
        set_base_runtime_spec(&mut doc, ConfigVersion::V2, "runc", Some("/x.json")).unwrap();
        let text = doc.to_string();
        assert!(text.contains("# the default handler"), "{text}");
        assert!(text.contains("base_runtime_spec = \"/x.json\""), "{text}");
        set_base_runtime_spec(&mut doc, ConfigVersion::V2, "runc", None).unwrap();
        assert_eq!(doc.to_string(), V2);
    }

    #[test]
    fn implicit_default_handler_gets_a_table_that_uninstall_removes() {
        let text = "version = 3\n";
        let mut doc = parse(text).unwrap();
        let hs = handlers(&doc, ConfigVersion::V3);
        assert!(hs[0].implicit && hs[0].name == "runc");
        set_base_runtime_spec(&mut doc, ConfigVersion::V3, "runc", Some("/b.json")).unwrap();
        let out = doc.to_string();
        assert!(
            out.contains("[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runc]"),
            "{out}"
        );
        set_base_runtime_spec(&mut doc, ConfigVersion::V3, "runc", None).unwrap();
        remove_created_table(&mut doc, ConfigVersion::V3, "runc");
        assert!(!doc.to_string().contains("runtimes"), "{doc}");
    }

    #[test]
    fn version_1_and_unknown_versions_are_refused() {
        assert!(matches!(
            version_of(&parse("[plugins.cri]\nx = 1\n").unwrap()),
            Err(ContainerdError::NoVersion)
        ));
        assert!(matches!(
            version_of(&parse("version = 4\n").unwrap()),
            Err(ContainerdError::UnsupportedVersion(4))
        ));
        assert_eq!(version_of(&parse("# nothing\n").unwrap()).unwrap(), None);
    }

    #[test]
    fn hook_is_replaced_not_duplicated_and_foreign_hooks_stay() {
        let bin = Path::new("/usr/local/bin/pss-guard");
        let base = json!({"hooks": {"createRuntime": [{"path": "/other"}],
                                    "prestart": [{"path": "/old/pss-guard", "args": ["pss-guard"]}]}});
        let h = hook_entry(bin, "runc", None);
        let once = with_hook(&base, &h, bin).unwrap();
        let twice = with_hook(&once, &h, bin).unwrap();
        assert_eq!(once, twice);
        assert_eq!(once["hooks"]["createRuntime"].as_array().unwrap().len(), 2);
        assert!(once["hooks"].get("prestart").is_none());
        let back = without_hook(&once, bin).unwrap();
        assert_eq!(
            back,
            json!({"hooks": {"createRuntime": [{"path": "/other"}]}})
        );
    }

    #[test]
    fn default_spec_carries_no_rlimits_seccomp_or_apparmor() {
        let s = cri_default_spec();
        assert!(s["process"].get("rlimits").is_none());
        assert!(s["process"].get("apparmorProfile").is_none());
        assert!(s["process"].get("noNewPrivileges").is_none());
        assert!(s["linux"].get("seccomp").is_none());
        assert_eq!(
            s["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            14
        );
    }

    #[test]
    fn spec_file_names_are_safe() {
        assert_eq!(spec_file_name("runc"), "base-runtime-spec-runc.json");
        assert_eq!(spec_file_name("a/../b"), "base-runtime-spec-a_.._b.json");
    }
}
