//! Pod user namespaces (`hostUsers: false`) on containerd 2.x + runc 1.3 (the sid stack, the
//! only one of the three with them), decided per PSA version as PSA decides (upstream
//! pod-security-admission, policy/check_procMount_baseline.go, check_procMount_restricted.go,
//! check_runAsNonRoot.go, check_runAsUser.go):
//!
//! - baseline v1.35+ allows any procMount when hostUsers is false; v1.34 and older do not;
//! - restricted v1.35+ drops runAsNonRoot and runAsUser for hostUsers: false; v1.34 does not;
//! - restricted's procMount_restricted (v1.35+) still refuses Unmasked with hostUsers: false.
//!
//! Each pod really runs in a user namespace (checked in the captured spec: uid/gid mappings
//! and a user namespace entry), so an allowed pod here proves the runtime started it.

mod common;

use common::TestNode;
use kubelet_sim::{Kubelet, PodRun, Source, UserNamespaces, load};
use serde_json::{Value, json};

const STACK: &str = "sid";

/// Why the captured specs of hostUsers:false pods are pinned stricter offline than live.
const OFFLINE_NOTE: &str = "the app container joins the pod's user namespace by path (/proc/<pid>/ns/user); `check --offline` cannot show that namespace differs from the host's, so it grants none of the hostUsers:false relaxations (fail closed); live, the hook compares namespace inodes and grants them";

fn pod(name: &str, host_users: bool, pod_sc: &str, app_sc: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: default
spec:
  hostUsers: {host_users}
  securityContext: {pod_sc}
  containers:
  - name: app
    image: localhost/pss-guard/app:latest
    securityContext: {app_sc}
"
    )
}

/// A restricted-compliant container apart from the user: runs as uid 0 (the image's user),
/// without runAsNonRoot.
const RESTRICTED_AS_ROOT: &str = "{allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}, seccompProfile: {type: RuntimeDefault}, runAsUser: 0}";
const RESTRICTED_UNMASKED: &str = "{allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}, seccompProfile: {type: RuntimeDefault}, runAsNonRoot: true, runAsUser: 1000, procMount: Unmasked}";
const UNMASKED: &str = "{procMount: Unmasked}";

struct Case {
    name: &'static str,
    host_users: bool,
    app_sc: &'static str,
    policy: &'static str,
    /// None = allowed; Some(reason) = refused by pss-guard with that PSA reason.
    refused: Option<&'static str>,
}

const CASES: &[Case] = &[
    Case {
        name: "userns-unmasked-baseline-latest",
        host_users: false,
        app_sc: UNMASKED,
        policy: "baseline:latest",
        refused: None,
    },
    Case {
        name: "userns-unmasked-baseline-v1-34",
        host_users: false,
        app_sc: UNMASKED,
        policy: "baseline:v1.34",
        refused: Some("procMount"),
    },
    Case {
        name: "hostusers-unmasked-baseline-latest",
        host_users: true,
        app_sc: UNMASKED,
        policy: "baseline:latest",
        refused: Some("procMount"),
    },
    Case {
        name: "userns-root-restricted-latest",
        host_users: false,
        app_sc: RESTRICTED_AS_ROOT,
        policy: "restricted:latest",
        refused: None,
    },
    Case {
        name: "userns-root-restricted-v1-34",
        host_users: false,
        app_sc: RESTRICTED_AS_ROOT,
        policy: "restricted:v1.34",
        refused: Some("runAsNonRoot != true"),
    },
    Case {
        name: "hostusers-root-restricted-latest",
        host_users: true,
        app_sc: RESTRICTED_AS_ROOT,
        policy: "restricted:latest",
        refused: Some("runAsNonRoot != true"),
    },
    Case {
        name: "userns-unmasked-restricted-latest",
        host_users: false,
        app_sc: RESTRICTED_UNMASKED,
        policy: "restricted:latest",
        refused: Some("procMount"),
    },
    Case {
        name: "userns-nonroot-unmasked-baseline-v1-35",
        host_users: false,
        app_sc: "{runAsNonRoot: true, runAsUser: 1000, procMount: Unmasked}",
        policy: "baseline:v1.35",
        refused: None,
    },
];

