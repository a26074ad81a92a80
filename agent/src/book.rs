//! What this node's reports should say: the latest results of every container of every pod the
//! node decided, by namespace. Pure state, no I/O: [`crate::publish`] feeds it decision records
//! (the hook's, from the log, and the node audit's) and pod deletions, and writes what it holds.
//!
//! One record replaces all results of its container (its newest decision is what the node does
//! at that container's next start). Results per record:
//! - `refused`, `would_refuse`: one `fail` per violated check (rule = the PSS check ID, message
//!   `reason (detail)` as Pod Security Admission words each violation);
//! - `audit`: one `warn` per check the audit level finds violated (the enforced level passed);
//! - `allowed`: one `pass` (rule = the enforced level), plus a `warn` per check the warn or
//!   audit level finds violated;
//! - `exempt`: one `skip` (rule `exempt`, the exemption as message);
//! - `error`: one `error` (rule `evaluation`, the error as message): the hook refused it.
//!
//! Records without a pod (a container started outside Kubernetes) are not reported: a
//! PolicyReport's results point at Kubernetes objects.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use k8s_openapi::api::core::v1::ObjectReference;
use serde::Deserialize;
use serde_json::Value;

use crate::policyreport::{CATEGORY, Outcome, POLICY, ReportResult, SOURCE, Timestamp};

/// Where a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The hook's decision at a container start, from the decision log.
    Hook,
    /// The agent's node audit of a running container.
    Audit,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Hook => "hook",
            Source::Audit => "audit",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Violation {
    pub check: String,
    pub reason: String,
    pub detail: String,
}

impl Violation {
    /// `reason (detail)`, Pod Security Admission's wording of one violation.
    pub fn message(&self) -> String {
        if self.detail.is_empty() {
            self.reason.clone()
        } else {
            format!("{} ({})", self.reason, self.detail)
        }
    }
}

/// The fields of a decision record the reports use (see the decision log format in the
/// README); unknown fields are ignored, missing ones are empty.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Record {
    pub decision: String,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub pod_uid: Option<String>,
    pub container: String,
    pub container_id: String,
    pub policy: String,
    pub violations: Vec<Violation>,
    pub audit_policy: Option<String>,
    pub audit_violations: Vec<Violation>,
    pub warn_policy: Option<String>,
    pub warn_violations: Vec<Violation>,
    pub exempt: Option<String>,
    pub error: Option<String>,
}

impl Record {
    pub fn from_value(v: &Value) -> Option<Record> {
        serde_json::from_value(v.clone()).ok()
    }

    /// Namespace and pod, when the record names both.
    pub fn pod_key(&self) -> Option<(&str, &str)> {
        match (self.namespace.as_deref(), self.pod.as_deref()) {
            (Some(ns), Some(pod)) if !ns.is_empty() && !pod.is_empty() => Some((ns, pod)),
            _ => None,
        }
    }

    /// Whether enforcement refuses (or, in observe mode, would refuse) this container.
    pub fn refusal(&self) -> Option<Refusal> {
        match self.decision.as_str() {
            "refused" => Some(Refusal::Refused),
            "would_refuse" => Some(Refusal::WouldRefuse),
            _ => None,
        }
    }

    /// `violates PodSecurity "baseline:latest": privileged (...), ...`, or the error.
    pub fn psa_message(&self) -> String {
        if self.violations.is_empty() {
            return match &self.error {
                Some(e) => format!("could not be evaluated, refused: {e}"),
                None => format!("violates PodSecurity {:?}", self.policy),
            };
        }
        let parts: Vec<String> = self.violations.iter().map(Violation::message).collect();
        format!(
            "violates PodSecurity {:?}: {}",
            self.policy,
            parts.join(", ")
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Refused,
    WouldRefuse,
}

impl Refusal {
    /// The Event reason.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Refused => "PodSecurityNodeRefused",
            Refusal::WouldRefuse => "PodSecurityNodeWouldRefuse",
        }
    }
}

fn level(policy: &str) -> &str {
    policy.split(':').next().unwrap_or(policy)
}

