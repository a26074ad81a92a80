//! podman running pss-guard from hooks.d, with the hook definition shipped in `hooks/`: the
//! host's podman 4.3 (Debian 12), and podman 5.x + runc 1.3 from the sid tree
//! (tests/containerd/stack.sh, run inside the tree with the test's directory bound at its own
//! path). Needs root and Debian's podman, runc and busybox-static (the README test command
//! installs them); a missing runtime fails the test, it never skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

struct Podman {
    node: Node,
    rootfs: PathBuf,
    /// None: the host's podman; Some(stack): that Debian tree's.
    stack: Option<&'static str>,
}

impl Podman {
    fn new(stack: Option<&'static str>) -> Podman {
        let node = Node::new("");
        let dir = node.path();
        // Storage of our own, so the test neither sees nor touches the host's containers.
        let policy = format!(
            "[log]\npath = {:?}\nnode_name = \"test-node\"\n[paths]\ncrio_root = {:?}\ncrio_runroot = {:?}\n",
            node.log_path(),
            dir.join("storage"),
            dir.join("run")
        );
        std::fs::write(node.policy_path(), policy).expect("policy");
        let hooks = dir.join("hooks.d");
        std::fs::create_dir_all(&hooks).expect("hooks.d");
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks/pss-guard.json");
        let mut def: Value =
            serde_json::from_slice(&std::fs::read(shipped).expect("hooks/pss-guard.json"))
                .expect("hook definition is JSON");
        // The shipped definition, pointed at this build and this test's policy file. In a tree
        // the hook runs in the tree's mount namespace: the binary goes into the bound dir.
        let bin = match stack {
            None => PathBuf::from(BIN),
            Some(_) => {
                let b = dir.join("pss-guard");
                std::fs::copy(BIN, &b).expect("copy pss-guard into the test dir");
                b
            }
        };
        def["hook"]["path"] = bin.to_string_lossy().into_owned().into();
        def["hook"]["args"].as_array_mut().expect("args").extend([
            "--policy".into(),
            node.policy_path().to_string_lossy().into(),
        ]);
        write_json(&hooks.join("pss-guard.json"), &def);
        if let Ok(capture) = std::env::var("PSS_GUARD_CAPTURE") {
            // Runs first (hooks run in file name order) and keeps each spec for the fixtures.
            let script = dir.join("capture.sh");
            std::fs::write(
                &script,
                format!(
                    "#!/bin/sh\nmkdir -p {capture}/podman-raw\ncp config.json {capture}/podman-raw/$(date +%s%N).json\n"
                ),
            )
            .expect("capture script");
            Command::new("chmod")
                .arg("+x")
                .arg(&script)
                .status()
                .expect("chmod");
            let cap = serde_json::json!({"version": "1.0.0", "hook": {"path": script},
                "when": {"always": true}, "stages": ["prestart"]});
            write_json(&hooks.join("00-capture.json"), &cap);
        }
        let bundle = node.bundle("image", &serde_json::json!({}));
        Podman {
            rootfs: bundle.join("rootfs"),
            node,
            stack,
        }
    }

    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let dir = self.node.path();
        let mut cmd = match self.stack {
            None => Command::new("podman"),
            Some(stack) => {
                let mut c = Command::new("bash");
                c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/containerd/stack.sh"))
                    .args(["run", stack, "podman"])
                    .env("EXTRA_BINDS", dir);
                c
            }
        };
        let out = cmd
            .arg("--root")
            .arg(dir.join("storage"))
            .arg("--runroot")
            .arg(dir.join("run"))
            .arg("--hooks-dir")
            .arg(dir.join("hooks.d"))
            .args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "none", "run", "--rm"])
            // This VM's limits are below podman's defaults.
            .args([
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
            ])
            .args(args)
            .arg("--rootfs")
            .arg(&self.rootfs)
            .args(["/bin/echo", "hello from podman"])
            .output()
            .expect("podman is missing: install Debian's podman (the README test command does)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // podman leaves its storage's overlay directory mounted.
        let _ = Command::new("umount")
            .arg(self.node.path().join("storage/overlay"))
            .stderr(std::process::Stdio::null())
            .status();
    }
}

#[test]
fn podman_hooks_d_refuses_privileges_and_runs_a_plain_container() {
    hooks_d_refuses_privileges_and_runs_a_plain_container(None);
}

/// podman 5.x (sid), through the same shipped hooks.d file.
#[test]
fn podman_5_hooks_d_refuses_privileges_and_runs_a_plain_container() {
    hooks_d_refuses_privileges_and_runs_a_plain_container(Some("sid"));
}

fn hooks_d_refuses_privileges_and_runs_a_plain_container(stack: Option<&'static str>) {
    let p = Podman::new(stack);
    if let Some(stack) = stack {
        let v = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/containerd/stack.sh"))
            .args(["run", stack, "podman", "--version"])
            .output()
            .expect("stack.sh");
        let v = String::from_utf8_lossy(&v.stdout).into_owned();
        assert!(v.contains("podman version 5."), "{stack}: {v:?}");
    }
    let (ok, stdout, stderr) = p.run(&["--network", "none"]);
    assert!(ok, "plain podman run refused: {stderr}");
    assert!(stdout.contains("hello from podman"), "{stdout:?}");

    let cases: [(&[&str], &str); 6] = [
        (
            &["--network", "none", "--privileged"],
            "privileged (container \"",
        ),
        (
            &["--network", "none", "--cap-add", "SYS_ADMIN"],
            "non-default capabilities (container \"",
        ),
        (&["--net=host"], "host namespaces (hostNetwork=true)"),
        (
            &["--network", "none", "--pid=host"],
            "host namespaces (hostPID=true)",
        ),
        (
            &["--network", "none", "--ipc=host"],
            "host namespaces (hostIPC=true)",
        ),
        (
            &["--network", "none", "-v", "/:/host"],
            "hostPath volumes (host path \"/\" at \"/host\")",
        ),
    ];
    for (args, reason) in cases {
        let (ok, stdout, stderr) = p.run(args);
        assert!(!ok, "{args:?} started: {stdout:?}");
        assert!(!stdout.contains("hello from podman"), "{args:?} ran");
        assert!(
            stderr.contains("pss-guard: container \"")
                && stderr.contains("violates PodSecurity \"baseline:latest\": ")
                && stderr.contains(reason),
            "{args:?}: podman's error lacks {reason:?}: {stderr}"
        );
    }
    let recs = p.node.records();
    let kinds: Vec<&str> = recs
        .iter()
        .map(|r| r["decision"].as_str().expect("decision"))
        .collect();
    assert_eq!(
        kinds,
        [
            "allowed", "refused", "refused", "refused", "refused", "refused", "refused"
        ]
    );
}
