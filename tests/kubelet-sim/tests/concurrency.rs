//! 64 container starts at once through the real containerd test node (issue 6, target 4): every
//! start gets exactly one well-formed decision record, none interleaved or lost, and every
//! verdict is the right one.

mod common;

use common::TestNode;
use kubelet_sim::{Source, load};
use tokio::task::JoinSet;

const PODS: usize = 64;

fn pod(i: usize) -> String {
    // Even pods are compliant, odd ones privileged: refusals write longer records.
    let sc = if i.is_multiple_of(2) {
        "{}"
    } else {
        "{privileged: true}"
    };
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: conc-{i:02}
  namespace: default
spec:
  containers:
  - name: app
    image: localhost/pss-guard/app:latest
    securityContext: {sc}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn sixty_four_concurrent_starts_get_sixty_four_whole_records() {
    let node = TestNode::up();
    let mut set = JoinSet::new();
    for i in 0..PODS {
        let mut k = node.kubelet(node.options()).await;
        set.spawn(async move {
            let m = load(&pod(i), Source::ApiServer).expect("test pod parses");
            let run = k.run_pod(&m).await.expect("kubelet-sim drives the runtime");
            (i, run)
        });
    }
    let mut runs = Vec::new();
    while let Some(r) = set.join_next().await {
        runs.push(r.expect("task"));
    }
    assert_eq!(runs.len(), PODS);
    for (i, run) in &runs {
        let app = &run.containers[0];
        if i.is_multiple_of(2) {
            assert!(
                run.all_started(1),
                "compliant conc-{i:02} did not start: {run:#?}"
            );
        } else {
            assert!(!app.started, "privileged conc-{i:02} started");
            // CRI-O quotes runc's log line, its quotes escaped.
            let err = app.error.as_deref().unwrap_or("").replace("\\\"", "\"");
            assert!(
                err.contains("privileged (container \"app\" must not set"),
                "conc-{i:02}: {err}"
            );
        }
    }
    // Every line parses (decisions() panics on a torn or interleaved line), one per start.
    let decisions = node.decisions();
    assert_eq!(
        decisions.len(),
        PODS,
        "one record per start: {decisions:#?}"
    );
    let mut pods: Vec<String> = decisions
        .iter()
        .map(|d| {
            let name = d["pod"].as_str().expect("pod").to_owned();
            let i: usize = name[5..].parse().expect("conc-NN");
            let want = if i.is_multiple_of(2) {
                "allowed"
            } else {
                "refused"
            };
            assert_eq!(d["decision"], want, "{d}");
            name
        })
        .collect();
    pods.sort();
    pods.dedup();
    assert_eq!(pods.len(), PODS, "a record lost or duplicated");
}
