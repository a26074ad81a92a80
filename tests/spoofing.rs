//! Exemption spoofing (issue 6): a pod author writes annotations, and runtimes copy them into the
//! spec (containerd with `pod_annotations = ["*"]`, CRI-O always, as top-level keys and inside
//! `io.kubernetes.cri-o.Annotations`). Whatever they imitate, they never earn an exemption:
//! only the keys the runtime itself sets, read under the runtime the hook was installed for, do.
//!
//! The property runs through the library (`hook::decide`); the named cases run through the built
//! binary with a privileged spec, so a spoof that worked would start a privileged container.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::*;
use proptest::prelude::*;
use pss_guard::config::Policy;
use pss_guard::hook::{self, Options};
use pss_guard::spec::{self, Runtime, identity};
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

/// CRI-O's own keys on an app container (set by CRI-O, assumed to win over pod copies).
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

/// The spec's annotations as the runtime would write them for pod `default/web`, whose own
/// annotations are `pod`.
fn annotations(runtime: Runtime, pod: &BTreeMap<String, String>) -> Value {
    let mut out = serde_json::Map::new();
    for (k, v) in pod {
        out.insert(k.clone(), json!(v));
    }
    match runtime {
        Runtime::Containerd => {
            // Passthrough first, then containerd's own keys overwrite.
            if let Value::Object(own) = cri_annotations("default", "sb1") {
                out.extend(own);
            }
        }
        Runtime::CriO => {
            out.insert(format!("{CRIO}Labels"), json!(kubelet_labels("default")));
            out.insert(format!("{CRIO}SandboxID"), json!("sb1"));
            out.insert(format!("{CRIO}ContainerType"), json!("container"));
            out.insert(format!("{CRIO}ImageName"), json!("registry.example/app:1"));
            out.insert(
                format!("{CRIO}Annotations"),
                json!(serde_json::to_string(pod).expect("json")),
            );
        }
        Runtime::None => {}
    }
    Value::Object(out)
}

fn exempt(runtime: Runtime, policy: &Policy, pod: &BTreeMap<String, String>) -> Option<String> {
    let mut s = base_spec(&["/bin/true"]);
    make_privileged(&mut s);
    s["annotations"] = annotations(runtime, pod);
    let bytes = serde_json::to_vec(&s).expect("json");
    let raw = spec::parse_spec(&bytes, Path::new("config.json")).expect("spec");
    let opts = Options {
        runtime,
        handler: None,
        enforce: None,
        live: true,
        sandbox_file: None,
    };
    let id = identity::identify(runtime, "c1", &raw);
    hook::decide(policy, &opts, &raw, id, Path::new("/nonexistent/k8s.io/c1")).exempt
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
        // Never gained; under containerd and plain runc never changed at all. (CRI-O may lose an
        // exemption: a pod naming runtime keys is distrusted, which only ever enforces more.)
        prop_assert!(
            spoofed.is_none() || honest.is_some(),
            "{runtime:?} {pod:?}: spoofed into {spoofed:?}"
        );
        if runtime != Runtime::CriO {
            prop_assert_eq!(spoofed, honest);
        }
    }
}

// ---- named cases through the binary -------------------------------------------------------

const LIMIT: Duration = Duration::from_secs(15);

/// Runs a privileged container whose spec carries `ann`, in a containerd- or CRI-O-shaped
/// layout with a sandbox spec; returns the exit code and the record.
fn run(node: &Node, name: &str, runtime: &str, ann: Value) -> (Option<i32>, Value) {
    let mut s = base_spec(&["/bin/true"]);
    make_privileged(&mut s);
    s["annotations"] = ann;
    let b = match runtime {
        "cri-o" => {
            // <runroot>/overlay-containers/<id>/userdata, the sandbox's beside it.
            let root = node.path().join(name).join("overlay-containers");
            std::fs::create_dir_all(root.join("sb1/userdata")).expect("mkdir");
            write_json(&root.join("sb1/userdata/config.json"), &sandbox_spec());
            std::fs::create_dir_all(root.join("c1/userdata")).expect("mkdir");
            write_json(&root.join("c1/userdata/config.json"), &s);
            root.join("c1/userdata")
        }
        _ => containerd_pod(
            &node.path().join(name),
            "c1",
            "sb1",
            Some(&sandbox_spec()),
            &s,
        ),
    };
    let before = node.records().len();
    let o = run_bounded(
        node.hook_command(&["--runtime", runtime]),
        Stdin::Bytes(state("c1", &b)),
        LIMIT,
    );
    let recs = node.records();
    assert_eq!(recs.len(), before + 1, "{name}: one record");
    (o.status.code(), recs[before].clone())
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
    let node = Node::new("");
    // A CRI-O pod in `default` whose annotations imitate containerd's keys (copied top-level).
    let pod = json!({"io.kubernetes.cri.sandbox-namespace": "kube-system", "team": "a"});
    let mut ann = pod.clone();
    let m = ann.as_object_mut().unwrap();
    m.insert(format!("{CRIO}Labels"), json!(kubelet_labels("default")));
    m.insert(format!("{CRIO}SandboxID"), json!("sb1"));
    m.insert(format!("{CRIO}ContainerType"), json!("container"));
    m.insert(format!("{CRIO}Annotations"), json!(pod.to_string()));
    assert_refused(&node, "crio-cri-keys", "cri-o", ann);
}

#[test]
fn cri_o_pod_annotations_imitating_kubelet_labels_never_exempt() {
    // The pod claims kube-system in every shape CRI-O could copy; with unidentified = "allow" a
    // distrusted identity must not turn into the "no Kubernetes metadata" exemption either.
    let node = Node::new("unidentified = \"allow\"");
    let pod = json!({
        "io.kubernetes.pod.namespace": "kube-system",
        "io.kubernetes.cri-o.Namespace": "kube-system"
    });
    let mut ann = pod.clone();
    let m = ann.as_object_mut().unwrap();
    m.insert(format!("{CRIO}Labels"), json!(kubelet_labels("default")));
    m.insert(format!("{CRIO}SandboxID"), json!("sb1"));
    m.insert(format!("{CRIO}ContainerType"), json!("container"));
    m.insert(format!("{CRIO}Annotations"), json!(pod.to_string()));
    let (code, rec) = run(&node, "crio-labels", "cri-o", ann);
    assert_eq!(code, Some(1), "{rec}");
    assert_eq!(rec["decision"], "refused");
    assert!(
        rec["note"]
            .as_str()
            .unwrap()
            .contains("identity not trusted"),
        "{rec}"
    );
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
