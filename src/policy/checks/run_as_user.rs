//! `runAsUser` (since v1.23): pods must not set `runAsUser: 0`.
//!
//! The node sees uid 0 whether it came from `runAsUser: 0` or from the image; both fail here,
//! while admission refuses only the explicit setting (and `runAsNonRoot` catches the image
//! case). Divergence, stricter.
//!
//! From v1.35 a pod with `hostUsers: false` passes (upstream `runAsUser1_35`; v1.23-v1.34 have
//! no relaxation), seen here as the container's own user namespace.

use crate::facts::Facts;
use crate::policy::{Check, Context, Level, Outcome};

pub const CHECK: Check = Check {
    id: "runAsUser",
    reason: "runAsUser=0",
    level: Level::Restricted,
    since: 23,
    overridden_from: None,
    eval,
    cri: None,
};

fn eval(f: &Facts, ctx: &Context) -> Outcome {
    let relaxed = f.user_namespace && ctx.minor >= super::run_as_non_root::USERNS_RELAXED_FROM;
    if f.uid != 0 || relaxed {
        Outcome::Pass
    } else {
        Outcome::Fail {
            detail: format!("{} must not set runAsUser=0", ctx.subject),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::checks::testing::{detail, run};

    #[test]
    fn uid_zero_fails() {
        let mut f = Facts::compliant_example();
        f.uid = 0;
        assert_eq!(
            detail(run(&CHECK, &f, 37)),
            "container \"app\" must not set runAsUser=0"
        );
        f.uid = 1000;
        assert_eq!(run(&CHECK, &f, 37), Outcome::Pass);
    }

    #[test]
    fn uid_zero_in_a_user_namespace_passes_from_v1_35_only() {
        let mut f = Facts::compliant_example();
        f.uid = 0;
        f.user_namespace = true;
        assert_eq!(run(&CHECK, &f, 35), Outcome::Pass);
        assert!(matches!(run(&CHECK, &f, 34), Outcome::Fail { .. }));
        assert!(matches!(run(&CHECK, &f, 23), Outcome::Fail { .. }));
    }
}
