//! Reliability through the built binary (issue 6): concurrent hooks sharing one decision log,
//! the log's permissions and a planted symlink, a read-only or full log disk, a policy file
//! deleted on a running node, and the namespaces that always start. Every run is time-bounded:
//! a hook must never hang, whatever breaks around it.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(15);

fn stderr_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn privileged() -> Value {
    let mut s = base_spec(&["/bin/true"]);
    make_privileged(&mut s);
    s
}

fn hook(node: &Node, bundle: &Path, id: &str, runtime: &str) -> Output {
    run_bounded(
        node.hook_command(&["--runtime", runtime]),
        Stdin::Bytes(state(id, bundle)),
        LIMIT,
    )
}

#[test]
fn sixty_four_concurrent_hooks_write_sixty_four_whole_records() {
    let node = Node::new("");
    let ok = node.bundle("ok", &base_spec(&["/bin/true"]));
    let bad = node.bundle("bad", &privileged());
    // All 64 start before any is waited for; half refused (long records), half allowed.
    let children: Vec<_> = (0..64)
        .map(|i| {
            let (bundle, id) = if i % 2 == 0 {
                (&ok, format!("ok-{i:02}"))
            } else {
                (&bad, format!("bad-{i:02}"))
            };
            let cmd = node.hook_command(&["--runtime", "none"]);
            let input = state(&id, bundle);
            std::thread::spawn(move || (id, run_bounded(cmd, Stdin::Bytes(input), LIMIT)))
        })
        .collect();
    for c in children {
        let (id, o) = c.join().unwrap();
        let want = if id.starts_with("ok") { 0 } else { 1 };
        assert_eq!(o.status.code(), Some(want), "{id}: {:?}", stderr_lines(&o));
    }
    let text = std::fs::read_to_string(node.log_path()).unwrap();
    assert!(text.ends_with('\n'));
    let mut ids: Vec<String> = text
        .lines()
        .map(|l| {
            let r: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"));
            let id = r["container_id"].as_str().unwrap().to_owned();
            let want = if id.starts_with("ok") {
                "allowed"
            } else {
                "refused"
            };
            assert_eq!(r["decision"], want, "{r}");
            id
        })
        .collect();
    assert_eq!(ids.len(), 64, "one line per decision");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 64, "no record lost or duplicated");
}

#[test]
fn log_is_created_0640_in_a_private_directory_whatever_the_umask() {
    let node = Node::new("");
    let ok = node.bundle("ok", &base_spec(&["/bin/true"]));
    // The runtime may start the hook with umask 0; the hook sets its own.
    let hook = node.hook_command(&["--runtime", "none"]);
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.args(["-c", "umask 000; exec \"$@\"", "sh"])
        .arg(hook.get_program())
        .args(hook.get_args())
        .env_clear();
    let o = run_bounded(cmd, Stdin::Bytes(state("ok", &ok)), LIMIT);
    assert_eq!(o.status.code(), Some(0), "{:?}", stderr_lines(&o));
    let f = std::fs::metadata(node.log_path()).unwrap();
    assert_eq!(f.permissions().mode() & 0o777, 0o640);
    // Owned by whoever runs the hook (root on a node): /proc/self belongs to our euid.
    assert_eq!(f.uid(), std::fs::metadata("/proc/self").unwrap().uid());
    let d = std::fs::metadata(node.log_path().parent().unwrap()).unwrap();
    assert_eq!(
        d.permissions().mode() & 0o002,
        0,
        "directory world-writable"
    );
    assert_eq!(d.permissions().mode() & 0o777, 0o750);
    assert_eq!(node.records().len(), 1);
}

#[test]
fn symlink_planted_at_the_log_path_is_not_followed_and_decisions_stand() {
    let node = Node::new("");
    let victim = node.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::fs::create_dir_all(node.log_path().parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&victim, node.log_path()).unwrap();

    let ok = node.bundle("ok", &base_spec(&["/bin/true"]));
    let o = hook(&node, &ok, "ok", "none");
    assert_eq!(o.status.code(), Some(0));
    let lines = stderr_lines(&o);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("pss-guard: decision log not written: opening decision log")
            && lines[0].contains("symbolic links"),
        "{lines:?}"
    );

    let bad = node.bundle("bad", &privileged());
    let o = hook(&node, &bad, "bad", "none");
    assert_eq!(o.status.code(), Some(1));
    let lines = stderr_lines(&o);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("violates PodSecurity"), "{lines:?}");
    assert!(lines[0].contains("(decision log not written:"), "{lines:?}");

    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(
        std::fs::symlink_metadata(node.log_path())
            .unwrap()
            .is_symlink()
    );
}

/// Runs the hook for `bundle` inside a private mount namespace prepared by `setup`.
fn hook_in_ns(node: &Node, setup: &str, bundle: &Path, id: &str) -> Output {
    let cmd = in_mount_namespace(setup, &node.hook_command(&["--runtime", "none"]));
    run_bounded(cmd, Stdin::Bytes(state(id, bundle)), LIMIT)
}

