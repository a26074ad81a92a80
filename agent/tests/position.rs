//! Every decision since boot reaches the agent's stdout and metrics once: the agent keeps its
//! read position in the decision log on the host (`--position`), so records the real hook wrote
//! before the agent started are printed by its first run, and an agent that is stopped
//! (SIGTERM, as the kubelet stops it) and started again prints what was decided meanwhile,
//! across the hook's own rotation, and nothing twice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::*;

/// How long the agent must stay silent for "nothing else was printed": longer than its 1 s
/// rotation grace and several log polls.
const QUIET: Duration = Duration::from_secs(2);

fn ids(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["container_id"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// The next `n` records (10 s each at most), then whatever else comes before [`QUIET`]: more
/// than `n` shows up in the caller's comparison.
fn take(a: &Agent, n: usize) -> Vec<Value> {
    let mut out: Vec<Value> = (0..n).map(|_| a.next()).collect();
    out.extend(a.drain(QUIET));
    out
}

fn start(node: &Node, position: &Path, extra: &[&str]) -> Agent {
    let log = node.log_path();
    let mut args = vec![
        "--no-watch",
        "--node",
        "k8s-node-1",
        "--log",
        log.to_str().unwrap(),
        "--position",
        position.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Agent::start(&args, &[])
}

fn count(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn decisions_before_the_agent_and_between_its_runs_reach_it_exactly_once_across_rotation() {
    // The hook rotates at 16 KiB here, so a dozen records fill a file (a record carries every
    // check's outcome, about a kilobyte).
    let node = Node::with_log_settings("max_bytes = 16384\nkeep = 5");
    let state = tempfile::tempdir().unwrap();
    let position = state.path().join("var/lib/pss-guard/log-position");

    // Boot: containers start before the agent does.
    node.decide("team-a", "boot1", true);
    node.decide("team-b", "boot2", false);
    node.decide("team-a", "boot3", true);

    let mut a = start(&node, &position, &[]);
    let first = take(&a, 3);
    assert_eq!(ids(&first), ["boot1", "boot2", "boot3"]);
    assert!(first.iter().all(|r| r["node"] == "k8s-node-1"), "{first:?}");
    let m = a.wait_metrics(&[
        "pss_guard_decisions_total{decision=\"refused\",namespace=\"team-a\"} 2",
        "pss_guard_decisions_total{decision=\"allowed\",namespace=\"team-b\"} 1",
        "pss_guard_log_lines_total 3",
    ]);
    assert_eq!(count(&m, "pss_guard_log_position_errors_total"), 0, "{m}");
    node.decide("team-b", "live1", false);
    assert_eq!(a.next()["container_id"], "live1");
    a.terminate();
    assert!(position.is_file(), "no position written on SIGTERM");

    // A restart with nothing new: nothing printed again.
    let mut a = start(&node, &position, &[]);
    a.wait_metrics(&["pss_guard_log_follower_up 1"]);
    assert_eq!(ids(&a.drain(QUIET)), Vec::<String>::new());
    a.wait_metrics(&["pss_guard_log_lines_total 0"]);
    a.terminate();

    // Decisions while the agent is down, across at least one rotation by the hook itself.
    let rotated = node.log_path().with_extension("log.1");
    assert!(!rotated.exists(), "rotated before the test meant it to");
    let mut down = Vec::new();
    while !rotated.exists() || down.len() < 12 {
        let id = format!("down{}", down.len());
        node.decide("team-c", &id, down.len() % 3 == 0);
        down.push(id);
        assert!(down.len() < 200, "the hook never rotated its log");
    }
    let mut a = start(&node, &position, &[]);
    let got = take(&a, down.len());
    assert_eq!(ids(&got), down, "lost or repeated across the rotation");
    let n = down.len() as u64;
    let refused = down.iter().enumerate().filter(|(i, _)| i % 3 == 0).count() as u64;
    let m = a.wait_metrics(&[&format!("pss_guard_log_lines_total {n}")]);
    assert_eq!(
        count(
            &m,
            "pss_guard_decisions_total{decision=\"refused\",namespace=\"team-c\"}"
        ),
        refused,
        "{m}"
    );
    assert_eq!(
        count(
            &m,
            "pss_guard_decisions_total{decision=\"allowed\",namespace=\"team-c\"}"
        ),
        n - refused,
        "{m}"
    );
    assert!(count(&m, "pss_guard_log_rotations_total") >= 1, "{m}");
    assert_eq!(count(&m, "pss_guard_log_unparsed_total"), 0, "{m}");
    // Still following live after the resumed chain.
    node.decide("team-b", "live2", false);
    assert_eq!(a.next()["container_id"], "live2");
    a.terminate();

    // `--from-start` replays the current log (whatever it holds), ignoring the position.
    let current = std::fs::read_to_string(node.log_path()).unwrap();
    let want: Vec<String> = current
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["container_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(want.contains(&"live2".to_owned()), "{want:?}");
    let a = start(&node, &position, &["--from-start"]);
    assert_eq!(ids(&take(&a, want.len())), want);
}

/// A crash (SIGKILL) repeats only what was printed since the last save, which is at most a
/// second old: once the position has caught up, nothing is repeated. A log truncated below the
/// saved offset while the agent is down is read from its start.
#[test]
fn a_killed_agent_repeats_nothing_saved_and_a_truncated_log_is_read_from_its_start() {
    let node = Node::new();
    let state = tempfile::tempdir().unwrap();
    let position = state.path().join("log-position");
    node.decide("team-a", "k1", true);
    node.decide("team-a", "k2", false);
    let mut a = start(&node, &position, &[]);
    assert_eq!(ids(&take(&a, 2)), ["k1", "k2"]);
    // The position is saved within a second of the last record: wait for it to name the end.
    let len = std::fs::metadata(node.log_path()).unwrap().len();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let saved: Option<Value> = std::fs::read(&position)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if saved.as_ref().and_then(|s| s["offset"].as_u64()) == Some(len) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the position never reached {len}: {saved:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    node.decide("team-a", "k3", false);
    let mut a = start(&node, &position, &[]);
    assert_eq!(ids(&take(&a, 1)), ["k3"]);
    a.terminate();

    // copytruncate while the agent is down: the file is shorter than the saved offset.
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(node.log_path())
        .unwrap();
    node.decide("team-b", "t1", false);
    let a = start(&node, &position, &[]);
    assert_eq!(ids(&take(&a, 1)), ["t1"]);
    a.wait_metrics(&["pss_guard_log_truncations_total 1"]);
}

/// Without a saved position (a fresh node, or the first run of this version) the current log is
/// read from its start, unless it is larger than 16 MiB (a `[log] max_bytes` raised past the
/// default 10 MiB): then from the first record of its last 16 MiB, said on stderr. A position
/// file that names another log is not used.
#[test]
fn without_a_position_a_large_log_is_read_from_its_last_16_mib() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.log");
    let position = dir.path().join("log-position");
    let pad = "x".repeat(1000);
    let mut text = String::new();
    let mut starts = Vec::new();
    let mut i = 0;
    while text.len() < 17 * 1024 * 1024 {
        starts.push(text.len());
        text.push_str(&format!(
            "{{\"decision\":\"allowed\",\"container_id\":\"c{i}\",\"namespace\":\"big\",\"pad\":\"{pad}\"}}\n"
        ));
        i += 1;
    }
    std::fs::write(&log, &text).unwrap();
    let from = text.len() - 16 * 1024 * 1024;
    let first = starts.iter().position(|s| *s >= from).unwrap();
    // A position for another log is ignored (said on stderr), as if there were none.
    std::fs::write(
        &position,
        "{\"schema\":1,\"log\":\"/elsewhere/decisions.log\",\"dev\":1,\"ino\":2,\"offset\":0,\"head_len\":0,\"head_fnv\":\"0\"}\n",
    )
    .unwrap();
    let a = Agent::start(
        &[
            "--no-watch",
            "--log",
            log.to_str().unwrap(),
            "--position",
            position.to_str().unwrap(),
        ],
        &[],
    );
    let want = (starts.len() - first) as u64;
    let got = take(&a, want as usize);
    assert_eq!(got.len() as u64, want);
    assert_eq!(got[0]["container_id"], format!("c{first}"));
    assert_eq!(
        got.last().unwrap()["container_id"],
        format!("c{}", starts.len() - 1)
    );
    a.wait_metrics(&[&format!("pss_guard_log_lines_total {want}")]);
    let err = a.stderr.lock().unwrap().join("\n");
    assert!(err.contains("more than 16777216"), "{err}");
    assert!(err.contains("not in"), "{err}");
}
