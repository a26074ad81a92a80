//! pss-guard under a real containerd + runc, driven like kubelet (issue 3, items 4, 5, 7), on
//! the stack `PSS_GUARD_STACK` names (bookworm: containerd 1.6; trixie: 1.7; sid: 2.x).
//! Each test brings up its own node (tests/containerd/node-up.sh) and tears it down.

mod common;

use common::TestNode;
use k8s_cri::v1::ContainerState;
use k8s_openapi::api::core::v1::EphemeralContainer;
use kubelet_sim::{ContainerRun, Kubelet, Options, PodRun, Source, load};
use serde_json::{Value, json};

const SEED_REASON: &str = r#"violates PodSecurity "baseline:latest": privileged"#;

fn pod(name: &str, namespace: &str, extra_spec: &str, app_sc: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {namespace}
spec:
{extra_spec}  containers:
  - name: app
    image: localhost/pss-guard/app:latest
    securityContext: {app_sc}
"
    )
}

async fn run(k: &mut Kubelet, yaml: &str, source: Source) -> PodRun {
    let m = load(yaml, source).expect("test pod parses");
    k.run_pod(&m).await.expect("kubelet-sim drives the runtime")
}

fn app(run: &PodRun) -> &ContainerRun {
    run.containers
        .iter()
        .find(|c| c.name == "app")
        .unwrap_or_else(|| panic!("no app container in {run:#?}"))
}

fn assert_refused(run: &PodRun, substring: &str) {
    let c = app(run);
    assert!(
        !c.started,
        "app container started but should be refused: {run:#?}"
    );
    let err = c.error.as_deref().unwrap_or("");
    assert!(
        err.contains("pss-guard: "),
        "not refused by pss-guard: {err}"
    );
    assert!(err.contains(substring), "error lacks {substring:?}: {err}");
}

fn decision_for<'a>(decisions: &'a [Value], pod: &str) -> &'a Value {
    decisions
        .iter()
        .rev()
        .find(|d| d["pod"] == pod && d["container"] == "app")
        .unwrap_or_else(|| panic!("no decision-log record for pod {pod}: {decisions:#?}"))
}

fn meta(case: &str, yaml: &str, expected: &str, substring: Option<&str>) -> Value {
    json!({"case": case, "pod_yaml": yaml, "policy": "baseline:latest",
           "expected": expected, "expected_substring": substring})
}

#[tokio::test(flavor = "current_thread")]
async fn compliant_pod_starts_and_is_logged_allowed() {
    let node = TestNode::up();
    let mut k = node.kubelet(node.options()).await;
    let yaml = pod("plain", "default", "", "{}");
    let r = run(&mut k, &yaml, Source::ApiServer).await;
    assert!(r.all_started(1), "{r:#?}\n{}", node.containerd_log());
    let id = app(&r).container_id.clone().expect("container id");
    let st = k.container_status(&id).await.expect("status");
    assert_eq!(st.state, ContainerState::ContainerRunning as i32, "{st:#?}");
    assert_eq!(
        decision_for(&node.decisions(), "plain")["decision"],
        "allowed"
    );
    node.save_fixture("compliant", &id, meta("compliant", &yaml, "allowed", None));
    k.stop_pod(r.sandbox_id.as_deref().expect("sandbox"))
        .await
        .expect("stop");
}