/// The decision is enforced and the log failure reported on the one stderr line.
fn assert_enforced_without_log(node: &Node, setup: &str, cause: &str) {
    let ok = node.bundle("ok", &base_spec(&["/bin/true"]));
    let bad = node.bundle("bad", &privileged());

    let o = hook_in_ns(node, setup, &ok, "ok");
    let lines = stderr_lines(&o);
    assert_eq!(o.status.code(), Some(0), "{lines:?}");
    assert!(o.stdout.is_empty());
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("pss-guard: decision log not written: ") && lines[0].contains(cause),
        "{lines:?}"
    );

    let o = hook_in_ns(node, setup, &bad, "bad");
    let lines = stderr_lines(&o);
    assert_eq!(o.status.code(), Some(1), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("pss-guard: container \"bad\" violates PodSecurity"),
        "{lines:?}"
    );
    assert!(
        lines[0].ends_with(')') && lines[0].contains("(decision log not written: "),
        "{lines:?}"
    );
    assert!(lines[0].contains(cause), "{lines:?}");
}

#[test]
fn read_only_log_directory_still_enforces() {
    let node = Node::new("");
    let dir = node.log_path().parent().unwrap().to_owned();
    std::fs::create_dir_all(&dir).unwrap();
    let setup = format!(
        "mount --bind '{d}' '{d}'\nmount -o remount,bind,ro '{d}'",
        d = dir.display()
    );
    assert_enforced_without_log(&node, &setup, "Read-only file system");
    assert!(!node.log_path().exists());
}

#[test]
fn full_log_disk_still_enforces() {
    let node = Node::new("");
    let dir = node.log_path().parent().unwrap().to_owned();
    std::fs::create_dir_all(&dir).unwrap();
    let setup = format!(
        "mount -t tmpfs -o size=16k tmpfs '{d}'\nhead -c 1048576 /dev/zero > '{d}/fill' 2>/dev/null || true",
        d = dir.display()
    );
    assert_enforced_without_log(&node, &setup, "No space left on device");
}

/// The built-in default logs to /var/log/pss-guard/: bind a temp dir over /var/log.
fn hook_with_private_var_log(policy: &Path, bundle: &Path, id: &str, varlog: &Path) -> Output {
    let setup = format!("mount --bind '{}' /var/log", varlog.display());
    let cmd = in_mount_namespace(&setup, &hook_command(policy, &["--runtime", "none"]));
    run_bounded(cmd, Stdin::Bytes(state(id, bundle)), LIMIT)
}

#[test]
fn policy_file_deleted_on_a_running_node_keeps_enforcing_the_default() {
    // The node's policy is stricter than the default; once it is gone, baseline still holds.
    let node = Node::new("");
    write_policy(&node, "enforce = \"restricted:latest\"\n");
    let ok = node.bundle("ok", &base_spec(&["/bin/true"]));
    let bad = node.bundle("bad", &privileged());
    let o = hook(&node, &ok, "ok", "none");
    assert_eq!(o.status.code(), Some(1), "restricted refuses uid 0");
    assert_eq!(node.records()[0]["policy"], "restricted:latest");

    std::fs::remove_file(node.policy_path()).unwrap();
    let varlog = tempfile::tempdir().unwrap();
    let o = hook_with_private_var_log(&node.policy_path(), &ok, "ok", varlog.path());
    assert_eq!(o.status.code(), Some(0), "{:?}", stderr_lines(&o));
    let o = hook_with_private_var_log(&node.policy_path(), &bad, "bad", varlog.path());
    assert_eq!(o.status.code(), Some(1), "{:?}", stderr_lines(&o));
    assert!(stderr_lines(&o)[0].contains("privileged"));

    let text = std::fs::read_to_string(varlog.path().join("pss-guard/decisions.log")).unwrap();
    let recs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 2);
    for (r, want) in recs.iter().zip(["allowed", "refused"]) {
        assert_eq!(r["decision"], want);
        assert_eq!(r["policy"], "baseline:latest");
        let pe = r["policy_error"].as_str().unwrap();
        assert!(
            pe.contains("cannot be read") && pe.contains("using the built-in default"),
            "{pe}"
        );
    }
}

/// Replaces the node's policy with `body` plus its log section (a Node's policy already sets
/// `enforce`, and TOML refuses a key twice).
fn write_policy(node: &Node, body: &str) {
    let text = format!("{body}[log]\npath = {:?}\n", node.log_path());
    std::fs::write(node.policy_path(), text).expect("write policy");
}

