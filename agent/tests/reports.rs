//! The agent's PolicyReports and Events, against the stand-in API server of
//! `support/api.rs`: no live API server ran in these tests. The records are the real hook's
//! (`PSS_GUARD_BIN`) on containerd-shaped bundles, read from the log by the real agent binary,
//! which reaches the stand-in through a kubeconfig as it would a cluster.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::{Value, json};
use support::api::{EVENTS, Fault, PODS, POLICYREPORTS, REPORTS, StandIn, State};
use support::*;

const NODE: &str = "test-node";
const REPORT: &str = "pss-guard-test-node";

fn owner(api_version: &str, kind: &str, name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
        controller: Some(true),
        ..OwnerReference::default()
    }
}

fn meta(ns: &str, name: &str, uid: &str, owners: Vec<OwnerReference>) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.into()),
        name: Some(name.into()),
        uid: Some(uid.into()),
        owner_references: (!owners.is_empty()).then_some(owners),
        ..ObjectMeta::default()
    }
}

fn pod(ns: &str, name: &str, uid: &str, owners: Vec<OwnerReference>) -> Value {
    serde_json::to_value(Pod {
        metadata: meta(ns, name, uid, owners),
        spec: Some(PodSpec {
            node_name: Some(NODE.into()),
            ..PodSpec::default()
        }),
        ..Pod::default()
    })
    .unwrap()
}

fn agent(api: &StandIn, node: &Node, extra: &[&str]) -> Agent {
    let kc = api.kubeconfig(node.path());
    let log = node.log_path();
    let snap = node.path().join("cluster.json");
    let mut args = vec![
        "--log",
        log.to_str().unwrap(),
        "--snapshot",
        snap.to_str().unwrap(),
        "--node",
        NODE,
    ];
    args.extend_from_slice(extra);
    let a = Agent::start(&args, &[("KUBECONFIG", kc.as_path())]);
    // The follower starts at the log's end: wait until the agent is up and watching pods.
    api.wait(20, "the agent's pod watch", |s| {
        s.calls
            .iter()
            .any(|c| c.path == "/api/v1/pods" && c.query.contains("watch=true"))
            .then_some(())
    });
    a
}