#[tokio::test(flavor = "current_thread")]
async fn privileged_pod_is_refused_with_reason_and_logged() {
    let node = TestNode::up();
    let mut k = node.kubelet(node.options()).await;
    let yaml = pod("privileged-pod", "default", "", "{privileged: true}");
    let r = run(&mut k, &yaml, Source::ApiServer).await;
    assert_refused(&r, SEED_REASON);
    let err = app(&r).error.clone().unwrap_or_default();
    assert!(
        err.contains(r#"pss-guard: container "app" in pod default/privileged-pod violates"#),
        "{err}"
    );
    // What `kubectl describe` shows: Last State Terminated, reason StartError, exit 128.
    let id = app(&r).container_id.clone().expect("created");
    let st = k.container_status(&id).await.expect("status");
    assert_eq!(st.state, ContainerState::ContainerExited as i32);
    assert_eq!(
        (st.reason.as_str(), st.exit_code),
        ("StartError", 128),
        "{st:#?}"
    );
    assert!(st.message.contains(SEED_REASON), "{}", st.message);
    if node.version("RUNC_VERSION").starts_with("1.3.") {
        // How runc 1.3 words a refusing createRuntime hook (docs/reference.md quotes it).
        assert!(
            err.contains(
                "error running createRuntime hook #0: exit status 1, stdout: , stderr: pss-guard: "
            ),
            "{err}"
        );
    }

    let d = decision_for(&node.decisions(), "privileged-pod").clone();
    assert_eq!(d["decision"], "refused", "{d}");
    assert_eq!(d["namespace"], "default");
    let checks: Vec<&str> = d["violations"]
        .as_array()
        .map(|v| v.iter().filter_map(|x| x["check"].as_str()).collect())
        .unwrap_or_default();
    assert!(checks.contains(&"privileged"), "{d}");
    node.save_fixture(
        "privileged",
        &id,
        meta("privileged", &yaml, "refused", Some(SEED_REASON)),
    );
    k.stop_pod(r.sandbox_id.as_deref().expect("sandbox"))
        .await
        .expect("stop");
}

#[tokio::test(flavor = "current_thread")]
async fn privileged_pod_in_exempt_namespace_starts() {
    let node = TestNode::up();
    let mut k = node.kubelet(node.options()).await;
    let yaml = pod("privileged-pod", "kube-system", "", "{privileged: true}");
    let r = run(&mut k, &yaml, Source::ApiServer).await;
    assert!(r.all_started(1), "{r:#?}");
    let d = decision_for(&node.decisions(), "privileged-pod").clone();
    assert_eq!(d["decision"], "exempt", "{d}");
    let id = app(&r).container_id.clone().expect("created");
    node.save_fixture(
        "privileged-kube-system",
        &id,
        meta("privileged-kube-system", &yaml, "allowed", None),
    );
    k.stop_pod(r.sandbox_id.as_deref().expect("sandbox"))
        .await
        .expect("stop");
}

/// The same privileged pod through a handler without the base spec starts: the refusal
/// above is the hook's, and a RuntimeClass handler without base_runtime_spec bypasses it.
#[tokio::test(flavor = "current_thread")]
async fn handler_without_base_spec_bypasses_the_hook() {
    let node = TestNode::up();
    let mut opts = node.options();
    opts.runtime_handler = Some("runc-nohook".into());
    let mut k = node.kubelet(opts).await;
    let r = run(
        &mut k,
        &pod("nohook", "default", "", "{privileged: true}"),
        Source::ApiServer,
    )
    .await;
    assert!(r.all_started(1), "{r:#?}");
    assert!(node.decisions().iter().all(|d| d["pod"] != "nohook"));
    k.stop_pod(r.sandbox_id.as_deref().expect("sandbox"))
        .await
        .expect("stop");
}

/// Static pods never pass admission: only the node can refuse them.
#[tokio::test(flavor = "current_thread")]
async fn static_privileged_pod_is_refused() {
    let node = TestNode::up();
    let mut k = node.kubelet(node.options()).await;
    let yaml = pod("static-web", "default", "", "{privileged: true}");
    let r = run(&mut k, &yaml, Source::Static).await;
    assert_refused(&r, SEED_REASON);
    let id = app(&r).container_id.clone().expect("created");
    node.save_fixture(
        "static-privileged",
        &id,
        meta("static-privileged", &yaml, "refused", Some(SEED_REASON)),
    );
    k.stop_pod(r.sandbox_id.as_deref().expect("sandbox"))
        .await
        .expect("stop");
}

/// An ephemeral container that adds privileges to a running compliant pod. A privileged
/// one is refused by containerd itself (the sandbox was not created privileged); a
/// capability is not, so that is the hook's to refuse.
#[tokio::test(flavor = "current_thread")]
async fn ephemeral_container_adding_privileges_is_refused() {
    let node = TestNode::up();
    let mut k = node.kubelet(node.options()).await;
    let yaml = pod("debug-me", "default", "", "{}");
    let m = load(&yaml, Source::ApiServer).expect("pod");
    let r = k.run_pod(&m).await.expect("run");
    assert!(r.all_started(1), "{r:#?}");
    let sandbox = r.sandbox_id.clone().expect("sandbox");
    let ephemeral = |name: &str, sc: Value| -> EphemeralContainer {
        serde_json::from_value(json!({
            "name": name,
            "image": "localhost/pss-guard/app:latest",
            "targetContainerName": "app",
            "terminationMessagePath": "/dev/termination-log",
            "securityContext": sc
        }))
        .expect("ephemeral container")
    };

    let ec = ephemeral("debugger", json!({"capabilities": {"add": ["SYS_ADMIN"]}}));
    let c = k.run_ephemeral(&m, &sandbox, &ec).await.expect("ephemeral");
    assert!(!c.started, "{c:#?}");
    let err = c.error.clone().unwrap_or_default();
    assert!(err.contains("pss-guard: "), "{err}");
    assert!(
        err.contains(r#"container "debugger""#) && err.contains("SYS_ADMIN"),
        "{err}"
    );
    let id = c.container_id.clone().expect("created");
    node.save_fixture(
        "ephemeral-sys-admin",
        &id,
        json!({"case": "ephemeral-sys-admin", "pod_yaml": yaml, "ephemeral_container": ec,
               "policy": "baseline:latest", "expected": "refused",
               "expected_substring": "non-default capabilities"}),
    );

    let ec = ephemeral("debugger-privileged", json!({"privileged": true}));
    let c = k.run_ephemeral(&m, &sandbox, &ec).await.expect("ephemeral");
    assert!(!c.created && !c.started, "{c:#?}");
    let err = c.error.clone().unwrap_or_default();
    assert!(
        err.contains("no privileged container allowed in sandbox"),
        "{err}"
    );

    // The pod itself keeps running.
    let app_id = app(&r).container_id.clone().expect("app id");
    let st = k.container_status(&app_id).await.expect("status");
    assert_eq!(st.state, ContainerState::ContainerRunning as i32);
    k.stop_pod(&sandbox).await.expect("stop");
}

/// With pod_annotations = ["*"], a pod can put io.kubernetes.cri.* look-alikes into the
/// spec; claiming an exempt namespace must not exempt it.
#[tokio::test(flavor = "current_thread")]
async fn forged_exempt_namespace_annotation_is_refused() {
    let node = TestNode::up();
    let mut opts = node.options();
    opts.runtime_handler = Some("runc-passthrough".into());
    let mut k = node.kubelet(opts).await;
    let yaml = "apiVersion: v1
kind: Pod
metadata:
  name: forged
  namespace: default
  annotations:
    io.kubernetes.cri.sandbox-namespace: kube-system
    io.kubernetes.cri.sandbox-name: kube-proxy
spec:
  containers:
  - name: app
    image: localhost/pss-guard/app:latest
    securityContext: {privileged: true}
";
    let r = run(&mut k, yaml, Source::ApiServer).await;
    assert_refused(&r, SEED_REASON);
    let id = app(&r).container_id.clone().expect("created");
    node.save_fixture(
        "forged-namespace-annotation",
        &id,
        meta(
            "forged-namespace-annotation",
            yaml,
            "refused",
            Some(SEED_REASON),
        ),
    );
    k.stop_pod(r.sandbox_id.as_deref().expect("sandbox"))
        .await
        .expect("stop");
}

/// Pod sysctls live only in the sandbox spec. kernel.msgmax is namespaced (runc accepts it)
/// but not in the baseline list; kubelet lets it through only with --allowed-unsafe-sysctls.
#[tokio::test(flavor = "current_thread")]
async fn unsafe_pod_sysctl_is_refused_from_the_sandbox_spec() {
    let node = TestNode::up();
    let mut opts: Options = node.options();
    opts.allowed_unsafe_sysctls = vec!["kernel.msgmax".into()];
    let mut k = node.kubelet(opts).await;
    let yaml = pod(
        "sysctl-pod",
        "default",
        "  securityContext:\n    sysctls:\n    - {name: kernel.msgmax, value: \"8192\"}\n",
        "{}",
    );
    let r = run(&mut k, &yaml, Source::ApiServer).await;
    assert!(r.sandbox_error.is_none(), "{r:#?}");
    assert_refused(&r, "forbidden sysctls (kernel.msgmax)");
    let id = app(&r).container_id.clone().expect("created");
    node.save_fixture(
        "sysctl-unsafe",
        &id,
        meta("sysctl-unsafe", &yaml, "refused", Some("forbidden sysctls")),
    );
    k.stop_pod(r.sandbox_id.as_deref().expect("sandbox"))
        .await
        .expect("stop");
}

/// hostNetwork is invisible in the app container's spec (docs/reference.md, "How it works"); the hook
/// must find it through the sandbox.
#[tokio::test(flavor = "current_thread")]
async fn host_namespaces_are_refused() {
    let node = TestNode::up();
    let mut k = node.kubelet(node.options()).await;
    for (field, case) in [
        ("hostNetwork", "host-network"),
        ("hostPID", "host-pid"),
        ("hostIPC", "host-ipc"),
    ] {
        let yaml = pod(case, "default", &format!("  {field}: true\n"), "{}");
        let r = run(&mut k, &yaml, Source::ApiServer).await;
        let want = format!("host namespaces ({field}=true)");
        assert_refused(&r, &want);
        let id = app(&r).container_id.clone().expect("created");
        node.save_fixture(case, &id, meta(case, &yaml, "refused", Some(&want)));
        k.stop_pod(r.sandbox_id.as_deref().expect("sandbox"))
            .await
            .expect("stop");
    }
}

/// Volumes kubelet manages are bind mounts from under the kubelet root; they must not be
/// taken for hostPath volumes (THREAT-MODEL.md rows 4 and 5), subPath binds included.
#[tokio::test(flavor = "current_thread")]
async fn kubelet_managed_volumes_are_allowed() {
    let node = TestNode::up();
    let mut k = node.kubelet(node.options()).await;
    let yaml = "apiVersion: v1
kind: Pod
metadata: {name: managed-volumes, namespace: default}
spec:
  containers:
  - name: app
    image: localhost/pss-guard/app:latest
    volumeMounts:
    - {name: scratch, mountPath: /scratch}
    - {name: scratch, mountPath: /sub, subPath: a/b}
    - {name: cm, mountPath: /cm, readOnly: true}
    - {name: sec, mountPath: /sec, readOnly: true}
    - {name: down, mountPath: /down}
    - {name: csi, mountPath: /csi}
  volumes:
  - {name: scratch, emptyDir: {}}
  - {name: cm, configMap: {name: cfg}}
  - {name: sec, secret: {secretName: s}}
  - name: down
    downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}
  - {name: csi, csi: {driver: inline.example.com}}
";
    let r = run(&mut k, yaml, Source::ApiServer).await;
    assert!(r.all_started(1), "{r:#?}");
    let id = app(&r).container_id.clone().expect("created");
    node.save_fixture(
        "managed-volumes",
        &id,
        meta("managed-volumes", yaml, "allowed", None),
    );
    k.stop_pod(r.sandbox_id.as_deref().expect("sandbox"))
        .await
        .expect("stop");
}

/// A mounted hostPath is a bind mount from outside the pod's managed roots.
#[tokio::test(flavor = "current_thread")]
async fn mounted_host_path_is_refused() {
    let node = TestNode::up();
    let mut k = node.kubelet(node.options()).await;
    let yaml = "apiVersion: v1
kind: Pod
metadata: {name: host-path, namespace: default}
spec:
  containers:
  - name: app
    image: localhost/pss-guard/app:latest
    volumeMounts: [{name: logs, mountPath: /host-logs, readOnly: true}]
  volumes:
  - {name: logs, hostPath: {path: /var/log, type: Directory}}
";
    let r = run(&mut k, yaml, Source::ApiServer).await;
    assert_refused(&r, "hostPath volumes");
    let id = app(&r).container_id.clone().expect("created");
    node.save_fixture(
        "host-path-mounted",
        &id,
        meta(
            "host-path-mounted",
            yaml,
            "refused",
            Some("hostPath volumes"),
        ),
    );
    k.stop_pod(r.sandbox_id.as_deref().expect("sandbox"))
        .await
        .expect("stop");
}

/// Restricted: a mounted in-tree volume type outside the allowed list (here NFS, set up by
/// kubelet under kubernetes.io~nfs) is refused when the policy sets
/// `legacy_volume_plugins = "refuse"` (by default such a plugin dir may be a PVC, which PSA
/// allows, so the hook lets it through); the restricted base pod passes.
#[tokio::test(flavor = "current_thread")]
async fn restricted_volume_type_is_refused_and_restricted_pod_starts() {
    let node = TestNode::up();
    node.set_enforce("restricted:latest");
    let mut k = node.kubelet(node.options()).await;
    let restricted = |name: &str, volumes: &str, mounts: &str| {
        format!(
            "apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default}}
spec:
  securityContext:
    runAsNonRoot: true
    seccompProfile: {{type: RuntimeDefault}}
  containers:
  - name: app
    image: localhost/pss-guard/app-nonroot:latest
    securityContext:
      allowPrivilegeEscalation: false
      capabilities: {{drop: [ALL]}}
{mounts}{volumes}"
        )
    };
    let ok = restricted("restricted-ok", "", "");
    let r = run(&mut k, &ok, Source::ApiServer).await;
    assert!(r.all_started(1), "{r:#?}");
    let id = app(&r).container_id.clone().expect("created");
    let mut m = meta("restricted-ok", &ok, "allowed", None);
    m["policy"] = json!("restricted:latest");
    node.save_fixture("restricted-ok", &id, m);
    k.stop_pod(r.sandbox_id.as_deref().expect("sandbox"))
        .await
        .expect("stop");

    node.set_policy_key("legacy_volume_plugins", "\"refuse\"");
    let nfs = restricted(
        "restricted-nfs",
        "  volumes:\n  - {name: share, nfs: {server: 192.0.2.20, path: /export}}\n",
        "    volumeMounts: [{name: share, mountPath: /share}]\n",
    );
    let r = run(&mut k, &nfs, Source::ApiServer).await;
    assert_refused(&r, "restricted volume types");
    let id = app(&r).container_id.clone().expect("created");
    let mut m = meta(
        "restricted-nfs",
        &nfs,
        "refused",
        Some("restricted volume types"),
    );
    m["policy"] = json!("restricted:latest");
    m["policy_extra"] = json!({"legacy_volume_plugins": "refuse"});
    node.save_fixture("restricted-nfs", &id, m);
    k.stop_pod(r.sandbox_id.as_deref().expect("sandbox"))
        .await
        .expect("stop");
}
