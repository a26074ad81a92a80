//! In-process cost of one decision (issue 5): parsing a realistic containerd `config.json` and
//! its sandbox spec, collecting the facts, evaluating the enforced and audited levels. The
//! target is 50,000 specs per second on one core for `parse_evaluate/app+sandbox`; the other
//! benchmarks split that cost, and the whole in-process hook path, into its parts.

mod common;

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pss_guard::config::Policy;
use pss_guard::hook::{self, Options};
use pss_guard::policy::{self, Ambiguity};
use pss_guard::spec::{self, Loaded, Runtime, RuntimeArg, Sandbox, identity};

/// The app container's spec and its sandbox's, in memory as `spec::load` returns them.
fn loaded(app: &[u8], sandbox: &[u8], node: &common::Node) -> Loaded {
    let l = &node.layout;
    let spec = spec::parse_spec(app, Path::new("config.json")).expect("app spec");
    let sb = spec::parse_spec(sandbox, Path::new("config.json")).expect("sandbox spec");
    Loaded {
        identity: identity::identify(Runtime::Containerd, &l.container_id, &spec),
        spec,
        bundle: l.bundle(),
        sandbox: Some(Sandbox {
            spec: sb,
            bundle: Some(l.sandbox_bundle()),
        }),
    }
}

/// Everything one decision does after the bytes are in memory.
fn parse_and_evaluate(
    app: &[u8],
    sandbox: &[u8],
    policy: &Policy,
    node: &common::Node,
) -> (policy::Report, Option<policy::Report>) {
    let loaded = loaded(app, sandbox, node);
    let facts = spec::collect(&loaded, policy, true).expect("facts");
    let ambiguity = Ambiguity {
        seccomp_absent: policy.seccomp_absent,
        legacy_volumes: policy.legacy_volumes,
    };
    let name = loaded.identity.container_name();
    let run = |lv| {
        policy::evaluate(
            &facts,
            None,
            lv,
            policy::NEWEST_MINOR,
            name,
            ambiguity,
            policy.runtime_default_caps,
        )
    };
    (run(policy.enforce), policy.audit.map(run))
}

fn benches(c: &mut Criterion) {
    let node = common::Node::new();
    let policy = Policy::load(&node.policy_path()).expect("policy");
    let l = &node.layout;
    eprintln!(
        "app config.json {} bytes, sandbox config.json {} bytes",
        node.app_json.len(),
        node.sandbox_json.len()
    );
    let (report, audit) = parse_and_evaluate(&node.app_json, &node.sandbox_json, &policy, &node);
    assert!(
        report.allowed(),
        "the bench spec must be baseline-compliant"
    );
    assert!(audit.is_some());

    let mut g = c.benchmark_group("parse_evaluate");
    g.throughput(Throughput::Elements(1));
    g.bench_function("app+sandbox", |b| {
        b.iter(|| {
            parse_and_evaluate(
                black_box(&node.app_json),
                black_box(&node.sandbox_json),
                &policy,
                &node,
            )
        })
    });
    g.finish();

    let mut g = c.benchmark_group("parts");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_app_spec", |b| {
        b.iter(|| spec::parse_spec(black_box(&node.app_json), Path::new("config.json")))
    });
    g.bench_function("parse_sandbox_spec", |b| {
        b.iter(|| spec::parse_spec(black_box(&node.sandbox_json), Path::new("config.json")))
    });
    let input = loaded(&node.app_json, &node.sandbox_json, &node);
    g.bench_function("collect_facts", |b| {
        b.iter(|| spec::collect(black_box(&input), &policy, true).expect("facts"))
    });
    let facts = spec::collect(&input, &policy, true).expect("facts");
    let ambiguity = Ambiguity {
        seccomp_absent: policy.seccomp_absent,
        legacy_volumes: policy.legacy_volumes,
    };
    g.bench_function("evaluate_enforce_and_audit", |b| {
        b.iter(|| {
            let run = |lv| {
                policy::evaluate(
                    black_box(&facts),
                    None,
                    lv,
                    policy::NEWEST_MINOR,
                    CONTAINER_NAME,
                    ambiguity,
                    policy.runtime_default_caps,
                )
            };
            (run(policy.enforce), policy.audit.map(run))
        })
    });
    g.bench_function("load_policy_file", |b| {
        b.iter(|| Policy::load(black_box(&node.policy_path())).expect("policy"))
    });
    let state = l.state(node.sandbox.pid());
    let opts = Options::default();
    let containerd = RuntimeArg::Named(Runtime::Containerd);
    let decide = |state: Vec<u8>| {
        let loaded = hook::load_from_state(Ok(state), containerd, &policy);
        hook::decide(&policy, &opts, loaded, None, Instant::now())
    };
    g.bench_function("decide_from_state", |b| {
        b.iter(|| decide(black_box(state.clone())))
    });
    let d = decide(state.clone());
    g.bench_function("render_log_record", |b| {
        b.iter(|| {
            pss_guard::log::render(
                black_box(&d),
                "bench-node",
                pss_guard::time::rfc3339(std::time::SystemTime::now()),
            )
        })
    });
    let line = pss_guard::log::render(&d, "bench-node", "2026-01-01T00:00:00.000000Z".into());
    let log = node.dir.path().join("log/bench.log");
    g.bench_function("append_log_record", |b| {
        b.iter(|| pss_guard::log::append(&log, black_box(&line)).expect("append"))
    });
    g.finish();
}

const CONTAINER_NAME: &str = common::CONTAINER;

criterion_group!(parse_evaluate, benches);
criterion_main!(parse_evaluate);
