//! The hook's wiring on this node (`pss_guard::health::check`, what `pss-guard health` prints),
//! checked every [`POLL`] (a few small files and a scan of `/proc`) on its own thread and shown in `/readyz` and the metrics: whether the
//! hook binary is there, every runtime handler that runs OCI hooks names it, the policy loads
//! (else the hook runs on its built-in fallback) and a decision was logged since containerd last
//! started (containerd reads base specs only at start-up, so that is the proof the running daemon
//! calls the hook).

use std::time::Duration;

use pss_guard::health::{HealthOptions, check};

use crate::status::Shared;

pub const POLL: Duration = Duration::from_secs(2);

/// Checks once and stores the report.
pub fn step(opts: &HealthOptions, shared: &Shared) {
    let report = check(opts);
    let mut st = shared.status();
    let was = st
        .health
        .as_ref()
        .and_then(|h| h.as_ref().map(|r| r.healthy));
    if was != Some(report.healthy) {
        eprint!("pss-guard-agent: {}", report.render_text());
    }
    st.health = Some(Some(report));
}

/// Runs forever on its own thread.
pub fn run(opts: &HealthOptions, shared: &Shared) {
    loop {
        step(opts, shared);
        std::thread::sleep(POLL);
    }
}
