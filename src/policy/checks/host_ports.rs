//! `hostPorts`: containers must not set `hostPort`.
//!
//! The host port is part of the pod's port mappings (CNI), not of the OCI spec: from the spec
//! alone it is not observable. The CRI view ([`crate::cri`]) reads the pod's `port_mappings`,
//! where kubelet puts every port of the app containers; an init container's `hostPort` is never
//! sent to the runtime (and never mapped), so that one stays not observable. The mappings are
//! the pod's, not one container's: every container of a pod with a host port fails.

use crate::facts::Facts;
use crate::policy::{Check, Context, Level, Outcome};

pub const CHECK: Check = Check {
    id: "hostPorts",
    reason: "hostPort",
    level: Level::Baseline,
    since: 0,
    overridden_from: None,
    eval,
    cri: Some(cri),
};

fn eval(_f: &Facts, _ctx: &Context) -> Outcome {
    Outcome::NotObservable {
        why: "the host port is part of the pod's port mappings, not of the OCI spec (the CRI view shows an app container's; kubelet never sends an init container's)",
    }
}

fn cri(v: &crate::cri::View, _ctx: &Context) -> Outcome {
    let ports = &v.pod.host_ports;
    match ports.as_slice() {
        [] => Outcome::NotObservable {
            why: "kubelet sends the runtime the app containers' ports only: an init container's hostPort never reaches the node",
        },
        [p] => Outcome::Fail {
            detail: format!("pod uses hostPort {p}"),
        },
        _ => Outcome::Fail {
            detail: format!(
                "pod uses hostPorts {}",
                ports
                    .iter()
                    .map(i32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::checks::testing::{privileged, run};

    #[test]
    fn always_reports_not_observable() {
        for f in [Facts::compliant_example(), privileged()] {
            assert!(matches!(run(&CHECK, &f, 37), Outcome::NotObservable { .. }));
        }
    }
}
