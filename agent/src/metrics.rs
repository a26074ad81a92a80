//! Counters over the decision log's records, and the Prometheus text exposition of them and of
//! the agent's own state.
//!
//! From the records:
//! - `pss_guard_evaluations_total{decision,policy_level,policy_version,mode}`, labelled as Pod
//!   Security Admission labels its `pod_security_evaluations_total`, under pss-guard's own
//!   name: the API server exports PSA's name, and alerts and dashboards summing it must not add
//!   node container starts to admissions. One evaluation per mode the record carries
//!   (`enforce` always, `audit` and `warn` when the record names their policy), `decision`
//!   `allow` or `deny`; a `would_refuse` record (observe mode) is a `deny` in mode `observe`,
//!   the one mode value PSA does not have (nothing was enforced). PSA's request labels
//!   (`request_operation`, `resource`, `subresource`) mean nothing at the node and are left out.
//! - `pss_guard_exemptions_total`, `pss_guard_errors_total{fatal="true"}` (PSA's
//!   `pod_security_exemptions_total` and `pod_security_errors_total`; the hook fails closed, so
//!   every error is fatal).
//! - `pss_guard_decisions_total{decision,namespace}`, `pss_guard_violations_total{decision,
//!   check,namespace}` (the enforced level's violations; `audit` records count their
//!   audit-level ones), `pss_guard_hook_eval_seconds` (histogram of `eval_us`),
//!   `pss_guard_policy_errors_total` (records whose `policy_error` says the hook ran on its
//!   built-in fallback policy), `pss_guard_log_lines_total`, `pss_guard_log_unparsed_total`.
//! - `pss_guard_cri_view_total{result}`: what became of the hook's CRI lookup (`used`,
//!   `skipped`, `unavailable`), from the records that carry `cri_view`.
//!
//! From the publisher (with `--reports` or `--events`, see [`crate::publish`]):
//! `pss_guard_report_writes_total{result="written"|"failed"}`,
//! `pss_guard_report_results_dropped` (results the `--max-results` cap leaves out, now),
//! `pss_guard_events_total{result="created"|"patched"|"dropped"|"failed"}`,
//! `pss_guard_publish_records_dropped_total` (records the publisher was too far behind to
//! take) and `pss_guard_api_calls_total` (every call the pacer let through).
//!
//! Bounded cardinality: no pod, container or image name is ever a label. Every label value comes
//! from a closed set (decision kinds, levels, versions `v1.N`/`latest`, modes) or is capped:
//! the first [`MAX_NAMESPACES`] namespaces seen keep their own `namespace` label and later ones
//! are counted under `namespace="_other"`; check IDs are capped the same way at [`MAX_CHECKS`].
//! Anything outside a closed set is `unknown`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::SystemTime;

use serde_json::Value;

use crate::status::Status;

const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
/// Namespaces with their own label value; the rest share `_other`.
pub const MAX_NAMESPACES: usize = 200;
/// Check IDs with their own label value (upstream has 20-odd); the rest share `_other`.
pub const MAX_CHECKS: usize = 64;
pub const OTHER: &str = "_other";
const DECISIONS: [&str; 6] = [
    "allowed",
    "refused",
    "would_refuse",
    "audit",
    "exempt",
    "error",
];
const LEVELS: [&str; 3] = ["privileged", "baseline", "restricted"];

/// A label whose distinct values are capped: the first `max` values seen are kept.
#[derive(Debug, Default)]
struct Capped {
    seen: BTreeSet<String>,
}

impl Capped {
    fn label(&mut self, v: &str, max: usize) -> String {
        if self.seen.contains(v) {
            return v.to_owned();
        }
        if self.seen.len() < max && v.len() <= 253 {
            self.seen.insert(v.to_owned());
            return v.to_owned();
        }
        OTHER.to_owned()
    }
}

