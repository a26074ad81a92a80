//! What the agent's parts report about themselves, read by `/metrics` and `/readyz`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;

/// A watch that reported an error within this window is not healthy. kube-runtime's default
/// backoff retries at most every 30 s, so a watch that keeps failing stays unhealthy.
pub const WATCH_ERROR_WINDOW: Duration = Duration::from_secs(90);

#[derive(Debug, Default)]
pub struct Follower {
    pub up: bool,
    pub errors: u64,
    pub last_error: Option<String>,
    pub rotations: u64,
    pub truncations: u64,
    /// Failed writes of the log position file.
    pub position_errors: u64,
}

#[derive(Debug, Default)]
pub struct Watch {
    /// The initial list (or the last relist) completed.
    pub listed: bool,
    pub errors: u64,
    pub last_error: Option<(Instant, String)>,
    pub relists: u64,
    pub objects: usize,
}

impl Watch {
    pub fn healthy(&self, now: Instant) -> bool {
        self.listed
            && self
                .last_error
                .as_ref()
                .is_none_or(|(t, _)| now.duration_since(*t) > WATCH_ERROR_WINDOW)
    }
}

#[derive(Debug, Default)]
pub struct Snapshot {
    pub writes: u64,
    pub write_errors: u64,
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
pub struct PolicySync {
    pub synced: u64,
    /// Times the destination was found removed or changed on the host and written again.
    pub restored: u64,
    pub invalid: u64,
    pub errors: u64,
    /// Whether the source as last read parses; `None` before the first read.
    pub source_valid: Option<bool>,
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
pub struct Status {
    pub follower: Follower,
    /// `None` with `--no-watch`.
    pub watches: Option<BTreeMap<&'static str, Watch>>,
    pub snapshot: Snapshot,
    /// `None` without `--policy-source`.
    pub policy: Option<PolicySync>,
    /// `None` without `--health`; `Some(None)` before the first check.
    pub health: Option<Option<pss_guard::health::Report>>,
}

/// Everything the agent's threads and tasks share.
#[derive(Debug)]
pub struct Shared {
    pub metrics: Mutex<Metrics>,
    pub status: Mutex<Status>,
    /// The snapshot the hook reads (for its age), or `None` when this agent does not own one.
    pub snapshot_path: Option<PathBuf>,
    /// Where decision records go for the reports and Events, when they are published.
    publisher: OnceLock<tokio::sync::mpsc::Sender<crate::publish::Input>>,
}

impl Shared {
    pub fn new(
        snapshot_path: Option<PathBuf>,
        watching: bool,
        policy_sync: bool,
        health: bool,
    ) -> Shared {
        let status = Status {
            watches: watching.then(|| {
                crate::snapshot::RESOURCES
                    .iter()
                    .map(|r| (*r, Watch::default()))
                    .collect()
            }),
            policy: policy_sync.then(PolicySync::default),
            health: health.then_some(None),
            ..Status::default()
        };
        Shared {
            metrics: Mutex::new(Metrics::default()),
            status: Mutex::new(status),
            snapshot_path,
            publisher: OnceLock::new(),
        }
    }

    /// Sends every record the follower reads on to `tx` (the publisher) from now on.
    pub fn set_publisher(&self, tx: tokio::sync::mpsc::Sender<crate::publish::Input>) {
        self.metrics().publish.enabled = true;
        let _ = self.publisher.set(tx);
    }

    /// Hands one decision record to the publisher, if there is one. Never blocks: when the
    /// publisher is that far behind, the record is dropped and counted.
    pub fn publish(&self, rec: &serde_json::Value) {
        if let Some(tx) = self.publisher.get() {
            let input = crate::publish::Input::Record(rec.clone(), crate::book::Source::Hook);
            if tx.try_send(input).is_err() {
                self.metrics().publish.records_dropped += 1;
            }
        }
    }

    /// A poisoned lock still holds consistent counters: every update is a few field writes.
    pub fn metrics(&self) -> MutexGuard<'_, Metrics> {
        self.metrics.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn status(&self) -> MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `/readyz`: the follower streams, every watch has listed and is not failing, and (with
    /// `--health`) the hook is wired on the host: a node where pods would start unchecked, or
    /// all be refused on the fallback policy, is not ready. The
    /// policy sync does not count: a broken ConfigMap leaves the last good policy in force,
    /// which is reported as a metric, not fixed by restarting the pod.
    pub fn readiness(&self) -> (bool, String) {
        let now = Instant::now();
        let st = self.status();
        let mut ready = st.follower.up;
        let mut body = format!(
            "log follower: {}\n",
            if st.follower.up {
                "up".to_owned()
            } else {
                format!(
                    "down ({})",
                    st.follower.last_error.as_deref().unwrap_or("starting")
                )
            }
        );
        match &st.watches {
            None => body.push_str("watches: off (--no-watch)\n"),
            Some(ws) => {
                for (name, w) in ws {
                    let ok = w.healthy(now);
                    ready &= ok;
                    let state = match (&w.last_error, w.listed) {
                        _ if ok => "listed".to_owned(),
                        (Some((_, e)), _) => format!("failing ({e})"),
                        (None, false) => "initial list not done".to_owned(),
                        (None, true) => "listed".to_owned(),
                    };
                    body.push_str(&format!("watch {name}: {state}\n"));
                }
            }
        }
        if let Some(p) = &st.policy {
            body.push_str(&format!(
                "policy sync: {}\n",
                match p.source_valid {
                    Some(true) => "source valid".to_owned(),
                    Some(false) => format!(
                        "source INVALID, last good policy kept ({})",
                        p.last_error.as_deref().unwrap_or("")
                    ),
                    None => "not read yet".to_owned(),
                }
            ));
        }
        match &st.health {
            None => {}
            Some(None) => {
                ready = false;
                body.push_str("hook health: not checked yet\n");
            }
            Some(Some(r)) => {
                ready &= r.healthy;
                for line in r.render_text().lines() {
                    body.push_str("hook ");
                    body.push_str(line.trim_end());
                    body.push('\n');
                }
            }
        }
        (ready, body)
    }
}
