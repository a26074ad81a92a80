//! Data-driven: every `tests/fixtures/<runtime>-<version>/<case>/` holds a `config.json` (and
//! for containerd a `sandbox.json`) captured from a real runtime by the end-to-end tests, and a
//! `meta.json` with the runtime, its version and the expected verdict. Each case runs through
//! the built binary's `check --offline`, so regressions show without a live runtime.

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

/// The policy a case was captured under: its node paths and level.
fn policy_for(meta: &Value, dir: &Path) -> PathBuf {
    let mut text = String::new();
    if let Some(p) = meta["policy"].as_str() {
        text.push_str(&format!("enforce = {p:?}\n"));
    }
    text.push_str(&format!("[log]\npath = {:?}\n[paths]\n", dir.join("log")));
    if let Some(paths) = meta["node_paths"].as_object() {
        for (k, v) in paths {
            text.push_str(&format!("{k} = {}\n", v));
        }
    }
    let p = dir.join("policy.toml");
    std::fs::write(&p, text).expect("policy");
    p
}

#[test]
fn captured_specs_keep_their_verdicts() {
    let cases = cases();
    assert!(cases.len() >= 12, "fixtures went missing: {cases:?}");
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for case in &cases {
        let meta: Value =
            serde_json::from_slice(&std::fs::read(case.join("meta.json")).unwrap()).unwrap();
        let runtime = meta["hook_runtime"]
            .as_str()
            .or(meta["runtime"].as_str().filter(|r| *r == "containerd"))
            .unwrap_or("none");
        let mut cmd = Command::new(BIN);
        cmd.arg("check")
            .arg(case.join("config.json"))
            .args(["--offline", "--json", "--runtime", runtime, "--policy"])
            .arg(policy_for(&meta, tmp.path()));
        if let Some(id) = meta["container_id"].as_str() {
            cmd.args(["--id", id]);
        }
        if case.join("sandbox.json").is_file() {
            cmd.arg("--sandbox").arg(case.join("sandbox.json"));
        }
        let out = cmd.output().unwrap();
        let got: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{}: no JSON ({e}): {:?}", case.display(), out));
        let want = &meta["expect"];
        let mut got_checks: Vec<&str> = got["violations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["check"].as_str().unwrap())
            .collect();
        got_checks.sort_unstable();
        let mut want_checks: Vec<&str> = want["checks"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: meta.json has no expect.checks", case.display()))
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        want_checks.sort_unstable();
        if got["decision"] != want["decision"] || got_checks != want_checks {
            failures.push(format!(
                "{}: want {} {:?}, got {} {:?} ({})",
                case.display(),
                want["decision"],
                want_checks,
                got["decision"],
                got_checks,
                got["error"]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
