//! Publishes the node's decisions to the API server: PolicyReports (or OpenReports Reports) per
//! namespace, and Warning Events on refused pods and their controllers.
//!
//! **One report per namespace and node**, named `pss-guard-<node>`, labelled
//! `pss-guard.io/node=<node>`, written by server-side apply with this node's field manager
//! (`pss-guard-agent`) and `force`: only this node ever writes it, so apply is a create-or-update
//! in one call, with no read before it and no resourceVersion conflicts. One shared report per
//! namespace with a field owner per node does not work: wg-policy's CRD declares `results` an
//! atomic list (no `x-kubernetes-list-type: map`), so every node's apply would replace every
//! other node's results; and a shared object grows with the namespace's pods across all nodes
//! towards etcd's object size limit, while a node's report holds only that node's pods.
//!
//! **Bounded.** Every API call (report apply or delete, Event create or patch, owner lookup)
//! first waits its turn on one pacer: calls start at least `1 / --api-qps` seconds apart, so no
//! second ever holds more than `--api-qps` calls from this node. Decisions arriving while a call
//! waits are folded into the namespace's next write, so a burst costs one write per namespace,
//! not one per decision, and nothing is lost: the write carries the namespace's whole current
//! state. A report holds at most `--max-results` results (fails first); the rest are counted in
//! `pss_guard_report_results_dropped`. Events wait in a queue of at most [`EVENT_QUEUE`]; past it
//! they are dropped and counted. The kube client's own retry layer is off, so its retries cannot
//! bypass the pacer; a 429 (or 5xx) pauses every call, doubling up to [`MAX_PAUSE`].
//!
//! **Events** are folded as kubelet's recorder folds them ([`crate::correlator`]): repeats patch
//! the count of the first, a burst per object is capped, similar ones are combined. Each goes on
//! the Pod and on the pod's controller, found through the owner references: ReplicaSet →
//! Deployment, Job → CronJob, DaemonSet and StatefulSet directly (a `kubectl describe
//! deployment` then shows why its rollout stalls). Only the hook's decisions at container
//! starts make Events; the node audit's predictions go to the reports alone.
//!
//! **Cleanup.** A metadata-only watch of this node's Pods (`spec.nodeName=<node>`) drops the
//! results of a deleted pod at once, and a sweep drops those of pods the watch does not know
//! after [`GRACE`] (a record can arrive before the watch sees its pod). A namespace left
//! without results has its report deleted. At start the agent lists its own reports (by label)
//! and rewrites or deletes each, so results of pods gone while it was down do not linger.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{Api, DeleteParams, ListParams, PartialObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event as WatchEvent};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::book::{Book, Record, Source};
use crate::correlator::{Action, Correlator};
use crate::policyreport::{self, Flavour, OpenReports, PolicyReport, Timestamp, WgPolicy};
use crate::status::Shared;

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "pss-guard-agent";
/// The label naming the node that wrote a report.
pub const NODE_LABEL: &str = "pss-guard.io/node";
/// The records waiting for the publisher; past it the follower drops (and counts) them.
pub const CHANNEL: usize = 16384;
/// Events waiting for their API calls.
pub const EVENT_QUEUE: usize = 1024;
/// How long a pod unknown to the pod watch keeps its results.
pub const GRACE: Duration = Duration::from_secs(60);
/// How often pods gone from the node are swept.
const SWEEP: Duration = Duration::from_secs(10);
/// The longest pause after 429s and server errors.
pub const MAX_PAUSE: Duration = Duration::from_secs(32);
/// Wait before writing a namespace again after a write failed for it; doubled for each
/// failure in a row, up to [`CRD_RECHECK`].
const RETRY: Duration = Duration::from_secs(5);
/// How often a missing report API (its CRD not installed) is looked for again.
pub const CRD_RECHECK: Duration = Duration::from_secs(300);
const CLIENT_RETRY: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct PublishOptions {
    pub node: String,
    /// `None`: no reports (`--reports off`).
    pub reports: Option<policyreport::Api>,
    pub events: bool,
    pub qps: f64,
    pub max_results: usize,
}

