//! Pod Security Standards levels, policy versions, the registry of checks and the evaluation of
//! [`Facts`] against a level and version. Everything here is pure: no I/O.

pub mod checks;
#[cfg(test)]
mod mutation;

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use crate::facts::Facts;

/// The newest policy version this evaluator knows; `latest` means this one, and pinned versions
/// above it are clamped to it, as Pod Security Admission does.
pub const NEWEST_MINOR: u32 = 37;

/// Pod Security Standards levels, from least to most restrictive (`Ord` follows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Nothing is checked.
    Privileged,
    Baseline,
    Restricted,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        })
    }
}

impl FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "privileged" => Ok(Level::Privileged),
            "baseline" => Ok(Level::Baseline),
            "restricted" => Ok(Level::Restricted),
            _ => Err(format!(
                "unknown level {s:?} (expected \"privileged\", \"baseline\" or \"restricted\")"
            )),
        }
    }
}

/// A policy version: `latest` or a pinned `v1.N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    Latest,
    Pinned(u32),
}

impl Version {
    /// The minor version whose rules apply when `latest` is the newest this evaluator knows.
    pub fn minor(self) -> u32 {
        self.minor_at(NEWEST_MINOR)
    }

    /// The minor version whose rules apply in a cluster whose `latest` is `latest`: Pod Security
    /// Admission evaluates `latest`, and any version above the newest its checks know, at that
    /// newest version (`checkRegistry.EvaluatePod` in pod-security-admission's
    /// `policy/registry.go`), and the API server carries the checks of its own release.
    pub fn minor_at(self, latest: u32) -> u32 {
        let latest = latest.min(NEWEST_MINOR);
        match self {
            Version::Latest => latest,
            Version::Pinned(n) => n.min(latest),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::Latest => f.write_str("latest"),
            Version::Pinned(n) => write!(f, "v1.{n}"),
        }
    }
}

impl FromStr for Version {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "latest" {
            return Ok(Version::Latest);
        }
        s.strip_prefix("v1.")
            .and_then(|n| {
                // Reject "v1.07" and "v1.+3": only canonical decimal minors.
                (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && !n.starts_with("0")
                    || n == "0")
                    .then(|| n.parse::<u32>().ok())
                    .flatten()
            })
            .map(Version::Pinned)
            .ok_or_else(|| format!("unknown version {s:?} (expected \"latest\" or \"v1.N\")"))
    }
}

/// `baseline:latest`, `restricted:v1.29`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LevelVersion {
    pub level: Level,
    pub version: Version,
}

impl LevelVersion {
    /// `privileged:latest`: nothing is checked.
    pub const PRIVILEGED: LevelVersion = LevelVersion::latest(Level::Privileged);

    pub const fn latest(level: Level) -> Self {
        LevelVersion {
            level,
            version: Version::Latest,
        }
    }
}

impl fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.level, self.version)
    }
}

impl FromStr for LevelVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (l, v) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not \"level:version\""))?;
        Ok(LevelVersion {
            level: l.parse()?,
            version: v.parse()?,
        })
    }
}

/// The result of one check for one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail {
        detail: String,
    },
    /// The setting does not reach the node (or not on this host); the reason says why.
    NotObservable {
        why: &'static str,
    },
    /// What this check looks at is a side effect of another failing check (a privileged
    /// container has every capability and no seccomp), reported there instead.
    Covered {
        by: &'static str,
    },
}

/// How to read a container with no `linux.seccomp`: containerd writes none both for an unset
/// profile (kubelet `seccompDefault: false`, the EKS default) and for an explicit `Unconfined`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeccompAbsent {
    /// Read it as "unset": allowed by baseline, refused by restricted (the default).
    Unset,
    /// Read it as `Unconfined`: refused by baseline too. Right only on nodes whose kubelet runs
    /// with `seccompDefault: true`, where an unset profile becomes RuntimeDefault.
    Unconfined,
}

/// Kubelet volume plugins that serve both inline volumes (forbidden by restricted) and
/// PersistentVolumes (allowed), such as `kubernetes.io~nfs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LegacyVolumes {
    Allow,
    Refuse,
}

/// Switches for settings the node cannot tell apart on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ambiguity {
    pub seccomp_absent: SeccompAbsent,
    pub legacy_volumes: LegacyVolumes,
}

impl Default for Ambiguity {
    fn default() -> Self {
        Ambiguity {
            seccomp_absent: SeccompAbsent::Unset,
            legacy_volumes: LegacyVolumes::Allow,
        }
    }
}