/// The results one record gives, for the report of its namespace.
pub fn results(rec: &Record, node: &str, source: Source, now: Timestamp) -> Vec<ReportResult> {
    let Some((ns, pod)) = rec.pod_key() else {
        return Vec::new();
    };
    let resource = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(ns.to_owned()),
        name: Some(pod.to_owned()),
        uid: rec.pod_uid.clone().filter(|u| !u.is_empty()),
        ..ObjectReference::default()
    };
    let result = |rule: &str, outcome: Outcome, message: String, policy: &str| {
        let mut properties = BTreeMap::new();
        properties.insert("node".to_owned(), node.to_owned());
        properties.insert("container".to_owned(), rec.container.clone());
        properties.insert("decision".to_owned(), rec.decision.clone());
        properties.insert("source".to_owned(), source.as_str().to_owned());
        if !policy.is_empty() {
            properties.insert("policy".to_owned(), policy.to_owned());
        }
        ReportResult {
            source: SOURCE.to_owned(),
            policy: POLICY.to_owned(),
            rule: rule.to_owned(),
            category: CATEGORY.to_owned(),
            severity: None,
            timestamp: now,
            result: outcome,
            scored: true,
            resources: vec![resource.clone()],
            message,
            properties,
        }
    };
    let mut out = Vec::new();
    let warnings = |out: &mut Vec<ReportResult>, list: &[Violation], policy: Option<&String>| {
        for v in list {
            out.push(result(
                &v.check,
                Outcome::Warn,
                v.message(),
                policy.map_or("", |p| p.as_str()),
            ));
        }
    };
    match rec.decision.as_str() {
        "refused" | "would_refuse" => {
            for v in &rec.violations {
                out.push(result(&v.check, Outcome::Fail, v.message(), &rec.policy));
            }
            if out.is_empty() {
                // A refusal without a violation is a fail-closed error.
                out.push(result(
                    "evaluation",
                    Outcome::Error,
                    rec.error.clone().unwrap_or_default(),
                    &rec.policy,
                ));
            }
        }
        "audit" => warnings(&mut out, &rec.audit_violations, rec.audit_policy.as_ref()),
        "allowed" => {
            out.push(result(
                level(&rec.policy),
                Outcome::Pass,
                format!("allowed by PodSecurity {:?}", rec.policy),
                &rec.policy,
            ));
            warnings(&mut out, &rec.audit_violations, rec.audit_policy.as_ref());
            warnings(&mut out, &rec.warn_violations, rec.warn_policy.as_ref());
        }
        "exempt" => out.push(result(
            "exempt",
            Outcome::Skip,
            rec.exempt.clone().unwrap_or_default(),
            &rec.policy,
        )),
        _ => out.push(result(
            "evaluation",
            Outcome::Error,
            rec.error.clone().unwrap_or_else(|| rec.decision.clone()),
            &rec.policy,
        )),
    }
    out
}

#[derive(Debug)]
struct Pod {
    uid: Option<String>,
    /// Results by container name.
    containers: BTreeMap<String, (Source, Vec<ReportResult>)>,
    last_seen: Instant,
}

#[derive(Debug, Default)]
pub struct Namespace {
    pods: BTreeMap<String, Pod>,
    /// Changed since last written.
    pub dirty: Option<Instant>,
    /// A report of this node is (or may be) on the server.
    pub on_server: bool,
    /// A write failed: not before then.
    pub not_before: Option<Instant>,
    /// Writes failed in a row.
    pub failures: u32,
}

/// The report of one namespace as it should be written.
#[derive(Debug, PartialEq)]
pub struct Rendered {
    pub results: Vec<ReportResult>,
    /// Results left out by the cap.
    pub dropped: usize,
}

#[derive(Debug, Default)]
pub struct Book {
    pub namespaces: BTreeMap<String, Namespace>,
}

fn priority(r: &ReportResult) -> Outcome {
    r.result
}

