//! `privileged`: containers must not set `securityContext.privileged=true`.
//!
//! The spec has no "privileged" field; runtimes expand it (containerd `WithPrivileged`, podman
//! `--privileged`) into: every capability the runtime holds, no `maskedPaths`/`readonlyPaths`,
//! `/sys` mounted read-write, and (unless `privileged_without_host_devices`) a device cgroup rule
//! allowing every device. Any part may be missing: `drop: [ALL]` empties the capabilities, a
//! handler with `privileged_without_host_devices` adds no device rule, a user namespace changes
//! what the kernel grants. So a container is privileged when it shows any trait that only
//! `privileged: true` produces: a read-write sysfs, the allow-all device rule, or `/proc/sys`
//! writable under an otherwise masked `/proc`; or an unmasked `/proc` together with every
//! capability. An unmasked `/proc` alone is `procMount: Unmasked`, and `capabilities.add: [ALL]`
//! alone keeps the masks and a read-only `/sys`: each is reported by its own check, as admission
//! would.
//!
//! When this check fails, the capability, procMount, seccomp and AppArmor findings that are only
//! its side effects are reported as covered by it, so the refusal reads like admission's.

use crate::facts::Facts;
use crate::policy::{Check, Context, Level, Outcome};

pub const CHECK: Check = Check {
    id: "privileged",
    reason: "privileged",
    level: Level::Baseline,
    since: 0,
    overridden_from: None,
    eval,
    cri: Some(cri),
};

pub fn is_privileged(f: &Facts) -> bool {
    let full_caps = !f.host_caps.is_empty() && f.caps.bounding.is_superset_of(f.host_caps);
    f.all_devices || f.sys_writable || f.proc_sys_writable || (f.proc_unmasked && full_caps)
}

fn eval(_f: &Facts, ctx: &Context) -> Outcome {
    if ctx.privileged {
        Outcome::Fail {
            detail: format!(
                "{} must not set securityContext.privileged=true",
                ctx.subject
            ),
        }
    } else {
        Outcome::Pass
    }
}

/// The container's `privileged` flag as kubelet sent it: exact.
fn cri(v: &crate::cri::View, ctx: &Context) -> Outcome {
    if v.container.privileged {
        Outcome::Fail {
            detail: format!(
                "{} must not set securityContext.privileged=true",
                ctx.subject
            ),
        }
    } else {
        Outcome::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::checks::testing::{detail, privileged, run};

    #[test]
    fn containerd_privileged_fails() {
        assert_eq!(
            detail(run(&CHECK, &privileged(), 37)),
            "container \"app\" must not set securityContext.privileged=true"
        );
    }

    #[test]
    fn privileged_without_host_devices_still_fails() {
        let mut f = privileged();
        f.all_devices = false;
        assert!(matches!(run(&CHECK, &f, 37), Outcome::Fail { .. }));
    }

    #[test]
    fn add_all_alone_is_not_privileged() {
        let mut f = Facts::compliant_example();
        f.caps.bounding = f.host_caps;
        assert_eq!(run(&CHECK, &f, 37), Outcome::Pass);
    }

    #[test]
    fn unmasked_proc_alone_is_not_privileged() {
        let mut f = Facts::compliant_example();
        f.proc_unmasked = true;
        assert_eq!(run(&CHECK, &f, 37), Outcome::Pass);
    }

    #[test]
    fn privileged_with_drop_all_in_a_user_namespace_still_fails() {
        // privileged_without_host_devices, drop: [ALL], hostUsers: false.
        let mut f = Facts::compliant_example();
        f.caps = Default::default();
        f.host_caps = crate::facts::CapSet::EMPTY;
        f.proc_unmasked = true;
        f.sys_writable = true;
        f.user_namespace = true;
        f.seccomp = false;
        assert!(matches!(run(&CHECK, &f, 37), Outcome::Fail { .. }));
    }

    #[test]
    fn writable_sys_or_proc_sys_alone_is_privileged() {
        let mut f = Facts::compliant_example();
        f.sys_writable = true;
        assert!(matches!(run(&CHECK, &f, 37), Outcome::Fail { .. }));
        let mut f = Facts::compliant_example();
        f.proc_sys_writable = true;
        assert!(matches!(run(&CHECK, &f, 37), Outcome::Fail { .. }));
    }

    #[test]
    fn unmasked_proc_with_every_capability_is_privileged() {
        let mut f = Facts::compliant_example();
        f.proc_unmasked = true;
        f.caps.bounding = f.host_caps;
        assert!(matches!(run(&CHECK, &f, 37), Outcome::Fail { .. }));
    }

    #[test]
    fn allow_all_device_rule_alone_is_privileged() {
        let mut f = Facts::compliant_example();
        f.all_devices = true;
        assert!(matches!(run(&CHECK, &f, 37), Outcome::Fail { .. }));
    }
}
