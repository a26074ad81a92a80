//! One module per upstream Pod Security Admission check ID. Each module's doc states the rule,
//! how it maps onto the OCI spec, and where the node's view diverges from admission.

pub mod allow_privilege_escalation;
pub mod app_armor_profile;
pub mod capabilities_baseline;
pub mod capabilities_restricted;
pub mod host_namespaces;
pub mod host_path_volumes;
pub mod host_ports;
pub mod host_probes_and_host_lifecycle;
pub mod privileged;
pub mod proc_mount;
pub mod proc_mount_restricted;
pub mod restricted_volumes;
pub mod run_as_non_root;
pub mod run_as_user;
pub mod se_linux_options;
pub mod seccomp_profile_baseline;
pub mod seccomp_profile_restricted;
pub mod sysctls;
pub mod windows_host_process;

use crate::facts::{BindMount, MountOrigin};

/// `"a", "b"`: quoted, in the given order, as PSA's `joinQuote`.
pub(crate) fn join_quoted<S: AsRef<str>>(items: &[S]) -> String {
    items
        .iter()
        .map(|s| format!("{:?}", s.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Host-path bind mounts, described as `"/src" at "/dst"`, sorted by source then destination.
pub(crate) fn host_mounts(mounts: &[BindMount], skip_host_shm: bool) -> Vec<&BindMount> {
    let mut v: Vec<&BindMount> = mounts
        .iter()
        .filter(|m| m.origin == MountOrigin::Host)
        // With hostIPC, containerd binds the host's /dev/shm: that is the host IPC namespace
        // showing through, reported by hostNamespaces, not a hostPath volume.
        .filter(|m| !(skip_host_shm && m.source == "/dev/shm" && m.destination == "/dev/shm"))
        .collect();
    v.sort_by(|a, b| (&a.source, &a.destination).cmp(&(&b.source, &b.destination)));
    v
}

#[cfg(test)]
pub(crate) mod testing {
    use crate::facts::Facts;
    use crate::policy::{Ambiguity, Check, Context, Outcome};

    /// Runs one check at a minor version with the default switches.
    pub fn run(check: &Check, f: &Facts, minor: u32) -> Outcome {
        run_with(check, f, minor, Ambiguity::default())
    }

    pub fn run_with(check: &Check, f: &Facts, minor: u32, ambiguity: Ambiguity) -> Outcome {
        let ctx = Context {
            minor,
            subject: "container \"app\"",
            ambiguity,
            runtime_default_caps: crate::facts::CapSet::from_names(
                crate::facts::CONTAINERD_DEFAULT_CAPS,
            )
            .expect("kernel names"),
            privileged: super::privileged::is_privileged(f),
        };
        (check.eval)(f, &ctx)
    }

    /// A context for a check's CRI part: `subject` names the container.
    pub fn context(minor: u32, subject: &'static str) -> Context<'static> {
        Context {
            minor,
            subject,
            ambiguity: Ambiguity::default(),
            runtime_default_caps: crate::facts::CapSet::from_names(
                crate::facts::CONTAINERD_DEFAULT_CAPS,
            )
            .expect("kernel names"),
            privileged: false,
        }
    }

    pub fn detail(o: Outcome) -> String {
        match o {
            Outcome::Fail { detail } => detail,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    /// Facts of a privileged container as containerd builds them.
    pub fn privileged() -> Facts {
        let mut f = Facts::compliant_example();
        f.caps.bounding = f.host_caps;
        f.caps.effective = f.host_caps;
        f.caps.permitted = f.host_caps;
        f.proc_unmasked = true;
        f.sys_writable = true;
        f.all_devices = true;
        f.seccomp = false;
        f.no_new_privileges = false;
        f.uid = 0;
        f
    }
}
