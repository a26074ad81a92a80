//! Namespaces and RuntimeClasses, watched with kube-runtime, into the snapshot file the hook
//! reads on every container start:
//!
//! in the format `pss_guard::snapshot` defines and reads (a header line with `written` and the
//! RuntimeClasses, then one line per namespace sorted by name, which the hook binary-searches).
//!
//! Every namespace is present (an unlabeled one as `{}`, so the hook can tell "no labels" from
//! "not known yet"); of its labels only the six Pod Security Admission reads are kept
//! (`pss_guard::psa::LABELS`), each value cut to the API server's own limit of 63 bytes, so no
//! namespace's line can outgrow what the hook reads (one namespace's labels must never decide how
//! another resolves); RuntimeClasses map to their `handler`, the name the runtime (and so the
//! hook) sees. Keys are sorted.
//!
//! The header also carries the API server's version (`GET /version`, as `v1.N`), asked for at
//! start and again every `refresh`: Pod Security Admission evaluates `latest` at the API server's
//! own version, and so does the hook when the snapshot names it. Without an answer the snapshot
//! is still written, without the version.
//!
//! Namespaces are watched as `PartialObjectMetadata` (labels are metadata; the agent never reads a
//! namespace's spec or status), RuntimeClasses whole (`handler` is a top-level field; they are
//! few and small). RBAC: `list` and `watch` on `namespaces` and `runtimeclasses.node.k8s.io`.
//!
//! The file is written (temp file, fsync, rename, mode 0644) only once both initial lists have
//! completed, then whenever its content changes and, while both watches are healthy, at least
//! every `refresh` so `written` tells the hook the agent is alive. A relist (after a watch expired
//! with 410 Gone) replaces the known objects only when it completes. On errors the last file
//! stays: the agent never deletes it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde::Serialize;
use tokio::sync::Notify;

use crate::status::Shared;

pub const NAMESPACES: &str = "namespaces";
pub const RUNTIME_CLASSES: &str = "runtimeclasses";
pub const RESOURCES: [&str; 2] = [NAMESPACES, RUNTIME_CLASSES];
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// Wait before trying again to build an API client from the environment.
const CLIENT_RETRY: Duration = Duration::from_secs(10);

/// The objects of one resource as the watch knows them.
#[derive(Debug)]
pub struct Tracked<V> {
    pub live: BTreeMap<String, V>,
    /// Objects of a list in progress; they replace `live` when it completes.
    pending: Option<BTreeMap<String, V>>,
    pub listed: bool,
}

impl<V> Default for Tracked<V> {
    fn default() -> Self {
        Tracked {
            live: BTreeMap::new(),
            pending: None,
            listed: false,
        }
    }
}

impl<V: PartialEq> Tracked<V> {
    /// Applies one watcher event; `entry` gives an object's name and what is kept of it.
    /// Returns whether a list just completed (`InitDone`).
    pub fn apply<K>(&mut self, ev: Event<K>, entry: impl Fn(&K) -> Option<(String, V)>) -> bool {
        match ev {
            Event::Init => self.pending = Some(BTreeMap::new()),
            Event::InitApply(k) => {
                if let (Some(p), Some((name, v))) = (self.pending.as_mut(), entry(&k)) {
                    p.insert(name, v);
                }
            }
            Event::InitDone => {
                self.live = self.pending.take().unwrap_or_default();
                self.listed = true;
                return true;
            }
            Event::Apply(k) => {
                if let Some((name, v)) = entry(&k) {
                    self.live.insert(name, v);
                }
            }
            Event::Delete(k) => {
                if let Some((name, _)) = entry(&k) {
                    self.live.remove(&name);
                }
            }
        }
        false
    }
}

#[derive(Debug, Default)]
pub struct Cluster {
    pub namespaces: Tracked<BTreeMap<String, String>>,
    pub runtime_classes: Tracked<String>,
    /// The API server's version, `v1.N`, once it has answered.
    pub kubernetes_version: Option<String>,
    /// Bumped by every event, so the writer renders only after a change or when a refresh
    /// is due.
    pub generation: u64,
}

#[derive(Serialize)]
struct Content<'a> {
    namespaces: &'a BTreeMap<String, BTreeMap<String, String>>,
    runtime_classes: &'a BTreeMap<String, String>,
    kubernetes_version: Option<&'a str>,
}

