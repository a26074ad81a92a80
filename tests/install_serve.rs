//! `pss-guard serve`, the DaemonSet's main process: records the real hook writes are printed
//! to stdout with the Kubernetes node name, across log rotation, and counted on /metrics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use serde_json::Value;

struct Serve {
    child: Child,
    addr: String,
    lines: mpsc::Receiver<String>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(log: &std::path::Path) -> Serve {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--node",
            "k8s-node-1",
            "--log",
        ])
        .arg(log)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    let addr = first
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_owned();
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    Serve {
        child,
        addr,
        lines: rx,
    }
}

fn get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn next(s: &Serve) -> Value {
    let l = s
        .lines
        .recv_timeout(Duration::from_secs(10))
        .expect("serve printed no record within 10s");
    serde_json::from_str(&l).unwrap()
}

/// Runs the real hook on a containerd-shaped pod in namespace `ns`.
fn decide(node: &Node, ns: &str, id: &str, privileged: bool) {
    let mut app = base_spec(&["/bin/true"]);
    if privileged {
        make_privileged(&mut app);
    }
    app["annotations"] = cri_annotations(ns, "sb1");
    let b = containerd_pod(
        &node.path().join("k8s.io"),
        id,
        "sb1",
        Some(&sandbox_spec()),
        &app,
    );
    node.run_hook(&state(id, &b), &["--runtime", "containerd"]);
}

#[test]
fn serve_prints_every_decision_with_the_node_name_and_counts_them() {
    let node = Node::new("");
    let s = serve(&node.log_path());

    decide(&node, "team-a", "c1", true);
    let r = next(&s);
    assert_eq!(r["node"], "k8s-node-1");
    assert_eq!(r["decision"], "refused", "{r}");
    assert_eq!(r["namespace"], "team-a");
    assert_eq!(r["violations"][0]["check"], "privileged");
    decide(&node, "team-b", "c2", false);
    assert_eq!(next(&s)["decision"], "allowed");

    // Rotation: the log is moved away and the hook starts a new one.
    std::fs::rename(node.log_path(), node.log_path().with_extension("log.1")).unwrap();
    decide(&node, "team-a", "c3", true);
    let r = next(&s);
    assert_eq!(
        (r["decision"].as_str(), r["container_id"].as_str()),
        (Some("refused"), Some("c3"))
    );

    let m = get(&s.addr, "/metrics");
    assert!(m.starts_with("HTTP/1.1 200 OK"), "{m}");
    for want in [
        "pss_guard_decisions_total{decision=\"refused\",namespace=\"team-a\"} 2",
        "pss_guard_decisions_total{decision=\"allowed\",namespace=\"team-b\"} 1",
        "pss_guard_violations_total{decision=\"refused\",check=\"privileged\",namespace=\"team-a\"} 2",
        "pss_guard_hook_eval_seconds_count 3",
        "pss_guard_hook_eval_seconds_bucket{le=\"+Inf\"} 3",
        "pss_guard_log_unparsed_total 0",
    ] {
        assert!(m.contains(want), "missing {want:?} in\n{m}");
    }
    assert!(get(&s.addr, "/nope").starts_with("HTTP/1.1 404"));
    assert!(get(&s.addr, "/healthz").ends_with("ok\n"));
}
