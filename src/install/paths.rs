//! The runtime's real directories, taken from its own config into the policy's `[paths]`. The
//! hook treats a bind source as managed only under these directories: on a node whose containerd
//! keeps its `root`/`state` elsewhere (k3s: `/var/lib/rancher/k3s/agent/containerd`, RKE2,
//! custom AMIs), every pod's `/etc/hosts`, `resolv.conf` and `/dev/shm` would otherwise count as
//! host paths and every pod would be refused.
//!
//! containerd: the top-level `root` and `state` keys of its config (both config versions).
//! CRI-O: `root`/`runroot` in `[crio]` of crio.conf and its drop-ins (later files win), else
//! `graphroot`/`runroot` in containers-storage's `storage.conf`, which CRI-O reads otherwise.

use std::path::{Path, PathBuf};

use super::files::under;

const CRIO_CONF: &str = "/etc/crio/crio.conf";
const CRIO_CONF_D: &str = "/etc/crio/crio.conf.d";
const STORAGE_CONF: &str = "/etc/containers/storage.conf";

/// Directories a runtime config names; `None` where it says nothing (its default applies).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimePaths {
    pub containerd_root: Option<PathBuf>,
    pub containerd_state: Option<PathBuf>,
    pub crio_root: Option<PathBuf>,
    pub crio_runroot: Option<PathBuf>,
}

fn abs(v: Option<&toml::Value>) -> Option<PathBuf> {
    let s = v?.as_str()?;
    let p = PathBuf::from(s);
    crate::paths::is_clean_absolute(&p).then_some(p)
}

/// containerd's `root`/`state` from its config text.
pub fn from_containerd(config: &str) -> RuntimePaths {
    let Ok(t) = toml::from_str::<toml::Table>(config) else {
        return RuntimePaths::default();
    };
    RuntimePaths {
        containerd_root: abs(t.get("root")),
        containerd_state: abs(t.get("state")),
        ..RuntimePaths::default()
    }
}

/// CRI-O's storage directories as the host at `root` configures them.
pub fn from_crio(root: &Path) -> RuntimePaths {
    let mut out = RuntimePaths::default();
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
    };
    if let Some(t) = read(&under(root, Path::new(STORAGE_CONF))) {
        let s = t.get("storage");
        out.crio_root = abs(s.and_then(|s| s.get("graphroot")));
        out.crio_runroot = abs(s.and_then(|s| s.get("runroot")));
    }
    let mut confs = vec![under(root, Path::new(CRIO_CONF))];
    if let Ok(rd) = std::fs::read_dir(under(root, Path::new(CRIO_CONF_D))) {
        let mut d: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        d.sort();
        confs.extend(d);
    }
    for c in confs {
        let Some(t) = read(&c) else { continue };
        let crio = t.get("crio");
        if let Some(p) = abs(crio.and_then(|c| c.get("root"))) {
            out.crio_root = Some(p);
        }
        if let Some(p) = abs(crio.and_then(|c| c.get("runroot"))) {
            out.crio_runroot = Some(p);
        }
    }
    out
}

/// The runtime directories of the host at `root`: containerd's config at `containerd_config`
/// (a host path) and CRI-O's. For whatever writes the policy onto a node (the installer, the
/// agent's policy sync), so a policy from a ConfigMap gets the node's own `[paths]`.
pub fn for_host(root: &Path, containerd_config: &Path) -> RuntimePaths {
    let text = std::fs::read_to_string(under(root, containerd_config)).unwrap_or_default();
    from_containerd(&text).merge(from_crio(root))
}

impl RuntimePaths {
    pub fn merge(self, other: RuntimePaths) -> RuntimePaths {
        RuntimePaths {
            containerd_root: self.containerd_root.or(other.containerd_root),
            containerd_state: self.containerd_state.or(other.containerd_state),
            crio_root: self.crio_root.or(other.crio_root),
            crio_runroot: self.crio_runroot.or(other.crio_runroot),
        }
    }

