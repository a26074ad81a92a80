//! The agent's Namespace/RuntimeClass watch against a stand-in API server: no API server can be
//! installed here, so this test serves the Kubernetes list/watch protocol itself on 127.0.0.1,
//! with objects built from `k8s-openapi` types and kube's `PartialObjectMeta` and serialized by
//! serde (never hand-written JSON): a paginated-list response with a `resourceVersion`, then a
//! chunked watch stream of `WatchEvent`s, as the real API server sends them. The real agent
//! binary reaches it through a kubeconfig (`KUBECONFIG`), exactly as it would a cluster.
//!
//! Steps, each checked on the snapshot file: initial list; a label change; a deletion; a watch
//! that expires with `410 Gone` (an `ERROR` event, then the stream ends) while the server
//! gained a namespace the agent was never told about, which only the relist can show.
//!
//! It also answers `GET /version` with a `version.Info`, as every API server does for any
//! client (the `system:public-info-viewer` role): the agent records the version in the snapshot.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, ObjectMeta, Status, WatchEvent};
use k8s_openapi::apimachinery::pkg::version::Info;
use kube::api::{ObjectList, PartialObjectMeta, TypeMeta};
use serde_json::Value;
use support::*;
use tokio::sync::mpsc;

const NS_PATH: &str = "/api/v1/namespaces";
const RC_PATH: &str = "/apis/node.k8s.io/v1/runtimeclasses";

#[derive(Default)]
struct ApiState {
    rv: u64,
    namespaces: BTreeMap<String, Namespace>,
    runtime_classes: BTreeMap<String, RuntimeClass>,
    /// Completed list requests per path.
    lists: BTreeMap<String, u32>,
    /// Open watch streams: (path, sender of JSON lines).
    watches: Vec<(String, mpsc::UnboundedSender<Bytes>)>,
    /// `Accept` headers of requests for namespaces.
    ns_accept: Vec<String>,
    /// Query strings of list (not watch) requests.
    list_queries: Vec<String>,
    /// What `GET /version` answers; a 404 while `None`.
    version: Option<Info>,
}

fn line<T: serde::Serialize>(ev: &WatchEvent<T>) -> Bytes {
    let mut v = serde_json::to_vec(ev).unwrap();
    v.push(b'\n');
    Bytes::from(v)
}

/// A Namespace as a metadata-only request returns it.
fn partial(ns: &Namespace) -> PartialObjectMeta<Namespace> {
    PartialObjectMeta {
        types: Some(TypeMeta {
            api_version: "meta.k8s.io/v1".into(),
            kind: "PartialObjectMetadata".into(),
        }),
        metadata: ns.metadata.clone(),
        _phantom: std::marker::PhantomData,
    }
}

