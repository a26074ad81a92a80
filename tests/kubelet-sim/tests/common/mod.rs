//! Shared set-up for the CRI integration tests: a throw-away node from
//! tests/containerd/node-up.sh (containerd; CRI-O for the stack `crio`, through crio-up.sh),
//! torn down by node-down.sh when the test ends.
//! Missing tools or a missing pss-guard binary fail the test loudly; nothing is skipped.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use kubelet_sim::{Kubelet, Options};
use serde_json::{Value, json};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// `PSS_GUARD_BIN`, else `<workspace>/target/debug/pss-guard`; panics when missing.
pub fn pss_guard_bin() -> PathBuf {
    let bin = std::env::var_os("PSS_GUARD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/debug/pss-guard"));
    assert!(
        bin.is_file(),
        "pss-guard binary not found at {} (build it with `cargo build` or set PSS_GUARD_BIN)",
        bin.display()
    );
    bin
}

fn require_tools() {
    for tool in ["containerd", "ctr", "runc"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            found,
            "{tool} is not installed: these tests need Debian's containerd and runc (see tests/kubelet-sim/README.md)"
        );
    }
}

/// The runtime stack the node runs (`PSS_GUARD_STACK`, as node-up.sh reads it): bookworm
/// (the host's containerd 1.6), trixie (1.7), sid (2.x) or crio (CRI-O, crio-up.sh).
pub fn stack() -> String {
    std::env::var("PSS_GUARD_STACK").unwrap_or_else(|_| "bookworm".into())
}

/// A running containerd node; dropped = torn down.
pub struct TestNode {
    pub dir: PathBuf,
    pub env: BTreeMap<String, String>,
}

impl TestNode {
    /// A node on the stack named by `PSS_GUARD_STACK` (default bookworm).
    pub fn up() -> TestNode {
        TestNode::up_on(&stack())
    }

    /// A node on the given stack, whatever `PSS_GUARD_STACK` says (tests of a feature only
    /// one stack has, such as pod user namespaces on containerd 2.x).
    pub fn up_on(stack: &str) -> TestNode {
        TestNode::up_with(stack, "default")
    }

    /// A node on `stack` in node configuration `config` (node-up.sh --config: default or
    /// seccomp-default).
    pub fn up_with(stack: &str, config: &str) -> TestNode {
        TestNode::up_env(stack, config, &[])
    }

    /// A CRI-O node (stack `crio`) on containers-storage driver `driver`; `wired = false`
    /// leaves out the hooks.d file (for `pss-guard install` to write).
    pub fn up_crio(driver: &str, wired: bool) -> TestNode {
        let hook = if wired { "yes" } else { "no" };
        let node = TestNode::up_env(
            "crio",
            "default",
            &[
                ("PSS_GUARD_CRIO_DRIVER", driver),
                ("PSS_GUARD_CRIO_HOOK", hook),
            ],
        );
        assert_eq!(
            node.env.get("CRIO_DRIVER").map(String::as_str),
            Some(driver),
            "crio-up.sh started another storage driver"
        );
        node
    }

    /// Whether this node runs CRI-O (stack `crio`) rather than containerd.
    pub fn is_crio(&self) -> bool {
        self.env.get("STACK").is_some_and(|s| s == "crio")
    }

