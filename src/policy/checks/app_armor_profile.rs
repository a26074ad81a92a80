//! `appArmorProfile`: the AppArmor profile must not be `Unconfined`.
//!
//! On a host with AppArmor, containerd sets `process.apparmorProfile` for an unset or
//! RuntimeDefault profile (`cri-containerd.apparmor.d`) and for Localhost (the profile name),
//! and none for Unconfined, so "no profile" or `unconfined` fails. Where the runtime applies no
//! profile whatever the pod asked (no AppArmor in the kernel, as on EKS AL2023 and Bottlerocket;
//! containerd without `apparmor_parser` or with `disable_apparmor`), nothing can be observed;
//! the policy's `apparmor` key and [`crate::spec`] decide which, as the runtime does.
//!
//! The CRI view ([`crate::cri`]) has the profile kubelet asked for (the container's field, the
//! pod annotation or the pod's field, resolved by kubelet): an Unconfined request fails whether
//! or not the host has AppArmor, as it fails admission.

use crate::facts::{AppArmor, Facts};
use crate::policy::{Check, Context, Level, Outcome};

pub const CHECK: Check = Check {
    id: "appArmorProfile",
    reason: "forbidden AppArmor profile",
    level: Level::Baseline,
    since: 0,
    overridden_from: None,
    eval,
    cri: Some(cri),
};

fn eval(f: &Facts, ctx: &Context) -> Outcome {
    match &f.apparmor {
        AppArmor::HostDisabled => Outcome::NotObservable {
            why: "the runtime applies no AppArmor profile on this host, so none is set",
        },
        AppArmor::Profile(Some(p)) if p != "unconfined" => Outcome::Pass,
        AppArmor::Profile(_) if ctx.privileged => Outcome::Covered { by: "privileged" },
        AppArmor::Profile(_) => Outcome::Fail {
            detail: format!(
                "{} must not set AppArmor profile type to \"Unconfined\"",
                ctx.subject
            ),
        },
    }
}

fn cri(v: &crate::cri::View, ctx: &Context) -> Outcome {
    match v.container.apparmor {
        crate::cri::AppArmorRequest::Unconfined if ctx.privileged || v.container.privileged => {
            Outcome::Covered { by: "privileged" }
        }
        crate::cri::AppArmorRequest::Unconfined => Outcome::Fail {
            detail: format!(
                "{} must not set AppArmor profile type to \"Unconfined\"",
                ctx.subject
            ),
        },
        crate::cri::AppArmorRequest::Other(ref p) => Outcome::Fail {
            detail: format!("{} must not set AppArmor profile {p:?}", ctx.subject),
        },
        _ => Outcome::Pass,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::checks::testing::{detail, privileged, run};

    #[test]
    fn host_without_apparmor_is_not_observable() {
        assert!(matches!(
            run(&CHECK, &Facts::compliant_example(), 37),
            Outcome::NotObservable { .. }
        ));
    }

    #[test]
    fn runtime_default_profile_passes() {
        let mut f = Facts::compliant_example();
        f.apparmor = AppArmor::Profile(Some("cri-containerd.apparmor.d".into()));
        assert_eq!(run(&CHECK, &f, 37), Outcome::Pass);
    }

    #[test]
    fn missing_or_unconfined_fails() {
        for p in [None, Some("unconfined".to_string())] {
            let mut f = Facts::compliant_example();
            f.apparmor = AppArmor::Profile(p);
            assert_eq!(
                detail(run(&CHECK, &f, 37)),
                "container \"app\" must not set AppArmor profile type to \"Unconfined\""
            );
        }
    }

    #[test]
    fn privileged_is_covered() {
        let mut f = privileged();
        f.apparmor = AppArmor::Profile(None);
        assert_eq!(run(&CHECK, &f, 37), Outcome::Covered { by: "privileged" });
    }
}
