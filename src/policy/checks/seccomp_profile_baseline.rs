//! `seccompProfile_baseline`: the seccomp profile must not be `Unconfined` (unset is allowed).
//!
//! containerd writes no `linux.seccomp` both for `Unconfined` and for an unset profile on a
//! kubelet with `seccompDefault: false` (the EKS default), so the node cannot tell them apart.
//! The policy switch `seccomp_absent` decides: `unset` (default) lets such containers pass, so
//! ordinary pods on a stock node start; `unconfined` refuses them, which is exact on nodes whose
//! kubelet runs with `seccompDefault: true`.

use crate::facts::Facts;
use crate::policy::SeccompAbsent;
use crate::policy::{Check, Context, Level, Outcome};

pub const CHECK: Check = Check {
    id: "seccompProfile_baseline",
    reason: "seccompProfile",
    level: Level::Baseline,
    since: 0,
    overridden_from: Some(19),
    eval,
    cri: None,
};

fn eval(f: &Facts, ctx: &Context) -> Outcome {
    if f.seccomp || ctx.ambiguity.seccomp_absent == SeccompAbsent::Unset {
        Outcome::Pass
    } else if ctx.privileged {
        Outcome::Covered { by: "privileged" }
    } else {
        Outcome::Fail {
            detail: format!(
                "{} must not set securityContext.seccompProfile.type to \"Unconfined\"",
                ctx.subject
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Ambiguity;
    use crate::policy::LegacyVolumes;
    use crate::policy::checks::testing::{detail, run, run_with};

    #[test]
    fn absent_passes_by_default() {
        let mut f = Facts::compliant_example();
        f.seccomp = false;
        assert_eq!(run(&CHECK, &f, 37), Outcome::Pass);
    }

    #[test]
    fn absent_fails_when_read_as_unconfined() {
        let mut f = Facts::compliant_example();
        f.seccomp = false;
        let amb = Ambiguity {
            seccomp_absent: SeccompAbsent::Unconfined,
            legacy_volumes: LegacyVolumes::Allow,
        };
        assert_eq!(
            detail(run_with(&CHECK, &f, 37, amb)),
            "container \"app\" must not set securityContext.seccompProfile.type to \"Unconfined\""
        );
        f.seccomp = true;
        assert_eq!(run_with(&CHECK, &f, 37, amb), Outcome::Pass);
    }
}
