//! The mutation test of the conformance report (issue 18): for every check ID, the report over
//! the captured specs changes when that one check is left out of the evaluation.
//!
//! The report here is what the hook decides, per captured case of the conformance run
//! (`tests/fixtures/containerd-*/psa-*`: the spec and sandbox spec containerd wrote, and, where
//! captured, the two CRI documents the hook's CRI view reads) and per policy version the case
//! holds at: the decision and the IDs of the failing checks. It is computed the way the hook
//! computes it: the spec's facts (as `check --offline` collects them), then, where the spec
//! alone does not refuse, again with the CRI view parsed by the hook's own parsers. Each case
//! is judged under both readings of an absent `linux.seccomp` (`seccomp_absent`: `unset`, the
//! default, and `unconfined`, the conformance run's seccomp-default nodes): under the default
//! alone an Unconfined profile and an unset one look the same, and seccompProfile_baseline
//! would refuse nothing.
//!
//! The switch that leaves a check out ([`super::DISABLED`]) exists only in test builds of the
//! library: no binary can carry it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::config::Policy;
use crate::policy::{Ambiguity, CHECKS, LevelVersion, Report, SeccompAbsent};
use crate::spec::{self, Runtime, RuntimeArg, Target};

/// Checks that fail in a captured case only where another check fails too, and why they
/// cannot refuse alone at the node; for them the report changes in the failing checks only.
const NEVER_ALONE: &[(&str, &str)] = &[(
    "runAsUser",
    "judges the uid the process gets, as runAsNonRoot does at every version runAsUser exists: uid 0 fails both",
)];

/// Checks that can never fail at a Linux node: their outcome must be `not observable` in
/// every case, and leaving them out changes nothing.
const NEVER_FAILS: &[(&str, &str)] = &[(
    "windowsHostProcess",
    "Windows HostProcess containers never run on a Linux runtime",
)];

/// One case at one policy: refused, and the failing check IDs.
type Verdict = (bool, Vec<&'static str>);

struct Case {
    name: String,
    policies: Vec<LevelVersion>,
    policy: Policy,
    /// The spec's facts, as `check --offline` collects them.
    facts: crate::facts::Facts,
    container: String,
    view: Option<crate::cri::View>,
}

fn cases() -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out = Vec::new();
    let mut runtimes: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("containerd-"))
        })
        .collect();
    runtimes.sort();
    for runtime in runtimes {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&runtime)
            .expect("runtime dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("psa-"))
            })
            .collect();
        dirs.sort();
        for dir in dirs {
            out.push(case(&dir));
        }
    }
    out
}

