//! The fuzz harness, shared by the libFuzzer targets (`fuzz_targets/`) and the corpus replay test
//! (`tests/fuzz_corpus.rs`), so CI replays exactly what the fuzzer ran. Three targets:
//! `evaluate` (below), `keys` (the pre-scan that refuses case-variant keys, against serde_json's
//! own tree) and `mounts` (the mount table and subPath provenance, against a reference).
//!
//! One input is four parts separated by 0xFF, a byte that UTF-8 JSON and TOML never contain:
//! the OCI state, the container's `config.json`, the pod sandbox's spec, the policy file. The
//! harness runs them through the same library calls as the hook, under each runtime family, and
//! asserts what must hold whatever the input: no panic, an error is always a refusal, a refusal
//! names its violations, the stderr line is one line, log records are one line of JSON, and a
//! policy that parses always exempts the system namespace.

use std::path::{Path, PathBuf};

use std::time::Instant;

use pss_guard::config::{Policy, SYSTEM_NAMESPACE};
use pss_guard::hook::{self, Options};
use pss_guard::policy::{self, Ambiguity, Level, LevelVersion, Version};
use pss_guard::report::{Decision, Kind};
use pss_guard::spec::mountinfo::Table;
use pss_guard::spec::{
    self, Identity, LoadError, Loaded, Runtime, Sandbox, identity, mounts, raw, scan,
};

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
                // As `spec::load` reports a spec it could not read.
                let failed = Box::new(LoadError {
                    identity: Identity::unread(&id),
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
                    None,
                    lv,
                    policy::NEWEST_MINOR,
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
        Kind::WouldRefuse => assert!(
            matches!(d.enforce_kind(), Kind::Refused | Kind::Error),
            "observing, only what enforcing refuses is a would-be refusal"
        ),
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

// ---- target `keys`: the pre-scan that refuses case-variant keys ----------------------------

/// Go's `encoding/json` fold for an ASCII field name, written out: ASCII letters in either case,
/// U+017F for `s` and U+212A for `k` (their simple case folds).
fn go_fold_eq(key: &str, field: &str) -> bool {
    let k: Vec<char> = key.chars().collect();
    let f: Vec<char> = field.chars().collect();
    k.len() == f.len()
        && k.iter().zip(&f).all(|(a, b)| {
            a.eq_ignore_ascii_case(b)
                || (*a == '\u{017F}' && b.eq_ignore_ascii_case(&'s'))
                || (*a == '\u{212A}' && b.eq_ignore_ascii_case(&'k'))
        })
}

/// A key somewhere in `v`, at a level the hook reads, that Go would read as a field it is not
/// spelled as. Walks serde_json's own tree (where a repeated key keeps its last value).
fn folded_key(v: &serde_json::Value, fields: &scan::Fields) -> Option<String> {
    let obj = v.as_object()?;
    for (key, value) in obj {
        for (name, inner) in fields.0 {
            if key == name {
                let found = match inner {
                    scan::Value::Data => None,
                    scan::Value::Object(f) => folded_key(value, f),
                    scan::Value::Objects(f) => value
                        .as_array()
                        .and_then(|a| a.iter().find_map(|x| folded_key(x, f))),
                };
                if found.is_some() {
                    return found;
                }
            } else if go_fold_eq(key, name) {
                return Some(key.clone());
            }
        }
    }
    None
}

pub fn keys(data: &[u8]) {
    for (fields, parse) in [
        (
            &raw::SPEC_FIELDS,
            (|d: &[u8]| spec::parse_spec(d, Path::new("config.json")).is_ok()) as fn(&[u8]) -> bool,
        ),
        (&raw::STATE_FIELDS, |d: &[u8]| spec::parse_state(d).is_ok()),
    ] {
        let scanned = scan::check(data, fields);
        // The parsers scan first: nothing the scan refuses is ever parsed.
        if scanned.is_err() {
            assert!(!parse(data));
        }
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data)
            && let Some(k) = folded_key(&v, fields)
        {
            let e = scanned.expect_err("a case-variant key passed the scan");
            assert!(e.to_string().contains("would be read as"), "{k:?}: {e}");
        }
    }
}

// ---- target `mounts`: the mount table and subPath provenance -------------------------------

/// The deepest mount point holding `p` (the last of equals) and `p`'s place in its filesystem,
/// compared as `/`-joined strings of normal components (so `a//b` is `a/b`, as for a `Path`).
fn reference_locate(t: &Table, p: &Path) -> Option<((u32, u32), PathBuf)> {
    use std::os::unix::ffi::OsStrExt;
    let text = |x: &Path| {
        let parts: Vec<&[u8]> = x
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(n) => Some(n.as_bytes()),
                _ => None,
            })
            .collect();
        if parts.is_empty() {
            b"/".to_vec()
        } else {
            [&b"/"[..], &parts.join(&b'/'), b"/"].concat()
        }
    };
    let ps = text(p);
    let mut best: Option<&pss_guard::spec::mountinfo::Mount> = None;
    // Mount points compare as bytes: a directory name need not be UTF-8.
    for m in t.mounts() {
        let ms = text(&m.mount_point);
        let depth = |s: &[u8]| s.split(|b| *b == b'/').filter(|c| !c.is_empty()).count();
        if ps.starts_with(&ms) && best.is_none_or(|b| depth(&ms) >= depth(&text(&b.mount_point))) {
            best = Some(m);
        }
    }
    let m = best?;
    // A mount whose line could not be read proves nothing below it.
    let shows = m.shows.as_ref()?;
    let rest = ps.strip_prefix(&text(&m.mount_point)[..])?;
    let mut at = shows.root.clone();
    at.extend(
        rest.split(|b| *b == b'/')
            .filter(|c| !c.is_empty())
            .map(std::ffi::OsStr::from_bytes),
    );
    Some((shows.dev, at))
}