    fn entries(&self) -> [(&'static str, Option<&Path>); 4] {
        [
            ("containerd_root", self.containerd_root.as_deref()),
            ("containerd_state", self.containerd_state.as_deref()),
            ("crio_root", self.crio_root.as_deref()),
            ("crio_runroot", self.crio_runroot.as_deref()),
        ]
    }
}

/// `policy` (TOML text) with `[paths]` set to the runtime's directories where the policy says
/// otherwise, comments kept; and one line per key changed. `None` when the text does not parse
/// (the caller keeps it as it is and reports it).
pub fn apply(policy: &str, runtime: &RuntimePaths) -> Option<(String, Vec<String>)> {
    let current = crate::config::Policy::from_toml(policy).ok()?.paths;
    let mut doc = policy.parse::<toml_edit::DocumentMut>().ok()?;
    let mut details = Vec::new();
    for (key, want) in runtime.entries() {
        let Some(want) = want else { continue };
        let have = match key {
            "containerd_root" => &current.containerd_root,
            "containerd_state" => &current.containerd_state,
            "crio_root" => &current.crio_root,
            _ => &current.crio_runroot,
        };
        if have == want {
            continue;
        }
        if !doc.contains_key("paths") {
            doc.insert("paths", toml_edit::Item::Table(toml_edit::Table::new()));
        }
        let paths = doc.get_mut("paths")?.as_table_like_mut()?;
        paths.insert(key, toml_edit::value(want.to_string_lossy().as_ref()));
        details.push(format!(
            "paths.{key} = {want:?} (was {have:?}), from the runtime's config"
        ));
    }
    Some((doc.to_string(), details))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_root_and_state_are_read_from_either_version() {
        let p = from_containerd(
            "version = 3\nroot = \"/var/lib/rancher/k3s/agent/containerd\"\nstate = \"/run/k3s/containerd\"\n",
        );
        assert_eq!(
            p.containerd_root.as_deref(),
            Some(Path::new("/var/lib/rancher/k3s/agent/containerd"))
        );
        assert_eq!(
            p.containerd_state.as_deref(),
            Some(Path::new("/run/k3s/containerd"))
        );
        assert_eq!(from_containerd("version = 2\n"), RuntimePaths::default());
        // A relative or dotted path is not taken.
        assert_eq!(
            from_containerd("version = 2\nroot = \"var/lib/x\"\n").containerd_root,
            None
        );
    }

    #[test]
    fn crio_storage_then_crio_conf_drop_ins_decide() {
        let root = tempfile::tempdir().unwrap();
        let w = |rel: &str, text: &str| {
            let p = root.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        w(
            "etc/containers/storage.conf",
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"/data/storage\"\nrunroot = \"/run/storage\"\n",
        );
        let p = from_crio(root.path());
        assert_eq!(p.crio_root.as_deref(), Some(Path::new("/data/storage")));
        assert_eq!(p.crio_runroot.as_deref(), Some(Path::new("/run/storage")));
        // crio.conf's [crio] root wins over storage.conf, and a later drop-in over both.
        w(
            "etc/crio/crio.conf",
            "[crio]\nroot = \"/var/lib/crio-root\"\n",
        );
        w(
            "etc/crio/crio.conf.d/10-a.conf",
            "[crio]\nrunroot = \"/run/crio-a\"\n",
        );
        w(
            "etc/crio/crio.conf.d/20-b.conf",
            "[crio]\nrunroot = \"/run/crio-b\"\n",
        );
        let p = from_crio(root.path());
        assert_eq!(
            p.crio_root.as_deref(),
            Some(Path::new("/var/lib/crio-root"))
        );
        assert_eq!(p.crio_runroot.as_deref(), Some(Path::new("/run/crio-b")));
        assert_eq!(p.containerd_root, None);
    }

    #[test]
    fn apply_sets_only_what_differs_and_keeps_comments() {
        let policy = "# mine\nenforce = \"baseline:latest\"\n";
        let rt = RuntimePaths {
            containerd_root: Some("/data/containerd".into()),
            containerd_state: Some("/run/containerd".into()),
            ..RuntimePaths::default()
        };
        let (text, details) = apply(policy, &rt).unwrap();
        assert!(text.starts_with("# mine\n"), "{text}");
        let p = crate::config::Policy::from_toml(&text).unwrap();
        assert_eq!(p.paths.containerd_root, Path::new("/data/containerd"));
        assert_eq!(details.len(), 1, "{details:?}");
        // Applying again changes nothing.
        let (again, details) = apply(&text, &rt).unwrap();
        assert_eq!(again, text);
        assert!(details.is_empty());
    }

    #[test]
    fn apply_refuses_an_invalid_policy() {
        assert!(apply("enforce = \"nonsense\"\n", &RuntimePaths::default()).is_none());
    }
}
