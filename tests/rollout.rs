//! Rolling out without breaking the node, through the built binary: observe mode decides exactly
//! as enforce does and only records it; pss-guard's own namespace (from the node file the
//! installer writes) starts under every policy form the hook reads, the built-in default
//! included; an exemption never reaches the handler pods get without asking for one.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(15);

fn privileged() -> Value {
    let mut s = base_spec(&["/bin/true"]);
    make_privileged(&mut s);
    s
}

/// The app container of pod `<ns>/web` (containerd layout), its sandbox beside it.
fn pod(node: &Node, ns: &str, spec: Value) -> PathBuf {
    let mut spec = spec;
    spec["annotations"] = cri_annotations(ns, &format!("sb-{ns}"));
    containerd_pod(
        &node.path().join("k8s.io"),
        &format!("c-{ns}"),
        &format!("sb-{ns}"),
        Some(&sandbox_spec()),
        &spec,
    )
}

fn hook_at(policy: &Path, bundle: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--runtime", "containerd"];
    all.extend_from_slice(args);
    run_bounded(
        hook_command(policy, &all),
        Stdin::Bytes(state("c1", bundle)),
        LIMIT,
    )
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
}

/// The TOML keys every test policy carries: its own log, no CRI lookup (no containerd here).
fn tail(node: &Node) -> String {
    format!(
        "[cri]\nlookup = \"off\"\n[log]\npath = {:?}\n",
        node.log_path()
    )
}

