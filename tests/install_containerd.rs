//! `pss-guard install` on a real containerd 1.6 node (tests/containerd/node-up.sh), driven like
//! kubelet by kubelet-sim: the installed config loads, every runc-based handler runs the hook,
//! 200 container starts succeed while the binary and the policy are replaced 50 times, and after
//! `uninstall --restart` containers start with no hook. Then `audit` finds the privileged pod
//! that started without the hook.
//!
//! Then, on the Debian-tree stacks (tests/containerd/stack.sh): containerd 1.7's and 2.x's own
//! `containerd config default` (version 2 and version 3), pointed at a test node, gets
//! `install --restart`, is loaded by that containerd with the installed base spec on the runc
//! handler, refuses a privileged pod, and after `uninstall --restart` is byte for byte what it
//! was and runs the privileged pod.

// Test helpers: a panic is how a failed step reports itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_pss-guard");
const PODS: usize = 50;
const CONTAINERS_PER_POD: usize = 4;
const UPGRADES: usize = 50;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// kubelet-sim is a binary of this workspace, built next to pss-guard.
fn kubelet_sim() -> PathBuf {
    let p = Path::new(BIN).with_file_name("kubelet-sim");
    assert!(
        p.is_file(),
        "{p:?} missing: build the workspace first (cargo build --workspace)"
    );
    p
}

struct Node {
    dir: PathBuf,
    env: BTreeMap<String, String>,
}

impl Node {
    fn up() -> Node {
        Node::up_on("bookworm")
    }

