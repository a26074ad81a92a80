//! The files an operator applies, checked offline: Kubernetes manifests against the Kubernetes
//! schemas (`kubernetes-validate` from PyPI, strict), the policy in the ConfigMap against the
//! policy parser, the EKS user data as MIME with the hook the installer would write, the node
//! config snippets as TOML/JSON, and every script with shellcheck.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use pss_guard::install::containerd;
use serde_json::Value;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

const MANIFESTS: [&str; 4] = [
    "deploy/kubernetes/pss-guard.yaml",
    "vagrant/manifests/privileged-pod.yaml",
    "vagrant/manifests/compliant-pod.yaml",
    "vagrant/manifests/static-pod-hostpath.yaml",
];

#[test]
fn manifests_validate_against_kubernetes_schemas() {
    // The oldest and newest Kubernetes minor EKS AL2023 nodes run (amazon-eks-ami release notes).
    for version in ["1.30.0", "1.37.0"] {
        let out = Command::new("python3")
            .args(["-m", "kubernetes_validate", "--strict", "--kubernetes-version", version])
            .args(MANIFESTS.iter().map(|m| repo(m)))
            .output()
            .expect("kubernetes-validate is installed (scripts/install-deps.sh: pip install kubernetes-validate)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "k8s {version}:\n{text}");
        // Namespace, ServiceAccount, ClusterRole(Binding), ConfigMap, DaemonSet and three pods:
        // nothing skipped as unknown (the overlays: tests/install_kustomize.rs).
        assert_eq!(text.matches(" passed for resource ").count(), 9, "{text}");
    }
}

#[test]
fn schema_validation_catches_a_misspelt_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        read("deploy/kubernetes/pss-guard.yaml").replace("hostPID: true", "hostPid: true"),
    )
    .unwrap();
    let out = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a misspelt field passed validation");
}

/// The `policy.toml: |` block of the ConfigMap, de-indented.
fn configmap_policy() -> String {
    let text = read("deploy/kubernetes/pss-guard.yaml");
    let mut lines = text.lines().skip_while(|l| !l.contains("policy.toml: |"));
    lines.next();
    lines
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn configmap_policy_is_a_valid_policy() {
    let text = configmap_policy();
    let p = pss_guard::config::Policy::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(p.enforce.to_string(), "baseline:latest");
    assert_eq!(
        p.mode,
        pss_guard::config::Mode::Observe,
        "a fresh install observes"
    );
    // pss-guard's own namespace comes from the node file (the DaemonSet's downward API).
    assert!(!p.exempt_namespaces.contains("pss-guard"));
}

const PARSE_MIME: &str = r#"
import email, json, sys, yaml
msg = email.message_from_string(open(sys.argv[1]).read())
assert msg.is_multipart(), "not multipart"
parts = {p.get_content_type(): p.get_payload() for p in msg.walk() if not p.is_multipart()}
docs = [d for d in yaml.safe_load_all(parts["application/node.eks.aws"]) if d]
standalone = [d for d in yaml.safe_load_all(open(sys.argv[2])) if d]
print(json.dumps({"nodeconfig": docs, "standalone": standalone,
                  "script": parts["text/x-shellscript"]}))
"#;

#[test]
fn eks_user_data_is_mime_with_the_hook_and_a_clean_script() {
    let out = Command::new("python3")
        .args(["-c", PARSE_MIME])
        .arg(repo("node-config/eks-al2023-user-data.mime"))
        .arg(repo("node-config/eks-al2023-nodeconfig.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let nc = &v["nodeconfig"][0];
    assert_eq!(nc["kind"], "NodeConfig");
    assert_eq!(nc["apiVersion"], "node.eks.aws/v1alpha1");
    assert_eq!(nc, &v["standalone"][0], "user data and drop-in disagree");
    let hook = &nc["spec"]["containerd"]["baseRuntimeSpec"]["hooks"]["createRuntime"][0];
    let installed = containerd::hook_entry(
        Path::new(pss_guard::install::DEFAULT_BIN_PATH),
        "runc",
        None,
    );
    assert_eq!(hook["path"], installed["path"]);
    assert_eq!(hook["timeout"], installed["timeout"]);
    assert_eq!(
        hook["args"].as_array().unwrap()[..4],
        installed["args"].as_array().unwrap()[..4]
    );

    let script = v["script"].as_str().unwrap();
    assert!(script.starts_with("#!/bin/bash"), "{script}");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("user-data.sh");
    std::fs::write(&f, script).unwrap();
    shellcheck(&[&f]);
    // The binary goes into place by rename, after its checksum is verified.
    let check = script.find("sha256sum --check").unwrap();
    let mv = script
        .find("mv -f \"$tmp\" /usr/local/bin/pss-guard")
        .unwrap();
    assert!(check < mv);
}

#[test]
fn node_config_snippets_match_what_install_writes() {
    let hook: Value =
        serde_json::from_str(&read("node-config/base-runtime-spec.hook.json")).unwrap();
    let bin = Path::new(pss_guard::install::DEFAULT_BIN_PATH);
    assert_eq!(
        hook["hooks"]["createRuntime"][0],
        containerd::hook_entry(bin, "runc", None)
    );
    let example: Value =
        serde_json::from_str(&read("node-config/base-runtime-spec-runc.example.json")).unwrap();
    let expected = containerd::with_hook(
        &containerd::cri_default_spec(),
        &containerd::hook_entry(bin, "runc", None),
        bin,
    )
    .unwrap();
    assert_eq!(example, expected);
    for (file, plugin) in [
        ("node-config/containerd-v2.toml", containerd::V2_CRI_PLUGIN),
        ("node-config/containerd-v3.toml", containerd::V3_CRI_PLUGIN),
    ] {
        let t: toml::Table = toml::from_str(&read(file)).unwrap();
        assert_eq!(
            t["plugins"][plugin]["containerd"]["runtimes"]["runc"]["base_runtime_spec"].as_str(),
            Some("/etc/pss-guard/containerd/base-runtime-spec-runc.json"),
            "{file}"
        );
    }
}

fn shellcheck(files: &[&Path]) {
    let out = Command::new("shellcheck")
        .args(files)
        .output()
        .expect("shellcheck is installed (Debian's shellcheck)");
    assert!(
        out.status.success(),
        "shellcheck:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn scripts_are_shellcheck_clean() {
    let files: Vec<PathBuf> = [
        "deploy/build-image.sh",
        "scripts/cross-aarch64.sh",
        "scripts/render-manifests.sh",
        "vagrant/e2e.sh",
        "vagrant/provision/01-containerd.sh",
        "vagrant/provision/02-kubeadm.sh",
        "vagrant/provision/03-pss-guard.sh",
    ]
    .iter()
    .map(|f| repo(f))
    .collect();
    shellcheck(&files.iter().map(PathBuf::as_path).collect::<Vec<_>>());
}