impl ApiState {
    fn bump(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    fn broadcast(&mut self, path: &str, bytes: Bytes) {
        self.watches
            .retain(|(p, tx)| p != path || tx.send(bytes.clone()).is_ok());
    }

    fn open_watches(&self, path: &str) -> usize {
        self.watches
            .iter()
            .filter(|(p, tx)| p == path && !tx.is_closed())
            .count()
    }

    /// Adds or changes a namespace; `tell` sends the watch event.
    fn put_namespace(&mut self, name: &str, labels: &[(&str, &str)], tell: bool) {
        let owned: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.put_namespace_owned(name, &owned, tell);
    }

    fn put_namespace_owned(&mut self, name: &str, labels: &[(String, String)], tell: bool) {
        let rv = self.bump();
        let existed = self.namespaces.contains_key(name);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                resource_version: Some(rv),
                labels: Some(labels.iter().cloned().collect()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        self.namespaces.insert(name.into(), ns.clone());
        if tell {
            let p = partial(&ns);
            let ev = if existed {
                WatchEvent::Modified(p)
            } else {
                WatchEvent::Added(p)
            };
            self.broadcast(NS_PATH, line(&ev));
        }
    }

    fn delete_namespace(&mut self, name: &str) {
        let rv = self.bump();
        let mut ns = self.namespaces.remove(name).unwrap();
        ns.metadata.resource_version = Some(rv);
        self.broadcast(NS_PATH, line(&WatchEvent::Deleted(partial(&ns))));
    }

    fn put_runtime_class(&mut self, name: &str, handler: &str) {
        let rv = self.bump();
        let rc = RuntimeClass {
            metadata: ObjectMeta {
                name: Some(name.into()),
                resource_version: Some(rv),
                ..ObjectMeta::default()
            },
            handler: handler.into(),
            ..RuntimeClass::default()
        };
        self.runtime_classes.insert(name.into(), rc);
    }

    /// What the API server does when a watch's resourceVersion has been compacted away: an
    /// ERROR event carrying a 410 Status, then the end of the stream.
    fn expire_watches(&mut self, path: &str) {
        let status = Status {
            code: Some(410),
            reason: Some("Expired".into()),
            message: Some(format!("too old resource version: 1 ({})", self.rv)),
            status: Some("Failure".into()),
            ..Status::default()
        };
        self.broadcast(
            path,
            line(&WatchEvent::<PartialObjectMeta<Namespace>>::ErrorStatus(
                status,
            )),
        );
        self.watches.retain(|(p, _)| p != path);
    }

    fn list(&mut self, path: &str) -> Vec<u8> {
        *self.lists.entry(path.to_owned()).or_insert(0) += 1;
        let metadata = ListMeta {
            resource_version: Some(self.rv.to_string()),
            ..ListMeta::default()
        };
        if path == NS_PATH {
            serde_json::to_vec(&ObjectList {
                types: TypeMeta {
                    api_version: "meta.k8s.io/v1".into(),
                    kind: "PartialObjectMetadataList".into(),
                },
                metadata,
                items: self.namespaces.values().map(partial).collect(),
            })
            .unwrap()
        } else {
            serde_json::to_vec(&k8s_openapi::List::<RuntimeClass> {
                metadata,
                items: self.runtime_classes.values().cloned().collect(),
            })
            .unwrap()
        }
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(status: StatusCode, bytes: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(
        http_body_util::Full::new(Bytes::from(bytes))
            .map_err(|e| match e {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn handle(req: &Request<Incoming>, api: &Mutex<ApiState>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let watch = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .any(|kv| kv == "watch=true");
    let mut st = api.lock().unwrap();
    if path == "/version"
        && let Some(v) = &st.version
    {
        return full(StatusCode::OK, serde_json::to_vec(v).unwrap());
    }
    if path == NS_PATH {
        let accept = req
            .headers()
            .get(hyper::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        st.ns_accept.push(accept);
    }
    if path != NS_PATH && path != RC_PATH {
        let status = Status {
            code: Some(404),
            reason: Some("NotFound".into()),
            status: Some("Failure".into()),
            ..Status::default()
        };
        return full(StatusCode::NOT_FOUND, serde_json::to_vec(&status).unwrap());
    }
    if !watch {
        let q = req.uri().query().unwrap_or("").to_owned();
        st.list_queries.push(q);
        let body = st.list(&path);
        return full(StatusCode::OK, body);
    }
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    st.watches.push((path, tx));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// The stand-in API server, on its own thread and runtime.
struct MockApi {
    addr: String,
    state: Arc<Mutex<ApiState>>,
}

impl MockApi {
    fn start(state: ApiState) -> MockApi {
        let state = Arc::new(Mutex::new(state));
        let (tx, rx) = std::sync::mpsc::channel();
        let st = Arc::clone(&state);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(l.local_addr().unwrap().to_string()).unwrap();
                loop {
                    let (s, _) = l.accept().await.unwrap();
                    let st = Arc::clone(&st);
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            let st = Arc::clone(&st);
                            async move { Ok::<_, Infallible>(handle(&req, &st)) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(s), svc)
                            .await;
                    });
                }
            });
        });
        MockApi {
            addr: rx.recv().unwrap(),
            state,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut ApiState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    /// Waits until the agent holds a watch open on `path` (so an event is not sent into the gap
    /// between its list and its watch, which a real server would replay from the
    /// resourceVersion and this stand-in does not).
    fn wait_watching(&self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.with(|s| s.open_watches(path)) == 0 {
            assert!(Instant::now() < deadline, "the agent never watched {path}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn kubeconfig(dir: &Path, server: &str) -> std::path::PathBuf {
    let p = dir.join("kubeconfig");
    std::fs::write(
        &p,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: stand-in\n  cluster:\n    server: http://{server}\ncontexts:\n- name: stand-in\n  context:\n    cluster: stand-in\n    user: agent\ncurrent-context: stand-in\nusers:\n- name: agent\n  user:\n    token: test-token\n"
        ),
    )
    .unwrap();
    p
}

/// The snapshot as one JSON value: its header line's fields, and `namespaces` gathered from the
/// namespace lines (each must be whole JSON, the file must end in a newline, and the names must
/// come sorted, as the hook's binary search needs).
fn snapshot_value(text: &str) -> Value {
    assert!(text.ends_with('\n'), "snapshot is not whole: {text:?}");
    let mut lines = text.lines();
    let mut v: Value = serde_json::from_str(lines.next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("snapshot header is not JSON ({e}): {text:?}"));
    let mut namespaces = serde_json::Map::new();
    let mut last: Option<String> = None;
    for l in lines {
        let line: Value = serde_json::from_str(l)
            .unwrap_or_else(|e| panic!("snapshot line is not JSON ({e}): {l:?}"));
        let name = line["namespace"].as_str().expect("namespace").to_owned();
        assert!(
            last.as_ref().is_none_or(|p| *p < name),
            "unsorted at {name}"
        );
        namespaces.insert(name.clone(), line["labels"].clone());
        last = Some(name);
    }
    v["namespaces"] = Value::Object(namespaces);
    v
}

/// Polls the snapshot until `ok` holds for it (20 s at most).
fn wait_snapshot(path: &Path, agent: &Agent, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            let v = snapshot_value(&text);
            if ok(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "snapshot never showed {what}: {v}\nagent stderr:\n{}",
                agent.stderr.lock().unwrap().join("\n")
            );
        } else {
            assert!(
                Instant::now() < deadline,
                "no snapshot for {what}; agent stderr:\n{}",
                agent.stderr.lock().unwrap().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

const ENFORCE: &str = "pod-security.kubernetes.io/enforce";
const AUDIT: &str = "pod-security.kubernetes.io/audit";

#[test]
fn snapshot_follows_list_label_change_deletion_and_a_410_relist() {
    let mut st = ApiState::default();
    st.put_namespace(
        "default",
        &[("kubernetes.io/metadata.name", "default")],
        false,
    );
    st.put_namespace(
        "team-a",
        &[
            (ENFORCE, "restricted"),
            ("team", "a"),
            (AUDIT, "restricted"),
        ],
        false,
    );
    st.put_namespace("team-b", &[(ENFORCE, "privileged")], false);
    st.put_runtime_class("gvisor", "runsc");
    st.put_runtime_class("kata", "kata-qemu");
    let api = MockApi::start(st);

    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), &api.addr);
    let snap = dir.path().join("state/cluster.json");
    let log = dir.path().join("decisions.log");
    let agent = Agent::start(
        &[
            "--log",
            log.to_str().unwrap(),
            "--snapshot",
            snap.to_str().unwrap(),
            "--snapshot-refresh",
            "2",
        ],
        &[("KUBECONFIG", &kc)],
    );

    // 1. The initial list: every namespace, only Pod Security labels, handlers by class.
    let v = wait_snapshot(&snap, &agent, "the initial list", |v| v["schema"] == 2);
    assert_eq!(
        v["namespaces"],
        serde_json::json!({
            "default": {},
            "team-a": {ENFORCE: "restricted", AUDIT: "restricted"},
            "team-b": {ENFORCE: "privileged"}
        })
    );
    assert_eq!(
        v["runtime_classes"],
        serde_json::json!({"gvisor": "runsc", "kata": "kata-qemu"})
    );
    let text = std::fs::read_to_string(&snap).unwrap();
    assert!(
        text.starts_with("{\"schema\":2,\"written\":\"")
            && text.contains("\n{\"namespace\":\"default\",\"labels\":{}}\n{\"namespace\":\"team-a\",\"labels\":{\"pod-security.kubernetes.io/audit\""),
        "keys not in the documented order: {text}"
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&snap).unwrap().mode() & 0o777, 0o644);
    // Namespaces were asked for as metadata only.
    let accepts = api.with(|s| s.ns_accept.clone());
    assert!(
        accepts
            .iter()
            .all(|a| a.contains("as=PartialObjectMetadata")),
        "{accepts:?}"
    );

    // The snapshot is rewritten while healthy even when nothing changed (written moves on).
    let written = v["written"].as_str().unwrap().to_owned();
    wait_snapshot(&snap, &agent, "a refreshed written", |v| {
        v["written"].as_str() != Some(written.as_str())
    });

    // 2. A label change arrives as a MODIFIED event.
    api.wait_watching(NS_PATH);
    api.wait_watching(RC_PATH);
    api.with(|s| s.put_namespace("team-a", &[(ENFORCE, "baseline")], true));
    wait_snapshot(&snap, &agent, "team-a's new label", |v| {
        v["namespaces"]["team-a"] == serde_json::json!({ENFORCE: "baseline"})
    });

    // 3. A deletion.
    api.with(|s| s.delete_namespace("team-b"));
    let v = wait_snapshot(&snap, &agent, "team-b deleted", |v| {
        v["namespaces"].get("team-b").is_none()
    });
    assert_eq!(
        v["namespaces"],
        serde_json::json!({"default": {}, "team-a": {ENFORCE: "baseline"}})
    );

    // 4. The watch expires (410 Gone) while a namespace was added behind the agent's back: only
    // a relist can show it, and the deleted one must not come back.
    let lists_before = api.with(|s| s.lists.get(NS_PATH).copied().unwrap_or(0));
    api.with(|s| {
        s.put_namespace("team-c", &[(ENFORCE, "restricted")], false);
        s.expire_watches(NS_PATH);
    });
    let v = wait_snapshot(&snap, &agent, "team-c from the relist", |v| {
        v["namespaces"].get("team-c").is_some()
    });
    assert_eq!(
        v["namespaces"],
        serde_json::json!({
            "default": {},
            "team-a": {ENFORCE: "baseline"},
            "team-c": {ENFORCE: "restricted"}
        })
    );
    assert!(api.with(|s| s.lists.get(NS_PATH).copied().unwrap_or(0)) > lists_before);
    let m = agent.wait_metrics(&[
        "pss_guard_watch_up{resource=\"namespaces\"} 1",
        "pss_guard_watch_objects{resource=\"namespaces\"} 3",
        "pss_guard_watch_objects{resource=\"runtimeclasses\"} 2",
    ]);
    let errors = m
        .lines()
        .find_map(|l| l.strip_prefix("pss_guard_watch_errors_total{resource=\"namespaces\"} "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap();
    assert!(errors >= 1, "the 410 was not counted:\n{m}");
    assert!(m.contains("pss_guard_snapshot_age_seconds "), "{m}");
    assert_eq!(agent.get("/readyz").0, 200);
}

#[test]
fn only_what_admission_reads_is_kept_and_the_api_servers_version_is_recorded() {
    let mut st = ApiState::default();
    // A tenant who may label its namespace adds thousands of labels under the Pod Security
    // prefix (the API server accepts any number of valid keys, each value up to 63 bytes).
    let mut flood: Vec<(String, String)> = (0..3000)
        .map(|i| {
            (
                format!("pod-security.kubernetes.io/x-{i:04}"),
                "v".repeat(63),
            )
        })
        .collect();
    flood.push((ENFORCE.into(), "privileged".into()));
    flood.push((
        "pod-security.kubernetes.io/warn-version".into(),
        "v1.30".into(),
    ));
    st.put_namespace_owned("flood", &flood, false);
    st.put_namespace("team", &[(ENFORCE, "restricted")], false);
    // What a managed control plane answers: a minor with a `+`.
    st.version = Some(Info {
        major: "1".into(),
        minor: "34+".into(),
        git_version: "v1.34.2-eks-113cf36".into(),
        ..Info::default()
    });
    let api = MockApi::start(st);
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), &api.addr);
    let snap = dir.path().join("cluster.json");
    let log = dir.path().join("decisions.log");
    let agent = Agent::start(
        &[
            "--log",
            log.to_str().unwrap(),
            "--snapshot",
            snap.to_str().unwrap(),
        ],
        &[("KUBECONFIG", &kc)],
    );
    let v = wait_snapshot(&snap, &agent, "the API server's version", |v| {
        v["kubernetes_version"] == "v1.34"
    });
    assert_eq!(
        v["namespaces"],
        serde_json::json!({
            "flood": {ENFORCE: "privileged", "pod-security.kubernetes.io/warn-version": "v1.30"},
            "team": {ENFORCE: "restricted"}
        })
    );
    let text = std::fs::read_to_string(&snap).unwrap();
    let longest = text.lines().skip(1).map(str::len).max().unwrap_or(0);
    assert!(
        longest <= pss_guard::snapshot::MAX_ENTRY,
        "a namespace line of {longest} bytes"
    );
}

#[test]
fn no_snapshot_before_the_initial_list_and_the_last_one_stays_when_the_server_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("cluster.json");
    let previous = "{\"schema\":1,\"written\":\"2026-01-01T00:00:00.000000Z\",\"namespaces\":{\"x\":{}},\"runtime_classes\":{}}\n";
    std::fs::write(&snap, previous).unwrap();
    // A server address nothing listens on: every list fails.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let kc = kubeconfig(dir.path(), &addr);
    let log = dir.path().join("decisions.log");
    let agent = Agent::start(
        &[
            "--log",
            log.to_str().unwrap(),
            "--snapshot",
            snap.to_str().unwrap(),
        ],
        &[("KUBECONFIG", &kc)],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = agent.metrics();
        let errors = m
            .lines()
            .find_map(|l| l.strip_prefix("pss_guard_watch_errors_total{resource=\"namespaces\"} "))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap();
        if errors >= 2 {
            assert!(
                m.contains("pss_guard_watch_up{resource=\"namespaces\"} 0"),
                "{m}"
            );
            assert!(m.contains("pss_guard_snapshot_writes_total 0"), "{m}");
            break;
        }
        assert!(Instant::now() < deadline, "no watch errors counted:\n{m}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(std::fs::read_to_string(&snap).unwrap(), previous);
    let (code, body) = agent.get("/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("watch namespaces: failing"), "{body}");
}
