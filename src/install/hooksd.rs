//! CRI-O and Podman: the OCI hooks.d definition (`hooks/pss-guard.json`), installed into the
//! directory the node's CRI-O reads (`hooks_dir` in crio.conf or its drop-ins), else the default
//! both CRI-O and Podman read, `/usr/share/containers/oci/hooks.d`. CRI-O watches the directory,
//! so no restart is needed. containers/common silently skips a definition whose `hook.path` is
//! missing, so the binary must be in place first, as for containerd.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::files;

/// The definition the project ships (hook path and arguments adjusted at install time).
pub const DEFINITION: &str = include_str!("../../hooks/pss-guard.json");
pub const FILE_NAME: &str = "pss-guard.json";
pub const DEFAULT_DIR: &str = "/usr/share/containers/oci/hooks.d";
const CRIO_CONF: &str = "/etc/crio/crio.conf";
const CRIO_CONF_D: &str = "/etc/crio/crio.conf.d";
/// Signs that CRI-O or Podman is on the host.
const PRESENCE: [&str; 5] = [
    "/etc/crio",
    "/usr/bin/crio",
    "/usr/local/bin/crio",
    "/usr/bin/podman",
    "/etc/containers",
];

pub fn present(root: &Path) -> bool {
    PRESENCE
        .iter()
        .any(|p| files::under(root, Path::new(p)).exists())
}

/// The first `hooks_dir` CRI-O is configured with (the last file that sets it wins, drop-ins
/// after crio.conf in name order, as CRI-O reads them), else the default.
pub fn target_dir(root: &Path) -> PathBuf {
    let mut confs = vec![files::under(root, Path::new(CRIO_CONF))];
    if let Ok(rd) = std::fs::read_dir(files::under(root, Path::new(CRIO_CONF_D))) {
        let mut d: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        d.sort();
        confs.extend(d);
    }
    let mut dir = None;
    for c in confs {
        let Ok(text) = std::fs::read_to_string(&c) else {
            continue;
        };
        if let Some(first) = crio_hooks_dir(&text) {
            dir = Some(first);
        }
    }
    dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DIR))
}

fn crio_hooks_dir(text: &str) -> Option<PathBuf> {
    let v: toml::Table = toml::from_str(text).ok()?;
    let dirs = v
        .get("crio")?
        .get("runtime")?
        .get("hooks_dir")?
        .as_array()?;
    dirs.first()?.as_str().map(PathBuf::from)
}

/// The definition with the installed binary's path (and a non-default policy).
pub fn definition(bin: &Path, policy: Option<&Path>) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_str(DEFINITION).ok()?;
    let hook = v.get_mut("hook")?.as_object_mut()?;
    hook.insert("path".into(), Value::String(bin.to_string_lossy().into()));
    if let Some(p) = policy
        && let Some(args) = hook.get_mut("args").and_then(Value::as_array_mut)
    {
        args.push("--policy".into());
        args.push(p.to_string_lossy().into_owned().into());
    }
    let mut out = serde_json::to_vec_pretty(&v).ok()?;
    out.push(b'\n');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_definition_parses_and_takes_the_binary_path() {
        let d = definition(Path::new("/opt/bin/pss-guard"), Some(Path::new("/p.toml"))).unwrap();
        let v: Value = serde_json::from_slice(&d).unwrap();
        assert_eq!(v["hook"]["path"], "/opt/bin/pss-guard");
        let args = v["hook"]["args"].as_array().unwrap();
        assert_eq!(args[0], "pss-guard");
        assert_eq!(args[args.len() - 1], "/p.toml");
        assert!(v["hook"]["timeout"].as_u64().is_some());
    }

    #[test]
    fn crio_hooks_dir_comes_from_the_last_file_that_sets_it() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(target_dir(root.path()), PathBuf::from(DEFAULT_DIR));
        let etc = root.path().join("etc/crio/crio.conf.d");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(
            root.path().join("etc/crio/crio.conf"),
            "[crio.runtime]\nhooks_dir = [\"/a\"]\n",
        )
        .unwrap();
        assert_eq!(target_dir(root.path()), PathBuf::from("/a"));
        std::fs::write(
            etc.join("10-hooks.conf"),
            "[crio.runtime]\nhooks_dir = [\"/b\", \"/c\"]\n",
        )
        .unwrap();
        assert_eq!(target_dir(root.path()), PathBuf::from("/b"));
    }
}
