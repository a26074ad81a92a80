//! Issue 17 item 1: observe mode is an exact preview of enforce mode. Every captured spec under
//! `tests/fixtures/<runtime>-<version>/<case>/` (real bundles from containerd, runc and Podman;
//! see tests/fixtures/README.md) goes through the built binary's `check --offline` under the
//! same policy twice, `mode = "enforce"` and `mode = "observe"`, in several shapes (`variants`:
//! levels, audit, namespace labels with the floor, an exempt namespace): the observe record's
//! would-be decision (`would_refuse` for `refused` or `error`, else the same decision) and its
//! enforced policy, violations and audit violations must equal the enforce record's, and observe
//! must never refuse (exit 0). The live counterpart, over the add-on pods on a containerd node, is
//! tests/kubelet-sim/tests/addons.rs.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_pss-guard");

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out = Vec::new();
    for runtime in std::fs::read_dir(&root).expect("tests/fixtures") {
        let runtime = runtime.expect("entry").path();
        let Ok(entries) = std::fs::read_dir(&runtime) else {
            continue;
        };
        for case in entries {
            let case = case.expect("entry").path();
            if case.join("meta.json").is_file() && case.join("config.json").is_file() {
                out.push(case);
            }
        }
    }
    out.sort();
    out
}

/// One way to run a case: the policy's levels and extra keys, and the namespace's labels.
struct Variant {
    enforce: String,
    audit: Option<&'static str>,
    extra: &'static str,
    labels: Option<&'static str>,
}

/// The policies a case runs under: its captured level and restricted, alone and with restricted
/// audited (a baseline-allowed container is then an `audit` record in both modes); its
/// namespace labelled restricted, and labelled privileged with the floor lowered for it (labels
/// and floor decide); its namespace (`default` for nearly every case) exempt.
fn variants(meta: &Value) -> Vec<Variant> {
    let captured = meta["policy"]
        .as_str()
        .unwrap_or("baseline:latest")
        .to_owned();
    let mut levels = vec![captured.clone(), "restricted:latest".to_owned()];
    levels.dedup();
    let mut out = Vec::new();
    for l in levels {
        for audit in [None, Some("restricted:latest")] {
            out.push(Variant {
                enforce: l.clone(),
                audit,
                extra: "",
                labels: None,
            });
        }
    }
    let base = |extra, labels| Variant {
        enforce: captured.clone(),
        audit: None,
        extra,
        labels: Some(labels),
    };
    out.push(base("", "pod-security.kubernetes.io/enforce=restricted"));
    out.push(base(
        "floor = \"privileged:latest\"\n",
        "pod-security.kubernetes.io/enforce=privileged,pod-security.kubernetes.io/audit=baseline",
    ));
    out.push(Variant {
        enforce: captured,
        audit: None,
        extra: "[exempt]\nnamespaces = [\"kube-system\", \"default\"]\n",
        labels: None,
    });
    out
}

/// The policy file: the case's node paths and extra keys, as tests/fixtures.rs writes it, plus
/// the mode switch and the variant's keys.
fn policy(meta: &Value, v: &Variant, mode: &str, dir: &Path) -> PathBuf {
    let mut text = format!("mode = {mode:?}\nenforce = {:?}\n", v.enforce);
    if let Some(a) = v.audit {
        text.push_str(&format!("audit = {a:?}\n"));
    }
    if let Some(extra) = meta["policy_extra"].as_object() {
        for (k, v) in extra {
            text.push_str(&format!("{k} = {v}\n"));
        }
    }
    // Top-level keys first: the variant's table (if any) comes after them.
    let (top, table) = match v.extra.find('[') {
        Some(i) => v.extra.split_at(i),
        None => (v.extra, ""),
    };
    text.push_str(top);
    text.push_str(table);
    text.push_str(&format!("[log]\npath = {:?}\n[paths]\n", dir.join("log")));
    if let Some(paths) = meta["node_paths"].as_object() {
        for (k, v) in paths {
            text.push_str(&format!("{k} = {v}\n"));
        }
    }
    let p = dir.join(format!("policy-{mode}.toml"));
    std::fs::write(&p, text).expect("policy");
    p
}

