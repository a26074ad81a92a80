//! A stand-in Kubernetes API server for the publisher's tests. No API server can be installed
//! here, so no live one runs in these tests: this one serves, on 127.0.0.1, the calls the agent
//! makes, with the real server's answers for them (apiserver's REST semantics as the API
//! concepts page documents them):
//!
//! - objects of any registered resource, namespaced or cluster-scoped (an unregistered one, e.g.
//!   a CRD that is not installed, is `404`): `POST` creates (`409 AlreadyExists` when the name
//!   is taken), `GET` reads one (`404 NotFound`) or lists (`labelSelector` `k=v`, and
//!   `fieldSelector` `spec.nodeName=` for pods; `Accept: ...;as=PartialObjectMetadata...` gets
//!   metadata only), `DELETE` removes (`404` when absent);
//! - `PATCH` as server-side apply (`application/apply-patch+yaml`: `fieldManager` required,
//!   creates a missing object, the applier's object replaces the old one when it owns it or
//!   applies with `force`, else `409 Conflict`) or as JSON merge patch (`application/merge-
//!   patch+json`, `strategic-merge-patch+json` on objects without lists: RFC 7386; `404` when
//!   absent);
//! - watches (`watch=true`): a chunked stream of `ADDED`/`MODIFIED`/`DELETED` events;
//! - injected faults: the next matching requests answer `429 TooManyRequests` (with
//!   `Retry-After`), `409`, `404` or `500` with a `Status` body, as the real server does.
//!
//! Every request is logged with its arrival time, so tests can measure the agent's call rate.
//! Objects are stored as the JSON the agent sent (its typed structs serialized by serde); the
//! test's own objects are built from k8s-openapi types.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// (API prefix, resource): `("/api/v1", "pods")`, `("/apis/wgpolicyk8s.io/v1alpha2", "policyreports")`.
pub type Kind = (String, String);

pub const PODS: (&str, &str) = ("/api/v1", "pods");
pub const EVENTS: (&str, &str) = ("/api/v1", "events");
pub const POLICYREPORTS: (&str, &str) = ("/apis/wgpolicyk8s.io/v1alpha2", "policyreports");
pub const REPORTS: (&str, &str) = ("/apis/openreports.io/v1alpha1", "reports");

fn kind(k: (&str, &str)) -> Kind {
    (k.0.to_owned(), k.1.to_owned())
}

#[derive(Clone, Debug)]
pub struct Call {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub status: u16,
}

#[derive(Clone, Debug)]
pub struct Fault {
    pub method: &'static str,
    /// The request path contains this.
    pub path: String,
    pub status: u16,
    pub times: u32,
}

#[derive(Default)]
pub struct State {
    rv: u64,
    /// Registered resources: (prefix, resource) → namespaced.
    kinds: BTreeMap<Kind, bool>,
    /// Objects by resource, then (namespace, name).
    objects: BTreeMap<Kind, BTreeMap<(String, String), Value>>,
    /// Field manager that owns each object (server-side apply).
    managers: BTreeMap<(Kind, String, String), String>,
    watches: Vec<(Kind, String, mpsc::UnboundedSender<Bytes>)>,
    pub calls: Vec<Call>,
    pub faults: Vec<Fault>,
}

fn status(code: u16, reason: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&Status {
        code: Some(i32::from(code)),
        reason: Some(reason.into()),
        message: Some(message.into()),
        status: Some("Failure".into()),
        ..Status::default()
    })
    .unwrap()
}

/// RFC 7386.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn metadata_only(v: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": v["metadata"]})
}

