//! The policy ConfigMap, mounted in the agent's pod, copied to the host path the hook reads,
//! without a rollout restart. The kubelet updates a ConfigMap volume by swapping a symlink
//! (`..data`), so the source is simply re-read every poll and compared with what was last seen.
//! While the source stays the same, the destination is compared with what was last installed:
//! a policy file deleted or edited on the host is written again (the ConfigMap is the one
//! source of the policy on a node that runs the agent), counted in
//! `pss_guard_policy_restored_total`.
//!
//! A changed source is written to a temp file beside the destination and loaded from there with
//! the hook's own parser (`pss_guard::config::Policy::load`): the bytes that are checked are the
//! bytes that are renamed into place. A source that does not load leaves the destination as it
//! was (the last good policy stays in force), is logged once per change, counted, and shown by
//! `pss_guard_policy_source_valid 0` and `/readyz`'s text.
//!
//! A TOML policy gets this node's `[paths]` before it is checked and written
//! (`pss_guard::install::paths::apply` with the directories containerd's and CRI-O's own configs
//! name, as the installer does): one ConfigMap serves every node, but a node whose containerd
//! keeps its `root`/`state` elsewhere (k3s, RKE2, custom images) would otherwise see every pod's
//! `/etc/hosts` and `resolv.conf` as host paths and refuse every pod. A PodSecurityConfiguration
//! (YAML) has no `[paths]`: it is installed as it is; the node file carries the directories.
//!
//! Fragments (`exempt-*.toml` keys of the same ConfigMap) are merged into the policy first
//! (`pss_guard::config::compose`), and the node file beside the destination
//! (`pss_guard::config::NodeFile`: this DaemonSet's namespace, containerd's default handler,
//! the runtime's directories) is kept in step with the node on every poll.

use std::path::PathBuf;
use std::time::Duration;

use crate::fsutil;
use crate::status::Shared;

#[derive(Clone, Debug)]
pub struct PolicySyncOptions {
    pub source: PathBuf,
    pub dest: PathBuf,
    pub poll: Duration,
    /// The host's root as mounted in the pod, and containerd's config as the host names it:
    /// where this node's runtime directories are read from.
    pub host_root: PathBuf,
    pub containerd_config: PathBuf,
    /// This DaemonSet's namespace, for the node file.
    pub own_namespace: Option<String>,
}

/// What one look at the source did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    /// The source loads; the destination now holds it (`true` if it was written).
    Synced(bool),
    Invalid,
    Failed,
}

pub struct PolicySync {
    opts: PolicySyncOptions,
    last_seen: Option<Vec<u8>>,
    /// The bytes last installed at the destination (a policy that loaded).
    installed: Option<Vec<u8>>,
    last_failure: Option<String>,
    /// The `[paths]` lines last logged, so a change is logged once.
    last_paths: Vec<String>,
}

/// What this node says of itself, for the node file.
pub fn node_file(
    host_root: &std::path::Path,
    containerd_config: &std::path::Path,
    own_namespace: Option<&str>,
) -> pss_guard::config::NodeFile {
    let config = std::fs::read_to_string(pss_guard::install::files::under(
        host_root,
        containerd_config,
    ))
    .ok();
    pss_guard::config::NodeFile {
        own_namespace: own_namespace.map(str::to_owned),
        default_runtime_handler: Some(match &config {
            Some(text) => pss_guard::install::containerd::default_handler_of(text),
            None => pss_guard::install::containerd::DEFAULT_HANDLER.to_owned(),
        }),
        paths: pss_guard::install::paths::for_host(host_root, containerd_config),
    }
}

/// The source with the fragments beside it merged in; text that does not compose is returned
/// as it is, for the load to report.
pub fn composed(source: &std::path::Path, bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    let Ok(text) = String::from_utf8(bytes.clone()) else {
        return Ok(bytes);
    };
    let dir = source.parent().unwrap_or(std::path::Path::new("."));
    let fragments = pss_guard::config::fragments_in(dir).map_err(|e| {
        format!(
            "fragments in {}: {}",
            dir.display(),
            pss_guard::error::chain_of(&e)
        )
    })?;
    pss_guard::config::compose(&text, &fragments)
        .map(String::into_bytes)
        .map_err(|e| pss_guard::error::chain_of(&e))
}

/// What is written for a source: a TOML policy with this node's `[paths]`, anything else (a
/// PodSecurityConfiguration, or text that does not parse, which the load then reports) as it is.
pub fn with_node_paths(
    bytes: &[u8],
    host_root: &std::path::Path,
    containerd_config: &std::path::Path,
) -> (Vec<u8>, Vec<String>) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return (bytes.to_vec(), Vec::new());
    };
    let runtime = pss_guard::install::paths::for_host(host_root, containerd_config);
    match pss_guard::install::paths::apply(text, &runtime) {
        Some((t, details)) => (t.into_bytes(), details),
        None => (bytes.to_vec(), Vec::new()),
    }
}

impl PolicySync {
    pub fn new(opts: PolicySyncOptions) -> PolicySync {
        PolicySync {
            opts,
            last_seen: None,
            installed: None,
            last_failure: None,
            last_paths: Vec::new(),
        }
    }

    fn fail(&mut self, shared: &Shared, msg: String) -> Outcome {
        if self.last_failure.as_deref() != Some(msg.as_str()) {
            eprintln!("pss-guard-agent: policy sync: {msg}");
        }
        let mut st = shared.status();
        if let Some(p) = st.policy.as_mut() {
            p.errors += 1;
            p.last_error = Some(msg.clone());
        }
        self.last_failure = Some(msg);
        Outcome::Failed
    }