fn check(case: &Path, meta: &Value, policy: &Path, labels: Option<&str>) -> (Value, Option<i32>) {
    let runtime = meta["hook_runtime"]
        .as_str()
        .or(meta["runtime"].as_str().filter(|r| *r == "containerd"))
        .unwrap_or("none");
    let mut cmd = Command::new(BIN);
    cmd.arg("check")
        .arg(case.join("config.json"))
        .args(["--offline", "--json", "--runtime", runtime, "--policy"])
        .arg(policy);
    if let Some(id) = meta["container_id"].as_str() {
        cmd.args(["--id", id]);
    }
    if case.join("sandbox.json").is_file() {
        cmd.arg("--sandbox").arg(case.join("sandbox.json"));
    }
    if let Some(l) = labels {
        cmd.args(["--namespace-labels", l]);
    }
    let out = cmd.output().expect("run pss-guard check");
    let got: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{}: no JSON ({e}): {out:?}", case.display()));
    (got, out.status.code())
}

#[test]
fn observe_records_what_enforce_decides_for_every_captured_spec() {
    let cases = cases();
    assert!(
        cases.len() >= 100,
        "fixtures went missing: {} cases",
        cases.len()
    );
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let (mut pairs, mut would_refuse) = (0, 0);
    let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
    for case in &cases {
        let meta: Value =
            serde_json::from_slice(&std::fs::read(case.join("meta.json")).unwrap()).unwrap();
        for v in variants(&meta) {
            let what = format!(
                "{} at {} (audit {:?}, {:?}, labels {:?})",
                case.display(),
                v.enforce,
                v.audit,
                v.extra,
                v.labels
            );
            let (e, e_code) = check(
                case,
                &meta,
                &policy(&meta, &v, "enforce", tmp.path()),
                v.labels,
            );
            let (o, o_code) = check(
                case,
                &meta,
                &policy(&meta, &v, "observe", tmp.path()),
                v.labels,
            );
            for (mode, got) in [("enforce", &e), ("observe", &o)] {
                if !got["policy_error"].is_null() {
                    failures.push(format!(
                        "{what}: the {mode} policy did not load: {}",
                        got["policy_error"]
                    ));
                }
            }
            pairs += 1;
            let ed = e["decision"].as_str().unwrap_or("?");
            *seen
                .entry(format!("{ed} from {}", e["policy_from"]))
                .or_insert(0) += 1;
            let want = match ed {
                "refused" | "error" => {
                    would_refuse += 1;
                    "would_refuse"
                }
                other => other,
            };
            if o["decision"] != want {
                failures.push(format!("{what}: enforce {ed}, observe {}", o["decision"]));
            }
            for key in [
                "violations",
                "policy",
                "policy_from",
                "audit",
                "exempt",
                "error",
            ] {
                if e[key] != o[key] {
                    failures.push(format!(
                        "{what}: {key} enforce {} observe {}",
                        e[key], o[key]
                    ));
                }
            }
            if o_code != Some(0) {
                failures.push(format!("{what}: observe exit {o_code:?}, not 0"));
            }
            let e_want = if matches!(ed, "refused" | "error") {
                1..=2
            } else {
                0..=0
            };
            if !e_code.is_some_and(|c| e_want.contains(&c)) {
                failures.push(format!("{what}: enforce {ed} exit {e_code:?}"));
            }
        }
    }
    eprintln!(
        "{} cases, {pairs} enforce/observe pairs, {would_refuse} would_refuse",
        cases.len()
    );
    eprintln!("enforce decisions: {seen:?}");
    // The fixtures hold refused specs: a preview that never says would_refuse proves nothing; and
    // every shape of decision the variants aim at was made.
    assert!(
        would_refuse > 50,
        "only {would_refuse} refusals among the pairs"
    );
    for want in ["exempt", "audit", "allowed", "refused"] {
        assert!(
            seen.keys().any(|k| k.starts_with(want)),
            "no {want} decision among the pairs: {seen:?}"
        );
    }
    // `check --namespace-labels` gives the namespace's labels on the command line.
    assert!(
        seen.keys().any(|k| k.ends_with("\"command line\"")),
        "no decision from the namespace labels given: {seen:?}"
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