impl Book {
    /// Takes a record in; returns whether it changed a report.
    pub fn ingest(&mut self, rec: &Record, node: &str, source: Source, now: Timestamp) -> bool {
        let Some((ns, pod)) = rec.pod_key() else {
            return false;
        };
        let results = results(rec, node, source, now);
        let n = self.namespaces.entry(ns.to_owned()).or_default();
        let uid = rec.pod_uid.clone().filter(|u| !u.is_empty());
        let p = n.pods.entry(pod.to_owned()).or_insert_with(|| Pod {
            uid: uid.clone(),
            containers: BTreeMap::new(),
            last_seen: Instant::now(),
        });
        if uid.is_some() && p.uid != uid {
            // A new pod of the same name (a StatefulSet's): the old one's results are gone.
            p.containers.clear();
            p.uid = uid;
        }
        p.last_seen = Instant::now();
        let old = p
            .containers
            .insert(rec.container.clone(), (source, results));
        let changed = match (&old, p.containers.get(&rec.container)) {
            (Some((_, a)), Some((_, b))) => !same_results(a, b),
            _ => true,
        };
        if changed && n.dirty.is_none() {
            n.dirty = Some(Instant::now());
        }
        changed
    }

    /// Forgets a pod (deleted, or no longer on this node). `uid`, when given, must match.
    pub fn forget_pod(&mut self, ns: &str, pod: &str, uid: Option<&str>) -> bool {
        let Some(n) = self.namespaces.get_mut(ns) else {
            return false;
        };
        let matches = n
            .pods
            .get(pod)
            .is_some_and(|p| uid.is_none() || p.uid.is_none() || p.uid.as_deref() == uid);
        if matches {
            n.pods.remove(pod);
            if n.dirty.is_none() {
                n.dirty = Some(Instant::now());
            }
        }
        matches
    }

    /// Drops the node audit's results for containers it no longer found running (`running` =
    /// (namespace, pod, container) the last audit saw). The hook's results stay until the pod
    /// goes: a refused container never runs, yet its pod still waits to start it.
    pub fn audit_done(&mut self, running: &BTreeSet<(String, String, String)>) {
        for (ns, n) in &mut self.namespaces {
            let mut changed = false;
            for (pod, p) in &mut n.pods {
                p.containers.retain(|c, (src, _)| {
                    let keep = *src != Source::Audit
                        || running.contains(&(ns.clone(), pod.clone(), c.clone()));
                    changed |= !keep;
                    keep
                });
            }
            n.pods.retain(|_, p| !p.containers.is_empty());
            if changed && n.dirty.is_none() {
                n.dirty = Some(Instant::now());
            }
        }
    }

    /// Pods whose last record is older than `before` and that `keep` does not name: gone from
    /// the node (the pod watch's view) once it has listed.
    pub fn stale_pods(
        &self,
        before: Instant,
        keep: impl Fn(&str, &str, Option<&str>) -> bool,
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (ns, n) in &self.namespaces {
            for (pod, p) in &n.pods {
                if p.last_seen < before && !keep(ns, pod, p.uid.as_deref()) {
                    out.push((ns.clone(), pod.clone()));
                }
            }
        }
        out
    }

    /// Marks a namespace whose report may be on the server (found at start): it is rewritten,
    /// or deleted when the node has nothing for it.
    pub fn adopt(&mut self, ns: &str) {
        let n = self.namespaces.entry(ns.to_owned()).or_default();
        n.on_server = true;
        if n.dirty.is_none() {
            n.dirty = Some(Instant::now());
        }
    }

    /// The namespace to write next: the one dirty the longest, unless it waits for a retry.
    pub fn next_dirty(&self) -> Option<String> {
        let now = Instant::now();
        self.namespaces
            .iter()
            .filter(|(_, n)| n.not_before.is_none_or(|t| t <= now))
            .filter_map(|(ns, n)| n.dirty.map(|t| (t, ns)))
            .min()
            .map(|(_, ns)| ns.clone())
    }

    /// When the next namespace waiting for a retry may be written.
    pub fn next_retry(&self) -> Option<Instant> {
        self.namespaces
            .values()
            .filter(|n| n.dirty.is_some())
            .filter_map(|n| n.not_before)
            .min()
    }

