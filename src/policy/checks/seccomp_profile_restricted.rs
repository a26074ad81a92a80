//! `seccompProfile_restricted` (since v1.19): the profile must be `RuntimeDefault` or
//! `Localhost`.
//!
//! Both unset and `Unconfined` fail restricted, so "no `linux.seccomp`" fails whatever it meant;
//! any profile present passes (a Localhost profile is the operator's choice, as in admission).
//! Divergence: on a kubelet with `seccompDefault: true`, an unset profile becomes RuntimeDefault
//! and passes here while admission refuses it.

use crate::facts::Facts;
use crate::policy::SeccompAbsent;
use crate::policy::{Check, Context, Level, Outcome};

pub const CHECK: Check = Check {
    id: "seccompProfile_restricted",
    reason: "seccompProfile",
    level: Level::Restricted,
    since: 19,
    overridden_from: None,
    eval,
    cri: None,
};

fn eval(f: &Facts, ctx: &Context) -> Outcome {
    if f.seccomp {
        return Outcome::Pass;
    }
    let detail = match ctx.ambiguity.seccomp_absent {
        SeccompAbsent::Unconfined => format!(
            "{} must not set securityContext.seccompProfile.type to \"Unconfined\"",
            ctx.subject
        ),
        SeccompAbsent::Unset => format!(
            "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
            ctx.subject
        ),
    };
    Outcome::Fail { detail }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::checks::testing::{detail, run};

    #[test]
    fn absent_fails_with_must_set() {
        let mut f = Facts::compliant_example();
        f.seccomp = false;
        assert_eq!(
            detail(run(&CHECK, &f, 37)),
            "pod or container \"app\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\""
        );
    }

    #[test]
    fn present_passes() {
        assert_eq!(run(&CHECK, &Facts::compliant_example(), 37), Outcome::Pass);
    }
}
