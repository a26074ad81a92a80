//! `pss-guard health` and the installer's refusals through the built binary, on a fake host
//! root whose containerd config is served by a real containerd (Debian's, started here with its
//! own root, state and socket inside the test directory; CRI disabled, since only the daemon's
//! process and start time matter). Each health statement is shown true on a wired node and
//! false when that one piece of the wiring is broken.

// Test helpers: a panic is how a failed step reports itself.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{BIN, Node, base_spec, state};
use serde_json::Value;

/// The config's host path: not the stock one, so no other containerd on the machine matches.
const CONFIG: &str = "/etc/containerd/health-test.toml";

/// A fake host root and the containerd serving its config.
struct Host {
    root: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let root = tempfile::tempdir().unwrap();
        let r = root.path().display().to_string();
        std::fs::create_dir_all(root.path().join("etc/containerd")).unwrap();
        std::fs::create_dir_all(root.path().join("run")).unwrap();
        // A containerd that keeps its root and state in non-stock places (as k3s does).
        let config = format!(
            r#"version = 2
root = "{r}/data/containerd"
state = "{r}/run/containerd"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{r}/run/ctd.sock"

[ttrpc]
  address = "{r}/run/ctd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{r}/opt"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
"#
        );
        std::fs::write(root.path().join(&CONFIG[1..]), config).unwrap();
        // Starts (or restarts) the daemon detached, its pid in a file: what a restart command
        // on a node does, minus systemd.
        let script = format!(
            r#"#!/bin/bash
set -eu
pidfile={r}/containerd.pid
if [[ -f $pidfile ]]; then
  old=$(cat "$pidfile")
  kill "$old" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
fi
setsid containerd --config {r}{CONFIG} >>{r}/containerd.log 2>&1 </dev/null &
echo $! >"$pidfile"
for _ in $(seq 1 100); do [[ -S {r}/run/ctd.sock ]] && exit 0; sleep 0.1; done
echo "containerd did not start" >&2; exit 1
"#
        );
        std::fs::write(root.path().join("restart.sh"), script).unwrap();
        Host { root }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel.trim_start_matches('/'))
    }

    fn r(&self) -> String {
        self.root.path().display().to_string()
    }

    fn restart_command(&self) -> String {
        format!("bash {}", self.p("restart.sh").display())
    }

    fn start_containerd(&self) {
        let _ = std::fs::remove_file(self.p("run/ctd.sock"));
        let o = Command::new("bash")
            .arg(self.p("restart.sh"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.p("containerd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn installer(&self, verb: &str, extra: &[&str]) -> Output {
        let r = self.r();
        let mut args = vec![
            verb,
            "--root",
            &r,
            "--only",
            "containerd",
            "--containerd-config",
            CONFIG,
            "--binary",
            BIN,
        ];
        if verb == "uninstall" {
            args.truncate(args.len() - 2);
        }
        args.extend_from_slice(extra);
        Command::new(BIN).args(&args).output().unwrap()
    }

    fn install(&self) -> String {
        let o = self.installer("install", &["--restart-command", "true", "--restart"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn health(&self) -> (i32, Value) {
        let r = self.r();
        let o = Command::new(BIN)
            .args([
                "health",
                "--root",
                &r,
                "--containerd-config",
                CONFIG,
                "--json",
            ])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&o.stdout));
        });
        (o.status.code().unwrap(), v)
    }

    /// One decision through the hook binary, logged where the node's policy puts the log.
    fn decision(&self) {
        let node = Node::new("");
        let log = self.p("var/log/pss-guard/decisions.log");
        // The hook creates its own directory, in a /var/log that exists on any node.
        std::fs::create_dir_all(self.p("var/log")).unwrap();
        std::fs::write(
            node.policy_path(),
            format!("enforce = \"baseline:latest\"\n[log]\npath = {log:?}\n"),
        )
        .unwrap();
        let b = node.bundle("c1", &base_spec(&["/bin/true"]));
        let o = node.run_hook(&state("c1", &b), &["--runtime", "none"]);
        assert_eq!(o.status.code(), Some(0), "{o:?}");
        assert!(log.exists());
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Only the containerd this test started, by its pid.
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            let end = Instant::now() + Duration::from_secs(10);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[test]
fn a_wired_node_is_healthy_only_once_a_decision_follows_the_containerd_start() {
    let host = Host::new();
    let out = host.install();
    // install took the config's root/state into the policy: the stock ones would make every
    // pod's /etc/hosts a host path on this node.
    assert!(out.contains("paths.containerd_root"), "{out}");
    let policy = pss_guard::config::Policy::load(&host.p("etc/pss-guard/policy.toml")).unwrap();
    assert_eq!(policy.paths.containerd_root, host.p("data/containerd"));
    assert_eq!(policy.paths.containerd_state, host.p("run/containerd"));

    host.start_containerd();
    let (code, v) = host.health();
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["binary"]["ok"], true, "{v:#}");
    assert_eq!(v["policy"]["ok"], true, "{v:#}");
    assert_eq!(v["runtime"]["ok"], true, "{v:#}");
    assert_eq!(v["protected"], 1, "{v:#}");
    assert_eq!(v["unprotected"], 0, "{v:#}");
    let d = v["decision_since_restart"]["detail"].as_str().unwrap();
    assert!(d.starts_with("no decision in"), "{d}");
    assert!(d.contains(&format!("pid {}", host.pid().unwrap())), "{d}");

    // A container start through the hook after containerd started: healthy.
    std::thread::sleep(Duration::from_millis(1100));
    host.decision();
    let (code, v) = host.health();
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["healthy"], true);

    // containerd restarts (a new config, a node reboot): the old decision no longer counts.
    std::thread::sleep(Duration::from_millis(1100));
    host.start_containerd();
    let (code, v) = host.health();
    assert_eq!(code, 1, "{v:#}");
    let d = v["decision_since_restart"]["detail"].as_str().unwrap();
    assert!(d.starts_with("no decision since containerd"), "{d}");

    // The text form is what the readiness probe shows in `kubectl describe`.
    let o = Command::new(BIN)
        .args(["health", "--root", &host.r(), "--containerd-config", CONFIG])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("UNHEALTHY: "), "{text}");
    assert!(
        text.contains("ok   handler   containerd \"runc\""),
        "{text}"
    );
}

