//! `pss-guard audit` on Podman containers (the containerd side is in install_containerd.rs):
//! a running privileged container is reported as would-be-refused, a stopped one is not
//! listed, and the JSON carries the same verdicts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_pss-guard");

struct Podman {
    dir: tempfile::TempDir,
    ids: Vec<String>,
}

impl Podman {
    fn cmd(&self) -> Command {
        let d = self.dir.path();
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("run"))
            .args(["--storage-driver", "vfs", "--hooks-dir"])
            .arg(d.join("hooks"))
            .args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "none"]);
        c
    }

    /// Starts `sleep` detached on a busybox rootfs; returns the container ID.
    fn run(&mut self, name: &str, extra: &[&str]) -> String {
        let out = self
            .cmd()
            .args(["run", "-d", "--name", name, "--network", "none"])
            .args([
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
            ])
            .args(extra)
            .arg("--rootfs")
            .arg(self.dir.path().join("rootfs"))
            .args(["/bin/sleep", "300"])
            .output()
            .expect("podman is installed");
        let id = ok(out, "podman run").trim().to_owned();
        self.ids.push(id.clone());
        id
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = self.cmd().args(["rm", "-f", "-t", "0", id]).output();
        }
    }
}

fn ok(out: Output, what: &str) -> String {
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what}: {}\n{s}",
        String::from_utf8_lossy(&out.stderr)
    );
    s
}

fn setup() -> Podman {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs/bin");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::create_dir_all(dir.path().join("hooks")).unwrap();
    assert!(
        Path::new("/bin/busybox").exists(),
        "busybox-static is installed"
    );
    std::fs::copy("/bin/busybox", rootfs.join("busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("sleep")).unwrap();
    Podman {
        dir,
        ids: Vec::new(),
    }
}

#[test]
fn audit_reports_running_podman_containers() {
    let mut p = setup();
    let d = p.dir.path().to_owned();
    let privileged = p.run("audit-priv", &["--privileged"]);
    let stopped = p.run("audit-stopped", &["--privileged"]);
    ok(
        p.cmd()
            .args(["stop", "-t", "0", &stopped])
            .output()
            .unwrap(),
        "podman stop",
    );
    let policy = d.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "enforce = \"baseline:latest\"\n[paths]\ncrio_root = {:?}\ncrio_runroot = {:?}\ncontainerd_state = {:?}\n[log]\npath = {:?}\n",
            d.join("root"),
            d.join("run"),
            d.join("no-containerd"),
            d.join("decisions.log")
        ),
    )
    .unwrap();

    let out = Command::new(BIN)
        .args(["audit", "--policy"])
        .arg(&policy)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{table}");
    let row = table
        .lines()
        .find(|l| l.contains(&privileged[..12]) || l.contains(&privileged))
        .unwrap_or_else(|| panic!("privileged container not in:\n{table}"));
    assert!(row.starts_with("WOULD REFUSE"), "{table}");
    assert!(
        row.contains("podman") && row.contains("privileged"),
        "{table}"
    );
    assert!(
        !table.contains(&stopped[..12]),
        "stopped container listed:\n{table}"
    );
    assert!(table.starts_with("DECISION"), "{table}");

    let out = Command::new(BIN)
        .args(["audit", "--json", "--policy"])
        .arg(&policy)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cs = v["containers"].as_array().unwrap();
    assert_eq!(cs.len(), 1, "{v:#}");
    assert_eq!(cs[0]["container_id"], privileged.as_str());
    assert_eq!(cs[0]["decision"], "refused");
    assert_eq!(cs[0]["runtime"], "podman");
    assert!(
        cs[0]["violations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["check"] == "privileged"),
        "{v:#}"
    );
    assert_eq!(v["summary"]["refused"], 1);
    assert_eq!(v["policy"], "baseline:latest");
}

#[test]
fn audit_on_a_root_with_no_runtime_state_says_so() {
    // Not a node (a wrong --root): an empty table would read as "nothing would be refused".
    let root = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["audit", "--root"])
        .arg(root.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no runtime state below"), "{err}");
    assert!(err.contains("/run/containerd"), "{err}");
    // A node whose containerd state directory exists but runs nothing: an empty, honest table.
    std::fs::create_dir_all(root.path().join("run/containerd")).unwrap();
    let out = Command::new(BIN)
        .args(["audit", "--root"])
        .arg(root.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 containers under"));
}
