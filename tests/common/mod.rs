//! Shared by the integration tests: real OCI bundles with a busybox rootfs, a policy file and
//! a decision log in a temp dir, and the built pss-guard binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_pss-guard");

/// A temp dir with a policy file whose log goes to `<dir>/log/decisions.log`.
pub struct Node {
    pub dir: tempfile::TempDir,
}

impl Node {
    pub fn new(extra_policy: &str) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = Node { dir };
        let policy = format!(
            "enforce = \"baseline:latest\"\n{extra_policy}\n[log]\npath = {:?}\nnode_name = \"test-node\"\n",
            n.log_path()
        );
        std::fs::write(n.policy_path(), policy).expect("write policy");
        n
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn policy_path(&self) -> PathBuf {
        self.path().join("policy.toml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.path().join("log/decisions.log")
    }

    /// Every record in the decision log, parsed (a line that is not JSON fails the test).
    pub fn records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad log line {l:?}: {e}")))
            .collect()
    }

    /// A bundle directory `<dir>/<name>` holding `config.json` = `spec` and a busybox rootfs.
    pub fn bundle(&self, name: &str, spec: &Value) -> PathBuf {
        let b = self.path().join(name);
        let rootfs = b.join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir rootfs");
        let busybox = Path::new("/bin/busybox");
        assert!(
            busybox.exists(),
            "/bin/busybox is missing: install Debian's busybox-static (the README test command does)"
        );
        std::fs::copy(busybox, rootfs.join("bin/busybox")).expect("copy busybox");
        for applet in ["sh", "echo", "cat", "sleep", "true"] {
            let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
        }
        write_json(&b.join("config.json"), spec);
        b
    }

    /// Runs `pss-guard hook` as a runtime would: state on stdin, an empty environment.
    pub fn run_hook(&self, state: &[u8], args: &[&str]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.arg("hook")
            .arg("--policy")
            .arg(self.policy_path())
            .args(args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn pss-guard");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            let _ = stdin.write_all(state);
        }
        child.wait_with_output().expect("wait pss-guard")
    }
}

pub fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_vec_pretty(v).expect("json")).expect("write json");
}

/// The OCI state runc passes to a createRuntime hook.
pub fn state(id: &str, bundle: &Path) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "ociVersion": "1.0.2",
        "id": id,
        "status": "creating",
        "pid": std::process::id(),
        "bundle": bundle,
        "annotations": {}
    }))
    .expect("state json")
}

/// A compliant spec in the shape `runc spec` writes, running `args`.
pub fn base_spec(args: &[&str]) -> Value {
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/bin"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "ambient": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "pss-guard-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

/// What containerd's `WithPrivileged` does to a spec: every capability the host has, no masks,
/// `/sys` read-write, every device allowed.
pub fn make_privileged(spec: &mut Value) {
    let all: Vec<String> = caps::read(None, caps::CapSet::Bounding)
        .expect("read bounding set")
        .into_iter()
        .map(|c| c.to_string())
        .collect();
    let p = &mut spec["process"]["capabilities"];
    for set in ["bounding", "effective", "permitted"] {
        p[set] = json!(all);
    }
    let linux = spec["linux"].as_object_mut().expect("linux");
    linux.remove("maskedPaths");
    linux.remove("readonlyPaths");
    linux.insert(
        "resources".into(),
        json!({"devices": [{"allow": true, "access": "rwm"}]}),
    );
    for m in spec["mounts"].as_array_mut().expect("mounts") {
        if m["destination"] == "/sys" {
            m["options"] = json!(["nosuid", "noexec", "nodev", "rw"]);
        }
    }
}

/// Adds pss-guard as prestart and createRuntime hook, as the README shows for plain runc.
pub fn add_hook(spec: &mut Value, policy: &Path) {
    let hook = json!({
        "path": BIN,
        "args": ["pss-guard", "hook", "--policy", policy, "--runtime", "none"],
        "timeout": 10
    });
    spec["hooks"] = json!({"prestart": [hook.clone()], "createRuntime": [hook]});
}

/// `runc run` with its own state root; returns (success, stdout, stderr).
pub fn runc_run(root: &Path, bundle: &Path, id: &str) -> (bool, String, String) {
    let out = Command::new("runc")
        .arg("--root")
        .arg(root)
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .output()
        .expect("runc is missing: install Debian's runc (the README test command does)");
    // A refused container may leave state behind; remove it so ids can be reused.
    let _ = Command::new("runc")
        .arg("--root")
        .arg(root)
        .args(["delete", "--force", id])
        .output();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
