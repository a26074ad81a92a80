//! Conformance with Pod Security Admission over the upstream PSA fixtures (issues 3 and 11).
//!
//! Every distinct fixture (deduplicated by content across the version directories of a
//! level) runs once as a pod on a real containerd node, in namespace `default`, whose labels
//! in the agent's snapshot say `enforce: <level>`, `enforce-version: <newest version it
//! appears in>` (the node's own default stays `baseline:latest`: every record must say its
//! level came from the namespace's labels). The app and init container specs the hook saw are
//! then re-checked offline (`pss-guard check --offline --json`) at every other version the
//! fixture appears in, since the versions only change the policy. Offline is the spec alone:
//! it is also the "before" of the CRI view (issue 13), which only the live hook has; a fail
//! fixture the live hook refused through the CRI view is not re-checked at other versions
//! (its note says so).
//!
//! It runs on the stack `PSS_GUARD_STACK` names (bookworm, trixie, sid) and in both node
//! configurations (tests/containerd/node-up.sh --config): `default` and `seccomp-default`.
//! Outcomes, per fixture:
//!
//! - **agreed**: a pass fixture started; a fail fixture was refused by pss-guard with
//!   EXPECTATIONS.tsv's substring.
//! - **divergent**: a fail fixture started and the hook's own result for the fixture's check
//!   was `pass`, on purpose: listed in DIVERGENT with the reason and the configurations it
//!   holds in.
//! - **not observable**: a fail fixture started and the hook's own result for the fixture's
//!   check was `not-observable`; the reason is the hook's own detail.
//! - **refused for an expected other reason**: refused by something else (kubelet
//!   admission, containerd, or pss-guard on another check), matched against the real error
//!   by EXPECTED_OTHER.
//! - **wrong**: anything else; fails the test.
//!
//! The report part of each (stack, configuration), docs/conformance/<stack>.<config>.json,
//! holds no timings and must equal what the run produces (timings go to
//! target/conformance-timings/); docs/conformance.md is generated from all parts. A run with
//! `UPDATE_CONFORMANCE=1` rewrites both, and fails when any check's agreed count dropped.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::{Snapshot, TestNode, workspace_root};
use kubelet_sim::{ContainerKind, Kubelet, PodRun, Source, UserNamespaces, load};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The stacks the run knows, in report order (`PSS_GUARD_STACK`); adding one is a line here
/// and, where it refuses something for its own reason, a row in EXPECTED_OTHER.
const STACKS: &[&str] = &["bookworm", "trixie", "sid"];

/// Node configurations (node-up.sh --config) and what kubelet-sim does in each.
const CONFIGS: &[(&str, &str)] = &[
    (
        "default",
        "kubelet without seccompDefault (an unset profile is sent as Unconfined); containerd's default capabilities, NET_RAW included; the policy reads an absent linux.seccomp as unset",
    ),
    (
        "seccomp-default",
        "kubelet with seccompDefault: true (an unset profile becomes RuntimeDefault); a base runtime spec without NET_RAW (capabilities.runtime_default follows it); the policy reads an absent linux.seccomp as Unconfined (seccomp_absent = \"unconfined\")",
    ),
];

/// Checks the hook may pass on purpose where PSA refuses: (check ID, configurations ("*" =
/// all), why). A fail fixture that started is **divergent** only when the pod's LIVE decision
/// records say the hook passed that check; this table is consulted after that and only
/// explains it (a pass of a check not listed here is wrong). It is keyed by check, never by
/// fixture name.
const DIVERGENT: &[(&str, &str, &str)] = &[
    (
        "seccompProfile_baseline",
        "default",
        "without seccompDefault kubelet sends Unconfined for an unset profile too, and containerd writes no linux.seccomp for either: the hook reads the absence as unset (seccomp_absent = \"unset\"), which baseline allows. The v1.0-v1.18 fixtures set only the seccomp annotation, which Kubernetes ignores since 1.27 (kubernetes/kubernetes#114947): unset as well",
    ),
    (
        "seccompProfile_baseline",
        "seccomp-default",
        "the fixture sets only the seccomp annotation, which Kubernetes ignores since 1.27 (kubernetes/kubernetes#114947: the API server no longer copies it into the field; kubelet stopped reading it in 1.25): with seccompDefault: true the container runs RuntimeDefault, which the hook allows; PSA v1.0-v1.18 judges the annotation",
    ),
    (
        "seccompProfile_restricted",
        "seccomp-default",
        "leaves the profile unset: with seccompDefault: true kubelet runs it as RuntimeDefault, so the container is confined, which the hook allows; PSA judges the unset field",
    ),
    (
        "runAsNonRoot",
        "*",
        "the image runs as uid 65535 (like the real pause image): the hook judges the uid the process really gets, non-root, and does not require runAsNonRoot=true on top",
    ),
    (
        "hostPathVolumes",
        "*",
        "the fixture declares the hostPath volume but no container mounts it: kubelet skips unused volumes (\"Skipping unused volume\"), so nothing of it reaches the node",
    ),
    (
        "restrictedVolumes",
        "*",
        "the fixture declares the volume but no container mounts it: kubelet skips unused volumes (\"Skipping unused volume\"), so nothing of it reaches the node",
    ),
];

/// A refusal by something other than the fixture's own check that a node is expected to
/// give. One on a stack not listed is wrong: a new stack starts with only the "*" rows.
struct Other {
    /// The stacks it holds on ("*" = every stack).
    stacks: &'static [&'static str],
    /// The fixture stem prefix.
    stem: &'static str,
    expect_pass: bool,
    /// Substrings the real error must all contain.
    needles: &'static [&'static str],
    reason: &'static str,
}

