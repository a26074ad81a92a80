//! pss-guard under a real CRI-O (issue 22): CRI-O v1.36.3 built from its release source by the
//! crio stack (tests/containerd/stack.sh), Debian unstable's conmon and runc, pss-guard wired
//! through the shipped hooks.d file (`--runtime detect`), driven through CRI-O's CRI socket by
//! kubelet-sim exactly as the containerd node is. Each test brings up its own node
//! (tests/containerd/crio-up.sh) and tears it down.
//!
//! What differs from containerd, and is asserted here: CRI-O runs the hook inside
//! `CreateContainer` (containerd: `StartContainer`), so a refused container is never created;
//! the hook's identity comes from the bundle's place in CRI-O's run root and CRI-O's own
//! `io.kubernetes.cri-o.*` keys; no CRI view is asked for (containerd only).
//!
//! On this host a privileged container cannot run under CRI-O with plain runc (CRI-O grants
//! every capability; the host's bounding set lacks CAP_SYS_RESOURCE): the node's default handler
//! runs runc behind tests/containerd/runc-hostcaps.py, which drops only those capabilities, and
//! `runc-plain` is runc itself, to show the verdicts are the same without it.

mod common;

use common::{Snapshot, TestNode};
use k8s_cri::v1::ContainerState;
use k8s_openapi::api::core::v1::EphemeralContainer;
use kubelet_sim::{ContainerRun, Kubelet, Options, PodRun, Source, load};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

const SEED_REASON: &str = r#"violates PodSecurity "baseline:latest": privileged"#;
const ENFORCE: &str = "pod-security.kubernetes.io/enforce";

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

async fn stop(k: &mut Kubelet, r: &PodRun) {
    if let Some(s) = r.sandbox_id.as_deref() {
        k.stop_pod(s).await.expect("stop pod");
    }
}

fn app(run: &PodRun) -> &ContainerRun {
    run.containers
        .iter()
        .find(|c| c.name == "app")
        .unwrap_or_else(|| panic!("no app container in {run:#?}"))
}

/// Refused by pss-guard, in `CreateContainer`: CRI-O never created the container.
fn assert_refused(run: &PodRun, substring: &str) {
    let c = app(run);
    assert!(
        !c.created && !c.started,
        "app container created but should be refused at create: {run:#?}"
    );
    let err = unescaped(c.error.as_deref().unwrap_or(""));
    assert!(
        err.contains("pss-guard: "),
        "not refused by pss-guard: {err}"
    );
    assert!(err.contains(substring), "error lacks {substring:?}: {err}");
}

/// CRI-O's CreateContainer error quotes runc's log line, whose quotes arrive escaped
/// (`\"baseline:latest\"`): undone before matching PSA's message.
fn unescaped(err: &str) -> String {
    err.replace("\\\"", "\"").replace("\\\\", "\\")
}

fn assert_running(node: &TestNode, run: &PodRun) {
    assert!(run.all_started(1), "{run:#?}\n{}", node.containerd_log());
}

/// The last record of the pod's `app` container, which must name the pod as CRI-O's.
fn record(node: &TestNode, pod: &str) -> Value {
    node.decisions()
        .into_iter()
        .rev()
        .find(|d| d["pod"] == pod && d["container"] == "app")
        .unwrap_or_else(|| {
            panic!(
                "no decision-log record for pod {pod}: {:#?}",
                node.decisions()
            )
        })
}

