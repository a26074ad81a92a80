//! Findings of the second adversarial review (issue 18), each through the built binary in hook
//! mode: one namespace's snapshot entry cannot change another's verdict; a snapshot file that
//! is a symlink, or that others may write, is not used (node defaults apply, nothing else);
//! `latest` is the cluster's version, not the newest this hook knows; and a directory name that
//! is not UTF-8 cannot blind the mount table, and so every subPath on the node.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(15);
const ENFORCE: &str = "pod-security.kubernetes.io/enforce";

/// The hook as containerd's on the app container of pod `<ns>/web` running `spec`; the pod
/// sandbox's spec is `sandbox`. In a private mount namespace after `setup` when one is given.
/// Returns the exit code and the record.
fn pod(
    node: &Node,
    ns: &str,
    name: &str,
    mut spec: Value,
    sandbox: &Value,
    setup: Option<&str>,
) -> (Option<i32>, Value) {
    let sb = format!("{name}-sb");
    spec["annotations"] = cri_annotations(ns, &sb);
    let b = containerd_pod(&node.path().join("k8s.io"), name, &sb, Some(sandbox), &spec);
    let before = node.records().len();
    let hook = node.hook_command(&["--runtime", "containerd"]);
    let cmd = match setup {
        Some(setup) => in_mount_namespace(setup, &hook),
        None => hook,
    };
    let o = run_bounded(cmd, Stdin::Bytes(state(name, &b)), LIMIT);
    let recs = node.records();
    assert_eq!(
        recs.len(),
        before + 1,
        "{name}: one record; stderr {:?}",
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code(), recs[before].clone())
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

fn notes(rec: &Value) -> String {
    rec["notes"].to_string()
}

fn privileged() -> Value {
    let mut s = base_spec(&["/bin/true"]);
    make_privileged(&mut s);
    s
}

/// A snapshot file as the agent writes it (schema 2: a header, then one line per namespace,
/// sorted by name), with `header` merged into the header. Written 0644, owned by root.
fn write_snapshot(path: &Path, header: Value, namespaces: &[(&str, Value)]) {
    let mut h = json!({"schema": 2, "written": now(), "runtime_classes": {}});
    if let (Some(h), Some(extra)) = (h.as_object_mut(), header.as_object()) {
        h.extend(extra.clone());
    }
    let mut text = format!("{h}\n");
    let mut sorted: Vec<&(&str, Value)> = namespaces.iter().collect();
    sorted.sort_by_key(|(n, _)| *n);
    for (name, labels) in sorted {
        // The name first, as the agent writes it and the hook's search reads it.
        text += &format!("{{\"namespace\":{},\"labels\":{labels}}}\n", json!(name));
    }
    std::fs::write(path, text).expect("write snapshot");
    set_mode(path, 0o644);
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Now, as the snapshot's RFC 3339 `written`, so no record calls it stale.
fn now() -> String {
    let o = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.000000Z"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn node_with_snapshot(extra: &str) -> (Node, PathBuf) {
    let node = Node::with_policy(|dir| {
        format!(
            "{extra}\nfloor_exceptions = [\"cni\"]\n[snapshot]\npath = {:?}\n",
            dir.join("cluster.json")
        )
    });
    let snap = node.path().join("cluster.json");
    (node, snap)
}

// ---- 1. one namespace's labels cannot change another's verdict ----------------------------

#[test]
fn a_namespace_with_thousands_of_labels_changes_only_its_own_verdict() {
    let (node, snap) = node_with_snapshot("");
    // What an agent that kept every `pod-security.kubernetes.io/*` label wrote for a namespace
    // its tenant labelled a few thousand times: a line of ~200 KB, over what the hook reads.
    let mut flood = serde_json::Map::new();
    flood.insert(ENFORCE.into(), json!("privileged"));
    for i in 0..5000 {
        flood.insert(
            format!("pod-security.kubernetes.io/x-{i:05}"),
            json!("a".repeat(32)),
        );
    }
    write_snapshot(
        &snap,
        json!({}),
        &[
            ("cni", json!({ENFORCE: "privileged"})),
            ("flood", Value::Object(flood)),
            ("team", json!({ENFORCE: "restricted"})),
            // After the flood in the sorted order, so a search must step over it.
            ("zeta", json!({ENFORCE: "privileged"})),
        ],
    );
    // The floor-excepted CNI namespace still runs privileged pods.
    let (code, rec) = pod(&node, "cni", "cni", privileged(), &sandbox_spec(), None);
    assert_eq!(code, Some(0), "{rec}");
    assert_eq!(rec["policy_from"], "namespace labels", "{rec}");
    // A namespace labelled restricted stays restricted.
    let (code, rec) = pod(
        &node,
        "team",
        "team",
        base_spec(&["/bin/true"]),
        &sandbox_spec(),
        None,
    );
    assert_eq!(code, Some(1), "{rec}");
    assert_eq!(rec["policy"], "restricted:latest", "{rec}");
    // One past the flood resolves as labelled (the floor holds it at baseline).
    let (code, rec) = pod(&node, "zeta", "zeta", privileged(), &sandbox_spec(), None);
    assert_eq!(code, Some(1), "{rec}");
    assert_eq!(
        (rec["policy"].as_str(), rec["policy_from"].as_str()),
        (Some("baseline:latest"), Some("namespace labels")),
        "{rec}"
    );
    // The flooded namespace itself cannot be read: it enforces restricted, as admission does
    // for an enforce label it cannot parse, and its record says why.
    let (code, rec) = pod(
        &node,
        "flood",
        "flood",
        base_spec(&["/bin/true"]),
        &sandbox_spec(),
        None,
    );
    assert_eq!(code, Some(1), "{rec}");
    assert_eq!(rec["policy"], "restricted:latest", "{rec}");
    assert!(
        notes(&rec).contains("namespace \\\"flood\\\" in the snapshot: its line is longer than"),
        "{rec}"
    );
    // A line that does not parse is its namespace's alone, too.
    write_snapshot(
        &snap,
        json!({}),
        &[
            ("bad", json!({ENFORCE: ["privileged"]})),
            ("cni", json!({ENFORCE: "privileged"})),
        ],
    );
    let (code, rec) = pod(&node, "cni", "cni-2", privileged(), &sandbox_spec(), None);
    assert_eq!(code, Some(0), "{rec}");
    let (code, rec) = pod(&node, "bad", "bad", privileged(), &sandbox_spec(), None);
    assert_eq!(code, Some(1), "{rec}");
    assert_eq!(rec["policy"], "restricted:latest", "{rec}");
    assert!(notes(&rec).contains("does not parse"), "{rec}");
}

// ---- 6. a snapshot the hook cannot trust is not used ---------------------------------------

#[test]
fn a_snapshot_behind_a_symlink_or_writable_by_others_is_not_used() {
    let (node, snap) = node_with_snapshot("");
    let real = node.path().join("elsewhere.json");
    write_snapshot(&real, json!({}), &[("cni", json!({ENFORCE: "privileged"}))]);
    // The control: the file itself is used.
    std::fs::copy(&real, &snap).expect("copy");
    set_mode(&snap, 0o644);
    let (code, rec) = pod(&node, "cni", "ok", privileged(), &sandbox_spec(), None);
    assert_eq!(code, Some(0), "{rec}");
    std::fs::remove_file(&snap).expect("rm");
    std::os::unix::fs::symlink(&real, &snap).expect("symlink");
    let (code, rec) = pod(&node, "cni", "link", privileged(), &sandbox_spec(), None);
    assert_eq!(code, Some(1), "{rec}");
    assert_eq!(rec["policy_from"], "node defaults", "{rec}");
    assert!(notes(&rec).contains("it is a symbolic link"), "{rec}");
    // Only label resolution is affected: a compliant pod still starts.
    let (code, rec) = pod(
        &node,
        "cni",
        "link-ok",
        base_spec(&["/bin/true"]),
        &sandbox_spec(),
        None,
    );
    assert_eq!(
        (code, rec["decision"].as_str()),
        (Some(0), Some("allowed")),
        "{rec}"
    );
    std::fs::remove_file(&snap).expect("rm");
    std::fs::copy(&real, &snap).expect("copy");
    for (i, mode) in [0o664, 0o646, 0o666].into_iter().enumerate() {
        set_mode(&snap, mode);
        let (code, rec) = pod(
            &node,
            "cni",
            &format!("mode-{i}"),
            privileged(),
            &sandbox_spec(),
            None,
        );
        assert_eq!(code, Some(1), "{mode:o}: {rec}");
        assert!(
            notes(&rec).contains("lets group or others write it"),
            "{mode:o}: {rec}"
        );
    }
    set_mode(&snap, 0o644);
    std::os::unix::fs::chown(&snap, Some(65534), Some(65534)).expect("chown");
    let (code, rec) = pod(&node, "cni", "owner", privileged(), &sandbox_spec(), None);
    assert_eq!(code, Some(1), "{rec}");
    assert!(notes(&rec).contains("owned by uid 65534"), "{rec}");
}

// ---- 8. `latest` is the cluster's version ------------------------------------------------

/// A pod sandbox that sets `sysctl` (pod sysctls live in the sandbox's spec).
fn sandbox_with_sysctl(sysctl: &str) -> Value {
    let mut sb = sandbox_spec();
    sb["linux"]["sysctl"] = json!({sysctl: "1"});
    sb
}

#[test]
fn latest_is_the_api_servers_version_else_the_policys_else_the_newest_known() {
    // Allowed from v1.37 (a development line) only; refused by admission on released clusters.
    let sysctl = "net.ipv4.tcp_notsent_lowat";
    let (node, snap) = node_with_snapshot("");
    write_snapshot(
        &snap,
        json!({"kubernetes_version": "v1.34"}),
        &[
            ("team", json!({})),
            (
                "pinned",
                json!({"pod-security.kubernetes.io/enforce-version": "v1.40"}),
            ),
        ],
    );
    let spec = || base_spec(&["/bin/true"]);
    let (code, rec) = pod(
        &node,
        "team",
        "v134",
        spec(),
        &sandbox_with_sysctl(sysctl),
        None,
    );
    assert_eq!(code, Some(1), "{rec}");
    assert_eq!(violated(&rec), ["sysctls"], "{rec}");
    assert_eq!(rec["latest"], "v1.34", "{rec}");
    assert!(
        rec["latest_from"]
            .as_str()
            .unwrap_or("")
            .contains("API server"),
        "{rec}"
    );
    // A version above the cluster's is the cluster's, as admission clamps it.
    let (code, rec) = pod(
        &node,
        "pinned",
        "v140",
        spec(),
        &sandbox_with_sysctl(sysctl),
        None,
    );
    assert_eq!(code, Some(1), "{rec}");
    assert_eq!(rec["policy"], "baseline:v1.40", "{rec}");
    // A sysctl allowed since v1.32 is allowed on a v1.34 cluster.
    let (code, rec) = pod(
        &node,
        "team",
        "rmem",
        spec(),
        &sandbox_with_sysctl("net.ipv4.tcp_rmem"),
        None,
    );
    assert_eq!(code, Some(0), "{rec}");

    // No snapshot: the policy's kubernetes_version.
    let node = Node::with_policy(|dir| {
        format!(
            "kubernetes_version = \"v1.34\"\n[snapshot]\npath = {:?}\n",
            dir.join("none.json")
        )
    });
    let (code, rec) = pod(
        &node,
        "team",
        "policy",
        spec(),
        &sandbox_with_sysctl(sysctl),
        None,
    );
    assert_eq!(code, Some(1), "{rec}");
    assert_eq!(rec["policy_error"], Value::Null, "{rec}");
    assert_eq!(
        (rec["latest"].as_str(), rec["latest_from"].as_str()),
        (Some("v1.34"), Some("kubernetes_version in the policy")),
        "{rec}"
    );
    // The snapshot's version wins over the policy's.
    let snap = node.path().join("none.json");
    write_snapshot(
        &snap,
        json!({"kubernetes_version": "v1.37"}),
        &[("team", json!({}))],
    );
    let (code, rec) = pod(
        &node,
        "team",
        "both",
        spec(),
        &sandbox_with_sysctl(sysctl),
        None,
    );
    assert_eq!(
        (code, rec["latest"].as_str()),
        (Some(0), Some("v1.37")),
        "{rec}"
    );

    // Neither: the newest this hook knows, and the record says so.
    let node = Node::with_policy(|dir| format!("[snapshot]\npath = {:?}\n", dir.join("none.json")));
    let (code, rec) = pod(
        &node,
        "team",
        "newest",
        spec(),
        &sandbox_with_sysctl(sysctl),
        None,
    );
    assert_eq!(code, Some(0), "{rec}");
    assert!(
        rec["latest_from"]
            .as_str()
            .unwrap_or("")
            .contains("newest version this hook knows"),
        "{rec}"
    );
}

// ---- 3. a directory name that is not UTF-8 cannot blind the mount table ---------------------

/// A compliant spec that also binds `source` at /data.
fn binding(source: &Path) -> Value {
    let mut s = base_spec(&["/bin/true"]);
    s["mounts"].as_array_mut().expect("mounts").push(json!({
        "destination": "/data", "type": "bind", "source": source,
        "options": ["rbind", "rprivate", "rw"]
    }));
    s
}

#[test]
fn a_non_utf8_directory_name_in_a_volume_leaves_other_subpaths_traceable() {
    let node =
        Node::with_policy(|dir| format!("[paths]\nkubelet_root = {:?}\n", dir.join("kubelet")));
    let pod_dir = node.path().join("kubelet/pods/0a1b2c3d-uid");
    let pv = pod_dir.join("volumes/kubernetes.io~csi/pvc-1/mount");
    let sub = |n: u32| pod_dir.join(format!("volume-subpaths/pvc-1/app/{n}"));
    // Another pod's volume holds a directory whose name is the bytes 0xff 0xfe, mounted (as a
    // subPath of it would be), so /proc/self/mountinfo carries bytes that are not UTF-8.
    let other = node
        .path()
        .join("kubelet/pods/other-uid/volumes/kubernetes.io~empty-dir/e");
    let setup = format!(
        "mkdir -p {pv} {s0} {s1} {other}\n\
         mount -t tmpfs pv {pv}\n\
         mkdir -p {pv}/data\n\
         mount --bind {pv}/data {s0}\n\
         mount --bind /etc {s1}\n\
         odd=\"{other}/$(printf '\\377\\376')\"\n\
         mkdir -p \"$odd\"\n\
         mount -t tmpfs odd \"$odd\"",
        pv = pv.display(),
        s0 = sub(0).display(),
        s1 = sub(1).display(),
        other = other.display(),
    );
    let sb = sandbox_spec();
    let (code, rec) = pod(
        &node,
        "default",
        "pvc-sub",
        binding(&sub(0)),
        &sb,
        Some(&setup),
    );
    assert_eq!(code, Some(0), "the claim's own subPath: {rec}");
    // The control: a host path behind a subPath is still one.
    let (code, rec) = pod(
        &node,
        "default",
        "host-sub",
        binding(&sub(1)),
        &sb,
        Some(&setup),
    );
    assert_eq!(code, Some(1), "{rec}");
    assert_eq!(violated(&rec), ["hostPathVolumes"], "{rec}");
}

// ---- found by the `evaluate` fuzz target on this round --------------------------------------

#[test]
fn a_spec_that_cannot_be_read_never_earns_the_unidentified_exemption() {
    // `unidentified = "allow"` exempts containers whose metadata is absent; a spec the hook
    // cannot read has metadata that is unknown (THREAT-MODEL row 12).
    let node = Node::new("unidentified = \"allow\"");
    let b = node.path().join("unreadable");
    std::fs::create_dir_all(&b).expect("mkdir");
    std::fs::write(b.join("config.json"), b"{\"process\": {\"user\": ").expect("write");
    let o = run_bounded(
        node.hook_command(&["--runtime", "none"]),
        Stdin::Bytes(state("unreadable", &b)),
        LIMIT,
    );
    let rec = node.records().pop().expect("a record");
    // Refused as "could not evaluate" (exit 2), not exempt.
    assert_eq!(o.status.code(), Some(2), "{rec}");
    assert_eq!(rec["decision"], "error", "{rec}");
    // The control: a spec without Kubernetes metadata that reads is exempt.
    let ok = node.path().join("plain");
    std::fs::create_dir_all(&ok).expect("mkdir");
    write_json(&ok.join("config.json"), &privileged());
    let o = run_bounded(
        node.hook_command(&["--runtime", "none"]),
        Stdin::Bytes(state("plain", &ok)),
        LIMIT,
    );
    let rec = node.records().pop().expect("a record");
    assert_eq!(
        (o.status.code(), rec["decision"].as_str()),
        (Some(0), Some("exempt")),
        "{rec}"
    );
}
