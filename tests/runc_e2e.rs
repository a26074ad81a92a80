//! End to end with real runc: pss-guard as the bundle's prestart and createRuntime hook.
//! Needs root, Debian's runc and busybox-static (installed by the README test command); a
//! missing runtime fails these tests, it never skips them.

mod common;

use common::*;
use serde_json::{Value, json};

fn run_case(node: &Node, name: &str, spec: Value) -> (bool, String, String) {
    let mut spec = spec;
    add_hook(&mut spec, &node.policy_path());
    let bundle = node.bundle(name, &spec);
    capture_fixture(name, &bundle);
    runc_run(
        &node.path().join("runc-root"),
        &bundle,
        &format!("pssg-{name}"),
    )
}

/// With PSS_GUARD_CAPTURE=<dir>, saves each case's config.json for the offline fixture tests.
fn capture_fixture(name: &str, bundle: &std::path::Path) {
    let Ok(dir) = std::env::var("PSS_GUARD_CAPTURE") else {
        return;
    };
    let out = std::path::Path::new(&dir).join(name);
    std::fs::create_dir_all(&out).expect("create capture dir");
    std::fs::copy(bundle.join("config.json"), out.join("config.json"))
        .expect("capture config.json");
}

fn assert_refused(node: &Node, name: &str, spec: Value, expect: &str) {
    let before = node.records().len();
    let (ok, stdout, stderr) = run_case(node, name, spec);
    // runc logs through logrus, which escapes the quotes of the hook's message.
    let stderr = stderr.replace("\\\"", "\"");
    assert!(!ok, "{name}: runc run succeeded; stdout {stdout:?}");
    assert!(
        !stdout.contains("hello from"),
        "{name}: the container ran: {stdout:?}"
    );
    assert!(
        stderr.contains("pss-guard: container \"") && stderr.contains(expect),
        "{name}: runc's error lacks pss-guard's reason {expect:?}: {stderr}"
    );
    let recs = node.records();
    // prestart refuses first; runc stops there, so exactly one record per run.
    assert_eq!(
        recs.len(),
        before + 1,
        "{name}: one record per run: {recs:?}"
    );
    assert_eq!(recs[before]["decision"], "refused", "{name}");
}

#[test]
fn runc_compliant_container_starts_and_privileged_ones_are_refused() {
    let node = Node::new("");
    let hello = ["/bin/echo", "hello from busybox"];

    let (ok, stdout, stderr) = run_case(&node, "compliant", base_spec(&hello));
    assert!(ok, "compliant container refused: {stderr}");
    assert!(stdout.contains("hello from busybox"), "{stdout:?}");
    let recs = node.records();
    // prestart and createRuntime both ran the hook.
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert!(recs.iter().all(|r| r["decision"] == "allowed"), "{recs:?}");

    let mut privileged = base_spec(&hello);
    make_privileged(&mut privileged);
    assert_refused(
        &node,
        "privileged",
        privileged,
        "violates PodSecurity \"baseline:latest\": privileged (container \"pssg-privileged\" must not set securityContext.privileged=true)",
    );

    let mut host_path = base_spec(&hello);
    host_path["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/host", "type": "bind", "source": "/", "options": ["rbind", "ro"]}),
    );
    assert_refused(
        &node,
        "hostpath",
        host_path,
        "hostPath volumes (host path \"/\" at \"/host\")",
    );

    let mut sys_admin = base_spec(&hello);
    for set in ["bounding", "effective", "permitted"] {
        sys_admin["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_SYS_ADMIN"));
    }
    assert_refused(
        &node,
        "sysadmin",
        sys_admin,
        "non-default capabilities (container \"pssg-sysadmin\" must not include \"SYS_ADMIN\" in securityContext.capabilities.add)",
    );

    let mut host_net = base_spec(&hello);
    host_net["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "network");
    assert_refused(
        &node,
        "hostnetwork",
        host_net,
        "host namespaces (hostNetwork=true)",
    );

    let recs = node.records();
    assert_eq!(recs.len(), 6, "2 for the compliant run, 1 per refusal");
    for r in &recs {
        assert_eq!(r["node"], "test-node");
        assert_eq!(r["policy"], "baseline:latest");
        assert!(r["eval_us"].as_u64().is_some(), "{r}");
    }
}