impl Cluster {
    /// The file's bytes, or `None` while an initial list has not completed.
    fn render(&self, written: SystemTime) -> Option<(Vec<u8>, Vec<u8>)> {
        if !(self.namespaces.listed && self.runtime_classes.listed) {
            return None;
        }
        let content = Content {
            namespaces: &self.namespaces.live,
            runtime_classes: &self.runtime_classes.live,
            kubernetes_version: self.kubernetes_version.as_deref(),
        };
        let key = serde_json::to_vec(&content).ok()?;
        let file = pss_guard::snapshot::render(
            written,
            pss_guard::snapshot::Cluster {
                namespaces: content.namespaces,
                runtime_classes: content.runtime_classes,
                kubernetes_version: content.kubernetes_version,
            },
        );
        Some((key, file))
    }
}

/// A namespace's Pod Security labels: only those admission reads, values bounded.
pub fn namespace_entry(
    ns: &PartialObjectMeta<Namespace>,
) -> Option<(String, BTreeMap<String, String>)> {
    let name = ns.metadata.name.clone()?;
    let all = ns.metadata.labels.as_ref();
    let labels = pss_guard::psa::LABELS
        .iter()
        .filter_map(|k| {
            let v = all?.get(*k)?;
            Some(((*k).to_owned(), pss_guard::psa::bounded_value(v).to_owned()))
        })
        .collect();
    Some((name, labels))
}

/// `v1.N` from the API server's `/version`: `minor` may carry a suffix (`"34+"` on managed
/// clusters); `None` for anything else.
pub fn kubernetes_version(info: &k8s_openapi::apimachinery::pkg::version::Info) -> Option<String> {
    if info.major.trim_end_matches('+') != "1" {
        return None;
    }
    let digits: String = info
        .minor
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let minor: u32 = digits.parse().ok()?;
    Some(format!("v1.{minor}"))
}

pub fn runtime_class_entry(rc: &RuntimeClass) -> Option<(String, String)> {
    Some((rc.metadata.name.clone()?, rc.handler.clone()))
}

pub struct Watcher {
    pub path: PathBuf,
    pub refresh: Duration,
    pub shared: Arc<Shared>,
    cluster: Mutex<Cluster>,
    changed: Notify,
}

impl Watcher {
    pub fn new(path: PathBuf, refresh: Duration, shared: Arc<Shared>) -> Arc<Watcher> {
        Arc::new(Watcher {
            path,
            refresh,
            shared,
            cluster: Mutex::new(Cluster::default()),
            changed: Notify::new(),
        })
    }

    fn cluster(&self) -> MutexGuard<'_, Cluster> {
        self.cluster.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record_error(&self, resource: &'static str, msg: String) {
        eprintln!("pss-guard-agent: watch {resource}: {msg}");
        if let Some(w) = self
            .shared
            .status()
            .watches
            .as_mut()
            .and_then(|ws| ws.get_mut(resource))
        {
            w.errors += 1;
            w.last_error = Some((Instant::now(), msg));
        }
    }

    fn record_event(&self, resource: &'static str, relisted: bool, objects: usize) {
        if let Some(w) = self
            .shared
            .status()
            .watches
            .as_mut()
            .and_then(|ws| ws.get_mut(resource))
        {
            if relisted {
                w.listed = true;
                w.relists += 1;
            }
            w.last_error = None;
            w.objects = objects;
        }
        self.changed.notify_one();
    }

    /// Builds the API client from the environment (in-cluster service account, or `KUBECONFIG`)
    /// and runs both watches and the writer, forever.
    pub async fn run(self: Arc<Self>) {
        let client = loop {
            match kube::Client::try_default().await {
                Ok(c) => break c,
                Err(e) => {
                    for r in RESOURCES {
                        self.record_error(r, format!("building the API client: {e}"));
                    }
                    tokio::time::sleep(CLIENT_RETRY).await;
                }
            }
        };
        let ns = tokio::spawn(Arc::clone(&self).supervise(NAMESPACES, client.clone()));
        let rc = tokio::spawn(Arc::clone(&self).supervise(RUNTIME_CLASSES, client.clone()));
        let v = tokio::spawn(Arc::clone(&self).follow_version(client));
        let w = tokio::spawn(Arc::clone(&self).write_loop());
        let _ = tokio::join!(ns, rc, v, w);
    }

