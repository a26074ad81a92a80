//! `runAsNonRoot`: pods must set `runAsNonRoot: true`.
//!
//! The node sees the uid the process will really run as (`process.user.uid`), which admission
//! cannot know when the image picks it: uid 0 fails. Divergence: a non-zero uid passes here even
//! without `runAsNonRoot: true`, which admission refuses.

use crate::facts::Facts;
use crate::policy::{Check, Context, Level, Outcome};

pub const CHECK: Check = Check {
    id: "runAsNonRoot",
    reason: "runAsNonRoot != true",
    level: Level::Restricted,
    since: 0,
    overridden_from: None,
    eval,
};

fn eval(f: &Facts, ctx: &Context) -> Outcome {
    if f.uid != 0 {
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
}
