//! The node policy file (TOML, default `/etc/pss-guard/policy.toml`): parsed, validated, with a
//! built-in safe default that applies whenever the file is missing or broken, so a bad policy
//! file can never stop every container on the node.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::facts::{CONTAINERD_DEFAULT_CAPS, CapSet};
use crate::policy::{LegacyVolumes, Level, LevelVersion, SeccompAbsent};
use crate::psa::{Floor, Modes};

pub const DEFAULT_POLICY_PATH: &str = "/etc/pss-guard/policy.toml";
pub const DEFAULT_LOG_PATH: &str = "/var/log/pss-guard/decisions.log";
/// Where the agent writes the cluster snapshot the hook reads (see [`crate::snapshot`]).
pub const DEFAULT_SNAPSHOT_PATH: &str = "/var/lib/pss-guard/cluster.json";
/// The agent rewrites its snapshot at least every 5 minutes while its watches are healthy.
pub const DEFAULT_SNAPSHOT_STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);
/// Always exempt: the cluster's system components must start whatever the policy file says.
/// pss-guard's own namespace is not: where the hook came from node bootstrap or the CLI it
/// usually does not exist, and whoever may create it would be exempt. The policy names it where
/// the DaemonSet runs (the shipped manifests do).
pub const SYSTEM_NAMESPACE: &str = "kube-system";
/// A policy file larger than this is refused as broken.
const MAX_POLICY_BYTES: usize = 256 * 1024;

/// What to do with a container that carries no Kubernetes metadata from the runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unidentified {
    /// Evaluate it like any pod container (fail closed; the default).
    Enforce,
    /// Let it start and log it.
    Allow,
}

/// Whether the runtime applies AppArmor profiles on this node, which decides whether a spec
/// without `process.apparmorProfile` means Unconfined or says nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppArmorMode {
    /// As the runtime at hand decides on this host (the default): containerd applies a profile
    /// only where `/sys/kernel/security/apparmor` exists, the module is enabled and
    /// `/sbin/apparmor_parser` is installed (`pkg/apparmor`, `hostSupports`); CRI-O and Podman
    /// where the first two hold (runc's `apparmor.IsEnabled`).
    Auto,
    /// The runtime is configured to apply none (containerd `disable_apparmor = true`).
    Disabled,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    pub kubelet_root: PathBuf,
    pub containerd_root: PathBuf,
    pub containerd_state: PathBuf,
    pub crio_root: PathBuf,
    pub crio_runroot: PathBuf,
    /// containerd's gRPC socket, asked for the CRI view (see [`crate::cri`]).
    pub containerd_socket: PathBuf,
    /// Host paths an operator allows as bind sources (CNI sockets, device plugins, ...).
    pub allowed_host_paths: Vec<PathBuf>,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            kubelet_root: "/var/lib/kubelet".into(),
            containerd_root: "/var/lib/containerd".into(),
            containerd_state: "/run/containerd".into(),
            crio_root: "/var/lib/containers/storage".into(),
            crio_runroot: "/run/containers/storage".into(),
            containerd_socket: "/run/containerd/containerd.sock".into(),
            allowed_host_paths: Vec::new(),
        }
    }
}

/// Which modes a namespace's Pod Security labels set at the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelUse {
    /// All three, enforce raised to the floor (the default).
    Enforce,
    /// Audit and warn only; enforce stays the node's default, so an observe-only rollout
    /// (`enforce = "privileged:latest"`) refuses nothing whatever a namespace is labelled.
    Record,
}

/// Whether the hook asks containerd for the CRI configs behind a spec (see [`crate::cri`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CriLookup {
    /// Ask; when the answer cannot be had, decide from the spec alone and say so (the default).
    Auto,
    /// Ask; when the answer cannot be had, refuse the container.
    Required,
    /// Never ask: the spec alone decides.
    Off,
}

/// `[cri]`: the lookup and its hard time budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CriSettings {
    pub lookup: CriLookup,
    pub budget: std::time::Duration,
}

/// The lookup's default budget: several hundred times its usual cost (about a millisecond), so
/// that a node busy starting many pods at once still gets its answers.
pub const DEFAULT_CRI_BUDGET_MS: u64 = 500;
/// The most a budget may be: a container must never wait long on a stalled runtime.
pub const MAX_CRI_BUDGET_MS: u64 = 2000;

impl Default for CriSettings {
    fn default() -> Self {
        CriSettings {
            lookup: CriLookup::Auto,
            budget: std::time::Duration::from_millis(DEFAULT_CRI_BUDGET_MS),
        }
    }
}

