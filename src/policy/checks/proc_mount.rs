//! `procMount`: containers must not set `securityContext.procMount` to `Unmasked`.
//!
//! kubelet sends the default masked and read-only path lists, or empty lists for `Unmasked`
//! (`ConvertToRuntimeMaskedPaths`/`ConvertToRuntimeReadonlyPaths`), and runtimes drop the empty
//! fields, so `Unmasked` is both `linux.maskedPaths` and `linux.readonlyPaths` absent on a
//! container that is not privileged. From v1.35 baseline allows `Unmasked` in a user namespace
//! (`hostUsers: false`), seen as a `user` namespace entry. Exact.

use crate::facts::Facts;
use crate::policy::{Check, Context, Level, Outcome};

pub const CHECK: Check = Check {
    id: "procMount",
    reason: "procMount",
    level: Level::Baseline,
    since: 0,
    overridden_from: Some(35),
    eval,
    cri: None,
};

/// The first version at which baseline allows `Unmasked` with `hostUsers: false`.
const USERNS_RELAXED_FROM: u32 = 35;

fn eval(f: &Facts, ctx: &Context) -> Outcome {
    unmasked(f, ctx, ctx.minor >= USERNS_RELAXED_FROM)
}

/// Shared with `procMount_restricted`, which never relaxes for user namespaces.
pub(crate) fn unmasked(f: &Facts, ctx: &Context, userns_relaxed: bool) -> Outcome {
    if !f.proc_unmasked || (userns_relaxed && f.user_namespace) {
        Outcome::Pass
    } else if ctx.privileged {
        Outcome::Covered { by: "privileged" }
    } else {
        Outcome::Fail {
            detail: format!(
                "{} must not set securityContext.procMount to \"Unmasked\"",
                ctx.subject
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::checks::testing::{detail, privileged, run};

    #[test]
    fn masked_passes() {
        assert_eq!(run(&CHECK, &Facts::compliant_example(), 37), Outcome::Pass);
    }

    #[test]
    fn unmasked_fails() {
        let mut f = Facts::compliant_example();
        f.proc_unmasked = true;
        assert_eq!(
            detail(run(&CHECK, &f, 37)),
            "container \"app\" must not set securityContext.procMount to \"Unmasked\""
        );
    }

    #[test]
    fn unmasked_in_user_namespace_passes_from_v1_35_only() {
        let mut f = Facts::compliant_example();
        f.proc_unmasked = true;
        f.user_namespace = true;
        assert_eq!(run(&CHECK, &f, 35), Outcome::Pass);
        assert!(matches!(run(&CHECK, &f, 34), Outcome::Fail { .. }));
    }

    #[test]
    fn privileged_is_covered() {
        assert_eq!(
            run(&CHECK, &privileged(), 37),
            Outcome::Covered { by: "privileged" }
        );
    }
}
