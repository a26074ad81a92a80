//! `sysctls`: only the safe set of sysctls, which grows with the policy version.
//!
//! Pod sysctls live only in the sandbox spec's `linux.sysctl` (containerd applies them to the
//! pause container), so [`crate::spec`] reads the sandbox spec and merges the container's own
//! list. containerd 2.x adds `net.ipv4.ip_unprivileged_port_start` and
//! `net.ipv4.ping_group_range` to every non-hostNetwork sandbox; both are on the v1.0 list.
//! Names are compared literally, as admission does. Exact.

use crate::facts::Facts;
use crate::policy::{Check, Context, Level, Outcome};

pub const CHECK: Check = Check {
    id: "sysctls",
    reason: "forbidden sysctls",
    level: Level::Baseline,
    since: 0,
    overridden_from: None,
    eval,
    cri: None,
};

/// Each allowed sysctl with the first minor version that allows it.
const ALLOWED: [(&str, u32); 14] = [
    ("kernel.shm_rmid_forced", 0),
    ("net.ipv4.ip_local_port_range", 0),
    ("net.ipv4.tcp_syncookies", 0),
    ("net.ipv4.ping_group_range", 0),
    ("net.ipv4.ip_unprivileged_port_start", 0),
    ("net.ipv4.ip_local_reserved_ports", 27),
    ("net.ipv4.tcp_keepalive_time", 29),
    ("net.ipv4.tcp_fin_timeout", 29),
    ("net.ipv4.tcp_keepalive_intvl", 29),
    ("net.ipv4.tcp_keepalive_probes", 29),
    ("net.ipv4.tcp_rmem", 32),
    ("net.ipv4.tcp_wmem", 32),
    ("net.ipv4.tcp_slow_start_after_idle", 37),
    ("net.ipv4.tcp_notsent_lowat", 37),
];

pub fn allowed(name: &str, minor: u32) -> bool {
    ALLOWED
        .iter()
        .any(|(n, since)| *n == name && *since <= minor)
}

fn eval(f: &Facts, ctx: &Context) -> Outcome {
    let bad: Vec<&str> = f
        .sysctls
        .iter()
        .map(String::as_str)
        .filter(|s| !allowed(s, ctx.minor))
        .collect();
    if bad.is_empty() {
        Outcome::Pass
    } else {
        Outcome::Fail {
            detail: bad.join(", "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::checks::testing::{detail, run};

    fn with(names: &[&str]) -> Facts {
        let mut f = Facts::compliant_example();
        f.sysctls = names.iter().map(|s| s.to_string()).collect();
        f
    }

    #[test]
    fn containerd2_sandbox_defaults_pass_at_v1_0() {
        let f = with(&[
            "net.ipv4.ip_unprivileged_port_start",
            "net.ipv4.ping_group_range",
        ]);
        assert_eq!(run(&CHECK, &f, 0), Outcome::Pass);
    }

    #[test]
    fn version_gates_each_addition() {
        for (name, since) in ALLOWED {
            let f = with(&[name]);
            assert_eq!(run(&CHECK, &f, since), Outcome::Pass, "{name}");
            if since > 0 {
                assert_eq!(detail(run(&CHECK, &f, since - 1)), name);
            }
        }
    }

    #[test]
    fn forbidden_are_listed() {
        let f = with(&["kernel.msgmax", "net.ipv4.tcp_syncookies", "vm.swappiness"]);
        assert_eq!(detail(run(&CHECK, &f, 37)), "kernel.msgmax, vm.swappiness");
    }

    #[test]
    fn slash_form_is_not_normalised() {
        assert!(matches!(
            run(&CHECK, &with(&["net/ipv4/tcp_syncookies"]), 37),
            Outcome::Fail { .. }
        ));
    }
}
