//! The kustomize packages (deploy/kubernetes/): every overlay rendered by kustomize (Debian
//! sid's, installed by scripts/install-deps.sh) and validated against the Kubernetes schemas
//! (`kubernetes-validate --strict`), the conventions of the charts people run checked on every
//! object, the policy of each overlay through the policy parser, the committed single-file
//! manifest equal to its rendering, and the one-file overlay of docs/install.md rendered as shown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const OVERLAYS: [&str; 5] = [
    "daemonset-install",
    "eks-userdata",
    "restricted",
    "servicemonitor",
    "podmonitor",
];
const LABELS: [&str; 6] = [
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
];
/// Kinds from CRDs (Prometheus Operator): no schema in kubernetes-validate, checked here.
const CRD_KINDS: [&str; 2] = ["ServiceMonitor", "PodMonitor"];

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn kustomize_build(dir: &Path) -> String {
    let out = Command::new("kustomize")
        .arg("build")
        .arg(dir)
        .output()
        .expect("kustomize is installed (scripts/install-deps.sh, from Debian sid)");
    assert!(
        out.status.success(),
        "kustomize build {dir:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The YAML stream as JSON values (PyYAML, as the other manifest tests use).
fn docs(yaml: &str) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("in.yaml");
    std::fs::write(&f, yaml).unwrap();
    let out = Command::new("python3")
        .args([
            "-c",
            "import json,sys,yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        ])
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

/// kubernetes-validate --strict on the non-CRD objects, for the oldest and newest Kubernetes
/// minor EKS supports here; every object must pass (none skipped as unknown).
fn validate(name: &str, objects: &[Value]) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join(format!("{name}.json"));
    let core: Vec<&Value> = objects
        .iter()
        .filter(|o| !CRD_KINDS.contains(&o["kind"].as_str().unwrap()))
        .collect();
    // kubernetes-validate reads YAML; a JSON document per line is YAML.
    let text: String = core
        .iter()
        .map(|o| format!("---\n{}\n", serde_json::to_string(o).unwrap()))
        .collect();
    std::fs::write(&f, text).unwrap();
    for version in ["1.30.0", "1.37.0"] {
        let out = Command::new("python3")
            .args([
                "-m",
                "kubernetes_validate",
                "--strict",
                "--kubernetes-version",
                version,
            ])
            .arg(&f)
            .output()
            .expect("kubernetes-validate is installed (scripts/install-deps.sh)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{name} on k8s {version}:\n{text}");
        assert_eq!(
            text.matches(" passed for resource ").count(),
            core.len(),
            "{name} on k8s {version}:\n{text}"
        );
    }
}

fn rendered(overlay: &str) -> Vec<Value> {
    docs(&kustomize_build(&repo(&format!(
        "deploy/kubernetes/overlays/{overlay}"
    ))))
}

fn find<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

fn policy_of(objects: &[Value]) -> String {
    find(objects, "ConfigMap")["data"]["policy.toml"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn every_overlay_renders_validates_and_follows_the_conventions() {
    for overlay in OVERLAYS {
        let objects = rendered(overlay);
        validate(overlay, &objects);
        for o in &objects {
            let what = format!("{overlay}: {} {}", o["kind"], o["metadata"]["name"]);
            for l in LABELS {
                assert!(o["metadata"]["labels"][l].is_string(), "{what} lacks {l}");
            }
            if o["kind"] != "Namespace" && !o["kind"].as_str().unwrap().starts_with("ClusterRole") {
                assert_eq!(o["metadata"]["namespace"], "pss-guard", "{what}");
            }
        }
        let ds = find(&objects, "DaemonSet");
        let pod = &ds["spec"]["template"]["spec"];
        for l in LABELS {
            assert!(
                ds["spec"]["template"]["metadata"]["labels"][l].is_string(),
                "{overlay}: pod template lacks {l}"
            );
        }
        assert_eq!(
            pod["nodeSelector"]["kubernetes.io/os"], "linux",
            "{overlay}"
        );
        assert_eq!(
            pod["priorityClassName"], "system-node-critical",
            "{overlay}"
        );
        assert_eq!(pod["tolerations"][0]["operator"], "Exists", "{overlay}");
        assert_eq!(
            pod["hostPID"], true,
            "{overlay}: health and restart need the host's /proc"
        );
        assert_eq!(pod["serviceAccountName"], "pss-guard");
        let terms = &pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchExpressions"];
        let compute = terms
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["key"] == "eks.amazonaws.com/compute-type")
            .unwrap();
        assert_eq!(compute["operator"], "NotIn");
        assert!(
            compute["values"]
                .as_array()
                .unwrap()
                .contains(&"auto".into())
        );
        let all: Vec<&Value> = pod["containers"]
            .as_array()
            .unwrap()
            .iter()
            .chain(pod["initContainers"].as_array().into_iter().flatten())
            .collect();
        for c in &all {
            assert_eq!(c["image"], "localhost/pss-guard:0.1.0", "{overlay}");
            assert!(
                c["resources"]["requests"]["memory"].is_string(),
                "{overlay}: {}",
                c["name"]
            );
            assert!(
                c["resources"]["limits"]["memory"].is_string(),
                "{overlay}: {}",
                c["name"]
            );
        }
        let agent = &pod["containers"][0];
        assert_eq!(agent["name"], "agent");
        assert_eq!(agent["command"][0], "/pss-guard-agent");
        assert_eq!(
            agent["readinessProbe"]["exec"]["command"],
            serde_json::json!(["/pss-guard", "health", "--root", "/host"]),
            "{overlay}"
        );
        assert_eq!(agent["livenessProbe"]["httpGet"]["path"], "/healthz");
        // The agent writes nothing but the policy and its snapshot on the host.
        for m in agent["volumeMounts"].as_array().unwrap() {
            let path = m["mountPath"].as_str().unwrap();
            let rw = ["/host/etc/pss-guard", "/host/var/lib/pss-guard"].contains(&path);
            assert!(rw || m["readOnly"] == true, "{overlay}: {path} writable");
        }
        // Least privilege, every rule spelled out: a new permission fails here until it is
        // reviewed (deploy/kubernetes/base/rbac.yaml says what each is for).
        let role = find(&objects, "ClusterRole");
        let rules: Vec<(String, String, Vec<String>)> = role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| {
                let groups = r["apiGroups"].as_array().unwrap().clone();
                let verbs: Vec<String> = r["verbs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned())
                    .collect();
                r["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(move |res| {
                        let verbs = verbs.clone();
                        groups.clone().into_iter().map(move |g| {
                            (
                                g.as_str().unwrap().to_owned(),
                                res.as_str().unwrap().to_owned(),
                                verbs.clone(),
                            )
                        })
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let want: Vec<(String, String, Vec<String>)> = [
            ("", "namespaces", &["list", "watch"][..]),
            ("node.k8s.io", "runtimeclasses", &["list", "watch"]),
            ("", "pods", &["get", "list", "watch"]),
            ("apps", "replicasets", &["get"]),
            ("batch", "jobs", &["get"]),
            ("", "events", &["create", "patch"]),
            (
                "wgpolicyk8s.io",
                "policyreports",
                &["list", "create", "patch", "delete"],
            ),
            (
                "openreports.io",
                "reports",
                &["list", "create", "patch", "delete"],
            ),
        ]
        .iter()
        .map(|(g, r, v)| {
            (
                (*g).to_owned(),
                (*r).to_owned(),
                v.iter().map(|s| (*s).to_owned()).collect(),
            )
        })
        .collect();
        assert_eq!(rules, want, "{overlay}");
    }
}

#[test]
fn install_modes_differ_only_where_they_should() {
    let install = rendered("daemonset-install");
    let init = &find(&install, "DaemonSet")["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(
        init["args"],
        serde_json::json!([
            "install",
            "--root",
            "/host",
            "--policy",
            "/config/policy.toml",
            "--replace-policy",
            "--own-namespace",
            "$(POD_NAMESPACE)",
            "--restart"
        ])
    );
    // EKS user data installs the hook at boot: no installer, no host root mounted at all.
    let eks = rendered("eks-userdata");
    let pod = &find(&eks, "DaemonSet")["spec"]["template"]["spec"];
    assert!(pod["initContainers"].is_null(), "{pod:#}");
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["hostPath"]["path"] != "/"),
        "{pod:#}"
    );
    assert_eq!(
        find(&install, "DaemonSet")["spec"]["template"]["spec"]["containers"],
        pod["containers"],
        "the agent container is the same in both modes"
    );
}

/// The node policy an overlay's ConfigMap makes: `policy.toml` with its `exempt-*.toml` keys
/// merged in, as the installer and the agent compose it.
fn node_policy_of(objects: &[Value]) -> String {
    let data = find(objects, "ConfigMap")["data"]
        .as_object()
        .unwrap()
        .clone();
    let fragments: Vec<(String, String)> = data
        .iter()
        .filter(|(k, _)| pss_guard::config::is_fragment_name(k))
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    pss_guard::config::compose(&policy_of(objects), &fragments).unwrap()
}

#[test]
fn each_overlays_policy_is_what_it_says() {
    use pss_guard::config::{Mode, Policy};
    for (overlay, enforce, audit) in [
        (
            "daemonset-install",
            "baseline:latest",
            Some("restricted:latest"),
        ),
        ("eks-userdata", "baseline:latest", Some("restricted:latest")),
        ("restricted", "restricted:latest", None),
    ] {
        let objects = rendered(overlay);
        let text = node_policy_of(&objects);
        let p = Policy::from_toml(&text).unwrap_or_else(|e| panic!("{overlay}: {e}\n{text}"));
        assert_eq!(p.enforce.to_string(), enforce, "{overlay}");
        assert_eq!(
            p.audit.map(|a| a.to_string()).as_deref(),
            audit,
            "{overlay}"
        );
        // A fresh install refuses nothing: it observes until the operator switches.
        assert_eq!(p.mode, Mode::Observe, "{overlay}");
        // The well-known add-ons' namespaces are exempt (components/eks-addons)...
        for ns in ["calico-system", "amazon-cloudwatch", "istio-system"] {
            assert!(p.exempt_namespaces.contains(ns), "{overlay}: {ns}");
        }
        // ...and pss-guard's own is not a name in the policy: the node file carries the
        // namespace the DaemonSet really runs in, from its downward API.
        assert!(!p.exempt_namespaces.contains("pss-guard"), "{overlay}");
        let ds = find(&objects, "DaemonSet");
        let spec = &ds["spec"]["template"]["spec"];
        assert_eq!(
            spec["hostNetwork"], true,
            "{overlay}: a refused CNI cannot cut the agent off"
        );
        for c in spec["containers"]
            .as_array()
            .unwrap()
            .iter()
            .chain(spec["initContainers"].as_array().into_iter().flatten())
        {
            let args: Vec<&str> = c["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            let at = args.iter().position(|a| *a == "--own-namespace");
            assert_eq!(
                at.map(|i| args[i + 1]),
                Some("$(POD_NAMESPACE)"),
                "{overlay}: {}",
                c["name"]
            );
            let env = c["env"].as_array().unwrap();
            assert!(
                env.iter().any(|e| e["name"] == "POD_NAMESPACE"
                    && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"),
                "{overlay}: {}",
                c["name"]
            );
        }
    }
}

#[test]
fn monitors_select_the_daemonset_pods_metrics_port() {
    for (overlay, kind) in [
        ("servicemonitor", "ServiceMonitor"),
        ("podmonitor", "PodMonitor"),
    ] {
        let objects = rendered(overlay);
        let m = find(&objects, kind);
        assert_eq!(m["apiVersion"], "monitoring.coreos.com/v1");
        let pod_labels = &find(&objects, "DaemonSet")["spec"]["template"]["metadata"]["labels"];
        let port = if kind == "PodMonitor" {
            for (k, v) in m["spec"]["selector"]["matchLabels"].as_object().unwrap() {
                assert_eq!(&pod_labels[k], v, "{kind} selects {k}={v}");
            }
            &m["spec"]["podMetricsEndpoints"][0]["port"]
        } else {
            let svc = find(&objects, "Service");
            for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
                assert_eq!(&pod_labels[k], v, "Service selects {k}={v}");
            }
            for (k, v) in m["spec"]["selector"]["matchLabels"].as_object().unwrap() {
                assert_eq!(
                    &svc["metadata"]["labels"][k], v,
                    "{kind} selects the Service"
                );
            }
            assert_eq!(svc["spec"]["ports"][0]["targetPort"], "metrics");
            &m["spec"]["endpoints"][0]["port"]
        };
        assert_eq!(port, "metrics");
        let ds = find(&objects, "DaemonSet");
        assert_eq!(
            ds["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"],
            "metrics"
        );
    }
    // Opt-in: the plain overlays carry no CRD objects (they would fail without the operator).
    for overlay in ["daemonset-install", "eks-userdata", "restricted"] {
        assert!(
            rendered(overlay)
                .iter()
                .all(|o| !CRD_KINDS.contains(&o["kind"].as_str().unwrap()))
        );
    }
}

#[test]
fn committed_manifest_and_boot_policy_are_what_the_kustomize_tree_renders() {
    // pss-guard.yaml is the daemonset-install overlay; the EKS user data's boot policy and
    // node file are the eks-userdata overlay's ConfigMap composed as the agent composes it.
    let out = Command::new("bash")
        .arg(repo("scripts/render-manifests.sh"))
        .arg("--check")
        .env("PSS_GUARD_BIN", env!("CARGO_BIN_EXE_pss-guard"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "generated files are stale: run scripts/render-manifests.sh\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn documented_one_file_overlay_sets_image_policy_resources_and_priority() {
    let file =
        std::fs::read_to_string(repo("examples/kustomize-overlay/kustomization.yaml")).unwrap();
    let doc = std::fs::read_to_string(repo("docs/install.md")).unwrap();
    assert!(
        doc.contains(&file),
        "docs/install.md does not show examples/kustomize-overlay/kustomization.yaml as it is"
    );
    let objects = docs(&kustomize_build(&repo("examples/kustomize-overlay")));
    validate("example", &objects);
    let pod = &find(&objects, "DaemonSet")["spec"]["template"]["spec"];
    let image = "registry.example/platform/pss-guard@sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";
    assert_eq!(pod["containers"][0]["image"], image);
    assert_eq!(pod["initContainers"][0]["image"], image);
    assert_eq!(pod["priorityClassName"], "platform-node-critical");
    assert_eq!(
        pod["containers"][0]["resources"]["limits"]["memory"],
        "192Mi"
    );
    // The patch merges: the agent keeps everything else.
    assert_eq!(pod["containers"][0]["command"][0], "/pss-guard-agent");
    let p = pss_guard::config::Policy::from_toml(&policy_of(&objects)).unwrap();
    assert!(p.exempt_namespaces.contains("monitoring"));
}