/// The results of this node's report in `ns` as (pod, rule, result), sorted.
fn results(s: &State, kind: (&str, &str), ns: &str) -> Option<Vec<(String, String, String)>> {
    let r = s.get(kind, ns, REPORT)?;
    let mut out: Vec<(String, String, String)> = r["results"]
        .as_array()?
        .iter()
        .map(|x| {
            (
                x["resources"][0]["name"].as_str().unwrap_or("").to_owned(),
                x["rule"].as_str().unwrap_or("").to_owned(),
                x["result"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    out.sort();
    Some(out)
}

fn triple(p: &str, r: &str, o: &str) -> (String, String, String) {
    (p.into(), r.into(), o.into())
}

/// Events on `kind/name` in `ns` with this reason: (count, message).
fn events(s: &State, ns: &str, kind: &str, name: &str, reason: &str) -> Vec<(i64, String)> {
    s.all(EVENTS)
        .into_iter()
        .filter(|e| {
            e["metadata"]["namespace"] == ns
                && e["involvedObject"]["kind"] == kind
                && e["involvedObject"]["name"] == name
                && e["reason"] == reason
        })
        .map(|e| {
            (
                e["count"].as_i64().unwrap_or(0),
                e["message"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[test]
fn reports_and_events_follow_decisions_controllers_and_deletions() {
    let api = StandIn::start(&[POLICYREPORTS]);
    let node = Node::new();
    api.with(|s| {
        // Left by this node before a restart, for a pod gone since: deleted at start.
        s.put(
            POLICYREPORTS,
            json!({"apiVersion":"wgpolicyk8s.io/v1alpha2","kind":"PolicyReport",
                "metadata":{"name":REPORT,"namespace":"old","labels":{"pss-guard.io/node":NODE}},
                "results":[{"policy":"pss-guard","rule":"privileged","result":"fail","source":"pss-guard"}]}),
        );
        // Another node's report in the same namespace stays untouched.
        s.put(
            POLICYREPORTS,
            json!({"apiVersion":"wgpolicyk8s.io/v1alpha2","kind":"PolicyReport",
                "metadata":{"name":"pss-guard-other","namespace":"team-a","labels":{"pss-guard.io/node":"other"}},
                "results":[]}),
        );
        s.put(
            ("/apis/apps/v1", "replicasets"),
            serde_json::to_value(k8s_openapi::api::apps::v1::ReplicaSet {
                metadata: meta(
                    "team-a",
                    "web-5d8f",
                    "rs-uid",
                    vec![owner("apps/v1", "Deployment", "web", "deploy-uid")],
                ),
                ..Default::default()
            })
            .unwrap(),
        );
        s.put(
            ("/apis/batch/v1", "jobs"),
            serde_json::to_value(k8s_openapi::api::batch::v1::Job {
                metadata: meta(
                    "team-a",
                    "nightly-29",
                    "job-uid",
                    vec![owner("batch/v1", "CronJob", "nightly", "cron-uid")],
                ),
                ..Default::default()
            })
            .unwrap(),
        );
        s.put(
            PODS,
            pod(
                "team-a",
                "web-5d8f-abcde",
                "pod-web",
                vec![owner("apps/v1", "ReplicaSet", "web-5d8f", "rs-uid")],
            ),
        );
        s.put(
            PODS,
            pod(
                "team-a",
                "nightly-29-xyz",
                "pod-job",
                vec![owner("batch/v1", "Job", "nightly-29", "job-uid")],
            ),
        );
        s.put(PODS, pod("team-a", "ok-1", "pod-ok", vec![]));
    });
    let a = agent(&api, &node, &["--reports", "policyreport", "--events"]);
    api.wait(20, "the old report deleted", |s| {
        s.get(POLICYREPORTS, "old", REPORT).is_none().then_some(())
    });

    // 1. Refused twice (kubelet retries), a job's pod refused, another pod allowed.
    node.decide_pod("team-a", "web-5d8f-abcde", "pod-web", "c1", true);
    node.decide_pod("team-a", "web-5d8f-abcde", "pod-web", "c2", true);
    node.decide_pod("team-a", "nightly-29-xyz", "pod-job", "c3", true);
    node.decide_pod("team-a", "ok-1", "pod-ok", "c4", false);
    let want = vec![
        triple("nightly-29-xyz", "capabilities_baseline", "fail"),
        triple("ok-1", "baseline", "pass"),
        triple("web-5d8f-abcde", "capabilities_baseline", "fail"),
    ];
    api.wait(20, "the report of team-a", |s| {
        (results(s, POLICYREPORTS, "team-a") == Some(want.clone())).then_some(())
    });
    let r = api.with(|s| s.get(POLICYREPORTS, "team-a", REPORT).unwrap());
    assert_eq!(
        r["summary"],
        json!({"pass":1,"fail":2,"warn":0,"error":0,"skip":0})
    );
    assert_eq!(r["metadata"]["labels"]["pss-guard.io/node"], NODE);
    let fail = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["result"] == "fail")
        .unwrap()
        .clone();
    assert_eq!(fail["policy"], "pss-guard");
    assert_eq!(fail["properties"]["node"], NODE);
    assert_eq!(fail["properties"]["decision"], "refused");
    assert_eq!(fail["resources"][0]["kind"], "Pod");
    assert!(
        fail["message"]
            .as_str()
            .unwrap()
            .starts_with("non-default capabilities ("),
        "{fail}"
    );
    // Written by server-side apply with this node's field manager, never by a plain create.
    let applies: Vec<_> = api.with(|s| {
        s.calls
            .iter()
            .filter(|c| c.path.contains("/policyreports/"))
            .map(|c| (c.method.clone(), c.content_type.clone(), c.query.clone()))
            .collect()
    });
    assert!(
        applies.iter().all(|(m, ct, q)| m == "DELETE"
            || (m == "PATCH"
                && ct.starts_with("application/apply-patch")
                && q.contains("fieldManager=pss-guard-agent")
                && q.contains("force=true"))),
        "{applies:?}"
    );
    assert!(
        api.with(|s| s.get(POLICYREPORTS, "team-a", "pss-guard-other"))
            .is_some()
    );

    // 2. Events: one on the pod counted twice, one on the Deployment (through its ReplicaSet)
    // counted twice, one on the CronJob (through its Job).
    let reason = "PodSecurityNodeRefused";
    api.wait(20, "the events counted", |s| {
        let pod = events(s, "team-a", "Pod", "web-5d8f-abcde", reason);
        let dep = events(s, "team-a", "Deployment", "web", reason);
        let cron = events(s, "team-a", "CronJob", "nightly", reason);
        (pod.len() == 1 && pod[0].0 == 2 && dep.len() == 1 && dep[0].0 == 2 && cron.len() == 1)
            .then_some(())
    });
    let ev = api.with(|s| {
        s.all(EVENTS)
            .into_iter()
            .find(|e| e["involvedObject"]["kind"] == "Deployment")
            .unwrap()
    });
    assert_eq!(ev["type"], "Warning");
    assert_eq!(ev["source"]["host"], NODE);
    let msg = ev["message"].as_str().unwrap();
    assert!(
        msg.starts_with("pod web-5d8f-abcde: container \"app\" violates PodSecurity \"baseline:latest\": non-default capabilities"),
        "{msg}"
    );
    assert!(
        api.with(|s| events(s, "team-a", "Pod", "ok-1", reason))
            .is_empty()
    );
    // The repeat was a merge patch of the count, not a second event.
    let patches = api.with(|s| {
        s.calls
            .iter()
            .filter(|c| c.method == "PATCH" && c.path.contains("/events/"))
            .count()
    });
    assert_eq!(
        patches, 2,
        "one count patch on the pod, one on the deployment"
    );
    assert_eq!(api.with(|s| s.all(EVENTS).len()), 4);

    // 3. The refused pod is deleted: its results go, the others stay.
    api.with(|s| s.remove(PODS, "team-a", "web-5d8f-abcde"));
    api.wait(20, "web's results removed", |s| {
        (results(s, POLICYREPORTS, "team-a")
            == Some(vec![
                triple("nightly-29-xyz", "capabilities_baseline", "fail"),
                triple("ok-1", "baseline", "pass"),
            ]))
        .then_some(())
    });

    // 4. The last pods go: the report goes.
    api.with(|s| {
        s.remove(PODS, "team-a", "nightly-29-xyz");
        s.remove(PODS, "team-a", "ok-1");
    });
    api.wait(20, "the report deleted", |s| {
        s.get(POLICYREPORTS, "team-a", REPORT)
            .is_none()
            .then_some(())
    });
    a.wait_metrics(&[
        "pss_guard_events_total{result=\"created\"} 4",
        "pss_guard_events_total{result=\"patched\"} 2",
        "pss_guard_events_total{result=\"failed\"} 0",
        "pss_guard_report_writes_total{result=\"failed\"} 0",
        "pss_guard_report_results_dropped 0",
    ]);
}

#[test]
fn overload_conflicts_and_lost_events_are_survived_and_openreports_can_be_chosen() {
    let api = StandIn::start(&[REPORTS]);
    let node = Node::new();
    api.with(|s| {
        s.put(PODS, pod("team-b", "db-0", "pod-db", vec![]));
        s.faults.push(Fault {
            method: "PATCH",
            path: "/reports/".into(),
            status: 429,
            times: 1,
        });
        s.faults.push(Fault {
            method: "POST",
            path: "/events".into(),
            status: 409,
            times: 1,
        });
    });
    let a = agent(
        &api,
        &node,
        &["--reports", "openreports", "--events", "--api-qps", "20"],
    );
    node.decide_pod("team-b", "db-0", "pod-db", "c1", true);
    // The 429 pauses every call for at least a second, then the write goes through.
    api.wait(20, "the report after the 429", |s| {
        (results(s, REPORTS, "team-b")
            == Some(vec![triple("db-0", "capabilities_baseline", "fail")]))
        .then_some(())
    });
    let (t429, next) = api.with(|s| {
        let i = s.calls.iter().position(|c| c.status == 429).unwrap();
        let paced = |c: &&support::api::Call| {
            c.path.contains("/reports") || c.path.contains("/events") || c.path.contains("/pods/")
        };
        (
            s.calls[i].at,
            s.calls[i + 1..].iter().find(paced).unwrap().at,
        )
    });
    assert!(
        next.duration_since(t429) >= Duration::from_millis(900),
        "the next call came {:?} after the 429",
        next.duration_since(t429)
    );
    let r = api.with(|s| s.get(REPORTS, "team-b", REPORT).unwrap());
    assert_eq!(r["apiVersion"], "openreports.io/v1alpha1");
    assert_eq!(r["source"], "pss-guard");
    // The taken name (409) got another one.
    api.wait(20, "the pod's event", |s| {
        (events(s, "team-b", "Pod", "db-0", "PodSecurityNodeRefused").len() == 1).then_some(())
    });
    // The event expires on the server; the next repeat creates it again, with the count.
    api.with(|s| {
        let e = s.all(EVENTS).into_iter().next().unwrap();
        s.remove(EVENTS, "team-b", e["metadata"]["name"].as_str().unwrap());
    });
    node.decide_pod("team-b", "db-0", "pod-db", "c2", true);
    api.wait(20, "the event created again", |s| {
        let e = events(s, "team-b", "Pod", "db-0", "PodSecurityNodeRefused");
        (e.len() == 1 && e[0].0 == 2).then_some(())
    });
    a.wait_metrics(&["pss_guard_report_writes_total{result=\"failed\"} 1"]);
}

#[test]
fn a_burst_of_2000_decisions_stays_within_the_call_budget_and_loses_nothing() {
    const QPS: usize = 10;
    const NAMESPACES: usize = 20;
    const PER_NS: usize = 100;
    let api = StandIn::start(&[POLICYREPORTS]);
    let node = Node::new();
    let qps = QPS.to_string();
    let a = agent(
        &api,
        &node,
        &["--reports", "policyreport", "--events", "--api-qps", &qps],
    );
    // One real refusal record from the hook, then 2,000 of its kind for distinct pods, appended
    // at once as 2,000 concurrent hooks would.
    node.decide_pod("burst-0", "seed", "seed-uid", "c0", true);
    let seed: Value = {
        let text = std::fs::read_to_string(node.log_path()).unwrap();
        serde_json::from_str(text.lines().last().unwrap()).unwrap()
    };
    let mut burst = Vec::new();
    for n in 0..NAMESPACES {
        for p in 0..PER_NS {
            let mut r = seed.clone();
            r["namespace"] = json!(format!("burst-{n}"));
            r["pod"] = json!(format!("pod-{p:03}"));
            r["pod_uid"] = json!(format!("uid-{n}-{p}"));
            burst.extend_from_slice(&serde_json::to_vec(&r).unwrap());
            burst.push(b'\n');
        }
    }
    let started = Instant::now();
    std::fs::OpenOptions::new()
        .append(true)
        .open(node.log_path())
        .unwrap()
        .write_all(&burst)
        .unwrap();
    // Every namespace's report ends up with all of its pods (burst-0 with the seed too).
    api.wait(90, "all 2,000 results", |s| {
        (0..NAMESPACES)
            .all(|n| {
                let want = PER_NS + usize::from(n == 0);
                results(s, POLICYREPORTS, &format!("burst-{n}")).is_some_and(|r| r.len() == want)
            })
            .then_some(())
    });
    let took = started.elapsed();
    for n in 0..NAMESPACES {
        let r = api.with(|s| results(s, POLICYREPORTS, &format!("burst-{n}")).unwrap());
        for p in 0..PER_NS {
            assert!(
                r.contains(&triple(
                    &format!("pod-{p:03}"),
                    "capabilities_baseline",
                    "fail"
                )),
                "burst-{n} lacks pod-{p:03}"
            );
        }
    }
    // Let the event queue work a while, then check every call the agent made: no window of one
    // second holds more than QPS calls (watches and lists of the snapshot and pod watch aside).
    std::thread::sleep(Duration::from_secs(3));
    let times: Vec<Instant> = api.with(|s| {
        s.calls
            .iter()
            .filter(|c| {
                c.path.contains("/policyreports")
                    || c.path.contains("/events")
                    || (c.path.starts_with("/api/v1/namespaces/") && c.path.contains("/pods/"))
            })
            .map(|c| c.at)
            .collect()
    });
    let mut worst = 0;
    for (i, t) in times.iter().enumerate() {
        // Arrival jitter on a loaded machine (a call sent late by the agent arrives closer to the
        // next): a window of 0.9 s, which 11 calls paced at 10/s cannot fit into.
        let n = times[i..]
            .iter()
            .take_while(|u| u.duration_since(*t) < Duration::from_millis(900))
            .count();
        worst = worst.max(n);
    }
    assert!(
        worst <= QPS,
        "{worst} calls within one second (budget {QPS}/s), {} calls in all",
        times.len()
    );
    let writes = api.with(|s| {
        s.calls
            .iter()
            .filter(|c| c.path.contains("/policyreports/"))
            .count()
    });
    eprintln!(
        "burst: {} results in {NAMESPACES} reports after {took:?}, {writes} report writes, {} calls, worst second {worst}",
        NAMESPACES * PER_NS,
        times.len()
    );
    assert!(writes < 200, "{writes} report writes for 2,000 decisions");
    let m = a.metrics();
    let dropped = m
        .lines()
        .find_map(|l| l.strip_prefix("pss_guard_events_total{result=\"dropped\"} "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap();
    assert!(dropped > 0, "the event queue is bounded:\n{m}");
}

/// A running container as containerd keeps its task bundle, below `root`.
fn running_container(
    root: &std::path::Path,
    ns: &str,
    pod: &str,
    uid: &str,
    id: &str,
    privileged: bool,
) {
    let tasks = root.join("run/containerd/io.containerd.runtime.v2.task/k8s.io");
    let mut app = spec(&["/bin/sleep", "1000"]);
    if privileged {
        for set in ["bounding", "effective", "permitted"] {
            app["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_SYS_ADMIN"));
        }
    }
    app["annotations"] = json!({
        "io.kubernetes.cri.container-type": "container",
        "io.kubernetes.cri.container-name": "app",
        "io.kubernetes.cri.sandbox-id": format!("sb-{id}"),
        "io.kubernetes.cri.sandbox-name": pod,
        "io.kubernetes.cri.sandbox-namespace": ns,
        "io.kubernetes.cri.sandbox-uid": uid,
        "io.kubernetes.cri.image-name": "registry.example/app:1"
    });
    let mut sandbox = spec(&["/pause"]);
    sandbox["annotations"] = json!({"io.kubernetes.cri.container-type": "sandbox"});
    for (name, s) in [(format!("sb-{id}"), &sandbox), (id.to_owned(), &app)] {
        std::fs::create_dir_all(tasks.join(&name)).unwrap();
        std::fs::write(
            tasks.join(&name).join("config.json"),
            serde_json::to_vec(s).unwrap(),
        )
        .unwrap();
    }
}

#[test]
fn the_node_audit_reports_running_containers_enforcement_would_refuse() {
    let api = StandIn::start(&[POLICYREPORTS]);
    let node = Node::new();
    let root = node.path().join("host");
    std::fs::create_dir_all(root.join("etc/pss-guard")).unwrap();
    std::fs::copy(node.policy_path(), root.join("etc/pss-guard/policy.toml")).unwrap();
    running_container(&root, "team-c", "legacy-0", "uid-legacy", "app1", true);
    running_container(&root, "team-c", "fine-0", "uid-fine", "app2", false);
    api.with(|s| {
        s.put(PODS, pod("team-c", "legacy-0", "uid-legacy", vec![]));
        s.put(PODS, pod("team-c", "fine-0", "uid-fine", vec![]));
    });
    let _a = agent(
        &api,
        &node,
        &[
            "--reports",
            "policyreport",
            "--events",
            "--host-root",
            root.to_str().unwrap(),
            "--audit-interval",
            "1",
        ],
    );
    api.wait(20, "the audit's results", |s| {
        (results(s, POLICYREPORTS, "team-c")
            == Some(vec![
                triple("fine-0", "baseline", "pass"),
                triple("legacy-0", "capabilities_baseline", "fail"),
            ]))
        .then_some(())
    });
    let r = api.with(|s| s.get(POLICYREPORTS, "team-c", REPORT).unwrap());
    let fail = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["result"] == "fail")
        .unwrap()
        .clone();
    assert_eq!(fail["properties"]["source"], "audit");
    assert_eq!(fail["properties"]["decision"], "would_refuse");
    // Predictions make no Events: only starts do.
    assert!(api.with(|s| s.all(EVENTS).is_empty()));
    // The privileged container stops: the next pass drops its result.
    std::fs::remove_dir_all(root.join("run/containerd/io.containerd.runtime.v2.task/k8s.io/app1"))
        .unwrap();
    api.wait(20, "legacy-0's result dropped", |s| {
        (results(s, POLICYREPORTS, "team-c") == Some(vec![triple("fine-0", "baseline", "pass")]))
            .then_some(())
    });
}

#[test]
fn without_the_report_crd_no_report_is_written_but_events_are() {
    // A cluster without the PolicyReport CRD: its resource answers 404.
    let api = StandIn::start(&[]);
    let node = Node::new();
    api.with(|s| s.put(PODS, pod("team-d", "x-0", "uid-x", vec![])));
    let a = agent(&api, &node, &["--reports", "policyreport", "--events"]);
    node.decide_pod("team-d", "x-0", "uid-x", "c1", true);
    node.decide_pod("team-d", "x-0", "uid-x", "c2", true);
    api.wait(20, "the pod's event", |s| {
        let e = events(s, "team-d", "Pod", "x-0", "PodSecurityNodeRefused");
        (e.len() == 1 && e[0].0 == 2).then_some(())
    });
    a.wait_metrics(&["pss_guard_report_api_available 0"]);
    // One discovery list, no write attempt per decision.
    let tries = api.with(|s| {
        s.calls
            .iter()
            .filter(|c| c.path.contains("policyreports"))
            .count()
    });
    assert_eq!(tries, 1);
}

#[test]
fn an_observe_mode_would_refuse_is_a_fail_and_a_would_refuse_event() {
    let api = StandIn::start(&[POLICYREPORTS]);
    let node = Node::new();
    api.with(|s| s.put(PODS, pod("team-e", "obs-0", "uid-obs", vec![])));
    let _a = agent(&api, &node, &["--reports", "policyreport", "--events"]);
    // The hook's refusal record as observe mode writes it: decision `would_refuse`, the
    // violations kept (the hook of this build enforces; the record is its, renamed).
    node.decide_pod("team-e", "seed", "uid-seed", "c0", true);
    let mut rec: Value = {
        let text = std::fs::read_to_string(node.log_path()).unwrap();
        serde_json::from_str(text.lines().last().unwrap()).unwrap()
    };
    rec["decision"] = json!("would_refuse");
    rec["pod"] = json!("obs-0");
    rec["pod_uid"] = json!("uid-obs");
    let mut line = serde_json::to_vec(&rec).unwrap();
    line.push(b'\n');
    std::fs::OpenOptions::new()
        .append(true)
        .open(node.log_path())
        .unwrap()
        .write_all(&line)
        .unwrap();
    api.wait(20, "obs-0's fail and its Event", |s| {
        let fail = results(s, POLICYREPORTS, "team-e")
            .is_some_and(|r| r.contains(&triple("obs-0", "capabilities_baseline", "fail")));
        let ev = events(s, "team-e", "Pod", "obs-0", "PodSecurityNodeWouldRefuse");
        (fail && ev.len() == 1).then_some(())
    });
    let r = api.with(|s| s.get(POLICYREPORTS, "team-e", REPORT).unwrap());
    let obs = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["resources"][0]["name"] == "obs-0")
        .unwrap()
        .clone();
    assert_eq!(obs["properties"]["decision"], "would_refuse");
    assert!(
        api.with(|s| events(s, "team-e", "Pod", "obs-0", "PodSecurityNodeRefused"))
            .is_empty()
    );
}
