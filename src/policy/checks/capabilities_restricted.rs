//! `capabilities_restricted` (since v1.22): containers must drop ALL and may add only
//! NET_BIND_SERVICE.
//!
//! The node sees the resulting sets: anything beyond NET_BIND_SERVICE fails. A default
//! capability still present means `drop: [ALL]` was not set; one beyond the runtime default
//! was added. Divergence: dropping each default capability by name instead of `ALL` passes here.
//! With the CRI view ([`crate::cri`]) `drop` and `add` are read as the pod wrote them, exactly
//! as admission reads them.

use caps::Capability::CAP_NET_BIND_SERVICE;

use super::join_quoted;
use crate::facts::{CapSet, Facts};
use crate::policy::{Check, Context, Level, Outcome};

pub const CHECK: Check = Check {
    id: "capabilities_restricted",
    reason: "unrestricted capabilities",
    level: Level::Restricted,
    since: 22,
    overridden_from: None,
    eval,
    cri: Some(cri),
};

fn cri(v: &crate::cri::View, ctx: &Context) -> Outcome {
    let c = &v.container;
    let mut parts = Vec::new();
    if !c.drop_caps.iter().any(|d| d == "ALL") {
        parts.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            ctx.subject
        ));
    }
    let mut added: Vec<&str> = c
        .add_caps
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "NET_BIND_SERVICE")
        .collect();
    added.sort_unstable();
    added.dedup();
    if !added.is_empty() {
        parts.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            ctx.subject,
            join_quoted(&added)
        ));
    }
    if parts.is_empty() {
        Outcome::Pass
    } else {
        Outcome::Fail {
            detail: parts.join("; "),
        }
    }
}

fn eval(f: &Facts, ctx: &Context) -> Outcome {
    let mut nbs = CapSet::EMPTY;
    nbs.insert(CAP_NET_BIND_SERVICE);
    let held = f.caps.any().minus(nbs);
    if held.is_empty() && f.prefixed_caps.is_empty() {
        return Outcome::Pass;
    }
    let mut parts = Vec::new();
    let kept_defaults = held.intersection(ctx.runtime_default_caps);
    let added = held.minus(ctx.runtime_default_caps);
    if !kept_defaults.is_empty() || ctx.privileged {
        parts.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            ctx.subject
        ));
    }
    let mut added = added.pss_names();
    added.extend(f.prefixed_caps.iter().cloned());
    if !added.is_empty() && !ctx.privileged {
        parts.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            ctx.subject,
            join_quoted(&added)
        ));
    }
    Outcome::Fail {
        detail: parts.join("; "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Facts;
    use crate::policy::checks::testing::{detail, run};
    use caps::Capability::*;

    #[test]
    fn defaults_kept_fail_with_drop_all() {
        assert_eq!(
            detail(run(&CHECK, &Facts::compliant_example(), 37)),
            "container \"app\" must set securityContext.capabilities.drop=[\"ALL\"]"
        );
    }

    #[test]
    fn drop_all_add_net_bind_service_passes() {
        let mut f = Facts::compliant_example();
        f.caps = Default::default();
        f.caps.bounding.insert(CAP_NET_BIND_SERVICE);
        f.caps.effective.insert(CAP_NET_BIND_SERVICE);
        assert_eq!(run(&CHECK, &f, 37), Outcome::Pass);
    }

    #[test]
    fn drop_all_add_sys_time_names_it() {
        let mut f = Facts::compliant_example();
        f.caps = Default::default();
        f.caps.bounding.insert(CAP_SYS_TIME);
        assert_eq!(
            detail(run(&CHECK, &f, 37)),
            "container \"app\" must not include \"SYS_TIME\" in securityContext.capabilities.add"
        );
    }
}
