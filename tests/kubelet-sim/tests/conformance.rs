//! Conformance with Pod Security Admission over the upstream PSA fixtures (issue 3, item 3).
//!
//! Every distinct fixture (deduplicated by content across the version directories of a
//! level) runs once as a pod on a real containerd node with the policy
//! `enforce = "<level>:<newest version it appears in>"`; the app and init container specs
//! the hook saw are then re-checked offline (`pss-guard check --offline`) at every other
//! version the fixture appears in, since the versions only change the policy.
//!
//! A pass fixture must start. A fail fixture must be refused by pss-guard with
//! EXPECTATIONS.tsv's substring, or be refused by something else (kubelet admission, the
//! runtime), or belong to a check listed in NOT_OBSERVABLE with its reason. Anything else
//! is "wrong" and fails the test. Results: docs/conformance.json and docs/conformance.md.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::{TestNode, workspace_root};
use kubelet_sim::{ContainerKind, Kubelet, PodRun, Source, UserNamespaces, load};
use serde::Serialize;
use serde_json::{Value, json};

/// Checks whose violations leave no trace in what the hook can read on this node, with the
/// reason. A fail fixture of one of these that starts is "not observable", not "wrong".
const NOT_OBSERVABLE: &[(&str, &str)] = &[
    (
        "appArmorProfile",
        "this kernel has no AppArmor: no container gets a profile, so Unconfined looks like every other container",
    ),
    (
        "capabilities_baseline",
        "adding a capability already in containerd's default set (NET_RAW), or a lower-case name containerd upper-cases (chown -> CAP_CHOWN), leaves the capability sets at the default",
    ),
    (
        "hostPathVolumes",
        "the fixtures declare the hostPath volume but mount it in no container: an unmounted hostPath leaves nothing in config.json or the kubelet's volume dirs",
    ),
    (
        "hostPorts",
        "port mappings go to CNI, never into config.json",
    ),
    (
        "hostProbesAndHostLifecycle",
        "probes and lifecycle handlers run in kubelet; nothing reaches the runtime",
    ),
    (
        "restrictedVolumes",
        "the fixtures declare the volume but mount it in no container; only the kubelet's plugin dir under pods/<uid>/volumes remains",
    ),
    (
        "runAsNonRoot",
        "the image runs as uid 65535 (like the real pause image): a non-root uid without runAsNonRoot=true looks the same in config.json",
    ),
    (
        "seLinuxOptions",
        "SELinux is off and containerd's enable_selinux=false: seLinuxOptions never reach config.json",
    ),
    (
        "seccompProfile_baseline",
        "kubelet sends Unconfined for an unset profile (seccompDefault off) and containerd writes no linux.seccomp for either: Unconfined = unset at the node",
    ),
    (
        "windowsHostProcess",
        "a Windows-only field: a Linux runtime spec has no trace of it",
    ),
];

/// Pass fixtures this node may legitimately refuse before the hook runs, with the reason.
const REFUSED_BY_NODE: &[(&str, &str)] = &[
    (
        "base_windows",
        "a Windows pod (spec.os.name: windows): kubelet on a Linux node rejects it at admission (PodOSNotSupported)",
    ),
    (
        "procmount1",
        "Unmasked is allowed only with hostUsers: false, and containerd 1.6 has no pod user namespaces: the container would run with an unmasked /proc in the host user namespace, so pss-guard refuses it (correctly)",
    ),
    (
        "selinuxoptions1",
        "containerd validates the SELinux level even with SELinux off, and \"somevalue\" is not an MLS level: CreateContainer fails",
    ),
];

#[derive(Clone, Debug)]
struct Expectation {
    check_id: String,
    substring: String,
}

#[derive(Clone, Debug)]
struct Case {
    level: String,
    stem: String,
    expect_pass: bool,
    /// Minor versions (v1.N) whose directory holds this exact content.
    versions: Vec<u32>,
    files: Vec<String>,
    yaml: String,
    check_id: String,
    substring: String,
}

impl Case {
    fn name(&self) -> String {
        format!(
            "{}-{}-v1.{}",
            self.level,
            self.stem,
            self.versions.first().copied().unwrap_or(0)
        )
    }
    fn newest(&self) -> u32 {
        self.versions.iter().copied().max().unwrap_or(0)
    }
}

#[derive(Clone, Debug, Serialize)]
struct CaseResult {
    case: String,
    level: String,
    fixture: String,
    check: String,
    expected: &'static str,
    versions: String,
    live_policy: String,
    outcome: &'static str,
    detail: String,
    containers_started: usize,
    containers: usize,
    error: Option<String>,
    offline_disagreements: Vec<String>,
    pod_seconds: f64,
}

