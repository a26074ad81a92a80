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

/// A privileged spec with no capabilities, in a user namespace: no masked or read-only paths, a
/// read-write /sys, no device rule. containerd up to 1.5 wrote the capability part for
/// `privileged: true` with `capabilities.drop: [ALL]` on a handler with
/// `privileged_without_host_devices` (1.6 and later grant every capability whatever `drop` says;
/// THREAT-MODEL.md says which runtimes can write such a spec); the user namespace is what
/// `hostUsers: false` adds.
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

// ---- subPath provenance -------------------------------------------------------------------

/// A containerd pod `default/web` (uid `0a1b2c3d-uid`) whose app container runs `spec` (its
/// annotations are set here), decided by the hook as containerd's; in a private mount namespace
/// after `setup` when one is given. Returns the exit code and the record.
fn containerd_case(
    node: &Node,
    name: &str,
    mut spec: Value,
    setup: Option<&str>,
) -> (Option<i32>, Value) {
    let image = spec["annotations"]["io.kubernetes.cri.image-name"].clone();
    spec["annotations"] = cri_annotations("default", &format!("{name}-sb"));
    if image.is_string() {
        spec["annotations"]["io.kubernetes.cri.image-name"] = image;
    }
    let b = containerd_pod(
        &node.path().join("k8s.io"),
        name,
        &format!("{name}-sb"),
        Some(&sandbox_spec()),
        &spec,
    );
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

/// A compliant spec that also binds `source` at /data.
fn binding(source: &std::path::Path) -> Value {
    let mut s = base_spec(&["/bin/true"]);
    s["mounts"].as_array_mut().expect("mounts").push(json!({
        "destination": "/data", "type": "bind", "source": source,
        "options": ["rbind", "rprivate", "rw"]
    }));
    s
}

#[test]
fn a_hostpath_subpath_named_like_the_pods_pv_is_a_host_path() {
    let node =
        Node::with_policy(|dir| format!("[paths]\nkubelet_root = {:?}\n", dir.join("kubelet")));
    let pod = node.path().join("kubelet/pods/0a1b2c3d-uid");
    let pv = pod.join("volumes/kubernetes.io~csi/pvc-1/mount");
    let sub = |n: u32| pod.join(format!("volume-subpaths/pvc-1/app/{n}"));
    // kubelet's layout for a PVC bound to PV pvc-1 (here a tmpfs), mounted with subPath
    // `data`, and for an inline hostPath volume the pod named `pvc-1`, of /etc, with a subPath.
    let setup = format!(
        "mkdir -p {pv} {s0} {s1}\n\
         mount -t tmpfs pv {pv}\n\
         mkdir -p {pv}/data\n\
         mount --bind {pv}/data {s0}\n\
         mount --bind /etc {s1}",
        pv = pv.display(),
        s0 = sub(0).display(),
        s1 = sub(1).display(),
    );
    let (code, rec) = containerd_case(&node, "pvc-sub", binding(&sub(0)), Some(&setup));
    assert_eq!(code, Some(0), "the claim's own subPath: {rec}");
    let (code, rec) = containerd_case(&node, "host-sub", binding(&sub(1)), Some(&setup));
    assert_eq!(code, Some(1), "{rec}");
    assert_eq!(violated(&rec), ["hostPathVolumes"], "{rec}");
    // Offline (a saved spec) the claim's own subPath cannot be traced to its volume either.
    let b = node.path().join("k8s.io/pvc-sub");
    let o = std::process::Command::new(BIN)
        .args(["check", "--offline", "--json", "--policy"])
        .arg(node.policy_path())
        .arg(&b)
        .output()
        .expect("check");
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["decision"], "refused", "{v}");
}

// ---- AppArmor as the runtime decides it -----------------------------------------------------

/// The hook as containerd's on a pod container without an AppArmor profile (what containerd
/// writes when it applies none), in a mount namespace where the kernel shows AppArmor enabled
/// and `/sbin/apparmor_parser` is present or not.
fn apparmor_case(node: &Node, name: &str, parser: bool) -> (Option<i32>, Value) {
    let mut setup = String::from(
        "mount -t tmpfs sec /sys/kernel/security\n\
         mkdir /sys/kernel/security/apparmor\n\
         mount -t tmpfs mod /sys/module\n\
         mkdir -p /sys/module/apparmor/parameters\n\
         echo Y > /sys/module/apparmor/parameters/enabled\n",
    );
    if parser {
        // /sbin is /usr/sbin on Debian; nothing after this needs it.
        setup.push_str("mount -t tmpfs sbin /usr/sbin\ntouch /usr/sbin/apparmor_parser\n");
    }
    containerd_case(node, name, base_spec(&["/bin/true"]), Some(&setup))
}

