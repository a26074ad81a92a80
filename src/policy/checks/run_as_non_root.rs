//! `runAsNonRoot`: pods must set `runAsNonRoot: true`.
//!
//! The node sees the uid the process will really run as (`process.user.uid`), which admission
//! cannot know when the image picks it: uid 0 fails. Divergence: a non-zero uid passes here even
//! without `runAsNonRoot: true`, which admission refuses.
//!
//! From v1.35 a pod with `hostUsers: false` passes whatever its uid (upstream
//! `runAsNonRoot1_35`: the relaxation that v1.0 had behind a perma-alpha feature gate became
//! unconditional, and v1.0-v1.34 lost it), seen here as the container's own user namespace.

use crate::facts::Facts;
use crate::policy::{Check, Context, Level, Outcome};

pub const CHECK: Check = Check {
    id: "runAsNonRoot",
    reason: "runAsNonRoot != true",
    level: Level::Restricted,
    since: 0,
    overridden_from: None,
    eval,
    cri: None,
};

/// The first version at which `hostUsers: false` relaxes this check.
pub(crate) const USERNS_RELAXED_FROM: u32 = 35;

fn eval(f: &Facts, ctx: &Context) -> Outcome {
    if f.uid != 0 || (f.user_namespace && ctx.minor >= USERNS_RELAXED_FROM) {
        Outcome::Pass
    } else {
        Outcome::Fail {
            detail: format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                ctx.subject
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::checks::testing::{detail, run};

    #[test]
    fn root_fails_and_nonroot_passes() {
        let mut f = Facts::compliant_example();
        assert_eq!(run(&CHECK, &f, 37), Outcome::Pass);
        f.uid = 0;
        assert_eq!(
            detail(run(&CHECK, &f, 37)),
            "pod or container \"app\" must set securityContext.runAsNonRoot=true"
        );
    }

    #[test]
    fn root_in_a_user_namespace_passes_from_v1_35_only() {
        let mut f = Facts::compliant_example();
        f.uid = 0;
        f.user_namespace = true;
        assert_eq!(run(&CHECK, &f, 35), Outcome::Pass);
        assert_eq!(run(&CHECK, &f, 37), Outcome::Pass);
        assert!(matches!(run(&CHECK, &f, 34), Outcome::Fail { .. }));
        assert!(matches!(run(&CHECK, &f, 0), Outcome::Fail { .. }));
    }
}
