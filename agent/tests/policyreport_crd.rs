//! The PolicyReport CRD pss-guard ships (deploy/kubernetes/components/policyreport-crd) against
//! what the agent writes: names as the agent's typed resource has them, and every field of a
//! report the agent writes present in the structural schema, with its type and enum values, so
//! the API server prunes or rejects nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use pss_guard_agent::book::{Record, Source, results};
use pss_guard_agent::policyreport::{PolicyReport, Timestamp, WgPolicy};
use serde_json::{Value, json};

fn crd() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/kubernetes/components/policyreport-crd/policyreport-crd.yaml"
    );
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Fails with the JSON path of every value the schema does not allow.
fn check(schema: &Value, v: &Value, at: &str, bad: &mut Vec<String>) {
    let ty = schema["type"].as_str().unwrap_or("");
    let ok = match v {
        Value::Object(_) => ty == "object",
        Value::Array(_) => ty == "array",
        Value::String(_) => ty == "string",
        Value::Bool(_) => ty == "boolean",
        Value::Number(n) => ty == "integer" && n.is_i64() || ty == "number",
        Value::Null => false,
    };
    if !ok {
        bad.push(format!("{at}: {v} is not {ty:?}"));
        return;
    }
    if let Some(e) = schema["enum"].as_array()
        && !e.contains(v)
    {
        bad.push(format!("{at}: {v} not in {e:?}"));
    }
    match v {
        Value::Object(m) => {
            if at.ends_with(".metadata") {
                return;
            }
            for r in schema["required"].as_array().into_iter().flatten() {
                if !m.contains_key(r.as_str().unwrap()) {
                    bad.push(format!("{at}: required {r} missing"));
                }
            }
            for (k, x) in m {
                let sub = schema["properties"]
                    .get(k)
                    .or_else(|| schema.get("additionalProperties"));
                match sub {
                    Some(s) => check(s, x, &format!("{at}.{k}"), bad),
                    None => bad.push(format!("{at}.{k}: not in the schema (pruned)")),
                }
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                check(&schema["items"], x, &format!("{at}[{i}]"), bad);
            }
        }
        _ => {}
    }
}

#[test]
fn every_field_the_agent_writes_is_in_the_shipped_crd() {
    let crd = crd();
    let spec = &crd["spec"];
    assert_eq!(crd["metadata"]["name"], "policyreports.wgpolicyk8s.io");
    assert_eq!(spec["group"], PolicyReport::<WgPolicy>::group(&()).as_ref());
    assert_eq!(
        spec["names"]["kind"],
        PolicyReport::<WgPolicy>::kind(&()).as_ref()
    );
    assert_eq!(
        spec["names"]["plural"],
        PolicyReport::<WgPolicy>::plural(&()).as_ref()
    );
    assert_eq!(spec["scope"], "Namespaced");
    let version = &spec["versions"][0];
    assert_eq!(
        version["name"],
        PolicyReport::<WgPolicy>::version(&()).as_ref()
    );
    assert_eq!(
        (version["served"].clone(), version["storage"].clone()),
        (json!(true), json!(true))
    );

    // Every kind of result the agent writes: fail, pass with warnings, skip, error.
    let ts = Timestamp {
        seconds: 1_780_000_000,
        nanos: 5,
    };
    let mut all = Vec::new();
    for rec in [
        json!({"decision":"would_refuse","namespace":"a","pod":"p","pod_uid":"u","container":"c",
            "policy":"baseline:latest","violations":[{"check":"privileged","reason":"privileged","detail":"d"}]}),
        json!({"decision":"allowed","namespace":"a","pod":"p","container":"c2","policy":"baseline:latest",
            "warn_policy":"restricted:latest","warn_violations":[{"check":"runAsNonRoot","reason":"r","detail":"d"}]}),
        json!({"decision":"exempt","namespace":"a","pod":"p","container":"c3","exempt":"namespace"}),
        json!({"decision":"error","namespace":"a","pod":"p","container":"c4","error":"e"}),
    ] {
        all.extend(results(
            &Record::from_value(&rec).unwrap(),
            "n1",
            Source::Hook,
            ts,
        ));
    }
    assert_eq!(all.len(), 5);
    let meta = ObjectMeta {
        labels: Some(BTreeMap::from([(
            "pss-guard.io/node".to_owned(),
            "n1".to_owned(),
        )])),
        ..ObjectMeta::default()
    };
    let report = serde_json::to_value(PolicyReport::<WgPolicy>::new(
        "pss-guard-n1",
        "a",
        meta,
        all,
    ))
    .unwrap();
    let mut bad = Vec::new();
    check(&version["schema"]["openAPIV3Schema"], &report, "", &mut bad);
    assert!(bad.is_empty(), "{bad:#?}\nreport: {report:#}");
    // And the checker itself rejects what the schema does not have.
    let mut wrong = report.clone();
    wrong["results"][0]["result"] = json!("bad");
    wrong["results"][0]["extra"] = json!(1);
    let mut bad = Vec::new();
    check(&version["schema"]["openAPIV3Schema"], &wrong, "", &mut bad);
    assert_eq!(bad.len(), 2, "{bad:?}");
}
