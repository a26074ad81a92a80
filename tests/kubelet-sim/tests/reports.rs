//! The agent's PolicyReports and Events from a real containerd node: kubelet-sim starts a
//! privileged pod through CRI, the real hook lets it start in observe mode and refuses it in
//! enforce mode, and the real agent binary
//! (`PSS_GUARD_AGENT_BIN`, default `<workspace>/target/debug/pss-guard-agent`) follows the
//! node's decision log and writes to the agent's stand-in API server
//! (agent/tests/support/api.rs): no live API server ran. The pod exists there as the API server
//! would hold it (same uid, this node's name), so the agent's pod watch sees it and its
//! deletion.

#[path = "../../../agent/tests/support/api.rs"]
mod api;
mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use api::{EVENTS, PODS, POLICYREPORTS, StandIn};
use common::{TestNode, workspace_root};
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubelet_sim::{Source, load};
use serde_json::Value;

const NODE: &str = "sim-node";
const UID: &str = "7d3c2b1a-0000-4000-8000-00000000f00d";

fn agent_bin() -> PathBuf {
    let p = std::env::var_os("PSS_GUARD_AGENT_BIN").map_or_else(
        || workspace_root().join("target/debug/pss-guard-agent"),
        PathBuf::from,
    );
    assert!(
        p.is_file(),
        "the agent binary {p:?} is missing: build the workspace (cargo build -p pss-guard-agent)"
    );
    p
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const POD_YAML: &str = "apiVersion: v1
kind: Pod
metadata:
  name: priv
  namespace: team-r
  uid: 7d3c2b1a-0000-4000-8000-00000000f00d
spec:
  containers:
  - name: app
    image: localhost/pss-guard/app:latest
    securityContext: {privileged: true}
";

fn wait_until(what: &str, secs: u64, agent_log: &std::path::Path, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "never saw {what}; agent stderr:\n{}",
            std::fs::read_to_string(agent_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn observed_then_refused_pod_shows_in_its_namespaces_report_and_events_and_goes_with_the_pod()
{
    let node = TestNode::up();
    let api = StandIn::start(&[POLICYREPORTS]);
    api.with(|s| {
        s.put(
            PODS,
            serde_json::to_value(Pod {
                metadata: ObjectMeta {
                    name: Some("priv".into()),
                    namespace: Some("team-r".into()),
                    uid: Some(UID.into()),
                    ..ObjectMeta::default()
                },
                spec: Some(PodSpec {
                    node_name: Some(NODE.into()),
                    ..PodSpec::default()
                }),
                ..Pod::default()
            })
            .unwrap(),
        )
    });
    let kc = api.kubeconfig(&node.dir);
    let agent_log = node.dir.join("agent.stderr");
    let _agent = Agent(
        Command::new(agent_bin())
            .args(["--listen", "127.0.0.1:0", "--log"])
            .arg(node.var("PSS_GUARD_DECISION_LOG"))
            .arg("--snapshot")
            .arg(node.dir.join("agent-cluster.json"))
            .args(["--node", NODE, "--reports", "policyreport", "--events"])
            .env("KUBECONFIG", &kc)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&agent_log).unwrap())
            .spawn()
            .expect("start pss-guard-agent"),
    );
    wait_until("the agent's pod watch", 30, &agent_log, || {
        api.with(|s| {
            s.calls
                .iter()
                .any(|c| c.path == "/api/v1/pods" && c.query.contains("watch=true"))
        })
    });

    let report = || api.with(|s| s.get(POLICYREPORTS, "team-r", &format!("pss-guard-{NODE}")));
    let has_fail = |decision: &str| {
        report().is_some_and(|r| {
            r["results"].as_array().is_some_and(|rs| {
                rs.len() == 1
                    && rs.iter().any(|x| {
                        x["rule"] == "privileged"
                            && x["result"] == "fail"
                            && x["properties"]["node"] == NODE
                            && x["properties"]["decision"] == decision
                            && x["resources"][0]["uid"] == UID
                    })
            })
        })
    };
    let events = |reason: &str| -> Vec<Value> {
        api.with(|s| {
            s.all(EVENTS)
                .into_iter()
                .filter(|e| e["involvedObject"]["name"] == "priv" && e["reason"] == reason)
                .collect()
        })
    };
    let mut k = node.kubelet(node.options()).await;
    // Each start: run the pod, check whether its app container started, stop it (a restart).
    let start = async |k: &mut kubelet_sim::Kubelet| -> bool {
        let m = load(POD_YAML, Source::ApiServer).expect("pod parses");
        let r = k.run_pod(&m).await.expect("kubelet-sim drives containerd");
        let app = r
            .containers
            .iter()
            .find(|c| c.name == "app")
            .unwrap()
            .clone();
        k.stop_pod(r.sandbox_id.as_deref().expect("sandbox"))
            .await
            .expect("stop");
        assert!(
            app.started || app.error.as_deref().unwrap_or("").contains("pss-guard: "),
            "{r:#?}"
        );
        app.started
    };

    // 1. Observe mode: the privileged pod starts, twice; the report says what enforcement
    // would do, and one Event counts both starts.
    node.set_policy_key("mode", "\"observe\"");
    for _ in 0..2 {
        assert!(start(&mut k).await, "observe mode refused the pod");
    }
    wait_until("a would_refuse fail for privileged", 30, &agent_log, || {
        has_fail("would_refuse")
    });
    wait_until(
        "one would-refuse Event counted twice",
        30,
        &agent_log,
        || {
            let e = events("PodSecurityNodeWouldRefuse");
            e.len() == 1 && e[0]["count"] == 2
        },
    );
    let e = &events("PodSecurityNodeWouldRefuse")[0];
    assert_eq!(e["type"], "Warning");
    assert!(
        e["message"]
            .as_str()
            .unwrap_or("")
            .contains("violates PodSecurity \"baseline:latest\": privileged"),
        "{e}"
    );

    // 2. Enforce, and the pod restarted: refused, and the report and an Event say so.
    node.set_policy_key("mode", "\"enforce\"");
    assert!(!start(&mut k).await, "enforce mode started the pod");
    wait_until("a refused fail for privileged", 30, &agent_log, || {
        has_fail("refused")
    });
    wait_until("a refused Event", 30, &agent_log, || {
        events("PodSecurityNodeRefused").len() == 1
    });
    println!(
        "the report from the real node:\n{}",
        serde_json::to_string_pretty(&report().unwrap()).unwrap()
    );

    // The pod is deleted: its results go, and with them the report.
    api.with(|s| s.remove(PODS, "team-r", "priv"));
    wait_until("the report deleted", 30, &agent_log, || report().is_none());
}