pub fn mounts(data: &[u8]) {
    // Any bytes: the table always parses, a line at a time.
    let table = Table::parse(data);
    let lines = data
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert_eq!(table.mounts().len() + table.unplaced, lines);
    // Any bytes without an escape are taken as they are: a line whose fifth field is an absolute
    // path with no backslash places a mount exactly there, whatever else the line holds.
    {
        use std::os::unix::ffi::OsStrExt;
        for line in data.split(|b| *b == b'\n') {
            let Some(mp) = line.split(|b| *b == b' ').nth(4) else {
                continue;
            };
            if mp.first() == Some(&b'/') && !mp.contains(&b'\\') {
                let p = Path::new(std::ffi::OsStr::from_bytes(mp));
                assert!(
                    table.mounts().iter().any(|m| m.mount_point == p),
                    "{p:?} not placed"
                );
            }
        }
    }
    // Probe every mount point and root, one level below each, and the kernel-looking paths a
    // kubelet pod directory has.
    let mut probes: Vec<PathBuf> = Vec::new();
    for m in table.mounts() {
        assert!(m.mount_point.is_absolute(), "{m:?}");
        let root = m.shows.as_ref().map(|s| &s.root);
        for p in std::iter::once(&m.mount_point).chain(root) {
            if p.is_absolute() {
                probes.push(p.clone());
                probes.push(p.join("x"));
            }
        }
    }
    probes.push(PathBuf::from(
        "/var/lib/kubelet/pods/u/volume-subpaths/v/c/0",
    ));
    for p in &probes {
        assert_eq!(table.locate(p), reference_locate(&table, p), "{p:?}");
        if let Some(m) = table.at(p) {
            assert_eq!(&m.mount_point, p);
            let last = table.mounts().iter().rev().find(|x| &x.mount_point == p);
            assert_eq!(Some(m), last);
        }
    }
    // Provenance: each probe as a subPath source against the others as volumes.
    let volumes: Vec<(String, PathBuf)> = probes
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("plugin{i}"), p.clone()))
        .collect();
    for src in &probes {
        let got = mounts::volume_holding(&table, src, &volumes);
        let want = reference_locate(&table, src).and_then(|(dev, at)| {
            volumes.iter().find_map(|(plugin, dir)| {
                let (vdev, vat) = reference_locate(&table, dir)?;
                (vdev == dev && at.starts_with(&vat)).then_some(plugin.as_str())
            })
        });
        assert_eq!(got, want, "{src:?}");
    }
}