const VIOLATES: &str = "violates PodSecurity";
const AGREED: &str = "agreed";
const OTHER: &str = "refused for another reason";
const NOT_OBS: &str = "not observable";
const WRONG: &str = "wrong";

fn fixtures_dir() -> PathBuf {
    let dir = std::env::var_os("PSA_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/psa-fixtures"));
    assert!(
        dir.join("EXPECTATIONS.tsv").is_file(),
        "PSA fixtures not found at {} (set PSA_FIXTURES)",
        dir.display()
    );
    dir
}

fn read_expectations(dir: &Path) -> BTreeMap<String, Expectation> {
    let text = fs::read_to_string(dir.join("EXPECTATIONS.tsv")).expect("EXPECTATIONS.tsv");
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')).skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() >= 6 {
            out.insert(
                cols[0].to_string(),
                Expectation {
                    check_id: cols[1].to_string(),
                    substring: cols[5].to_string(),
                },
            );
        }
    }
    assert!(
        out.len() >= 15,
        "EXPECTATIONS.tsv has only {} rows",
        out.len()
    );
    out
}

fn minor(version_dir: &str) -> Option<u32> {
    version_dir.strip_prefix("v1.")?.parse().ok()
}

/// Distinct fixtures of a level: same content and same expectation = one case.
fn collect_cases(dir: &Path, level: &str, exp: &BTreeMap<String, Expectation>) -> Vec<Case> {
    let mut by_key: BTreeMap<(String, bool), Case> = BTreeMap::new();
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir(dir.join(level))
        .expect("level dir")
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((minor(e.file_name().to_str()?)?, e.path())))
        .collect();
    versions.sort();
    for (v, vdir) in versions {
        for (sub, pass) in [("pass", true), ("fail", false)] {
            let Ok(entries) = fs::read_dir(vdir.join(sub)) else {
                continue;
            };
            let mut files: Vec<PathBuf> =
                entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
            files.sort();
            for f in files
                .into_iter()
                .filter(|f| f.extension().is_some_and(|x| x == "yaml"))
            {
                let yaml = fs::read_to_string(&f).expect("fixture");
                let stem = f
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("")
                    .to_string();
                let rel = f.strip_prefix(dir).unwrap_or(&f).display().to_string();
                let case = by_key.entry((yaml.clone(), pass)).or_insert_with(|| {
                    let prefix = stem.trim_end_matches(|c: char| c.is_ascii_digit());
                    let (check_id, substring) = match exp.get(prefix) {
                        Some(e) => (e.check_id.clone(), e.substring.clone()),
                        None if prefix.starts_with("base") => ("base".into(), String::new()),
                        None => panic!("{rel}: no EXPECTATIONS.tsv row for {prefix:?}"),
                    };
                    Case {
                        level: level.into(),
                        stem: stem.clone(),
                        expect_pass: pass,
                        versions: Vec::new(),
                        files: Vec::new(),
                        yaml: yaml.clone(),
                        check_id,
                        substring,
                    }
                });
                case.versions.push(v);
                case.files.push(rel);
            }
        }
    }
    let mut cases: Vec<Case> = by_key.into_values().collect();
    cases.sort_by(|a, b| {
        (a.stem.as_str(), a.versions.first()).cmp(&(b.stem.as_str(), b.versions.first()))
    });
    cases
}

fn version_ranges(vs: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < vs.len() {
        let start = vs[i];
        let mut end = start;
        while i + 1 < vs.len() && vs[i + 1] == end + 1 {
            i += 1;
            end = vs[i];
        }
        out.push(if start == end {
            format!("v1.{start}")
        } else {
            format!("v1.{start}-v1.{end}")
        });
        i += 1;
    }
    out.join(",")
}

