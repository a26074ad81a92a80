//! The agent as the DaemonSet's log streamer and metrics endpoint (it replaced `pss-guard
//! serve`): records the real hook writes are printed with the Kubernetes node name across
//! rotation by rename and truncation, counted on /metrics; the endpoint serves scrapers while
//! other connections sit idle, and keeps answering while the log cannot be followed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use support::*;

fn streamer(node: &Node) -> Agent {
    let log = node.log_path();
    let a = Agent::start(
        &[
            "--no-watch",
            "--node",
            "k8s-node-1",
            "--log",
            log.to_str().unwrap(),
        ],
        &[],
    );
    // The follower is up before the test's first record (records already in the log are also
    // printed, see tests/position.rs).
    a.wait_metrics(&["pss_guard_log_follower_up 1"]);
    a
}

#[test]
fn agent_prints_every_decision_with_the_node_name_across_rotation_and_counts_them() {
    let node = Node::new();
    let a = streamer(&node);

    node.decide("team-a", "c1", true);
    let r = a.next();
    assert_eq!(r["node"], "k8s-node-1");
    assert_eq!(r["decision"], "refused", "{r}");
    assert_eq!(r["namespace"], "team-a");
    assert_eq!(r["policy"], "baseline:latest");
    let check = r["violations"][0]["check"].as_str().unwrap().to_owned();
    node.decide("team-b", "c2", false);
    assert_eq!(a.next()["decision"], "allowed");

    // Rotation by rename, with a writer that opened the old file just before the rename: its
    // record lands in decisions.log.1 after the rename, and must still be read.
    let log = node.log_path();
    let old = log.with_extension("log.1");
    let mut late = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::fs::rename(&log, &old).unwrap();
    // Once the follower has seen the rename, a follower that moved on at once would miss this.
    a.wait_metrics(&["pss_guard_log_rotations_total 1"]);
    late.write_all(b"{\"decision\":\"allowed\",\"container_id\":\"late\",\"namespace\":\"team-b\",\"policy\":\"baseline:latest\"}\n")
        .unwrap();
    drop(late);
    node.decide("team-a", "c3", true);
    let mut ids: Vec<String> = (0..2)
        .map(|_| a.next()["container_id"].as_str().unwrap().to_owned())
        .collect();
    // The old file is read to its end before the new one: the late record comes first.
    assert_eq!(ids, ["late", "c3"]);

    // Truncation in place (copytruncate): the follower starts again at offset 0.
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&log)
        .unwrap();
    node.decide("team-b", "c4", false);
    ids = vec![a.next()["container_id"].as_str().unwrap().to_owned()];
    assert_eq!(ids, ["c4"]);

    let m = a.wait_metrics(&["pss_guard_log_truncations_total 1"]);
    for want in [
        "pss_guard_decisions_total{decision=\"refused\",namespace=\"team-a\"} 2".to_owned(),
        "pss_guard_decisions_total{decision=\"allowed\",namespace=\"team-b\"} 3".to_owned(),
        format!("pss_guard_violations_total{{decision=\"refused\",check=\"{check}\",namespace=\"team-a\"}} 2"),
        "pss_guard_evaluations_total{decision=\"deny\",policy_level=\"baseline\",policy_version=\"latest\",mode=\"enforce\"} 2".to_owned(),
        "pss_guard_evaluations_total{decision=\"allow\",policy_level=\"baseline\",policy_version=\"latest\",mode=\"enforce\"} 3".to_owned(),
        "pss_guard_hook_eval_seconds_count 4".to_owned(),
        "pss_guard_hook_eval_seconds_bucket{le=\"+Inf\"} 4".to_owned(),
        "pss_guard_log_unparsed_total 0".to_owned(),
        "pss_guard_log_rotations_total 1".to_owned(),
        "pss_guard_policy_errors_total 0".to_owned(),
        format!("pss_guard_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION")),
        "pss_guard_log_follower_up 1".to_owned(),
    ] {
        assert!(m.lines().any(|l| l == want), "missing {want:?} in\n{m}");
    }
    assert!(
        !m.contains("pss_guard_snapshot_age_seconds"),
        "--no-watch has no snapshot"
    );
    assert_eq!(a.get("/nope").0, 404);
    assert_eq!(a.get("/healthz"), (200, "ok\n".to_owned()));
    let (code, body) = a.get("/readyz");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("watches: off"), "{body}");
}

