//! `pss-guard audit`: the operator's dry run before enforcing. Finds the bundles of the
//! containers the node runs now and decides each one exactly as the hook would have
//! ([`crate::hook::decide`]), so "would be refused" here means "refused after the next restart
//! of that container".
//!
//! Where bundles are: containerd keeps one per task under
//! `<state>/io.containerd.runtime.v2.task/<namespace>/<id>/config.json`; CRI-O and Podman under
//! `<runroot>/<driver>-containers/<id>/userdata/config.json` (Podman: in the graph root). Pod
//! sandboxes (pause containers) never run the hook and are left out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::config::Policy;
use crate::hook::{self, Options};
use crate::install::files::under;
use crate::report::{Decision, Kind};
use crate::spec::identity::keys::{CRI_CONTAINER_TYPE, CRIO_CONTAINER_TYPE};
use crate::spec::{self, Runtime, RuntimeArg, Target};

const CONTAINERD_TASK_DIRS: [&str; 2] = [
    "io.containerd.runtime.v2.task",
    "io.containerd.runtime.v1.linux",
];

/// A running container's bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// containerd's task directories are containerd's alone; CRI-O and Podman share the
    /// containers/storage layout, so there the hook's own detection decides, as in hook mode.
    pub runtime: RuntimeArg,
    pub id: String,
    pub bundle: PathBuf,
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub found: Found,
    pub decision: Decision,
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Whether the container whose runtime directory is `userdata` still runs: its `pidfile` names
/// a live process. Without a pidfile it cannot be told, and the container is kept.
fn running(root: &Path, userdata: &Path) -> bool {
    let Ok(pid) = std::fs::read_to_string(userdata.join("pidfile")) else {
        return true;
    };
    match pid.trim().parse::<u32>() {
        Ok(pid) if pid > 0 => under(root, Path::new(&format!("/proc/{pid}"))).exists(),
        _ => false,
    }
}

/// Every running container's bundle (host paths, read below `root`):
/// - containerd: `<state>/io.containerd.runtime.v2.task/<namespace>/<id>/config.json`;
/// - CRI-O: `<runroot>/<driver>-containers/<id>/userdata/config.json`;
/// - Podman: the same directory in the runroot holds the pidfile, while `config.json` sits in
///   `<graphroot>/<driver>-containers/<id>/userdata/`.
pub fn find(root: &Path, containerd_state: &Path, runroot: &Path, graphroot: &Path) -> Vec<Found> {
    let mut out = Vec::new();
    for task_dir in CONTAINERD_TASK_DIRS {
        for ns in subdirs(&under(root, &containerd_state.join(task_dir))) {
            for b in subdirs(&ns) {
                if b.join("config.json").is_file() {
                    out.push(Found {
                        runtime: RuntimeArg::Named(Runtime::Containerd),
                        id: name_of(&b),
                        bundle: b,
                    });
                }
            }
        }
    }
    for driver_dir in subdirs(&under(root, runroot)) {
        let driver = name_of(&driver_dir);
        if !driver.ends_with("-containers") {
            continue;
        }
        for c in subdirs(&driver_dir) {
            let userdata = c.join("userdata");
            if !running(root, &userdata) {
                continue;
            }
            let id = name_of(&c);
            let podman = under(root, &graphroot.join(&driver).join(&id).join("userdata"));
            let bundle = if userdata.join("config.json").is_file() {
                userdata
            } else if podman.join("config.json").is_file() {
                podman
            } else {
                continue;
            };
            out.push(Found {
                runtime: RuntimeArg::Detect,
                id,
                bundle,
            });
        }
    }
    out
}

/// Why there is nothing to audit, when none of the runtime state directories exists below
/// `root`: an empty table would read as "nothing would be refused" on a root that is not a node
/// at all (a wrong `--root`, or a runtime whose paths the policy does not name).
pub fn no_runtime_state(
    root: &Path,
    containerd_state: &Path,
    runroot: &Path,
    graphroot: &Path,
) -> Option<String> {
    let dirs = [containerd_state, runroot, graphroot];
    if dirs.iter().any(|d| under(root, d).is_dir()) {
        return None;
    }
    Some(format!(
        "no runtime state below {root:?}: none of {dirs:?} exists, so there are no containers to audit (wrong --root, or set the runtime's directories in the policy's [paths])"
    ))
}

