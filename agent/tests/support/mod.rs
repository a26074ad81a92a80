//! Shared by the agent's integration tests: the built agent binary with its stdout and stderr
//! collected, plain-socket HTTP requests, and the real hook (`PSS_GUARD_BIN`, which
//! scripts/test.sh sets) run on containerd-shaped bundles so the log holds real records.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod api;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const AGENT: &str = env!("CARGO_BIN_EXE_pss-guard-agent");

/// The hook binary. The agent crate cannot name another package's binary at compile time, so
/// it comes from `PSS_GUARD_BIN`, or the workspace's debug build; a missing one fails loudly.
pub fn hook_bin() -> PathBuf {
    let p = std::env::var_os("PSS_GUARD_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/pss-guard"),
        PathBuf::from,
    );
    assert!(
        p.is_file(),
        "the pss-guard hook binary {p:?} is missing: build the workspace and set PSS_GUARD_BIN (scripts/test.sh does)"
    );
    p
}

pub struct Agent {
    pub child: Child,
    pub addr: String,
    pub lines: mpsc::Receiver<String>,
    pub stderr: Arc<Mutex<Vec<String>>>,
    /// Holds the position file of an agent started without `--position` or `--host-root`.
    _position: Option<tempfile::TempDir>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Agent {
    /// Starts the agent on a free loopback port with `args` (and `env`). Without `--position`
    /// or `--host-root`, its log position goes to a temp directory of its own, never to the
    /// build machine's /var/lib/pss-guard.
    pub fn start(args: &[&str], env: &[(&str, &Path)]) -> Agent {
        let mut cmd = Command::new(AGENT);
        cmd.args(["--listen", "127.0.0.1:0"]).args(args);
        let mut position = None;
        if !args
            .iter()
            .any(|a| *a == "--position" || *a == "--host-root")
        {
            let dir = tempfile::tempdir().unwrap();
            cmd.arg("--position").arg(dir.path().join("log-position"));
            position = Some(dir);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn pss-guard-agent");
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        err.read_line(&mut first).unwrap();
        let addr = first
            .split("http://")
            .nth(1)
            .and_then(|s| s.split('/').next())
            .unwrap_or_else(|| panic!("no address in {first:?}"))
            .to_owned();
        // Keep draining stderr: a full pipe would block the agent.
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let e = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for l in err.lines().map_while(Result::ok) {
                e.lock().unwrap().push(l);
            }
        });
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Agent {
            child,
            addr,
            lines: rx,
            stderr,
            _position: position,
        }
    }

    /// SIGTERM, as the kubelet stops a container; the agent must exit 0 within 10 s.
    pub fn terminate(&mut self) {
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "still running 10 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
    }

    /// Everything printed so far and in the next `quiet` without a new line, parsed.
    pub fn drain(&self, quiet: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(quiet) {
            out.push(serde_json::from_str(&l).unwrap());
        }
        out
    }

    /// The next record the agent printed (10 s at most).
    pub fn next(&self) -> Value {
        let l = self
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("the agent printed no record within 10s");
        serde_json::from_str(&l).unwrap()
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        get(&self.addr, path)
    }

    pub fn metrics(&self) -> String {
        let (code, body) = self.get("/metrics");
        assert_eq!(code, 200, "{body}");
        body
    }

    /// Polls `/metrics` until it contains every line of `want` (10 s at most).
    pub fn wait_metrics(&self, want: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let m = self.metrics();
            if want.iter().all(|w| m.lines().any(|l| l == *w)) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "metrics never showed {want:?}:\n{m}\nstderr:\n{}",
                self.stderr.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// One GET on a fresh connection; (status, body). The read times out rather than hang.
pub fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out)
        .unwrap_or_else(|e| panic!("GET {path}: {e} after {out:?}"));
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {out:?}"));
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (code, body.to_owned())
}

/// A node directory: a policy whose log goes to `<dir>/log/decisions.log`, and containerd
/// bundles under `<dir>/k8s.io`.
pub struct Node {
    pub dir: tempfile::TempDir,
}

