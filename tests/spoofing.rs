//! Exemption spoofing: a pod author writes annotations, and runtimes copy them into the spec
//! (containerd with `pod_annotations = ["*"]`; CRI-O always, as top-level keys, before its own).
//! Whatever they imitate, they never earn an exemption: only the keys the runtime itself sets, read
//! under the runtime that really built the spec, do. The CRI-O specs here are built in the order
//! CRI-O's `SpecAddAnnotations` writes them (pod annotations, CRI-O's keys, kubelet's container
//! annotations and labels), so the later writes win as they do in CRI-O's map.
//!
//! The property runs through the library (`hook::decide`); the named cases run through the built
//! binary with a privileged spec, so a spoof that worked would start a privileged container.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use proptest::prelude::*;
use pss_guard::config::Policy;
use pss_guard::hook::{self, Options};
use pss_guard::spec::{self, Loaded, Runtime, Sandbox, identity};
use serde_json::{Value, json};

const CRI: &str = "io.kubernetes.cri.";
const CRIO: &str = "io.kubernetes.cri-o.";

/// What containerd sets on an app container, after copying passthrough pod annotations: these
/// keys always hold containerd's values.
const CONTAINERD_SETS: [&str; 7] = [
    "container-type",
    "container-name",
    "sandbox-id",
    "sandbox-name",
    "sandbox-namespace",
    "sandbox-uid",
    "image-name",
];

/// CRI-O's own keys on an app container (`SpecAddAnnotations` writes them after the pod's).
const CRIO_SETS: [&str; 5] = [
    "Labels",
    "SandboxID",
    "ContainerType",
    "Annotations",
    "ImageName",
];

fn kubelet_labels(ns: &str) -> String {
    json!({
        "io.kubernetes.pod.namespace": ns,
        "io.kubernetes.pod.name": "web",
        "io.kubernetes.pod.uid": "0a1b2c3d-uid",
        "io.kubernetes.container.name": "app"
    })
    .to_string()
}

/// Keys a pod author might try: runtime keys verbatim, case and whitespace variants, kubelet
/// label names, CRI-O keys, and harmless ones.
fn forged_key() -> impl Strategy<Value = String> {
    let mut keys: Vec<String> = CONTAINERD_SETS
        .iter()
        .map(|k| format!("{CRI}{k}"))
        .collect();
    keys.extend(CRIO_SETS.iter().map(|k| format!("{CRIO}{k}")));
    keys.extend(
        [
            "io.kubernetes.cri.sandbox-log-directory",
            "io.kubernetes.cri.podsandbox.image-name",
            "IO.KUBERNETES.CRI.SANDBOX-NAMESPACE",
            "io.kubernetes.cri.sandbox-namespace ",
            "io.kubernetes.pod.namespace",
            "io.kubernetes.pod.name",
            "io.kubernetes.container.name",
            "io.kubernetes.cri-o.Namespace",
            "io.kubernetes.cri-o.KubeName",
            "io.kubernetes.cri-o.PrivilegedRuntime",
            "io.container.manager",
            "team",
        ]
        .map(String::from),
    );
    prop_oneof![prop::sample::select(keys), "[a-z.]{1,12}"]
}

fn forged_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "kube-system".to_owned(),
            "pss-guard".to_owned(),
            "monitoring".to_owned(),
            "sandbox".to_owned(),
            "registry.example/agent:1".to_owned(),
            kubelet_labels("kube-system"),
            "{}".to_owned(),
            "true".to_owned(),
        ]),
        ".{0,8}",
    ]
}

fn forged() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(forged_key(), forged_value(), 0..6)
}

/// Policies an operator might run: the exemptions they grant must stay the operator's.
fn policy() -> impl Strategy<Value = Policy> {
    prop::sample::select(vec![
        "enforce = \"baseline:latest\"\n",
        "unidentified = \"allow\"\n",
        "[exempt]\nnamespaces = [\"monitoring\"]\nimages = [\"registry.example/agent:*\"]\n",
        "enforce = \"restricted:latest\"\nunidentified = \"allow\"\n[exempt]\nnamespaces = []\n",
    ])
    .prop_map(|t| Policy::from_toml(t).expect("policy"))
}

