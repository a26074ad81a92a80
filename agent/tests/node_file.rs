//! The policy sync merges the ConfigMap's `exempt-*.toml` keys into the policy it writes on the
//! host, and keeps the node file beside it (this DaemonSet's namespace, containerd's default
//! handler, the runtime's directories) in step with the node: what makes pss-guard's own pods
//! start under any policy form, and an exemption never reach the default handler.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

/// A ConfigMap volume as the kubelet lays it out: every key a link into `..data`.
fn publish(volume: &Path, version: &str, keys: &[(&str, &str)]) {
    let data = volume.join(format!("..{version}"));
    std::fs::create_dir(&data).unwrap();
    for (k, v) in keys {
        std::fs::write(data.join(k), v).unwrap();
    }
    let tmp = volume.join("..data_tmp");
    symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, volume.join("..data")).unwrap();
    for (k, _) in keys {
        let key = volume.join(k);
        if std::fs::symlink_metadata(&key).is_err() {
            symlink(format!("..data/{k}"), key).unwrap();
        }
    }
}

fn wait_until(what: &str, agent: &Agent, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "{what} never happened; stderr:\n{}",
            agent.stderr.lock().unwrap().join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn fragments_are_merged_and_the_node_file_says_what_the_node_is() {
    let dir = tempfile::tempdir().unwrap();
    let volume = dir.path().join("config");
    std::fs::create_dir(&volume).unwrap();
    let psc = "apiVersion: pod-security.admission.config.k8s.io/v1\nkind: PodSecurityConfiguration\ndefaults:\n  enforce: baseline\n";
    publish(
        &volume,
        "2026_12_06_01",
        &[
            ("policy.yaml", psc),
            (
                "exempt-eks-addons.toml",
                "[exempt]\nnamespaces = [\"calico-system\"]\n",
            ),
        ],
    );
    // The host's containerd makes nvidia its default handler and keeps its state elsewhere.
    let host = dir.path().join("host");
    std::fs::create_dir_all(host.join("etc/containerd")).unwrap();
    std::fs::write(
        host.join("etc/containerd/config.toml"),
        "version = 3\nroot = \"/data/containerd\"\n[plugins.\"io.containerd.cri.v1.runtime\".containerd]\ndefault_runtime_name = \"nvidia\"\n",
    )
    .unwrap();
    let dest = host.join("etc/pss-guard/policy.toml");
    let node = host.join("etc/pss-guard/node.toml");
    let agent = Agent::start(
        &[
            "--no-watch",
            "--host-root",
            host.to_str().unwrap(),
            "--log",
            dir.path().join("decisions.log").to_str().unwrap(),
            "--policy-source",
            volume.join("policy.yaml").to_str().unwrap(),
            "--policy-dest",
            dest.to_str().unwrap(),
            "--own-namespace",
            "guard-system",
        ],
        &[],
    );
    wait_until("the policy and node file", &agent, || {
        dest.exists() && node.exists()
    });
    let (p, err) = pss_guard::config::Policy::load_or_default(&dest);
    assert_eq!(err, None);
    assert!(p.exempt_namespaces.contains("calico-system"), "{p:?}");
    assert_eq!(p.own_namespace.as_deref(), Some("guard-system"));
    assert_eq!(p.default_runtime_handler, "nvidia");
    assert_eq!(
        p.paths.containerd_root,
        std::path::PathBuf::from("/data/containerd"),
        "a YAML policy gets the runtime's directories too, through the node file"
    );
    // Someone deletes the node file on the host: the agent writes it again.
    std::fs::remove_file(&node).unwrap();
    wait_until("the node file rewritten", &agent, || node.exists());
    // A fragment that would exempt everything is refused; the last good policy stays.
    let before = std::fs::read(&dest).unwrap();
    publish(
        &volume,
        "2026_12_06_02",
        &[
            ("policy.yaml", psc),
            ("exempt-eks-addons.toml", "[exempt]\nimages = [\"*\"]\n"),
        ],
    );
    wait_until("the bad fragment reported", &agent, || {
        agent
            .stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("exempt-eks-addons.toml"))
    });
    assert_eq!(std::fs::read(&dest).unwrap(), before);
}
