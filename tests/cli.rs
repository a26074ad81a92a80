//! The hook contract through the built binary: the state on stdin, an empty environment, exit
//! codes 0/1/2, nothing on stdout, one line on stderr, one log record per decision. And the
//! `check` command's output.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use serde_json::{Value, json};

fn stderr_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn assert_contract(o: &Output, code: i32) -> String {
    assert_eq!(o.status.code(), Some(code), "stderr: {:?}", stderr_lines(o));
    assert!(
        o.stdout.is_empty(),
        "stdout must stay empty: {:?}",
        o.stdout
    );
    let lines = stderr_lines(o);
    if code == 0 {
        assert!(lines.is_empty(), "allowed must print nothing: {lines:?}");
        String::new()
    } else {
        assert_eq!(lines.len(), 1, "exactly one stderr line: {lines:?}");
        assert!(lines[0].starts_with("pss-guard: "), "{lines:?}");
        lines[0].clone()
    }
}

/// containerd's annotations for an app container of pod `ns/web`.
fn containerd_annotations(ns: &str, sandbox_id: &str) -> Value {
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

#[test]
fn allowed_refused_and_error_follow_the_contract() {
    let node = Node::new("");
    let ok = node.bundle("ok", &base_spec(&["/bin/true"]));
    assert_contract(&node.run_hook(&state("ok", &ok), &["--runtime", "none"]), 0);

    let mut spec = base_spec(&["/bin/true"]);
    make_privileged(&mut spec);
    let bad = node.bundle("bad", &spec);
    let line = assert_contract(
        &node.run_hook(&state("bad", &bad), &["--runtime", "none"]),
        1,
    );
    assert_eq!(
        line,
        "pss-guard: container \"bad\" violates PodSecurity \"baseline:latest\": privileged (container \"bad\" must not set securityContext.privileged=true)"
    );

    let line = assert_contract(&node.run_hook(b"", &[]), 2);
    assert!(line.contains("could not evaluate"), "{line}");
    assert!(line.contains("parsing the container state"), "{line}");

    let recs = node.records();
    let kinds: Vec<&str> = recs
        .iter()
        .map(|r| r["decision"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["allowed", "refused", "error"]);
    assert_eq!(recs[1]["violations"][0]["check"], "privileged");
    assert_eq!(recs[1]["violations"][0]["reason"], "privileged");
    assert!(recs[2]["error"].as_str().unwrap().contains("parsing"));
    // Every record of an evaluated container carries each check's outcome, grouped.
    let ids = |r: &Value, group: &str| -> Vec<String> {
        r["checks"][group]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };
    assert!(ids(&recs[0], "fail").is_empty(), "{}", recs[0]);
    assert!(ids(&recs[0], "pass").contains(&"privileged".to_owned()));
    assert!(
        recs[0]["checks"]["not_observable"]["hostPorts"]
            .as_str()
            .is_some_and(|why| why.contains("port mappings")),
        "{}",
        recs[0]
    );
    assert_eq!(ids(&recs[1], "fail"), ["privileged"]);
    // What privileged implies is covered by it, not failed twice.
    assert_eq!(
        recs[1]["checks"]["covered"]["capabilities_baseline"],
        "privileged"
    );
    let total = |r: &Value| {
        ids(r, "pass").len()
            + ids(r, "fail").len()
            + r["checks"]["not_observable"]
                .as_object()
                .map_or(0, |o| o.len())
            + r["checks"]["covered"].as_object().map_or(0, |o| o.len())
    };
    assert_eq!(
        total(&recs[0]),
        12,
        "every baseline check once: {}",
        recs[0]
    );
    assert_eq!(total(&recs[1]), 12, "{}", recs[1]);
    assert!(recs[2].get("checks").is_none(), "nothing was evaluated");
}

#[test]
fn bad_hook_arguments_refuse_and_are_logged() {
    let node = Node::new("");
    let b = node.bundle("ok", &base_spec(&["/bin/true"]));
    for args in [&["--runtime", "docker"][..], &["--bogus"], &["--handler"]] {
        let line = assert_contract(&node.run_hook(&state("ok", &b), args), 2);
        assert!(line.contains("bad hook arguments"), "{args:?}: {line}");
    }
    let recs = node.records();
    assert_eq!(recs.len(), 3, "{recs:?}");
    assert!(recs.iter().all(|r| r["decision"] == "error"), "{recs:?}");
}

/// `pss-guard ARGS` with an empty environment.
fn cli(args: &[&str]) -> Output {
    std::process::Command::new(BIN)
        .args(args)
        .env_clear()
        .output()
        .expect("run pss-guard")
}

#[test]
fn help_and_version_answer_and_usage_errors_exit_64() {
    for args in [&["--help"][..], &["-h"], &["help"]] {
        let o = cli(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        let out = String::from_utf8_lossy(&o.stdout);
        for cmd in ["hook", "check", "install", "uninstall", "audit", "version"] {
            assert!(
                out.contains(&format!("pss-guard {cmd}")),
                "{args:?} lists {cmd}: {out}"
            );
        }
    }
    for cmd in ["check", "install", "uninstall", "audit", "version"] {
        for args in [vec![cmd, "--help"], vec![cmd, "-h"], vec!["help", cmd]] {
            let o = cli(&args);
            assert_eq!(o.status.code(), Some(0), "{args:?}");
            let out = String::from_utf8_lossy(&o.stdout);
            assert!(
                out.starts_with(&format!("usage:\npss-guard {cmd}")),
                "{args:?}: {out}"
            );
            assert!(
                !out.contains("pss-guard hook"),
                "{args:?} shows only its own usage"
            );
        }
    }
    let version = format!("pss-guard {}\n", env!("CARGO_PKG_VERSION"));
    for args in [&["--version"][..], &["-V"], &["version"]] {
        let o = cli(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&o.stdout), version, "{args:?}");
    }
    // The command line itself wrong: 64, never 2 ("could not evaluate"), with a pointer to help.
    for (args, hint) in [
        (&[][..], "pss-guard --help"),
        (&["frobnicate"], "pss-guard --help"),
        (&["check"], "pss-guard check --help"),
        (&["check", "x", "--bogus"], "pss-guard check --help"),
        (
            &["check", "x", "--level", "privileged-ish"],
            "pss-guard check --help",
        ),
        (&["audit", "--version", "v2"], "pss-guard audit --help"),
        (&["install", "--only", "docker"], "pss-guard install --help"),
        (&["version", "extra"], "pss-guard version --help"),
        (&["help", "nope"], "pss-guard --help"),
    ] {
        let o = cli(args);
        assert_eq!(o.status.code(), Some(64), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.starts_with("pss-guard: "), "{args:?}: {err}");
        assert!(err.contains(hint), "{args:?}: {err}");
        assert!(o.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn hook_help_refuses_and_writes_no_record() {
    // A hook entry written with --help must never let a container through, and is no
    // container's decision: usage, a non-zero exit, nothing in the log.
    let node = Node::new("");
    let b = node.bundle("ok", &base_spec(&["/bin/true"]));
    for args in [&["--help"][..], &["-h"], &["--runtime", "none", "--help"]] {
        let o = node.run_hook(&state("ok", &b), args);
        assert_eq!(o.status.code(), Some(64), "{args:?}");
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("pss-guard hook"),
            "{args:?}"
        );
    }
    assert!(!node.log_path().exists(), "{:?}", node.records());
}

#[test]
fn unknown_capability_names_fail_closed() {
    let node = Node::new("");
    for (i, name) in [
        "cap_sys_admin",
        "SYS_ADMIN",
        "CAP_CAP_NOPE",
        "21",
        "CAP_NOPE",
    ]
    .iter()
    .enumerate()
    {
        let mut spec = base_spec(&["/bin/true"]);
        spec["process"]["capabilities"]["bounding"]
            .as_array_mut()
            .unwrap()
            .push(json!(name));
        let b = node.bundle(&format!("cap{i}"), &spec);
        let line = assert_contract(&node.run_hook(&state("c", &b), &["--runtime", "none"]), 2);
        assert!(line.contains("unknown capability name"), "{name}: {line}");
    }
}

/// `capabilities.add: ["CAP_CHOWN"]` reaches the spec as `CAP_CAP_CHOWN` (containerd prefixes
/// every name); runc ignores it, admission refuses it, and so does pss-guard, by name.
#[test]
fn doubly_prefixed_capability_is_refused_as_the_pod_wrote_it() {
    let node = Node::new("");
    let mut spec = base_spec(&["/bin/true"]);
    for set in ["bounding", "effective", "permitted"] {
        spec["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_CAP_CHOWN"));
    }
    let b = node.bundle("prefixed", &spec);
    let line = assert_contract(&node.run_hook(&state("c", &b), &["--runtime", "none"]), 1);
    assert!(
        line.ends_with("non-default capabilities (container \"c\" must not include \"CAP_CHOWN\" in securityContext.capabilities.add)"),
        "{line}"
    );
}

#[test]
fn exempt_namespace_needs_the_runtime_the_hook_was_installed_for() {
    let node = Node::new("");
    // A containerd layout: <state>/k8s.io/<sandbox>/config.json beside the container's bundle.
    let root = node.path().join("k8s.io");
    let mut sandbox = base_spec(&["/pause"]);
    sandbox["annotations"] = json!({"io.kubernetes.cri.container-type": "sandbox"});
    std::fs::create_dir_all(root.join("sb1")).unwrap();
    write_json(&root.join("sb1/config.json"), &sandbox);

    let mut spec = base_spec(&["/bin/true"]);
    make_privileged(&mut spec);
    spec["annotations"] = containerd_annotations("kube-system", "sb1");
    let b = root.join("c1");
    std::fs::create_dir_all(&b).unwrap();
    write_json(&b.join("config.json"), &spec);

    assert_contract(
        &node.run_hook(&state("c1", &b), &["--runtime", "containerd"]),
        0,
    );
    // The same annotations on a runtime that does not set them (podman, plain runc) are
    // anybody's to write: no exemption.
    let line = assert_contract(&node.run_hook(&state("c1", &b), &["--runtime", "none"]), 1);
    assert!(line.contains("privileged"), "{line}");

    let recs = node.records();
    assert_eq!(recs[0]["decision"], "exempt");
    assert_eq!(recs[0]["namespace"], "kube-system");
    assert_eq!(recs[0]["exempt"], "namespace \"kube-system\"");
    assert_eq!(
        recs[0]["violations"][0]["check"], "privileged",
        "{}",
        recs[0]
    );
    assert_eq!(recs[1]["decision"], "refused");
}

/// Host namespaces as containerd shows them: paths into the sandbox's namespaces, decided by
/// inode, and pod sysctls that exist only in the sandbox spec.
#[test]
fn containerd_layout_host_network_by_inode_and_sysctls_from_sandbox() {
    let node = Node::new("");
    let root = node.path().join("k8s.io");
    // A process in a private network namespace stands in for a pause container.
    let mut pause = Command::new("unshare")
        .args(["--net", "--ipc", "sleep", "30"])
        .spawn()
        .expect("unshare (util-linux)");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let private = format!("/proc/{}/ns", pause.id());
    let host = format!("/proc/{}/ns", std::process::id());

    let mut sandbox = base_spec(&["/pause"]);
    sandbox["linux"]["sysctl"] = json!({"net.ipv4.tcp_syncookies": "1"});
    std::fs::create_dir_all(root.join("sb1")).unwrap();
    write_json(&root.join("sb1/config.json"), &sandbox);

    let app = |name: &str, ns_dir: &str| {
        let mut spec = base_spec(&["/bin/true"]);
        spec["annotations"] = containerd_annotations("default", "sb1");
        spec["linux"]["namespaces"] = json!([
            {"type": "pid"}, {"type": "mount"},
            {"type": "network", "path": format!("{ns_dir}/net")},
            {"type": "ipc", "path": format!("{ns_dir}/ipc")},
            {"type": "uts", "path": format!("{ns_dir}/uts")}
        ]);
        let b = root.join(name);
        std::fs::create_dir_all(&b).unwrap();
        write_json(&b.join("config.json"), &spec);
        b
    };
    let b = app("private", &private);
    assert_contract(&node.run_hook(&state("private", &b), &[]), 0);
    let b = app("hostnet", &host);
    let line = assert_contract(&node.run_hook(&state("hostnet", &b), &[]), 1);
    assert!(
        line.ends_with("host namespaces (hostNetwork=true, hostIPC=true)"),
        "{line}"
    );
    assert!(
        line.contains("container \"app\" in pod default/web"),
        "{line}"
    );

    sandbox["linux"]["sysctl"] = json!({"kernel.msgmax": "1", "net.ipv4.tcp_syncookies": "1"});
    write_json(&root.join("sb1/config.json"), &sandbox);
    let b = app("sysctl", &private);
    let line = assert_contract(&node.run_hook(&state("sysctl", &b), &[]), 1);
    assert!(
        line.ends_with("forbidden sysctls (kernel.msgmax)"),
        "{line}"
    );

    // No sandbox spec and a namespace path that cannot be read: could not evaluate.
    std::fs::remove_file(root.join("sb1/config.json")).unwrap();
    let b = app("nosandbox", &private);
    let line = assert_contract(&node.run_hook(&state("nosandbox", &b), &[]), 2);
    assert!(line.contains("sandbox"), "{line}");

    let _ = pause.kill();
    let _ = pause.wait();
}

#[test]
fn check_command_prints_every_check_and_json() {
    let node = Node::new("");
    let mut spec = base_spec(&["/bin/true"]);
    make_privileged(&mut spec);
    let b = node.bundle("bad", &spec);
    let run = |args: &[&str]| {
        Command::new(BIN)
            .arg("check")
            .arg(&b)
            .args(["--policy"])
            .arg(node.policy_path())
            .args(["--runtime", "none"])
            .args(args)
            .output()
            .unwrap()
    };
    let text = run(&[]);
    assert_eq!(text.status.code(), Some(1));
    let text = String::from_utf8(text.stdout).unwrap();
    for id in [
        "appArmorProfile",
        "hostPorts",
        "hostProbesAndHostLifecycle",
        "windowsHostProcess",
        "sysctls",
    ] {
        assert!(text.contains(id), "{id} missing from:\n{text}");
    }
    assert!(text.contains("FAIL            privileged"), "{text}");
    assert!(
        text.contains("covered         capabilities_baseline (by privileged)"),
        "{text}"
    );
    assert!(text.ends_with("decision: refused\n"), "{text}");

    let js = run(&["--json", "--level", "restricted", "--version", "v1.22"]);
    assert_eq!(js.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&js.stdout).unwrap();
    assert_eq!(v["decision"], "refused");
    assert_eq!(v["policy"], "restricted:v1.22");
    let checks: Vec<&str> = v["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        checks,
        [
            "privileged",
            "capabilities_restricted",
            "runAsNonRoot",
            "seccompProfile_restricted"
        ]
    );
    // check never writes the decision log.
    assert!(!Path::new(&node.log_path()).exists());
}