/// The cluster snapshot the hook reads namespace labels and RuntimeClasses from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotSettings {
    pub path: PathBuf,
    /// A snapshot older than this is still used, and each record says it is stale.
    pub stale_after: std::time::Duration,
}

impl Default for SnapshotSettings {
    fn default() -> Self {
        SnapshotSettings {
            path: DEFAULT_SNAPSHOT_PATH.into(),
            stale_after: DEFAULT_SNAPSHOT_STALE_AFTER,
        }
    }
}

/// The validated policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The node's default enforced level, for namespaces without labels and for containers
    /// without Kubernetes metadata.
    pub enforce: LevelVersion,
    /// The default audit level; `None` is `privileged` (nothing recorded).
    pub audit: Option<LevelVersion>,
    /// The default warn level; `None` is `privileged`.
    pub warn: Option<LevelVersion>,
    /// How low namespace labels may bring enforcement.
    pub floor: Floor,
    pub labels: LabelUse,
    /// PodSecurityConfiguration `exemptions.runtimeClasses`: mapped to their handlers through
    /// the snapshot.
    pub exempt_runtime_classes: BTreeSet<String>,
    /// The handler pods without a RuntimeClass run with (containerd's `default_runtime_name`):
    /// never exempt through a RuntimeClass.
    pub default_runtime_handler: String,
    pub snapshot: SnapshotSettings,
    /// `kubernetes_version`: the cluster's minor version, what `latest` (and any version above
    /// it) means when no snapshot names the API server's version.
    pub kubernetes_version: Option<u32>,
    pub cri: CriSettings,
    /// What the policy file asked for that cannot apply at the node, said in each record.
    pub notes: Vec<String>,
    pub unidentified: Unidentified,
    pub seccomp_absent: SeccompAbsent,
    pub legacy_volumes: LegacyVolumes,
    pub apparmor: AppArmorMode,
    /// Always includes `kube-system`.
    pub exempt_namespaces: BTreeSet<String>,
    /// Image reference patterns; `*` matches any run of characters.
    pub exempt_images: Vec<String>,
    pub exempt_runtime_handlers: BTreeSet<String>,
    /// The capabilities the runtime grants every container by default.
    pub runtime_default_caps: CapSet,
    pub paths: Paths,
    pub log_path: PathBuf,
    /// Overrides the node name in log records (default: the host name).
    pub node_name: Option<String>,
    /// `[log] max_bytes`, `keep`: size rotation of the decision log.
    pub log_rotation: crate::log::Rotation,
}

impl Default for Policy {
    /// The built-in safe default: enforce baseline:latest, no audit, exempt only the system
    /// namespace, evaluate unidentified containers, stock runtime paths.
    fn default() -> Self {
        let mut caps = CapSet::EMPTY;
        if let Ok(set) = CapSet::from_names(CONTAINERD_DEFAULT_CAPS) {
            caps = set;
        }
        let enforce = LevelVersion::latest(Level::Baseline);
        Policy {
            enforce,
            audit: None,
            warn: None,
            floor: Floor::default_for(enforce),
            labels: LabelUse::Enforce,
            exempt_runtime_classes: BTreeSet::new(),
            default_runtime_handler: "runc".into(),
            snapshot: SnapshotSettings::default(),
            kubernetes_version: None,
            cri: CriSettings::default(),
            notes: Vec::new(),
            unidentified: Unidentified::Enforce,
            seccomp_absent: SeccompAbsent::Unset,
            legacy_volumes: LegacyVolumes::Allow,
            apparmor: AppArmorMode::Auto,
            exempt_namespaces: always_exempt(),
            exempt_images: Vec::new(),
            exempt_runtime_handlers: BTreeSet::new(),
            runtime_default_caps: caps,
            paths: Paths::default(),
            log_path: DEFAULT_LOG_PATH.into(),
            node_name: None,
            log_rotation: crate::log::Rotation::default(),
        }
    }
}

/// `v1.N`, a released line's version as the API server's `/version` names it.
pub fn kubernetes_version(s: &str) -> Result<u32, ConfigError> {
    match s.parse::<crate::policy::Version>() {
        Ok(crate::policy::Version::Pinned(n)) => Ok(n),
        _ => Err(ConfigError::Invalid(format!(
            "kubernetes_version: {s:?} is not \"v1.N\""
        ))),
    }
}

