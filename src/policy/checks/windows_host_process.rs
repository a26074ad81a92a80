//! `windowsHostProcess`: not observable at the node: Windows HostProcess containers never run on a Linux node's OCI runtime.
//!
//! The check exists so that every report, and the check table in docs/reference.md, shows the gap. Admission
//! (PSA, Kyverno) remains the only enforcement for it.

use crate::facts::Facts;
use crate::policy::{Check, Context, Level, Outcome};

pub const CHECK: Check = Check {
    id: "windowsHostProcess",
    reason: "hostProcess",
    level: Level::Baseline,
    since: 0,
    overridden_from: None,
    eval,
    cri: None,
};

fn eval(_f: &Facts, _ctx: &Context) -> Outcome {
    Outcome::NotObservable {
        why: "Windows HostProcess containers never run on a Linux node's OCI runtime",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::checks::testing::{privileged, run};

    #[test]
    fn always_reports_not_observable() {
        for f in [Facts::compliant_example(), privileged()] {
            assert!(matches!(run(&CHECK, &f, 37), Outcome::NotObservable { .. }));
        }
    }
}