/// `pss-guard check --offline` of one captured spec: (refused, failing "reason (detail)"s).
async fn offline_check(
    bin: &Path,
    policy: &Path,
    config: &Path,
    sandbox: Option<&Path>,
    level: &str,
    v: u32,
) -> Result<(bool, String), String> {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.arg("check").arg(config).arg("--policy").arg(policy);
    if let Some(s) = sandbox {
        cmd.arg("--sandbox").arg(s);
    }
    cmd.args([
        "--level",
        level,
        "--version",
        &format!("v1.{v}"),
        "--offline",
        "--json",
    ]);
    let out = cmd
        .output()
        .await
        .map_err(|e| format!("run pss-guard check: {e}"))?;
    let report: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "pss-guard check output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    // "error" (could not evaluate) fails closed, like the hook's exit 2.
    let refused = report["decision"] == "refused" || report["decision"] == "error";
    let mut reasons: Vec<String> = report["checks"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter(|c| c["result"] == "fail")
                .map(|c| {
                    format!(
                        "{} ({})",
                        c["reason"].as_str().unwrap_or(""),
                        c["detail"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(e) = report["error"].as_str() {
        reasons.push(format!("error: {e}"));
    }
    Ok((refused, reasons.join(", ")))
}

fn lookup(table: &[(&str, &'static str)], key: &str) -> Option<&'static str> {
    table.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

fn classify(case: &Case, run: &PodRun, declared: usize) -> (&'static str, String) {
    let hook_errors: Vec<&str> = run
        .errors()
        .into_iter()
        .filter(|e| e.contains("pss-guard: "))
        .collect();
    // Only PSA's part of the message counts: "violates PodSecurity ...: reason (detail), ...".
    let psa_message = |e: &&str| {
        e.split_once(VIOLATES)
            .map(|(_, m)| m.contains(&case.substring))
            .unwrap_or(false)
    };
    let all = run.errors().join(" | ");
    if case.expect_pass {
        if run.all_started(declared) {
            return (AGREED, "started".into());
        }
        return match lookup(REFUSED_BY_NODE, &case.stem) {
            Some(reason) => (OTHER, reason.to_string()),
            None if !hook_errors.is_empty() => {
                (WRONG, format!("pass fixture refused by pss-guard: {all}"))
            }
            None => (WRONG, format!("pass fixture did not start: {all}")),
        };
    }
    if hook_errors.iter().any(psa_message) {
        return (
            AGREED,
            format!("refused by pss-guard with {:?}", case.substring),
        );
    }
    if !hook_errors.is_empty() {
        return (
            OTHER,
            format!(
                "pss-guard refused, but not with {:?}: {}",
                case.substring,
                hook_errors.join(" | ")
            ),
        );
    }
    if !run.all_started(declared) {
        return (OTHER, format!("refused before the hook: {all}"));
    }
    match lookup(NOT_OBSERVABLE, &case.check_id) {
        Some(reason) => (NOT_OBS, reason.to_string()),
        None => (WRONG, "fail fixture started".into()),
    }
}

/// Run one fixture as a pod, classify it, re-check its specs offline at every version.
async fn run_case(node: &TestNode, k: &mut Kubelet, bin: &Path, case: &Case) -> CaseResult {
    let policy = node.var("PSS_GUARD_POLICY");
    let level = case.level.as_str();
    let live_policy = format!("{level}:v1.{}", case.newest());
    let m = load(&case.yaml, Source::ApiServer).unwrap_or_else(|e| panic!("{}: {e}", case.name()));
    let declared = m.pod.spec.as_ref().map_or(0, |s| {
        s.containers.len() + s.init_containers.as_ref().map_or(0, Vec::len)
    });
    let t = Instant::now();
    let run = k
        .run_pod(&m)
        .await
        .unwrap_or_else(|e| panic!("{}: {e:?}", case.name()));
    let pod_seconds = t.elapsed().as_secs_f64();
    let (mut outcome, detail) = classify(case, &run, declared);

    // Offline re-check at every version of the case, on each container the hook saw.
    let mut disagreements = Vec::new();
    let captured: Vec<(String, PathBuf, Option<PathBuf>)> = run
        .containers
        .iter()
        .filter_map(|c| {
            let (cfg, sb) = node.capture(c.container_id.as_deref()?)?;
            Some((c.name.clone(), cfg, sb))
        })
        .collect();
    for &v in &case.versions {
        let mut refused_any = false;
        let mut reasons = Vec::new();
        for (name, cfg, sb) in &captured {
            match offline_check(bin, &policy, cfg, sb.as_deref(), level, v).await {
                Ok((refused, why)) => {
                    refused_any |= refused;
                    if refused {
                        reasons.push(format!("{name}: {why}"));
                    }
                }
                Err(e) => disagreements.push(format!("v1.{v}: {e}")),
            }
        }
        let why = reasons.join("; ");
        if case.expect_pass && refused_any && lookup(REFUSED_BY_NODE, &case.stem).is_none() {
            disagreements.push(format!("v1.{v}: pass fixture refused offline: {why}"));
        } else if !case.expect_pass
            && outcome == AGREED
            && !(refused_any && why.contains(&case.substring))
        {
            disagreements.push(format!(
                "v1.{v}: allowed offline (or without {:?}): {why}",
                case.substring
            ));
        }
    }
    if !disagreements.is_empty() {
        outcome = WRONG;
    }

    let saved = run
        .containers
        .iter()
        .filter(|c| c.container_id.is_some())
        .min_by_key(|c| c.kind != ContainerKind::App);
    if let Some(c) = saved {
        let id = c.container_id.clone().unwrap_or_default();
        if node.capture(&id).is_some() {
            node.save_fixture(
                &format!("psa-{}", case.name()),
                &id,
                json!({"case": case.name(), "pod": case.files.first(), "container": c.name,
                       "policy": live_policy, "versions": version_ranges(&case.versions),
                       "expected": if case.expect_pass { "allowed" } else { "refused" },
                       "expected_substring": (!case.expect_pass).then_some(&case.substring),
                       "observed": outcome}),
            );
        }
    }
    if let Some(id) = run.sandbox_id.as_deref() {
        k.stop_pod(id)
            .await
            .unwrap_or_else(|e| panic!("stop {}: {e:?}", case.name()));
    }
    CaseResult {
        case: case.name(),
        level: level.into(),
        fixture: case.files.first().cloned().unwrap_or_default(),
        check: case.check_id.clone(),
        expected: if case.expect_pass { "pass" } else { "fail" },
        versions: version_ranges(&case.versions),
        live_policy,
        outcome,
        detail,
        containers_started: run.containers.iter().filter(|c| c.started).count(),
        containers: declared,
        error: (!run.errors().is_empty()).then(|| run.errors().join(" | ")),
        offline_disagreements: disagreements,
        pod_seconds,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn psa_fixtures_conformance() {
    let dir = fixtures_dir();
    let exp = read_expectations(&dir);
    let bin = common::pss_guard_bin();
    let node = TestNode::up();
    let mut opts = node.options();
    // A cluster admin who allowed the two sysctls PSA v1.37 adds (kubelet's own allowlist
    // does not have them yet): lets the v1.37 pass fixture reach the hook.
    opts.allowed_unsafe_sysctls = vec![
        "net.ipv4.tcp_slow_start_after_idle".into(),
        "net.ipv4.tcp_notsent_lowat".into(),
    ];
    // containerd 1.6 has no pod user namespaces: run hostUsers:false pods as a cluster with
    // UserNamespacesSupport off would (field dropped), so their other checks still run.
    opts.user_namespaces = UserNamespaces::Ignore;
    let mut k1 = node.kubelet(opts.clone()).await;
    let mut k2 = node.kubelet(opts).await;

    // Cases that share a live policy run two at a time (the policy file is node-wide).
    let mut groups: BTreeMap<String, Vec<Case>> = BTreeMap::new();
    for level in ["baseline", "restricted"] {
        for case in collect_cases(&dir, level, &exp) {
            groups
                .entry(format!("{level}:v1.{:02}", case.newest()))
                .or_default()
                .push(case);
        }
    }
    let started = Instant::now();
    let mut results: Vec<CaseResult> = Vec::new();
    for cases in groups.values() {
        if let Some(first) = cases.first() {
            node.set_enforce(&format!("{}:v1.{}", first.level, first.newest()));
        }
        for pair in cases.chunks(2) {
            match pair {
                [a, b] => {
                    let (ra, rb) = tokio::join!(
                        run_case(&node, &mut k1, &bin, a),
                        run_case(&node, &mut k2, &bin, b)
                    );
                    results.push(ra);
                    results.push(rb);
                }
                [a] => results.push(run_case(&node, &mut k1, &bin, a).await),
                _ => {}
            }
        }
    }
    let total = started.elapsed().as_secs_f64();
    results.sort_by(|a, b| {
        (a.level.as_str(), a.case.as_str()).cmp(&(b.level.as_str(), b.case.as_str()))
    });
    write_reports(&results, results.len(), total);

    if std::env::var("UPDATE_CRI_FIXTURES").as_deref() == Ok("1") {
        dedupe_fixtures();
    }

    let wrong: Vec<&CaseResult> = results.iter().filter(|r| r.outcome == WRONG).collect();
    assert!(
        wrong.is_empty(),
        "{} of {} fixtures disagree with PSA (see docs/conformance.md):\n{}",
        wrong.len(),
        results.len(),
        wrong
            .iter()
            .map(|r| format!(
                "  {} [{}]: {} {:?}",
                r.case, r.check, r.detail, r.offline_disagreements
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn write_reports(results: &[CaseResult], pods: usize, total: f64) {
    // level -> check -> outcome -> count
    let mut table: BTreeMap<&str, BTreeMap<&str, BTreeMap<&str, usize>>> = BTreeMap::new();
    for r in results {
        *table
            .entry(r.level.as_str())
            .or_default()
            .entry(r.check.as_str())
            .or_default()
            .entry(r.outcome)
            .or_default() += 1;
    }
    let mean = if pods > 0 { total / pods as f64 } else { 0.0 };
    // Sandbox + containers started (or refused), per pod, two pods in flight at a time.
    let latency = if results.is_empty() {
        0.0
    } else {
        results.iter().map(|r| r.pod_seconds).sum::<f64>() / results.len() as f64
    };
    let report = json!({
        "generated_by": "tests/kubelet-sim/tests/conformance.rs",
        "runtime": "containerd (Debian) + runc, driven by kubelet-sim",
        "pods": pods,
        "total_seconds": (total * 10.0).round() / 10.0,
        "mean_seconds_per_pod": (mean * 1000.0).round() / 1000.0,
        "concurrent_pods": 2,
        "mean_run_pod_latency_seconds": (latency * 1000.0).round() / 1000.0,
        "summary": table,
        "not_observable_reasons": NOT_OBSERVABLE.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        "refused_by_node_reasons": REFUSED_BY_NODE.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        "cases": results,
    });
    let docs = workspace_root().join("docs");
    fs::create_dir_all(&docs).expect("docs dir");
    let text = serde_json::to_string_pretty(&report).expect("report json") + "\n";
    fs::write(docs.join("conformance.json"), text).expect("write conformance.json");

    let mut md = String::new();
    let _ = writeln!(md, "# Conformance with Pod Security Admission\n");
    let _ = writeln!(
        md,
        "Generated by `tests/kubelet-sim/tests/conformance.rs` on a containerd + runc test node driven by \
         kubelet-sim (see tests/kubelet-sim/README.md). Each distinct upstream PSA fixture (deduplicated by \
         content across version directories) ran once as a pod with `enforce = \"<level>:<newest version it \
         appears in>\"`; the specs the hook saw were re-checked offline at every other version it appears in. \
         {pods} pods, two at a time: {total:.0} s in all, {mean:.2} s of wall time per pod \
         ({latency:.2} s from RunPodSandbox to the last StartContainer).\n"
    );
    let _ = writeln!(
        md,
        "Outcomes: **agreed** (pass fixture started / fail fixture refused by pss-guard with the expected reason), \
        **refused for another reason** (kubelet admission, the runtime, or pss-guard with a different reason), \
        **not observable** (started although PSA refuses it; the check leaves no trace at the node), **wrong** (fails the test).\n"
    );
    for (level, checks) in &table {
        let _ = writeln!(md, "## {level}\n");
        let _ = writeln!(
            md,
            "| check | fixtures (pass/fail) | agreed | refused for another reason | not observable | wrong |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|");
        for (check, counts) in checks {
            let n = |k: &str| counts.get(k).copied().unwrap_or(0);
            let of = |e: &str| {
                results
                    .iter()
                    .filter(|r| r.level == *level && r.check == *check && r.expected == e)
                    .count()
            };
            let _ = writeln!(
                md,
                "| {check} | {}/{} | {} | {} | {} | {} |",
                of("pass"),
                of("fail"),
                n(AGREED),
                n(OTHER),
                n(NOT_OBS),
                n(WRONG)
            );
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md, "## Not observable at the node\n");
    for (check, reason) in NOT_OBSERVABLE {
        let _ = writeln!(md, "- `{check}`: {reason}.");
    }
    let _ = writeln!(md, "\n## Fixtures not agreed\n");
    let _ = writeln!(
        md,
        "| fixture | check | expected | outcome | versions | detail |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for r in results.iter().filter(|r| r.outcome != AGREED) {
        let detail = r.detail.replace('|', "\\|").replace('\n', " ");
        let detail: String = detail.chars().take(300).collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            r.fixture, r.check, r.expected, r.outcome, r.versions, detail
        );
    }
    fs::write(docs.join("conformance.md"), md).expect("write conformance.md");
}

/// Replace `/proc/<pid>/` with `/proc/PID/`.
fn mask_pids(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("/proc/") {
        out.push_str(&rest[..i + 6]);
        rest = &rest[i + 6..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 && rest[digits..].starts_with('/') {
            out.push_str("PID");
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

/// Replace the `len` characters after each `marker` (random names such as netns files).
fn mask_after(text: &str, marker: &str, len: usize) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(marker) {
        out.push_str(&rest[..i + marker.len()]);
        rest = &rest[i + marker.len()..];
        let n = rest.char_indices().nth(len).map_or(rest.len(), |(j, _)| j);
        out.push_str("RANDOM");
        rest = &rest[n..];
    }
    out.push_str(rest);
    out
}

/// A captured spec with everything that differs between runs of the same pod masked: IDs,
/// pod UID and name, the node directory, PIDs, the termination-log file name.
fn normalized(dir: &Path) -> Option<String> {
    let meta: Value =
        serde_json::from_str(&fs::read_to_string(dir.join("meta.json")).ok()?).ok()?;
    let config = fs::read_to_string(dir.join("config.json")).ok()?;
    let sandbox = fs::read_to_string(dir.join("sandbox.json")).unwrap_or_default();
    let spec: Value = serde_json::from_str(&config).ok()?;
    let ann = &spec["annotations"];
    let node = meta["node_paths"]["kubelet_root"]
        .as_str()?
        .trim_end_matches("/kubelet")
        .to_string();
    let mut text = format!("{config}\n{sandbox}");
    for (value, mask) in [
        (meta["container_id"].as_str(), "CONTAINER_ID"),
        (ann["io.kubernetes.cri.sandbox-id"].as_str(), "SANDBOX_ID"),
        (ann["io.kubernetes.cri.sandbox-uid"].as_str(), "POD_UID"),
        (Some(node.as_str()), "NODE"),
    ] {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            text = text.replace(v, mask);
        }
    }
    if let Some(name) = ann["io.kubernetes.cri.sandbox-name"].as_str() {
        text = text.replace(&format!("\"{name}\""), "\"POD_NAME\"");
        text = text.replace(&format!("HOSTNAME={name}\""), "HOSTNAME=POD_NAME\"");
        text = text.replace(&format!("_{name}_"), "_POD_NAME_");
    }
    let text = mask_after(&mask_pids(&text), "/netns/cni-", 36);
    // The termination-log file is named after a random uint32.
    let text: String = text
        .split("/containers/")
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part.to_string()
            } else {
                match part.split_once('/') {
                    Some((ctr, tail)) => {
                        let hex: String =
                            tail.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
                        if hex.len() == 8 {
                            format!("{ctr}/HEX{}", &tail[8..])
                        } else {
                            part.to_string()
                        }
                    }
                    None => part.to_string(),
                }
            }
        })
        .collect::<Vec<_>>()
        .join("/containers/");
    Some(format!(
        "{}|{}|{}\n{text}",
        meta["policy"].as_str()?.split(':').next()?,
        meta["expected"],
        meta["observed"]
    ))
}

/// Keep one fixture dir per (level, expectation, outcome, normalized spec); the kept dir's
/// meta.json lists the other cases under "same_spec_as". Keeps tests/fixtures small.
fn dedupe_fixtures() {
    let root = workspace_root().join("tests/fixtures");
    let Ok(versions) = fs::read_dir(&root) else {
        return;
    };
    for vdir in versions.filter_map(|e| e.ok()).map(|e| e.path()) {
        let mut dirs: Vec<PathBuf> = fs::read_dir(&vdir)
            .map(|it| it.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        dirs.retain(|d| {
            d.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("psa-"))
        });
        dirs.sort();
        let mut kept: BTreeMap<String, (PathBuf, Vec<String>)> = BTreeMap::new();
        for d in dirs {
            let Some(key) = normalized(&d) else { continue };
            let name = d
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_string();
            match kept.get_mut(&key) {
                Some((_, same)) => {
                    same.push(name);
                    fs::remove_dir_all(&d).expect("remove duplicate fixture");
                }
                None => {
                    kept.insert(key, (d, Vec::new()));
                }
            }
        }
        for (dir, same) in kept.values().filter(|(_, s)| !s.is_empty()) {
            let path = dir.join("meta.json");
            let mut meta: Value =
                serde_json::from_str(&fs::read_to_string(&path).expect("meta")).expect("meta json");
            meta["same_spec_as"] = json!(same);
            fs::write(
                &path,
                serde_json::to_string_pretty(&meta).expect("json") + "\n",
            )
            .expect("write meta");
        }
    }
}
