//! `hostPorts`: containers must not set `hostPort`.
//!
//! The host port is part of the pod's port mappings (CNI), not of the OCI spec: from the spec
//! alone it is not observable. The CRI view ([`crate::cri`]) shows it twice: kubelet writes
//! every container's `ports`, init containers' included, into the annotation
//! `io.kubernetes.container.ports` of that container's config, and maps the app containers'
//! ports in the pod's `port_mappings` (kubernetes pkg/kubelet/kuberuntime/labels.go and
//! kuberuntime_sandbox.go). A container fails for its own host ports, and, as PSA judges the
//! pod, for a host port of any app container of its pod.
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
        why: "the host port is part of the pod's port mappings and kubelet's container annotations, not of the OCI spec (the CRI view shows both)",
    }
}

fn join(ports: &[i32]) -> String {
    ports
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn cri(v: &crate::cri::View, ctx: &Context) -> Outcome {
    let plural = |n: usize| if n == 1 { "hostPort" } else { "hostPorts" };
    let own = &v.container.host_ports;
    let pod = &v.pod.host_ports;
    if !own.is_empty() {
        return Outcome::Fail {
            detail: format!("{} uses {} {}", ctx.subject, plural(own.len()), join(own)),
        };
    }
    if !pod.is_empty() {
        return Outcome::Fail {
            detail: format!("pod uses {} {}", plural(pod.len()), join(pod)),
        };
    }
    Outcome::Pass
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::checks::testing::{privileged, run};

    #[test]
    fn the_spec_alone_never_shows_it() {
        for f in [Facts::compliant_example(), privileged()] {
            assert!(matches!(run(&CHECK, &f, 37), Outcome::NotObservable { .. }));
        }
    }

    #[test]
    fn the_cri_view_decides_an_init_containers_own_port_and_the_pods_mappings() {
        use crate::cri::{ContainerView, PodView, View};
        let ctx = crate::policy::checks::testing::context(37, "container \"init\"");
        let view = |own: Vec<i32>, pod: Vec<i32>| View {
            container: ContainerView {
                host_ports: own,
                ..Default::default()
            },
            pod: PodView {
                host_ports: pod,
                ..Default::default()
            },
        };
        assert_eq!(cri(&view(vec![], vec![]), &ctx), Outcome::Pass);
        assert_eq!(
            cri(&view(vec![12346], vec![]), &ctx),
            Outcome::Fail {
                detail: "container \"init\" uses hostPort 12346".into()
            }
        );
        assert_eq!(
            cri(&view(vec![], vec![80, 81]), &ctx),
            Outcome::Fail {
                detail: "pod uses hostPorts 80, 81".into()
            }
        );
    }
}
