//! `--health`: the hook's wiring on the host (`pss_guard::health::check`, what `pss-guard health`
//! prints) in `/readyz` and the metrics. The host is a directory laid out as a node's root; its
//! `/proc` is a directory holding the files the check reads of a containerd process (`stat`'s
//! `btime`, the process's `comm`, `cmdline` and `stat`), so the daemon's start time is the test's
//! to set. The check against a real containerd process is tests/health.rs of the hook's package.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::*;

const CONFIG: &str = "etc/containerd/config.toml";

fn write(root: &Path, rel: &str, text: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A containerd process started `ago` seconds before now, serving the stock config path.
fn fake_proc(proc_dir: &Path, started_ago: u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Started at boot: start ticks 0, so its start time is btime.
    write(
        proc_dir,
        "stat",
        format!("cpu 0 0 0 0\nbtime {}\n", now - started_ago).as_bytes(),
    );
    write(proc_dir, "4242/comm", b"containerd\n");
    write(
        proc_dir,
        "4242/cmdline",
        b"/usr/bin/containerd\0--config\0/etc/containerd/config.toml\0",
    );
    let mut stat = String::from("4242 (containerd) S 1");
    for _ in 0..18 {
        stat.push_str(" 0");
    }
    stat.push_str(" 0 1000 0\n"); // field 22, starttime: 0
    write(proc_dir, "4242/stat", stat.as_bytes());
}

fn wait_ready(agent: &Agent, code: u16, want: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (c, body) = agent.get("/readyz");
        if c == code && want.iter().all(|w| body.contains(w)) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never was {code} with {want:?}: {c} {body}\nstderr:\n{}",
            agent.stderr.lock().unwrap().join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn readyz_and_metrics_follow_the_hooks_wiring_on_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("host");
    let proc_dir = dir.path().join("proc");
    std::fs::create_dir_all(&root).unwrap();
    fake_proc(&proc_dir, 3600);
    let log = root.join("var/log/pss-guard/decisions.log");
    let agent = Agent::start(
        &[
            "--no-watch",
            "--health",
            "--host-root",
            root.to_str().unwrap(),
            "--proc",
            proc_dir.to_str().unwrap(),
            "--log",
            log.to_str().unwrap(),
        ],
        &[],
    );

    // Nothing installed: not ready, and each part says why.
    let body = wait_ready(&agent, 503, &["hook UNHEALTHY", "hook FAIL binary"]);
    assert!(body.contains("built-in default"), "{body}");
    agent.wait_metrics(&[
        "pss_guard_hook_healthy 0",
        "pss_guard_hook_binary_ok 0",
        "pss_guard_hook_policy_fallback 1",
        "pss_guard_hook_runtime_handlers{state=\"protected\"} 0",
    ]);

    // Wired: the binary, a policy, a handler whose base spec runs the hook, and a decision
    // logged since containerd started.
    write(
        &root,
        "usr/local/bin/pss-guard",
        &std::fs::read(hook_bin()).unwrap(),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        root.join("usr/local/bin/pss-guard"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    write(
        &root,
        "etc/pss-guard/policy.toml",
        b"enforce = \"baseline:latest\"\n",
    );
    write(
        &root,
        CONFIG,
        br#"version = 2
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
  base_runtime_spec = "/etc/pss-guard/containerd/runc.json"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata]
  runtime_type = "io.containerd.kata.v2"
"#,
    );
    write(
        &root,
        "etc/pss-guard/containerd/runc.json",
        br#"{"ociVersion":"1.0.2","hooks":{"createRuntime":[{"path":"/usr/local/bin/pss-guard","args":["pss-guard","hook"]}]}}"#,
    );
    // Ten seconds ago: after the daemon's start, before the restart below.
    let now = pss_guard::time::rfc3339(SystemTime::now() - Duration::from_secs(10));
    write(
        &root,
        "var/log/pss-guard/decisions.log",
        format!("{{\"time\":\"{now}\",\"decision\":\"allowed\",\"namespace\":\"kube-system\",\"policy\":\"baseline:latest\"}}\n").as_bytes(),
    );
    let body = wait_ready(&agent, 200, &["hook healthy:"]);
    assert!(body.contains("handler   containerd \"runc\""), "{body}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let m = loop {
        let m = agent.metrics();
        if m.contains("pss_guard_hook_healthy 1") || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for want in [
        "pss_guard_hook_healthy 1",
        "pss_guard_hook_binary_ok 1",
        "pss_guard_hook_policy_fallback 0",
        "pss_guard_hook_decision_since_runtime_start 1",
        "pss_guard_hook_runtime_handlers{state=\"protected\"} 1",
        // kata runs no OCI hooks on the host: unprotected, as `pss-guard health` lists it.
        "pss_guard_hook_runtime_handlers{state=\"unprotected\"} 1",
    ] {
        assert!(m.lines().any(|l| l == want), "no {want:?} in\n{m}");
    }

    // containerd restarts (it reads base specs only at start-up): until a decision is logged
    // by the new daemon, the node is not known to be protected.
    fake_proc(&proc_dir, 0);
    let body = wait_ready(&agent, 503, &["FAIL decision"]);
    assert!(body.contains("no decision since containerd"), "{body}");
    agent.wait_metrics(&["pss_guard_hook_decision_since_runtime_start 0"]);
}