/// kubelet's annotations on every container (`newContainerAnnotations`): CRI-O records them
/// in `io.kubernetes.cri-o.Annotations` and copies them to the top level.
fn kubelet_container_annotations() -> Value {
    json!({
        "io.kubernetes.container.hash": "1a2b3c4d",
        "io.kubernetes.container.restartCount": "0",
        "io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
        "io.kubernetes.container.terminationMessagePolicy": "File",
        "io.kubernetes.pod.terminationGracePeriod": "30"
    })
}

/// A CRI-O app container's annotations for pod `<ns>/web` whose own annotations are `pod`, in
/// `SpecAddAnnotations`' order: the pod's first, then CRI-O's keys, then kubelet's container
/// annotations and labels.
fn crio_annotations(ns: &str, sandbox_id: &str, pod: &serde_json::Map<String, Value>) -> Value {
    let mut out = pod.clone();
    let kubelet = kubelet_container_annotations();
    out.insert(format!("{CRIO}Labels"), json!(kubelet_labels(ns)));
    out.insert(format!("{CRIO}SandboxID"), json!(sandbox_id));
    out.insert(format!("{CRIO}ContainerType"), json!("container"));
    out.insert(format!("{CRIO}ImageName"), json!("registry.example/app:1"));
    out.insert(format!("{CRIO}Annotations"), json!(kubelet.to_string()));
    out.insert("io.container.manager".into(), json!("cri-o"));
    for (k, v) in kubelet.as_object().expect("object") {
        out.insert(k.clone(), v.clone());
    }
    let labels: Value = serde_json::from_str(&kubelet_labels(ns)).expect("labels");
    for (k, v) in labels.as_object().expect("object") {
        out.insert(k.clone(), v.clone());
    }
    Value::Object(out)
}

/// The spec's annotations as the runtime would write them for pod `default/web`, whose own
/// annotations are `pod`.
fn annotations(runtime: Runtime, pod: &BTreeMap<String, String>) -> Value {
    let pod: serde_json::Map<String, Value> =
        pod.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    match runtime {
        Runtime::Containerd => {
            // Passthrough first, then containerd's own keys overwrite.
            let mut out = pod;
            if let Value::Object(own) = cri_annotations("default", "sb1") {
                out.extend(own);
            }
            Value::Object(out)
        }
        Runtime::CriO => crio_annotations("default", "sb1", &pod),
        Runtime::None => Value::Object(pod),
    }
}

fn exempt(runtime: Runtime, policy: &Policy, pod: &BTreeMap<String, String>) -> Option<String> {
    let mut s = base_spec(&["/bin/true"]);
    make_privileged(&mut s);
    s["annotations"] = annotations(runtime, pod);
    let bytes = serde_json::to_vec(&s).expect("json");
    let raw = spec::parse_spec(&bytes, Path::new("config.json")).expect("spec");
    let sandbox = serde_json::to_vec(&sandbox_spec()).expect("json");
    let loaded = Loaded {
        identity: identity::identify(runtime, "c1", &raw),
        spec: raw,
        bundle: PathBuf::from("/nonexistent/k8s.io/c1"),
        sandbox: Some(Sandbox {
            spec: spec::parse_spec(&sandbox, Path::new("sandbox.json")).expect("sandbox"),
            bundle: None,
        }),
    };
    let d = hook::decide(
        policy,
        &Options::default(),
        Ok(loaded),
        None,
        Instant::now(),
    );
    d.exempt().map(str::to_owned)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn pod_annotations_never_earn_an_exemption(
        runtime in prop::sample::select(vec![Runtime::Containerd, Runtime::CriO, Runtime::None]),
        policy in policy(),
        pod in forged(),
    ) {
        let honest = exempt(runtime, &policy, &BTreeMap::new());
        let spoofed = exempt(runtime, &policy, &pod);
        // Never gained, never lost: the runtime's own keys decide, whatever the pod wrote.
        prop_assert_eq!(spoofed, honest, "{:?} {:?}", runtime, pod);
    }
}

// ---- named cases through the binary -------------------------------------------------------

const LIMIT: Duration = Duration::from_secs(15);

