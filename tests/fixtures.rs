//! Data-driven: every `tests/fixtures/<runtime>-<version>/<case>/` holds a `config.json` (and
//! for containerd a `sandbox.json`) captured from a real runtime by the end-to-end tests, and a
//! `meta.json` with the runtime, its version and the expected verdict. Each case runs through
//! the built binary's `check --offline`, so regressions show without a live runtime.
//!
//! A containerd-harness case pins the exact offline verdict (decision and failing check IDs)
//! for each policy it runs at (`pins` in meta.json), whatever the live outcome was; on top of
//! that, a case PSA and the hook agreed on live must still be refused with PSA's reason (or
//! allowed). `UPDATE_FIXTURE_PINS=1` writes `pins` from what the binary decides now; review
//! the diff. A case whose offline verdict differs from the live one says why in
//! `offline_note` (e.g. a user namespace joined by path, which offline cannot tell from the
//! host's).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::BIN;
use serde_json::Value;

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

/// The policy a case was captured under: its node paths, level and extra keys.
fn policy_for(meta: &Value, enforce: &str, dir: &Path) -> PathBuf {
    let mut text = format!("enforce = {enforce:?}\n");
    if let Some(extra) = meta["policy_extra"].as_object() {
        for (k, v) in extra {
            text.push_str(&format!("{k} = {v}\n"));
        }
    }
    text.push_str(&format!("[log]\npath = {:?}\n[paths]\n", dir.join("log")));
    if let Some(paths) = meta["node_paths"].as_object() {
        for (k, v) in paths {
            text.push_str(&format!("{k} = {v}\n"));
        }
    }
    let p = dir.join("policy.toml");
    std::fs::write(&p, text).expect("policy");
    p
}

/// What the case must produce: `expect: {decision, checks}` (runc, podman: one policy), or
/// `pins: {"<level:version>": {decision, checks}}` (containerd harness: one per policy run).
fn pinned(meta: &Value, enforce: &str) -> Option<(String, Vec<String>)> {
    let e = match meta.get("expect") {
        Some(e) => e,
        None => meta["pins"].get(enforce)?,
    };
    let mut checks: Vec<String> = e["checks"]
        .as_array()?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    checks.sort_unstable();
    Some((e["decision"].as_str()?.to_owned(), checks))
}

/// The PSA verdict a harness case must keep offline on top of its pin: the live run agreed
/// with PSA (`observed` agreed, or a case of tests/kubelet-sim/tests/containerd.rs with no
/// `observed`), and nothing in `offline_note` says why offline differs.
fn psa_verdict(meta: &Value) -> Option<(String, Option<String>)> {
    if meta.get("expect").is_some() || meta.get("offline_note").is_some() {
        return None;
    }
    match meta["observed"].as_str() {
        None | Some("agreed") => Some((
            meta["expected"].as_str()?.to_owned(),
            meta["expected_substring"].as_str().map(str::to_owned),
        )),
        Some(_) => None,
    }
}

/// `vA-vB,vC` -> every end of every range; the captured policy's own version is run too.
fn versions(meta: &Value) -> Vec<String> {
    let policy = meta["policy"].as_str().unwrap_or("baseline:latest");
    let (level, version) = policy.split_once(':').expect("level:version");
    let mut out = vec![version.to_owned()];
    if let Some(v) = meta["versions"].as_str() {
        out.extend(v.split([',', '-']).map(str::to_owned));
    }
    out.sort();
    out.dedup();
    out.into_iter().map(|v| format!("{level}:{v}")).collect()
}

#[test]
fn captured_specs_keep_their_verdicts() {
    let cases = cases();
    assert!(
        cases.len() >= 100,
        "fixtures went missing: {} cases",
        cases.len()
    );
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut runs = 0;
    let update_pins = std::env::var("UPDATE_FIXTURE_PINS").as_deref() == Ok("1");
    for case in &cases {
        let meta: Value =
            serde_json::from_slice(&std::fs::read(case.join("meta.json")).unwrap()).unwrap();
        let mut new_pins = serde_json::Map::new();
        let runtime = meta["hook_runtime"]
            .as_str()
            .or(meta["runtime"].as_str().filter(|r| *r == "containerd"))
            .unwrap_or("none");
        for enforce in versions(&meta) {
            runs += 1;
            let mut cmd = Command::new(BIN);
            cmd.arg("check")
                .arg(case.join("config.json"))
                .args(["--offline", "--json", "--runtime", runtime, "--policy"])
                .arg(policy_for(&meta, &enforce, tmp.path()));
            if let Some(id) = meta["container_id"].as_str() {
                cmd.args(["--id", id]);
            }
            if case.join("sandbox.json").is_file() {
                cmd.arg("--sandbox").arg(case.join("sandbox.json"));
            }
            let out = cmd.output().unwrap();
            let got: Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{}: no JSON ({e}): {:?}", case.display(), out));
            let violations = got["violations"].as_array().unwrap();
            let mut got_checks: Vec<String> = violations
                .iter()
                .map(|v| v["check"].as_str().unwrap().to_owned())
                .collect();
            got_checks.sort_unstable();
            let message: Vec<String> = violations
                .iter()
                .map(|v| {
                    let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
                    format!("{} ({})", s("reason"), s("detail"))
                })
                .collect();
            let message = format!(
                "violates PodSecurity \"{}\": {}",
                got["policy"].as_str().unwrap_or(""),
                message.join(", ")
            );
            // Exempt and audit-only containers start: for a verdict they count as allowed.
            let decision = match got["decision"].as_str().unwrap_or("") {
                "exempt" | "audit" => "allowed",
                d => d,
            };
            if update_pins && meta.get("expect").is_none() {
                new_pins.insert(
                    enforce.clone(),
                    serde_json::json!({"decision": decision, "checks": got_checks}),
                );
                continue;
            }
            let pin_ok = match pinned(&meta, &enforce) {
                Some((d, checks)) => decision == d && got_checks == checks,
                None => {
                    failures.push(format!(
                        "{}: no pin for {enforce} (UPDATE_FIXTURE_PINS=1 writes them)",
                        case.display()
                    ));
                    continue;
                }
            };
            // A case refused live only through the CRI view (its captured `cri-container.json`
            // says what kubelet sent: a hostPort, a capability as written, SELinux options, an
            // AppArmor request, a preStop host) is allowed by `check --offline`, which reads the
            // spec alone: its pin says so, and src/policy/mutation.rs judges it with the CRI
            // documents. Every other case must still meet PSA's verdict offline.
            let through_cri_view =
                decision == "allowed" && case.join("cri-container.json").is_file();
            let psa_ok = through_cri_view
                || psa_verdict(&meta).is_none_or(|(d, substring)| {
                    decision == d && substring.is_none_or(|s| message.contains(&s))
                });
            if !(pin_ok && psa_ok) {
                failures.push(format!(
                    "{} at {enforce}: got {decision} {got_checks:?} {message} {}",
                    case.display(),
                    got["error"]
                ));
            }
        }
        if update_pins && !new_pins.is_empty() {
            let mut meta = meta;
            meta["pins"] = Value::Object(new_pins);
            std::fs::write(
                case.join("meta.json"),
                serde_json::to_string_pretty(&meta).unwrap() + "\n",
            )
            .unwrap();
        }
    }
    assert!(runs > cases.len(), "versions were not expanded");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