fn checks(d: &Value) -> Vec<String> {
    d["violations"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|x| x["check"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// CRI-O keeps the container's bundle in `<runroot>/<driver>-containers/<id>/userdata`.
fn assert_bundle_on_driver(node: &TestNode, driver: &str, container_id: &str) {
    let b = node
        .var("CRIO_RUNROOT")
        .join(format!("{driver}-containers"))
        .join(container_id)
        .join("userdata/config.json");
    assert!(b.is_file(), "no CRI-O bundle at {}", b.display());
}

/// Seed refused (in `CreateContainer`, with PSA's reason) and a plain pod running, on a
/// storage driver: overlay (CRI-O's default) and vfs (issue 18, finding 5: recognised on
/// every driver, not overlay only). kube-system's privileged pod is exempt on both.
async fn seed_plain_and_system_on(driver: &str) {
    let node = TestNode::up_crio(driver, true);
    let mut k = node.kubelet(node.options()).await;

    let r = run(
        &mut k,
        &pod("plain", "default", "", "{}"),
        Source::ApiServer,
    )
    .await;
    assert_running(&node, &r);
    let id = app(&r).container_id.clone().expect("container id");
    let st = k.container_status(&id).await.expect("status");
    assert_eq!(st.state, ContainerState::ContainerRunning as i32, "{st:#?}");
    assert_bundle_on_driver(&node, driver, &id);
    let d = record(&node, "plain");
    assert_eq!(d["decision"], "allowed", "{d}");
    // The identity is CRI-O's: kubelet's labels through io.kubernetes.cri-o.Labels.
    assert_eq!(d["namespace"], "default", "{d}");
    assert_eq!(d["pod_uid"], json!(r.uid), "{d}");
    stop(&mut k, &r).await;

    let r = run(
        &mut k,
        &pod("privileged-pod", "default", "", "{privileged: true}"),
        Source::ApiServer,
    )
    .await;
    assert_refused(&r, SEED_REASON);
    let err = unescaped(app(&r).error.as_deref().unwrap_or_default());
    assert!(
        err.contains(r#"pss-guard: container "app" in pod default/privileged-pod violates"#),
        "{err}"
    );
    let d = record(&node, "privileged-pod");
    assert_eq!(d["decision"], "refused", "{d}");
    assert_eq!(d["namespace"], "default", "{d}");
    assert!(checks(&d).contains(&"privileged".to_owned()), "{d}");
    stop(&mut k, &r).await;

    let r = run(
        &mut k,
        &pod("system-pod", "kube-system", "", "{privileged: true}"),
        Source::ApiServer,
    )
    .await;
    assert_running(&node, &r);
    let d = record(&node, "system-pod");
    assert_eq!(d["decision"], "exempt", "{d}");
    assert_eq!(d["namespace"], "kube-system", "{d}");
    stop(&mut k, &r).await;
}

#[tokio::test(flavor = "current_thread")]
async fn overlay_seed_refused_plain_pod_runs_kube_system_exempt() {
    seed_plain_and_system_on("overlay").await;
}

#[tokio::test(flavor = "current_thread")]
async fn vfs_seed_refused_plain_pod_runs_kube_system_exempt() {
    seed_plain_and_system_on("vfs").await;
}

/// Through runc itself (no capability trim): the same verdicts; the seed's refusal is the
/// hook's, and an exempt privileged container then fails in runc on this host, after the hook.
#[tokio::test(flavor = "current_thread")]
async fn plain_runc_gives_the_same_verdicts() {
    let node = TestNode::up_crio("overlay", true);
    let mut opts = node.options();
    opts.runtime_handler = Some("runc-plain".into());
    let mut k = node.kubelet(opts).await;
    let r = run(
        &mut k,
        &pod("seed-plain-runc", "default", "", "{privileged: true}"),
        Source::ApiServer,
    )
    .await;
    assert_refused(&r, SEED_REASON);
    stop(&mut k, &r).await;
    let r = run(
        &mut k,
        &pod("system-plain-runc", "kube-system", "", "{privileged: true}"),
        Source::ApiServer,
    )
    .await;
    let d = record(&node, "system-plain-runc");
    assert_eq!(d["decision"], "exempt", "{d}");
    let c = app(&r);
    if !c.started {
        let err = c.error.as_deref().unwrap_or("");
        assert!(!err.contains("pss-guard: "), "{err}");
        assert!(err.contains("apply caps"), "{err}");
    }
    stop(&mut k, &r).await;
}

/// Namespace exemptions through the agent's snapshot (issue 10) on CRI-O: a namespace labelled
/// privileged runs a privileged pod, one labelled restricted refuses a baseline pod, and a pod
/// claiming another namespace in its annotations (CRI-O copies them all) is still its own.
#[tokio::test(flavor = "current_thread")]
async fn namespace_labels_from_the_snapshot_decide_on_cri_o() {
    let node = TestNode::up_crio("overlay", true);
    let snap = Snapshot::on(&node, 3600);
    snap.write(
        0,
        json!({
            "default": {},
            "kube-system": {},
            "ns-a": {ENFORCE: "restricted"},
            "ns-b": {ENFORCE: "privileged"},
        }),
    );
    // The node's floor (baseline) holds a namespace labelled below it, unless excepted.
    node.set_policy_key("floor_exceptions", "[\"ns-b\"]");
    let mut k = node.kubelet(node.options()).await;

    let r = run(
        &mut k,
        &pod("priv-b", "ns-b", "", "{privileged: true}"),
        Source::ApiServer,
    )
    .await;
    assert_running(&node, &r);
    let d = record(&node, "priv-b");
    assert_eq!(d["policy"], "privileged:latest", "{d}");
    assert_eq!(d["policy_from"], "namespace labels", "{d}");
    stop(&mut k, &r).await;

    let r = run(&mut k, &pod("plain-a", "ns-a", "", "{}"), Source::ApiServer).await;
    assert_refused(&r, r#"violates PodSecurity "restricted:latest""#);
    stop(&mut k, &r).await;

    let forged = "apiVersion: v1
kind: Pod
metadata:
  name: forged
  namespace: default
  annotations:
    io.kubernetes.pod.namespace: ns-b
    io.kubernetes.cri-o.Namespace: ns-b
    io.kubernetes.cri-o.Labels: '{\"io.kubernetes.pod.namespace\":\"kube-system\"}'
    pod-security.kubernetes.io/enforce: privileged
spec:
  containers:
  - name: app
    image: localhost/pss-guard/app:latest
    securityContext: {privileged: true}
";
    let r = run(&mut k, forged, Source::ApiServer).await;
    assert_refused(&r, SEED_REASON);
    let d = record(&node, "forged");
    assert_eq!(d["namespace"], "default", "{d}");
    assert!(d.get("exempt").is_none(), "{d}");
    stop(&mut k, &r).await;
}

/// Host namespaces (in the sandbox's spec on CRI-O too), an unsafe pod sysctl, an added
/// capability.
#[tokio::test(flavor = "current_thread")]
async fn host_namespaces_sysctls_and_capabilities_are_refused() {
    let node = TestNode::up_crio("overlay", true);
    let mut opts: Options = node.options();
    opts.allowed_unsafe_sysctls = vec!["kernel.msgmax".into()];
    let mut k = node.kubelet(opts).await;
    for (field, case) in [
        ("hostNetwork", "host-network"),
        ("hostPID", "host-pid"),
        ("hostIPC", "host-ipc"),
    ] {
        let yaml = pod(case, "default", &format!("  {field}: true\n"), "{}");
        let r = run(&mut k, &yaml, Source::ApiServer).await;
        assert_refused(&r, &format!("host namespaces ({field}=true)"));
        stop(&mut k, &r).await;
    }
    let yaml = pod(
        "sysctl-pod",
        "default",
        "  securityContext:\n    sysctls:\n    - {name: kernel.msgmax, value: \"8192\"}\n",
        "{}",
    );
    let r = run(&mut k, &yaml, Source::ApiServer).await;
    assert!(r.sandbox_error.is_none(), "{r:#?}");
    assert_refused(&r, "forbidden sysctls (kernel.msgmax)");
    stop(&mut k, &r).await;

    let yaml = pod(
        "cap-pod",
        "default",
        "",
        "{capabilities: {add: [SYS_ADMIN]}}",
    );
    let r = run(&mut k, &yaml, Source::ApiServer).await;
    assert_refused(&r, "non-default capabilities");
    assert_refused(&r, "SYS_ADMIN");
    stop(&mut k, &r).await;

    // NET_RAW is a containerd default but not CRI-O's: with the node's policy naming CRI-O's
    // defaults (crio-up.sh), an add of it is seen and refused, as PSA refuses it.
    let yaml = pod("net-raw", "default", "", "{capabilities: {add: [NET_RAW]}}");
    let r = run(&mut k, &yaml, Source::ApiServer).await;
    assert_refused(&r, "NET_RAW");
    stop(&mut k, &r).await;
}

/// hostPath refused; kubelet's own volumes, a subPath bind among them, allowed: the subPath is
/// traced through the mount table of CRI-O's mount namespace, where kubelet-sim made the bind.
#[tokio::test(flavor = "current_thread")]
async fn host_paths_refused_and_kubelet_volumes_with_a_subpath_allowed() {
    let node = TestNode::up_crio("overlay", true);
    let mut k = node.kubelet(node.options()).await;
    let managed = "apiVersion: v1
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
  volumes:
  - {name: scratch, emptyDir: {}}
  - {name: cm, configMap: {name: cfg}}
  - {name: sec, secret: {secretName: s}}
";
    let r = run(&mut k, managed, Source::ApiServer).await;
    assert_running(&node, &r);
    assert_eq!(record(&node, "managed-volumes")["decision"], "allowed");
    stop(&mut k, &r).await;

    let host = "apiVersion: v1
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
    let r = run(&mut k, host, Source::ApiServer).await;
    assert_refused(&r, "hostPath volumes");
    stop(&mut k, &r).await;

    // A hostPath volume used through a subPath, named like a pod volume: still a host path.
    let hidden = "apiVersion: v1
kind: Pod
metadata: {name: host-subpath, namespace: default}
spec:
  containers:
  - name: app
    image: localhost/pss-guard/app:latest
    volumeMounts: [{name: scratch, mountPath: /x, subPath: log}]
  volumes:
  - {name: scratch, hostPath: {path: /var, type: Directory}}
";
    let r = run(&mut k, hidden, Source::ApiServer).await;
    assert_refused(&r, "hostPath volumes");
    stop(&mut k, &r).await;
}

/// Static pods never pass admission; an ephemeral container adding a capability to a running
/// compliant pod is the hook's to refuse, and the pod keeps running.
#[tokio::test(flavor = "current_thread")]
async fn static_pods_and_ephemeral_containers() {
    let node = TestNode::up_crio("overlay", true);
    let mut k = node.kubelet(node.options()).await;
    let r = run(
        &mut k,
        &pod("static-web", "default", "", "{privileged: true}"),
        Source::Static,
    )
    .await;
    assert_refused(&r, SEED_REASON);
    stop(&mut k, &r).await;

    let yaml = pod("debug-me", "default", "", "{}");
    let m = load(&yaml, Source::ApiServer).expect("pod");
    let r = k.run_pod(&m).await.expect("run");
    assert_running(&node, &r);
    let sandbox = r.sandbox_id.clone().expect("sandbox");
    let ec: EphemeralContainer = serde_json::from_value(json!({
        "name": "debugger",
        "image": "localhost/pss-guard/app:latest",
        "targetContainerName": "app",
        "terminationMessagePath": "/dev/termination-log",
        "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}
    }))
    .expect("ephemeral container");
    let c = k.run_ephemeral(&m, &sandbox, &ec).await.expect("ephemeral");
    assert!(!c.started, "{c:#?}");
    let err = unescaped(c.error.as_deref().unwrap_or_default());
    assert!(err.contains("pss-guard: "), "{err}");
    assert!(
        err.contains(r#"container "debugger""#) && err.contains("SYS_ADMIN"),
        "{err}"
    );
    let app_id = app(&r).container_id.clone().expect("app id");
    let st = k.container_status(&app_id).await.expect("status");
    assert_eq!(st.state, ContainerState::ContainerRunning as i32);
    k.stop_pod(&sandbox).await.expect("stop");
}

/// Runs `podman` in CRI-O's mount namespace, on CRI-O's own storage and hooks.d directory.
fn podman(node: &TestNode, args: &[&str]) -> std::process::Output {
    let pid = node.env.get("RUNTIME_PID").expect("RUNTIME_PID").clone();
    let storage = node.var("CRIO_ROOT");
    let runroot = node.var("CRIO_RUNROOT");
    let driver = node.env.get("CRIO_DRIVER").expect("CRIO_DRIVER").clone();
    // Bounded: a podman that waits on something never fails the test by hanging it.
    Command::new("timeout")
        .args(["120", "nsenter", "-t", &pid, "-m", "-w", "podman"])
        .arg(format!("--root={}", storage.display()))
        .arg(format!("--runroot={}", runroot.display()))
        .arg(format!("--storage-driver={driver}"))
        .args([
            "--cgroup-manager=cgroupfs",
            "--events-backend=file",
            "--runtime=/usr/bin/runc",
            "--hooks-dir=/etc/containers/oci/hooks.d",
        ])
        .args(args)
        .output()
        .expect("run podman")
}

/// Podman on the same node, sharing CRI-O's storage and hooks.d file, writing CRI-O's own
/// keys with `--annotation` (THREAT-MODEL row 11): the bundle lies in the graph root, not in
/// CRI-O's run root, so nothing in it is trusted. A plain Podman container still runs.
#[tokio::test(flavor = "current_thread")]
async fn podman_on_cri_os_storage_writing_cri_o_keys_earns_nothing() {
    let node = TestNode::up_crio("overlay", true);
    let labels = json!({
        "io.kubernetes.pod.namespace": "kube-system",
        "io.kubernetes.pod.name": "kube-proxy",
        "io.kubernetes.pod.uid": "0a1b2c3d",
        "io.kubernetes.container.name": "app"
    })
    .to_string();
    let out = podman(
        &node,
        &[
            "run",
            "--rm",
            "--network=none",
            "--name=forger",
            "--privileged",
            &format!("--annotation=io.kubernetes.cri-o.Labels={labels}"),
            "--annotation=io.kubernetes.cri-o.SandboxID=forged",
            "--annotation=io.kubernetes.cri-o.ContainerType=container",
            "--annotation=io.container.manager=cri-o",
            "--annotation=io.kubernetes.pod.namespace=kube-system",
            "--entrypoint=/bin/true",
            "localhost/pss-guard/app:latest",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the forged container ran: {stderr}");
    assert!(
        stderr.contains("pss-guard: "),
        "not refused by pss-guard: {stderr}"
    );
    let d = node
        .decisions()
        .into_iter()
        .last()
        .expect("a record for the podman container");
    assert_eq!(d["decision"], "refused", "{d}");
    assert!(d.get("namespace").is_none(), "{d}");
    assert!(d.get("exempt").is_none(), "{d}");

    let before = node.decisions().len();
    let out = podman(
        &node,
        &[
            "run",
            "--rm",
            "--network=none",
            "--entrypoint=/bin/true",
            "localhost/pss-guard/app:latest",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = node.decisions();
    assert_eq!(after.len(), before + 1, "{after:#?}");
    assert_eq!(after[before]["decision"], "allowed", "{}", after[before]);
}

fn pss_guard(node: &TestNode, args: &[&str]) -> std::process::Output {
    Command::new(common::pss_guard_bin())
        .args(args)
        .arg("--root")
        .arg(&node.dir)
        .output()
        .expect("run pss-guard")
}

/// `pss-guard install` on a CRI-O node reads CRI-O's real configuration (its drop-in's
/// `hooks_dir`, `root` and `runroot`); `health` is green once wired and red when the hooks.d
/// file is gone; CRI-O picks the file up without a restart.
#[tokio::test(flavor = "current_thread")]
async fn install_and_health_against_cri_os_configuration() {
    let node = TestNode::up_crio("overlay", false);
    let hooks = node.var("HOOKS_DIR").join("pss-guard.json");
    assert!(!hooks.exists());
    let mut k = node.kubelet(node.options()).await;
    // Not wired yet: the seed runs.
    let r = run(
        &mut k,
        &pod("before", "default", "", "{privileged: true}"),
        Source::ApiServer,
    )
    .await;
    assert_running(&node, &r);
    stop(&mut k, &r).await;
    // A hooks.d file naming a binary that is not there is not loaded at all (THREAT-MODEL,
    // "What it does not stop"): the seed still runs, and health says the node is unprotected.
    let missing = json!({"version": "1.0.0",
        "hook": {"path": "/opt/pss-guard/missing", "args": ["pss-guard", "hook", "--runtime", "detect"]},
        "when": {"always": true}, "stages": ["prestart"]});
    std::fs::write(&hooks, missing.to_string()).expect("write hooks.d file");
    std::thread::sleep(std::time::Duration::from_secs(1));
    let r = run(
        &mut k,
        &pod("missing-binary", "default", "", "{privileged: true}"),
        Source::ApiServer,
    )
    .await;
    assert_running(&node, &r);
    stop(&mut k, &r).await;

    let out = pss_guard(
        &node,
        &[
            "install",
            "--only",
            "hooks.d",
            "--bin-path",
            "/opt/pss-guard/pss-guard",
            "--policy",
            node.var("PSS_GUARD_POLICY").to_str().expect("utf-8"),
        ],
    );
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let def: Value = serde_json::from_slice(&std::fs::read(&hooks).expect("hooks.d file written"))
        .expect("json");
    assert_eq!(def["hook"]["path"], "/opt/pss-guard/pss-guard", "{def}");
    // The policy install wrote names CRI-O's storage as its configuration does.
    let policy = std::fs::read_to_string(node.dir.join("etc/pss-guard/policy.toml"))
        .expect("installed policy");
    for key in ["CRIO_ROOT", "CRIO_RUNROOT"] {
        let p = node.var(key);
        assert!(
            policy.contains(&format!("{:?}", p.display().to_string())),
            "{key}: {policy}"
        );
    }

    let health_args = ["health", "--json", "--bin-path", "/opt/pss-guard/pss-guard"];
    let out = pss_guard(&node, &health_args);
    let health = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{health}");

    // CRI-O reads hooks.d as it changes: the seed is now refused, with no restart.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let r = run(
        &mut k,
        &pod("after", "default", "", "{privileged: true}"),
        Source::ApiServer,
    )
    .await;
    assert_refused(&r, SEED_REASON);
    stop(&mut k, &r).await;

    std::fs::remove_file(&hooks).expect("remove hooks.d file");
    let out = pss_guard(&node, &health_args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(Path::new(&node.dir).is_dir());
}
