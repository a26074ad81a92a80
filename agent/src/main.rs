//! `pss-guard-agent`: parse argv, start the agent's parts, serve until SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use pss_guard_agent::cli::{self, Command, Options};
use pss_guard_agent::follow::{self, FollowOptions};
use pss_guard_agent::node_audit::{self, AuditOptions};
use pss_guard_agent::policy_sync::{PolicySync, PolicySyncOptions};
use pss_guard_agent::position::Cursor;
use pss_guard_agent::publish::{PublishOptions, Publisher};
use pss_guard_agent::snapshot::Watcher;
use pss_guard_agent::status::Shared;

const LOG_POLL: Duration = Duration::from_millis(200);
const POLICY_POLL: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    let opts = match cli::parse(std::env::args_os().skip(1)) {
        Ok(Command::Run(o)) => o,
        Ok(Command::Help) => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("pss-guard-agent {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("pss-guard-agent: {e}\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pss-guard-agent: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(opts: &Options) -> Result<(), String> {
    // Two workers: the agent is I/O-bound and shares the node with the workloads.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    rt.block_on(serve(opts))
}

async fn serve(opts: &Options) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| format!("listening on {}: {e}", opts.listen))?;
    let addr = listener.local_addr().unwrap_or(opts.listen);
    let shared = Arc::new(Shared::new(
        opts.watch.then(|| opts.snapshot.clone()),
        opts.watch,
        opts.policy.is_some(),
        opts.health,
    ));
    eprintln!(
        "pss-guard-agent: following {} ; metrics on http://{addr}/metrics",
        opts.log.display()
    );

    let f = FollowOptions {
        log: opts.log.clone(),
        node: opts.node.clone(),
        from_start: opts.from_start,
        poll: LOG_POLL,
    };
    let cursor = Arc::new(Cursor::new(Some(opts.position.clone()), opts.log.clone()));
    let (s, c) = (Arc::clone(&shared), Arc::clone(&cursor));
    std::thread::Builder::new()
        .name("follow".into())
        .spawn(move || follow::run(&f, &s, &c))
        .map_err(|e| format!("starting the log follower: {e}"))?;

    if let Some((source, dest)) = &opts.policy {
        let sync = PolicySync::new(PolicySyncOptions {
            source: source.clone(),
            dest: dest.clone(),
            poll: POLICY_POLL,
            host_root: opts.host_root.clone(),
            containerd_config: opts.containerd_config.clone(),
            own_namespace: opts.own_namespace.clone(),
        });
        let s = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("policy-sync".into())
            .spawn(move || sync.run(&s))
            .map_err(|e| format!("starting the policy sync: {e}"))?;
    }

    if opts.health {
        let h = pss_guard::health::HealthOptions {
            root: opts.host_root.clone(),
            containerd_config: opts.containerd_config.clone(),
            proc_dir: opts.proc_dir.clone(),
            ..pss_guard::health::HealthOptions::default()
        };
        let s = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("health".into())
            .spawn(move || pss_guard_agent::health::run(&h, &s))
            .map_err(|e| format!("starting the health check: {e}"))?;
    }

    if opts.watch {
        let w = Watcher::new(
            opts.snapshot.clone(),
            opts.snapshot_refresh,
            Arc::clone(&shared),
        );
        tokio::spawn(w.run());
    }

    if opts.reports.is_some() || opts.events {
        let publish = PublishOptions {
            node: opts.node.clone().unwrap_or_default(),
            reports: opts.reports,
            events: opts.events,
            qps: opts.api_qps,
            max_results: opts.max_results,
        };
        let (publisher, tx) = Publisher::new(publish, Arc::clone(&shared));
        shared.set_publisher(tx.clone());
        tokio::spawn(publisher.run());
        if let Some(interval) = opts.audit_interval {
            let a = AuditOptions {
                root: opts.host_root.clone(),
                policy: node_audit::policy_path(
                    &opts.host_root,
                    opts.policy.as_ref().map(|(_, d)| d.as_path()),
                ),
                snapshot: opts.snapshot.clone(),
                node: opts.node.clone().unwrap_or_default(),
                interval,
            };
            std::thread::Builder::new()
                .name("node-audit".into())
                .spawn(move || node_audit::run(&a, &tx))
                .map_err(|e| format!("starting the node audit: {e}"))?;
        }
    }

    let http = tokio::spawn(pss_guard_agent::http::serve(listener, Arc::clone(&shared)));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("SIGTERM handler: {e}"))?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = http => {}
    }
    // The log position is the only state worth keeping: written under the follower's lock, so
    // no record is printed after it, and the process ends there. A follower stuck printing to
    // a blocked stdout holds the lock: then exit after 5 s without it (the last save is at
    // most a second old, and its records are printed again next time).
    tokio::task::spawn_blocking(move || cursor.save_and_exit(&shared));
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    std::process::exit(0)
}
