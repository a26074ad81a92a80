//! `hostNamespaces`: pods must not set hostNetwork, hostPID or hostIPC.
//!
//! containerd's app containers join the sandbox's namespaces by `/proc/<pid>/ns/*` path, so a
//! host namespace looks like any other path in their spec. [`crate::spec`] decides exactly, by
//! comparing the namespace's inode with the host's and by reading the sandbox spec (where a
//! missing entry is the host's); a namespace missing from a container's own spec (runc bundles,
//! podman) is the runtime's, which is the host's. Exact.

use crate::facts::Facts;
use crate::policy::{Check, Context, Level, Outcome};

pub const CHECK: Check = Check {
    id: "hostNamespaces",
    reason: "host namespaces",
    level: Level::Baseline,
    since: 0,
    overridden_from: None,
    eval,
    cri: None,
};

fn eval(f: &Facts, _ctx: &Context) -> Outcome {
    let set: Vec<&str> = [
        (f.host_ns.network, "hostNetwork=true"),
        (f.host_ns.pid, "hostPID=true"),
        (f.host_ns.ipc, "hostIPC=true"),
    ]
    .into_iter()
    .filter_map(|(on, s)| on.then_some(s))
    .collect();
    if set.is_empty() {
        Outcome::Pass
    } else {
        Outcome::Fail {
            detail: set.join(", "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::checks::testing::{detail, run};

    #[test]
    fn private_namespaces_pass() {
        assert_eq!(run(&CHECK, &Facts::compliant_example(), 37), Outcome::Pass);
    }

    #[test]
    fn all_three_listed_in_psa_order() {
        let mut f = Facts::compliant_example();
        f.host_ns.ipc = true;
        f.host_ns.network = true;
        f.host_ns.pid = true;
        assert_eq!(
            detail(run(&CHECK, &f, 0)),
            "hostNetwork=true, hostPID=true, hostIPC=true"
        );
    }

    #[test]
    fn single_host_pid() {
        let mut f = Facts::compliant_example();
        f.host_ns.pid = true;
        assert_eq!(detail(run(&CHECK, &f, 0)), "hostPID=true");
    }
}
