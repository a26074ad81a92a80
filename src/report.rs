//! Decisions: what the hook and `check` concluded for one container, and how it is shown to
//! kubelet (one stderr line), to people (`check`), and to machines (`check --json`, the log).

use serde::Serialize;

use crate::policy::{LevelVersion, Outcome, Report};
use crate::spec::Identity;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Passed the enforced level (and the audit level, if any).
    Allowed,
    /// Violates the enforced level: the container does not start.
    Refused,
    /// Passed the enforced level, violates the audit level: starts, logged.
    Audit,
    /// Exempt by namespace, image, runtime handler or the unidentified rule: starts, logged.
    Exempt,
    /// Could not be evaluated: refused (fail closed).
    Error,
}

impl Kind {
    /// grep's convention: 0 allowed, 1 refused, 2 error.
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Allowed | Kind::Audit | Kind::Exempt => 0,
            Kind::Refused => 1,
            Kind::Error => 2,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Decision {
    pub kind: Kind,
    pub identity: Identity,
    pub enforce: LevelVersion,
    pub report: Option<Report>,
    pub audit: Option<Report>,
    /// Why the container is exempt.
    pub exempt: Option<String>,
    /// Why it could not be evaluated (the cause chain on one line).
    pub error: Option<String>,
    /// Why the policy file was not used, if it was not.
    pub policy_error: Option<String>,
    /// Anything else worth a line in the log (an identity that was not trusted, ...).
    pub note: Option<String>,
    pub eval_us: u64,
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

impl Decision {
    /// `container "app" in pod default/web`, or `container "<id>"` without Kubernetes metadata.
    pub fn subject(&self) -> String {
        match &self.identity.kube {
            Some(k) => format!(
                "container {:?} in pod {}/{}",
                k.container, k.namespace, k.pod
            ),
            None if self.identity.container_id.is_empty() => "a container".to_owned(),
            None => format!("container {:?}", self.identity.container_id),
        }
    }

    /// The single stderr line the runtime hands to kubelet, for refusals and errors.
    pub fn stderr_line(&self) -> Option<String> {
        let line = match self.kind {
            Kind::Refused => format!(
                "pss-guard: {} {}",
                self.subject(),
                self.report
                    .as_ref()
                    .and_then(Report::message)
                    .unwrap_or_default()
            ),
            Kind::Error => format!(
                "pss-guard: could not evaluate {}, refusing it: {}",
                self.subject(),
                self.error.as_deref().unwrap_or("unknown error")
            ),
            _ => return None,
        };
        Some(one_line(&line))
    }

    /// The human-readable report of `pss-guard check`.
    pub fn render_text(&self) -> String {
        let mut out = format!("{}\n", self.subject());
        if let Some(p) = &self.policy_error {
            out.push_str(&format!("policy: {p}\n"));
        }
        if let Some(n) = &self.note {
            out.push_str(&format!("note: {n}\n"));
        }
        for (label, report) in [("enforce", &self.report), ("audit", &self.audit)] {
            let Some(r) = report else { continue };
            out.push_str(&format!("{label} {}:\n", r.policy));
            for c in &r.results {
                let line = match &c.outcome {
                    Outcome::Pass => format!("  pass            {}", c.id),
                    Outcome::Fail { detail } => {
                        format!("  FAIL            {}: {} ({detail})", c.id, c.reason)
                    }
                    Outcome::NotObservable { why } => {
                        format!("  not observable  {}: {why}", c.id)
                    }
                    Outcome::Covered { by } => format!("  covered         {} (by {by})", c.id),
                };
                out.push_str(&line);
                out.push('\n');
            }
        }
        if let Some(e) = &self.exempt {
            out.push_str(&format!("exempt: {e}\n"));
        }
        if let Some(e) = &self.error {
            out.push_str(&format!("error: {e}\n"));
        }
        let kind = serde_json::to_value(self.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        out.push_str(&format!("decision: {kind}\n"));
        out
    }
}

#[derive(Serialize)]
pub struct ViolationJson<'a> {
    pub check: &'a str,
    pub reason: &'a str,
    pub detail: &'a str,
}

pub fn violations_json(r: &Report) -> Vec<ViolationJson<'_>> {
    r.violations()
        .map(|(c, d)| ViolationJson {
            check: c.id,
            reason: c.reason,
            detail: d,
        })
        .collect()
}

#[derive(Serialize)]
struct CheckJson<'a> {
    check: &'a str,
    result: &'static str,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

#[derive(Serialize)]
struct ReportJson<'a> {
    policy: String,
    violations: Vec<ViolationJson<'a>>,
    checks: Vec<CheckJson<'a>>,
}

fn report_json(r: &Report) -> ReportJson<'_> {
    ReportJson {
        policy: r.policy.to_string(),
        violations: violations_json(r),
        checks: r
            .results
            .iter()
            .map(|c| {
                let (result, detail) = match &c.outcome {
                    Outcome::Pass => ("pass", None),
                    Outcome::Fail { detail } => ("fail", Some(detail.as_str())),
                    Outcome::NotObservable { why } => ("not-observable", Some(*why)),
                    Outcome::Covered { by } => ("covered", Some(*by)),
                };
                CheckJson {
                    check: c.id,
                    result,
                    reason: c.reason,
                    detail,
                }
            })
            .collect(),
    }
}

impl Decision {
    /// `pss-guard check --json`: `decision`, `violations` of the enforced level, every check.
    pub fn to_json(&self) -> serde_json::Value {
        let empty = Vec::new();
        let enforce = self.report.as_ref().map(report_json);
        serde_json::json!({
            "decision": self.kind,
            "container": self.identity.container_name(),
            "container_id": self.identity.container_id,
            "namespace": self.identity.kube.as_ref().map(|k| &k.namespace),
            "pod": self.identity.kube.as_ref().map(|k| &k.pod),
            "policy": self.enforce.to_string(),
            "violations": enforce.as_ref().map(|e| &e.violations).unwrap_or(&empty),
            "checks": enforce.as_ref().map(|e| &e.checks),
            "audit": self.audit.as_ref().map(report_json),
            "exempt": self.exempt,
            "error": self.error,
            "policy_error": self.policy_error,
            "note": self.note,
        })
    }
}
