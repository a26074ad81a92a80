//! `hostProbesAndHostLifecycle`: probes and lifecycle handlers must not set `host`.
//!
//! Partly decidable at the node. kubelet runs probes and lifecycle handlers itself; none of
//! them is part of the OCI spec. But kubelet writes a container's `lifecycle.preStop` handler
//! into the annotation `io.kubernetes.container.preStopHandler` of the container's CRI config
//! (kubernetes pkg/kubelet/kuberuntime/labels.go, `newContainerAnnotations`), so the CRI view
//! ([`crate::cri`]) shows a `preStop` host and the check fails on it. Liveness, readiness and
//! startup probes and `postStart` never reach the runtime: a container without a `preStop`
//! host stays not observable, and admission (PSA, Kyverno) remains the only enforcement for
//! those.

use crate::facts::Facts;
use crate::policy::checks::join_quoted;
use crate::policy::{Check, Context, Level, Outcome};

pub const CHECK: Check = Check {
    id: "hostProbesAndHostLifecycle",
    reason: "probe or lifecycle host",
    level: Level::Baseline,
    since: 34,
    overridden_from: None,
    eval,
    cri: Some(cri),
};

fn eval(_f: &Facts, _ctx: &Context) -> Outcome {
    Outcome::NotObservable {
        why: "probes and lifecycle handlers are run by kubelet, not part of the OCI spec (the CRI view shows a preStop host)",
    }
}

fn cri(v: &crate::cri::View, ctx: &Context) -> Outcome {
    let hosts = &v.container.pre_stop_hosts;
    if hosts.is_empty() {
        return Outcome::NotObservable {
            why: "probes and postStart are run by kubelet and never reach the runtime (a preStop host would show in the CRI view)",
        };
    }
    Outcome::Fail {
        detail: format!(
            "{} uses {} {}",
            ctx.subject,
            if hosts.len() == 1 {
                "probe or lifecycle host"
            } else {
                "probe or lifecycle hosts"
            },
            join_quoted(hosts)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::checks::testing::{context, privileged, run};

    #[test]
    fn the_spec_alone_never_shows_it() {
        for f in [Facts::compliant_example(), privileged()] {
            assert!(matches!(run(&CHECK, &f, 37), Outcome::NotObservable { .. }));
        }
    }

    #[test]
    fn a_pre_stop_host_in_the_cri_view_fails() {
        let ctx = context(37, "container \"app\"");
        let mut v = crate::cri::View::default();
        assert!(matches!(cri(&v, &ctx), Outcome::NotObservable { .. }));
        v.container.pre_stop_hosts = vec!["bad.host".into()];
        assert_eq!(
            cri(&v, &ctx),
            Outcome::Fail {
                detail: "container \"app\" uses probe or lifecycle host \"bad.host\"".into()
            }
        );
    }
}
