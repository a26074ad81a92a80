//! `seLinuxOptions`: the SELinux type may only be empty, `container_t`, `container_init_t`,
//! `container_kvm_t` or (v1.31+) `container_engine_t`; user and role must not be set.
//!
//! The node sees `process.selinuxLabel` (`user:role:type:level`), which runtimes set only where
//! SELinux is enabled (containerd `enable_selinux`, Bottlerocket); without a label nothing is
//! observable. The runtime fills user and role with its defaults, so an explicit `system_u` /
//! `system_r` cannot be told from unset: those pass, any other user or role fails.
//!
//! The CRI view ([`crate::cri`]) has the options as written, the pod's and the container's
//! (kubelet sends the pod's in the container's place when the container sets none), with or
//! without SELinux on the node: there the rule applies exactly as admission applies it.

use crate::facts::Facts;
use crate::policy::{Check, Context, Level, Outcome};

pub const CHECK: Check = Check {
    id: "seLinuxOptions",
    reason: "seLinuxOptions",
    level: Level::Baseline,
    since: 0,
    overridden_from: None,
    eval,
    cri: Some(cri),
};

const RUNTIME_DEFAULT_USERS: [&str; 1] = ["system_u"];
const RUNTIME_DEFAULT_ROLES: [&str; 2] = ["system_r", "object_r"];

fn allowed_type(t: &str, minor: u32) -> bool {
    matches!(
        t,
        "" | "container_t" | "container_init_t" | "container_kvm_t"
    ) || (minor >= 31 && t == "container_engine_t")
}

/// What PSA forbids in options as written: a type off the list, any user, any role.
fn written_problems(o: &crate::cri::SeLinux, minor: u32) -> Vec<String> {
    let mut problems = Vec::new();
    if !allowed_type(&o.type_, minor) {
        problems.push(format!("type {:?}", o.type_));
    }
    if !o.user.is_empty() {
        problems.push("user may not be set".to_owned());
    }
    if !o.role.is_empty() {
        problems.push("role may not be set".to_owned());
    }
    problems
}

fn cri(v: &crate::cri::View, ctx: &Context) -> Outcome {
    let mut parts = Vec::new();
    if let Some(o) = &v.pod.selinux {
        let p = written_problems(o, ctx.minor);
        if !p.is_empty() {
            parts.push(format!(
                "pod set forbidden securityContext.seLinuxOptions: {}",
                p.join("; ")
            ));
        }
    }
    // The pod's options repeated in the container's place are the pod's finding, said once.
    if let Some(o) = v
        .container
        .selinux
        .as_ref()
        .filter(|o| Some(*o) != v.pod.selinux.as_ref())
    {
        let p = written_problems(o, ctx.minor);
        if !p.is_empty() {
            parts.push(format!(
                "{} set forbidden securityContext.seLinuxOptions: {}",
                ctx.subject,
                p.join("; ")
            ));
        }
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
    let Some(label) = f.selinux_label.as_deref() else {
        return Outcome::NotObservable {
            why: "no SELinux label in the spec: SELinux is off on this node or the runtime sets none",
        };
    };
    let mut fields = label.splitn(4, ':');
    let user = fields.next().unwrap_or("");
    let role = fields.next().unwrap_or("");
    let typ = fields.next().unwrap_or("");
    let mut problems = Vec::new();
    if !allowed_type(typ, ctx.minor) {
        problems.push(format!("type {typ:?}"));
    }
    if !user.is_empty() && !RUNTIME_DEFAULT_USERS.contains(&user) {
        problems.push("user may not be set".to_owned());
    }
    if !role.is_empty() && !RUNTIME_DEFAULT_ROLES.contains(&role) {
        problems.push("role may not be set".to_owned());
    }
    if problems.is_empty() {
        Outcome::Pass
    } else {
        Outcome::Fail {
            detail: format!(
                "{} set forbidden securityContext.seLinuxOptions: {}",
                ctx.subject,
                problems.join("; ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::checks::testing::{detail, run};

    fn with(label: &str) -> Facts {
        let mut f = Facts::compliant_example();
        f.selinux_label = Some(label.into());
        f
    }

    #[test]
    fn no_label_is_not_observable() {
        assert!(matches!(
            run(&CHECK, &Facts::compliant_example(), 37),
            Outcome::NotObservable { .. }
        ));
    }

    #[test]
    fn runtime_default_label_passes() {
        assert_eq!(
            run(&CHECK, &with("system_u:system_r:container_t:s0:c1,c2"), 37),
            Outcome::Pass
        );
    }

    #[test]
    fn spc_t_fails_with_type() {
        assert_eq!(
            detail(run(&CHECK, &with("system_u:system_r:spc_t:s0"), 37)),
            "container \"app\" set forbidden securityContext.seLinuxOptions: type \"spc_t\""
        );
    }

    #[test]
    fn engine_type_allowed_from_v1_31() {
        let f = with("system_u:system_r:container_engine_t:s0");
        assert_eq!(run(&CHECK, &f, 31), Outcome::Pass);
        assert!(matches!(run(&CHECK, &f, 30), Outcome::Fail { .. }));
    }

    #[test]
    fn foreign_user_and_role_fail() {
        assert_eq!(
            detail(run(
                &CHECK,
                &with("unconfined_u:unconfined_r:container_t:s0"),
                37
            )),
            "container \"app\" set forbidden securityContext.seLinuxOptions: user may not be set; role may not be set"
        );
    }
}