/// A wired node with a decision after containerd's start, then one piece of wiring broken.
fn healthy_host() -> Host {
    let host = Host::new();
    host.install();
    host.start_containerd();
    std::thread::sleep(Duration::from_millis(1100));
    host.decision();
    let (code, v) = host.health();
    assert_eq!(code, 0, "{v:#}");
    host
}

#[test]
fn a_missing_or_non_executable_binary_is_unhealthy() {
    let host = healthy_host();
    let bin = host.p("usr/local/bin/pss-guard");
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (code, v) = host.health();
    assert_eq!(code, 1);
    assert!(
        v["binary"]["detail"]
            .as_str()
            .unwrap()
            .contains("not executable"),
        "{v:#}"
    );
    std::fs::remove_file(&bin).unwrap();
    let (code, v) = host.health();
    assert_eq!(code, 1);
    assert_eq!(v["binary"]["ok"], false);
    assert!(
        v["binary"]["detail"]
            .as_str()
            .unwrap()
            .contains("No such file"),
        "{v:#}"
    );
    // A binary for another CPU: the runtime could not exec it.
    let mut elf = std::fs::read(BIN).unwrap();
    let other: u16 = if cfg!(target_arch = "aarch64") {
        62
    } else {
        183
    };
    elf[18..20].copy_from_slice(&other.to_le_bytes());
    std::fs::write(&bin, elf).unwrap();
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (code, v) = host.health();
    assert_eq!(code, 1);
    assert!(
        v["binary"]["detail"]
            .as_str()
            .unwrap()
            .contains("built for"),
        "{v:#}"
    );
}

