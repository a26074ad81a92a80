//! The Vagrant node's provisioning steps that run without a VM: containerd's config as
//! vagrant/provision/01-containerd.sh writes it, then `pss-guard install` on it (what the
//! DaemonSet's init container does in the VM), loaded by the real containerd. Booting the VM,
//! kubeadm and the DaemonSet rollout are not run in CI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_pss-guard");

fn ok(out: Output, what: &str) -> String {
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what}: {}\n{s}",
        String::from_utf8_lossy(&out.stderr)
    );
    s
}

#[test]
fn provisioned_containerd_config_takes_the_hook_and_loads() {
    let root = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("vagrant/provision/01-containerd.sh");
    let out = Command::new("bash")
        .arg(&script)
        .env("PROVISION_ROOT", root.path())
        .env("PROVISION_CONFIG_ONLY", "1")
        .output()
        .unwrap();
    ok(out, "01-containerd.sh (config only)");
    let config = root.path().join("etc/containerd/config.toml");

    let out = Command::new(BIN)
        .args(["install", "--only", "containerd", "--binary", BIN, "--root"])
        .arg(root.path())
        .output()
        .unwrap();
    let report = ok(out, "pss-guard install");
    assert!(report.contains("config version 2"), "{report}");

    let out = Command::new("containerd")
        .arg("--config")
        .arg(&config)
        .args(["config", "dump"])
        .output()
        .expect("containerd is installed");
    let dump: toml::Table = toml::from_str(&ok(out, "containerd config dump")).unwrap();
    let cri = &dump["plugins"]["io.containerd.grpc.v1.cri"];
    let runc = &cri["containerd"]["runtimes"]["runc"];
    assert_eq!(
        runc["base_runtime_spec"].as_str(),
        Some("/etc/pss-guard/containerd/base-runtime-spec-runc.json")
    );
    // The provisioning's own edits survive the install.
    assert_eq!(runc["options"]["SystemdCgroup"].as_bool(), Some(true));
    assert_eq!(cri["cni"]["bin_dir"].as_str(), Some("/usr/lib/cni"));
    assert!(
        root.path()
            .join("etc/pss-guard/containerd/base-runtime-spec-runc.json")
            .is_file()
    );
}