/// Decides every found container that is not a pod sandbox, exactly as the hook would.
pub fn audit(
    policy: &Policy,
    found: Vec<Found>,
    enforce: Option<crate::policy::LevelVersion>,
) -> Vec<Entry> {
    let opts = Options {
        enforce,
        ..Options::default()
    };
    let mut out = Vec::new();
    for f in found {
        let started = std::time::Instant::now();
        let target = Target {
            id: f.id.clone(),
            bundle: f.bundle.clone(),
            spec_file: None,
            sandbox_file: None,
            runtime: f.runtime,
        };
        let loaded = spec::load(&target, &policy.paths);
        if let Ok(l) = &loaded
            && [CRI_CONTAINER_TYPE, CRIO_CONTAINER_TYPE]
                .iter()
                .any(|k| l.spec.annotation(k) == Some("sandbox"))
        {
            continue;
        }
        let decision = hook::decide(policy, &opts, loaded, None, started);
        out.push(Entry { found: f, decision });
    }
    out.sort_by_key(|e| sort_key(&e.decision));
    out
}

fn sort_key(d: &Decision) -> (String, String, String, String) {
    let k = d.identity.kube.as_ref();
    (
        k.map(|k| k.namespace.clone()).unwrap_or_default(),
        k.map(|k| k.pod.clone()).unwrap_or_default(),
        d.identity.container_name().to_owned(),
        d.identity.container_id.clone(),
    )
}

fn label(kind: Kind) -> &'static str {
    match kind {
        Kind::Refused | Kind::WouldRefuse => "WOULD REFUSE",
        Kind::Error => "ERROR",
        other => other.as_str(),
    }
}

fn runtime_name(r: Runtime) -> &'static str {
    match r {
        Runtime::Containerd => "containerd",
        Runtime::CriO => "cri-o",
        Runtime::None => "podman",
    }
}

fn summary(entries: &[Entry]) -> BTreeMap<&'static str, usize> {
    let mut s: BTreeMap<&'static str, usize> = Kind::ALL.iter().map(|k| (k.as_str(), 0)).collect();
    for e in entries {
        *s.entry(e.decision.kind().as_str()).or_insert(0) += 1;
    }
    s
}

/// What was wrong, on one line: the violated checks, the error, or the exemption.
fn why(d: &Decision) -> String {
    match d.enforce_kind() {
        Kind::Error => d.error().unwrap_or_default().to_owned(),
        Kind::Exempt => d.exempt().unwrap_or_default().to_owned(),
        Kind::Audit => d.audit().map(|r| checks(r, "audit: ")).unwrap_or_default(),
        _ => d.report().map(|r| checks(r, "")).unwrap_or_default(),
    }
}

fn checks(r: &crate::policy::Report, prefix: &str) -> String {
    let ids: Vec<&str> = r.violations().map(|(c, _)| c.id).collect();
    if ids.is_empty() {
        String::new()
    } else {
        format!("{prefix}{}", ids.join(","))
    }
}

pub fn render_table(entries: &[Entry], policy: &str) -> String {
    let mut rows = vec![[
        "DECISION".to_owned(),
        "NAMESPACE".into(),
        "POD".into(),
        "CONTAINER".into(),
        "RUNTIME".into(),
        "WHY".into(),
    ]];
    for e in entries {
        let k = e.decision.identity.kube.as_ref();
        rows.push([
            label(e.decision.kind()).into(),
            k.map_or("-".into(), |k| k.namespace.clone()),
            k.map_or("-".into(), |k| k.pod.clone()),
            e.decision
                .identity
                .container_name()
                .chars()
                .take(40)
                .collect(),
            runtime_name(e.decision.identity.runtime).into(),
            why(&e.decision),
        ]);
    }
    let mut widths = [0usize; 6];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i == r.len() - 1 {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let s = summary(entries);
    out.push_str(&format!(
        "{} containers under {policy}: {} allowed, {} would be refused, {} audit, {} exempt, {} could not be evaluated\n",
        entries.len(),
        s["allowed"],
        s["refused"],
        s["audit"],
        s["exempt"],
        s["error"]
    ));
    out
}

pub fn to_json(entries: &[Entry], policy: &str) -> Value {
    let containers: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut v = e.decision.to_json();
            if let Some(o) = v.as_object_mut() {
                o.remove("checks");
                o.insert(
                    "runtime".into(),
                    runtime_name(e.decision.identity.runtime).into(),
                );
                o.insert("bundle".into(), e.found.bundle.to_string_lossy().into());
            }
            v
        })
        .collect();
    json!({"policy": policy, "summary": summary(entries), "containers": containers})
}

/// 1 when any container would be refused or could not be evaluated, else 0.
pub fn exit_code(entries: &[Entry]) -> u8 {
    let bad = entries
        .iter()
        .any(|e| matches!(e.decision.enforce_kind(), Kind::Refused | Kind::Error));
    u8::from(bad)
}
