//! `capabilities_baseline`: `capabilities.add` may only name AUDIT_WRITE, CHOWN, DAC_OVERRIDE,
//! FOWNER, FSETID, KILL, MKNOD, NET_BIND_SERVICE, SETFCAP, SETGID, SETPCAP, SETUID, SYS_CHROOT.
//!
//! The spec holds the resulting sets, not the `add` list, so the node allows any capability in
//! any set that is either on that list or in the runtime's default set (containerd's 14, which
//! adds NET_RAW). Divergence: `add: [NET_RAW]` is invisible on a runtime that grants NET_RAW by
//! default; an operator who removes NET_RAW from the runtime's default (the base runtime spec)
//! and from `capabilities.runtime_default` makes it visible. A lowercase or `CAP_`-prefixed `add`
//! entry that the runtime normalises to an allowed capability passes here and fails admission.
//!
//! With the CRI view ([`crate::cri`]) the node reads `add` as the pod wrote it, and all of these
//! are decided as admission decides them.

use caps::Capability::*;

use super::join_quoted;
use crate::facts::{CapSet, Facts};
use crate::policy::{Check, Context, Level, Outcome};

pub const CHECK: Check = Check {
    id: "capabilities_baseline",
    reason: "non-default capabilities",
    level: Level::Baseline,
    since: 0,
    overridden_from: Some(22),
    eval,
    cri: Some(cri),
};

/// The PSS baseline allow-list for `capabilities.add`.
pub fn baseline_allowed() -> CapSet {
    let mut s = CapSet::EMPTY;
    for c in [
        CAP_AUDIT_WRITE,
        CAP_CHOWN,
        CAP_DAC_OVERRIDE,
        CAP_FOWNER,
        CAP_FSETID,
        CAP_KILL,
        CAP_MKNOD,
        CAP_NET_BIND_SERVICE,
        CAP_SETFCAP,
        CAP_SETGID,
        CAP_SETPCAP,
        CAP_SETUID,
        CAP_SYS_CHROOT,
    ] {
        s.insert(c);
    }
    s
}

/// The allow-list as PSA compares it: exact, case-sensitive names without `CAP_`.
pub const BASELINE_ADD: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// `add` as kubelet sent it, against the allow-list, sorted and unique as PSA lists them.
fn cri(v: &crate::cri::View, ctx: &Context) -> Outcome {
    let mut extra: Vec<&str> = v
        .container
        .add_caps
        .iter()
        .map(String::as_str)
        .filter(|c| !BASELINE_ADD.contains(c))
        .collect();
    extra.sort_unstable();
    extra.dedup();
    if extra.is_empty() {
        Outcome::Pass
    } else if ctx.privileged || v.container.privileged {
        Outcome::Covered { by: "privileged" }
    } else {
        Outcome::Fail {
            detail: format!(
                "{} must not include {} in securityContext.capabilities.add",
                ctx.subject,
                join_quoted(&extra)
            ),
        }
    }
}

fn eval(f: &Facts, ctx: &Context) -> Outcome {
    let extra = f
        .caps
        .any()
        .minus(baseline_allowed().union(ctx.runtime_default_caps));
    if extra.is_empty() && f.prefixed_caps.is_empty() {
        Outcome::Pass
    } else if ctx.privileged {
        Outcome::Covered { by: "privileged" }
    } else {
        let mut names = extra.pss_names();
        names.extend(f.prefixed_caps.iter().cloned());
        Outcome::Fail {
            detail: format!(
                "{} must not include {} in securityContext.capabilities.add",
                ctx.subject,
                join_quoted(&names)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::checks::testing::{detail, privileged, run};

    #[test]
    fn runtime_defaults_pass() {
        assert_eq!(run(&CHECK, &Facts::compliant_example(), 37), Outcome::Pass);
    }

    #[test]
    fn added_sys_admin_fails_with_pss_name() {
        let mut f = Facts::compliant_example();
        f.caps.bounding.insert(CAP_SYS_ADMIN);
        f.caps.effective.insert(CAP_SYS_ADMIN);
        assert_eq!(
            detail(run(&CHECK, &f, 37)),
            "container \"app\" must not include \"SYS_ADMIN\" in securityContext.capabilities.add"
        );
    }

    #[test]
    fn any_set_counts_including_ambient_and_inheritable() {
        let mut f = Facts::compliant_example();
        f.caps.ambient.insert(CAP_NET_ADMIN);
        f.caps.inheritable.insert(CAP_SYS_PTRACE);
        assert_eq!(
            detail(run(&CHECK, &f, 37)),
            "container \"app\" must not include \"NET_ADMIN\", \"SYS_PTRACE\" in securityContext.capabilities.add"
        );
    }

    #[test]
    fn prefixed_request_fails_as_the_pod_wrote_it() {
        let mut f = Facts::compliant_example();
        f.prefixed_caps = vec!["CAP_CHOWN".into()];
        assert_eq!(
            detail(run(&CHECK, &f, 37)),
            "container \"app\" must not include \"CAP_CHOWN\" in securityContext.capabilities.add"
        );
    }

    #[test]
    fn privileged_is_covered() {
        assert_eq!(
            run(&CHECK, &privileged(), 37),
            Outcome::Covered { by: "privileged" }
        );
    }
}