/// `v1.0-v1.37,v1.40` -> every end of every range.
fn minors(versions: &str) -> Vec<u32> {
    let mut out: Vec<u32> = versions
        .split([',', '-'])
        .filter_map(|v| v.trim().strip_prefix("v1.")?.parse().ok())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn case(dir: &Path) -> Case {
    let name = dir.display().to_string();
    let meta: Value = serde_json::from_slice(&std::fs::read(dir.join("meta.json")).expect("meta"))
        .expect("meta.json");
    let live: LevelVersion = meta["policy"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{name}: meta.json names no policy"));
    let mut policies = vec![live];
    for m in minors(meta["versions"].as_str().unwrap_or("")) {
        let lv = LevelVersion {
            level: live.level,
            version: crate::policy::Version::Pinned(m),
        };
        if !policies.contains(&lv) {
            policies.push(lv);
        }
    }
    // The node's paths when it was captured, as tests/fixtures.rs gives them to the binary.
    let mut text = String::from("[paths]\n");
    if let Some(paths) = meta["node_paths"].as_object() {
        for (k, v) in paths {
            text.push_str(&format!("{k} = {v}\n"));
        }
    }
    let policy = Policy::from_toml(&text).unwrap_or_else(|e| panic!("{name}: policy: {e}"));
    let view = match (
        std::fs::read(dir.join("cri-container.json")),
        std::fs::read(dir.join("cri-sandbox.json")),
    ) {
        (Ok(c), Ok(s)) => {
            let (sandbox_id, container) = crate::cri::parse_container_info(&c)
                .unwrap_or_else(|e| panic!("{name}: cri-container.json: {e}"));
            let pod = crate::cri::parse_sandbox_metadata(&s, &sandbox_id)
                .unwrap_or_else(|e| panic!("{name}: cri-sandbox.json: {e}"));
            Some(crate::cri::View { container, pod })
        }
        _ => None,
    };
    let sandbox = dir.join("sandbox.json");
    let target = Target {
        id: meta["container_id"].as_str().unwrap_or("").to_owned(),
        bundle: dir.to_owned(),
        spec_file: Some(dir.join("config.json")),
        sandbox_file: sandbox.is_file().then_some(sandbox),
        runtime: RuntimeArg::Named(Runtime::Containerd),
    };
    let loaded = spec::load(&target, &policy.paths)
        .unwrap_or_else(|e| panic!("{name}: {}", e.error.chain()));
    let facts =
        spec::collect(&loaded, &policy, false).unwrap_or_else(|e| panic!("{name}: {}", e.chain()));
    Case {
        container: loaded.identity.container_name().to_owned(),
        name,
        policies,
        policy,
        facts,
        view,
    }
}

fn failing(r: &Report) -> Verdict {
    (!r.allowed(), r.violations().map(|(c, _)| c.id).collect())
}

/// The hook's verdict for one case at one policy.
fn verdict(c: &Case, lv: LevelVersion, seccomp_absent: SeccompAbsent) -> Verdict {
    let ambiguity = Ambiguity {
        seccomp_absent,
        legacy_volumes: c.policy.legacy_volumes,
    };
    let run = |view| {
        super::evaluate(
            &c.facts,
            view,
            lv,
            super::NEWEST_MINOR,
            &c.container,
            ambiguity,
            c.policy.runtime_default_caps,
        )
    };
    let spec_only = run(None);
    // As the hook: the CRI view only where the spec alone does not refuse.
    match &c.view {
        Some(v) if spec_only.allowed() => failing(&run(Some(v))),
        _ => failing(&spec_only),
    }
}

fn report(cases: &[Case]) -> BTreeMap<(String, String), Verdict> {
    let mut out = BTreeMap::new();
    for c in cases {
        for lv in &c.policies {
            for absent in [SeccompAbsent::Unset, SeccompAbsent::Unconfined] {
                out.insert(
                    (c.name.clone(), format!("{lv}, seccomp_absent {absent:?}")),
                    verdict(c, *lv, absent),
                );
            }
        }
    }
    out
}

#[test]
fn leaving_out_any_one_check_changes_the_conformance_report() {
    let cases = cases();
    assert!(
        cases.len() >= 50,
        "captured cases went missing: {}",
        cases.len()
    );
    assert!(
        cases.iter().filter(|c| c.view.is_some()).count() >= 50,
        "captured CRI documents went missing"
    );
    let full = report(&cases);
    let mut unchanged = Vec::new();
    let mut alone: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for check in CHECKS {
        super::DISABLED.with(|d| d.set(Some(check.id)));
        let mutated = report(&cases);
        super::DISABLED.with(|d| d.set(None));
        if let Some((_, why)) = NEVER_FAILS.iter().find(|(id, _)| *id == check.id) {
            assert!(
                full.values().all(|(_, f)| !f.contains(&check.id)),
                "{} failed somewhere, though it never can at a Linux node ({why})",
                check.id
            );
            assert_eq!(mutated, full, "{}", check.id);
            continue;
        }
        if mutated == full {
            unchanged.push(check.id);
        }
        for (key, (refused, _)) in &full {
            if *refused && mutated.get(key).is_some_and(|(r, _)| !r) {
                alone
                    .entry(check.id)
                    .or_default()
                    .push(format!("{} at {}", key.0, key.1));
            }
        }
    }
    assert!(
        unchanged.is_empty(),
        "leaving out these checks changes nothing in the report over the captured specs: {unchanged:?}"
    );
    // Each check but the listed ones refuses some case on its own.
    let lonely: Vec<&str> = CHECKS
        .iter()
        .map(|c| c.id)
        .filter(|id| !alone.contains_key(id))
        .filter(|id| !NEVER_ALONE.iter().chain(NEVER_FAILS).any(|(n, _)| n == id))
        .collect();
    assert!(
        lonely.is_empty(),
        "no captured case is refused by these checks alone: {lonely:?}"
    );
    for (id, why) in NEVER_ALONE {
        assert!(
            !alone.contains_key(id),
            "{id} refuses a case alone ({:?}): take it off NEVER_ALONE ({why})",
            alone.get(id)
        );
    }
}

#[test]
fn the_switch_leaves_out_exactly_one_check() {
    let f = crate::facts::Facts::compliant_example();
    let caps = crate::facts::CapSet::from_names(crate::facts::CONTAINERD_DEFAULT_CAPS).unwrap();
    let lv = LevelVersion::latest(crate::policy::Level::Restricted);
    let all = super::evaluate(
        &f,
        None,
        lv,
        super::NEWEST_MINOR,
        "app",
        Ambiguity::default(),
        caps,
    );
    super::DISABLED.with(|d| d.set(Some("runAsUser")));
    let less = super::evaluate(
        &f,
        None,
        lv,
        super::NEWEST_MINOR,
        "app",
        Ambiguity::default(),
        caps,
    );
    super::DISABLED.with(|d| d.set(None));
    assert_eq!(less.results.len() + 1, all.results.len());
    assert!(less.results.iter().all(|r| r.id != "runAsUser"));
}
