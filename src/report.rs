//! Decisions: what the hook and `check` concluded for one container, and how it is shown to
//! kubelet (one stderr line), to people (`check`), and to machines (`check --json`, the log).

use serde::Serialize;

use crate::policy::{LevelVersion, Outcome, Report};
use crate::psa::Modes;
use crate::spec::Identity;

/// The decision's one-word summary, as the log, `check --json` and `audit` spell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// The node observes (`mode = "observe"`): enforcing, this container would have been
    /// refused (a violation or an error); it starts, and the record keeps why.
    WouldRefuse,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Allowed,
        Kind::Refused,
        Kind::Audit,
        Kind::Exempt,
        Kind::Error,
        Kind::WouldRefuse,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Allowed => "allowed",
            Kind::Refused => "refused",
            Kind::Audit => "audit",
            Kind::Exempt => "exempt",
            Kind::Error => "error",
            Kind::WouldRefuse => "would_refuse",
        }
    }

    /// grep's convention: 0 allowed, 1 refused, 2 error.
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Allowed | Kind::Audit | Kind::Exempt | Kind::WouldRefuse => 0,
            Kind::Refused => 1,
            Kind::Error => 2,
        }
    }
}

impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The reports of one evaluation: the enforced level's, and the audit and warn levels' unless
/// they are `privileged`.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub report: Report,
    pub audit: Option<Report>,
    pub warn: Option<Report>,
}

/// Where the modes of a decision came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyFrom {
    /// The node's defaults (no snapshot, an unlisted namespace, no Kubernetes metadata).
    Defaults,
    /// The namespace's labels in the agent's snapshot.
    Labels,
    /// `check --level/--version` or `--namespace-labels`.
    CommandLine,
}

impl PolicyFrom {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyFrom::Defaults => "node defaults",
            PolicyFrom::Labels => "namespace labels",
            PolicyFrom::CommandLine => "command line",
        }
    }
}

/// What `latest` (and any pinned version above it) meant for this container, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Latest {
    /// The minor version evaluated.
    pub minor: u32,
    /// Where it came from.
    pub from: String,
}

impl Default for Latest {
    fn default() -> Self {
        Latest {
            minor: crate::policy::NEWEST_MINOR,
            from: NEWEST_KNOWN.to_owned(),
        }
    }
}

/// [`Latest::from`] when neither the snapshot nor the policy names the cluster's version.
pub const NEWEST_KNOWN: &str = "the newest version this hook knows: no snapshot names the API server's version and the policy sets no kubernetes_version";

/// What became of the container.
#[derive(Clone, Debug)]
pub enum Verdict {
    Evaluated(Evaluation),
    /// Starts whatever it does. The evaluation, or why there is none, is kept for the log.
    Exempt {
        why: String,
        evaluation: Result<Evaluation, String>,
    },
    /// Could not be evaluated (the cause chain on one line): refused.
    Failed(String),
}

#[derive(Clone, Debug)]
pub struct Decision {
    pub identity: Identity,
    /// Whether the node refuses or only observes; everything else in the decision is the same
    /// either way.
    pub mode: crate::config::Mode,
    /// The level and version of each mode for this container.
    pub modes: Modes,
    pub policy_from: PolicyFrom,
    /// What `latest` meant.
    pub latest: Latest,
    /// What a reader of the record should know (a stale or unreadable snapshot, namespace
    /// labels that did not parse, policy settings that cannot apply at the node).
    pub notes: Vec<String>,
    pub verdict: Verdict,
    /// The record's `cri_view`: whether the CRI configs behind the spec were read (`used`),
    /// `skipped: why` or `unavailable: why`; `None` where they do not apply.
    pub cri_view: Option<String>,
    /// Why the policy file was not used, if it was not.
    pub policy_error: Option<String>,
    pub eval_us: u64,
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

impl Decision {
    pub fn kind(&self) -> Kind {
        match (self.mode, self.enforce_kind()) {
            (crate::config::Mode::Observe, Kind::Refused | Kind::Error) => Kind::WouldRefuse,
            (_, k) => k,
        }
    }

    /// The decision the node would take enforcing, whatever its mode.
    pub fn enforce_kind(&self) -> Kind {
        match &self.verdict {
            Verdict::Evaluated(e) if !e.report.allowed() => Kind::Refused,
            Verdict::Evaluated(e) if e.audit.as_ref().is_some_and(|a| !a.allowed()) => Kind::Audit,
            Verdict::Evaluated(_) => Kind::Allowed,
            Verdict::Exempt { .. } => Kind::Exempt,
            Verdict::Failed(_) => Kind::Error,
        }
    }

    pub fn evaluation(&self) -> Option<&Evaluation> {
        match &self.verdict {
            Verdict::Evaluated(e)
            | Verdict::Exempt {
                evaluation: Ok(e), ..
            } => Some(e),
            _ => None,
        }
    }

    /// The enforced level's report, when the container was evaluated.
    pub fn report(&self) -> Option<&Report> {
        self.evaluation().map(|e| &e.report)
    }