/// What reaches the publisher.
#[derive(Debug)]
pub enum Input {
    Record(Value, Source),
    /// The node audit finished a pass; these (namespace, pod, container) run now.
    AuditDone(BTreeSet<(String, String, String)>),
    /// The pod watch saw a pod deleted.
    PodGone {
        namespace: String,
        name: String,
        uid: Option<String>,
    },
}

/// The report's name for a node: `pss-guard-<node>`, or a hash when that is too long.
pub fn report_name(node: &str) -> String {
    let name = format!("pss-guard-{node}");
    if name.len() <= 253 {
        name
    } else {
        format!("pss-guard-{:016x}", fnv1a(node.as_bytes()))
    }
}

fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A label value is at most 63 characters of `[A-Za-z0-9._-]`, alphanumeric at both ends.
fn label_value(v: &str) -> Option<&str> {
    let ok = !v.is_empty()
        && v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && v.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && v.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    ok.then_some(v)
}

/// Starts calls at least `1/qps` apart, and pauses them all after overload answers.
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    next: tokio::time::Instant,
    pause: Duration,
}

impl Pacer {
    pub fn new(qps: f64) -> Pacer {
        Pacer {
            interval: Duration::from_secs_f64(1.0 / qps.max(0.001)),
            next: tokio::time::Instant::now(),
            pause: Duration::ZERO,
        }
    }

    /// Waits until the next call may start.
    pub async fn ready(&mut self) {
        tokio::time::sleep_until(self.next).await;
        self.next = tokio::time::Instant::now().max(self.next) + self.interval;
    }

    /// After a 429 or a server error: no call for a while, longer each time in a row.
    pub fn overloaded(&mut self) {
        self.pause = (self.pause * 2).clamp(Duration::from_secs(1), MAX_PAUSE);
        self.next = self.next.max(tokio::time::Instant::now() + self.pause);
    }

    pub fn ok(&mut self) {
        self.pause = Duration::ZERO;
    }
}

/// What the pod watch knows of this node's pods: (namespace, name) → owner references.
#[derive(Debug, Default)]
pub struct Pods {
    pub listed: bool,
    pub pods: BTreeMap<(String, String), Vec<OwnerReference>>,
}

/// What a failed call means for the caller.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    NotFound,
    Conflict,
    /// 429 or a server error: paused; try again later.
    Overloaded,
    Other,
}

fn classify(e: &kube::Error) -> Failure {
    match e {
        kube::Error::Api(s) if s.code == 404 => Failure::NotFound,
        kube::Error::Api(s) if s.code == 409 => Failure::Conflict,
        kube::Error::Api(s) if s.code == 429 || s.code >= 500 => Failure::Overloaded,
        kube::Error::Api(_) => Failure::Other,
        // Connection failures: the server may be down or overloaded.
        _ => Failure::Overloaded,
    }
}

fn now_timestamp() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

fn now_time() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// An Event to write: on `object`, with this reason and message.
#[derive(Debug)]
enum EventJob {
    Emit {
        object: ObjectReference,
        reason: &'static str,
        message: String,
    },
    /// Find the controller of this pod and emit on it.
    Controller {
        namespace: String,
        pod: String,
        reason: &'static str,
        message: String,
    },
}

fn object_key(o: &ObjectReference) -> String {
    format!(
        "{}/{}/{}/{}",
        o.kind.as_deref().unwrap_or(""),
        o.namespace.as_deref().unwrap_or(""),
        o.name.as_deref().unwrap_or(""),
        o.uid.as_deref().unwrap_or("")
    )
}

fn owner_ref(namespace: &str, o: &OwnerReference) -> ObjectReference {
    ObjectReference {
        api_version: Some(o.api_version.clone()),
        kind: Some(o.kind.clone()),
        namespace: Some(namespace.to_owned()),
        name: Some(o.name.clone()),
        uid: Some(o.uid.clone()),
        ..ObjectReference::default()
    }
}

fn controller_of(refs: &[OwnerReference]) -> Option<&OwnerReference> {
    refs.iter().find(|o| o.controller == Some(true))
}