    /// Looks at the source once.
    pub fn step(&mut self, shared: &Shared) -> Outcome {
        self.sync_node_file(shared);
        let (src, dest) = (&self.opts.source, &self.opts.dest);
        let bytes = match std::fs::read(src) {
            Ok(b) => b,
            Err(e) => {
                let msg = format!("reading {}: {e}", src.display());
                return self.fail(shared, msg);
            }
        };
        let bytes = match composed(src, bytes) {
            Ok(b) => b,
            Err(e) => {
                let msg = format!(
                    "{}: {e}; the last good policy at {} stays in force",
                    src.display(),
                    dest.display()
                );
                return self.fail(shared, msg);
            }
        };
        let (out, details) =
            with_node_paths(&bytes, &self.opts.host_root, &self.opts.containerd_config);
        if details != self.last_paths {
            for d in &details {
                eprintln!("pss-guard-agent: policy sync: {d}");
            }
            self.last_paths = details;
        }
        // What would be written: a changed source, or a runtime config that moved its
        // directories, is a change.
        if self.last_seen.as_ref() == Some(&out) {
            // The source is as it was: the destination must still hold what was installed (also
            // while the source does not load: then the last good policy is put back).
            let Some(good) = self.installed.clone() else {
                return Outcome::Unchanged;
            };
            if std::fs::read(dest).ok().as_ref() == Some(&good) {
                return Outcome::Unchanged;
            }
            eprintln!(
                "pss-guard-agent: policy sync: {} was removed or changed on the host while the ConfigMap was not: installing the last good policy again",
                dest.display()
            );
            if let Some(p) = shared.status().policy.as_mut() {
                p.restored += 1;
            }
            return self.install(shared, good, true);
        }
        self.install(shared, out, false)
    }

    /// Checks `out` with the hook's parser and renames it onto the destination. `restoring`: it
    /// is the last good policy put back, and says nothing new about the source.
    fn install(&mut self, shared: &Shared, out: Vec<u8>, restoring: bool) -> Outcome {
        let (src, dest) = (&self.opts.source, &self.opts.dest);
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty())
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            let msg = format!("creating {}: {e}", dir.display());
            return self.fail(shared, msg);
        }
        let tmp = fsutil::temp_path(dest);
        if let Err(e) = fsutil::write_temp(&tmp, &out, 0o644) {
            let _ = std::fs::remove_file(&tmp);
            let msg = format!("writing {}: {e}", tmp.display());
            return self.fail(shared, msg);
        }
        if let Err(e) = pss_guard::config::Policy::load(&tmp) {
            let _ = std::fs::remove_file(&tmp);
            if restoring {
                let msg = format!(
                    "the last good policy no longer loads, {} left as it is: {}",
                    dest.display(),
                    pss_guard::error::chain_of(&e)
                );
                return self.fail(shared, msg);
            }
            let msg = format!(
                "{} does not load, the last good policy at {} stays in force: {}",
                src.display(),
                dest.display(),
                pss_guard::error::chain_of(&e)
            );
            eprintln!("pss-guard-agent: policy sync: {msg}");
            self.last_seen = Some(out.clone());
            self.last_failure = None;
            let mut st = shared.status();
            if let Some(p) = st.policy.as_mut() {
                p.invalid += 1;
                p.source_valid = Some(false);
                p.last_error = Some(msg);
            }
            return Outcome::Invalid;
        }
        let written = if std::fs::read(dest).ok().as_ref() == Some(&out) {
            let _ = std::fs::remove_file(&tmp);
            false
        } else if let Err(e) = fsutil::commit(&tmp, dest) {
            let msg = format!("renaming onto {}: {e}", dest.display());
            return self.fail(shared, msg);
        } else {
            eprintln!(
                "pss-guard-agent: policy sync: {} installed at {}",
                src.display(),
                dest.display()
            );
            true
        };
        self.last_failure = None;
        let mut st = shared.status();
        if let Some(p) = st.policy.as_mut() {
            p.synced += u64::from(written);
            if !restoring {
                p.source_valid = Some(true);
                p.last_error = None;
            }
        }
        if !restoring {
            self.last_seen = Some(out.clone());
        }
        self.installed = Some(out);
        Outcome::Synced(written)
    }

    /// Writes the node file beside the destination when what the node says has changed.
    fn sync_node_file(&mut self, shared: &Shared) {
        let path = self
            .opts
            .dest
            .with_file_name(pss_guard::config::NODE_FILE_NAME);
        let want = node_file(
            &self.opts.host_root,
            &self.opts.containerd_config,
            self.opts.own_namespace.as_deref(),
        )
        .render()
        .into_bytes();
        if std::fs::read(&path).ok().as_ref() == Some(&want) {
            return;
        }
        let tmp = fsutil::temp_path(&path);
        let written =
            fsutil::write_temp(&tmp, &want, 0o644).and_then(|()| fsutil::commit(&tmp, &path));
        match written {
            Ok(()) => eprintln!(
                "pss-guard-agent: policy sync: node file {} written",
                path.display()
            ),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                let msg = format!("writing node file {}: {e}", path.display());
                self.fail(shared, msg);
            }
        }
    }

    /// Runs forever on its own thread.
    pub fn run(mut self, shared: &Shared) {
        loop {
            self.step(shared);
            std::thread::sleep(self.opts.poll);
        }
    }
}