    fn up_on(stack: &str) -> Node {
        let dir = tempfile::Builder::new()
            .prefix("pss-guard-install-node.")
            .tempdir()
            .unwrap()
            .keep();
        let out = Command::new("bash")
            .arg(workspace().join("tests/containerd/node-up.sh"))
            .arg(&dir)
            .env("PSS_GUARD_BIN", BIN)
            .env("PSS_GUARD_STACK", stack)
            .env("PSS_GUARD_NODE_CONFIG", "default")
            .output()
            .unwrap();
        let mut node = Node {
            dir: dir.clone(),
            env: BTreeMap::new(),
        };
        assert!(
            out.status.success(),
            "node-up.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env = fs::read_to_string(dir.join("env"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        node.env = env;
        node
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn var(&self, k: &str) -> &str {
        &self.env[k]
    }

    fn installer(&self, verb: &str, extra: &[&str]) -> Output {
        installer(&self.dir, verb, extra)
    }

    fn run_pod(&self, yaml: &str, handler: Option<&str>) -> (i32, Value) {
        let f = tempfile::NamedTempFile::new_in(&self.dir).unwrap();
        fs::write(f.path(), yaml).unwrap();
        let mut cmd = Command::new(kubelet_sim());
        cmd.args(["run-pod", "--socket", self.var("CONTAINERD_SOCKET")])
            .args(["--kubelet-root", self.var("KUBELET_ROOT")]);
        if let Some(h) = handler {
            cmd.args(["--runtime-handler", h]);
        }
        let out = cmd.arg(f.path()).output().unwrap();
        let code = out.status.code().unwrap_or(-1);
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "kubelet-sim gave no result (exit {code}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (code, v)
    }

    fn stop_pod(&self, sandbox: &str) {
        let out = Command::new(kubelet_sim())
            .args(["stop-pod", "--socket", self.var("CONTAINERD_SOCKET")])
            .args(["--kubelet-root", self.var("KUBELET_ROOT"), sandbox])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn decisions(&self) -> Vec<Value> {
        fs::read_to_string(self.var("PSS_GUARD_DECISION_LOG"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(workspace().join("tests/containerd/node-down.sh"))
            .arg(&self.dir)
            .status();
    }
}

/// `pss-guard install|uninstall` with every path inside the node directory `dir`.
fn installer(dir: &Path, verb: &str, extra: &[&str]) -> Output {
    let p = |rel: &str| dir.join(rel).to_string_lossy().into_owned();
    let restart = format!("bash {}", p("restart.sh"));
    let mut args: Vec<String> = vec![
        verb.into(),
        "--only".into(),
        "containerd".into(),
        "--containerd-config".into(),
        p("config.toml"),
        "--spec-dir".into(),
        p("pss-guard/specs"),
        "--bin-path".into(),
        p("pss-guard/bin/pss-guard"),
        "--policy-path".into(),
        p("pss-guard/policy.toml"),
        "--restart-command".into(),
        restart,
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Command::new(BIN).args(&args).output().unwrap()
}

fn pod(name: &str, containers: usize, privileged: bool) -> String {
    let mut y = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  containers:\n"
    );
    for i in 0..containers {
        y.push_str(&format!(
            "  - name: c{i}\n    image: localhost/pss-guard/app:latest\n    securityContext: {{privileged: {privileged}}}\n"
        ));
    }
    y
}

fn started(run: &Value) -> usize {
    run["containers"]
        .as_array()
        .map_or(0, |cs| cs.iter().filter(|c| c["started"] == true).count())
}

fn errors(run: &Value) -> Vec<String> {
    run["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["error"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn ok(out: &Output) -> String {
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "failed: {}\n{s}",
        String::from_utf8_lossy(&out.stderr)
    );
    s
}

const RESTART_SH: &str = r#"#!/usr/bin/env bash
# Test stand-in for `systemctl restart containerd` on a node-up.sh node (of any stack: a
# Debian-tree stack's containerd runs in its tree, as node-up.sh starts it).
set -euo pipefail
node=$(dirname "$(readlink -f "$0")")
stack=$(cat "$node/stack")
pid=$(cat "$node/containerd.pid")
kill -TERM "$pid"
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if [[ $stack == bookworm ]]; then
	containerd --config "$node/config.toml" >>"$node/log/containerd.log" 2>&1 </dev/null &
else
	EXTRA_BINDS=$node ENTER_PROPAGATION=slave bash "@STACK_SH@" run "$stack" \
		containerd --config "$node/config.toml" >>"$node/log/containerd.log" 2>&1 </dev/null &
fi
pid=$!
echo $pid >"$node/containerd.pid"
for _ in $(seq 1 100); do
	if [[ $stack == bookworm ]]; then
		ctr --address "$node/containerd.sock" version >/dev/null 2>&1 && exit 0
	else
		nsenter -t "$pid" -m -r -w ctr --address "$node/containerd.sock" version >/dev/null 2>&1 && exit 0
	fi
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
echo "containerd did not come back" >&2
exit 1
"#;

fn restart_sh() -> String {
    RESTART_SH.replace(
        "@STACK_SH@",
        &workspace()
            .join("tests/containerd/stack.sh")
            .to_string_lossy(),
    )
}

#[test]
fn install_upgrade_under_load_uninstall_and_audit_on_containerd() {
    let node = Node::up();
    fs::write(node.p("restart.sh"), restart_sh()).unwrap();

    // Make the node look like a real one before pss-guard: its base spec has no pss-guard hook
    // (node-up.sh puts one there for its own tests; its capture hook stays).
    let base_path = node.p("base-spec.json");
    let mut base: Value = serde_json::from_slice(&fs::read(&base_path).unwrap()).unwrap();
    base["hooks"]
        .as_object_mut()
        .unwrap()
        .remove("createRuntime");
    fs::write(&base_path, serde_json::to_vec_pretty(&base).unwrap()).unwrap();
    let config_before = fs::read_to_string(node.p("config.toml")).unwrap();

    // Two binaries and two policies to alternate between during the upgrade run.
    let bin_a = PathBuf::from(BIN);
    let bin_b = node.p("alt/pss-guard-b");
    fs::create_dir_all(bin_b.parent().unwrap()).unwrap();
    let mut bytes = fs::read(&bin_a).unwrap();
    bytes.extend_from_slice(b"\0pss-guard upgrade test build B\0");
    fs::write(&bin_b, bytes).unwrap();
    Command::new("chmod")
        .args(["0755", bin_b.to_str().unwrap()])
        .status()
        .unwrap();
    let pol_a = PathBuf::from(node.var("PSS_GUARD_POLICY"));
    let pol_b = node.p("alt/policy-b.toml");
    let mut text = fs::read_to_string(&pol_a).unwrap();
    text = text.replacen(
        "enforce = \"baseline:latest\"",
        "enforce = \"baseline:latest\"\naudit = \"restricted:latest\"",
        1,
    );
    fs::write(&pol_b, text).unwrap();

    // --- install, with --restart through the test node's restart script --------------------
    let out = ok(&node.installer(
        "install",
        &[
            "--binary",
            bin_a.to_str().unwrap(),
            "--policy",
            pol_a.to_str().unwrap(),
            "--restart",
        ],
    ));
    assert!(out.contains("containerd: restarted"), "{out}");
    let dump = Command::new("containerd")
        .arg("--config")
        .arg(node.p("config.toml"))
        .args(["config", "dump"])
        .output()
        .unwrap();
    let dump = ok(&dump);
    for h in ["runc", "runc-passthrough", "runc-nohook"] {
        let want = format!(
            "base_runtime_spec = \"{}\"",
            node.p(&format!("pss-guard/specs/base-runtime-spec-{h}.json"))
                .display()
        );
        assert!(
            dump.contains(&want),
            "{h}: {want} not in containerd's config"
        );
    }

    // Every runc handler now refuses a privileged pod, including the one that had no hook.
    for (i, h) in ["runc", "runc-nohook"].iter().enumerate() {
        let (code, run) = node.run_pod(&pod(&format!("priv-{i}"), 1, true), Some(h));
        assert_eq!(code, 1, "{h}: {run:#}");
        let e = errors(&run).join("\n");
        assert!(
            e.contains("pss-guard: container \"c0\" in pod default/priv-"),
            "{e}"
        );
        assert!(e.contains("privileged"), "{e}");
    }

    // --- 200 starts while the binary and the policy are replaced 50 times ------------------
    let launched = Arc::new(AtomicUsize::new(0));
    let upgrader = {
        let launched = Arc::clone(&launched);
        let args: Vec<Vec<String>> = (0..UPGRADES)
            .map(|i| {
                let (b, p) = if i % 2 == 0 {
                    (&bin_b, &pol_b)
                } else {
                    (&bin_a, &pol_a)
                };
                vec![
                    "--binary".into(),
                    b.to_string_lossy().into_owned(),
                    "--policy".into(),
                    p.to_string_lossy().into_owned(),
                    "--replace-policy".into(),
                ]
            })
            .collect();
        let node_dir = node.dir.clone();
        std::thread::spawn(move || {
            let mut replaced = (0, 0);
            for (i, a) in args.iter().enumerate() {
                // One upgrade per pod, landing at varying points of its four starts.
                while launched.load(Ordering::SeqCst) <= i {
                    std::thread::sleep(Duration::from_millis(5));
                }
                std::thread::sleep(Duration::from_millis(40 * (i as u64 % 7)));
                let refs: Vec<&str> = a.iter().map(String::as_str).collect();
                let out = ok(&installer(&node_dir, "install", &refs));
                replaced.0 += usize::from(out.contains("pss-guard/bin/pss-guard: replaced"));
                replaced.1 += usize::from(out.contains("pss-guard/policy.toml: replaced"));
                // Nothing but binary and policy changes: no restart during the run.
                assert!(
                    out.contains("containerd") && !out.contains("restarted"),
                    "{out}"
                );
            }
            replaced
        })
    };
    let t0 = Instant::now();
    let mut total_started = 0;
    let mut failures = Vec::new();
    for i in 0..PODS {
        launched.fetch_add(1, Ordering::SeqCst);
        let (code, run) = node.run_pod(
            &pod(&format!("upgrade-{i}"), CONTAINERS_PER_POD, false),
            None,
        );
        total_started += started(&run);
        if code != 0 {
            failures.push(format!("upgrade-{i}: {}", errors(&run).join("; ")));
        }
        if let Some(sb) = run["sandbox_id"].as_str() {
            node.stop_pod(sb);
        }
    }
    let elapsed = t0.elapsed();
    let (bins, pols) = upgrader.join().expect("upgrader thread");
    eprintln!(
        "upgrade run: {} container starts in {:.1}s, {} failed, binary replaced {bins}x, policy replaced {pols}x",
        PODS * CONTAINERS_PER_POD,
        elapsed.as_secs_f64(),
        PODS * CONTAINERS_PER_POD - total_started
    );
    assert!(
        failures.is_empty(),
        "failed starts during upgrade: {failures:#?}"
    );
    assert_eq!(total_started, PODS * CONTAINERS_PER_POD);
    assert_eq!((bins, pols), (UPGRADES, UPGRADES));
    // Every start ran the hook: one log record per container, none an error; both policies
    // were in force at some point.
    let recs: Vec<Value> = node
        .decisions()
        .into_iter()
        .filter(|d| d["pod"].as_str().is_some_and(|p| p.starts_with("upgrade-")))
        .collect();
    assert_eq!(recs.len(), PODS * CONTAINERS_PER_POD, "decision records");
    assert!(
        recs.iter()
            .all(|d| d["decision"] == "allowed" || d["decision"] == "audit")
    );
    assert!(
        recs.iter().any(|d| d["decision"] == "audit"),
        "policy B never took effect"
    );
    assert!(
        recs.iter().any(|d| d["decision"] == "allowed"),
        "policy A never took effect"
    );

    // --- uninstall: config restored, containerd restarted, then the binary removed ---------
    let out = ok(&node.installer("uninstall", &["--restart"]));
    assert!(out.contains("restarted"), "{out}");
    assert_eq!(
        fs::read_to_string(node.p("config.toml")).unwrap(),
        config_before
    );
    assert!(!node.p("pss-guard/bin/pss-guard").exists(), "{out}");
    let before = node.decisions().len();
    for h in ["runc", "runc-nohook"] {
        let (code, run) = node.run_pod(&pod(&format!("after-{h}"), 1, true), Some(h));
        assert_eq!(
            code, 0,
            "{h}: privileged pod refused after uninstall: {run:#}"
        );
    }
    let (code, _) = node.run_pod(&pod("after-plain", 1, false), None);
    assert_eq!(code, 0);
    assert_eq!(node.decisions().len(), before, "a hook ran after uninstall");

    // --- audit: the privileged pods that started without the hook would be refused ---------
    let policy = node.var("PSS_GUARD_POLICY");
    let out = Command::new(BIN)
        .args(["audit", "--policy", policy])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{table}");
    let row = |pod: &str| {
        table
            .lines()
            .find(|l| l.contains(pod))
            .unwrap_or_else(|| panic!("{pod} not in audit table:\n{table}"))
            .to_owned()
    };
    assert!(row("after-runc ").starts_with("WOULD REFUSE"), "{table}");
    assert!(row("after-runc ").contains("privileged"), "{table}");
    assert!(row("after-plain").starts_with("allowed"), "{table}");
    let out = Command::new(BIN)
        .args(["audit", "--policy", policy, "--json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["summary"]["refused"], 2, "{v:#}");
    let c = v["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["pod"] == "after-runc-nohook")
        .unwrap();
    assert_eq!(c["decision"], "refused");
    assert_eq!(c["violations"][0]["check"], "privileged");
    assert_eq!(c["runtime"], "containerd");
}

/// A command of a Debian-tree stack's own runtimes (stack.sh run).
fn in_stack(stack: &str, args: &[&str]) -> String {
    in_stack_with(stack, args, None)
}

/// The same with a host directory bound at its own path inside the tree.
fn in_stack_with(stack: &str, args: &[&str], bind: Option<&Path>) -> String {
    let mut cmd = Command::new("bash");
    cmd.arg(workspace().join("tests/containerd/stack.sh"))
        .args(["run", stack])
        .args(args);
    if let Some(dir) = bind {
        cmd.env("EXTRA_BINDS", dir);
    }
    let out = cmd.output().unwrap();
    ok(&out)
}

/// Set `key` in `[section]` of a TOML text (section names compared with either quote style),
/// keeping the line's indentation; appended under the header when the section lacks it.
fn set_key(text: &str, section: &str, key: &str, value: &str) -> String {
    let norm = |h: &str| h.trim().replace('\'', "\"");
    let want = norm(&format!("[{section}]"));
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let is_header = |l: &String| l.trim_start().starts_with('[');
    // Top-level keys: before the first header (`start` is then one line above line 0).
    let (first, end) = if section.is_empty() {
        (0, lines.iter().position(is_header).unwrap_or(lines.len()))
    } else {
        let start = lines
            .iter()
            .position(|l| norm(l) == want)
            .unwrap_or_else(|| panic!("no section [{section}] in the default config"));
        let end = lines[start + 1..]
            .iter()
            .position(is_header)
            .map_or(lines.len(), |i| start + 1 + i);
        (start + 1, end)
    };
    let found = (first..end).find(|&i| {
        let t = lines[i].trim_start();
        t.strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    });
    match found {
        Some(i) => {
            let indent: String = lines[i].chars().take_while(|c| c.is_whitespace()).collect();
            lines[i] = format!("{indent}{key} = {value}");
        }
        None => lines.insert(first, format!("  {key} = {value}")),
    }
    lines.join("\n") + "\n"
}

/// containerd's own default config of a stack, pointed at the test node: its root, state,
/// sockets, CNI, the native snapshotter, the node's pause image, runc, and the two settings
/// this VM needs (restrict_oom_score_adj, netns mounts under the state dir).
fn node_config_from_default(stack: &str, node: &Node) -> String {
    let mut c = in_stack(stack, &["containerd", "config", "default"]);
    let q = |s: &str| format!("{s:?}");
    let runc = in_stack(stack, &["sh", "-c", "command -v runc"])
        .trim()
        .to_owned();
    c = set_key(&c, "", "root", &q(node.var("CONTAINERD_ROOT")));
    c = set_key(&c, "", "state", &q(node.var("CONTAINERD_STATE")));
    let sock = node.var("CONTAINERD_SOCKET").to_owned();
    c = set_key(&c, "grpc", "address", &q(&sock));
    c = set_key(&c, "ttrpc", "address", &q(&format!("{sock}.ttrpc")));
    let opt = node.p("opt").to_string_lossy().into_owned();
    let cni = node.p("cni").to_string_lossy().into_owned();
    c = set_key(
        &c,
        "plugins.'io.containerd.internal.v1.opt'",
        "path",
        &q(&opt),
    );
    if c.starts_with("version = 3") || c.contains("\nversion = 3") {
        let rt = "plugins.'io.containerd.cri.v1.runtime'";
        let img = "plugins.'io.containerd.cri.v1.images'";
        c = set_key(&c, img, "snapshotter", &q("native"));
        c = set_key(
            &c,
            &format!("{img}.pinned_images"),
            "sandbox",
            &q(node.var("PAUSE_IMAGE")),
        );
        c = set_key(&c, rt, "restrict_oom_score_adj", "true");
        c = set_key(&c, rt, "netns_mounts_under_state_dir", "true");
        c = set_key(
            &c,
            &format!("{rt}.containerd.runtimes.runc.options"),
            "BinaryName",
            &q(&runc),
        );
        c = set_key(&c, &format!("{rt}.cni"), "conf_dir", &q(&cni));
        c = set_key(&c, &format!("{rt}.cni"), "bin_dirs", "[\"/usr/lib/cni\"]");
    } else {
        let cri = "plugins.'io.containerd.grpc.v1.cri'";
        c = set_key(&c, cri, "sandbox_image", &q(node.var("PAUSE_IMAGE")));
        c = set_key(&c, cri, "restrict_oom_score_adj", "true");
        c = set_key(&c, cri, "netns_mounts_under_state_dir", "true");
        c = set_key(
            &c,
            &format!("{cri}.containerd"),
            "snapshotter",
            &q("native"),
        );
        c = set_key(
            &c,
            &format!("{cri}.containerd.runtimes.runc.options"),
            "BinaryName",
            &q(&runc),
        );
        c = set_key(&c, &format!("{cri}.cni"), "conf_dir", &q(&cni));
        c = set_key(&c, &format!("{cri}.cni"), "bin_dir", &q("/usr/lib/cni"));
    }
    c
}

fn install_on_default_config(stack: &str, config_version: i64) {
    let node = Node::up_on(stack);
    assert_eq!(node.var("STACK"), stack);
    fs::write(node.p("restart.sh"), restart_sh()).unwrap();
    let restart = || {
        let out = Command::new("bash")
            .arg(node.p("restart.sh"))
            .output()
            .unwrap();
        ok(&out);
    };
    let config = node_config_from_default(stack, &node);
    assert!(
        config.contains(&format!("version = {config_version}")),
        "{stack}: containerd config default is not version {config_version}"
    );
    fs::write(node.p("config.toml"), &config).unwrap();
    restart();
    // The default config, with no hook anywhere, runs a privileged pod: a working node.
    let (code, run) = node.run_pod(&pod("before", 1, true), None);
    assert_eq!(
        code, 0,
        "{stack}: default config does not run pods: {run:#}"
    );

    let policy = node.var("PSS_GUARD_POLICY").to_owned();
    let out = ok(&node.installer(
        "install",
        &["--binary", BIN, "--policy", &policy, "--restart"],
    ));
    assert!(out.contains("containerd: restarted"), "{out}");
    let installed = fs::read_to_string(node.p("config.toml")).unwrap();
    assert!(
        installed.contains(&format!("version = {config_version}")),
        "{stack}: the installer changed the config version:\n{installed}"
    );
    // What this containerd itself loaded: the runc handler's base spec is the installed one.
    let dump = in_stack_with(
        stack,
        &[
            "containerd",
            "--config",
            node.p("config.toml").to_str().unwrap(),
            "config",
            "dump",
        ],
        Some(&node.dir),
    );
    let spec = node.p("pss-guard/specs/base-runtime-spec-runc.json");
    let want = format!("base_runtime_spec = '{}'", spec.display());
    let want2 = format!("base_runtime_spec = \"{}\"", spec.display());
    assert!(
        dump.contains(&want) || dump.contains(&want2),
        "{stack}: {want} not in containerd's own config dump:\n{dump}"
    );
    let (code, run) = node.run_pod(&pod("priv", 1, true), None);
    assert_eq!(code, 1, "{stack}: privileged pod not refused: {run:#}");
    let e = errors(&run).join("\n");
    assert!(
        e.contains("pss-guard: container \"c0\" in pod default/priv violates PodSecurity")
            && e.contains("privileged"),
        "{e}"
    );
    let (code, run) = node.run_pod(&pod("plain", 1, false), None);
    assert_eq!(code, 0, "{stack}: plain pod refused: {run:#}");

    let out = ok(&node.installer("uninstall", &["--restart"]));
    assert!(out.contains("restarted"), "{out}");
    // The same TOML document as before install. (Not always byte for byte: containerd 2.x's
    // default writes literal strings, and an emptied base_runtime_spec comes back as "" where
    // the default had ''.)
    let restored = fs::read_to_string(node.p("config.toml")).unwrap();
    let parse = |t: &str| t.parse::<toml::Table>().expect("config parses as TOML");
    assert_eq!(
        parse(&restored),
        parse(&config),
        "{stack}: uninstall did not restore the config"
    );
    if restored != config {
        let differs: Vec<String> = config
            .lines()
            .zip(restored.lines())
            .filter(|(a, b)| a != b)
            .map(|(a, b)| format!("{a:?} -> {b:?}"))
            .collect();
        eprintln!(
            "{stack}: uninstall restored the same TOML, not the same bytes: {}",
            differs.join("; ")
        );
    }
    let before = node.decisions().len();
    let (code, run) = node.run_pod(&pod("after", 1, true), None);
    assert_eq!(
        code, 0,
        "{stack}: privileged pod refused after uninstall: {run:#}"
    );
    assert_eq!(node.decisions().len(), before, "a hook ran after uninstall");
}

#[test]
fn install_uninstall_on_containerd_2_default_config_v3() {
    install_on_default_config("sid", 3);
}

#[test]
fn install_uninstall_on_containerd_1_7_default_config_v2() {
    install_on_default_config("trixie", 2);
}
