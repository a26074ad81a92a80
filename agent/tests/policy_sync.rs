//! The policy ConfigMap reaches the host without a rollout restart: the agent copies the mounted
//! file to the hook's policy path when it changes, laid out and updated as the kubelet does a
//! ConfigMap volume (`policy.toml -> ..data/policy.toml`, `..data -> ..<timestamp>`, an update is
//! a new timestamped directory, an atomic swap of `..data` and the old directory removed); a
//! policy that does not parse leaves the last good one in place and is reported; a policy file
//! removed or edited on the host is written again; breaking glass through the ConfigMap reaches
//! the real hook within the agent's poll interval, measured.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

/// Publishes `content` as the kubelet publishes a ConfigMap update (kubernetes
/// pkg/volume/util/atomic_writer.go, `AtomicWriter.Write`): the payload goes into a new
/// timestamped directory (mode 0755, the file 0644), the user-visible `policy.toml ->
/// ..data/policy.toml` symlink is created if missing, a `..data_tmp` symlink to the new directory
/// is renamed over `..data` (the one atomic step), and the previous timestamped directory is
/// removed. Returns when `..data` was swapped.
fn publish(volume: &Path, version: &str, content: &str) -> Instant {
    use std::os::unix::fs::PermissionsExt;
    let old = std::fs::read_link(volume.join("..data")).ok();
    let data = volume.join(format!("..{version}"));
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(data.join("policy.toml"), content).unwrap();
    std::fs::set_permissions(
        data.join("policy.toml"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let key = volume.join("policy.toml");
    if std::fs::symlink_metadata(&key).is_err() {
        symlink("..data/policy.toml", key).unwrap();
    }
    let tmp = volume.join("..data_tmp");
    symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, volume.join("..data")).unwrap();
    let swapped = Instant::now();
    if let Some(old) = old {
        std::fs::remove_dir_all(volume.join(old)).unwrap();
    }
    swapped
}

/// A ConfigMap volume directory holding `content` as its first version.
fn volume_with(dir: &Path, content: &str) -> std::path::PathBuf {
    let volume = dir.join("config");
    std::fs::create_dir(&volume).unwrap();
    publish(&volume, "2026_12_06_00_00_00.000000001", content);
    volume
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
    let good = "enforce = \"baseline:latest\"\n[exempt]\nnamespaces = [\"team-ops\"]\n";
    let volume = volume_with(dir.path(), good);
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
    let mut names: Vec<_> = std::fs::read_dir(dest.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    // The policy and the node file the agent writes beside it (`NODE_FILE_NAME`), nothing else.
    assert_eq!(
        names,
        ["node.toml", "policy.toml"],
        "a temp file was left behind"
    );

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
    let policy = "# cluster-wide, from the ConfigMap\nenforce = \"baseline:latest\"\n";
    let volume = volume_with(dir.path(), policy);
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

fn sync_agent(node: &Node, volume: &Path) -> Agent {
    let host = node.path().join("host");
    Agent::start(
        &[
            "--no-watch",
            "--host-root",
            host.to_str().unwrap(),
            "--log",
            node.log_path().to_str().unwrap(),
            "--policy-source",
            volume.join("policy.toml").to_str().unwrap(),
            "--policy-dest",
            node.policy_path().to_str().unwrap(),
        ],
        &[],
    )
}

/// The ConfigMap is the node's one source of the policy: a policy file removed or edited on the
/// host while the ConfigMap stays the same is written again within a poll, also while the
/// ConfigMap holds a policy that does not load (then the last good one goes back).
#[test]
fn a_policy_file_removed_or_edited_on_the_host_is_written_again() {
    let node = Node::new();
    let good = node.policy_text("baseline:latest", "");
    let volume = volume_with(node.path(), &good);
    let dest = node.policy_path();
    let agent = sync_agent(&node, &volume);
    agent.wait_metrics(&[
        "pss_guard_policy_source_valid 1",
        "pss_guard_policy_restored_total 0",
    ]);

    // Removed on the host: the hook would run on its built-in fallback.
    std::fs::remove_file(&dest).unwrap();
    wait_file(&dest, &good, &agent);
    agent.wait_metrics(&["pss_guard_policy_restored_total 1"]);
    node.decide("team-a", "after-remove", true);

    // Edited on the host to let everything through.
    std::fs::write(&dest, node.policy_text("privileged:latest", "")).unwrap();
    wait_file(&dest, &good, &agent);
    agent.wait_metrics(&["pss_guard_policy_restored_total 2"]);
    node.decide("team-a", "after-edit", true);

    // A broken ConfigMap, then the file removed: the last good policy goes back, and the source
    // is still reported invalid.
    publish(&volume, "2026_12_06_00_00_01.000000002", "enforce = [[[\n");
    agent.wait_metrics(&["pss_guard_policy_source_valid 0"]);
    std::fs::remove_file(&dest).unwrap();
    wait_file(&dest, &good, &agent);
    agent.wait_metrics(&[
        "pss_guard_policy_restored_total 3",
        "pss_guard_policy_source_valid 0",
        "pss_guard_policy_sync_invalid_total 1",
    ]);
    assert!(
        agent
            .stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("was removed or changed on the host")),
        "the rewrite is not logged"
    );
}

/// The agent's policy poll (`POLICY_POLL` in src/main.rs).
const POLICY_POLL: Duration = Duration::from_secs(2);
/// From the kubelet's `..data` swap to the hook deciding under the new policy: one poll, plus
/// a margin for a loaded machine (the agent's read, check and fsync'ed write, and the hook run).
const BREAK_GLASS_BOUND: Duration = Duration::from_secs(5);

/// The policy's top lines enforcing, and breaking glass: the same policy in observe mode (one
/// line added), under which the hook refuses nothing and records what it would have refused.
const ENFORCING: &str = "enforce = \"baseline:latest\"";
const BREAK_GLASS: &str = "enforce = \"baseline:latest\"\nmode = \"observe\"";

/// The cluster-wide break glass: the ConfigMap's policy switched to `mode = "observe"`, published
/// as the kubelet publishes it; the real hook, run on a container the enforcing policy refuses,
/// lets it through within [`BREAK_GLASS_BOUND`] of the swap and records `would_refuse` with the
/// violations, which the agent prints; switching back refuses again within the same bound. Three rounds; the
/// times are printed (`--nocapture`).
#[test]
fn break_glass_through_the_configmap_reaches_the_hook_within_a_poll() {
    let node = Node::new();
    let policy = |top: &str| node.policy_with(top, "");
    let volume = volume_with(node.path(), &policy(ENFORCING));
    let agent = sync_agent(&node, &volume);
    wait_file(&node.policy_path(), &policy(ENFORCING), &agent);
    agent.wait_metrics(&["pss_guard_policy_source_valid 1"]);
    node.decide("team-a", "before", true);

    let mut runs = 0u32;
    // Runs the hook on a refused-when-enforcing container until its exit status is `want`.
    let mut until = |want: i32, swapped: Instant, round: &str| -> (Duration, String) {
        let mut n = 0;
        loop {
            n += 1;
            runs += 1;
            let id = format!("{round}-{n}");
            let code = node.hook_exit("team-a", &id, true);
            let took = swapped.elapsed();
            if code == Some(want) {
                return (took, id);
            }
            assert!(
                took < BREAK_GLASS_BOUND,
                "{round}: the hook still exits {code:?} {took:?} after the ConfigMap swap; agent stderr:\n{}",
                agent.stderr.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let mut times = Vec::new();
    for round in 0..3 {
        let swapped = publish(
            &volume,
            &format!("2026_12_06_01_00_0{round}.00000000{round}"),
            &policy(BREAK_GLASS),
        );
        let (took, id) = until(0, swapped, &format!("glass{round}"));
        eprintln!(
            "break glass, round {round}: the hook let the container through {took:?} after the ..data swap"
        );
        times.push(took);
        // The record says what the hook did, and the agent printed it.
        let rec = loop {
            let r = agent.next();
            if r["container_id"] == id.as_str() {
                break r;
            }
        };
        assert_eq!(rec["decision"], "would_refuse", "{rec}");
        assert_eq!(rec["policy"], "baseline:latest", "{rec}");
        assert!(
            !rec["violations"].as_array().unwrap().is_empty(),
            "the observed record keeps the violations: {rec}"
        );

        let swapped = publish(
            &volume,
            &format!("2026_12_06_01_01_0{round}.00000000{round}"),
            &policy(ENFORCING),
        );
        let (took, _) = until(1, swapped, &format!("enforce{round}"));
        eprintln!(
            "enforcing again, round {round}: the hook refused {took:?} after the ..data swap"
        );
        times.push(took);
    }
    let max = times.iter().max().unwrap();
    eprintln!(
        "ConfigMap swap to the hook deciding under the new policy: max {max:?} over {} switches ({runs} hook runs); poll {POLICY_POLL:?}, bound {BREAK_GLASS_BOUND:?}",
        times.len()
    );
    assert!(*max < BREAK_GLASS_BOUND);
}