/// What a check reads besides the facts.
pub struct Context<'a> {
    /// The minor policy version in force.
    pub minor: u32,
    /// `container "app"`, the subject of most details.
    pub subject: &'a str,
    pub ambiguity: Ambiguity,
    /// The container's capabilities by default, without any `add`.
    pub runtime_default_caps: crate::facts::CapSet,
    /// The privileged check failed: checks whose findings are its side effects stand down.
    pub privileged: bool,
}

/// One upstream check.
pub struct Check {
    /// The upstream check ID, verbatim (`hostNamespaces`).
    pub id: &'static str,
    /// The upstream ForbiddenReason, verbatim (`host namespaces`).
    pub reason: &'static str,
    pub level: Level,
    /// The first minor version the check applies at.
    pub since: u32,
    /// Under restricted, a baseline check that a restricted one replaces from this minor on.
    pub overridden_from: Option<u32>,
    pub eval: fn(&Facts, &Context) -> Outcome,
    /// What the CRI configs behind the spec add, where they show what the spec cannot (see
    /// [`combine`]).
    pub cri: Option<fn(&crate::cri::View, &Context) -> Outcome>,
}

/// One check's outcome from the spec and, when the lookup gave one, the CRI view. The view
/// only adds refusals: a failure in the spec stands (as does a finding covered by
/// `privileged`); otherwise a failure in the view fails; otherwise what the spec could not
/// observe takes the view's word, and what the spec passed stays passed.
pub fn combine(spec: Outcome, cri: Option<Outcome>) -> Outcome {
    match (spec, cri) {
        (o @ (Outcome::Fail { .. } | Outcome::Covered { .. }), _) => o,
        (_, Some(f @ Outcome::Fail { .. })) => f,
        (Outcome::NotObservable { .. }, Some(c)) => c,
        (o, _) => o,
    }
}

/// Every check in Pod Security Admission's order: baseline IDs sorted bytewise, then restricted.
pub static CHECKS: &[Check] = &[
    checks::app_armor_profile::CHECK,
    checks::capabilities_baseline::CHECK,
    checks::host_namespaces::CHECK,
    checks::host_path_volumes::CHECK,
    checks::host_ports::CHECK,
    checks::host_probes_and_host_lifecycle::CHECK,
    checks::privileged::CHECK,
    checks::proc_mount::CHECK,
    checks::se_linux_options::CHECK,
    checks::seccomp_profile_baseline::CHECK,
    checks::sysctls::CHECK,
    checks::windows_host_process::CHECK,
    checks::allow_privilege_escalation::CHECK,
    checks::capabilities_restricted::CHECK,
    checks::proc_mount_restricted::CHECK,
    checks::restricted_volumes::CHECK,
    checks::run_as_non_root::CHECK,
    checks::run_as_user::CHECK,
    checks::seccomp_profile_restricted::CHECK,
];

/// The checks that apply at a level and minor version, in report order.
pub fn applicable(level: Level, minor: u32) -> impl Iterator<Item = &'static Check> {
    CHECKS.iter().filter(move |c| {
        c.since <= minor
            && match (level, c.level) {
                (Level::Privileged, _) | (_, Level::Privileged) => false,
                (Level::Baseline, Level::Baseline) => true,
                (Level::Baseline, Level::Restricted) => false,
                (Level::Restricted, Level::Restricted) => true,
                (Level::Restricted, Level::Baseline) => {
                    c.overridden_from.is_none_or(|from| minor < from)
                }
            }
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    pub id: &'static str,
    pub reason: &'static str,
    pub outcome: Outcome,
}

/// Every applicable check's outcome, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub policy: LevelVersion,
    pub results: Vec<CheckResult>,
}

impl Report {
    pub fn violations(&self) -> impl Iterator<Item = (&CheckResult, &str)> {
        self.results.iter().filter_map(|r| match &r.outcome {
            Outcome::Fail { detail } => Some((r, detail.as_str())),
            _ => None,
        })
    }

    pub fn allowed(&self) -> bool {
        self.violations().next().is_none()
    }

    /// `violates PodSecurity "baseline:latest": privileged (container "app" must not ...)`,
    /// as Pod Security Admission words it; `None` when nothing failed.
    pub fn message(&self) -> Option<String> {
        let parts: Vec<String> = self
            .violations()
            .map(|(r, d)| {
                if d.is_empty() {
                    r.reason.to_owned()
                } else {
                    format!("{} ({d})", r.reason)
                }
            })
            .collect();
        if parts.is_empty() {
            return None;
        }
        Some(format!(
            "violates PodSecurity \"{}\": {}",
            self.policy,
            parts.join(", ")
        ))
    }
}

