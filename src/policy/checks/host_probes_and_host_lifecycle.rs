//! `hostProbesAndHostLifecycle`: not observable at the node: probes and lifecycle handlers are run by kubelet and never reach the runtime.
//!
//! The check exists so that every report, and the check table in docs/reference.md, shows the gap. Admission
//! (PSA, Kyverno) remains the only enforcement for it.

use crate::facts::Facts;
use crate::policy::{Check, Context, Level, Outcome};

pub const CHECK: Check = Check {
    id: "hostProbesAndHostLifecycle",
    reason: "probe or lifecycle host",
    level: Level::Baseline,
    since: 34,
    overridden_from: None,
    eval,
    cri: None,
};

fn eval(_f: &Facts, _ctx: &Context) -> Outcome {
    Outcome::NotObservable {
        why: "probes and lifecycle handlers are run by kubelet and never reach the runtime",
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