#[test]
fn observe_decides_as_enforce_does_and_refuses_nothing() {
    let node = Node::new("");
    let mut odd = privileged();
    odd["process"]["capabilities"]["bounding"]
        .as_array_mut()
        .unwrap()
        .push(json!("cap_sys_admin"));
    let mut net_raw = base_spec(&["/bin/true"]);
    net_raw["process"]["capabilities"]["bounding"]
        .as_array_mut()
        .unwrap()
        .push(json!("CAP_SYS_ADMIN"));
    let cases = [
        ("default", privileged()),
        ("kube-system", privileged()),
        ("apps", base_spec(&["/bin/true"])),
        ("broken", odd),
        ("sysadmin", net_raw),
    ];
    let mut enforce = Vec::new();
    let mut observe = Vec::new();
    for (mode, out) in [("enforce", &mut enforce), ("observe", &mut observe)] {
        // Everything but the switch is the same: the floor, labels, exemptions, audit.
        let policy = format!(
            "mode = {mode:?}\nenforce = \"baseline:latest\"\naudit = \"restricted:latest\"\n[exempt]\nnamespaces = [\"apps-exempt\"]\n{}",
            tail(&node)
        );
        write(&node.policy_path(), &policy);
        for (ns, spec) in &cases {
            let b = pod(&node, ns, spec.clone());
            let o = hook_at(&node.policy_path(), &b, &[]);
            let rec = node.records().pop().expect("a record");
            out.push((ns.to_string(), o.status.code(), o.stderr.is_empty(), rec));
        }
    }
    for ((ns, e_code, _, e), (_, o_code, o_quiet, o)) in enforce.iter().zip(&observe) {
        let would = match e["decision"].as_str().unwrap() {
            "refused" | "error" => "would_refuse",
            other => other,
        };
        assert_eq!(o["decision"], would, "{ns}: enforce {e}\nobserve {o}");
        assert_eq!(o["mode"], "observe", "{o}");
        assert!(e.get("mode").is_none(), "{e}");
        assert_eq!(*o_code, Some(0), "{ns}: observing refuses nothing");
        assert!(o_quiet, "{ns}: observing writes nothing to stderr");
        for key in [
            "violations",
            "audit_violations",
            "error",
            "exempt",
            "policy",
        ] {
            assert_eq!(e.get(key), o.get(key), "{ns}: {key}");
        }
        let refused = matches!(e["decision"].as_str(), Some("refused" | "error"));
        assert_eq!(*e_code != Some(0), refused, "{ns}: {e}");
    }
    let kinds: Vec<&str> = enforce
        .iter()
        .map(|(_, _, _, r)| r["decision"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["refused", "exempt", "audit", "error", "refused"]);
}

const PSC: &str = "apiVersion: pod-security.admission.config.k8s.io/v1
kind: PodSecurityConfiguration
defaults:
  enforce: baseline
  enforce-version: latest
";

#[test]
fn own_namespace_from_the_node_file_starts_under_every_policy_form() {
    let node = Node::new("");
    let dir = node.path();
    let log = format!(
        "---\napiVersion: pss-guard.io/v1alpha1\nkind: NodePolicy\nspec:\n  cri:\n    lookup: \"off\"\n  log:\n    path: {:?}\n",
        node.log_path()
    );
    write(&dir.join("psa.yaml"), PSC);
    let forms = [
        (
            "policy.toml",
            format!("enforce = \"restricted:latest\"\n{}", tail(&node)),
        ),
        ("pod-security.yaml", format!("{PSC}{log}")),
        (
            "admission.yaml",
            format!(
                "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n- name: EventRateLimit\n  configuration:\n    apiVersion: eventratelimit.admission.k8s.io/v1alpha1\n    kind: Configuration\n    limits: [{{type: Server, qps: 50, burst: 100}}]\n- name: PodSecurity\n  path: psa.yaml\n{log}"
            ),
        ),
        // Not a policy at all: the built-in default applies.
        ("broken.toml", "enforce = ".to_owned()),
    ];
    let own = pod(&node, "pss-guard", privileged());
    let other = pod(&node, "default", privileged());
    for (name, text) in &forms {
        let policy = dir.join(name);
        write(&policy, text);
        let _ = std::fs::remove_file(dir.join("node.toml"));
        // Without the node file, a namespace called pss-guard is anybody's.
        assert_eq!(hook_at(&policy, &own, &[]).status.code(), Some(1), "{name}");
        write(&dir.join("node.toml"), "own_namespace = \"pss-guard\"\n");
        let o = hook_at(&policy, &own, &[]);
        assert_eq!(o.status.code(), Some(0), "{name}: {o:?}");
        // The control: everyone else's privileged pod is still refused.
        assert_eq!(
            hook_at(&policy, &other, &[]).status.code(),
            Some(1),
            "{name}"
        );
    }
    let exempt: Vec<Value> = node
        .records()
        .into_iter()
        .filter(|r| r["decision"] == "exempt")
        .collect();
    assert_eq!(exempt.len(), 3, "the three policies that log here");
    for r in exempt {
        assert!(
            r["exempt"].as_str().unwrap().contains("pss-guard's own"),
            "{r}"
        );
    }
}

#[test]
fn an_exemption_never_reaches_the_default_handler() {
    let node = Node::new("");
    let policy = node.policy_path();
    write(
        &policy,
        &format!(
            "[exempt]\nruntime_handlers = [\"nvidia\", \"kata\"]\n{}",
            tail(&node)
        ),
    );
    let b = pod(&node, "default", privileged());
    // containerd's default handler is runc (no node file): nvidia is asked for by name.
    assert_eq!(
        hook_at(&policy, &b, &["--handler", "nvidia"]).status.code(),
        Some(0)
    );
    // On a node whose containerd makes nvidia the default (EKS accelerated AMIs), every pod
    // without a RuntimeClass runs with it: exempting it would exempt them all.
    write(
        &node.path().join("node.toml"),
        "default_runtime_handler = \"nvidia\"\n",
    );
    let o = hook_at(&policy, &b, &["--handler", "nvidia"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert_eq!(
        hook_at(&policy, &b, &["--handler", "kata"]).status.code(),
        Some(0),
        "another exempt handler stays exempt"
    );
    // The same through a PodSecurityConfiguration's runtimeClasses and the agent's snapshot.
    let snap = node.path().join("cluster.json");
    std::fs::write(
        &snap,
        pss_guard::snapshot::render(
            std::time::SystemTime::now(),
            pss_guard::snapshot::Cluster {
                namespaces: &Default::default(),
                runtime_classes: &[("gpu".to_owned(), "nvidia".to_owned())]
                    .into_iter()
                    .collect(),
                kubernetes_version: None,
            },
        ),
    )
    .unwrap();
    let yaml = node.path().join("psa.yaml");
    write(
        &yaml,
        &format!(
            "{PSC}exemptions:\n  runtimeClasses: [gpu]\n---\napiVersion: pss-guard.io/v1alpha1\nkind: NodePolicy\nspec:\n  snapshot:\n    path: {snap:?}\n  cri:\n    lookup: \"off\"\n  log:\n    path: {:?}\n",
            node.log_path()
        ),
    );
    assert_eq!(
        hook_at(&yaml, &b, &["--handler", "nvidia"]).status.code(),
        Some(1)
    );
    std::fs::remove_file(node.path().join("node.toml")).unwrap();
    assert_eq!(
        hook_at(&yaml, &b, &["--handler", "nvidia"]).status.code(),
        Some(0),
        "the control: the class's handler is exempt where it is not the default"
    );
}
