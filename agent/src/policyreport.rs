//! The report types the agent publishes: wg-policy's `PolicyReport` (`wgpolicyk8s.io/v1alpha2`,
//! what Kyverno, Policy Reporter, Falco's and Trivy's exporters read and write) and its successor,
//! OpenReports' `Report` (`openreports.io/v1alpha1`). Both carry the same result shape (policy,
//! rule, result, message, the checked resources, string properties) at the top level of the
//! object, beside `metadata`, with no `spec`.
//!
//! kube's `CustomResource` derive always nests the user's fields under `spec` (see its docs:
//! "a root object containing your spec and metadata"), so it cannot describe these objects;
//! the structs below are typed serde structs instead, and [`kube::Resource`] is implemented for
//! them by hand with the group, version, kind and plural of each API. Nothing is built as
//! untyped JSON.
//!
//! Field names follow the upstream Go types: wg-policy's `policyreport_types.go`
//! (kubernetes-sigs/wg-policy-prototypes, `apis/wgpolicyk8s.io/v1alpha2`) and OpenReports'
//! `report_types.go` (openreports/reports-api, `apis/openreports.io/v1alpha1`), where the
//! result's `Subjects` and `Description` serialize as `resources` and `message`, so one result
//! type serves both.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::marker::PhantomData;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::TypeMeta;
use serde::{Deserialize, Serialize};

/// The `policy` of every result pss-guard writes.
pub const POLICY: &str = "pss-guard";
/// The `source` (the engine) of every result, and of an OpenReports report.
pub const SOURCE: &str = "pss-guard";
/// The `category` of every result: Policy Reporter groups by it.
pub const CATEGORY: &str = "Pod Security Standards";

/// Which report API the agent writes (`--reports`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// `wgpolicyk8s.io/v1alpha2` `PolicyReport`.
    WgPolicy,
    /// `openreports.io/v1alpha1` `Report`.
    OpenReports,
}

impl Api {
    pub fn parse(s: &str) -> Option<Api> {
        match s {
            "policyreport" | "wgpolicyk8s.io" | "wgpolicyk8s.io/v1alpha2" => Some(Api::WgPolicy),
            "openreports" | "openreports.io" | "openreports.io/v1alpha1" => Some(Api::OpenReports),
            _ => None,
        }
    }
}

/// The group, version, kind and plural of one report API.
pub trait Flavour: Clone + std::fmt::Debug + Send + Sync + 'static {
    const GROUP: &'static str;
    const VERSION: &'static str;
    const KIND: &'static str;
    const PLURAL: &'static str;
    /// OpenReports has a report-level `source`; wg-policy's v1alpha2 does not.
    const HAS_SOURCE: bool;
}

#[derive(Clone, Copy, Debug)]
pub struct WgPolicy;
#[derive(Clone, Copy, Debug)]
pub struct OpenReports;

impl Flavour for WgPolicy {
    const GROUP: &'static str = "wgpolicyk8s.io";
    const VERSION: &'static str = "v1alpha2";
    const KIND: &'static str = "PolicyReport";
    const PLURAL: &'static str = "policyreports";
    const HAS_SOURCE: bool = false;
}

impl Flavour for OpenReports {
    const GROUP: &'static str = "openreports.io";
    const VERSION: &'static str = "v1alpha1";
    const KIND: &'static str = "Report";
    const PLURAL: &'static str = "reports";
    const HAS_SOURCE: bool = true;
}

/// Counts of results by outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    #[serde(default)]
    pub pass: u32,
    #[serde(default)]
    pub fail: u32,
    #[serde(default)]
    pub warn: u32,
    #[serde(default)]
    pub error: u32,
    #[serde(default)]
    pub skip: u32,
}

/// A result's outcome, as the API's enum spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Fail,
    Error,
    Warn,
    Skip,
    Pass,
}

/// `metav1.Timestamp`: seconds and nanoseconds since the epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timestamp {
    pub seconds: i64,
    #[serde(default)]
    pub nanos: i32,
}

