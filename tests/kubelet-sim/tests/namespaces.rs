//! Issue 10's proof on the containerd test node: the levels come from the namespaces' Pod
//! Security labels in the agent's snapshot file (written here in the agent's exact format; the
//! agent writing it from a stand-in API server is agent/tests/watch.rs), read by the real hook
//! that a real containerd 1.6 + runc calls for every container kubelet-sim starts.
//!
//! Each test brings up its own node (tests/containerd/node-up.sh); the node's policy is
//! `baseline:latest` and gets a `[snapshot] path` pointing at the test's file. The hook reads
//! the policy and the snapshot on every start, so both are changed between pods.

mod common;

use common::{Snapshot, TestNode};
use kubelet_sim::{ContainerRun, Kubelet, PodRun, Source, load};
use serde_json::{Value, json};

const ENFORCE: &str = "pod-security.kubernetes.io/enforce";
const SEED_REASON: &str = r#"violates PodSecurity "baseline:latest": privileged"#;
const RESTRICTED_REASON: &str = r#"violates PodSecurity "restricted:latest""#;

/// A pod whose `app` container has `app_sc` as its securityContext. `{}` meets baseline but not
/// restricted (it runs as root, keeps the default capabilities, has no seccomp profile).
fn pod(name: &str, namespace: &str, app_sc: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {namespace}
spec:
  containers:
  - name: app
    image: localhost/pss-guard/app:latest
    securityContext: {app_sc}
"
    )
}

/// Removes `key = ...` lines from the node's policy, then adds the given ones after `enforce`.
fn set_keys(node: &TestNode, remove: &[&str], add: &[(&str, &str)]) {
    let path = node.var("PSS_GUARD_POLICY");
    let text = std::fs::read_to_string(&path).expect("policy");
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !remove.iter().any(|k| l.starts_with(&format!("{k} = "))))
        .collect();
    std::fs::write(&path, kept.join("\n") + "\n").expect("write policy");
    for (k, v) in add {
        node.set_policy_key(k, v);
    }
}

async fn run_pod(k: &mut Kubelet, yaml: &str) -> PodRun {
    let m = load(yaml, Source::ApiServer).expect("test pod parses");
    let r = k.run_pod(&m).await.expect("kubelet-sim drives the runtime");
    if let Some(s) = r.sandbox_id.as_deref() {
        k.stop_pod(s).await.expect("stop pod");
    }
    r
}

fn app(run: &PodRun) -> &ContainerRun {
    run.containers
        .iter()
        .find(|c| c.name == "app")
        .unwrap_or_else(|| panic!("no app container in {run:#?}"))
}

fn assert_started(run: &PodRun) {
    assert!(run.all_started(1), "should have started: {run:#?}");
}

fn assert_refused(run: &PodRun, substring: &str) {
    let c = app(run);
    assert!(!c.started, "started but should be refused: {run:#?}");
    // CRI-O quotes runc's log line, its quotes escaped.
    let err = c.error.as_deref().unwrap_or("").replace("\\\"", "\"");
    assert!(
        err.contains("pss-guard: "),
        "not refused by pss-guard: {err}"
    );
    assert!(err.contains(substring), "error lacks {substring:?}: {err}");
}

/// The last record of the pod's `app` container.
fn record(node: &TestNode, pod: &str) -> Value {
    node.decisions()
        .into_iter()
        .rev()
        .find(|d| d["pod"] == pod && d["container"] == "app")
        .unwrap_or_else(|| panic!("no decision-log record for pod {pod}"))
}