pub struct Publisher {
    opts: PublishOptions,
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Input>,
    tx: mpsc::Sender<Input>,
    book: Book,
    correlator: Correlator,
    events: VecDeque<EventJob>,
    pacer: Pacer,
    pods: Arc<Mutex<Pods>>,
    /// Resolved controllers by the uid of a pod's direct owner (`None`: the owner is the top).
    owners: BTreeMap<String, Option<ObjectReference>>,
    last_sweep: Instant,
    /// The report API answered the start-up list: reports may be written.
    adopted: bool,
    /// When to try that list again.
    recheck: Option<Instant>,
}

impl Publisher {
    /// The publisher and the sender its inputs go to (give it to [`Shared::set_publisher`]).
    pub fn new(opts: PublishOptions, shared: Arc<Shared>) -> (Publisher, mpsc::Sender<Input>) {
        let (tx, rx) = mpsc::channel(CHANNEL);
        let pacer = Pacer::new(opts.qps);
        (
            Publisher {
                opts,
                shared,
                rx,
                tx: tx.clone(),
                book: Book::default(),
                correlator: Correlator::default(),
                events: VecDeque::new(),
                pacer,
                pods: Arc::new(Mutex::new(Pods::default())),
                owners: BTreeMap::new(),
                last_sweep: Instant::now(),
                adopted: false,
                recheck: None,
            },
            tx,
        )
    }