    /// A write of `ns` failed: it stays dirty and is tried again after `first`, doubled for
    /// each failure in a row, at most `max`.
    pub fn retry_later(&mut self, ns: &str, first: std::time::Duration, max: std::time::Duration) {
        if let Some(n) = self.namespaces.get_mut(ns) {
            n.dirty.get_or_insert_with(Instant::now);
            let wait = first.saturating_mul(1 << n.failures.min(16)).min(max);
            n.failures += 1;
            n.not_before = Some(Instant::now() + wait);
        }
    }

    /// Forgets a namespace with no pods, no report on the server and nothing to write.
    pub fn remove_if_empty(&mut self, ns: &str) {
        if self
            .namespaces
            .get(ns)
            .is_some_and(|n| n.pods.is_empty() && !n.on_server && n.dirty.is_none())
        {
            self.namespaces.remove(ns);
        }
    }

    /// The report of `ns`: fails first, then errors, warnings, skips, passes; at most `max`.
    pub fn render(&self, ns: &str, max: usize) -> Rendered {
        let mut results: Vec<ReportResult> = self
            .namespaces
            .get(ns)
            .map(|n| {
                n.pods
                    .values()
                    .flat_map(|p| p.containers.values().flat_map(|(_, r)| r.iter().cloned()))
                    .collect()
            })
            .unwrap_or_default();
        // Stable: within one outcome, pods and containers keep their name order.
        results.sort_by_key(priority);
        let dropped = results.len().saturating_sub(max);
        results.truncate(max);
        Rendered { results, dropped }
    }

    /// How many pods the book holds for `ns`.
    pub fn pods(&self, ns: &str) -> usize {
        self.namespaces.get(ns).map_or(0, |n| n.pods.len())
    }
}