fn has_user_namespace(config: &Value) -> bool {
    let linux = &config["linux"];
    let mapped = linux["uidMappings"]
        .as_array()
        .is_some_and(|m| !m.is_empty())
        && linux["gidMappings"]
            .as_array()
            .is_some_and(|m| !m.is_empty());
    let entry = linux["namespaces"]
        .as_array()
        .is_some_and(|ns| ns.iter().any(|n| n["type"] == "user"));
    mapped && entry
}

async fn run(k: &mut Kubelet, yaml: &str) -> PodRun {
    let m = load(yaml, Source::ApiServer).expect("test pod parses");
    k.run_pod(&m).await.expect("kubelet-sim drives the runtime")
}

#[tokio::test(flavor = "current_thread")]
async fn user_namespace_pods_are_decided_per_psa_version() {
    let node = TestNode::up_on(STACK);
    assert!(
        node.version("CONTAINERD_VERSION").starts_with('2'),
        "the {STACK} stack should run containerd 2.x: {:?}",
        node.env
    );
    let mut opts = node.options();
    opts.user_namespaces = UserNamespaces::Pod;
    let mut k = node.kubelet(opts).await;
    let mut failures = Vec::new();
    for case in CASES {
        node.set_enforce(case.policy);
        let yaml = pod(case.name, case.host_users, "{}", case.app_sc);
        let r = run(&mut k, &yaml).await;
        let app = r.containers.iter().find(|c| c.name == "app");
        let Some(app) = app else {
            failures.push(format!(
                "{}: no app container ran: {:?}",
                case.name,
                r.errors()
            ));
            continue;
        };
        let id = app.container_id.clone().unwrap_or_default();
        let captured = node.capture(&id);
        // Every hostUsers:false case really ran in a user namespace of its own.
        if let Some((config, _)) = &captured {
            let spec: Value =
                serde_json::from_str(&std::fs::read_to_string(config).expect("captured config"))
                    .expect("captured config is JSON");
            if has_user_namespace(&spec) == case.host_users {
                failures.push(format!(
                    "{}: hostUsers={} but the spec {} a user namespace",
                    case.name,
                    case.host_users,
                    if case.host_users { "has" } else { "lacks" }
                ));
            }
        } else {
            failures.push(format!("{}: no captured spec: {:?}", case.name, r.errors()));
        }
        let err = app.error.clone().unwrap_or_default();
        match case.refused {
            None if !app.started => {
                failures.push(format!("{}: refused, PSA allows it: {err}", case.name))
            }
            Some(reason) => {
                let want = format!("violates PodSecurity \"{}\": {reason}", case.policy);
                if app.started || !err.contains("pss-guard: ") || !err.contains(&want) {
                    failures.push(format!(
                        "{}: PSA refuses it with {want:?}; started={} error={err}",
                        case.name, app.started
                    ));
                }
            }
            None => {}
        }
        if captured.is_some() {
            let mut meta = json!({"case": case.name, "pod_yaml": yaml, "policy": case.policy,
                   "expected": if case.refused.is_some() { "refused" } else { "allowed" },
                   "expected_substring": case.refused.map(|r| format!("violates PodSecurity \"{}\": {r}", case.policy))});
            if !case.host_users {
                meta["offline_note"] = json!(OFFLINE_NOTE);
            }
            node.save_fixture(case.name, &id, meta);
        }
        if let Some(sb) = r.sandbox_id.as_deref() {
            k.stop_pod(sb).await.expect("stop pod");
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} user-namespace cases wrong:\n{}\ncontainerd log tail:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n"),
        node.containerd_log()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
