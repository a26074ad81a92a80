//! The policy ConfigMap reaches the host without a rollout restart: the agent copies the mounted
//! file to the hook's policy path when it changes, laid out and updated as the kubelet does a
//! ConfigMap volume (`policy.toml -> ..data/policy.toml`, `..data -> ..<timestamp>`, an update is
//! a new timestamped directory and an atomic swap of `..data`); a policy that does not parse
//! leaves the last good one in place and is reported.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

/// Publishes `content` as the kubelet publishes a ConfigMap update.
fn publish(volume: &Path, version: &str, content: &str) {
    let data = volume.join(format!("..{version}"));
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("policy.toml"), content).unwrap();
    let tmp = volume.join("..data_tmp");
    symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, volume.join("..data")).unwrap();
    let key = volume.join("policy.toml");
    if std::fs::symlink_metadata(&key).is_err() {
        symlink("..data/policy.toml", key).unwrap();
    }
}

fn wait_file(path: &Path, want: &str, agent: &Agent) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::fs::read_to_string(path).ok().as_deref() != Some(want) {
        assert!(
            Instant::now() < deadline,
            "{path:?} never became {want:?}; stderr:\n{}",
            agent.stderr.lock().unwrap().join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn configmap_updates_reach_the_host_and_a_broken_one_keeps_the_last_good_policy() {
    let dir = tempfile::tempdir().unwrap();
    let volume = dir.path().join("config");
    std::fs::create_dir(&volume).unwrap();
    let good = "enforce = \"baseline:latest\"\n[exempt]\nnamespaces = [\"team-ops\"]\n";
    publish(&volume, "2026_11_30_01", good);
    let dest = dir.path().join("host/etc/pss-guard/policy.toml");
    let log = dir.path().join("decisions.log");
    // An empty host: no runtime config names other directories, so the policy goes as it is.
    let host = dir.path().join("host");
    let agent = Agent::start(
        &[
            "--no-watch",
            "--host-root",
            host.to_str().unwrap(),
            "--log",
            log.to_str().unwrap(),
            "--policy-source",
            volume.join("policy.toml").to_str().unwrap(),
            "--policy-dest",
            dest.to_str().unwrap(),
        ],
        &[],
    );
    wait_file(&dest, good, &agent);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&dest).unwrap().mode() & 0o777, 0o644);
    agent.wait_metrics(&[
        "pss_guard_policy_sync_total 1",
        "pss_guard_policy_source_valid 1",
    ]);

    // A broken update: the host keeps the last good policy, the failure is visible.
    publish(
        &volume,
        "2026_11_30_02",
        "enforce = \"baseline:latest\"\n[[[ not toml\n",
    );
    agent.wait_metrics(&[
        "pss_guard_policy_sync_invalid_total 1",
        "pss_guard_policy_source_valid 0",
    ]);
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), good);
    assert!(
        agent
            .stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("does not load, the last good policy")),
        "no log line for the broken policy"
    );
    let (code, body) = agent.get("/readyz");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("source INVALID"), "{body}");
    let names: Vec<_> = std::fs::read_dir(dest.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["policy.toml"], "a temp file was left behind");

    // The next good update goes through.
    let stricter = "enforce = \"restricted:latest\"\n[exempt]\nnamespaces = [\"team-ops\"]\n";
    publish(&volume, "2026_11_30_03", stricter);
    wait_file(&dest, stricter, &agent);
    agent.wait_metrics(&[
        "pss_guard_policy_sync_total 2",
        "pss_guard_policy_source_valid 1",
    ]);
}

/// The policy reaches a k3s-style node with the node's own containerd directories in `[paths]`
/// (else every pod's `/etc/hosts` would be a host path there); the operator's comments stay. A
/// PodSecurityConfiguration in YAML has no `[paths]` and is installed byte for byte.
#[test]
fn a_toml_policy_gets_the_nodes_runtime_paths_and_a_psa_yaml_goes_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("host");
    let config = host.join("etc/containerd/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(
        &config,
        "version = 2\nroot = \"/var/lib/rancher/k3s/agent/containerd\"\nstate = \"/run/k3s/containerd\"\n",
    )
    .unwrap();
    let volume = dir.path().join("config");
    std::fs::create_dir(&volume).unwrap();
    let policy = "# cluster-wide, from the ConfigMap\nenforce = \"baseline:latest\"\n";
    publish(&volume, "2026_11_30_01", policy);
    let dest = host.join("etc/pss-guard/policy.toml");
    let log = dir.path().join("decisions.log");
    let agent = Agent::start(
        &[
            "--no-watch",
            "--host-root",
            host.to_str().unwrap(),
            "--log",
            log.to_str().unwrap(),
            "--policy-source",
            volume.join("policy.toml").to_str().unwrap(),
            "--policy-dest",
            dest.to_str().unwrap(),
        ],
        &[],
    );
    agent.wait_metrics(&["pss_guard_policy_sync_total 1"]);
    let written = std::fs::read_to_string(&dest).unwrap();
    assert!(written.starts_with(policy), "{written}");
    let p = pss_guard::config::Policy::load(&dest).unwrap();
    assert_eq!(
        p.paths.containerd_root,
        Path::new("/var/lib/rancher/k3s/agent/containerd")
    );
    assert_eq!(p.paths.containerd_state, Path::new("/run/k3s/containerd"));
    assert_eq!(p.enforce.to_string(), "baseline:latest");
    assert!(
        agent
            .stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("paths.containerd_root")),
        "the [paths] change is not logged"
    );

    // The runtime's config moves its root: the same source is installed again with it.
    std::fs::write(
        &config,
        "version = 2\nroot = \"/data/containerd\"\nstate = \"/run/k3s/containerd\"\n",
    )
    .unwrap();
    agent.wait_metrics(&["pss_guard_policy_sync_total 2"]);
    let p = pss_guard::config::Policy::load(&dest).unwrap();
    assert_eq!(p.paths.containerd_root, Path::new("/data/containerd"));

    // PSA's own file: loaded by the hook's parser, installed unchanged.
    let psc = "apiVersion: pod-security.admission.config.k8s.io/v1\nkind: PodSecurityConfiguration\ndefaults:\n  enforce: restricted\n  enforce-version: latest\nexemptions:\n  namespaces: [kube-system]\n";
    publish(&volume, "2026_11_30_02", psc);
    wait_file(&dest, psc, &agent);
    agent.wait_metrics(&[
        "pss_guard_policy_sync_total 3",
        "pss_guard_policy_source_valid 1",
    ]);
    let p = pss_guard::config::Policy::load(&dest).unwrap();
    assert_eq!(p.enforce.to_string(), "restricted:latest");
}