/// Equal but for the timestamps: a repeated decision does not need a write.
fn same_results(a: &[ReportResult], b: &[ReportResult]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.rule == y.rule
                && x.result == y.result
                && x.message == y.message
                && x.resources == y.resources
                && x.properties == y.properties
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T: Timestamp = Timestamp {
        seconds: 100,
        nanos: 0,
    };

    fn rec(v: Value) -> Record {
        Record::from_value(&v).unwrap_or_default()
    }

    fn refused(pod: &str, uid: &str) -> Record {
        rec(
            json!({"decision":"refused","namespace":"team-a","pod":pod,"pod_uid":uid,
            "container":"app","policy":"baseline:latest","violations":[
            {"check":"privileged","reason":"privileged","detail":"container \"app\" must not set securityContext.privileged=true"},
            {"check":"hostNamespaces","reason":"host namespaces","detail":"hostNetwork=true"}]}),
        )
    }

    #[test]
    fn a_refusal_is_one_fail_per_check_with_psas_words() {
        let r = results(&refused("web", "u1"), "n1", Source::Hook, T);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].rule, "privileged");
        assert_eq!(r[0].result, Outcome::Fail);
        assert_eq!(
            r[0].message,
            "privileged (container \"app\" must not set securityContext.privileged=true)"
        );
        assert_eq!(r[0].properties["node"], "n1");
        assert_eq!(r[0].resources[0].kind.as_deref(), Some("Pod"));
        assert_eq!(r[0].resources[0].uid.as_deref(), Some("u1"));
        let would = rec(
            json!({"decision":"would_refuse","namespace":"a","pod":"p","container":"c",
            "policy":"baseline:latest","violations":[{"check":"privileged","reason":"privileged","detail":""}]}),
        );
        assert_eq!(would.refusal(), Some(Refusal::WouldRefuse));
        let r = results(&would, "n1", Source::Audit, T);
        assert_eq!(
            (r[0].result, r[0].message.as_str()),
            (Outcome::Fail, "privileged")
        );
        assert_eq!(
            refused("web", "u1").psa_message(),
            "violates PodSecurity \"baseline:latest\": privileged (container \"app\" must not set securityContext.privileged=true), host namespaces (hostNetwork=true)"
        );
    }

    #[test]
    fn other_decisions_map_to_pass_warn_skip_error_and_podless_records_to_nothing() {
        let allowed = rec(
            json!({"decision":"allowed","namespace":"a","pod":"p","container":"c",
            "policy":"baseline:latest","warn_policy":"restricted:latest",
            "warn_violations":[{"check":"runAsNonRoot","reason":"runAsNonRoot != true","detail":"x"}]}),
        );
        let r = results(&allowed, "n", Source::Hook, T);
        let got: Vec<(&str, Outcome)> = r.iter().map(|r| (r.rule.as_str(), r.result)).collect();
        assert_eq!(
            got,
            [("baseline", Outcome::Pass), ("runAsNonRoot", Outcome::Warn)]
        );
        assert_eq!(r[1].properties["policy"], "restricted:latest");
        let exempt = rec(
            json!({"decision":"exempt","namespace":"a","pod":"p","container":"c","exempt":"namespace kube-system"}),
        );
        assert_eq!(
            results(&exempt, "n", Source::Hook, T)[0].result,
            Outcome::Skip
        );
        let error = rec(
            json!({"decision":"error","namespace":"a","pod":"p","container":"c","error":"no spec"}),
        );
        let r = results(&error, "n", Source::Hook, T);
        assert_eq!(
            (r[0].result, r[0].message.as_str()),
            (Outcome::Error, "no spec")
        );
        let bare = rec(json!({"decision":"refused","container_id":"abc"}));
        assert!(results(&bare, "n", Source::Hook, T).is_empty());
        let mut b = Book::default();
        assert!(!b.ingest(&bare, "n", Source::Hook, T));
    }

    #[test]
    fn repeats_change_nothing_and_a_new_pod_of_the_same_name_replaces_the_old() {
        let mut b = Book::default();
        assert!(b.ingest(&refused("web", "u1"), "n", Source::Hook, T));
        if let Some(n) = b.namespaces.get_mut("team-a") {
            n.dirty = None;
        }
        let later = Timestamp {
            seconds: 200,
            nanos: 0,
        };
        assert!(!b.ingest(&refused("web", "u1"), "n", Source::Hook, later));
        assert_eq!(b.next_dirty(), None);
        let ok = rec(
            json!({"decision":"allowed","namespace":"team-a","pod":"web","pod_uid":"u2",
            "container":"side","policy":"baseline:latest"}),
        );
        assert!(b.ingest(&ok, "n", Source::Hook, later));
        let r = b.render("team-a", 100);
        assert_eq!(r.results.len(), 1, "{r:?}");
        assert_eq!(r.results[0].result, Outcome::Pass);
        // A deletion of the old uid leaves the new pod alone; its own uid removes it.
        assert!(!b.forget_pod("team-a", "web", Some("u1")));
        assert!(b.forget_pod("team-a", "web", Some("u2")));
        assert!(b.render("team-a", 100).results.is_empty());
    }

    #[test]
    fn the_cap_keeps_fails_first_and_counts_the_rest() {
        let mut b = Book::default();
        for i in 0..5 {
            let ok = rec(
                json!({"decision":"allowed","namespace":"team-a","pod":format!("ok-{i}"),
                "container":"c","policy":"baseline:latest"}),
            );
            b.ingest(&ok, "n", Source::Hook, T);
        }
        b.ingest(&refused("zz-bad", "u9"), "n", Source::Hook, T);
        let r = b.render("team-a", 3);
        assert_eq!(r.dropped, 4);
        let got: Vec<Outcome> = r.results.iter().map(|r| r.result).collect();
        assert_eq!(got, [Outcome::Fail, Outcome::Fail, Outcome::Pass]);
    }

    #[test]
    fn the_audit_drops_only_its_own_results_for_containers_gone() {
        let mut b = Book::default();
        let running = rec(
            json!({"decision":"would_refuse","namespace":"a","pod":"p","container":"c",
            "policy":"baseline:latest","violations":[{"check":"privileged","reason":"privileged","detail":""}]}),
        );
        b.ingest(&running, "n", Source::Audit, T);
        b.ingest(&refused("web", "u1"), "n", Source::Hook, T);
        b.audit_done(&BTreeSet::new());
        assert_eq!(b.pods("a"), 0);
        assert_eq!(b.pods("team-a"), 1);
        assert!(b.next_dirty().is_some());
    }
}