const EXPECTED_OTHER: &[Other] = &[
    Other {
        stacks: &["*"],
        stem: "base_windows",
        expect_pass: true,
        needles: &["PodOSNotSupported"],
        reason: "a Windows pod (spec.os.name: windows): kubelet on a Linux node rejects it at admission",
    },
    Other {
        stacks: &["bookworm", "trixie"],
        stem: "procmount1",
        expect_pass: true,
        needles: &["pss-guard: ", "violates PodSecurity", ": procMount ("],
        reason: "Unmasked is allowed only with hostUsers: false, and containerd 1.x has no pod user namespaces. A real kubelet never starts this pod here: with UserNamespacesSupport on it refuses a hostUsers: false pod on a runtime without them (kubernetes/kubernetes#123216), with it off the API server drops hostUsers and rejects Unmasked in validation. kubelet-sim drops the field instead so the pod reaches the hook, which refuses the unmasked /proc in the host user namespace",
    },
    Other {
        stacks: &["*"],
        stem: "selinuxoptions1",
        expect_pass: true,
        needles: &["the format of 'level' \"somevalue\" is not correct"],
        reason: "containerd validates the SELinux level even with SELinux off, and \"somevalue\" is not an MLS level: CreateContainer fails",
    },
    Other {
        stacks: &["*"],
        stem: "sysctls0",
        expect_pass: false,
        needles: &["SysctlForbidden: forbidden sysctl: \"othersysctl\""],
        reason: "kubelet's sysctl admission refuses a sysctl outside its allowlist before the runtime sees the pod",
    },
    Other {
        stacks: &["*"],
        stem: "runasuser",
        expect_pass: false,
        needles: &["container's runAsUser breaks non-root policy"],
        reason: "kubelet refuses runAsUser: 0 with runAsNonRoot: true (verifyRunAsNonRoot) before the runtime sees the container",
    },
    Other {
        stacks: &["*"],
        stem: "windowshostprocess",
        expect_pass: false,
        needles: &["pss-guard: ", "violates PodSecurity", ": host namespaces ("],
        reason: "a HostProcess pod must use the host network: pss-guard refuses it for hostNamespaces, the only trace a Linux runtime spec keeps",
    },
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

/// pss-guard's own pods (tests/kubelet-sim/fixtures/), in the upstream fixtures' layout: each
/// refuses for one check that the upstream fixtures leave unrefused at the node.
fn own_fixtures_dir() -> PathBuf {
    workspace_root().join("tests/kubelet-sim/fixtures")
}

fn read_expectations(dir: &Path, min_rows: usize) -> BTreeMap<String, Expectation> {
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
        out.len() >= min_rows,
        "{}/EXPECTATIONS.tsv has only {} rows",
        dir.display(),
        out.len()
    );
    out
}

fn minor(version_dir: &str) -> Option<u32> {
    version_dir.strip_prefix("v1.")?.parse().ok()
}

/// Distinct fixtures of a level: same content and same expectation = one case.
/// `origin` prefixes the fixture's path in the report (`pss-guard:` for the repository's own).
fn collect_cases(
    dir: &Path,
    origin: &str,
    level: &str,
    exp: &BTreeMap<String, Expectation>,
) -> Vec<Case> {
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
                let rel = format!("{origin}{}", f.strip_prefix(dir).unwrap_or(&f).display());
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

/// One fixture's outcome: everything here is stable between runs (the compared report part).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct CaseResult {
    case: String,
    level: String,
    fixture: String,
    check: String,
    expected: String,
    versions: String,
    live_policy: String,
    outcome: String,
    reason: String,
    containers_started: usize,
    containers: usize,
    /// The spec alone (offline, at the live version): a fail fixture `refused` with PSA's
    /// check or `not refused`; a pass fixture `allowed` or `refused`.
    spec_alone: String,
    /// The `cri_view` of the pod's container records, sorted, unique.
    cri_views: Vec<String>,
    offline_disagreements: Vec<String>,
    /// Offline verdicts that differ from the live one for a known reason (not counted wrong).
    offline_notes: Vec<String>,
}

const VIOLATES: &str = "violates PodSecurity";
const AGREED: &str = "agreed";
const DIVERGENT_O: &str = "divergent";
const NOT_OBS: &str = "not observable";
const OTHER: &str = "refused for an expected other reason";
const WRONG: &str = "wrong";
const OUTCOMES: &[&str] = &[AGREED, DIVERGENT_O, NOT_OBS, OTHER, WRONG];

/// What `pss-guard check --offline --json` said about one captured spec.
struct Offline {
    refused: bool,
    /// "reason (detail)" of each failing check, and the error if it could not evaluate.
    why: String,
}

async fn offline_check(
    bin: &Path,
    policy: &Path,
    config: &Path,
    sandbox: Option<&Path>,
    level: &str,
    v: u32,
) -> Result<Offline, String> {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.arg("check").arg(config).arg("--policy").arg(policy);
    // Specs captured on CRI-O carry CRI-O's metadata (the default is containerd's).
    if common::stack() == "crio" {
        cmd.args(["--runtime", "cri-o"]);
    }
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
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let mut reasons: Vec<String> = report["checks"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter(|c| c["result"] == "fail")
                .map(|c| format!("{} ({})", s(&c["reason"]), s(&c["detail"])))
                .collect()
        })
        .unwrap_or_default();
    if let Some(e) = report["error"].as_str() {
        reasons.push(format!("error: {e}"));
    }
    Ok(Offline {
        refused,
        why: reasons.join(", "),
    })
}

/// The hook's own outcome for a check in one LIVE decision record (`checks`): `pass`,
/// `fail`, `not observable` (with the hook's why) or `covered` (by which check); `None` where
/// the record has no such check. Under restricted, restrictedVolumes overrides
/// hostPathVolumes (upstream), so a hostPathVolumes fixture takes restrictedVolumes' word.
fn record_outcome(record: &Value, check: &str) -> Option<(String, String)> {
    let checks = &record["checks"];
    let one = |id: &str| -> Option<(String, String)> {
        let listed = |group: &str| {
            checks[group]
                .as_array()
                .is_some_and(|a| a.iter().any(|c| c == id))
        };
        if listed("pass") {
            return Some(("pass".into(), String::new()));
        }
        if listed("fail") {
            return Some(("fail".into(), String::new()));
        }
        if let Some(why) = checks["not_observable"][id].as_str() {
            return Some((NOT_OBS.into(), why.into()));
        }
        if let Some(by) = checks["covered"][id].as_str() {
            return Some(("covered".into(), by.into()));
        }
        None
    };
    one(check).or_else(|| match check {
        "hostPathVolumes" => one("restrictedVolumes"),
        _ => None,
    })
}