fn selected(v: &Value, query: &str) -> bool {
    for kv in query.split('&') {
        let Some((k, val)) = kv.split_once('=') else {
            continue;
        };
        let val = percent_decode(val);
        match k {
            "labelSelector" if !val.is_empty() => {
                for term in val.split(',') {
                    let (lk, lv) = term.split_once('=').unwrap_or((term, ""));
                    if v["metadata"]["labels"][lk].as_str() != Some(lv) {
                        return false;
                    }
                }
            }
            "fieldSelector" if !val.is_empty() => {
                for term in val.split(',') {
                    let (fk, fv) = term.split_once('=').unwrap_or((term, ""));
                    let got = match fk {
                        "spec.nodeName" => v["spec"]["nodeName"].as_str(),
                        "metadata.name" => v["metadata"]["name"].as_str(),
                        _ => None,
                    };
                    if got != Some(fv) {
                        return false;
                    }
                }
            }
            _ => {}
        }
    }
    true
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        if b[i] == b'%'
            && let Some(x) = hex.and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(x);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl State {
    pub fn register(&mut self, k: (&str, &str), namespaced: bool) {
        self.kinds.insert(kind(k), namespaced);
    }

    fn bump(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    fn notify(&mut self, k: &Kind, typ: &str, obj: &Value) {
        let ev = json!({"type": typ, "object": obj});
        let mut line = serde_json::to_vec(&ev).unwrap();
        line.push(b'\n');
        let bytes = Bytes::from(line);
        self.watches.retain(|(wk, q, tx)| {
            if wk != k || !selected(obj, q) {
                return !tx.is_closed();
            }
            let meta = q.contains("as=PartialObjectMetadata");
            let b = if meta {
                let mut l = serde_json::to_vec(&json!({"type": typ, "object": metadata_only(obj)}))
                    .unwrap();
                l.push(b'\n');
                Bytes::from(l)
            } else {
                bytes.clone()
            };
            tx.send(b).is_ok()
        });
    }

    /// Stores `obj` (creating or replacing it) with server-set metadata, and tells watchers.
    pub fn put(&mut self, k: (&str, &str), mut obj: Value) -> Value {
        let k = kind(k);
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
        let rv = self.bump();
        let old = self
            .objects
            .get(&k)
            .and_then(|m| m.get(&(ns.clone(), name.clone())))
            .cloned();
        let meta = obj["metadata"].as_object_mut().unwrap();
        meta.insert("resourceVersion".into(), json!(rv));
        let uid = old
            .as_ref()
            .and_then(|o| o["metadata"]["uid"].as_str().map(str::to_owned))
            .or_else(|| meta.get("uid").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| format!("uid-{}-{ns}-{name}-{rv}", k.1));
        meta.insert("uid".into(), json!(uid));
        meta.entry("creationTimestamp")
            .or_insert(json!("2026-01-01T00:00:00Z"));
        self.objects
            .entry(k.clone())
            .or_default()
            .insert((ns, name), obj.clone());
        let typ = if old.is_some() { "MODIFIED" } else { "ADDED" };
        self.notify(&k, typ, &obj);
        obj
    }

    pub fn remove(&mut self, k: (&str, &str), ns: &str, name: &str) -> Option<Value> {
        let k = kind(k);
        let obj = self
            .objects
            .get_mut(&k)?
            .remove(&(ns.to_owned(), name.to_owned()))?;
        self.managers
            .remove(&(k.clone(), ns.to_owned(), name.to_owned()));
        self.notify(&k, "DELETED", &obj);
        Some(obj)
    }

    pub fn get(&self, k: (&str, &str), ns: &str, name: &str) -> Option<Value> {
        self.objects
            .get(&kind(k))?
            .get(&(ns.to_owned(), name.to_owned()))
            .cloned()
    }

    pub fn all(&self, k: (&str, &str)) -> Vec<Value> {
        self.objects
            .get(&kind(k))
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    fn fault(&mut self, method: &str, path: &str) -> Option<u16> {
        let f = self
            .faults
            .iter_mut()
            .find(|f| f.times > 0 && f.method == method && path.contains(&f.path))?;
        f.times -= 1;
        Some(f.status)
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(code: u16, bytes: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(
        http_body_util::Full::new(Bytes::from(bytes))
            .map_err(|e| match e {})
            .boxed(),
    );
    *r.status_mut() = StatusCode::from_u16(code).unwrap();
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    if code == 429 {
        r.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from_static("1"),
        );
    }
    r
}

/// (kind, namespace, name) of a request path.
fn route(path: &str) -> Option<(Kind, Option<String>, Option<String>)> {
    let (prefix, rest) = if let Some(r) = path.strip_prefix("/api/v1/") {
        ("/api/v1".to_owned(), r)
    } else {
        let r = path.strip_prefix("/apis/")?;
        let mut it = r.splitn(3, '/');
        let (g, v, rest) = (it.next()?, it.next()?, it.next()?);
        (format!("/apis/{g}/{v}"), rest)
    };
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["namespaces", ns, res] => Some(((prefix, (*res).into()), Some((*ns).into()), None)),
        ["namespaces", ns, res, name] => Some((
            (prefix, (*res).into()),
            Some((*ns).into()),
            Some((*name).into()),
        )),
        [res] => Some(((prefix, (*res).into()), None, None)),
        [res, name] => Some(((prefix, (*res).into()), None, Some((*name).into()))),
        _ => None,
    }
}

fn handle(
    method: &str,
    path: &str,
    query: &str,
    accept: &str,
    content_type: &str,
    body: &[u8],
    st: &mut State,
) -> Result<Response<Body>, (u16, Vec<u8>)> {
    if let Some(code) = st.fault(method, path) {
        let reason = match code {
            429 => "TooManyRequests",
            409 => "AlreadyExists",
            404 => "NotFound",
            _ => "InternalError",
        };
        return Err((code, status(code, reason, "injected by the test")));
    }
    let Some((k, ns, name)) = route(path) else {
        return Err((
            404,
            status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        ));
    };
    let Some(&namespaced) = st.kinds.get(&k) else {
        return Err((
            404,
            status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        ));
    };
    let ns_key = if namespaced {
        ns.clone().unwrap_or_default()
    } else {
        String::new()
    };
    let kref = (k.0.as_str(), k.1.as_str());
    let meta_only = accept.contains("as=PartialObjectMetadata");
    let not_found = |n: &str| {
        (
            404,
            status(404, "NotFound", &format!("{} \"{n}\" not found", k.1)),
        )
    };
    match (method, name) {
        ("GET", None) => {
            if query
                .split('&')
                .any(|kv| kv == "watch=true" || kv == "watch=1")
            {
                return Ok(watch(
                    st,
                    k,
                    query.to_owned()
                        + if meta_only {
                            "&as=PartialObjectMetadata"
                        } else {
                            ""
                        },
                ));
            }
            let items: Vec<Value> = st
                .all(kref)
                .into_iter()
                .filter(|o| ns.is_none() || o["metadata"]["namespace"].as_str() == ns.as_deref())
                .filter(|o| selected(o, query))
                .map(|o| if meta_only { metadata_only(&o) } else { o })
                .collect();
            let list = json!({"apiVersion": if meta_only {"meta.k8s.io/v1"} else {"v1"},
                "kind": if meta_only {"PartialObjectMetadataList"} else {"List"},
                "metadata": {"resourceVersion": st.rv.to_string()}, "items": items});
            Ok(full(200, serde_json::to_vec(&list).unwrap()))
        }
        ("GET", Some(n)) => match st.get(kref, &ns_key, &n) {
            Some(o) => Ok(full(
                200,
                serde_json::to_vec(&if meta_only { metadata_only(&o) } else { o }).unwrap(),
            )),
            None => Err(not_found(&n)),
        },
        ("POST", None) => {
            let mut obj: Value = serde_json::from_slice(body)
                .map_err(|e| (400, status(400, "BadRequest", &e.to_string())))?;
            let n = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
            if n.is_empty() {
                return Err((422, status(422, "Invalid", "metadata.name: Required value")));
            }
            if namespaced {
                let body_ns = obj["metadata"]["namespace"].as_str().unwrap_or("");
                if !body_ns.is_empty() && body_ns != ns_key {
                    return Err((
                        400,
                        status(
                            400,
                            "BadRequest",
                            "the namespace of the provided object does not match the namespace sent on the request",
                        ),
                    ));
                }
                obj["metadata"]["namespace"] = json!(ns_key);
            }
            if st.get(kref, &ns_key, &n).is_some() {
                return Err((
                    409,
                    status(
                        409,
                        "AlreadyExists",
                        &format!("{} \"{n}\" already exists", k.1),
                    ),
                ));
            }
            Ok(full(201, serde_json::to_vec(&st.put(kref, obj)).unwrap()))
        }
        ("PATCH", Some(n)) => {
            let patch: Value = serde_json::from_slice(body)
                .map_err(|e| (400, status(400, "BadRequest", &e.to_string())))?;
            let existing = st.get(kref, &ns_key, &n);
            if content_type.starts_with("application/apply-patch") {
                let manager = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("fieldManager="))
                    .map(percent_decode)
                    .unwrap_or_default();
                if manager.is_empty() {
                    return Err((
                        400,
                        status(
                            400,
                            "BadRequest",
                            "PATCH requests with apply must specify fieldManager",
                        ),
                    ));
                }
                if patch["apiVersion"].as_str().is_none_or(str::is_empty)
                    || patch["kind"].as_str().is_none_or(str::is_empty)
                {
                    return Err((
                        400,
                        status(400, "BadRequest", "apiVersion and kind must be set"),
                    ));
                }
                if patch["metadata"]["name"].as_str() != Some(n.as_str()) {
                    return Err((
                        400,
                        status(
                            400,
                            "BadRequest",
                            "the name of the object does not match the name on the URL",
                        ),
                    ));
                }
                let force = query.split('&').any(|kv| kv == "force=true");
                let mkey = (k.clone(), ns_key.clone(), n.clone());
                if let Some(owner) = st.managers.get(&mkey)
                    && *owner != manager
                    && !force
                {
                    return Err((
                        409,
                        status(
                            409,
                            "Conflict",
                            &format!("Apply failed with 1 conflict: conflict with \"{owner}\""),
                        ),
                    ));
                }
                let mut obj = patch;
                if namespaced {
                    obj["metadata"]["namespace"] = json!(ns_key);
                }
                if let Some(old) = &existing {
                    obj["metadata"]["uid"] = old["metadata"]["uid"].clone();
                    obj["metadata"]["creationTimestamp"] =
                        old["metadata"]["creationTimestamp"].clone();
                }
                st.managers.insert(mkey, manager);
                let code = if existing.is_some() { 200 } else { 201 };
                return Ok(full(code, serde_json::to_vec(&st.put(kref, obj)).unwrap()));
            }
            if !content_type.starts_with("application/merge-patch+json")
                && !content_type.starts_with("application/strategic-merge-patch+json")
            {
                return Err((415, status(415, "UnsupportedMediaType", content_type)));
            }
            let Some(mut obj) = existing else {
                return Err(not_found(&n));
            };
            merge(&mut obj, &patch);
            Ok(full(200, serde_json::to_vec(&st.put(kref, obj)).unwrap()))
        }
        ("DELETE", Some(n)) => match st.remove(kref, &ns_key, &n) {
            Some(o) => Ok(full(200, serde_json::to_vec(&o).unwrap())),
            None => Err(not_found(&n)),
        },
        _ => Err((405, status(405, "MethodNotAllowed", method))),
    }
}

fn watch(st: &mut State, k: Kind, query: String) -> Response<Body> {
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    st.watches.push((k, query, tx));
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
pub struct StandIn {
    pub addr: String,
    pub state: Arc<Mutex<State>>,
}

impl StandIn {
    /// Serves pods, events, namespaces, runtimeclasses, replicasets, jobs, and the report
    /// resources in `crds` (a cluster without a CRD answers 404 for its resource).
    pub fn start(crds: &[(&str, &str)]) -> StandIn {
        let mut st = State::default();
        st.register(PODS, true);
        st.register(EVENTS, true);
        st.register(("/api/v1", "namespaces"), false);
        st.register(("/apis/node.k8s.io/v1", "runtimeclasses"), false);
        st.register(("/apis/apps/v1", "replicasets"), true);
        st.register(("/apis/apps/v1", "deployments"), true);
        st.register(("/apis/batch/v1", "jobs"), true);
        st.register(("/apis/batch/v1", "cronjobs"), true);
        for c in crds {
            st.register(*c, true);
        }
        let state = Arc::new(Mutex::new(st));
        let (tx, rx) = std::sync::mpsc::channel();
        let s2 = Arc::clone(&state);
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
                    let st = Arc::clone(&s2);
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                            let st = Arc::clone(&st);
                            async move { Ok::<_, Infallible>(serve(req, &st).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(s), svc)
                            .await;
                    });
                }
            });
        });
        StandIn {
            addr: rx.recv().unwrap(),
            state,
        }
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let p = dir.join("kubeconfig");
        std::fs::write(
            &p,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: stand-in\n  cluster:\n    server: http://{}\ncontexts:\n- name: stand-in\n  context:\n    cluster: stand-in\n    user: agent\ncurrent-context: stand-in\nusers:\n- name: agent\n  user:\n    token: test-token\n",
                self.addr
            ),
        )
        .unwrap();
        p
    }

    /// Polls until `f` gives `Some` (`secs` at most), else fails with `what` and the calls seen.
    pub fn wait<R>(&self, secs: u64, what: &str, mut f: impl FnMut(&mut State) -> Option<R>) -> R {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(r) = self.with(&mut f) {
                return r;
            }
            if Instant::now() > deadline {
                let calls: Vec<String> = self.with(|s| {
                    s.calls
                        .iter()
                        .rev()
                        .take(30)
                        .map(|c| format!("{} {} {} -> {}", c.method, c.path, c.query, c.status))
                        .collect()
                });
                panic!(
                    "the stand-in API server never saw {what}; last calls:\n{}",
                    calls.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

async fn serve(req: Request<Incoming>, st: &Mutex<State>) -> Response<Body> {
    let at = Instant::now();
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let header = |h: hyper::header::HeaderName| {
        req.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let accept = header(hyper::header::ACCEPT);
    let content_type = header(hyper::header::CONTENT_TYPE);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut s = st.lock().unwrap();
    let res = handle(
        &method,
        &path,
        &query,
        &accept,
        &content_type,
        &body,
        &mut s,
    );
    let (code, resp) = match res {
        Ok(r) => (r.status().as_u16(), r),
        Err((code, b)) => (code, full(code, b)),
    };
    s.calls.push(Call {
        at,
        method,
        path,
        query,
        content_type,
        status: code,
    });
    resp
}