#[test]
fn idle_and_half_sent_connections_do_not_stall_scrapers_and_probes() {
    let node = Node::new();
    let a = streamer(&node);
    // Connections that never send a request, and one that stops halfway through its head:
    // the old single-threaded server served nobody else for 5 s behind each of these.
    let mut idle: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(&a.addr).unwrap())
        .collect();
    let mut half = TcpStream::connect(&a.addr).unwrap();
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    idle.push(half);
    // 16 scrapers and probes at once; each read gives up after 3 s (support::get), less than
    // the server's 5 s header timeout, so a stall fails the test instead of waiting it out.
    let handles: Vec<_> = (0..16)
        .map(|i| {
            let addr = a.addr.clone();
            std::thread::spawn(move || {
                let path = ["/metrics", "/healthz", "/readyz"][i % 3];
                get(&addr, path)
            })
        })
        .collect();
    for h in handles {
        let (code, body) = h.join().unwrap();
        assert_eq!(code, 200, "{body}");
    }
    drop(idle);
}

#[test]
fn a_dead_follower_is_a_metric_and_not_ready_while_metrics_keep_answering() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.log");
    // A directory where the log should be: every attempt to follow it fails.
    std::fs::create_dir(&log).unwrap();
    let a = Agent::start(&["--no-watch", "--log", log.to_str().unwrap()], &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = a.metrics();
        let errors: u64 = m
            .lines()
            .find_map(|l| l.strip_prefix("pss_guard_log_follower_errors_total "))
            .and_then(|v| v.parse().ok())
            .unwrap();
        if errors >= 1 {
            assert!(m.lines().any(|l| l == "pss_guard_log_follower_up 0"), "{m}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no follower error:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(a.get("/healthz").0, 200);
    let (code, body) = a.get("/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("log follower: down"), "{body}");

    // The log becomes followable: the follower recovers by itself.
    std::fs::remove_dir(&log).unwrap();
    std::fs::write(&log, "").unwrap();
    a.wait_metrics(&["pss_guard_log_follower_up 1"]);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(b"{\"decision\":\"exempt\",\"namespace\":\"kube-system\"}\n")
        .unwrap();
    assert_eq!(a.next()["decision"], "exempt");
    a.wait_metrics(&["pss_guard_exemptions_total 1"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while a.get("/readyz").0 != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready again");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn help_and_version_exit_zero_and_bad_options_exit_two() {
    let out = std::process::Command::new(AGENT)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let usage = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--log",
        "--listen",
        "--node",
        "--from-start",
        "--position",
        "--snapshot",
        "--no-watch",
        "--policy-source",
        "--policy-dest",
        "--host-root",
    ] {
        assert!(usage.contains(opt), "usage lacks {opt}:\n{usage}");
    }
    let out = std::process::Command::new(AGENT)
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("pss-guard-agent "));
    let out = std::process::Command::new(AGENT)
        .args(["--policy-source", "/x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn sigterm_stops_the_agent_with_status_zero() {
    let node = Node::new();
    let mut a = streamer(&node);
    assert_eq!(a.get("/healthz").0, 200);
    let pid = a.child.id().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = a.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

/// What the hook's rotation does: `<log>.1 .. <log>.keep-1` shift up by one, `<log>` becomes
/// `<log>.1`.
fn rotate(log: &std::path::Path, keep: u32) {
    let rotated = |n: u32| std::path::PathBuf::from(format!("{}.{n}", log.display()));
    for n in (1..keep).rev() {
        let _ = std::fs::rename(rotated(n), rotated(n + 1));
    }
    std::fs::rename(log, rotated(1)).unwrap();
}

#[test]
fn every_record_of_a_burst_across_several_quick_rotations_is_printed_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.log");
    // The follower has the (empty) log open before the burst starts.
    std::fs::write(&log, "").unwrap();
    let a = Agent::start(&["--no-watch", "--log", log.to_str().unwrap()], &[]);
    a.wait_metrics(&["pss_guard_log_follower_up 1"]);
    // Five rotations within a few milliseconds, far inside the follower's grace period: it must
    // walk from each rotated file to the next one, not jump to the newest.
    for i in 0..300 {
        if i > 0 && i % 50 == 0 {
            rotate(&log, 10);
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        writeln!(
            f,
            "{{\"decision\":\"allowed\",\"container_id\":\"c{i}\",\"namespace\":\"burst\",\"policy\":\"baseline:latest\"}}"
        )
        .unwrap();
    }
    let ids: Vec<String> = (0..300)
        .map(|_| a.next()["container_id"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = (0..300).map(|i| format!("c{i}")).collect();
    assert_eq!(ids, want);
    a.wait_metrics(&[
        "pss_guard_decisions_total{decision=\"allowed\",namespace=\"burst\"} 300",
        "pss_guard_log_rotations_total 5",
        "pss_guard_log_unparsed_total 0",
    ]);
    assert!(
        a.lines.recv_timeout(Duration::from_secs(2)).is_err(),
        "a record was printed twice"
    );
}
