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
        Node::with_policy(|_| extra_policy.to_owned())
    }

    /// A node whose extra policy text may name paths inside the node's own directory.
    pub fn with_policy(extra_policy: impl FnOnce(&Path) -> String) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = Node { dir };
        let policy = format!(
            "enforce = \"baseline:latest\"\n{}\n[log]\npath = {:?}\nnode_name = \"test-node\"\n",
            extra_policy(n.path()),
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

/// What a bounded run writes to the child's stdin.
pub enum Stdin {
    /// These bytes, then end of file.
    Bytes(Vec<u8>),
    /// Nothing, and the pipe stays open until the child exits (a runtime that never writes).
    NeverClosed,
}

/// Runs `cmd` with `stdin`, and fails the test if it runs longer than `limit` (the child is
/// killed first): a hook must never hang.
pub fn run_bounded(mut cmd: Command, stdin: Stdin, limit: std::time::Duration) -> Output {
    use std::io::{Read, Write};
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = std::time::Instant::now();
    let mut child = cmd.spawn().expect("spawn the command under test");
    let mut pipe = child.stdin.take().expect("stdin pipe");
    let writer = match stdin {
        Stdin::Bytes(bytes) => {
            // The child may stop reading early (an oversized state): EPIPE is expected.
            std::thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            });
            None
        }
        Stdin::NeverClosed => Some(pipe),
    };
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the command under test") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} ran past {limit:?}: a hang");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    drop(writer);
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

impl Node {
    /// `pss-guard hook --policy <this node's policy> ARGS` with an empty environment, as a
    /// runtime starts it.
    pub fn hook_command(&self, args: &[&str]) -> Command {
        hook_command(&self.policy_path(), args)
    }
}

/// `pss-guard hook --policy POLICY ARGS` with an empty environment.
pub fn hook_command(policy: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("hook")
        .arg("--policy")
        .arg(policy)
        .args(args)
        .env_clear();
    cmd
}

/// The same hook command run inside a private mount namespace after `setup` (a shell
/// script: mounts that must not leak into the test machine). The hook itself still starts
/// with an empty environment.
pub fn in_mount_namespace(setup: &str, hook: &Command) -> Command {
    let mut cmd = Command::new("/usr/bin/unshare");
    cmd.args(["--mount", "--propagation", "private", "/bin/sh", "-ec"])
        .arg(format!("{setup}\nexec /usr/bin/env -i \"$@\""))
        .arg("sh")
        .arg(hook.get_program())
        .args(hook.get_args())
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    cmd
}

/// containerd's annotations for the app container "app" of pod `<ns>/web`.
pub fn cri_annotations(ns: &str, sandbox_id: &str) -> Value {
    json!({
        "io.kubernetes.cri.container-type": "container",
        "io.kubernetes.cri.container-name": "app",
        "io.kubernetes.cri.sandbox-id": sandbox_id,
        "io.kubernetes.cri.sandbox-name": "web",
        "io.kubernetes.cri.sandbox-namespace": ns,
        "io.kubernetes.cri.sandbox-uid": "0a1b2c3d-uid",
        "io.kubernetes.cri.image-name": "registry.example/app:1"
    })
}

/// A containerd-shaped pod under `<root>`: the sandbox bundle `<root>/<sandbox_id>` (when
/// `sandbox` is given) and the app container's bundle `<root>/<name>`; returns the latter.
pub fn containerd_pod(
    root: &Path,
    name: &str,
    sandbox_id: &str,
    sandbox: Option<&Value>,
    app: &Value,
) -> PathBuf {
    if let Some(sb) = sandbox {
        std::fs::create_dir_all(root.join(sandbox_id)).expect("mkdir sandbox bundle");
        write_json(&root.join(sandbox_id).join("config.json"), sb);
    }
    let b = root.join(name);
    std::fs::create_dir_all(&b).expect("mkdir bundle");
    write_json(&b.join("config.json"), app);
    b
}

/// The pause container's spec: private namespaces, no Kubernetes app metadata.
pub fn sandbox_spec() -> Value {
    let mut sb = base_spec(&["/pause"]);
    sb["annotations"] = json!({"io.kubernetes.cri.container-type": "sandbox"});
    sb
}