    fn up_env(stack: &str, config: &str, env: &[(&str, &str)]) -> TestNode {
        if stack != "crio" {
            require_tools();
        }
        let bin = pss_guard_bin();
        let dir = tempfile::Builder::new()
            .prefix("pss-guard-node.")
            .tempdir()
            .expect("temp dir")
            .keep();
        let script = workspace_root().join("tests/containerd/node-up.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .env("PSS_GUARD_BIN", &bin)
            .env("PSS_GUARD_STACK", stack)
            .env("PSS_GUARD_NODE_CONFIG", config)
            .envs(env.iter().copied())
            .output()
            .expect("run node-up.sh");
        let mut node = TestNode {
            dir: dir.clone(),
            env: BTreeMap::new(),
        };
        assert!(
            out.status.success(),
            "node-up.sh failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        node.env = fs::read_to_string(dir.join("env"))
            .expect("node env file")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // The node runs the stack asked for, not a silent fallback to the host's runtimes.
        assert_eq!(
            node.env.get("STACK").map(String::as_str),
            Some(stack),
            "node-up.sh started another stack"
        );
        assert_eq!(
            node.env.get("NODE_CONFIG").map(String::as_str),
            Some(config),
            "node-up.sh started another node configuration"
        );
        node
    }

    /// `containerd` / `runc` version of this node's stack ("2.1.9", "1.3.6").
    pub fn version(&self, key: &str) -> String {
        let v = self.env.get(key).cloned().unwrap_or_default();
        v.split(['~', '+']).next().unwrap_or("").to_string()
    }

    pub fn var(&self, key: &str) -> PathBuf {
        PathBuf::from(
            self.env
                .get(key)
                .unwrap_or_else(|| panic!("{key} missing from node env")),
        )
    }

    /// The runtime's CRI socket (CRI-O's on the crio stack, else containerd's).
    pub fn socket(&self) -> PathBuf {
        if self.env.contains_key("CRI_SOCKET") {
            self.var("CRI_SOCKET")
        } else {
            self.var("CONTAINERD_SOCKET")
        }
    }

    pub fn kubelet_root(&self) -> PathBuf {
        self.var("KUBELET_ROOT")
    }

    pub fn options(&self) -> Options {
        let mut o = Options::new(self.kubelet_root());
        // The test images sleep forever; an init container that started is what counts.
        o.init_timeout = std::time::Duration::from_millis(0);
        // A Debian-tree node's containerd has a mount namespace of its own: subPath binds go
        // there, where kubelet's would be.
        // CRI-O's too.
        if self.env.get("STACK").is_some_and(|s| s != "bookworm") {
            let pid = self
                .env
                .get("RUNTIME_PID")
                .or(self.env.get("CONTAINERD_PID"));
            o.mount_ns_pid = pid.and_then(|p| p.parse().ok());
        }
        o
    }

    pub async fn kubelet(&self, opts: Options) -> Kubelet {
        Kubelet::connect(&self.socket(), opts)
            .await
            .expect("connect to test containerd")
    }

    /// Rewrite the policy's `enforce = "..."` line (the hook reads the file on each run).
    pub fn set_enforce(&self, level_version: &str) {
        let path = self.var("PSS_GUARD_POLICY");
        let text = fs::read_to_string(&path).expect("policy");
        let new: Vec<String> = text
            .lines()
            .map(|l| {
                if l.starts_with("enforce = ") {
                    format!("enforce = \"{level_version}\"")
                } else {
                    l.to_string()
                }
            })
            .collect();
        fs::write(&path, new.join("\n") + "\n").expect("write policy");
    }

    /// Add a top-level `key = value` line to the policy (after `enforce`, before any table).
    pub fn set_policy_key(&self, key: &str, toml_value: &str) {
        let path = self.var("PSS_GUARD_POLICY");
        let text = fs::read_to_string(&path).expect("policy");
        let mut out: Vec<String> = Vec::new();
        for l in text
            .lines()
            .filter(|l| !l.starts_with(&format!("{key} = ")))
        {
            out.push(l.to_string());
            if l.starts_with("enforce = ") {
                out.push(format!("{key} = {toml_value}"));
            }
        }
        fs::write(&path, out.join("\n") + "\n").expect("write policy");
    }

    /// Set `key = toml_value` in the policy's `[table]`, replacing the key's line there, or
    /// adding the table at the end when the policy has none.
    pub fn set_table_key(&self, table: &str, key: &str, toml_value: &str) {
        let path = self.var("PSS_GUARD_POLICY");
        let text = fs::read_to_string(&path).expect("policy");
        let header = format!("[{table}]");
        let line = format!("{key} = {toml_value}");
        let mut out: Vec<String> = Vec::new();
        let (mut in_table, mut found, mut done) = (false, false, false);
        for l in text.lines() {
            if l.starts_with('[') {
                if in_table && !done {
                    out.push(line.clone());
                    done = true;
                }
                in_table = l.trim() == header;
                found |= in_table;
            } else if in_table && l.starts_with(&format!("{key} = ")) {
                continue;
            }
            out.push(l.to_string());
        }
        if in_table && !done {
            out.push(line.clone());
        } else if !found {
            out.extend([String::new(), header, line]);
        }
        fs::write(&path, out.join("\n") + "\n").expect("write policy");
    }

    /// The last decision-log record of `container` in pod `pod`.
    pub fn record(&self, pod: &str, container: &str) -> Value {
        let all = self.decisions();
        all.iter()
            .rev()
            .find(|d| d["pod"] == pod && d["container"] == container)
            .cloned()
            .unwrap_or_else(|| panic!("no decision-log record for {pod}/{container}: {all:#?}"))
    }

    /// Decision-log records (one JSON object per line).
    pub fn decisions(&self) -> Vec<Value> {
        fs::read_to_string(self.var("PSS_GUARD_DECISION_LOG"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("decision log line {l:?}: {e}"))
            })
            .collect()
    }

    /// Captured specs of a container (see tests/containerd/capture-hook.py).
    pub fn capture(&self, container_id: &str) -> Option<(PathBuf, Option<PathBuf>)> {
        let dir = self.var("CAPTURE_DIR").join(container_id);
        let config = dir.join("config.json");
        let sandbox = dir.join("sandbox.json");
        config
            .is_file()
            .then(|| (config, sandbox.is_file().then_some(sandbox)))
    }

    /// The runtime's own log (containerd's, or CRI-O's on the crio stack).
    pub fn containerd_log(&self) -> String {
        let key = if self.is_crio() {
            "CRIO_LOG"
        } else {
            "CONTAINERD_LOG"
        };
        fs::read_to_string(self.var(key)).unwrap_or_default()
    }

    /// With UPDATE_CRI_FIXTURES=1, copy a container's captured specs into
    /// tests/fixtures/containerd-<version>/<case>/ with a meta.json for the unit tests.
    pub fn save_fixture(&self, case: &str, container_id: &str, meta: Value) {
        if std::env::var("UPDATE_CRI_FIXTURES").as_deref() != Ok("1") {
            return;
        }
        let Some((config, sandbox)) = self.capture(container_id) else {
            panic!("no captured spec for {case} ({container_id})");
        };
        let version = self.version("CONTAINERD_VERSION");
        let out = workspace_root().join(format!("tests/fixtures/containerd-{version}/{case}"));
        fs::create_dir_all(&out).expect("fixture dir");
        fs::copy(&config, out.join("config.json")).expect("copy config.json");
        if let Some(s) = sandbox {
            fs::copy(&s, out.join("sandbox.json")).expect("copy sandbox.json");
        }
        let mut meta = meta;
        if let Some(m) = meta.as_object_mut() {
            m.insert("runtime".into(), json!("containerd"));
            m.insert("runtime_version".into(), json!(version));
            m.insert("oci_runtime".into(), json!("runc"));
            m.insert(
                "oci_runtime_version".into(),
                json!(self.version("RUNC_VERSION")),
            );
            m.insert("container_id".into(), json!(container_id));
            m.insert(
                "node_paths".into(),
                json!({
                    "kubelet_root": self.kubelet_root(),
                    "containerd_root": self.var("CONTAINERD_ROOT"),
                    "containerd_state": self.var("CONTAINERD_STATE"),
                }),
            );
        }
        let text = serde_json::to_string_pretty(&meta).expect("meta json") + "\n";
        fs::write(out.join("meta.json"), text).expect("write meta.json");
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let mut cmd = Command::new("bash");
        cmd.arg(workspace_root().join("tests/containerd/node-down.sh"))
            .arg(&self.dir);
        if std::env::var("KEEP_TEST_NODE").as_deref() == Ok("1") {
            cmd.arg("--keep");
        }
        match cmd.status() {
            Ok(s) if s.success() => {}
            other => eprintln!("node-down.sh {} failed: {other:?}", self.dir.display()),
        }
    }
}

/// An RFC 3339 UTC time `ago` seconds before now, as the agent writes `written`.
pub fn written(ago: u64) -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
        - ago;
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{t}"), "+%Y-%m-%dT%H:%M:%S.000000Z"])
        .output()
        .expect("run date");
    assert!(out.status.success(), "date failed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The snapshot file of this node, and the policy pointing at it.
pub struct Snapshot {
    pub path: PathBuf,
}

impl Snapshot {
    pub fn on(node: &TestNode, stale_after_seconds: u64) -> Snapshot {
        let path = node.dir.join("cluster.json");
        let policy = node.var("PSS_GUARD_POLICY");
        let mut text = std::fs::read_to_string(&policy).expect("policy");
        text.push_str(&format!(
            "\n[snapshot]\npath = {:?}\nstale_after_seconds = {stale_after_seconds}\n",
            path.display().to_string()
        ));
        std::fs::write(&policy, text).expect("write policy");
        Snapshot { path }
    }

    /// Writes the agent's format (`pss_guard::snapshot`, schema 2): a header line with `written`
    /// and the RuntimeClasses' handlers, then one line per namespace (an unlabeled one with
    /// `{}`), sorted by name; temp file and rename, as the agent does. (This crate does not link
    /// pss-guard, so the few lines of the format are written out here.)
    pub fn write(&self, ago: u64, namespaces: Value) {
        let header = json!({"schema": 2, "written": written(ago),
                            "runtime_classes": {"gvisor": "runsc"}});
        let mut text = format!("{header}\n");
        // serde_json's map keeps keys sorted: the order the hook binary-searches in.
        for (name, labels) in namespaces.as_object().expect("namespaces object") {
            // The name comes first: the hook reads it before parsing the line.
            text.push_str(&format!(
                "{{\"namespace\":{},\"labels\":{labels}}}\n",
                json!(name)
            ));
        }
        self.write_raw(&text);
    }

    pub fn write_raw(&self, text: &str) {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text).expect("write snapshot");
        std::fs::rename(&tmp, &self.path).expect("rename snapshot");
    }
}