fn divergent_reason(check: &str, config: &str) -> Option<&'static str> {
    DIVERGENT
        .iter()
        .find(|(c, configs, _)| *c == check && (*configs == "*" || *configs == config))
        .map(|(_, _, reason)| *reason)
}

fn expected_other(case: &Case, stack: &str, errors: &str) -> Option<&'static str> {
    EXPECTED_OTHER
        .iter()
        .find(|o| {
            o.stacks.iter().any(|s| *s == "*" || *s == stack)
                && case.stem.starts_with(o.stem)
                && o.expect_pass == case.expect_pass
                && o.needles.iter().all(|n| errors.contains(n))
        })
        .map(|o| o.reason)
}

/// The node dir and ids vary between runs: keep them out of the compared report.
fn stable(text: &str, node: &Path) -> String {
    text.replace(&node.display().to_string(), "NODE")
}

/// Classify a live run. `hook` is the hook's own outcome for the fixture's check in the live
/// decision record of each of the pod's containers ([`record_outcome`]).
fn classify(
    case: &Case,
    run: &PodRun,
    declared: usize,
    hook: &[(String, String)],
    stack: &str,
    config: &str,
) -> (&'static str, String) {
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
        return match expected_other(case, stack, &all) {
            Some(reason) => (OTHER, reason.to_string()),
            None => (WRONG, format!("pass fixture did not start: {all}")),
        };
    }
    if hook_errors.iter().any(psa_message) {
        return (
            AGREED,
            format!("refused by pss-guard with {:?}", case.substring),
        );
    }
    if !run.all_started(declared) {
        return match expected_other(case, stack, &all) {
            Some(reason) => (OTHER, reason.to_string()),
            None => (WRONG, format!("refused, not as expected: {all}")),
        };
    }
    // Started although PSA refuses it: the hook's own word on the check, in its live
    // records, decides.
    if hook.is_empty() {
        return (
            WRONG,
            "fail fixture started; no live record carries the hook's outcome for its check".into(),
        );
    }
    if let Some((_, why)) = hook.iter().find(|(r, _)| r == NOT_OBS) {
        return (NOT_OBS, why.clone());
    }
    if hook.iter().all(|(r, _)| r == "pass")
        && let Some(reason) = divergent_reason(&case.check_id, config)
    {
        return (DIVERGENT_O, reason.to_string());
    }
    let results: Vec<&str> = hook.iter().map(|(r, _)| r.as_str()).collect();
    (
        WRONG,
        format!(
            "fail fixture started; the hook's live {} outcome: {results:?}",
            case.check_id
        ),
    )
}