/// What the publisher did; rendered only when it runs.
#[derive(Debug, Default)]
pub struct Publish {
    pub enabled: bool,
    /// Whether the report API answered (`None`: not asked yet, or no reports).
    pub reports_api: Option<bool>,
    pub report_writes: u64,
    pub report_failures: u64,
    /// Results the cap leaves out of each namespace's report, as last written.
    pub results_dropped: BTreeMap<String, usize>,
    pub events_created: u64,
    pub events_patched: u64,
    pub events_dropped: u64,
    pub events_failed: u64,
    pub records_dropped: u64,
    pub api_calls: u64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub publish: Publish,
    decisions: BTreeMap<(String, String), u64>,
    violations: BTreeMap<(String, String, String), u64>,
    /// (decision allow|deny, level, version, mode)
    evaluations: BTreeMap<(&'static str, String, String, &'static str), u64>,
    exemptions: u64,
    errors: u64,
    policy_errors: u64,
    /// `cri_view` by result: used, skipped, unavailable, unknown.
    cri_views: BTreeMap<&'static str, u64>,
    buckets: [u64; BUCKETS.len()],
    eval_count: u64,
    eval_sum: f64,
    lines: u64,
    unparsed: u64,
    namespaces: Capped,
    checks: Capped,
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `"baseline:v1.30"` to (`baseline`, `v1.30`), each from a closed set or `unknown`.
fn level_version(policy: &str) -> (String, String) {
    let (l, v) = policy.split_once(':').unwrap_or((policy, ""));
    let level = if LEVELS.contains(&l) { l } else { "unknown" };
    let version_ok = v == "latest"
        || v.strip_prefix("v1.").is_some_and(|m| {
            !m.is_empty() && m.len() <= 3 && m.bytes().all(|b| b.is_ascii_digit())
        });
    (
        level.to_owned(),
        if version_ok { v } else { "unknown" }.to_owned(),
    )
}

fn has_items(rec: &Value, key: &str) -> bool {
    rec.get(key)
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

impl Metrics {
    /// Counts one record. Unknown fields are ignored and missing ones count as empty, so records
    /// of an older or newer hook are still counted.
    pub fn observe(&mut self, rec: &Value) {
        self.lines += 1;
        let s = |k: &str| rec.get(k).and_then(Value::as_str).unwrap_or("");
        let decision = match s("decision") {
            d if DECISIONS.contains(&d) => d,
            _ => "unknown",
        };
        let ns = self.namespaces.label(s("namespace"), MAX_NAMESPACES);
        *self
            .decisions
            .entry((decision.to_owned(), ns.clone()))
            .or_insert(0) += 1;
        let list = if decision == "audit" {
            "audit_violations"
        } else {
            "violations"
        };
        if let Some(vs) = rec.get(list).and_then(Value::as_array) {
            for v in vs {
                let check = v.get("check").and_then(Value::as_str).unwrap_or("");
                let check = self.checks.label(check, MAX_CHECKS);
                *self
                    .violations
                    .entry((decision.to_owned(), check, ns.clone()))
                    .or_insert(0) += 1;
            }
        }
        match decision {
            "allowed" | "refused" | "audit" | "would_refuse" => {
                let mut count = |policy: &str, deny: bool, mode: &'static str| {
                    let (l, v) = level_version(policy);
                    let d = if deny { "deny" } else { "allow" };
                    *self.evaluations.entry((d, l, v, mode)).or_insert(0) += 1;
                };
                if decision == "would_refuse" {
                    count(s("policy"), true, "observe");
                } else {
                    count(s("policy"), decision == "refused", "enforce");
                }
                if let Some(p) = rec.get("audit_policy").and_then(Value::as_str) {
                    count(p, has_items(rec, "audit_violations"), "audit");
                }
                if let Some(p) = rec.get("warn_policy").and_then(Value::as_str) {
                    count(p, has_items(rec, "warn_violations"), "warn");
                }
            }
            "exempt" => self.exemptions += 1,
            "error" => self.errors += 1,
            _ => {}
        }
        if rec
            .get("policy_error")
            .and_then(Value::as_str)
            .is_some_and(|e| !e.is_empty())
        {
            self.policy_errors += 1;
        }
        if let Some(v) = rec.get("cri_view").and_then(Value::as_str) {
            let result = match v.split(':').next().unwrap_or("") {
                "used" => "used",
                "skipped" => "skipped",
                "unavailable" => "unavailable",
                _ => "unknown",
            };
            *self.cri_views.entry(result).or_insert(0) += 1;
        }
        if let Some(us) = rec.get("eval_us").and_then(Value::as_u64) {
            let secs = us as f64 / 1e6;
            self.eval_count += 1;
            self.eval_sum += secs;
            for (b, le) in self.buckets.iter_mut().zip(BUCKETS) {
                if secs <= le {
                    *b += 1;
                }
            }
        }
    }

    /// A line that is not a JSON object (or is longer than any record).
    pub fn unparsed(&mut self) {
        self.lines += 1;
        self.unparsed += 1;
    }

    /// The record-derived metrics in the Prometheus text format.
    pub fn render(&self, o: &mut String) {
        header(
            o,
            "pss_guard_evaluations_total",
            "counter",
            "Pod Security evaluations by the node hook, per mode (labelled as Pod Security Admission labels pod_security_evaluations_total).",
        );
        for ((d, l, v, m), n) in &self.evaluations {
            let _ = writeln!(
                o,
                "pss_guard_evaluations_total{{decision=\"{d}\",policy_level=\"{l}\",policy_version=\"{v}\",mode=\"{m}\"}} {n}"
            );
        }
        counter(
            o,
            "pss_guard_exemptions_total",
            "Containers the hook let through as exempt.",
            self.exemptions,
        );
        header(
            o,
            "pss_guard_errors_total",
            "counter",
            "Containers the hook could not evaluate (refused: it fails closed).",
        );
        let _ = writeln!(
            o,
            "pss_guard_errors_total{{fatal=\"true\"}} {}",
            self.errors
        );
        header(
            o,
            "pss_guard_decisions_total",
            "counter",
            "Hook decisions read from the node's decision log.",
        );
        for ((d, ns), n) in &self.decisions {
            let _ = writeln!(
                o,
                "pss_guard_decisions_total{{decision=\"{}\",namespace=\"{}\"}} {n}",
                escape(d),
                escape(ns)
            );
        }
        header(
            o,
            "pss_guard_violations_total",
            "counter",
            "Violated checks, by decision, check ID and namespace.",
        );
        for ((d, c, ns), n) in &self.violations {
            let _ = writeln!(
                o,
                "pss_guard_violations_total{{decision=\"{}\",check=\"{}\",namespace=\"{}\"}} {n}",
                escape(d),
                escape(c),
                escape(ns)
            );
        }
        counter(
            o,
            "pss_guard_policy_errors_total",
            "Decisions made on the built-in fallback policy because the node's policy file did not load.",
            self.policy_errors,
        );
        header(
            o,
            "pss_guard_cri_view_total",
            "counter",
            "The hook's CRI lookups by result: used, skipped, unavailable (the spec alone decided).",
        );
        for (result, n) in &self.cri_views {
            let _ = writeln!(o, "pss_guard_cri_view_total{{result=\"{result}\"}} {n}");
        }
        header(
            o,
            "pss_guard_hook_eval_seconds",
            "histogram",
            "Time the hook spent evaluating a container.",
        );
        for (b, le) in self.buckets.iter().zip(BUCKETS) {
            let _ = writeln!(o, "pss_guard_hook_eval_seconds_bucket{{le=\"{le}\"}} {b}");
        }
        let _ = writeln!(
            o,
            "pss_guard_hook_eval_seconds_bucket{{le=\"+Inf\"}} {}\npss_guard_hook_eval_seconds_sum {}\npss_guard_hook_eval_seconds_count {}",
            self.eval_count, self.eval_sum, self.eval_count
        );
        counter(
            o,
            "pss_guard_log_lines_total",
            "Lines read from the decision log.",
            self.lines,
        );
        counter(
            o,
            "pss_guard_log_unparsed_total",
            "Decision log lines that were not JSON objects.",
            self.unparsed,
        );
        if self.publish.enabled {
            self.publish.render(o);
        }
    }
}

impl Publish {
    fn render(&self, o: &mut String) {
        if let Some(up) = self.reports_api {
            gauge(
                o,
                "pss_guard_report_api_available",
                "1 when the report API (its CRD) answers; 0: no reports are written.",
                u8::from(up),
            );
        }
        header(
            o,
            "pss_guard_report_writes_total",
            "counter",
            "PolicyReport writes (apply or delete) by result.",
        );
        let _ = writeln!(
            o,
            "pss_guard_report_writes_total{{result=\"written\"}} {}\npss_guard_report_writes_total{{result=\"failed\"}} {}",
            self.report_writes, self.report_failures
        );
        gauge(
            o,
            "pss_guard_report_results_dropped",
            "Results left out of this node's reports by the results-per-report cap.",
            self.results_dropped.values().sum::<usize>(),
        );
        header(
            o,
            "pss_guard_events_total",
            "counter",
            "Warning Events by result: created, patched (a repeat counted), dropped (rate limit or queue full), failed.",
        );
        for (r, n) in [
            ("created", self.events_created),
            ("patched", self.events_patched),
            ("dropped", self.events_dropped),
            ("failed", self.events_failed),
        ] {
            let _ = writeln!(o, "pss_guard_events_total{{result=\"{r}\"}} {n}");
        }
        counter(
            o,
            "pss_guard_publish_records_dropped_total",
            "Decision records the publisher was too far behind to take.",
            self.records_dropped,
        );
        counter(
            o,
            "pss_guard_api_calls_total",
            "API calls made for reports and Events (each waited for the --api-qps pacer).",
            self.api_calls,
        );
    }
}

fn header(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn counter(o: &mut String, name: &str, help: &str, v: u64) {
    header(o, name, "counter", help);
    let _ = writeln!(o, "{name} {v}");
}

fn gauge(o: &mut String, name: &str, help: &str, v: impl std::fmt::Display) {
    header(o, name, "gauge", help);
    let _ = writeln!(o, "{name} {v}");
}

/// The agent's own state: build, follower, watches, snapshot, policy sync.
pub fn render_status(o: &mut String, st: &Status, snapshot_age: Option<f64>) {
    header(o, "pss_guard_build_info", "gauge", "The agent's version.");
    let _ = writeln!(
        o,
        "pss_guard_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    gauge(
        o,
        "pss_guard_log_follower_up",
        "1 while the decision log is being followed.",
        u8::from(st.follower.up),
    );
    counter(
        o,
        "pss_guard_log_follower_errors_total",
        "Times following the decision log failed (it is retried).",
        st.follower.errors,
    );
    counter(
        o,
        "pss_guard_log_rotations_total",
        "Decision log rotations (rename) the follower went across.",
        st.follower.rotations,
    );
    counter(
        o,
        "pss_guard_log_truncations_total",
        "Decision log truncations the follower restarted from.",
        st.follower.truncations,
    );
    counter(
        o,
        "pss_guard_log_position_errors_total",
        "Failed writes of the follower's position file (a restart then repeats records).",
        st.follower.position_errors,
    );
    if let Some(ws) = &st.watches {
        let now = std::time::Instant::now();
        header(
            o,
            "pss_guard_watch_up",
            "gauge",
            "1 while a watch has listed and reported no error recently.",
        );
        for (r, w) in ws {
            let _ = writeln!(
                o,
                "pss_guard_watch_up{{resource=\"{r}\"}} {}",
                u8::from(w.healthy(now))
            );
        }
        header(
            o,
            "pss_guard_watch_errors_total",
            "counter",
            "Errors from the API server watches (each is retried with backoff).",
        );
        for (r, w) in ws {
            let _ = writeln!(
                o,
                "pss_guard_watch_errors_total{{resource=\"{r}\"}} {}",
                w.errors
            );
        }
        header(
            o,
            "pss_guard_watch_lists_total",
            "counter",
            "Complete lists (initial and relists after a watch expired).",
        );
        for (r, w) in ws {
            let _ = writeln!(
                o,
                "pss_guard_watch_lists_total{{resource=\"{r}\"}} {}",
                w.relists
            );
        }
        header(
            o,
            "pss_guard_watch_objects",
            "gauge",
            "Objects known per watched resource.",
        );
        for (r, w) in ws {
            let _ = writeln!(
                o,
                "pss_guard_watch_objects{{resource=\"{r}\"}} {}",
                w.objects
            );
        }
        counter(
            o,
            "pss_guard_snapshot_writes_total",
            "Snapshot files written.",
            st.snapshot.writes,
        );
        counter(
            o,
            "pss_guard_snapshot_write_errors_total",
            "Snapshot writes that failed (the previous snapshot stays).",
            st.snapshot.write_errors,
        );
    }
    if let Some(age) = snapshot_age {
        gauge(
            o,
            "pss_guard_snapshot_age_seconds",
            "Seconds since the snapshot file the hook reads was last written.",
            format!("{age:.3}"),
        );
    }
    if let Some(p) = &st.policy {
        counter(
            o,
            "pss_guard_policy_sync_total",
            "Policy files copied from the ConfigMap to the host.",
            p.synced,
        );
        counter(
            o,
            "pss_guard_policy_restored_total",
            "Times the host's policy file was found removed or changed while the ConfigMap was not, and written again.",
            p.restored,
        );
        counter(
            o,
            "pss_guard_policy_sync_invalid_total",
            "Policy sources that did not parse (the last good policy stays).",
            p.invalid,
        );
        counter(
            o,
            "pss_guard_policy_sync_errors_total",
            "Policy sync attempts that failed to read or write a file.",
            p.errors,
        );
        gauge(
            o,
            "pss_guard_policy_source_valid",
            "1 when the mounted policy parses, 0 when it does not (the last good one is in force).",
            match p.source_valid {
                Some(true) => 1,
                _ => 0,
            },
        );
    }
    if let Some(h) = &st.health {
        render_health(o, h.as_ref());
    }
}

/// `--health`: the hook's wiring as `pss-guard health` sees it. Every value is absent (not 0)
/// before the first check.
fn render_health(o: &mut String, r: Option<&pss_guard::health::Report>) {
    let Some(r) = r else { return };
    gauge(
        o,
        "pss_guard_hook_healthy",
        "1 when the hook is wired on this node (`pss-guard health` passes).",
        u8::from(r.healthy),
    );
    header(
        o,
        "pss_guard_hook_runtime_handlers",
        "gauge",
        "Runtime handlers by whether they run the hook (VM handlers count as unprotected).",
    );
    let _ = writeln!(
        o,
        "pss_guard_hook_runtime_handlers{{state=\"protected\"}} {}",
        r.protected
    );
    let _ = writeln!(
        o,
        "pss_guard_hook_runtime_handlers{{state=\"unprotected\"}} {}",
        r.unprotected
    );
    gauge(
        o,
        "pss_guard_hook_policy_fallback",
        "1 when the node's policy file does not load and the hook runs on its built-in default.",
        u8::from(!r.policy.ok),
    );
    gauge(
        o,
        "pss_guard_hook_binary_ok",
        "1 when the hook binary is present, executable and built for this CPU.",
        u8::from(r.binary.ok),
    );
    gauge(
        o,
        "pss_guard_hook_decision_since_runtime_start",
        "1 when a decision was logged since containerd last started (it calls the hook).",
        u8::from(r.decision_since_restart.ok),
    );
}

/// Seconds since `path` was last modified, if it exists.
pub fn file_age(path: &std::path::Path) -> Option<f64> {
    let m = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(
        SystemTime::now()
            .duration_since(m)
            .unwrap_or_default()
            .as_secs_f64(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rendered(m: &Metrics) -> String {
        let mut o = String::new();
        m.render(&mut o);
        o
    }

    #[test]
    fn records_are_counted_by_decision_check_and_namespace() {
        let mut m = Metrics::default();
        m.observe(&json!({"decision":"refused","namespace":"default","policy":"baseline:latest",
            "violations":[{"check":"privileged","reason":"privileged","detail":"x"}],"eval_us":300}));
        m.unparsed();
        let text = rendered(&m);
        for want in [
            "pss_guard_decisions_total{decision=\"refused\",namespace=\"default\"} 1",
            "pss_guard_violations_total{decision=\"refused\",check=\"privileged\",namespace=\"default\"} 1",
            "pss_guard_hook_eval_seconds_bucket{le=\"0.0005\"} 1",
            "pss_guard_hook_eval_seconds_bucket{le=\"0.00025\"} 0",
            "pss_guard_log_unparsed_total 1",
            "pss_guard_log_lines_total 2",
            "pss_guard_evaluations_total{decision=\"deny\",policy_level=\"baseline\",policy_version=\"latest\",mode=\"enforce\"} 1",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
    }

    #[test]
    fn each_mode_in_a_record_is_one_evaluation() {
        let mut m = Metrics::default();
        // Observe-only rollout: privileged enforced, baseline audited and warned.
        m.observe(&json!({"decision":"audit","policy":"privileged:latest",
            "audit_policy":"baseline:v1.30","audit_violations":[{"check":"privileged"}],
            "warn_policy":"restricted:latest","warn_violations":[]}));
        m.observe(&json!({"decision":"exempt","policy":"baseline:latest"}));
        m.observe(&json!({"decision":"error","policy":"baseline:latest",
            "policy_error":"policy /etc/x: built-in default in force"}));
        let text = rendered(&m);
        for want in [
            "pss_guard_evaluations_total{decision=\"allow\",policy_level=\"privileged\",policy_version=\"latest\",mode=\"enforce\"} 1",
            "pss_guard_evaluations_total{decision=\"deny\",policy_level=\"baseline\",policy_version=\"v1.30\",mode=\"audit\"} 1",
            "pss_guard_evaluations_total{decision=\"allow\",policy_level=\"restricted\",policy_version=\"latest\",mode=\"warn\"} 1",
            "pss_guard_violations_total{decision=\"audit\",check=\"privileged\",namespace=\"\"} 1",
            "pss_guard_exemptions_total 1",
            "pss_guard_errors_total{fatal=\"true\"} 1",
            "pss_guard_policy_errors_total 1",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
        assert_eq!(text.matches("pss_guard_evaluations_total{").count(), 3);
    }

    #[test]
    fn cri_lookups_are_counted_by_result() {
        let mut m = Metrics::default();
        for v in [
            "used",
            "used",
            "unavailable: containerd did not answer within the budget of 100 ms",
            "skipped: exempt",
            "something new",
        ] {
            m.observe(&json!({"decision":"allowed","policy":"baseline:latest","cri_view":v}));
        }
        m.observe(&json!({"decision":"allowed","policy":"baseline:latest"}));
        let text = rendered(&m);
        for want in [
            "pss_guard_cri_view_total{result=\"used\"} 2",
            "pss_guard_cri_view_total{result=\"unavailable\"} 1",
            "pss_guard_cri_view_total{result=\"skipped\"} 1",
            "pss_guard_cri_view_total{result=\"unknown\"} 1",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
    }

    #[test]
    fn label_values_outside_the_closed_sets_are_unknown() {
        let mut m = Metrics::default();
        m.observe(&json!({"decision":"yes\"","policy":"root:v9\n"}));
        m.observe(&json!({"decision":"allowed","policy":"evil:v1.1234"}));
        let text = rendered(&m);
        assert!(text.contains("pss_guard_decisions_total{decision=\"unknown\",namespace=\"\"} 1"));
        assert!(text.contains(
            "pss_guard_evaluations_total{decision=\"allow\",policy_level=\"unknown\",policy_version=\"unknown\",mode=\"enforce\"} 1"
        ));
    }

    #[test]
    fn namespaces_past_the_cap_share_one_label() {
        let mut m = Metrics::default();
        for i in 0..MAX_NAMESPACES + 50 {
            m.observe(&json!({"decision":"allowed","namespace":format!("ns-{i}"),"policy":"baseline:latest"}));
        }
        m.observe(&json!({"decision":"allowed","namespace":"ns-0","policy":"baseline:latest"}));
        let text = rendered(&m);
        let series = text.matches("pss_guard_decisions_total{").count();
        assert_eq!(series, MAX_NAMESPACES + 1, "{text}");
        assert!(
            text.contains(
                "pss_guard_decisions_total{decision=\"allowed\",namespace=\"_other\"} 50"
            )
        );
        assert!(
            text.contains("pss_guard_decisions_total{decision=\"allowed\",namespace=\"ns-0\"} 2")
        );
    }

    #[test]
    fn no_metric_takes_the_api_servers_pod_security_names() {
        let mut m = Metrics::default();
        m.publish.enabled = true;
        m.observe(
            &json!({"decision":"would_refuse","namespace":"a","policy":"baseline:latest",
            "violations":[{"check":"privileged","reason":"privileged","detail":""}]}),
        );
        m.observe(&json!({"decision":"exempt","policy":"baseline:latest"}));
        m.observe(&json!({"decision":"error","policy":"baseline:latest"}));
        m.publish.events_patched = 3;
        m.publish.results_dropped.insert("a".into(), 4);
        m.publish.results_dropped.insert("b".into(), 1);
        let text = rendered(&m);
        assert!(
            text.lines().all(|l| !l.contains("pod_security_")
                || l.starts_with("# HELP pss_guard_evaluations_total")),
            "{text}"
        );
        for want in [
            "pss_guard_evaluations_total{decision=\"deny\",policy_level=\"baseline\",policy_version=\"latest\",mode=\"observe\"} 1",
            "pss_guard_decisions_total{decision=\"would_refuse\",namespace=\"a\"} 1",
            "pss_guard_violations_total{decision=\"would_refuse\",check=\"privileged\",namespace=\"a\"} 1",
            "pss_guard_events_total{result=\"patched\"} 3",
            "pss_guard_report_results_dropped 5",
            "pss_guard_report_writes_total{result=\"failed\"} 0",
        ] {
            assert!(text.lines().any(|l| l == want), "missing {want} in\n{text}");
        }
        // Without a publisher, its metrics are not there at all.
        assert!(!rendered(&Metrics::default()).contains("pss_guard_events_total"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
