//! Pod Security Admission's policy model at the node: three modes (`enforce` refuses, `audit`
//! and `warn` record), each a level and a version, for a namespace from its
//! `pod-security.kubernetes.io/*` labels over the node's defaults, exactly as admission resolves
//! them (`PolicyToEvaluate` in pod-security-admission's `api/helpers.go`), then raised to the
//! node's floor so that a label cannot switch the node's guard off unless the operator allows it.

use std::collections::{BTreeMap, BTreeSet};

use crate::policy::{Level, LevelVersion, Version};

/// The label prefix PSA reads.
pub const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";

/// The labels PSA reads (`api.EnforceLevelLabel` .. `api.WarnVersionLabel` in
/// pod-security-admission's `api/constants.go`): all the snapshot keeps of a namespace.
pub const LABELS: [&str; 6] = [
    "pod-security.kubernetes.io/enforce",
    "pod-security.kubernetes.io/enforce-version",
    "pod-security.kubernetes.io/audit",
    "pod-security.kubernetes.io/audit-version",
    "pod-security.kubernetes.io/warn",
    "pod-security.kubernetes.io/warn-version",
];

/// The longest label value the API server accepts (`validation.LabelValueMaxLength`); longer
/// than any level or version, so a value cut to it still fails to parse when it did before.
pub const MAX_LABEL_VALUE: usize = 63;

/// `value` cut to [`MAX_LABEL_VALUE`] bytes (at a character boundary).
pub fn bounded_value(value: &str) -> &str {
    let mut end = value.len().min(MAX_LABEL_VALUE);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value.get(..end).unwrap_or_default()
}

/// The level and version of each mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Modes {
    pub enforce: LevelVersion,
    pub audit: LevelVersion,
    pub warn: LevelVersion,
}

impl Modes {
    /// Admission's default when nothing is configured: every mode `privileged:latest`.
    pub const PRIVILEGED: Modes = Modes {
        enforce: LevelVersion::PRIVILEGED,
        audit: LevelVersion::PRIVILEGED,
        warn: LevelVersion::PRIVILEGED,
    };
}

/// The lowest enforcement a namespace label may bring a namespace to, and the namespaces whose
/// labels the operator lets go lower.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Floor {
    pub level: LevelVersion,
    pub exceptions: BTreeSet<String>,
}

impl Floor {
    /// By default labels may lower enforcement to baseline, never below, unless the node's own
    /// default is lower already (an observe-only rollout enforces `privileged`).
    pub fn default_for(enforce: LevelVersion) -> Floor {
        Floor {
            level: if enforce.level < Level::Baseline {
                enforce
            } else {
                LevelVersion::latest(Level::Baseline)
            },
            exceptions: BTreeSet::new(),
        }
    }
}

/// What a namespace's labels say, PSA's way: a missing label keeps the default; an enforce level
/// that does not parse is `restricted` and a version that does not parse `latest` (fail closed),
/// while audit and warn levels that do not parse are `privileged` (fail open, as admission); an
/// explicit enforce level stricter than warn's raises warn to it unless warn is labelled. Returns
/// the modes and one message per label that did not parse.
pub fn from_labels(labels: &BTreeMap<String, String>, defaults: Modes) -> (Modes, Vec<String>) {
    let mut m = defaults;
    let mut errors = Vec::new();
    let get = |mode: &str, suffix: &str| labels.get(&format!("{LABEL_PREFIX}{mode}{suffix}"));
    let mut enforce_level_set = false;
    let (mut warn_level_set, mut warn_version_set) = (false, false);
    for (mode, slot, fail_open) in [
        ("enforce", &mut m.enforce, false),
        ("audit", &mut m.audit, true),
        ("warn", &mut m.warn, true),
    ] {
        if let Some(v) = get(mode, "") {
            match v.parse::<Level>() {
                Ok(l) => {
                    slot.level = l;
                    enforce_level_set |= mode == "enforce";
                }
                Err(e) => {
                    slot.level = if fail_open {
                        Level::Privileged
                    } else {
                        Level::Restricted
                    };
                    errors.push(format!("{LABEL_PREFIX}{mode}: {e}"));
                }
            }
            warn_level_set |= mode == "warn";
        }
        if let Some(v) = get(mode, "-version") {
            slot.version = v.parse::<Version>().unwrap_or_else(|e| {
                errors.push(format!("{LABEL_PREFIX}{mode}-version: {e}"));
                Version::Latest
            });
            warn_version_set |= mode == "warn";
        }
    }
    if !warn_level_set && enforce_level_set && m.enforce.level > m.warn.level {
        m.warn.level = m.enforce.level;
        if !warn_version_set {
            m.warn.version = m.enforce.version;
        }
    }
    (m, errors)
}