#[test]
fn apparmor_is_judged_only_where_the_runtime_would_apply_a_profile() {
    let node = Node::new("");
    // AppArmor in the kernel but no apparmor_parser (Debian without the apparmor package):
    // containerd applies no profile, so a missing one says nothing.
    let (code, rec) = apparmor_case(&node, "no-parser", false);
    assert_eq!(code, Some(0), "{rec}");
    // With the parser containerd would have applied its default: none means Unconfined.
    let (code, rec) = apparmor_case(&node, "parser", true);
    assert_eq!(code, Some(1), "{rec}");
    assert_eq!(violated(&rec), ["appArmorProfile"], "{rec}");
    // containerd configured with disable_apparmor = true: the policy says so.
    let node = Node::new("apparmor = \"disabled\"");
    let (code, rec) = apparmor_case(&node, "disabled", true);
    assert_eq!(code, Some(0), "{rec}");
}

// ---- PersistentVolumes backed by a host path, image exemptions --------------------------------

#[test]
fn a_claim_on_a_host_path_pv_is_a_host_path_unless_the_provisioners_root_is_allowed() {
    // kubelet binds a hostPath PersistentVolume's own path, exactly as an inline hostPath
    // volume's: the node cannot tell them apart. local-path-provisioner (kind, k3s) keeps its
    // volumes under one root, which the operator allows.
    let node = Node::new("");
    let pv = node
        .path()
        .join("local-path-provisioner/pvc-1f2e_default_data");
    std::fs::create_dir_all(&pv).expect("mkdir");
    let (code, rec) = containerd_case(&node, "pv-default", binding(&pv), None);
    assert_eq!(code, Some(1), "{rec}");
    assert_eq!(violated(&rec), ["hostPathVolumes"], "{rec}");
    let node = Node::with_policy(|dir| {
        format!(
            "[paths]\nallowed_host_paths = [{:?}]\n",
            dir.join("local-path-provisioner")
        )
    });
    let pv = node
        .path()
        .join("local-path-provisioner/pvc-1f2e_default_data");
    std::fs::create_dir_all(&pv).expect("mkdir");
    let (code, rec) = containerd_case(&node, "pv-allowed", binding(&pv), None);
    assert_eq!(code, Some(0), "{rec}");
}

/// A privileged spec whose image reference, as containerd records it, is `image`.
fn privileged_image(image: &str) -> Value {
    let mut s = base_spec(&["/bin/true"]);
    make_privileged(&mut s);
    s["annotations"] = json!({"io.kubernetes.cri.image-name": image});
    s
}

#[test]
fn an_image_exemption_pinned_to_a_digest_exempts_only_that_digest() {
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let node = Node::new(&format!(
        "[exempt]\nimages = [\"registry.example/agent@{digest}\"]\n"
    ));
    // The exemption is for the image, whatever its pod asks: here privileged.
    let (code, rec) = containerd_case(
        &node,
        "pinned",
        privileged_image(&format!("registry.example/agent@{digest}")),
        None,
    );
    assert_eq!(code, Some(0), "{rec}");
    assert_eq!(rec["decision"], "exempt", "{rec}");
    // A reference with a tag and the digest was pulled by that digest too.
    let tagged = privileged_image(&format!("registry.example/agent:1.0@{digest}"));
    let (code, rec) = containerd_case(&node, "tagged", tagged, None);
    assert_eq!(rec["decision"], "exempt", "{code:?} {rec}");
    for (name, image) in [
        ("by-tag", "registry.example/agent:1.0".to_owned()),
        (
            "other-digest",
            format!("registry.example/agent@{}", digest.replace("0123", "4567")),
        ),
    ] {
        let (code, rec) = containerd_case(&node, name, privileged_image(&image), None);
        assert_eq!(code, Some(1), "{name}: {rec}");
    }
}
