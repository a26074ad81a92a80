//! `procMount_restricted` (since v1.35): as `procMount`, without the user namespace relaxation
//! (upstream runs `procMount_1_0` here and overrides baseline's `procMount`, so a restricted
//! pod with `hostUsers: false` and `procMount: Unmasked` is still refused). Exact.

use crate::facts::Facts;
use crate::policy::{Check, Context, Level, Outcome};

pub const CHECK: Check = Check {
    id: "procMount_restricted",
    reason: "procMount",
    level: Level::Restricted,
    since: 35,
    overridden_from: None,
    eval,
    cri: None,
};

fn eval(f: &Facts, ctx: &Context) -> Outcome {
    super::proc_mount::unmasked(f, ctx, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::checks::testing::run;

    #[test]
    fn unmasked_in_user_namespace_still_fails() {
        let mut f = Facts::compliant_example();
        f.proc_unmasked = true;
        f.user_namespace = true;
        assert!(matches!(run(&CHECK, &f, 37), Outcome::Fail { .. }));
        f.proc_unmasked = false;
        assert_eq!(run(&CHECK, &f, 37), Outcome::Pass);
    }
}
