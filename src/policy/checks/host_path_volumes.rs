//! `hostPathVolumes`: pods must not use hostPath volumes.
//!
//! The spec has bind mounts, not volumes. [`crate::spec`] calls a bind source managed only when
//! it lies under this pod's own kubelet directory (`<kubelet root>/pods/<uid>/volumes/...`,
//! `volume-subpaths`, `etc-hosts`, `containers`), this sandbox's or this container's runtime
//! directory, this container's bundle, or an operator allow-list, after resolving symlinks and
//! `..`; everything else is a host path, including another pod's volumes. Divergences: the spec
//! has no volume names, so details name the host path; a PersistentVolume of type hostPath or
//! local is seen as the kubelet directory it is mounted under (allowed, as admission allows any
//! PVC); a hostPath aimed into this pod's own volume directories passes.

use crate::facts::Facts;
use crate::policy::{Check, Context, Level, Outcome};

pub const CHECK: Check = Check {
    id: "hostPathVolumes",
    reason: "hostPath volumes",
    level: Level::Baseline,
    since: 0,
    overridden_from: Some(0),
    eval,
    cri: None,
};

fn eval(f: &Facts, _ctx: &Context) -> Outcome {
    let host = super::host_mounts(&f.mounts, f.host_ns.ipc);
    if host.is_empty() {
        return Outcome::Pass;
    }
    let word = if host.len() == 1 {
        "host path"
    } else {
        "host paths"
    };
    let list: Vec<String> = host
        .iter()
        .map(|m| format!("{:?} at {:?}", m.source, m.destination))
        .collect();
    Outcome::Fail {
        detail: format!("{word} {}", list.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{BindMount, MountOrigin};
    use crate::policy::checks::testing::{detail, run};

    fn bind(src: &str, dst: &str, origin: MountOrigin) -> BindMount {
        BindMount {
            source: src.into(),
            destination: dst.into(),
            origin,
        }
    }

    #[test]
    fn managed_mounts_pass() {
        let mut f = Facts::compliant_example();
        f.mounts = vec![bind(
            "/var/lib/kubelet/pods/u/volumes/kubernetes.io~configmap/c",
            "/etc/c",
            MountOrigin::Managed {
                plugin: Some("kubernetes.io~configmap".into()),
            },
        )];
        assert_eq!(run(&CHECK, &f, 37), Outcome::Pass);
    }

    #[test]
    fn host_paths_are_listed_sorted() {
        let mut f = Facts::compliant_example();
        f.mounts = vec![
            bind("/var/run/docker.sock", "/s", MountOrigin::Host),
            bind("/", "/host", MountOrigin::Host),
        ];
        assert_eq!(
            detail(run(&CHECK, &f, 37)),
            "host paths \"/\" at \"/host\", \"/var/run/docker.sock\" at \"/s\""
        );
    }

    #[test]
    fn host_shm_is_left_to_host_ipc() {
        let mut f = Facts::compliant_example();
        f.mounts = vec![bind("/dev/shm", "/dev/shm", MountOrigin::Host)];
        assert!(matches!(run(&CHECK, &f, 37), Outcome::Fail { .. }));
        f.host_ns.ipc = true;
        assert_eq!(run(&CHECK, &f, 37), Outcome::Pass);
    }
}