impl Node {
    pub fn new() -> Node {
        Node::with_log_settings("")
    }

    /// A node whose policy's `[log]` table also has `extra` (e.g. `max_bytes = 4096`).
    pub fn with_log_settings(extra: &str) -> Node {
        let n = Node {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(n.policy_path(), n.policy_text("baseline:latest", extra)).unwrap();
        n
    }

    /// A policy enforcing `enforce` whose log is this node's.
    pub fn policy_text(&self, enforce: &str, log_extra: &str) -> String {
        self.policy_with(&format!("enforce = \"{enforce}\""), log_extra)
    }

    /// A policy with the top-level lines `top` whose log is this node's.
    pub fn policy_with(&self, top: &str, log_extra: &str) -> String {
        format!(
            "{top}\n[log]\npath = {:?}\nnode_name = \"test-node\"\n{log_extra}\n",
            self.log_path()
        )
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

    /// Runs the real hook, as containerd would, on the app container `id` of a pod in `ns`;
    /// `bad` adds CAP_SYS_ADMIN, which baseline forbids.
    pub fn decide(&self, ns: &str, id: &str, bad: bool) {
        self.decide_pod(ns, "web", "0a1b2c3d-uid", id, bad);
    }

    /// [`Node::decide`] for the pod `pod` with uid `uid`.
    pub fn decide_pod(&self, ns: &str, pod: &str, uid: &str, id: &str, bad: bool) {
        assert_eq!(
            self.hook_exit_pod(ns, pod, uid, id, bad),
            Some(if bad { 1 } else { 0 }),
            "hook verdict for {id}"
        );
    }

    /// The hook's exit status on the container `decide` describes, under whatever policy the
    /// node's policy file holds now.
    pub fn hook_exit(&self, ns: &str, id: &str, bad: bool) -> Option<i32> {
        self.hook_exit_pod(ns, "web", "0a1b2c3d-uid", id, bad)
    }

    /// [`Node::hook_exit`] for the pod `pod` with uid `uid`.
    pub fn hook_exit_pod(
        &self,
        ns: &str,
        pod: &str,
        uid: &str,
        id: &str,
        bad: bool,
    ) -> Option<i32> {
        let root = self.path().join("k8s.io");
        let mut app = spec(&["/bin/true"]);
        if bad {
            for set in ["bounding", "effective", "permitted"] {
                app["process"]["capabilities"][set]
                    .as_array_mut()
                    .unwrap()
                    .push(json!("CAP_SYS_ADMIN"));
            }
        }
        app["annotations"] = json!({
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.container-name": "app",
            "io.kubernetes.cri.sandbox-id": "sb1",
            "io.kubernetes.cri.sandbox-name": pod,
            "io.kubernetes.cri.sandbox-namespace": ns,
            "io.kubernetes.cri.sandbox-uid": uid,
            "io.kubernetes.cri.image-name": "registry.example/app:1"
        });
        let mut sandbox = spec(&["/pause"]);
        sandbox["annotations"] = json!({"io.kubernetes.cri.container-type": "sandbox"});
        for (name, s) in [("sb1", &sandbox), (id, &app)] {
            std::fs::create_dir_all(root.join(name)).unwrap();
            std::fs::write(
                root.join(name).join("config.json"),
                serde_json::to_vec(s).unwrap(),
            )
            .unwrap();
        }
        let state = json!({"ociVersion": "1.0.2", "id": id, "status": "creating",
            "pid": std::process::id(), "bundle": root.join(id), "annotations": {}});
        let mut child = Command::new(hook_bin())
            .arg("hook")
            .arg("--policy")
            .arg(self.policy_path())
            .args(["--runtime", "containerd"])
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&serde_json::to_vec(&state).unwrap())
            .unwrap();
        child.wait().unwrap().code()
    }
}

/// A compliant spec in the shape `runc spec` writes.
pub fn spec(args: &[&str]) -> Value {
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "user": {"uid": 0, "gid": 0}, "args": args, "env": ["PATH=/bin"], "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}
