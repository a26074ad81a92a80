//! The fuzz harness, shared by the libFuzzer target (`fuzz_targets/evaluate.rs`) and the corpus
//! replay test (`tests/fuzz_corpus.rs`), so CI replays exactly what the fuzzer ran.
//!
//! One input is four parts separated by 0xFF, a byte that UTF-8 JSON and TOML never contain:
//! the OCI state, the container's `config.json`, the pod sandbox's spec, the policy file. The
//! harness runs them through the same library calls as the hook, under each runtime family, and
//! asserts what must hold whatever the input: no panic, an error is always a refusal, a refusal
//! names its violations, the stderr line is one line, log records are one line of JSON, and a
//! policy that parses always exempts the system namespaces.

use std::path::{Path, PathBuf};

use std::time::Instant;

use pss_guard::config::{Policy, SYSTEM_NAMESPACE};
use pss_guard::hook::{self, Options};
use pss_guard::policy::{self, Ambiguity, Level, LevelVersion, Version};
use pss_guard::report::{Decision, Kind};
use pss_guard::spec::{self, Identity, LoadError, Loaded, Runtime, Sandbox, identity};

/// Separates the four parts of an input.
pub const SEP: u8 = 0xFF;

/// A bundle under a directory that does not exist, so sandbox lookups fail the same way on
/// every machine and the fuzzer never reads a real runtime's files.
const NO_BUNDLE: &str = "/nonexistent/pss-guard-fuzz/bundle";

/// Splits an input into (state, config.json, sandbox spec, policy); missing parts are empty.
pub fn split(data: &[u8]) -> [&[u8]; 4] {
    let mut parts = data.splitn(4, |b| *b == SEP);
    std::array::from_fn(|_| parts.next().unwrap_or(&[]))
}

pub fn run(data: &[u8]) {
    let [state, config, sandbox, policy_src] = split(data);

    let policy = match std::str::from_utf8(policy_src).map(Policy::from_toml) {
        Ok(Ok(p)) => {
            assert!(p.exempt_namespaces.contains(SYSTEM_NAMESPACE));
            p
        }
        _ => Policy::default(),
    };
    let (id, bundle) = match spec::parse_state(state) {
        Ok(s) => {
            assert!(pss_guard::paths::is_clean_absolute(s.bundle()));
            (s.id().clone(), PathBuf::from(NO_BUNDLE))
        }
        Err(_) => ("fuzz".to_owned(), PathBuf::from(NO_BUNDLE)),
    };
    let opts = Options {
        live: false,
        ..Options::default()
    };

    for runtime in [Runtime::Containerd, Runtime::CriO, Runtime::None] {
        let spec = match spec::parse_spec(config, Path::new("config.json")) {
            Ok(s) => s,
            Err(error) => {
                let failed = Box::new(LoadError {
                    identity: Identity::default(),
                    error,
                });
                let d = hook::decide(&policy, &opts, Err(failed), None, Instant::now());
                assert_eq!(d.kind(), Kind::Error);
                check_decision(&d);
                return;
            }
        };
        let identity = identity::identify(runtime, &id, &spec);
        if runtime == Runtime::None {
            // Nothing a spec says is trusted without a runtime that sets it.
            assert!(identity.kube.is_none());
        }
        // The sandbox spec in memory, as `spec::load` would have found it.
        let sandbox = spec::parse_spec(sandbox, Path::new("sandbox.json"))
            .ok()
            .map(|spec| Sandbox { spec, bundle: None });
        let loaded = Loaded {
            spec,
            bundle: bundle.clone(),
            identity,
            sandbox,
        };
        let facts = spec::collect(&loaded, &policy, false);
        let name = loaded.identity.container_name().to_owned();
        let d = hook::decide(&policy, &opts, Ok(loaded), None, Instant::now());
        check_decision(&d);

        let Ok(facts) = facts else {
            continue;
        };
        for level in [Level::Baseline, Level::Restricted] {
            for version in [Version::Pinned(0), Version::Pinned(25), Version::Latest] {
                let lv = LevelVersion { level, version };
                let r = policy::evaluate(
                    &facts,
                    lv,
                    &name,
                    Ambiguity::default(),
                    policy.runtime_default_caps,
                );
                assert_eq!(r.allowed(), r.message().is_none());
                if let Some(m) = r.message() {
                    assert!(m.starts_with("violates PodSecurity \""), "{m}");
                }
            }
        }
    }
}

/// What every decision must satisfy, whatever it decided.
fn check_decision(d: &Decision) {
    match d.kind() {
        Kind::Error => assert!(d.error().is_some(), "an error decision says what failed"),
        Kind::Exempt => assert!(d.exempt().is_some()),
        Kind::Refused => {
            let r = d.report().expect("a refusal has a report");
            assert!(!r.allowed(), "a refusal names a violation");
        }
        Kind::Allowed | Kind::Audit => {
            assert!(d.error().is_none(), "an error is never allowed");
            let r = d.report().expect("an allowed decision has a report");
            assert!(r.allowed());
        }
    }
    match d.stderr_line() {
        Some(line) => {
            assert!(matches!(d.kind(), Kind::Refused | Kind::Error));
            assert!(line.starts_with("pss-guard: "));
            assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
        }
        None => assert!(!matches!(d.kind(), Kind::Refused | Kind::Error)),
    }
    let rec = pss_guard::log::render(d, "node", "2026-01-01T00:00:00Z".to_owned());
    assert_eq!(rec.last(), Some(&b'\n'));
    assert_eq!(rec.iter().filter(|b| **b == b'\n').count(), 1);
    let v: serde_json::Value = serde_json::from_slice(&rec).expect("log record is JSON");
    assert!(v["decision"].is_string());
    let _ = d.to_json();
}
