//! The node's own audit, continuously: every running container decided exactly as `pss-guard
//! audit` decides it (the `pss_guard` library's [`pss_guard::audit`], which calls the hook's own
//! `decide`), so each result is what the node would do at that container's next start.
//!
//! A pass runs at start, whenever the node's policy file or the namespace lines of the snapshot
//! change (a policy edit or a namespace's Pod Security labels), and every `interval`. Each
//! decision goes to the publisher as a record in the decision log's format (rendered by
//! `pss_guard::log`), with the source `audit`; a `refused` one is renamed `would_refuse`,
//! since nothing was refused: the container runs, and enforcement would refuse its next start.
//! After a pass the publisher learns which containers run, and drops the audit's results of
//! those that stopped.
//!
//! What it reads, all read-only below `--host-root`: the policy the hook reads, the snapshot (at
//! the agent's `--snapshot` path, the same file), and the running containers' bundles in the
//! runtime's state directory (containerd: `/run/containerd/io.containerd.runtime.v2.task`), as
//! `pss-guard audit --root` does. Never containerd's socket: the CRI view is not asked, the spec
//! alone decides (`[cri] lookup = "off"`).

use std::collections::BTreeSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use tokio::sync::mpsc;

use crate::book::Source;
use crate::publish::Input;

/// How often the policy and snapshot are looked at for changes.
const POLL: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub struct AuditOptions {
    /// Where the host's root is mounted.
    pub root: PathBuf,
    /// The policy the hook reads (a path in the agent's view, under `root`).
    pub policy: PathBuf,
    /// The snapshot the hook reads (in the agent's view).
    pub snapshot: PathBuf,
    pub node: String,
    pub interval: Duration,
}

/// What a change of the inputs is seen by: the policy file's bytes, and the snapshot's
/// namespace lines (its header's `written` moves on every refresh and is left out).
fn fingerprint(o: &AuditOptions) -> u64 {
    let mut h = DefaultHasher::new();
    std::fs::read(&o.policy).unwrap_or_default().hash(&mut h);
    let snap = std::fs::read_to_string(&o.snapshot).unwrap_or_default();
    snap.split_once('\n')
        .map_or("", |(_, rest)| rest)
        .hash(&mut h);
    h.finish()
}

/// One pass: the records of every running container, and the (namespace, pod, container) set.
pub fn pass(o: &AuditOptions) -> (Vec<Value>, BTreeSet<(String, String, String)>) {
    let (mut policy, policy_error) = pss_guard::config::Policy::load_or_default(&o.policy);
    if let Some(e) = policy_error {
        eprintln!("pss-guard-agent: node audit: {e}");
    }
    // The snapshot the hook reads, at its path in this pod (the policy names the host's).
    policy.snapshot.path = o.snapshot.clone();
    // The agent is never given containerd's socket (it is root on the node): the spec alone
    // decides, as with `[cri] lookup = "off"`; a `required` lookup would make every container
    // an error here.
    policy.cri.lookup = pss_guard::config::CriLookup::Off;
    let paths = &policy.paths;
    let found = pss_guard::audit::find(
        &o.root,
        &paths.containerd_state,
        &paths.crio_runroot,
        &paths.crio_root,
    );
    let entries = pss_guard::audit::audit(&policy, found, None);
    let time = pss_guard::time::rfc3339(SystemTime::now());
    let mut records = Vec::new();
    let mut running = BTreeSet::new();
    for e in entries {
        let line = pss_guard::log::render(&e.decision, &o.node, time.clone());
        let Ok(Value::Object(mut rec)) = serde_json::from_slice::<Value>(&line) else {
            continue;
        };
        if rec.get("decision").and_then(Value::as_str) == Some("refused") {
            rec.insert("decision".into(), Value::String("would_refuse".into()));
        }
        let s = |k: &str| rec.get(k).and_then(Value::as_str).map(str::to_owned);
        if let (Some(ns), Some(pod), Some(c)) = (s("namespace"), s("pod"), s("container")) {
            running.insert((ns, pod, c));
        }
        records.push(Value::Object(rec));
    }
    (records, running)
}

/// Runs forever on its own thread.
pub fn run(o: &AuditOptions, tx: &mpsc::Sender<Input>) {
    let mut last: Option<(u64, Instant)> = None;
    loop {
        let fp = fingerprint(o);
        let due = match last {
            None => true,
            Some((f, at)) => f != fp || at.elapsed() >= o.interval,
        };
        if due {
            let (records, running) = pass(o);
            for r in records {
                if tx.blocking_send(Input::Record(r, Source::Audit)).is_err() {
                    return;
                }
            }
            if tx.blocking_send(Input::AuditDone(running)).is_err() {
                return;
            }
            last = Some((fp, Instant::now()));
        }
        std::thread::sleep(POLL);
    }
}

/// The policy's path in the agent's view: `dest` when the agent syncs it, else the hook's
/// default path under the host root.
pub fn policy_path(root: &Path, synced: Option<&Path>) -> PathBuf {
    synced.map_or_else(
        || root.join(pss_guard::config::DEFAULT_POLICY_PATH.trim_start_matches('/')),
        Path::to_path_buf,
    )
}
