//! Findings of an adversarial review (issue 9), each through the built binary: a pod that PSS
//! baseline refuses must not start, and a legitimate one must not be refused. The other findings
//! have their tests beside the mechanism they exercise: forged namespaces in tests/faults.rs,
//! case-variant keys in tests/bad_input.rs, CRI-O identity and the hooks.d runtime in
//! tests/spoofing.rs.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(15);

/// Runs the hook (`--runtime none`) on `spec`; returns the exit code, the stderr line and the record.
fn hook(node: &Node, name: &str, spec: &Value) -> (Option<i32>, String, Value) {
    let b = node.path().join(name);
    std::fs::create_dir_all(&b).expect("mkdir");
    write_json(&b.join("config.json"), spec);
    let before = node.records().len();
    let o = run_bounded(
        node.hook_command(&["--runtime", "none"]),
        Stdin::Bytes(state(name, &b)),
        LIMIT,
    );
    let recs = node.records();
    assert_eq!(recs.len(), before + 1, "{name}: one record");
    let stderr = String::from_utf8_lossy(&o.stderr).trim().to_owned();
    (o.status.code(), stderr, recs[before].clone())
}

fn violated(rec: &Value) -> Vec<String> {
    rec["violations"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|x| x["check"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// What containerd writes for `privileged: true` with `capabilities.drop: [ALL]` on a handler
/// with `privileged_without_host_devices`, in a pod with `hostUsers: false`: no capabilities, no
/// masked or read-only paths, a read-write /sys, no device rule, a user namespace.
fn privileged_drop_all_userns() -> Value {
    let mut s = base_spec(&["/bin/true"]);
    s["process"]["capabilities"] = json!({});
    let linux = s["linux"].as_object_mut().expect("linux");
    linux.remove("maskedPaths");
    linux.remove("readonlyPaths");
    linux.insert(
        "uidMappings".into(),
        json!([{"containerID": 0, "hostID": 1_000_000, "size": 65536}]),
    );
    linux.insert(
        "gidMappings".into(),
        json!([{"containerID": 0, "hostID": 1_000_000, "size": 65536}]),
    );
    s["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .push(json!({"type": "user"}));
    for m in s["mounts"].as_array_mut().expect("mounts") {
        if m["destination"] == "/sys" {
            m["options"] = json!(["nosuid", "noexec", "nodev", "rw"]);
        }
    }
    s
}

#[test]
fn privileged_with_every_capability_dropped_in_a_user_namespace_is_refused() {
    let node = Node::new("");
    let (code, stderr, rec) = hook(&node, "userns-priv", &privileged_drop_all_userns());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(violated(&rec).contains(&"privileged".to_owned()), "{rec}");
    assert!(
        stderr.contains("violates PodSecurity \"baseline:latest\": privileged"),
        "{stderr}"
    );
    // The control: the same pod unprivileged (masked /proc, read-only /sys) starts, user
    // namespace and all.
    let mut ok = base_spec(&["/bin/true"]);
    ok["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .push(json!({"type": "user"}));
    let (code, stderr, _) = hook(&node, "userns-plain", &ok);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_writable_proc_sys_under_a_masked_proc_is_privileged() {
    let node = Node::new("");
    let mut s = base_spec(&["/bin/true"]);
    s["linux"]["readonlyPaths"] = json!(["/proc/bus", "/proc/fs", "/proc/irq"]);
    let (code, stderr, rec) = hook(&node, "proc-sys", &s);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(violated(&rec), ["privileged"], "{rec}");
}