/// One result: one check of one container of one pod.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportResult {
    pub source: String,
    pub policy: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rule: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub category: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(default)]
    pub timestamp: Timestamp,
    pub result: Outcome,
    #[serde(default)]
    pub scored: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ObjectReference>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

/// A namespaced report: [`PolicyReport<WgPolicy>`] or [`PolicyReport<OpenReports>`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", bound = "")]
pub struct PolicyReport<F: Flavour> {
    #[serde(flatten)]
    pub types: Option<TypeMeta>,
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default)]
    pub summary: Summary,
    #[serde(default)]
    pub results: Vec<ReportResult>,
    #[serde(skip)]
    _flavour: PhantomData<F>,
}

impl<F: Flavour> PolicyReport<F> {
    /// A report named `name` in `namespace` with these results; the summary is counted here.
    pub fn new(name: &str, namespace: &str, meta: ObjectMeta, results: Vec<ReportResult>) -> Self {
        let mut summary = Summary::default();
        for r in &results {
            let n = match r.result {
                Outcome::Pass => &mut summary.pass,
                Outcome::Fail => &mut summary.fail,
                Outcome::Warn => &mut summary.warn,
                Outcome::Error => &mut summary.error,
                Outcome::Skip => &mut summary.skip,
            };
            *n += 1;
        }
        PolicyReport {
            types: Some(TypeMeta {
                api_version: format!("{}/{}", F::GROUP, F::VERSION),
                kind: F::KIND.to_owned(),
            }),
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                ..meta
            },
            source: F::HAS_SOURCE.then(|| SOURCE.to_owned()),
            summary,
            results,
            _flavour: PhantomData,
        }
    }
}

impl<F: Flavour> kube::Resource for PolicyReport<F> {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(F::KIND)
    }
    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(F::GROUP)
    }
    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(F::VERSION)
    }
    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(F::PLURAL)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;

    fn result(outcome: Outcome) -> ReportResult {
        ReportResult {
            source: SOURCE.into(),
            policy: POLICY.into(),
            rule: "privileged".into(),
            category: CATEGORY.into(),
            severity: None,
            timestamp: Timestamp {
                seconds: 1,
                nanos: 0,
            },
            result: outcome,
            scored: true,
            resources: vec![],
            message: "privileged".into(),
            properties: BTreeMap::new(),
        }
    }

    #[test]
    fn both_apis_have_their_paths_and_the_same_result_shape() {
        assert_eq!(
            PolicyReport::<WgPolicy>::url_path(&(), Some("team-a")),
            "/apis/wgpolicyk8s.io/v1alpha2/namespaces/team-a/policyreports"
        );
        assert_eq!(
            PolicyReport::<OpenReports>::url_path(&(), Some("team-a")),
            "/apis/openreports.io/v1alpha1/namespaces/team-a/reports"
        );
        let r = PolicyReport::<WgPolicy>::new(
            "pss-guard-n1",
            "team-a",
            ObjectMeta::default(),
            vec![result(Outcome::Fail), result(Outcome::Pass)],
        );
        let v = serde_json::to_value(&r).unwrap_or_default();
        assert_eq!(v["apiVersion"], "wgpolicyk8s.io/v1alpha2");
        assert_eq!(v["kind"], "PolicyReport");
        assert_eq!(v["summary"]["fail"], 1);
        assert_eq!(v["summary"]["pass"], 1);
        assert_eq!(v["results"][0]["result"], "fail");
        assert!(v.get("source").is_none(), "{v}");
        let o = PolicyReport::<OpenReports>::new("x", "y", ObjectMeta::default(), vec![]);
        let v = serde_json::to_value(&o).unwrap_or_default();
        assert_eq!(v["apiVersion"], "openreports.io/v1alpha1");
        assert_eq!(v["source"], "pss-guard");
        let back: PolicyReport<OpenReports> = serde_json::from_value(v).unwrap_or_else(|e| {
            panic!("{e}");
        });
        assert_eq!(back.metadata.name.as_deref(), Some("x"));
    }
}