/// A privileged app container of pod `<ns>/web` in a containerd layout under the node.
fn pod(node: &Node, ns: &str, spec: Value) -> std::path::PathBuf {
    let mut spec = spec;
    spec["annotations"] = cri_annotations(ns, &format!("sb-{ns}"));
    let root = node.path().join("k8s.io");
    containerd_pod(
        &root,
        &format!("c-{ns}"),
        &format!("sb-{ns}"),
        Some(&sandbox_spec()),
        &spec,
    )
}

#[test]
fn system_namespace_always_starts_and_pss_guards_own_only_where_the_policy_names_it() {
    let node = Node::new("");
    // The policy names no exempt namespace, enforces restricted, and the pods are privileged.
    write_policy(
        &node,
        "enforce = \"restricted:latest\"\n[exempt]\nnamespaces = []\n",
    );
    let b = pod(&node, "kube-system", privileged());
    let o = hook(&node, &b, "c1", "containerd");
    assert_eq!(o.status.code(), Some(0), "{:?}", stderr_lines(&o));
    assert!(o.stderr.is_empty());
    // Even a spec that cannot be evaluated (an unknown capability name) starts there.
    let mut odd = privileged();
    odd["process"]["capabilities"]["bounding"]
        .as_array_mut()
        .unwrap()
        .push(json!("cap_sys_admin"));
    let b = pod(&node, "kube-system", odd);
    assert_eq!(hook(&node, &b, "c1", "containerd").status.code(), Some(0));
    // A namespace called pss-guard is nobody's in particular until the policy says the
    // DaemonSet runs there: anyone who may create it would otherwise be exempt.
    let b = pod(&node, "pss-guard", privileged());
    assert_eq!(hook(&node, &b, "c1", "containerd").status.code(), Some(1));
    // The control: the same privileged pod anywhere else is refused.
    let b = pod(&node, "default", privileged());
    assert_eq!(hook(&node, &b, "c1", "containerd").status.code(), Some(1));
    // Named in the policy (as the shipped manifests do), pss-guard's own pods start.
    write_policy(
        &node,
        "enforce = \"restricted:latest\"\n[exempt]\nnamespaces = [\"pss-guard\"]\n",
    );
    let b = pod(&node, "pss-guard", privileged());
    assert_eq!(hook(&node, &b, "c1", "containerd").status.code(), Some(0));

    let recs = node.records();
    let got: Vec<(&str, &str)> = recs
        .iter()
        .map(|r| {
            (
                r["namespace"].as_str().unwrap(),
                r["decision"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("kube-system", "exempt"),
            ("kube-system", "exempt"),
            ("pss-guard", "refused"),
            ("default", "refused"),
            ("pss-guard", "exempt"),
        ]
    );
    assert!(recs[1]["error"].as_str().unwrap().contains("cap_sys_admin"));
    // The policy file was in force, not the built-in default.
    assert_eq!(recs[3]["policy"], "restricted:latest");
    assert!(recs[3].get("policy_error").is_none(), "{}", recs[3]);
}

#[test]
fn system_namespaces_start_under_a_broken_policy_file_too() {
    let node = Node::new("");
    std::fs::write(node.policy_path(), "enforce = \n").unwrap();
    let b = pod(&node, "kube-system", privileged());
    let varlog = tempfile::tempdir().unwrap();
    let setup = format!("mount --bind '{}' /var/log", varlog.path().display());
    let cmd = in_mount_namespace(
        &setup,
        &hook_command(&node.policy_path(), &["--runtime", "containerd"]),
    );
    let o = run_bounded(cmd, Stdin::Bytes(state("c1", &b)), LIMIT);
    assert_eq!(o.status.code(), Some(0), "{:?}", stderr_lines(&o));
    let text = std::fs::read_to_string(varlog.path().join("pss-guard/decisions.log")).unwrap();
    let r: Value = serde_json::from_str(text.trim_end()).unwrap();
    assert_eq!(r["decision"], "exempt");
    assert!(
        r["policy_error"]
            .as_str()
            .unwrap()
            .contains("not valid TOML")
    );
}

#[test]
fn closed_stderr_changes_no_decision() {
    // A runtime that stops reading the hook's stderr: writing the line fails with EPIPE, and the
    // exit code must still be the decision's (not a panic's 101).
    let node = Node::new("");
    let ok = node.bundle("ok", &base_spec(&["/bin/true"]));
    let bad = node.bundle("bad", &privileged());
    // A planted symlink makes even the allowed decision write a line (the log error).
    std::fs::create_dir_all(node.log_path().parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("/nonexistent", node.log_path()).unwrap();
    for (bundle, id, want) in [(&ok, "ok", 0), (&bad, "bad", 1)] {
        let (r, w) = nix::unistd::pipe().unwrap();
        drop(r);
        let mut cmd = node.hook_command(&["--runtime", "none"]);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(w));
        let mut child = cmd.spawn().unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(&state(id, bundle)).unwrap();
        }
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(started.elapsed() < LIMIT, "{id}: hook hangs");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(status.code(), Some(want), "{id}");
    }
}