#[test]
fn a_base_spec_without_the_hook_is_unhealthy() {
    let host = healthy_host();
    let spec = host.p("etc/pss-guard/containerd/base-runtime-spec-runc.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&spec).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("hooks");
    std::fs::write(&spec, serde_json::to_vec(&v).unwrap()).unwrap();
    let (code, v) = host.health();
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["runtime"]["ok"], false);
    assert_eq!(v["handlers"][0]["protected"], false);
    assert_eq!(v["protected"], 0);
    assert_eq!(v["unprotected"], 1);
    assert!(
        v["runtime"]["detail"].as_str().unwrap().contains("runc"),
        "{v:#}"
    );

    // A handler added to the config without a base spec is unprotected too.
    let host = healthy_host();
    let cfg = host.p(CONFIG);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc-new]\n  runtime_type = \"io.containerd.runc.v2\"\n");
    std::fs::write(&cfg, text).unwrap();
    let (code, v) = host.health();
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["protected"], 1);
    assert_eq!(v["unprotected"], 1);
    assert!(
        v["runtime"]["detail"]
            .as_str()
            .unwrap()
            .contains("runc-new"),
        "{v:#}"
    );
}

#[test]
fn a_broken_or_missing_policy_is_unhealthy() {
    let host = healthy_host();
    let policy = host.p("etc/pss-guard/policy.toml");
    std::fs::write(&policy, "enforce = \"baseline:nonsense\"\n").unwrap();
    let (code, v) = host.health();
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["policy"]["ok"], false);
    assert!(
        v["policy"]["detail"]
            .as_str()
            .unwrap()
            .contains("built-in default"),
        "{v:#}"
    );
    std::fs::remove_file(&policy).unwrap();
    let (code, v) = host.health();
    assert_eq!(code, 1);
    assert_eq!(v["policy"]["ok"], false);
}

#[test]
fn a_root_with_no_runtime_is_unhealthy_and_install_refuses_it() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().display().to_string();
    let o = Command::new(BIN)
        .args(["health", "--root", &r, "--json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["runtime"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("no runtime to protect"),
        "{v:#}"
    );

    let o = Command::new(BIN)
        .args(["install", "--root", &r, "--binary", BIN])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no runtime to wire"), "{err}");
    // Nothing written.
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
}

#[test]
fn install_refuses_bottlerocket() {
    let host = Host::new();
    std::fs::write(
        host.p("etc/os-release"),
        "NAME=Bottlerocket\nID=bottlerocket\nVERSION_ID=1.30.0\n",
    )
    .unwrap();
    let o = host.installer("install", &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("Bottlerocket") && err.contains("BOTTLEROCKET.md"),
        "{err}"
    );
    assert!(!host.p("usr/local/bin/pss-guard").exists());
}

#[test]
fn install_refuses_a_binary_for_another_cpu() {
    let host = Host::new();
    let foreign = host.p("pss-guard-foreign");
    let mut elf = std::fs::read(BIN).unwrap();
    let (other, name) = if cfg!(target_arch = "aarch64") {
        (62u16, "x86_64")
    } else {
        (183u16, "aarch64")
    };
    elf[18..20].copy_from_slice(&other.to_le_bytes());
    std::fs::write(&foreign, elf).unwrap();
    std::fs::set_permissions(
        &foreign,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let f = foreign.display().to_string();
    let o = host.installer("install", &["--binary", &f]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("built for {name}")), "{err}");
    assert!(!host.p("usr/local/bin/pss-guard").exists());
}

#[test]
fn uninstall_keeps_the_binary_until_containerd_really_restarted() {
    let host = healthy_host();
    let pid = host.pid().unwrap();
    // A restart command that succeeds without restarting anything.
    let o = host.installer("uninstall", &["--restart", "--restart-command", "true"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("pid {pid}")) && err.contains("did not restart"),
        "{err}"
    );
    assert!(host.p("usr/local/bin/pss-guard").exists(), "binary removed");
    assert!(
        host.p("etc/pss-guard/containerd/base-runtime-spec-runc.json")
            .exists(),
        "base spec removed"
    );
    // The config is restored already; a real restart lets the binary go.
    let cmd = host.restart_command();
    let o = host.installer("uninstall", &["--restart", "--restart-command", &cmd]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_ne!(host.pid(), Some(pid));
    assert!(!host.p("usr/local/bin/pss-guard").exists());
    assert!(
        !host
            .p("etc/pss-guard/containerd/base-runtime-spec-runc.json")
            .exists()
    );
}
