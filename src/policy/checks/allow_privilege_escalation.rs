//! `allowPrivilegeEscalation` (since v1.8): containers must set
//! `securityContext.allowPrivilegeEscalation=false`.
//!
//! kubelet turns exactly that setting into `process.noNewPrivileges: true`
//! (`AddNoNewPrivileges`), so the check reads the flag. Exact.

use crate::facts::Facts;
use crate::policy::{Check, Context, Level, Outcome};

pub const CHECK: Check = Check {
    id: "allowPrivilegeEscalation",
    reason: "allowPrivilegeEscalation != false",
    level: Level::Restricted,
    since: 8,
    overridden_from: None,
    eval,
    cri: None,
};

fn eval(f: &Facts, ctx: &Context) -> Outcome {
    if f.no_new_privileges {
        Outcome::Pass
    } else {
        Outcome::Fail {
            detail: format!(
                "{} must set securityContext.allowPrivilegeEscalation=false",
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
    fn no_new_privileges_passes_and_its_absence_fails() {
        let mut f = Facts::compliant_example();
        assert_eq!(run(&CHECK, &f, 37), Outcome::Pass);
        f.no_new_privileges = false;
        assert_eq!(
            detail(run(&CHECK, &f, 37)),
            "container \"app\" must set securityContext.allowPrivilegeEscalation=false"
        );
    }
}