#[cfg(test)]
thread_local! {
    /// Test builds only: a check ID [`evaluate`] leaves out, as if it did not exist (the
    /// mutation test, `mutation.rs`). No binary carries it.
    static DISABLED: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

#[cfg(test)]
fn disabled(id: &str) -> bool {
    DISABLED.with(|d| d.get() == Some(id))
}

#[cfg(not(test))]
fn disabled(_id: &str) -> bool {
    false
}

/// Evaluates the facts of one container against a level and version, with the CRI view of it
/// when there is one.
pub fn evaluate(
    facts: &Facts,
    cri: Option<&crate::cri::View>,
    policy: LevelVersion,
    latest: u32,
    container: &str,
    ambiguity: Ambiguity,
    runtime_default_caps: crate::facts::CapSet,
) -> Report {
    let subject = format!("container {container:?}");
    let mut ctx = Context {
        minor: policy.version.minor_at(latest),
        subject: &subject,
        ambiguity,
        runtime_default_caps,
        privileged: false,
    };
    ctx.privileged = checks::privileged::is_privileged(facts);
    let results = applicable(policy.level, ctx.minor)
        .filter(|c| !disabled(c.id))
        .map(|c| CheckResult {
            id: c.id,
            reason: c.reason,
            outcome: combine(
                (c.eval)(facts, &ctx),
                c.cri.zip(cri).map(|(f, v)| f(v, &ctx)),
            ),
        })
        .collect();
    Report { policy, results }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(level: Level, minor: u32) -> Vec<&'static str> {
        applicable(level, minor).map(|c| c.id).collect()
    }

    const BASELINE: [&str; 12] = [
        "appArmorProfile",
        "capabilities_baseline",
        "hostNamespaces",
        "hostPathVolumes",
        "hostPorts",
        "hostProbesAndHostLifecycle",
        "privileged",
        "procMount",
        "seLinuxOptions",
        "seccompProfile_baseline",
        "sysctls",
        "windowsHostProcess",
    ];

    /// The registry matches upstream's check IDs for every supported version.
    #[test]
    fn registry_matches_upstream_ids_per_version() {
        for minor in 0..=NEWEST_MINOR {
            assert!(
                ids(Level::Privileged, minor).is_empty(),
                "privileged checks nothing"
            );
            let mut base: Vec<&str> = BASELINE.to_vec();
            if minor < 34 {
                base.retain(|id| *id != "hostProbesAndHostLifecycle");
            }
            assert_eq!(ids(Level::Baseline, minor), base, "baseline v1.{minor}");

            let mut restricted: Vec<&str> = base.clone();
            restricted.retain(|id| *id != "hostPathVolumes");
            if minor >= 22 {
                restricted.retain(|id| *id != "capabilities_baseline");
            }
            if minor >= 19 {
                restricted.retain(|id| *id != "seccompProfile_baseline");
            }
            if minor >= 35 {
                restricted.retain(|id| *id != "procMount");
            }
            for (id, since) in [
                ("allowPrivilegeEscalation", 8),
                ("capabilities_restricted", 22),
                ("procMount_restricted", 35),
                ("restrictedVolumes", 0),
                ("runAsNonRoot", 0),
                ("runAsUser", 23),
                ("seccompProfile_restricted", 19),
            ] {
                if minor >= since {
                    restricted.push(id);
                }
            }
            assert_eq!(
                ids(Level::Restricted, minor),
                restricted,
                "restricted v1.{minor}"
            );
        }
    }

    #[test]
    fn ids_are_sorted_bytewise_within_each_level() {
        for level in [Level::Baseline, Level::Restricted] {
            let v: Vec<&str> = CHECKS
                .iter()
                .filter(|c| c.level == level)
                .map(|c| c.id)
                .collect();
            let mut sorted = v.clone();
            sorted.sort_unstable();
            assert_eq!(v, sorted);
        }
    }

    #[test]
    fn versions_parse_and_clamp() {
        assert_eq!("latest".parse::<Version>(), Ok(Version::Latest));
        assert_eq!("v1.0".parse::<Version>(), Ok(Version::Pinned(0)));
        assert_eq!("v1.29".parse::<Version>(), Ok(Version::Pinned(29)));
        assert_eq!(Version::Pinned(99).minor(), NEWEST_MINOR);
        for bad in [
            "1.29", "v2.0", "v1.", "v1.x", "v1.07", "v1.-1", "", "Latest",
        ] {
            assert!(bad.parse::<Version>().is_err(), "accepted {bad:?}");
        }
        assert_eq!(
            "restricted:v1.22"
                .parse::<LevelVersion>()
                .unwrap()
                .to_string(),
            "restricted:v1.22"
        );
        assert_eq!(
            "privileged:latest".parse::<LevelVersion>().unwrap().level,
            Level::Privileged
        );
        assert!("root:latest".parse::<LevelVersion>().is_err());
    }

    #[test]
    fn compliant_container_passes_baseline_and_message_is_none() {
        let f = Facts::compliant_example();
        let r = evaluate(
            &f,
            None,
            LevelVersion::latest(Level::Baseline),
            NEWEST_MINOR,
            "app",
            Ambiguity::default(),
            crate::facts::CapSet::from_names(crate::facts::CONTAINERD_DEFAULT_CAPS).unwrap(),
        );
        assert!(r.allowed(), "{r:?}");
        assert_eq!(r.message(), None);
    }

    fn caps() -> crate::facts::CapSet {
        crate::facts::CapSet::from_names(crate::facts::CONTAINERD_DEFAULT_CAPS).unwrap()
    }

    #[test]
    fn the_cri_view_adds_what_the_spec_cannot_show() {
        use crate::cri::{AppArmorRequest, ContainerView, PodView, SeLinux, View};
        let f = Facts::compliant_example();
        let view = View {
            container: ContainerView {
                name: "app".into(),
                add_caps: vec!["chown".into(), "NET_RAW".into(), "CHOWN".into()],
                apparmor: AppArmorRequest::Unconfined,
                ..Default::default()
            },
            pod: PodView {
                host_ports: vec![8080, 9090],
                selinux: Some(SeLinux {
                    type_: "spc_t".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        };
        let baseline = LevelVersion::latest(Level::Baseline);
        let spec_only = evaluate(
            &f,
            None,
            baseline,
            NEWEST_MINOR,
            "app",
            Ambiguity::default(),
            caps(),
        );
        assert!(spec_only.allowed(), "{spec_only:?}");
        let r = evaluate(
            &f,
            Some(&view),
            baseline,
            NEWEST_MINOR,
            "app",
            Ambiguity::default(),
            caps(),
        );
        assert_eq!(
            r.message().unwrap(),
            "violates PodSecurity \"baseline:latest\": forbidden AppArmor profile (container \"app\" must not set AppArmor profile type to \"Unconfined\"), non-default capabilities (container \"app\" must not include \"NET_RAW\", \"chown\" in securityContext.capabilities.add), hostPort (pod uses hostPorts 8080, 9090), seLinuxOptions (pod set forbidden securityContext.seLinuxOptions: type \"spc_t\")"
        );
        // Restricted reads drop and add as written.
        let restricted = LevelVersion::latest(Level::Restricted);
        let lower = View {
            container: ContainerView {
                name: "app".into(),
                drop_caps: vec!["all".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        let r = evaluate(
            &f,
            Some(&lower),
            restricted,
            NEWEST_MINOR,
            "app",
            Ambiguity::default(),
            caps(),
        );
        assert!(
            r.message()
                .unwrap()
                .contains("container \"app\" must set securityContext.capabilities.drop=[\"ALL\"]"),
            "{r:?}"
        );
    }

    #[test]
    fn the_cri_view_never_allows_what_the_spec_refuses() {
        let fail = Outcome::Fail {
            detail: "spec".into(),
        };
        let not_obs = Outcome::NotObservable { why: "x" };
        let covered = Outcome::Covered { by: "privileged" };
        for cri in [None, Some(Outcome::Pass), Some(not_obs.clone())] {
            assert_eq!(combine(fail.clone(), cri.clone()), fail);
            assert_eq!(combine(covered.clone(), cri), covered);
        }
        let cri_fail = Outcome::Fail {
            detail: "cri".into(),
        };
        assert_eq!(combine(Outcome::Pass, Some(cri_fail.clone())), cri_fail);
        assert_eq!(combine(not_obs.clone(), Some(cri_fail.clone())), cri_fail);
        assert_eq!(combine(not_obs.clone(), Some(Outcome::Pass)), Outcome::Pass);
        assert_eq!(combine(not_obs.clone(), None), not_obs);
        assert_eq!(combine(Outcome::Pass, Some(not_obs)), Outcome::Pass);
    }

    #[test]
    fn message_joins_failures_in_order() {
        let mut f = Facts::compliant_example();
        f.host_ns.network = true;
        f.sysctls = vec!["kernel.msgmax".into()];
        let r = evaluate(
            &f,
            None,
            LevelVersion::latest(Level::Baseline),
            NEWEST_MINOR,
            "app",
            Ambiguity::default(),
            crate::facts::CapSet::from_names(crate::facts::CONTAINERD_DEFAULT_CAPS).unwrap(),
        );
        assert_eq!(
            r.message().unwrap(),
            "violates PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true), forbidden sysctls (kernel.msgmax)"
        );
    }
}