fn always_exempt() -> BTreeSet<String> {
    [SYSTEM_NAMESPACE].into_iter().map(String::from).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot be read")]
    Read(#[source] std::io::Error),
    #[error("is larger than {MAX_POLICY_BYTES} bytes")]
    TooLarge,
    #[error("is not valid TOML for a pss-guard policy")]
    Parse(#[source] toml::de::Error),
    #[error("is not a valid PodSecurityConfiguration")]
    Yaml(#[source] Box<serde_saphyr::Error>),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    enforce: Option<String>,
    audit: Option<String>,
    warn: Option<String>,
    floor: Option<String>,
    #[serde(default)]
    floor_exceptions: Vec<String>,
    default_runtime_handler: Option<String>,
    labels: Option<LabelUse>,
    #[serde(default)]
    snapshot: RawSnapshot,
    kubernetes_version: Option<String>,
    #[serde(default)]
    cri: RawCri,
    unidentified: Option<Unidentified>,
    seccomp_absent: Option<SeccompAbsent>,
    apparmor: Option<AppArmorMode>,
    legacy_volume_plugins: Option<LegacyVolumes>,
    #[serde(default)]
    exempt: RawExempt,
    #[serde(default)]
    paths: RawPaths,
    #[serde(default)]
    capabilities: RawCapabilities,
    #[serde(default)]
    log: RawLog,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExempt {
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    images: Vec<String>,
    #[serde(default)]
    runtime_handlers: Vec<String>,
    #[serde(default)]
    runtime_classes: Vec<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSnapshot {
    path: Option<PathBuf>,
    stale_after_seconds: Option<u64>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCri {
    lookup: Option<CriLookup>,
    budget_ms: Option<u64>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPaths {
    kubelet_root: Option<PathBuf>,
    containerd_root: Option<PathBuf>,
    containerd_state: Option<PathBuf>,
    crio_root: Option<PathBuf>,
    crio_runroot: Option<PathBuf>,
    containerd_socket: Option<PathBuf>,
    #[serde(default)]
    allowed_host_paths: Vec<PathBuf>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapabilities {
    runtime_default: Option<Vec<String>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    path: Option<PathBuf>,
    node_name: Option<String>,
    max_bytes: Option<u64>,
    keep: Option<u32>,
}

impl Policy {
    /// Reads and validates the policy file.
    pub fn load(path: &Path) -> Result<Policy, ConfigError> {
        let bytes = crate::bounded::read_bounded(path, MAX_POLICY_BYTES).map_err(|e| match e {
            crate::bounded::ReadError::Io(e) => ConfigError::Read(e),
            crate::bounded::ReadError::TooLarge => ConfigError::TooLarge,
        })?;
        let text =
            std::str::from_utf8(&bytes).map_err(|_| ConfigError::Invalid("is not UTF-8".into()))?;
        if is_kubernetes_yaml(text) {
            Policy::from_pod_security_configuration(text)
        } else {
            Policy::from_toml(text)
        }
    }

    /// Loads the policy, or the built-in default with the reason the file was not used.
    pub fn load_or_default(path: &Path) -> (Policy, Option<String>) {
        match Policy::load(path) {
            Ok(p) => (p, None),
            Err(e) => {
                let err = crate::error::Error::Policy {
                    path: path.to_owned(),
                    source: e,
                };
                (
                    Policy::default(),
                    Some(format!("{}; using the built-in default", err.chain())),
                )
            }
        }
    }

    pub fn from_toml(text: &str) -> Result<Policy, ConfigError> {
        if text.trim().is_empty() {
            return Err(ConfigError::Invalid("is empty".into()));
        }
        let raw: RawPolicy = toml::from_str(text).map_err(ConfigError::Parse)?;
        let mut p = Policy::default();
        if let Some(s) = raw.enforce {
            p.enforce = s
                .parse()
                .map_err(|e| ConfigError::Invalid(format!("enforce: {e}")))?;
        }
        for (key, value, slot) in [
            ("audit", raw.audit, &mut p.audit),
            ("warn", raw.warn, &mut p.warn),
        ] {
            if let Some(s) = value.filter(|s| !s.is_empty()) {
                let lv: LevelVersion = s
                    .parse()
                    .map_err(|e| ConfigError::Invalid(format!("{key}: {e}")))?;
                *slot = (lv.level != Level::Privileged).then_some(lv);
            }
        }
        p.floor = Floor::default_for(p.enforce);
        if let Some(s) = raw.floor {
            p.floor.level = s
                .parse()
                .map_err(|e| ConfigError::Invalid(format!("floor: {e}")))?;
        }
        for ns in raw.floor_exceptions {
            namespace_name(&ns, "floor_exceptions")?;
            p.floor.exceptions.insert(ns);
        }
        if let Some(path) = raw.snapshot.path {
            p.snapshot.path = absolute(path, "snapshot.path")?;
        }
        if let Some(v) = raw.kubernetes_version {
            p.kubernetes_version = Some(kubernetes_version(&v)?);
        }
        if let Some(secs) = raw.snapshot.stale_after_seconds {
            p.snapshot.stale_after = std::time::Duration::from_secs(secs);
        }
        if let Some(l) = raw.cri.lookup {
            p.cri.lookup = l;
        }
        if let Some(ms) = raw.cri.budget_ms {
            if !(1..=MAX_CRI_BUDGET_MS).contains(&ms) {
                return Err(ConfigError::Invalid(format!(
                    "cri.budget_ms: {ms} is not between 1 and {MAX_CRI_BUDGET_MS}"
                )));
            }
            p.cri.budget = std::time::Duration::from_millis(ms);
        }
        if let Some(u) = raw.unidentified {
            p.unidentified = u;
        }
        if let Some(s) = raw.seccomp_absent {
            p.seccomp_absent = s;
        }
        if let Some(a) = raw.apparmor {
            p.apparmor = a;
        }
        if let Some(l) = raw.legacy_volume_plugins {
            p.legacy_volumes = l;
        }
        for ns in raw.exempt.namespaces {
            namespace_name(&ns, "exempt.namespaces")?;
            p.exempt_namespaces.insert(ns);
        }
        p.exempt_runtime_classes = raw.exempt.runtime_classes.into_iter().collect();
        if let Some(h) = raw.default_runtime_handler {
            p.default_runtime_handler = h;
        }
        if let Some(l) = raw.labels {
            p.labels = l;
        }
        for img in raw.exempt.images {
            validate_image_pattern(&img)?;
            p.exempt_images.push(img);
        }
        p.exempt_runtime_handlers = raw.exempt.runtime_handlers.into_iter().collect();
        let paths = raw.paths;
        let d = &mut p.paths;
        for (slot, val, key) in [
            (&mut d.kubelet_root, paths.kubelet_root, "kubelet_root"),
            (
                &mut d.containerd_root,
                paths.containerd_root,
                "containerd_root",
            ),
            (
                &mut d.containerd_state,
                paths.containerd_state,
                "containerd_state",
            ),
            (&mut d.crio_root, paths.crio_root, "crio_root"),
            (&mut d.crio_runroot, paths.crio_runroot, "crio_runroot"),
            (
                &mut d.containerd_socket,
                paths.containerd_socket,
                "containerd_socket",
            ),
        ] {
            if let Some(v) = val {
                *slot = absolute(v, key)?;
            }
        }
        for v in paths.allowed_host_paths {
            let v = absolute(v, "allowed_host_paths")?;
            if v == Path::new("/") {
                return Err(ConfigError::Invalid(
                    "paths.allowed_host_paths: \"/\" would allow every host path".into(),
                ));
            }
            d.allowed_host_paths.push(v);
        }
        if let Some(names) = raw.capabilities.runtime_default {
            p.runtime_default_caps = CapSet::from_names(names.iter().map(String::as_str))
                .map_err(|n| {
                    ConfigError::Invalid(format!(
                        "capabilities.runtime_default: unknown capability {n:?} (use kernel names such as \"CAP_NET_RAW\")"
                    ))
                })?;
        }
        if let Some(path) = raw.log.path {
            p.log_path = absolute(path, "log.path")?;
        }
        p.node_name = raw.log.node_name.filter(|n| !n.is_empty());
        if let Some(n) = raw.log.max_bytes {
            if n < 4096 {
                return Err(ConfigError::Invalid(format!(
                    "log.max_bytes = {n}: at least 4096"
                )));
            }
            p.log_rotation.max_bytes = n;
        }
        if let Some(k) = raw.log.keep {
            if !(1..=1000).contains(&k) {
                return Err(ConfigError::Invalid(format!(
                    "log.keep = {k}: between 1 and 1000"
                )));
            }
            p.log_rotation.keep = k;
        }
        Ok(p)
    }

    /// Whether `image` matches an exemption: a pinned pattern only at its digest, any other
    /// pattern as a glob.
    /// PSA's own configuration: a `PodSecurityConfiguration`, or an `AdmissionConfiguration`
    /// whose `PodSecurity` plugin carries one inline. `defaults` become the node's defaults,
    /// `exemptions.namespaces` and `.runtimeClasses` its exemptions; everything else keeps the
    /// built-in default (paths, log, capabilities). `exemptions.usernames` names who created a
    /// pod, which the node never learns: it is noted, not applied.
    pub fn from_pod_security_configuration(text: &str) -> Result<Policy, ConfigError> {
        let head: RawKind =
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Yaml(Box::new(e)))?;
        let psc = match head.kind.as_str() {
            "PodSecurityConfiguration" => serde_saphyr::from_str::<RawPsc>(text)
                .map_err(|e| ConfigError::Yaml(Box::new(e)))?,
            "AdmissionConfiguration" => {
                let ac: RawAdmission =
                    serde_saphyr::from_str(text).map_err(|e| ConfigError::Yaml(Box::new(e)))?;
                let plugin = ac
                    .plugins
                    .into_iter()
                    .find(|p| p.name == "PodSecurity")
                    .ok_or_else(|| {
                        ConfigError::Invalid(
                            "AdmissionConfiguration has no PodSecurity plugin".into(),
                        )
                    })?;
                match (plugin.configuration, plugin.path) {
                    (Some(c), _) => c,
                    (None, Some(path)) => {
                        return Err(ConfigError::Invalid(format!(
                            "the PodSecurity plugin's configuration is in {path:?}: name that file instead"
                        )));
                    }
                    (None, None) => {
                        return Err(ConfigError::Invalid(
                            "the PodSecurity plugin has no configuration".into(),
                        ));
                    }
                }
            }
            other => {
                return Err(ConfigError::Invalid(format!(
                    "kind {other:?} is neither PodSecurityConfiguration nor AdmissionConfiguration"
                )));
            }
        };
        if !PSC_API_VERSIONS.contains(&psc.api_version.as_str())
            || psc.kind != "PodSecurityConfiguration"
        {
            return Err(ConfigError::Invalid(format!(
                "{}/{} is not a PodSecurityConfiguration this version reads ({})",
                psc.api_version,
                psc.kind,
                PSC_API_VERSIONS.join(", ")
            )));
        }
        let mut p = Policy::default();
        let d = psc.defaults;
        let mode = |key: &str, level: Option<String>, version: Option<String>| {
            // Admission defaults an unset level to privileged and an unset version to latest.
            let text = format!(
                "{}:{}",
                level.as_deref().unwrap_or("privileged"),
                version.as_deref().unwrap_or("latest")
            );
            text.parse::<LevelVersion>()
                .map_err(|e| ConfigError::Invalid(format!("defaults.{key}: {e}")))
        };
        p.enforce = mode("enforce", d.enforce, d.enforce_version)?;
        let audit = mode("audit", d.audit, d.audit_version)?;
        let warn = mode("warn", d.warn, d.warn_version)?;
        p.audit = (audit.level != Level::Privileged).then_some(audit);
        p.warn = (warn.level != Level::Privileged).then_some(warn);
        p.floor = Floor::default_for(p.enforce);
        let e = psc.exemptions;
        for ns in e.namespaces {
            namespace_name(&ns, "exemptions.namespaces")?;
            p.exempt_namespaces.insert(ns);
        }
        p.exempt_runtime_classes = e.runtime_classes.into_iter().collect();
        if !e.usernames.is_empty() {
            p.notes.push(format!(
                "exemptions.usernames ({}) cannot apply at the node, which never learns who created a pod",
                e.usernames.join(", ")
            ));
        }
        Ok(p)
    }

    /// The node's default modes: what an unlabelled namespace and a container without
    /// Kubernetes metadata get.
    pub fn modes(&self) -> Modes {
        Modes {
            enforce: self.enforce,
            audit: self.audit.unwrap_or(LevelVersion::PRIVILEGED),
            warn: self.warn.unwrap_or(LevelVersion::PRIVILEGED),
        }
    }

    pub fn is_exempt_image(&self, image: &str) -> bool {
        self.exempt_images.iter().any(|p| match pinned(p) {
            Some((repo, digest)) => matches_pinned(repo, digest, image),
            None => glob_match(p, image),
        })
    }
}

/// The apiVersions of PodSecurityConfiguration that Pod Security Admission reads.
const PSC_API_VERSIONS: [&str; 3] = [
    "pod-security.admission.config.k8s.io/v1",
    "pod-security.admission.config.k8s.io/v1beta1",
    "pod-security.admission.config.k8s.io/v1alpha1",
];

/// A Kubernetes object in YAML has a top-level `kind:`; a TOML policy never does (TOML keys are
/// set with `=`).
fn is_kubernetes_yaml(text: &str) -> bool {
    text.lines()
        .any(|l| l.starts_with("kind:") || l.starts_with("apiVersion:"))
}

#[derive(Deserialize)]
struct RawKind {
    kind: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawAdmission {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    #[serde(default)]
    plugins: Vec<RawPlugin>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    name: String,
    configuration: Option<RawPsc>,
    path: Option<String>,
}

/// Unknown keys are errors: a misspelt `defaults` would otherwise leave the node at
/// admission's default, `privileged`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPsc {
    api_version: String,
    kind: String,
    #[serde(default)]
    defaults: RawPscDefaults,
    #[serde(default)]
    exemptions: RawPscExemptions,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPscDefaults {
    enforce: Option<String>,
    enforce_version: Option<String>,
    audit: Option<String>,
    audit_version: Option<String>,
    warn: Option<String>,
    warn_version: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPscExemptions {
    #[serde(default)]
    usernames: Vec<String>,
    #[serde(default)]
    runtime_classes: Vec<String>,
    #[serde(default)]
    namespaces: Vec<String>,
}

fn namespace_name(ns: &str, key: &str) -> Result<(), ConfigError> {
    if ns.is_empty() || ns.contains('/') {
        return Err(ConfigError::Invalid(format!(
            "{key}: {ns:?} is not a namespace name"
        )));
    }
    Ok(())
}

fn absolute(p: PathBuf, key: &str) -> Result<PathBuf, ConfigError> {
    if crate::paths::is_clean_absolute(&p) {
        Ok(p)
    } else {
        Err(ConfigError::Invalid(format!(
            "{key}: {p:?} is not a clean absolute path"
        )))
    }
}

/// An image exemption must name at least a registry host and repository: the pod author
/// chooses the image, so a pattern such as `*` or `*nginx*` would let any pod exempt itself.
/// A pattern with a digest (`registry.example/team/agent@sha256:<64 hex>`) is pinned: no `*`.
fn validate_image_pattern(p: &str) -> Result<(), ConfigError> {
    let literal_prefix = p.split('*').next().unwrap_or("");
    if !literal_prefix.contains('/') || literal_prefix.starts_with('/') {
        return Err(ConfigError::Invalid(format!(
            "exempt.images: {p:?} must start with a literal registry and repository (\"registry.example/team/app:*\")"
        )));
    }
    if p.contains('@') && pinned(p).is_none() {
        return Err(ConfigError::Invalid(format!(
            "exempt.images: {p:?} must be \"registry/repository@sha256:<64 hex digits>\" to pin a digest, without \"*\""
        )));
    }
    Ok(())
}

/// `(repository, digest)` of a pinned pattern `repository@sha256:<64 hex>`.
fn pinned(p: &str) -> Option<(&str, &str)> {
    let (repo, digest) = p.split_once('@')?;
    let hex = digest.strip_prefix("sha256:")?;
    let ok = !repo.contains('*')
        && hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ok.then_some((repo, digest))
}

/// Whether `image` (the reference the runtime recorded) is `repo` at exactly `digest`, with or
/// without a tag: `repo@sha256:…` or `repo:tag@sha256:…`. The runtime pulled it by that digest,
/// so its content is the pinned one.
fn matches_pinned(repo: &str, digest: &str, image: &str) -> bool {
    let Some((name, d)) = image.split_once('@') else {
        return false;
    };
    if d != digest {
        return false;
    }
    name == repo
        || name
            .strip_prefix(repo)
            .and_then(|rest| rest.strip_prefix(':'))
            .is_some_and(|tag| !tag.is_empty() && !tag.contains(['/', ':']))
}

/// `*` matches any run of characters (including `/`), everything else literally.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let Some((first, rest)) = parts.split_first() else {
        return false;
    };
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return remaining.is_empty();
    };
    for part in middle {
        match remaining.find(part) {
            Some(i) => remaining = &remaining[i + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Version;

    #[test]
    fn default_enforces_baseline_latest_and_exempts_system_namespaces() {
        let p = Policy::default();
        assert_eq!(p.enforce.to_string(), "baseline:latest");
        assert!(p.exempt_namespaces.contains("kube-system"));
        assert!(!p.exempt_namespaces.contains("pss-guard"));
        assert_eq!(p.unidentified, Unidentified::Enforce);
        assert_eq!(p.runtime_default_caps.pss_names().len(), 14);
    }

    #[test]
    fn full_file_parses() {
        let p = Policy::from_toml(
            r#"
enforce = "restricted:v1.29"
audit = "restricted:latest"
unidentified = "allow"
seccomp_absent = "unconfined"
legacy_volume_plugins = "refuse"
apparmor = "disabled"
[exempt]
namespaces = ["monitoring"]
images = ["registry.example/team/agent:*"]
runtime_handlers = ["kata"]
[paths]
kubelet_root = "/data/kubelet"
allowed_host_paths = ["/run/cni"]
[capabilities]
runtime_default = ["CAP_CHOWN"]
[log]
path = "/tmp/x.log"
node_name = "n1"
"#,
        )
        .unwrap();
        assert_eq!(p.enforce.level, Level::Restricted);
        assert_eq!(p.enforce.version, Version::Pinned(29));
        assert_eq!(p.audit.unwrap().to_string(), "restricted:latest");
        assert!(p.exempt_namespaces.contains("monitoring"));
        assert!(p.exempt_namespaces.contains("kube-system"));
        assert!(p.is_exempt_image("registry.example/team/agent:1.2"));
        assert!(!p.is_exempt_image("registry.example/team/other:1.2"));
        assert_eq!(p.paths.kubelet_root, PathBuf::from("/data/kubelet"));
        assert_eq!(p.runtime_default_caps.pss_names(), vec!["CHOWN"]);
        assert_eq!(p.node_name.as_deref(), Some("n1"));
        assert_eq!(p.apparmor, AppArmorMode::Disabled);
    }

    #[test]
    fn system_namespace_cannot_be_removed_and_own_namespace_is_opt_in() {
        let p = Policy::from_toml("[exempt]\nnamespaces = []\n").unwrap();
        assert!(p.exempt_namespaces.contains("kube-system"));
        assert!(!p.exempt_namespaces.contains("pss-guard"));
        let p = Policy::from_toml("[exempt]\nnamespaces = [\"pss-guard\"]\n").unwrap();
        assert!(p.exempt_namespaces.contains("pss-guard"));
    }

    #[test]
    fn broken_files_are_errors() {
        for bad in [
            "",
            "enforce = ",
            "enforce = \"root:latest\"",
            "floor = \"strict\"",
            "floor_exceptions = [\"a/b\"]",
            "[snapshot]\npath = \"relative\"",
            "enforce = \"baseline:1.2\"",
            "unknown_key = 1",
            "[exempt]\nimages = [\"*\"]",
            "[exempt]\nimages = [\"*nginx*\"]",
            "[paths]\nkubelet_root = \"relative\"",
            "[paths]\nkubelet_root = \"/a/../b\"",
            "[paths]\nallowed_host_paths = [\"/\"]",
            "[capabilities]\nruntime_default = [\"chown\"]",
            "unidentified = \"maybe\"",
        ] {
            assert!(Policy::from_toml(bad).is_err(), "accepted: {bad:?}");
        }
    }

    #[test]
    fn modes_warn_and_floor() {
        let p = Policy::from_toml("enforce = \"privileged:latest\"\naudit = \"baseline:latest\"\n")
            .unwrap();
        assert_eq!(p.modes().enforce, LevelVersion::PRIVILEGED);
        assert_eq!(p.modes().audit.to_string(), "baseline:latest");
        assert_eq!(p.modes().warn, LevelVersion::PRIVILEGED);
        assert_eq!(
            p.floor.level,
            LevelVersion::PRIVILEGED,
            "observe-only: the floor follows"
        );
        let p = Policy::from_toml(
            "enforce = \"restricted:latest\"\nwarn = \"restricted:v1.30\"\nfloor = \"baseline:v1.29\"\nfloor_exceptions = [\"monitoring\"]\n[exempt]\nruntime_classes = [\"gvisor\"]\n[snapshot]\npath = \"/run/x.json\"\nstale_after_seconds = 60\n",
        )
        .unwrap();
        assert_eq!(p.modes().warn.to_string(), "restricted:v1.30");
        assert_eq!(p.floor.level.to_string(), "baseline:v1.29");
        assert!(p.floor.exceptions.contains("monitoring"));
        assert!(p.exempt_runtime_classes.contains("gvisor"));
        assert_eq!(p.snapshot.path, PathBuf::from("/run/x.json"));
        assert_eq!(Policy::default().floor.level.to_string(), "baseline:latest");
    }

    const PSC: &str = "\
apiVersion: pod-security.admission.config.k8s.io/v1
kind: PodSecurityConfiguration
defaults:
  enforce: baseline
  enforce-version: v1.30
  audit: restricted
  warn: restricted
  warn-version: latest
exemptions:
  usernames: [system:serviceaccount:ci:deployer]
  runtimeClasses: [kata]
  namespaces: [monitoring]
";

    #[test]
    fn pod_security_configuration_maps_to_the_policy() {
        let p = Policy::from_pod_security_configuration(PSC).unwrap();
        assert_eq!(p.enforce.to_string(), "baseline:v1.30");
        assert_eq!(p.audit.unwrap().to_string(), "restricted:latest");
        assert_eq!(p.warn.unwrap().to_string(), "restricted:latest");
        assert!(
            p.exempt_namespaces.contains("monitoring")
                && p.exempt_namespaces.contains("kube-system")
        );
        assert!(p.exempt_runtime_classes.contains("kata"));
        assert!(p.notes[0].contains("usernames"), "{:?}", p.notes);
        // Inside an AdmissionConfiguration, and through the file loader.
        let indented: String = PSC.lines().map(|l| format!("    {l}\n")).collect();
        let ac = format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n- name: PodSecurity\n  configuration:\n{indented}"
        );
        let q = Policy::from_pod_security_configuration(&ac).unwrap();
        assert_eq!(q.enforce, p.enforce);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("psa.yaml"), &ac).unwrap();
        assert_eq!(
            Policy::load(&dir.path().join("psa.yaml")).unwrap().enforce,
            p.enforce
        );
        // Nothing set: admission's own default, privileged everywhere.
        let bare =
            "apiVersion: pod-security.admission.config.k8s.io/v1\nkind: PodSecurityConfiguration\n";
        let b = Policy::from_pod_security_configuration(bare).unwrap();
        assert_eq!(b.modes(), crate::psa::Modes::PRIVILEGED);
    }

    #[test]
    fn broken_pod_security_configurations_are_errors() {
        let bad_level = PSC.replace("enforce: baseline", "enforce: strict");
        let typo = PSC.replace("defaults:", "default:");
        let by_path = "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n- name: PodSecurity\n  path: /etc/psa.yaml\n";
        for bad in [
            bad_level.as_str(),
            typo.as_str(),
            by_path,
            "apiVersion: v1\nkind: ConfigMap\n",
            "apiVersion: pod-security.admission.config.k8s.io/v2\nkind: PodSecurityConfiguration\n",
            "kind: [",
        ] {
            assert!(
                Policy::from_pod_security_configuration(bad).is_err(),
                "accepted {bad}"
            );
        }
    }

    #[test]
    fn missing_file_falls_back_to_default_with_reason() {
        let (p, why) = Policy::load_or_default(Path::new("/nonexistent/pss-guard/policy.toml"));
        assert_eq!(p, Policy::default());
        let why = why.unwrap();
        assert!(why.contains("cannot be read"), "{why}");
        assert!(why.contains("built-in default"), "{why}");
    }

    #[test]
    fn pinned_image_exemptions_match_only_their_digest() {
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let p = Policy::from_toml(&format!(
            "[exempt]\nimages = [\"registry.example/team/agent@{d}\"]\n"
        ))
        .unwrap();
        assert!(p.is_exempt_image(&format!("registry.example/team/agent@{d}")));
        assert!(p.is_exempt_image(&format!("registry.example/team/agent:1.2@{d}")));
        let other = d.replace("0123", "9999");
        for no in [
            "registry.example/team/agent:1.2".to_owned(),
            format!("registry.example/team/agent@{other}"),
            format!("registry.example/team/agent2@{d}"),
            format!("registry.example/team/agent/x@{d}"),
            format!("evil.example/registry.example/team/agent@{d}"),
        ] {
            assert!(!p.is_exempt_image(&no), "{no}");
        }
        for bad in [
            "registry.example/team/agent@sha256:abc",
            "registry.example/team/*@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "registry.example/team/agent@md5:0123",
        ] {
            let t = format!("[exempt]\nimages = [{bad:?}]\n");
            assert!(Policy::from_toml(&t).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn glob_matches_star_anywhere() {
        assert!(glob_match("a/b:*", "a/b:1"));
        assert!(glob_match("a/*/c", "a/x/y/c"));
        assert!(!glob_match("a/b", "a/bc"));
        assert!(glob_match("a/b", "a/b"));
        assert!(!glob_match("a/*c", "a/b"));
        assert!(glob_match("a/*b*", "a/xbx"));
    }

    #[test]
    fn kubernetes_version_is_a_released_minor() {
        let p = Policy::from_toml("kubernetes_version = \"v1.34\"\n").unwrap();
        assert_eq!(p.kubernetes_version, Some(34));
        assert_eq!(Policy::default().kubernetes_version, None);
        for bad in ["latest", "1.34", "v1.34.2", "v2.0", ""] {
            let t = format!("kubernetes_version = {bad:?}\n");
            assert!(Policy::from_toml(&t).is_err(), "accepted {bad:?}");
        }
    }
}