    pub fn audit(&self) -> Option<&Report> {
        self.evaluation().and_then(|e| e.audit.as_ref())
    }

    pub fn warn(&self) -> Option<&Report> {
        self.evaluation().and_then(|e| e.warn.as_ref())
    }

    pub fn exempt(&self) -> Option<&str> {
        match &self.verdict {
            Verdict::Exempt { why, .. } => Some(why),
            _ => None,
        }
    }

    /// Why the container could not be evaluated.
    pub fn error(&self) -> Option<&str> {
        match &self.verdict {
            Verdict::Failed(e)
            | Verdict::Exempt {
                evaluation: Err(e), ..
            } => Some(e),
            _ => None,
        }
    }

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
        if self.kind().exit_code() == 0 {
            return None;
        }
        let line = match &self.verdict {
            Verdict::Evaluated(e) => {
                format!("pss-guard: {} {}", self.subject(), e.report.message()?)
            }
            Verdict::Failed(error) => format!(
                "pss-guard: could not evaluate {}, refusing it: {error}",
                self.subject(),
            ),
            Verdict::Exempt { .. } => return None,
        };
        Some(one_line(&line))
    }

    /// The human-readable report of `pss-guard check`.
    pub fn render_text(&self) -> String {
        let mut out = format!("{}\n", self.subject());
        if let Some(p) = &self.policy_error {
            out.push_str(&format!("policy: {p}\n"));
        }
        if let Some(n) = &self.identity.note {
            out.push_str(&format!("note: {n}\n"));
        }
        out.push_str(&format!(
            "modes ({}): enforce {}, audit {}, warn {}\n",
            self.policy_from.as_str(),
            self.modes.enforce,
            self.modes.audit,
            self.modes.warn
        ));
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        if let Some(c) = &self.cri_view {
            out.push_str(&format!("cri view: {c}\n"));
        }
        for (label, report) in [
            ("enforce", self.report()),
            ("audit", self.audit()),
            ("warn", self.warn()),
        ] {
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
        if let Some(e) = self.exempt() {
            out.push_str(&format!("exempt: {e}\n"));
        }
        if let Some(e) = self.error() {
            out.push_str(&format!("error: {e}\n"));
        }
        out.push_str(&format!("decision: {}\n", self.kind().as_str()));
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

/// Every evaluated check's outcome, grouped, for the decision record: the IDs that passed and
/// failed (the failures' details are in `violations`), and for the rest why (not observable at
/// the node) or by which check (covered). Empty groups are left out.
#[derive(Serialize, Default)]
pub struct ChecksJson<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pass: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fail: Vec<&'a str>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub not_observable: std::collections::BTreeMap<&'a str, &'static str>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub covered: std::collections::BTreeMap<&'a str, &'static str>,
}

pub fn checks_json(r: &Report) -> ChecksJson<'_> {
    let mut out = ChecksJson::default();
    for c in &r.results {
        match &c.outcome {
            Outcome::Pass => out.pass.push(c.id),
            Outcome::Fail { .. } => out.fail.push(c.id),
            Outcome::NotObservable { why } => {
                out.not_observable.insert(c.id, why);
            }
            Outcome::Covered { by } => {
                out.covered.insert(c.id, by);
            }
        }
    }
    out
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

/// One mode's level and verdict for `check --json`: `allowed` is null where nothing was
/// evaluated (an error, or `privileged` for audit and warn, which checks nothing).
fn mode_json(lv: LevelVersion, report: Option<&Report>) -> serde_json::Value {
    let allowed = match (lv.level, report) {
        (_, Some(r)) => Some(r.allowed()),
        (crate::policy::Level::Privileged, None) => Some(true),
        _ => None,
    };
    serde_json::json!({"policy": lv.to_string(), "allowed": allowed})
}

impl Decision {
    /// `pss-guard check --json`: `decision`, `violations` of the enforced level, every check.
    pub fn to_json(&self) -> serde_json::Value {
        let empty = Vec::new();
        let enforce = self.report().map(report_json);
        serde_json::json!({
            "decision": self.kind(),
            "mode": self.mode.as_str(),
            "container": self.identity.container_name(),
            "container_id": self.identity.container_id,
            "namespace": self.identity.kube.as_ref().map(|k| &k.namespace),
            "pod": self.identity.kube.as_ref().map(|k| &k.pod),
            "policy": self.modes.enforce.to_string(),
            "policy_from": self.policy_from.as_str(),
            "modes": {
                "enforce": mode_json(self.modes.enforce, self.report()),
                "audit": mode_json(self.modes.audit, self.audit()),
                "warn": mode_json(self.modes.warn, self.warn()),
            },
            "notes": self.notes,
            "cri_view": self.cri_view,
            "violations": enforce.as_ref().map(|e| &e.violations).unwrap_or(&empty),
            "checks": enforce.as_ref().map(|e| &e.checks),
            "runtime": self.identity.runtime.as_str(),
            "audit": self.audit().map(report_json),
            "warn": self.warn().map(report_json),
            "exempt": self.exempt(),
            "error": self.error(),
            "policy_error": self.policy_error,
            "note": self.identity.note,
        })
    }
}