    fn pods(&self) -> std::sync::MutexGuard<'_, Pods> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs until the inputs close.
    pub async fn run(mut self) {
        let client = loop {
            match client().await {
                Ok(c) => break c,
                Err(e) => {
                    eprintln!("pss-guard-agent: publisher: building the API client: {e}");
                    tokio::time::sleep(CLIENT_RETRY).await;
                }
            }
        };
        tokio::spawn(watch_pods(
            client.clone(),
            self.opts.node.clone(),
            Arc::clone(&self.pods),
            self.tx.clone(),
        ));
        loop {
            self.drain();
            if self.last_sweep.elapsed() >= SWEEP {
                self.sweep();
            }
            if self.opts.reports.is_some()
                && !self.adopted
                && self.recheck.is_none_or(|t| t <= Instant::now())
            {
                self.adopt(&client).await;
                continue;
            }
            if let Some(ns) = self.book.next_dirty()
                && self.adopted
            {
                self.write_report(&client, &ns).await;
                continue;
            }
            if self.opts.reports.is_none() {
                for n in self.book.namespaces.values_mut() {
                    n.dirty = None;
                }
            }
            if let Some(job) = self.events.pop_front() {
                self.run_event(&client, job).await;
                continue;
            }
            let wait = self
                .book
                .next_retry()
                .filter(|_| self.adopted)
                .map_or(SWEEP, |t| {
                    t.saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(10))
                });
            tokio::select! {
                m = self.rx.recv() => match m {
                    Some(i) => self.take(i),
                    None => return,
                },
                _ = tokio::time::sleep(wait.min(SWEEP)) => {}
            }
        }
    }

    /// Takes in everything waiting, without blocking.
    fn drain(&mut self) {
        while let Ok(i) = self.rx.try_recv() {
            self.take(i);
        }
    }

    fn take(&mut self, input: Input) {
        match input {
            Input::Record(v, source) => {
                let Some(rec) = Record::from_value(&v) else {
                    return;
                };
                self.book
                    .ingest(&rec, &self.opts.node, source, now_timestamp());
                if source == Source::Hook && self.opts.events {
                    self.queue_events(&rec);
                }
            }
            Input::AuditDone(running) => self.book.audit_done(&running),
            Input::PodGone {
                namespace,
                name,
                uid,
            } => {
                self.book.forget_pod(&namespace, &name, uid.as_deref());
            }
        }
    }

    fn queue_events(&mut self, rec: &Record) {
        let (Some(refusal), Some((ns, pod))) = (rec.refusal(), rec.pod_key()) else {
            return;
        };
        if self.events.len() + 2 > EVENT_QUEUE {
            self.shared.metrics().publish.events_dropped += 1;
            return;
        }
        let what = format!(
            "container {:?} {} (node {})",
            rec.container,
            rec.psa_message(),
            self.opts.node
        );
        self.events.push_back(EventJob::Emit {
            object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                namespace: Some(ns.to_owned()),
                name: Some(pod.to_owned()),
                uid: rec.pod_uid.clone().filter(|u| !u.is_empty()),
                ..ObjectReference::default()
            },
            reason: refusal.reason(),
            message: what.clone(),
        });
        self.events.push_back(EventJob::Controller {
            namespace: ns.to_owned(),
            pod: pod.to_owned(),
            reason: refusal.reason(),
            message: format!("pod {pod}: {what}"),
        });
    }

    /// Drops the results of pods the pod watch does not know (once it has listed).
    fn sweep(&mut self) {
        self.last_sweep = Instant::now();
        let Some(before) = Instant::now().checked_sub(GRACE) else {
            return;
        };
        let gone = {
            let pods = self.pods();
            if !pods.listed {
                return;
            }
            self.book.stale_pods(before, |ns, name, _| {
                pods.pods.contains_key(&(ns.to_owned(), name.to_owned()))
            })
        };
        for (ns, name) in gone {
            self.book.forget_pod(&ns, &name, None);
        }
    }

    /// Lists this node's reports left from before a restart, so each is rewritten or deleted.
    /// The list also tells whether the report API is served: without its CRD (404) no report
    /// is written, and the list is tried again after [`CRD_RECHECK`].
    async fn adopt(&mut self, client: &kube::Client) {
        let Some(api) = self.opts.reports else { return };
        let lp = match label_value(&self.opts.node) {
            Some(node) => ListParams::default().labels(&format!("{NODE_LABEL}={node}")),
            // No label to find them by (a node name longer than a label value): discovery only.
            None => ListParams::default().labels(&format!("{NODE_LABEL}=-")),
        };
        self.pacer.ready().await;
        self.count_call();
        let found = match api {
            policyreport::Api::WgPolicy => list_own::<WgPolicy>(client, &lp).await,
            policyreport::Api::OpenReports => list_own::<OpenReports>(client, &lp).await,
        };
        match found {
            Ok(nss) => {
                self.pacer.ok();
                self.adopted = true;
                self.shared.metrics().publish.reports_api = Some(true);
                for ns in nss {
                    self.book.adopt(&ns);
                }
            }
            Err(e) => {
                let f = classify(&e);
                let wait = if f == Failure::NotFound {
                    self.shared.metrics().publish.reports_api = Some(false);
                    CRD_RECHECK
                } else {
                    RETRY
                };
                eprintln!(
                    "pss-guard-agent: listing this node's reports ({}): {e}; no reports until it answers (next try in {}s)",
                    if f == Failure::NotFound {
                        "is the report CRD installed? see deploy/kubernetes/components/policyreport-crd"
                    } else {
                        "the API server did not answer"
                    },
                    wait.as_secs()
                );
                if f == Failure::Overloaded {
                    self.pacer.overloaded();
                }
                self.recheck = Some(Instant::now() + wait);
            }
        }
    }

    fn count_call(&self) {
        self.shared.metrics().publish.api_calls += 1;
    }

    async fn write_report(&mut self, client: &kube::Client, ns: &str) {
        self.pacer.ready().await;
        // Everything that arrived while waiting goes into this write.
        self.drain();
        let rendered = self.book.render(ns, self.opts.max_results);
        let on_server = self.book.namespaces.get(ns).is_some_and(|n| n.on_server);
        self.shared
            .metrics()
            .publish
            .results_dropped
            .insert(ns.to_owned(), rendered.dropped);
        if let Some(n) = self.book.namespaces.get_mut(ns) {
            n.dirty = None;
            n.not_before = None;
        }
        let name = report_name(&self.opts.node);
        let res = if rendered.results.is_empty() {
            if !on_server {
                self.book.remove_if_empty(ns);
                return;
            }
            self.count_call();
            match self.opts.reports {
                Some(policyreport::Api::OpenReports) => {
                    delete::<OpenReports>(client, ns, &name).await
                }
                _ => delete::<WgPolicy>(client, ns, &name).await,
            }
        } else {
            let mut labels = BTreeMap::new();
            labels.insert(
                "app.kubernetes.io/managed-by".to_owned(),
                "pss-guard".to_owned(),
            );
            if let Some(v) = label_value(&self.opts.node) {
                labels.insert(NODE_LABEL.to_owned(), v.to_owned());
            }
            let mut annotations = BTreeMap::new();
            annotations.insert("pss-guard.io/node".to_owned(), self.opts.node.clone());
            if rendered.dropped > 0 {
                annotations.insert(
                    "pss-guard.io/results-dropped".to_owned(),
                    rendered.dropped.to_string(),
                );
            }
            let meta = ObjectMeta {
                labels: Some(labels),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            };
            self.count_call();
            match self.opts.reports {
                Some(policyreport::Api::OpenReports) => {
                    apply::<OpenReports>(client, ns, &name, meta, rendered.results).await
                }
                _ => apply::<WgPolicy>(client, ns, &name, meta, rendered.results).await,
            }
        };
        match res {
            Ok(()) => {
                self.pacer.ok();
                self.shared.metrics().publish.report_writes += 1;
                let empty = rendered.dropped == 0 && self.book.render(ns, 1).results.is_empty();
                if let Some(n) = self.book.namespaces.get_mut(ns) {
                    n.on_server = !empty;
                    n.failures = 0;
                }
                if empty {
                    self.book.remove_if_empty(ns);
                }
            }
            Err(e) => {
                let f = classify(&e);
                self.shared.metrics().publish.report_failures += 1;
                if f == Failure::NotFound && on_server && self.book.pods(ns) == 0 {
                    // Deleting what is already gone.
                    self.book.remove_if_empty(ns);
                    return;
                }
                eprintln!("pss-guard-agent: writing the report of namespace {ns}: {e}");
                if f == Failure::Overloaded {
                    self.pacer.overloaded();
                }
                self.book.retry_later(ns, RETRY, CRD_RECHECK);
            }
        }
    }

    async fn run_event(&mut self, client: &kube::Client, job: EventJob) {
        match job {
            EventJob::Emit {
                object,
                reason,
                message,
            } => self.emit(client, object, reason, &message).await,
            EventJob::Controller {
                namespace,
                pod,
                reason,
                message,
            } => {
                if let Some(object) = self.controller(client, &namespace, &pod).await {
                    self.emit(client, object, reason, &message).await;
                }
            }
        }
    }

    /// The controller at the top of a pod's owners (ReplicaSet → Deployment, Job → CronJob).
    async fn controller(
        &mut self,
        client: &kube::Client,
        ns: &str,
        pod: &str,
    ) -> Option<ObjectReference> {
        let known = self
            .pods()
            .pods
            .get(&(ns.to_owned(), pod.to_owned()))
            .cloned();
        let refs = match known {
            Some(r) => r,
            None => {
                self.pacer.ready().await;
                self.count_call();
                let api: Api<Pod> = Api::namespaced(client.clone(), ns);
                match api.get_metadata_opt(pod).await {
                    Ok(Some(m)) => m.metadata.owner_references.unwrap_or_default(),
                    Ok(None) => return None,
                    Err(e) => {
                        self.lookup_failed(&e);
                        return None;
                    }
                }
            }
        };
        let owner = controller_of(&refs)?.clone();
        if let Some(top) = self.owners.get(&owner.uid) {
            return Some(top.clone().unwrap_or_else(|| owner_ref(ns, &owner)));
        }
        let parent = match (owner.api_version.as_str(), owner.kind.as_str()) {
            ("apps/v1", "ReplicaSet") => {
                self.pacer.ready().await;
                self.count_call();
                let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
                api.get_metadata_opt(&owner.name).await.map(|m| {
                    m.and_then(|m| {
                        controller_of(&m.metadata.owner_references.unwrap_or_default())
                            .filter(|o| o.kind == "Deployment")
                            .cloned()
                    })
                })
            }
            ("batch/v1", "Job") => {
                self.pacer.ready().await;
                self.count_call();
                let api: Api<Job> = Api::namespaced(client.clone(), ns);
                api.get_metadata_opt(&owner.name).await.map(|m| {
                    m.and_then(|m| {
                        controller_of(&m.metadata.owner_references.unwrap_or_default())
                            .filter(|o| o.kind == "CronJob")
                            .cloned()
                    })
                })
            }
            _ => Ok(None),
        };
        match parent {
            Ok(p) => {
                let top = p.map(|p| owner_ref(ns, &p));
                self.owners.insert(owner.uid.clone(), top.clone());
                if self.owners.len() > crate::correlator::CACHE_ENTRIES {
                    self.owners.clear();
                }
                Some(top.unwrap_or_else(|| owner_ref(ns, &owner)))
            }
            Err(e) => {
                self.lookup_failed(&e);
                // The direct owner still tells the user more than nothing.
                Some(owner_ref(ns, &owner))
            }
        }
    }

    fn lookup_failed(&mut self, e: &kube::Error) {
        eprintln!("pss-guard-agent: looking up a pod's controller: {e}");
        if classify(e) == Failure::Overloaded {
            self.pacer.overloaded();
        }
    }

    async fn emit(
        &mut self,
        client: &kube::Client,
        object: ObjectReference,
        reason: &'static str,
        message: &str,
    ) {
        let key = object_key(&object);
        let ns = object.namespace.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(client.clone(), &ns);
        match self
            .correlator
            .observe(&key, reason, message, Instant::now())
        {
            Action::Drop => self.shared.metrics().publish.events_dropped += 1,
            Action::Patch {
                name,
                count,
                message: m,
            } => {
                let patch = Event {
                    count: Some(count),
                    last_timestamp: Some(now_time()),
                    ..Event::default()
                };
                self.pacer.ready().await;
                self.count_call();
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => {
                        self.pacer.ok();
                        self.shared.metrics().publish.events_patched += 1;
                    }
                    Err(e) if classify(&e) == Failure::NotFound => {
                        // Expired on the server: create it again, with the count so far.
                        self.correlator.lost(&key, reason, &m);
                        self.create_event(&api, object, reason, m, count).await;
                    }
                    Err(e) => self.event_failed(&e),
                }
            }
            Action::Create { message: m } => {
                let count = self.correlator.count(&key, reason, &m);
                self.create_event(&api, object, reason, m, count).await;
            }
        }
    }

    async fn create_event(
        &mut self,
        api: &Api<Event>,
        object: ObjectReference,
        reason: &'static str,
        message: String,
        count: i32,
    ) {
        let key = object_key(&object);
        let base = object.name.clone().unwrap_or_default();
        for _attempt in 0..2 {
            // client-go's name: the object's name and the time in hex nanoseconds.
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            let name = format!("{base}.{nanos:x}");
            let now = now_time();
            let ev = Event {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: object.namespace.clone(),
                    ..ObjectMeta::default()
                },
                involved_object: object.clone(),
                reason: Some(reason.to_owned()),
                message: Some(message.clone()),
                type_: Some("Warning".to_owned()),
                count: Some(count),
                first_timestamp: Some(now.clone()),
                last_timestamp: Some(now),
                source: Some(EventSource {
                    component: Some("pss-guard".to_owned()),
                    host: Some(self.opts.node.clone()),
                }),
                reporting_component: Some("pss-guard".to_owned()),
                reporting_instance: Some(self.opts.node.clone()),
                ..Event::default()
            };
            self.pacer.ready().await;
            self.count_call();
            match api.create(&PostParams::default(), &ev).await {
                Ok(_) => {
                    self.pacer.ok();
                    self.shared.metrics().publish.events_created += 1;
                    self.correlator
                        .created(&key, reason, &message, &name, count);
                    return;
                }
                // A name taken (two events in one nanosecond tick): another name.
                Err(e) if classify(&e) == Failure::Conflict => continue,
                Err(e) => {
                    self.event_failed(&e);
                    return;
                }
            }
        }
        self.shared.metrics().publish.events_failed += 1;
    }

    fn event_failed(&mut self, e: &kube::Error) {
        eprintln!("pss-guard-agent: writing an event: {e}");
        self.shared.metrics().publish.events_failed += 1;
        if classify(e) == Failure::Overloaded {
            self.pacer.overloaded();
        }
    }
}