    /// Asks the API server for its version now and every `refresh` (a cluster is upgraded
    /// under a running agent), retrying sooner while it does not answer.
    async fn follow_version(self: Arc<Self>, client: kube::Client) {
        loop {
            let wait = match client.apiserver_version().await {
                Ok(info) => {
                    let v = kubernetes_version(&info);
                    if v.is_none() {
                        eprintln!(
                            "pss-guard-agent: the API server's version {:?}.{:?} is not 1.N; the snapshot names none",
                            info.major, info.minor
                        );
                    }
                    let mut c = self.cluster();
                    if c.kubernetes_version != v {
                        c.kubernetes_version = v;
                        c.generation += 1;
                        drop(c);
                        self.changed.notify_one();
                    }
                    self.refresh
                }
                Err(e) => {
                    eprintln!(
                        "pss-guard-agent: asking the API server's version: {}",
                        pss_guard::error::chain_of(&e)
                    );
                    CLIENT_RETRY.min(self.refresh)
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Runs one watch and starts it again if it ever ends or panics (a watcher stream does not
    /// end by itself): a dead watch must show as failing, not as the last state it reported.
    async fn supervise(self: Arc<Self>, resource: &'static str, client: kube::Client) {
        loop {
            let me = Arc::clone(&self);
            let c = client.clone();
            let task = if resource == NAMESPACES {
                tokio::spawn(me.watch_namespaces(c))
            } else {
                tokio::spawn(me.watch_runtime_classes(c))
            };
            let why = match task.await {
                Ok(()) => "the watch stream ended".to_owned(),
                Err(e) => format!("the watch task failed: {e}"),
            };
            self.record_error(resource, why);
            tokio::time::sleep(CLIENT_RETRY).await;
        }
    }

    async fn watch_namespaces(self: Arc<Self>, client: kube::Client) {
        let api: Api<PartialObjectMeta<Namespace>> = Api::all(client);
        let mut events = pin!(watcher(api, list_config()).default_backoff());
        while let Some(ev) = events.next().await {
            match ev {
                Ok(ev) => {
                    let mut c = self.cluster();
                    let relisted = c.namespaces.apply(ev, namespace_entry);
                    c.generation += 1;
                    let n = c.namespaces.live.len();
                    drop(c);
                    self.record_event(NAMESPACES, relisted, n);
                }
                Err(e) => self.record_error(NAMESPACES, pss_guard::error::chain_of(&e)),
            }
        }
    }

    async fn watch_runtime_classes(self: Arc<Self>, client: kube::Client) {
        let api: Api<RuntimeClass> = Api::all(client);
        let mut events = pin!(watcher(api, list_config()).default_backoff());
        while let Some(ev) = events.next().await {
            match ev {
                Ok(ev) => {
                    let mut c = self.cluster();
                    let relisted = c.runtime_classes.apply(ev, runtime_class_entry);
                    c.generation += 1;
                    let n = c.runtime_classes.live.len();
                    drop(c);
                    self.record_event(RUNTIME_CLASSES, relisted, n);
                }
                Err(e) => self.record_error(RUNTIME_CLASSES, pss_guard::error::chain_of(&e)),
            }
        }
    }

    fn healthy(&self) -> bool {
        let now = Instant::now();
        self.shared
            .status()
            .watches
            .as_ref()
            .is_some_and(|ws| ws.values().all(|w| w.healthy(now)))
    }

    async fn write_loop(self: Arc<Self>) {
        // (content without `written`, generation rendered, when written)
        let mut last: Option<(Vec<u8>, u64, Instant)> = None;
        let mut warned = false;
        loop {
            tokio::select! {
                _ = self.changed.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            // The hook reads `written` to judge staleness; say here too why it stopped moving.
            if let Some((_, _, at)) = &last {
                let stale = at.elapsed() >= 2 * self.refresh;
                if stale && !warned {
                    eprintln!(
                        "pss-guard-agent: snapshot {} not refreshed for {} s: the watches are failing, the hook keeps the last snapshot",
                        self.path.display(),
                        at.elapsed().as_secs()
                    );
                }
                warned = stale;
            }
            let refresh_due = last
                .as_ref()
                .is_some_and(|(_, _, at)| at.elapsed() >= self.refresh && self.healthy());
            let (rendered, generation) = {
                let c = self.cluster();
                if !refresh_due && last.as_ref().is_some_and(|(_, g, _)| *g == c.generation) {
                    continue;
                }
                (c.render(SystemTime::now()), c.generation)
            };
            let Some((key, file)) = rendered else {
                continue;
            };
            let changed = last.as_ref().is_none_or(|(k, _, _)| *k != key);
            if !changed && !refresh_due {
                last = last.map(|(k, _, at)| (k, generation, at));
                continue;
            }
            let path = self.path.clone();
            let res = tokio::task::spawn_blocking(move || {
                crate::fsutil::write_atomic(&path, &file, 0o644)
            })
            .await;
            let mut st = self.shared.status();
            match res {
                Ok(Ok(())) => {
                    st.snapshot.writes += 1;
                    st.snapshot.last_error = None;
                    last = Some((key, generation, Instant::now()));
                }
                Ok(Err(e)) => {
                    let msg = format!("writing snapshot {}: {e}", self.path.display());
                    eprintln!("pss-guard-agent: {msg}");
                    st.snapshot.write_errors += 1;
                    st.snapshot.last_error = Some(msg);
                }
                Err(e) => {
                    st.snapshot.write_errors += 1;
                    st.snapshot.last_error = Some(e.to_string());
                }
            }
        }
    }
}

/// Lists are served from the API server's watch cache (`resourceVersion=0`) rather than a quorum
/// read from etcd: every node runs an agent, and a snapshot that is a moment behind is corrected
/// by the watch that follows. Pagination does not apply to such lists.
fn list_config() -> watcher::Config {
    watcher::Config::default().any_semantic()
}

/// `kube::runtime::watcher` with the imports in one place.
fn watcher<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl futures_util::Stream<Item = watcher::Result<Event<K>>> + Send
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher::watcher(api, config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn ns(name: &str, labels: &[(&str, &str)]) -> PartialObjectMeta<Namespace> {
        PartialObjectMeta {
            types: None,
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            _phantom: std::marker::PhantomData,
        }
    }

    #[test]
    fn only_the_labels_admission_reads_are_kept_with_bounded_values() {
        let long = "é".repeat(100);
        let (name, labels) = namespace_entry(&ns(
            "a",
            &[
                ("pod-security.kubernetes.io/enforce", "restricted"),
                ("pod-security.kubernetes.io/audit", &long),
                ("pod-security.kubernetes.io/x-1", "baseline"),
                ("team", "x"),
                ("pod-security.kubernetes.io.evil/enforce", "privileged"),
            ],
        ))
        .unwrap_or_default();
        assert_eq!(name, "a");
        assert_eq!(
            labels.into_iter().collect::<Vec<_>>(),
            vec![
                (
                    "pod-security.kubernetes.io/audit".to_owned(),
                    "é".repeat(31)
                ),
                (
                    "pod-security.kubernetes.io/enforce".to_owned(),
                    "restricted".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn the_api_servers_version_is_its_minor() {
        use k8s_openapi::apimachinery::pkg::version::Info;
        let info = |major: &str, minor: &str| Info {
            major: major.into(),
            minor: minor.into(),
            ..Info::default()
        };
        assert_eq!(
            kubernetes_version(&info("1", "34")).as_deref(),
            Some("v1.34")
        );
        assert_eq!(
            kubernetes_version(&info("1", "31+")).as_deref(),
            Some("v1.31")
        );
        assert_eq!(kubernetes_version(&info("2", "0")), None);
        assert_eq!(kubernetes_version(&info("1", "")), None);
    }

    #[test]
    fn nothing_is_rendered_before_both_lists_complete_and_a_relist_replaces_whole() {
        let mut c = Cluster::default();
        assert!(c.render(SystemTime::UNIX_EPOCH).is_none());
        c.namespaces.apply(Event::Init, namespace_entry);
        c.namespaces
            .apply(Event::InitApply(ns("old", &[])), namespace_entry);
        assert!(c.namespaces.apply(Event::InitDone, namespace_entry));
        assert!(
            c.render(SystemTime::UNIX_EPOCH).is_none(),
            "runtime classes not listed"
        );
        c.runtime_classes
            .apply(Event::<RuntimeClass>::Init, runtime_class_entry);
        c.runtime_classes
            .apply(Event::<RuntimeClass>::InitDone, runtime_class_entry);
        let (_, file) = c.render(SystemTime::UNIX_EPOCH).unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&file),
            "{\"schema\":2,\"written\":\"1970-01-01T00:00:00.000000Z\",\"runtime_classes\":{}}\n{\"namespace\":\"old\",\"labels\":{}}\n"
        );
        c.kubernetes_version = Some("v1.34".into());
        let (_, file) = c.render(SystemTime::UNIX_EPOCH).unwrap_or_default();
        assert!(
            String::from_utf8_lossy(&file).starts_with("{\"schema\":2,\"written\":\"1970-01-01T00:00:00.000000Z\",\"runtime_classes\":{},\"kubernetes_version\":\"v1.34\"}\n"),
            "{}",
            String::from_utf8_lossy(&file)
        );
        // A relist in progress leaves the known objects in force until it completes.
        c.namespaces.apply(Event::Init, namespace_entry);
        c.namespaces
            .apply(Event::InitApply(ns("new", &[])), namespace_entry);
        assert!(c.namespaces.live.contains_key("old"));
        c.namespaces.apply(Event::InitDone, namespace_entry);
        assert_eq!(c.namespaces.live.keys().collect::<Vec<_>>(), vec!["new"]);
        c.namespaces
            .apply(Event::Delete(ns("new", &[])), namespace_entry);
        assert!(c.namespaces.live.is_empty());
    }
}