fn checks(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["check"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn notes(d: &Value) -> String {
    d["notes"].to_string()
}

/// A: restricted, B: privileged, `default`: unlabeled, `ns-new`: not in the snapshot yet.
fn cluster() -> Value {
    json!({
        "default": {},
        "kube-system": {},
        "ns-a": {ENFORCE: "restricted", "pod-security.kubernetes.io/enforce-version": "latest"},
        "ns-b": {ENFORCE: "privileged"},
    })
}

#[tokio::test(flavor = "current_thread")]
async fn namespace_labels_from_the_snapshot_decide_on_the_node() {
    let node = TestNode::up();
    let snap = Snapshot::on(&node, 3600);
    snap.write(0, cluster());
    let mut k = node.kubelet(node.options()).await;

    // A pod that meets baseline but not restricted: refused in A, the reason in StartContainer's
    // error (what `kubectl describe` shows), ...
    let r = run_pod(&mut k, &pod("web-a", "ns-a", "{}")).await;
    assert_refused(&r, RESTRICTED_REASON);
    assert!(
        app(&r)
            .error
            .as_deref()
            .unwrap_or("")
            .replace("\\\"", "\"")
            .contains(r#"container "app" in pod ns-a/web-a"#),
        "{r:#?}"
    );
    let d = record(&node, "web-a");
    assert_eq!(d["decision"], "refused", "{d}");
    assert_eq!(d["policy"], "restricted:latest", "{d}");
    assert_eq!(d["policy_from"], "namespace labels", "{d}");
    assert!(
        checks(&d["violations"]).contains(&"runAsNonRoot".to_owned()),
        "{d}"
    );

    // ... started in B. B says privileged, but the default floor (baseline) holds it at
    // baseline: the baseline pod starts, ...
    let r = run_pod(&mut k, &pod("web-b", "ns-b", "{}")).await;
    assert_started(&r);
    let d = record(&node, "web-b");
    assert_eq!(
        (d["decision"].as_str(), d["policy"].as_str()),
        (Some("allowed"), Some("baseline:latest")),
        "{d}"
    );
    // ... and the seed's privileged pod is still refused there.
    let r = run_pod(&mut k, &pod("priv-b", "ns-b", "{privileged: true}")).await;
    assert_refused(&r, SEED_REASON);

    // The operator's exception lets B's label through: the privileged pod starts.
    set_keys(&node, &[], &[("floor_exceptions", "[\"ns-b\"]")]);
    let r = run_pod(&mut k, &pod("priv-b2", "ns-b", "{privileged: true}")).await;
    assert_started(&r);
    let d = record(&node, "priv-b2");
    assert_eq!(
        (d["decision"].as_str(), d["policy"].as_str()),
        (Some("allowed"), Some("privileged:latest")),
        "{d}"
    );
    // The exception is B's alone: A keeps its label, an unlabeled namespace the default.
    let r = run_pod(
        &mut k,
        &pod("priv-default", "default", "{privileged: true}"),
    )
    .await;
    assert_refused(&r, SEED_REASON);

    // A floor lowered to privileged for the whole node does the same for B.
    set_keys(
        &node,
        &["floor_exceptions"],
        &[("floor", "\"privileged:latest\"")],
    );
    let r = run_pod(&mut k, &pod("priv-b3", "ns-b", "{privileged: true}")).await;
    assert_started(&r);
    assert_eq!(record(&node, "priv-b3")["policy"], "privileged:latest");
    let r = run_pod(&mut k, &pod("web-a2", "ns-a", "{}")).await;
    assert_refused(&r, RESTRICTED_REASON);

    // Unlabeled (`{}`) and unlisted namespaces get the node default, baseline.
    let r = run_pod(&mut k, &pod("web-default", "default", "{}")).await;
    assert_started(&r);
    let d = record(&node, "web-default");
    assert_eq!(d["policy"], "baseline:latest", "{d}");
    assert_eq!(d["policy_from"], "namespace labels", "{d}");
    let r = run_pod(&mut k, &pod("priv-new", "ns-new", "{privileged: true}")).await;
    assert_refused(&r, SEED_REASON);
    let d = record(&node, "priv-new");
    assert_eq!(d["policy_from"], "node defaults", "{d}");

    // A forged namespace: a pod in `default` whose annotations claim B (the CRI's own
    // sandbox-namespace key, through a handler that passes pod annotations into the spec) and
    // a Pod Security label of its own. Neither is the namespace's label: still refused, as
    // `default`.
    let mut opts = node.options();
    opts.runtime_handler = Some("runc-passthrough".into());
    let mut kp = node.kubelet(opts).await;
    let forged = "apiVersion: v1
kind: Pod
metadata:
  name: forged
  namespace: default
  annotations:
    io.kubernetes.cri.sandbox-namespace: ns-b
    pod-security.kubernetes.io/enforce: privileged
  labels:
    pod-security.kubernetes.io/enforce: privileged
spec:
  containers:
  - name: app
    image: localhost/pss-guard/app:latest
    securityContext: {privileged: true}
";
    let r = run_pod(&mut kp, forged).await;
    assert_refused(&r, SEED_REASON);
    let d = record(&node, "forged");
    assert_eq!(d["decision"], "refused", "{d}");
    assert_ne!(d["namespace"], "ns-b", "{d}");
    assert_ne!(d["policy"], "privileged:latest", "{d}");
}

fn seed_pod() -> String {
    let p = common::workspace_root().join("examples/privileged-pod.yaml");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[tokio::test(flavor = "current_thread")]
async fn observe_only_rollout_and_a_stale_or_broken_snapshot() {
    let node = TestNode::up();
    let snap = Snapshot::on(&node, 600);
    snap.write(0, cluster());
    // Observe-only: nothing refused, every would-be baseline refusal recorded.
    node.set_enforce("privileged:latest");
    set_keys(&node, &[], &[("audit", "\"baseline:latest\"")]);
    let mut k = node.kubelet(node.options()).await;

    let r = run_pod(&mut k, &seed_pod()).await;
    assert_started(&r);
    let d = record(&node, "privileged-pod");
    assert_eq!(d["decision"], "audit", "{d}");
    assert_eq!(d["policy"], "privileged:latest", "{d}");
    assert_eq!(d["audit_policy"], "baseline:latest", "{d}");
    assert!(
        checks(&d["audit_violations"]).contains(&"privileged".to_owned()),
        "{d}"
    );
    assert_eq!(checks(&d["violations"]), Vec::<String>::new(), "{d}");

    // A namespace labelled restricted is enforced even so.
    let r = run_pod(&mut k, &pod("web-a", "ns-a", "{}")).await;
    assert_refused(&r, RESTRICTED_REASON);
    assert!(!notes(&record(&node, "web-a")).contains("stale"));

    // A stale snapshot (the agent is down) stays in force; the record says it is stale.
    snap.write(3600, cluster());
    let r = run_pod(&mut k, &pod("web-a-stale", "ns-a", "{}")).await;
    assert_refused(&r, RESTRICTED_REASON);
    let d = record(&node, "web-a-stale");
    assert_eq!(d["policy_from"], "namespace labels", "{d}");
    assert!(notes(&d).contains("namespace snapshot is stale"), "{d}");

    // A broken snapshot: the node defaults apply (here observe-only), and the record says why.
    snap.write_raw("{\"schema\":2,\"written\":");
    let r = run_pod(&mut k, &pod("web-a-broken", "ns-a", "{}")).await;
    assert_started(&r);
    let d = record(&node, "web-a-broken");
    assert_eq!(d["policy"], "privileged:latest", "{d}");
    assert_eq!(d["policy_from"], "node defaults", "{d}");
    assert!(notes(&d).contains("parsing namespace snapshot"), "{d}");
    assert!(notes(&d).contains("node defaults apply"), "{d}");

    // `labels = "record"` (the observe-only overlay): the labels set audit and warn only, so
    // A's `enforce=restricted` refuses nothing either.
    snap.write(0, cluster());
    set_keys(&node, &[], &[("labels", "\"record\"")]);
    let r = run_pod(&mut k, &pod("web-a-record", "ns-a", "{}")).await;
    assert_started(&r);
    let d = record(&node, "web-a-record");
    assert_eq!(d["policy"], "privileged:latest", "{d}");
    assert_eq!(d["policy_from"], "namespace labels", "{d}");
}