/// A node whose policy places CRI-O's run root and kubelet's root inside the node directory.
fn crio_node(extra: &str) -> Node {
    let extra = extra.to_owned();
    Node::with_policy(move |dir| {
        format!(
            "{extra}\n[paths]\ncrio_runroot = {:?}\ncrio_root = {:?}\nkubelet_root = {:?}\n",
            dir.join("crio-run"),
            dir.join("crio-graph"),
            dir.join("kubelet")
        )
    })
}

/// Where a bundle lies: CRI-O runs containers from its run root, Podman from the graph root.
#[derive(Clone, Copy)]
enum Layout {
    Containerd,
    CriO,
    Podman,
    /// CRI-O's run root (`true`) or Podman's graph root (`false`) on a containers-storage
    /// driver other than overlay.
    OnDriver(&'static str, bool),
}

/// Writes `spec` (and a sandbox spec beside it) in the layout's place; returns the bundle.
fn place(node: &Node, name: &str, layout: Layout, spec: &Value) -> PathBuf {
    match layout {
        Layout::Containerd => containerd_pod(
            &node.path().join(name),
            "c1",
            "sb1",
            Some(&sandbox_spec()),
            spec,
        ),
        Layout::CriO | Layout::Podman | Layout::OnDriver(..) => {
            let (storage, driver) = match layout {
                Layout::CriO => ("crio-run", "overlay"),
                Layout::OnDriver(driver, true) => ("crio-run", driver),
                Layout::OnDriver(driver, false) => ("crio-graph", driver),
                _ => ("crio-graph", "overlay"),
            };
            // <storage>/<driver>-containers/<id>/userdata, the sandbox's beside it.
            let root = node
                .path()
                .join(storage)
                .join(format!("{driver}-containers"));
            let sb = root.join(format!("{name}-sb/userdata"));
            std::fs::create_dir_all(&sb).expect("mkdir");
            write_json(&sb.join("config.json"), &sandbox_spec());
            let b = root.join(format!("{name}-c/userdata"));
            std::fs::create_dir_all(&b).expect("mkdir");
            write_json(&b.join("config.json"), spec);
            b
        }
    }
}

/// Runs the hook on `spec` placed as `layout` with `--runtime runtime`; returns the exit code
/// and the record.
fn run_spec(
    node: &Node,
    name: &str,
    layout: Layout,
    runtime: &str,
    spec: &Value,
) -> (Option<i32>, Value) {
    let b = place(node, name, layout, spec);
    let id = match layout {
        Layout::Containerd => "c1".to_owned(),
        _ => format!("{name}-c"),
    };
    let before = node.records().len();
    let o = run_bounded(
        node.hook_command(&["--runtime", runtime]),
        Stdin::Bytes(state(&id, &b)),
        LIMIT,
    );
    let recs = node.records();
    assert_eq!(recs.len(), before + 1, "{name}: one record");
    (o.status.code(), recs[before].clone())
}

/// Runs a privileged container whose spec carries `ann`, in the runtime's own layout.
fn run(node: &Node, name: &str, runtime: &str, ann: Value) -> (Option<i32>, Value) {
    let mut s = base_spec(&["/bin/true"]);
    make_privileged(&mut s);
    s["annotations"] = ann;
    let layout = match runtime {
        "cri-o" | "detect" => Layout::CriO,
        _ => Layout::Containerd,
    };
    run_spec(node, name, layout, runtime, &s)
}

fn assert_refused(node: &Node, name: &str, runtime: &str, ann: Value) {
    let (code, rec) = run(node, name, runtime, ann);
    assert_eq!(code, Some(1), "{name}: {rec}");
    assert_eq!(rec["decision"], "refused", "{name}: {rec}");
    assert!(rec.get("exempt").is_none(), "{name}: {rec}");
}

#[test]
fn containerd_keys_in_a_plain_runc_or_podman_spec_never_exempt() {
    let node = Node::new("");
    for ns in ["kube-system", "pss-guard"] {
        assert_refused(
            &node,
            &format!("none-{ns}"),
            "none",
            cri_annotations(ns, "sb1"),
        );
    }
}

#[test]
fn containerd_keys_copied_by_cri_o_never_exempt() {
    let node = crio_node("");
    // A CRI-O pod in `default` whose annotations imitate containerd's keys (copied top-level).
    let pod = json!({"io.kubernetes.cri.sandbox-namespace": "kube-system", "team": "a"});
    let ann = crio_annotations(
        "default",
        "crio-cri-keys-sb",
        pod.as_object().expect("object"),
    );
    assert_refused(&node, "crio-cri-keys", "cri-o", ann);
}

#[test]
fn cri_o_pod_annotations_imitating_its_own_keys_lose_to_them() {
    // The pod claims kube-system in every key CRI-O writes; CRI-O's own writes come later and
    // win, so the record names the real namespace. With unidentified = "allow" nothing turns
    // into the "no Kubernetes metadata" exemption either.
    let node = crio_node("unidentified = \"allow\"");
    let pod = json!({
        "io.kubernetes.pod.namespace": "kube-system",
        "io.kubernetes.cri-o.Labels": kubelet_labels("kube-system"),
        "io.kubernetes.cri-o.SandboxID": "forged",
        "io.kubernetes.cri-o.ContainerType": "sandbox",
        "io.kubernetes.cri-o.Namespace": "kube-system"
    });
    let ann = crio_annotations(
        "default",
        "crio-labels-sb",
        pod.as_object().expect("object"),
    );
    let (code, rec) = run(&node, "crio-labels", "detect", ann);
    assert_eq!(code, Some(1), "{rec}");
    assert_eq!(rec["decision"], "refused");
    assert_eq!(rec["namespace"], "default", "{rec}");
}

/// A compliant CRI-O container of pod `<ns>/web` with the mounts kubelet gives every pod: its
/// /etc/hosts, the termination log and the service-account token, all under its pod directory.
fn crio_pod_spec(node: &Node, ns: &str, sandbox_id: &str) -> Value {
    let pod = node.path().join("kubelet/pods/0a1b2c3d-uid");
    let mut s = base_spec(&["/bin/true"]);
    s["annotations"] = crio_annotations(ns, sandbox_id, &serde_json::Map::new());
    let mounts = s["mounts"].as_array_mut().expect("mounts");
    for (src, dst) in [
        ("etc-hosts", "/etc/hosts"),
        ("containers/app/5d6e7f80", "/dev/termination-log"),
        (
            "volumes/kubernetes.io~projected/kube-api-access-x2x9z",
            "/var/run/secrets/kubernetes.io/serviceaccount",
        ),
    ] {
        mounts.push(
            json!({"destination": dst, "type": "bind", "source": pod.join(src),
            "options": ["rbind", "rprivate", "ro"]}),
        );
    }
    s
}

#[test]
fn cri_o_pods_keep_their_identity_with_kubelets_grace_period_annotation() {
    // kubelet always sets io.kubernetes.pod.terminationGracePeriod on a container and CRI-O
    // records it in io.kubernetes.cri-o.Annotations: no pod may lose its identity over it.
    let node = crio_node("");
    let s = crio_pod_spec(&node, "default", "crio-plain-sb");
    let (code, rec) = run_spec(&node, "crio-plain", Layout::CriO, "detect", &s);
    assert_eq!(code, Some(0), "{rec}");
    assert_eq!(rec["decision"], "allowed", "{rec}");
    assert_eq!(rec["namespace"], "default", "{rec}");
    // kube-system, privileged: exempt.
    let mut s = crio_pod_spec(&node, "kube-system", "crio-system-sb");
    make_privileged(&mut s);
    let (code, rec) = run_spec(&node, "crio-system", Layout::CriO, "detect", &s);
    assert_eq!(code, Some(0), "{rec}");
    assert_eq!(rec["decision"], "exempt", "{rec}");
}

#[test]
fn cri_o_annotations_outside_cri_os_run_root_are_podman_and_earn_nothing() {
    // Podman runs containers from the graph root and lets its user set any annotation,
    // io.container.manager included: the same keys there mean nothing, under the hooks.d entry
    // that names cri-o (written by older installers) as under detection.
    let node = crio_node("");
    for runtime in ["cri-o", "detect"] {
        let mut s = crio_pod_spec(&node, "kube-system", &format!("podman-{runtime}-sb"));
        make_privileged(&mut s);
        let (code, rec) = run_spec(
            &node,
            &format!("podman-{runtime}"),
            Layout::Podman,
            runtime,
            &s,
        );
        assert_eq!(code, Some(1), "{runtime}: {rec}");
        assert_eq!(rec["decision"], "refused", "{runtime}: {rec}");
        assert!(rec.get("namespace").is_none(), "{runtime}: {rec}");
    }
}

#[test]
fn containerd_passthrough_cannot_override_the_runtime_keys() {
    // With pod_annotations = ["*"], containerd copies the pod's annotations and then writes its
    // own keys: in the spec the namespace is containerd's. Look-alike keys change nothing.
    let node = Node::new("");
    let mut ann = cri_annotations("default", "sb1");
    let m = ann.as_object_mut().unwrap();
    for (k, v) in [
        ("IO.KUBERNETES.CRI.SANDBOX-NAMESPACE", "kube-system"),
        ("io.kubernetes.cri.sandbox-namespace ", "kube-system"),
        ("io.kubernetes.pod.namespace", "kube-system"),
        ("io.kubernetes.cri-o.Labels", &kubelet_labels("kube-system")),
        (
            "io.kubernetes.cri.podsandbox.image-name",
            "registry.k8s.io/pause:3.10",
        ),
    ] {
        m.insert(k.to_owned(), json!(v));
    }
    assert_refused(&node, "ctrd-lookalikes", "containerd", ann);
    // The control: containerd's own key does exempt.
    let (code, rec) = run(
        &node,
        "ctrd-real",
        "containerd",
        cri_annotations("kube-system", "sb1"),
    );
    assert_eq!(code, Some(0), "{rec}");
    assert_eq!(rec["decision"], "exempt");
}

/// CRI-O keeps a container's bundle in `<runroot>/<driver>-containers/<id>/userdata` on every
/// containers-storage driver (overlay, vfs, btrfs, zfs). A rule that knew only overlay gave
/// CRI-O on the others no identity: kube-system refused (and, with `unidentified = "allow"`,
/// every pod exempt). Podman's bundles on those drivers still earn nothing.
#[test]
fn cri_o_is_recognised_on_every_storage_driver() {
    for driver in ["vfs", "btrfs", "zfs", "overlay"] {
        for unidentified in ["enforce", "allow"] {
            let node = crio_node(&format!("unidentified = \"{unidentified}\""));
            let name = format!("{driver}-system");
            let mut s = crio_pod_spec(&node, "kube-system", &format!("{name}-sb"));
            make_privileged(&mut s);
            let (code, rec) = run_spec(&node, &name, Layout::OnDriver(driver, true), "detect", &s);
            assert_eq!(code, Some(0), "{driver}: {rec}");
            assert_eq!(rec["decision"], "exempt", "{driver}: {rec}");
            assert_eq!(rec["namespace"], "kube-system", "{driver}: {rec}");

            // A privileged pod in `default`: refused, never exempt as "unidentified".
            let name = format!("{driver}-default");
            let mut s = crio_pod_spec(&node, "default", &format!("{name}-sb"));
            make_privileged(&mut s);
            let (code, rec) = run_spec(&node, &name, Layout::OnDriver(driver, true), "detect", &s);
            assert_eq!(code, Some(1), "{driver}: {rec}");
            assert_eq!(rec["decision"], "refused", "{driver}: {rec}");
            assert_eq!(rec["namespace"], "default", "{driver}: {rec}");

            // The same kube-system spec from Podman's graph root on that driver.
            let name = format!("{driver}-podman");
            let mut s = crio_pod_spec(&node, "kube-system", &format!("{name}-sb"));
            make_privileged(&mut s);
            let (code, rec) = run_spec(&node, &name, Layout::OnDriver(driver, false), "detect", &s);
            assert!(rec.get("namespace").is_none(), "{driver}: {rec}");
            if unidentified == "enforce" {
                assert_eq!(code, Some(1), "{driver}: {rec}");
                assert_eq!(rec["decision"], "refused", "{driver}: {rec}");
            }
        }
    }
}