/// A client without kube's own retry layer: every call goes through the pacer.
async fn client() -> Result<kube::Client, String> {
    let mut config = kube::Config::infer().await.map_err(|e| e.to_string())?;
    config.default_retry = false;
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

async fn list_own<F: Flavour>(
    client: &kube::Client,
    lp: &ListParams,
) -> Result<Vec<String>, kube::Error> {
    let api: Api<PolicyReport<F>> = Api::all(client.clone());
    let list = api.list_metadata(lp).await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|m| m.metadata.namespace)
        .collect())
}

async fn apply<F: Flavour>(
    client: &kube::Client,
    ns: &str,
    name: &str,
    meta: ObjectMeta,
    results: Vec<policyreport::ReportResult>,
) -> Result<(), kube::Error> {
    let api: Api<PolicyReport<F>> = Api::namespaced(client.clone(), ns);
    let report = PolicyReport::<F>::new(name, ns, meta, results);
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(name, &pp, &Patch::Apply(&report)).await?;
    Ok(())
}

async fn delete<F: Flavour>(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<(), kube::Error> {
    let api: Api<PolicyReport<F>> = Api::namespaced(client.clone(), ns);
    api.delete(name, &DeleteParams::default()).await?;
    Ok(())
}

/// Watches this node's pods (metadata only): owners for the Events, deletions for cleanup.
async fn watch_pods(
    client: kube::Client,
    node: String,
    pods: Arc<Mutex<Pods>>,
    tx: mpsc::Sender<Input>,
) {
    let api: Api<PartialObjectMeta<Pod>> = Api::all(client);
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut events = pin!(watcher::watcher(api, cfg).default_backoff());
    let mut pending: Option<BTreeMap<(String, String), Vec<OwnerReference>>> = None;
    while let Some(ev) = events.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                eprintln!("pss-guard-agent: watching this node's pods: {e}");
                continue;
            }
        };
        let key = |m: &ObjectMeta| {
            (
                m.namespace.clone().unwrap_or_default(),
                m.name.clone().unwrap_or_default(),
            )
        };
        match ev {
            WatchEvent::Init => pending = Some(BTreeMap::new()),
            WatchEvent::InitApply(p) => {
                if let Some(m) = pending.as_mut() {
                    m.insert(
                        key(&p.metadata),
                        p.metadata.owner_references.unwrap_or_default(),
                    );
                }
            }
            WatchEvent::InitDone => {
                let mut g = pods.lock().unwrap_or_else(|p| p.into_inner());
                g.pods = pending.take().unwrap_or_default();
                g.listed = true;
            }
            WatchEvent::Apply(p) => {
                let mut g = pods.lock().unwrap_or_else(|p| p.into_inner());
                g.pods.insert(
                    key(&p.metadata),
                    p.metadata.owner_references.unwrap_or_default(),
                );
            }
            WatchEvent::Delete(p) => {
                let (namespace, name) = key(&p.metadata);
                pods.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .pods
                    .remove(&(namespace.clone(), name.clone()));
                let _ = tx
                    .send(Input::PodGone {
                        namespace,
                        name,
                        uid: p.metadata.uid,
                    })
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_names_and_labels_stay_within_the_apis_limits() {
        assert_eq!(report_name("node-1"), "pss-guard-node-1");
        let long = "n".repeat(250);
        let name = report_name(&long);
        assert!(
            name.len() <= 253 && name.starts_with("pss-guard-"),
            "{name}"
        );
        assert_eq!(name, report_name(&long));
        assert_eq!(
            label_value("ip-10-0-0-1.ec2.internal"),
            Some("ip-10-0-0-1.ec2.internal")
        );
        assert_eq!(label_value(&"a".repeat(64)), None);
        assert_eq!(label_value("-x"), None);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_pacer_spaces_calls_and_pauses_after_overload() {
        let mut p = Pacer::new(4.0);
        let t0 = tokio::time::Instant::now();
        for _ in 0..9 {
            p.ready().await;
        }
        // Nine calls at 4/s: the ninth starts two seconds after the first.
        assert_eq!(t0.elapsed(), Duration::from_secs(2));
        p.overloaded();
        p.overloaded();
        let t1 = tokio::time::Instant::now();
        p.ready().await;
        assert!(t1.elapsed() >= Duration::from_secs(2), "{:?}", t1.elapsed());
    }
}