/// Run one fixture as a pod, classify it, re-check its specs offline at every version.
/// Returns the stable result and the pod's wall time.
async fn run_case(
    node: &TestNode,
    k: &mut Kubelet,
    bin: &Path,
    case: &Case,
    stack: &str,
    config: &str,
) -> (CaseResult, f64) {
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

    // CRI-O refuses in CreateContainer, so a refused container has no id from CRI: its
    // record (the hook saw the OCI id) names it.
    let recorded = node.decisions();
    let oci_id = |c: &kubelet_sim::ContainerRun| -> Option<String> {
        c.container_id.clone().or_else(|| {
            recorded
                .iter()
                .rev()
                .find(|d| d["pod_uid"] == run.uid.as_str() && d["container"] == c.name.as_str())
                .and_then(|d| d["container_id"].as_str().map(str::to_owned))
        })
    };
    let captured: Vec<(String, PathBuf, Option<PathBuf>)> = run
        .containers
        .iter()
        .filter_map(|c| {
            let (cfg, sb) = node.capture(&oci_id(c)?)?;
            Some((c.name.clone(), cfg, sb))
        })
        .collect();
    // Offline (the spec alone) at every version; the live records classify the run.
    let mut disagreements = Vec::new();
    let mut offline: BTreeMap<u32, (bool, String)> = BTreeMap::new();
    for &v in &case.versions {
        let mut refused_any = false;
        let mut reasons = Vec::new();
        for (name, cfg, sb) in &captured {
            match offline_check(bin, &policy, cfg, sb.as_deref(), level, v).await {
                Ok(o) => {
                    refused_any |= o.refused;
                    if o.refused {
                        reasons.push(format!("{name}: {}", o.why));
                    }
                }
                Err(e) => disagreements.push(format!("v1.{v}: {e}")),
            }
        }
        offline.insert(v, (refused_any, reasons.join("; ")));
    }
    // The pod's live records: the hook's own outcome of the fixture's check in each decides
    // the category of a fail fixture that started.
    let records: Vec<Value> = node
        .decisions()
        .into_iter()
        .filter(|d| d["pod_uid"] == run.uid.as_str())
        .collect();
    let hook_word: Vec<(String, String)> = records
        .iter()
        .filter_map(|d| record_outcome(d, &case.check_id))
        .collect();
    let (outcome, reason) = classify(case, &run, declared, &hook_word, stack, config);
    let mut outcome = outcome;
    // A container that joins its pod's user namespace by path (containerd 2.x): offline, the
    // hook cannot show that namespace is not the host's and grants no hostUsers:false
    // relaxation; live it compares namespace inodes.
    let userns_by_path = captured.iter().any(|(_, cfg, _)| {
        fs::read_to_string(cfg)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["linux"]["namespaces"].as_array().cloned())
            .is_some_and(|ns| {
                ns.iter()
                    .any(|n| n["type"] == "user" && n["path"].is_string())
            })
    });
    let spec_refuses = |v: u32| {
        offline
            .get(&v)
            .is_some_and(|(r, why)| *r && why.contains(&case.substring))
    };
    let spec_alone = match (case.expect_pass, offline.get(&case.newest())) {
        (true, Some((false, _))) => "allowed",
        (true, _) => "refused",
        (false, _) if spec_refuses(case.newest()) => "refused",
        (false, _) => "not refused",
    };
    // The level came from the namespace's labels in the snapshot, and a refusal the spec
    // alone does not give came through the CRI view.
    let mut cri_views: Vec<String> = records
        .iter()
        .filter_map(|d| d["cri_view"].as_str().map(str::to_owned))
        .collect();
    cri_views.sort();
    cri_views.dedup();
    for d in &records {
        if d["policy_from"] != "namespace labels" || d["policy"] != live_policy.as_str() {
            disagreements.push(format!(
                "record of {} has policy {} from {}, not {live_policy} from the namespace's labels",
                d["container"], d["policy"], d["policy_from"]
            ));
        }
    }
    let through_cri = !case.expect_pass && outcome == AGREED && spec_alone == "not refused";
    if through_cri
        && !records
            .iter()
            .any(|d| d["decision"] == "refused" && d["cri_view"] == "used")
    {
        disagreements.push(
            "refused live but not by the spec alone, and no refused record used the CRI view"
                .into(),
        );
    }
    let mut notes = Vec::new();
    let mut cri_only: Vec<u32> = Vec::new();
    for (v, (refused_any, why)) in &offline {
        if case.expect_pass && outcome == AGREED && *refused_any && userns_by_path {
            notes.push(format!(
                "v1.{v}: refused offline ({why}): the user namespace is joined by path, which `check --offline` cannot tell from the host's; live, the hook compared namespace inodes"
            ));
        } else if case.expect_pass && outcome == AGREED && *refused_any {
            disagreements.push(format!("v1.{v}: pass fixture refused offline: {why}"));
        } else if through_cri && !spec_refuses(*v) {
            cri_only.push(*v);
        } else if !case.expect_pass
            && outcome == AGREED
            && !(*refused_any && why.contains(&case.substring))
        {
            disagreements.push(format!(
                "v1.{v}: allowed offline (or without {:?}): {why}",
                case.substring
            ));
        }
    }
    if !cri_only.is_empty() {
        // Only the live version ran with the CRI view: nothing is claimed for the others.
        let others: Vec<u32> = cri_only
            .iter()
            .copied()
            .filter(|v| *v != case.newest())
            .collect();
        notes.push(format!(
            "v1.{}: the spec alone does not refuse it; live, the hook refused it through the CRI view",
            case.newest()
        ));
        if !others.is_empty() {
            notes.push(format!(
                "{}: not run live; the spec alone does not refuse it there, and only the live hook reads the CRI view",
                version_ranges(&others)
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
        if node.capture(&id).is_some() && config == "default" {
            node.save_fixture(
                &format!("psa-{}", case.name()),
                &id,
                json!({"case": case.name(), "pod": case.files.first(), "container": c.name,
                       "policy": live_policy, "versions": version_ranges(&case.versions),
                       "expected": if case.expect_pass { "allowed" } else { "refused" },
                       "expected_substring": (!case.expect_pass).then_some(&case.substring),
                       "observed": outcome}),
            );
            save_cri_documents(node, k, &case.name(), &id, run.sandbox_id.as_deref()).await;
        }
    }
    if let Some(id) = run.sandbox_id.as_deref() {
        k.stop_pod(id)
            .await
            .unwrap_or_else(|e| panic!("stop {}: {e:?}", case.name()));
    }
    let node_dir = node.dir.clone();
    (
        CaseResult {
            case: case.name(),
            level: level.into(),
            fixture: case.files.first().cloned().unwrap_or_default(),
            check: case.check_id.clone(),
            expected: if case.expect_pass { "pass" } else { "fail" }.into(),
            versions: version_ranges(&case.versions),
            live_policy,
            outcome: outcome.into(),
            reason: stable(&reason, &node_dir),
            containers_started: run.containers.iter().filter(|c| c.started).count(),
            containers: declared,
            spec_alone: spec_alone.into(),
            cri_views,
            offline_disagreements: disagreements.iter().map(|d| stable(d, &node_dir)).collect(),
            offline_notes: notes.iter().map(|d| stable(d, &node_dir)).collect(),
        },
        pod_seconds,
    )
}

async fn conformance(config: &str) {
    let dir = fixtures_dir();
    let exp = read_expectations(&dir, 15);
    let own = own_fixtures_dir();
    let own_exp = read_expectations(&own, 5);
    let bin = common::pss_guard_bin();
    let stack = common::stack();
    assert!(
        STACKS.contains(&stack.as_str()),
        "stack {stack:?} is not in STACKS"
    );
    let node = TestNode::up_with(&stack, config);
    let mut opts = node.options();
    // A cluster admin who allowed the two sysctls PSA v1.37 adds (kubelet's own allowlist
    // does not have them yet): lets the v1.37 pass fixture reach the hook.
    // And one PSA forbids at every version (kernel.msgmax), for the pod the hook's sysctls
    // check alone refuses (tests/kubelet-sim/fixtures/).
    opts.allowed_unsafe_sysctls = vec![
        "net.ipv4.tcp_slow_start_after_idle".into(),
        "net.ipv4.tcp_notsent_lowat".into(),
        "kernel.msgmax".into(),
    ];
    opts.seccomp_default = config == "seccomp-default";
    // containerd 2.x + runc 1.3 run pods in user namespaces; 1.6 and 1.7 have none, so run
    // hostUsers:false pods as a cluster with UserNamespacesSupport off would (field dropped)
    // and their other checks still run.
    opts.user_namespaces = if node.version("CONTAINERD_VERSION").starts_with('2') {
        UserNamespaces::Pod
    } else {
        UserNamespaces::Ignore
    };
    let mut k1 = node.kubelet(opts.clone()).await;
    let mut k2 = node.kubelet(opts).await;
    let snapshot = Snapshot::on(&node, 3600);
    // Two pods start at once on a shared machine: the lookup gets the most time a policy may
    // give it, so a slow answer cannot turn into a spec-alone verdict here (cri_view would
    // say so, and the report would differ).
    node.set_table_key("cri", "budget_ms", "2000");

    // Cases that share a live policy run two at a time (the policy file is node-wide).
    let mut groups: BTreeMap<String, Vec<Case>> = BTreeMap::new();
    for level in ["baseline", "restricted"] {
        let upstream = collect_cases(&dir, "", level, &exp);
        for case in upstream
            .into_iter()
            .chain(collect_cases(&own, "pss-guard:", level, &own_exp))
        {
            groups
                .entry(format!("{level}:v1.{:02}", case.newest()))
                .or_default()
                .push(case);
        }
    }
    let started = Instant::now();
    let mut results: Vec<(CaseResult, f64)> = Vec::new();
    for cases in groups.values() {
        if let Some(first) = cases.first() {
            snapshot.write(
                0,
                json!({"default": {
                    "pod-security.kubernetes.io/enforce": first.level,
                    "pod-security.kubernetes.io/enforce-version": format!("v1.{}", first.newest()),
                }}),
            );
        }
        for pair in cases.chunks(2) {
            match pair {
                [a, b] => {
                    let (ra, rb) = tokio::join!(
                        run_case(&node, &mut k1, &bin, a, &stack, config),
                        run_case(&node, &mut k2, &bin, b, &stack, config)
                    );
                    results.push(ra);
                    results.push(rb);
                }
                [a] => results.push(run_case(&node, &mut k1, &bin, a, &stack, config).await),
                _ => {}
            }
        }
    }
    let total = started.elapsed().as_secs_f64();
    results.sort_by(|a, b| {
        (a.0.level.as_str(), a.0.case.as_str()).cmp(&(b.0.level.as_str(), b.0.case.as_str()))
    });
    let versions = (
        node.version("CONTAINERD_VERSION"),
        node.version("RUNC_VERSION"),
    );
    write_timings(&stack, config, &results, total);
    let results: Vec<CaseResult> = results.into_iter().map(|(r, _)| r).collect();

    if std::env::var("UPDATE_CRI_FIXTURES").as_deref() == Ok("1") {
        dedupe_fixtures();
    }

    // This run's part, whatever happens next: what a failure is compared from.
    let part = Part {
        stack: stack.clone(),
        config: config.into(),
        containerd: versions.0.clone(),
        runc: versions.1.clone(),
        summary: summary(&results),
        cases: results.clone(),
    };
    let text = serde_json::to_string_pretty(&part).expect("part json") + "\n";
    let _ = fs::write(
        workspace_root().join(format!("target/conformance-{stack}.{config}.json")),
        &text,
    );
    let wrong: Vec<&CaseResult> = results.iter().filter(|r| r.outcome == WRONG).collect();
    assert!(
        wrong.is_empty(),
        "{} of {} fixtures disagree with PSA on {stack}/{config}:\n{}",
        wrong.len(),
        results.len(),
        wrong
            .iter()
            .map(|r| format!(
                "  {} [{}]: {} {:?}",
                r.case, r.check, r.reason, r.offline_disagreements
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
    compare_or_update(&stack, config, part, text);
}

#[tokio::test(flavor = "current_thread")]
async fn psa_fixtures_conformance_default() {
    conformance("default").await;
}

#[tokio::test(flavor = "current_thread")]
async fn psa_fixtures_conformance_seccomp_default() {
    conformance("seccomp-default").await;
}

/// The compared part of the report of one (stack, configuration).
#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Part {
    stack: String,
    config: String,
    containerd: String,
    runc: String,
    /// level -> check -> outcome -> count
    summary: BTreeMap<String, BTreeMap<String, BTreeMap<String, usize>>>,
    cases: Vec<CaseResult>,
}

fn summary(results: &[CaseResult]) -> BTreeMap<String, BTreeMap<String, BTreeMap<String, usize>>> {
    let mut table: BTreeMap<String, BTreeMap<String, BTreeMap<String, usize>>> = BTreeMap::new();
    for r in results {
        *table
            .entry(r.level.clone())
            .or_default()
            .entry(r.check.clone())
            .or_default()
            .entry(r.outcome.clone())
            .or_default() += 1;
    }
    table
}

fn parts_dir() -> PathBuf {
    workspace_root().join("docs/conformance")
}

fn part_path(stack: &str, config: &str) -> PathBuf {
    parts_dir().join(format!("{stack}.{config}.json"))
}

/// Pod timings of the last run (not committed, never compared).
fn write_timings(stack: &str, config: &str, results: &[(CaseResult, f64)], total: f64) {
    let dir = workspace_root().join("target/conformance-timings");
    let _ = fs::create_dir_all(&dir);
    let pods = results.len();
    let mean_latency = if pods > 0 {
        results.iter().map(|(_, s)| s).sum::<f64>() / pods as f64
    } else {
        0.0
    };
    let report = json!({
        "stack": stack, "config": config, "pods": pods, "concurrent_pods": 2,
        "total_seconds": (total * 10.0).round() / 10.0,
        "mean_wall_seconds_per_pod": if pods > 0 { total / pods as f64 } else { 0.0 },
        "mean_run_pod_latency_seconds": mean_latency,
        "pods_seconds": results.iter().map(|(r, s)| (r.case.clone(), *s)).collect::<Vec<_>>(),
    });
    let _ = fs::write(
        dir.join(format!("{stack}.{config}.json")),
        serde_json::to_string_pretty(&report).unwrap_or_default() + "\n",
    );
    eprintln!(
        "conformance {stack}/{config}: {pods} pods in {total:.1} s ({:.2} s per pod, two at a time)",
        if pods > 0 { total / pods as f64 } else { 0.0 }
    );
}

fn compare_or_update(stack: &str, config: &str, part: Part, text: String) {
    let path = part_path(stack, config);
    let committed = fs::read_to_string(&path).ok();
    let update = std::env::var("UPDATE_CONFORMANCE").as_deref() == Ok("1");
    // An agreed count may never drop, whatever the mode, unless the update run names it
    // (`UPDATE_CONFORMANCE_ALLOW_DROP=level/check,...`: a row that agreed for a wrong reason).
    let allowed_drops: Vec<String> = std::env::var("UPDATE_CONFORMANCE_ALLOW_DROP")
        .ok()
        .filter(|_| update)
        .map(|v| v.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    if let Some(old) = committed
        .as_deref()
        .and_then(|t| serde_json::from_str::<Part>(t).ok())
    {
        let mut dropped = Vec::new();
        for (level, checks) in &old.summary {
            for (check, counts) in checks {
                let was = counts.get(AGREED).copied().unwrap_or(0);
                let now = part
                    .summary
                    .get(level)
                    .and_then(|c| c.get(check))
                    .and_then(|c| c.get(AGREED))
                    .copied()
                    .unwrap_or(0);
                if now < was && !allowed_drops.contains(&format!("{level}/{check}")) {
                    dropped.push(format!("{level}/{check}: agreed {was} -> {now}"));
                }
            }
        }
        assert!(
            dropped.is_empty(),
            "agreed counts dropped on {stack}/{config}:\n{}",
            dropped.join("\n")
        );
    }
    if update {
        fs::create_dir_all(parts_dir()).expect("docs/conformance");
        fs::write(&path, &text).expect("write report part");
        fs::write(workspace_root().join("docs/conformance.md"), markdown()).expect("write md");
        return;
    }
    let Some(committed) = committed else {
        panic!(
            "{} is not committed: run with UPDATE_CONFORMANCE=1 and commit it",
            path.display()
        );
    };
    if committed != text {
        let out = workspace_root().join(format!("target/conformance-{stack}.{config}.json"));
        panic!(
            "the conformance report for {stack}/{config} differs from the committed {} (this run's is {}; UPDATE_CONFORMANCE=1 rewrites it)",
            path.display(),
            out.display()
        );
    }
    let md = fs::read_to_string(workspace_root().join("docs/conformance.md")).unwrap_or_default();
    assert!(
        md == markdown(),
        "docs/conformance.md is not what docs/conformance/*.json generate (UPDATE_CONFORMANCE=1 rewrites it)"
    );
}

/// The opening table of docs/conformance.md: each Pod Security control, how much of it the
/// hook enforces at the node, and why, one line each; each cause is said once. The figures
/// below it (from the runs) are what back each line.
const CONTROLS: &[(&str, &str, &str)] = &[
    (
        "Privileged (`privileged`)",
        "fully",
        "the spec shows it: every capability, no masked paths",
    ),
    (
        "Host namespaces (`hostNamespaces`)",
        "fully",
        "the spec names the host's namespaces",
    ),
    (
        "Capabilities, baseline (`capabilities_baseline`)",
        "fully ¹",
        "the spec's set; adds as written (`chown`) in the CRI view",
    ),
    (
        "HostPath volumes (`hostPathVolumes`)",
        "partly",
        "a mounted hostPath is a host bind; a volume no container mounts never reaches the node",
    ),
    (
        "Host ports (`hostPorts`)",
        "fully ¹",
        "each container's ports annotation and the pod's port mappings",
    ),
    (
        "Host probes / lifecycle (`hostProbesAndHostLifecycle`)",
        "partly ¹",
        "a preStop host is in the container's annotation; probes and postStart stay in kubelet",
    ),
    (
        "AppArmor (`appArmorProfile`)",
        "fully ¹",
        "the profile kubelet asked for",
    ),
    (
        "SELinux (`seLinuxOptions`)",
        "fully ¹",
        "the options kubelet sent (the spec drops them without SELinux)",
    ),
    (
        "/proc mount (`procMount`)",
        "fully",
        "the spec's masked paths",
    ),
    (
        "Seccomp, baseline (`seccompProfile_baseline`)",
        "partly",
        "containerd writes the same spec for Unconfined and unset: a policy switch reads it",
    ),
    ("Sysctls (`sysctls`)", "fully", "the spec's sysctls"),
    (
        "HostProcess (`windowsHostProcess`)",
        "not",
        "Windows only; its required hostNetwork is refused instead",
    ),
    (
        "Volume types (`restrictedVolumes`)",
        "partly",
        "as hostPath; plugins that serve PVs too (nfs) are read by a policy switch",
    ),
    (
        "Privilege escalation (`allowPrivilegeEscalation`)",
        "fully",
        "noNewPrivileges in the spec",
    ),
    (
        "Non-root (`runAsNonRoot`)",
        "by the real uid",
        "the uid the process gets, not the field: a non-root image passes without it",
    ),
    (
        "Non-root user (`runAsUser`)",
        "fully, stricter",
        "uid 0 fails whether the pod or the image set it",
    ),
    (
        "Seccomp, restricted (`seccompProfile_restricted`)",
        "partly",
        "with seccompDefault an unset profile runs RuntimeDefault, which passes",
    ),
    (
        "Capabilities, restricted (`capabilities_restricted`)",
        "fully",
        "the spec's set; drop as written in the CRI view",
    ),
    (
        "/proc mount, restricted (`procMount_restricted`)",
        "fully",
        "the spec's masked paths",
    ),
];

/// Words wrapped at `width` columns.
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// docs/conformance.md from every committed part, stacks in order, then configurations.
fn markdown() -> String {
    let mut parts: Vec<Part> = fs::read_dir(parts_dir())
        .map(|it| {
            it.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .filter_map(|e| serde_json::from_str(&fs::read_to_string(e.path()).ok()?).ok())
                .collect()
        })
        .unwrap_or_default();
    let stack_order = |s: &str| STACKS.iter().position(|x| *x == s);
    let config_order = |c: &str| CONFIGS.iter().position(|(x, _)| *x == c);
    parts.sort_by_key(|p| (stack_order(&p.stack), config_order(&p.config)));

    let mut md = String::new();
    let _ = writeln!(md, "# Conformance with Pod Security Admission\n");
    let _ = writeln!(md, "| control (PSA check) | at the node | why |");
    let _ = writeln!(md, "|---|---|---|");
    for (control, how, why) in CONTROLS {
        let _ = writeln!(md, "| {control} | {how} | {why} |");
    }
    let _ = writeln!(md);
    md.push_str(&wrap(
        "¹ With the CRI view: the hook reads the configs kubelet sent containerd (on by default; \
         `[cri] lookup`). Without it, host ports, host lifecycle, AppArmor and SELinux are not \
         observable and capability adds are read from the spec's set only. A not-observable check \
         is never a refusal: admission remains the only enforcement of what does not reach the node.",
        100,
    ));
    let _ = writeln!(md);
    md.push_str(&wrap(
        "Generated by `tests/kubelet-sim/tests/conformance.rs` (`UPDATE_CONFORMANCE=1`) from \
         docs/conformance/<stack>.<configuration>.json, which every CI run regenerates and compares. \
         Each distinct upstream PSA fixture (deduplicated by content across version directories), \
         and pss-guard's own pods (tests/kubelet-sim/fixtures/: one for each check no upstream \
         fixture makes refuse at the node), ran once as a pod through kubelet-sim on a containerd + \
         runc test node, in a namespace whose labels in the agent's snapshot say `enforce: <level>` \
         and `enforce-version: <newest version it appears in>`; the specs the hook saw were \
         re-checked offline (the spec alone) at every other version it appears in. Timings are not \
         part of this report (target/conformance-timings/).",
        100,
    ));
    let _ = writeln!(md);
    md.push_str(&wrap(
        "Outcomes: **agreed** (a pass fixture started; a fail fixture was refused by pss-guard with \
         PSA's reason); for a fail fixture that started, the hook's own outcome of the fixture's \
         check in its live decision records decides: **divergent** (the hook passed it, on \
         purpose: the cause below), **not observable** (the hook's own why below); **refused for \
         an expected other reason** (kubelet admission, containerd, or pss-guard on another \
         check, matched against the real error, listed per stack); **wrong** (anything else; \
         fails the test).",
        100,
    ));
    let _ = writeln!(md);
    md.push_str(&wrap(
        "**Spec alone → with the CRI view**: fail fixtures refused with PSA's check at the live \
         version when the hook reads only the OCI spec (`check --offline` of the captured specs) \
         and when it also reads the CRI configs (the live hook). Other versions are re-checked \
         with the spec alone only.",
        100,
    ));
    let _ = writeln!(md);
    let _ = writeln!(md, "Node configurations:\n");
    for (name, what) in CONFIGS {
        md.push_str(&wrap(&format!("- `{name}`: {what}."), 100));
    }
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "| stack | containerd | runc | config | fixtures | agreed | divergent | not observable | other reason | wrong |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
    for p in &parts {
        let n = |o: &str| p.cases.iter().filter(|c| c.outcome == o).count();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            p.stack,
            p.containerd,
            p.runc,
            p.config,
            p.cases.len(),
            n(AGREED),
            n(DIVERGENT_O),
            n(NOT_OBS),
            n(OTHER),
            n(WRONG),
        );
    }
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "v1.37 fail fixtures refused with PSA's check, spec alone → with the CRI view:\n"
    );
    let _ = writeln!(md, "| stack | config | baseline | restricted |");
    let _ = writeln!(md, "|---|---|---|---|");
    for p in &parts {
        // The distinct fixtures of a level's v1.37 directory are the cases run at v1.37.
        let newest = |level: &str| {
            let fails: Vec<&CaseResult> = p
                .cases
                .iter()
                .filter(|c| c.expected == "fail" && c.live_policy == format!("{level}:v1.37"))
                .collect();
            format!(
                "{} → {} of {}",
                fails.iter().filter(|c| c.spec_alone == "refused").count(),
                fails.iter().filter(|c| c.outcome == AGREED).count(),
                fails.len()
            )
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            p.stack,
            p.config,
            newest("baseline"),
            newest("restricted")
        );
    }
    let _ = writeln!(md);

    // Every cause once, numbered; the tables below refer to the numbers.
    let mut causes: Vec<(String, String, String)> = Vec::new();
    for p in &parts {
        for c in p.cases.iter().filter(|c| c.outcome != AGREED) {
            let key = (c.outcome.clone(), c.check.clone(), c.reason.clone());
            if !causes.contains(&key) {
                causes.push(key);
            }
        }
    }
    causes.sort_by_key(|(o, check, r)| {
        (
            OUTCOMES.iter().position(|x| x == o),
            check.clone(),
            r.clone(),
        )
    });
    if !causes.is_empty() {
        let _ = writeln!(md, "## Causes\n");
        for (i, (outcome, check, reason)) in causes.iter().enumerate() {
            md.push_str(&wrap(
                &format!(
                    "{}. {outcome}, `{check}`: {}",
                    i + 1,
                    reason.replace('\n', " ")
                ),
                100,
            ));
        }
        let _ = writeln!(md);
    }
    let cause_no = |c: &CaseResult| {
        causes
            .iter()
            .position(|(o, k, r)| *o == c.outcome && *k == c.check && *r == c.reason)
            .map_or(0, |i| i + 1)
    };

    for p in &parts {
        let _ = writeln!(
            md,
            "## {} (containerd {}, runc {}), configuration `{}`\n",
            p.stack, p.containerd, p.runc, p.config
        );
        let mut views: BTreeMap<&str, usize> = BTreeMap::new();
        for v in p.cases.iter().flat_map(|c| &c.cri_views) {
            *views.entry(v.as_str()).or_default() += 1;
        }
        let _ = writeln!(md, "CRI view in the containers' records:\n");
        for (v, n) in &views {
            md.push_str(&wrap(&format!("- `{v}`: {n} pods"), 100));
        }
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "| level | check | pass/fail | agreed | divergent | not obs. | other | wrong | spec alone → CRI view |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
        for (level, checks) in &p.summary {
            for (check, counts) in checks {
                let n = |k: &str| counts.get(k).copied().unwrap_or(0);
                let of = |e: &str| {
                    p.cases
                        .iter()
                        .filter(|r| r.level == *level && r.check == *check && r.expected == e)
                        .count()
                };
                let fails = || {
                    p.cases
                        .iter()
                        .filter(|r| r.level == *level && r.check == *check && r.expected == "fail")
                };
                let before = fails().filter(|r| r.spec_alone == "refused").count();
                let after = fails().filter(|r| r.outcome == AGREED).count();
                let _ = writeln!(
                    md,
                    "| {level} | {check} | {}/{} | {} | {} | {} | {} | {} | {before} → {after} |",
                    of("pass"),
                    of("fail"),
                    n(AGREED),
                    n(DIVERGENT_O),
                    n(NOT_OBS),
                    n(OTHER),
                    n(WRONG)
                );
            }
        }
        let _ = writeln!(md);
        // Non-agreed fixtures counted by (level, outcome, check, cause); their names are in
        // the JSON part.
        let mut groups: BTreeMap<(String, usize, String, usize), usize> = BTreeMap::new();
        for c in p.cases.iter().filter(|c| c.outcome != AGREED) {
            let rank = OUTCOMES.iter().position(|o| *o == c.outcome).unwrap_or(0);
            *groups
                .entry((c.level.clone(), rank, c.check.clone(), cause_no(c)))
                .or_default() += 1;
        }
        if !groups.is_empty() {
            let _ = writeln!(md, "| level | outcome | check | fixtures | cause |");
            let _ = writeln!(md, "|---|---|---|---|---|");
            for ((level, rank, check, cause), n) in &groups {
                let _ = writeln!(
                    md,
                    "| {level} | {} | {check} | {n} | {cause} |",
                    OUTCOMES[*rank]
                );
            }
            let _ = writeln!(md);
        }
    }
    md
}

/// With `UPDATE_CRI_FIXTURES=1`, beside a saved fixture's specs: the two documents the hook's
/// CRI view reads, cut to the parts it reads. `cri-container.json`: `sandboxID` and `config`
/// of the verbose CRI ContainerStatus `info["info"]`; `cri-sandbox.json`: `Version` and
/// `Metadata.ID`/`Config` of the sandbox's `io.cri-containerd.sandbox.metadata` extension (as
/// `ctr containers info` prints it, base64). The mutation test (src/policy/mutation.rs) reads
/// them with the hook's own parsers.
async fn save_cri_documents(
    node: &TestNode,
    k: &mut Kubelet,
    case: &str,
    container_id: &str,
    sandbox_id: Option<&str>,
) {
    if std::env::var("UPDATE_CRI_FIXTURES").as_deref() != Ok("1") {
        return;
    }
    let dir = workspace_root().join(format!(
        "tests/fixtures/containerd-{}/psa-{case}",
        node.version("CONTAINERD_VERSION")
    ));
    let info = k
        .container_info(container_id)
        .await
        .unwrap_or_else(|e| panic!("{case}: verbose ContainerStatus: {e:?}"))
        .unwrap_or_else(|| panic!("{case}: verbose ContainerStatus has no info"));
    let info: Value = serde_json::from_str(&info).expect("container info json");
    let container = json!({"sandboxID": info["sandboxID"], "config": info["config"]});
    let sandbox_id = sandbox_id.unwrap_or_else(|| panic!("{case}: no sandbox"));
    let out = std::process::Command::new("ctr")
        .arg("--address")
        .arg(node.socket())
        .args(["-n", "k8s.io", "containers", "info", sandbox_id])
        .output()
        .expect("ctr containers info");
    let record: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{case}: ctr containers info: {e}"));
    let ext = &record["Extensions"]["io.cri-containerd.sandbox.metadata"]["value"];
    let bytes = base64_decode(ext.as_str().unwrap_or_default())
        .unwrap_or_else(|| panic!("{case}: sandbox metadata extension is not base64: {ext}"));
    let meta: Value = serde_json::from_slice(&bytes).expect("sandbox metadata json");
    let sandbox = json!({"Version": meta["Version"],
        "Metadata": {"ID": meta["Metadata"]["ID"], "Config": meta["Metadata"]["Config"]}});
    for (name, v) in [
        ("cri-container.json", container),
        ("cri-sandbox.json", sandbox),
    ] {
        fs::write(
            dir.join(name),
            serde_json::to_string_pretty(&v).expect("json") + "\n",
        )
        .expect("write CRI document");
    }
}

/// Standard base64 with padding (Go's encoding/json for `[]byte`).
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= value(*c)? << (18 - 6 * i);
        }
        let n = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        out.extend_from_slice(&acc.to_be_bytes()[1..=n]);
    }
    Some(out)
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
    // The CRI documents too: pods with the same spec differ there (a hostPort, a preStop).
    let cri: String = ["cri-container.json", "cri-sandbox.json"]
        .iter()
        .map(|f| fs::read_to_string(dir.join(f)).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let spec: Value = serde_json::from_str(&config).ok()?;
    let ann = &spec["annotations"];
    let node = meta["node_paths"]["kubelet_root"]
        .as_str()?
        .trim_end_matches("/kubelet")
        .to_string();
    let mut text = format!("{config}\n{sandbox}\n{cri}");
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