/// The modes of a namespace whose labels cannot be read at all: as for an enforce label that does
/// not parse, enforce is `restricted:latest` (fail closed); audit and warn keep the defaults.
pub fn unreadable(defaults: Modes) -> Modes {
    Modes {
        enforce: LevelVersion::latest(Level::Restricted),
        ..defaults
    }
}

/// `modes` for namespace `ns`, with enforcement raised to the floor unless `ns` is an exception.
pub fn apply_floor(mut modes: Modes, floor: &Floor, ns: &str) -> Modes {
    if !floor.exceptions.contains(ns) && modes.enforce.level < floor.level.level {
        modes.enforce = floor.level;
    }
    modes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (format!("{LABEL_PREFIX}{k}"), v.to_string()))
            .collect()
    }

    fn lv(s: &str) -> LevelVersion {
        s.parse().unwrap()
    }

    const DEFAULTS: Modes = Modes {
        enforce: LevelVersion::latest(Level::Baseline),
        audit: LevelVersion::PRIVILEGED,
        warn: LevelVersion::PRIVILEGED,
    };

    #[test]
    fn labels_override_defaults_mode_by_mode() {
        let (m, e) = from_labels(
            &labels(&[
                ("enforce", "restricted"),
                ("enforce-version", "v1.29"),
                ("audit", "baseline"),
            ]),
            DEFAULTS,
        );
        assert!(e.is_empty());
        assert_eq!(m.enforce, lv("restricted:v1.29"));
        assert_eq!(m.audit, lv("baseline:latest"));
        // Warn follows an explicit, stricter enforce level, version included.
        assert_eq!(m.warn, lv("restricted:v1.29"));
        let (m, _) = from_labels(&BTreeMap::new(), DEFAULTS);
        assert_eq!(m, DEFAULTS);
    }

    #[test]
    fn labels_that_do_not_parse_fail_closed_for_enforce_and_open_for_audit_and_warn() {
        let (m, e) = from_labels(
            &labels(&[
                ("enforce", "strict"),
                ("enforce-version", "1.29"),
                ("audit", "nope"),
                ("warn", "nope"),
            ]),
            DEFAULTS,
        );
        assert_eq!(e.len(), 4, "{e:?}");
        assert_eq!(m.enforce, lv("restricted:latest"));
        assert_eq!(m.audit.level, Level::Privileged);
        assert_eq!(
            m.warn.level,
            Level::Privileged,
            "an explicit warn label stays"
        );
        // A bad enforce level does not raise warn (it was not "set").
        let (m, _) = from_labels(&labels(&[("enforce", "strict")]), DEFAULTS);
        assert_eq!(m.warn.level, Level::Privileged);
    }

    #[test]
    fn a_version_label_alone_keeps_the_default_level() {
        let (m, e) = from_labels(&labels(&[("enforce-version", "v1.25")]), DEFAULTS);
        assert!(e.is_empty());
        assert_eq!(m.enforce, lv("baseline:v1.25"));
        assert_eq!(m.warn, LevelVersion::PRIVILEGED);
    }

    #[test]
    fn the_floor_holds_unless_the_namespace_is_an_exception() {
        let floor = Floor {
            level: lv("baseline:latest"),
            exceptions: ["monitoring".to_owned()].into(),
        };
        let (m, _) = from_labels(&labels(&[("enforce", "privileged")]), DEFAULTS);
        assert_eq!(
            apply_floor(m, &floor, "team-a").enforce,
            lv("baseline:latest")
        );
        assert_eq!(
            apply_floor(m, &floor, "monitoring").enforce,
            LevelVersion::PRIVILEGED
        );
        // Stricter than the floor: kept, version and all.
        let (m, _) = from_labels(
            &labels(&[("enforce", "restricted"), ("enforce-version", "v1.30")]),
            DEFAULTS,
        );
        assert_eq!(
            apply_floor(m, &floor, "team-a").enforce,
            lv("restricted:v1.30")
        );
    }

    #[test]
    fn default_floor_is_baseline_or_the_lower_node_default() {
        assert_eq!(
            Floor::default_for(lv("restricted:latest")).level,
            lv("baseline:latest")
        );
        assert_eq!(
            Floor::default_for(lv("baseline:v1.20")).level,
            lv("baseline:latest")
        );
        assert_eq!(
            Floor::default_for(lv("privileged:latest")).level,
            LevelVersion::PRIVILEGED
        );
    }
}
