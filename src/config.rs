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

/// Whether the node refuses what its policy refuses, or only says so.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Refuse what the policy refuses (the built-in default).
    #[default]
    Enforce,
    /// Refuse nothing: every decision is made exactly as under `enforce` (floor, exemptions,
    /// namespace labels, the CRI view included), and one that would refuse the container is
    /// recorded as `would_refuse` instead. Switching to `enforce` changes nothing else.
    Observe,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Observe => "observe",
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
    /// Refuse, or only record what would be refused.
    pub mode: Mode,
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
    /// The namespace pss-guard's own DaemonSet runs in, from the node file (see [`NodeFile`]):
    /// exempt under every policy form, the built-in default included, so the guard can always
    /// start (and be fixed) on its own node.
    pub own_namespace: Option<String>,
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
            mode: Mode::Enforce,
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
            own_namespace: None,
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
    mode: Option<Mode>,
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

#[derive(Clone, Default, Deserialize)]
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
    /// Reads and validates the policy file: TOML, or PSA's own YAML (a
    /// `PodSecurityConfiguration` or an `AdmissionConfiguration`, optionally followed by
    /// pss-guard `NodePolicy` documents). The node file beside it is not read (see
    /// [`Policy::load_or_default`]).
    pub fn load(path: &Path) -> Result<Policy, ConfigError> {
        Policy::from_text(&read_policy_text(path)?, path.parent())
    }

    /// Loads the policy, or the built-in default with the reason the file was not used; then
    /// the node file beside it ([`NodeFile`]), whichever of the two applies, so what the node
    /// itself knows (pss-guard's own namespace, containerd's default handler, the runtime's
    /// directories) holds under every policy form. A node file that does not load changes
    /// nothing and is noted in every record.
    pub fn load_or_default(path: &Path) -> (Policy, Option<String>) {
        let (mut policy, error) = match Policy::load(path) {
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
        };
        let node_path = path.with_file_name(NODE_FILE_NAME);
        match NodeFile::load(&node_path) {
            Ok(Some(n)) => policy.apply_node(&n),
            Ok(None) => {}
            Err(e) => policy.notes.push(format!(
                "node file {}: {}; ignored",
                node_path.display(),
                crate::error::chain_of(&e)
            )),
        }
        (policy, error)
    }

    /// A policy's text in either form; a YAML plugin `path` is resolved against `dir`.
    pub fn from_text(text: &str, dir: Option<&Path>) -> Result<Policy, ConfigError> {
        if is_kubernetes_yaml(text) {
            Policy::from_yaml_at(text, dir)
        } else {
            Policy::from_toml(text)
        }
    }

    pub fn from_toml(text: &str) -> Result<Policy, ConfigError> {
        if text.trim().is_empty() {
            return Err(ConfigError::Invalid("is empty".into()));
        }
        let raw: RawPolicy = toml::from_str(text).map_err(ConfigError::Parse)?;
        let mut p = Policy::default();
        p.apply_raw(raw, true)?;
        Ok(p)
    }

    /// Applies one parsed document. Lists add to what is there (so several `NodePolicy`
    /// documents, or fragments, only ever add exemptions); single values replace. With
    /// `levels = false` (a `NodePolicy` beside PSA's configuration, which owns the defaults)
    /// `enforce`, `audit` and `warn` are refused.
    fn apply_raw(&mut self, raw: RawPolicy, levels: bool) -> Result<(), ConfigError> {
        let p = self;
        if !levels && (raw.enforce.is_some() || raw.audit.is_some() || raw.warn.is_some()) {
            return Err(ConfigError::Invalid(
                "a NodePolicy cannot set enforce, audit or warn: the PodSecurityConfiguration's defaults do".into(),
            ));
        }
        if let Some(m) = raw.mode {
            p.mode = m;
        }
        if let Some(s) = raw.enforce {
            p.enforce = s
                .parse()
                .map_err(|e| ConfigError::Invalid(format!("enforce: {e}")))?;
            p.floor.level = Floor::default_for(p.enforce).level;
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
        p.add_exemptions(raw.exempt)?;
        if let Some(h) = raw.default_runtime_handler {
            handler_name(&h, "default_runtime_handler")?;
            p.default_runtime_handler = h;
        }
        if let Some(l) = raw.labels {
            p.labels = l;
        }
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
        if let Some(n) = raw.log.node_name.filter(|n| !n.is_empty()) {
            p.node_name = Some(n);
        }
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
        Ok(())
    }

    /// `[exempt]` lists, validated, added to the policy's.
    fn add_exemptions(&mut self, e: RawExempt) -> Result<(), ConfigError> {
        for ns in e.namespaces {
            namespace_name(&ns, "exempt.namespaces")?;
            self.exempt_namespaces.insert(ns);
        }
        self.exempt_runtime_classes.extend(e.runtime_classes);
        for img in e.images {
            validate_image_pattern(&img)?;
            if !self.exempt_images.contains(&img) {
                self.exempt_images.push(img);
            }
        }
        for h in e.runtime_handlers {
            handler_name(&h, "exempt.runtime_handlers")?;
            self.exempt_runtime_handlers.insert(h);
        }
        Ok(())
    }

    /// What the node file says, over whatever policy applies.
    pub fn apply_node(&mut self, n: &NodeFile) {
        if let Some(ns) = &n.own_namespace {
            self.own_namespace = Some(ns.clone());
        }
        if let Some(h) = &n.default_runtime_handler {
            self.default_runtime_handler = h.clone();
        }
        let d = &mut self.paths;
        for (slot, val) in [
            (&mut d.containerd_root, &n.paths.containerd_root),
            (&mut d.containerd_state, &n.paths.containerd_state),
            (&mut d.crio_root, &n.paths.crio_root),
            (&mut d.crio_runroot, &n.paths.crio_runroot),
        ] {
            if let Some(v) = val {
                *slot = v.clone();
            }
        }
    }

    /// PSA's own configuration: a `PodSecurityConfiguration`, or an `AdmissionConfiguration`
    /// whose `PodSecurity` plugin carries one inline or names its file (other plugins are
    /// ignored, as the API server hands each plugin only its own entry); then any number of
    /// pss-guard `NodePolicy` documents (`apiVersion: pss-guard.io/v1alpha1`) whose `spec` takes
    /// every key of the TOML form except `enforce`, `audit` and `warn`. `defaults` become the
    /// node's defaults, `exemptions.namespaces` and `.runtimeClasses` its exemptions; everything
    /// else keeps the built-in default unless a `NodePolicy` sets it. `exemptions.usernames` names
    /// who created a pod, which the node never learns: it is noted, not applied.
    pub fn from_pod_security_configuration(text: &str) -> Result<Policy, ConfigError> {
        Policy::from_yaml_at(text, None)
    }

    /// As [`Policy::from_pod_security_configuration`]; a plugin `path` is read relative to `dir`
    /// (the API server resolves it relative to the AdmissionConfiguration's own file).
    fn from_yaml_at(text: &str, dir: Option<&Path>) -> Result<Policy, ConfigError> {
        let docs: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(text).map_err(|e| ConfigError::Yaml(Box::new(e)))?;
        let mut docs = docs.into_iter().filter(|d| !d.is_null());
        let head = docs
            .next()
            .ok_or_else(|| ConfigError::Invalid("has no YAML document".into()))?;
        let psc = match kind_of(&head) {
            "PodSecurityConfiguration" => from_value::<RawPsc>(head)?,
            "AdmissionConfiguration" => pod_security_plugin(head, dir)?,
            other => {
                return Err(ConfigError::Invalid(format!(
                    "kind {other:?} is neither PodSecurityConfiguration nor AdmissionConfiguration"
                )));
            }
        };
        let mut p = Policy::from_psc(psc)?;
        for doc in docs {
            let node: RawNodePolicy = match kind_of(&doc) {
                "NodePolicy" => from_value(doc)?,
                other => {
                    return Err(ConfigError::Invalid(format!(
                        "kind {other:?} after the first document: only pss-guard NodePolicy documents may follow"
                    )));
                }
            };
            if node.api_version != NODE_POLICY_API_VERSION {
                return Err(ConfigError::Invalid(format!(
                    "NodePolicy apiVersion {:?}: this version reads {NODE_POLICY_API_VERSION}",
                    node.api_version
                )));
            }
            let raw: RawPolicy = from_value(node.spec)?;
            p.apply_raw(raw, false)?;
        }
        Ok(p)
    }

    fn from_psc(psc: RawPsc) -> Result<Policy, ConfigError> {
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
pub fn is_kubernetes_yaml(text: &str) -> bool {
    text.lines()
        .any(|l| l.starts_with("kind:") || l.starts_with("apiVersion:"))
}

/// The `apiVersion` of pss-guard's own YAML document.
pub const NODE_POLICY_API_VERSION: &str = "pss-guard.io/v1alpha1";

fn kind_of(doc: &serde_json::Value) -> &str {
    doc.get("kind")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
}

fn from_value<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, ConfigError> {
    serde_json::from_value(v).map_err(|e| ConfigError::Invalid(e.to_string()))
}

/// The PodSecurity plugin's configuration in an AdmissionConfiguration: inline, or in the file
/// its `path` names. Other plugins (EventRateLimit, ...) are not pss-guard's to read.
fn pod_security_plugin(doc: serde_json::Value, dir: Option<&Path>) -> Result<RawPsc, ConfigError> {
    let ac: RawAdmission = from_value(doc)?;
    let plugin = ac
        .plugins
        .into_iter()
        .find(|p| p.name == "PodSecurity")
        .ok_or_else(|| {
            ConfigError::Invalid("AdmissionConfiguration has no PodSecurity plugin".into())
        })?;
    match (plugin.configuration, plugin.path) {
        (Some(c), _) => from_value(c),
        (None, Some(path)) => {
            let path = PathBuf::from(path);
            let full = match dir {
                Some(d) if path.is_relative() => d.join(&path),
                _ if path.is_relative() => {
                    return Err(ConfigError::Invalid(format!(
                        "the PodSecurity plugin's path {path:?} is relative and there is no file to resolve it from"
                    )));
                }
                _ => path,
            };
            let text = read_policy_text(&full).map_err(|e| {
                ConfigError::Invalid(format!(
                    "the PodSecurity plugin's configuration {}: {}",
                    full.display(),
                    crate::error::chain_of(&e)
                ))
            })?;
            let docs: Vec<serde_json::Value> =
                serde_saphyr::from_multiple(&text).map_err(|e| ConfigError::Yaml(Box::new(e)))?;
            let mut docs = docs.into_iter().filter(|d| !d.is_null());
            match (docs.next(), docs.next()) {
                (Some(d), None) => from_value(d),
                _ => Err(ConfigError::Invalid(format!(
                    "{} must hold exactly one PodSecurityConfiguration",
                    full.display()
                ))),
            }
        }
        (None, None) => Err(ConfigError::Invalid(
            "the PodSecurity plugin has no configuration".into(),
        )),
    }
}

fn read_policy_text(path: &Path) -> Result<String, ConfigError> {
    let bytes = crate::bounded::read_bounded(path, MAX_POLICY_BYTES).map_err(|e| match e {
        crate::bounded::ReadError::Io(e) => ConfigError::Read(e),
        crate::bounded::ReadError::TooLarge => ConfigError::TooLarge,
    })?;
    String::from_utf8(bytes).map_err(|_| ConfigError::Invalid("is not UTF-8".into()))
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
    configuration: Option<serde_json::Value>,
    path: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawNodePolicy {
    api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    #[serde(default, rename = "metadata")]
    _metadata: Option<serde_json::Value>,
    spec: serde_json::Value,
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

/// A runtime handler name as containerd's config and RuntimeClasses spell it.
fn handler_name(h: &str, key: &str) -> Result<(), ConfigError> {
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "{key}: {h:?} is not a runtime handler name"
        )))
    }
}

/// The node file's name, beside the policy file (`/etc/pss-guard/node.toml`).
pub const NODE_FILE_NAME: &str = "node.toml";

/// What the node itself knows, written by whatever installs pss-guard on it (`pss-guard
/// install`, the agent, the EKS user data) and read by the hook on top of every policy form,
/// the built-in default included: the policy comes from the cluster (one ConfigMap for every
/// node), these facts from this node.
///
/// - `own_namespace`: the namespace pss-guard's own DaemonSet runs in, as the pod's downward
///   API says. It is exempt, so the guard's installer and agent start under any policy and a
///   bad policy can always be replaced; it is never a name chosen in advance, which whoever may
///   create namespaces could create first.
/// - `default_runtime_handler`: containerd's `default_runtime_name`, the handler every pod
///   without a RuntimeClass runs with: an exemption never applies to it.
/// - `[paths]`: the runtime's own directories, as its config names them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeFile {
    pub own_namespace: Option<String>,
    pub default_runtime_handler: Option<String>,
    pub paths: crate::install::paths::RuntimePaths,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNodeFile {
    own_namespace: Option<String>,
    default_runtime_handler: Option<String>,
    #[serde(default)]
    paths: RawNodePaths,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNodePaths {
    containerd_root: Option<PathBuf>,
    containerd_state: Option<PathBuf>,
    crio_root: Option<PathBuf>,
    crio_runroot: Option<PathBuf>,
}

impl NodeFile {
    /// The node file at `path`; `None` where there is none.
    pub fn load(path: &Path) -> Result<Option<NodeFile>, ConfigError> {
        match read_policy_text(path) {
            Ok(text) => NodeFile::parse(&text).map(Some),
            Err(ConfigError::Read(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn parse(text: &str) -> Result<NodeFile, ConfigError> {
        let raw: RawNodeFile = toml::from_str(text).map_err(ConfigError::Parse)?;
        if let Some(ns) = &raw.own_namespace {
            namespace_name(ns, "own_namespace")?;
            if ns == "default" {
                return Err(ConfigError::Invalid(
                    "own_namespace: \"default\" holds every tenant's pods; pss-guard must run in a namespace of its own".into(),
                ));
            }
        }
        if let Some(h) = &raw.default_runtime_handler {
            handler_name(h, "default_runtime_handler")?;
        }
        let p = raw.paths;
        let abs = |v: Option<PathBuf>, key: &str| v.map(|v| absolute(v, key)).transpose();
        Ok(NodeFile {
            own_namespace: raw.own_namespace,
            default_runtime_handler: raw.default_runtime_handler,
            paths: crate::install::paths::RuntimePaths {
                containerd_root: abs(p.containerd_root, "paths.containerd_root")?,
                containerd_state: abs(p.containerd_state, "paths.containerd_state")?,
                crio_root: abs(p.crio_root, "paths.crio_root")?,
                crio_runroot: abs(p.crio_runroot, "paths.crio_runroot")?,
            },
        })
    }

    /// The file's text (what [`NodeFile::parse`] reads back).
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# Written by pss-guard from this node's own facts (install, the agent, the node's user data);\n# the policy comes from /etc/pss-guard/policy.toml. Rewritten on every install and sync.\n",
        );
        let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
        if let Some(ns) = &self.own_namespace {
            out.push_str(&format!("own_namespace = {}\n", q(ns)));
        }
        if let Some(h) = &self.default_runtime_handler {
            out.push_str(&format!("default_runtime_handler = {}\n", q(h)));
        }
        let p = &self.paths;
        let entries = [
            ("containerd_root", &p.containerd_root),
            ("containerd_state", &p.containerd_state),
            ("crio_root", &p.crio_root),
            ("crio_runroot", &p.crio_runroot),
        ];
        if entries.iter().any(|(_, v)| v.is_some()) {
            out.push_str("[paths]\n");
            for (k, v) in entries {
                if let Some(v) = v {
                    out.push_str(&format!("{k} = {}\n", q(&v.to_string_lossy())));
                }
            }
        }
        out
    }
}

/// Fragments: files named `exempt-*.toml` beside the main policy (keys of the same ConfigMap),
/// each holding only `[exempt]` lists and `floor_exceptions`. Whatever writes the policy onto a
/// node (the installer, the agent's policy sync, the EKS user data) merges them into it with
/// [`compose`], so a kustomize component can add exemptions to any overlay's policy, and the
/// hook still reads one file.
pub const FRAGMENT_PREFIX: &str = "exempt-";
pub const FRAGMENT_SUFFIX: &str = ".toml";
/// At most this many fragments are merged: a ConfigMap holds a few.
const MAX_FRAGMENTS: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFragment {
    #[serde(default)]
    floor_exceptions: Vec<String>,
    #[serde(default)]
    exempt: RawExempt,
}

/// Whether a file name is a fragment's.
pub fn is_fragment_name(name: &str) -> bool {
    name.len() > FRAGMENT_PREFIX.len() + FRAGMENT_SUFFIX.len()
        && name.starts_with(FRAGMENT_PREFIX)
        && name.ends_with(FRAGMENT_SUFFIX)
        && !name.starts_with('.')
}

/// The fragments in `dir` (name, text), sorted by name. A ConfigMap volume's own entries
/// (`..data`, `..2024_…`) are not fragments.
pub fn fragments_in(dir: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(ConfigError::Read(e)),
    };
    for entry in rd {
        let entry = entry.map_err(ConfigError::Read)?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !is_fragment_name(&name) {
            continue;
        }
        let text = read_policy_text(&entry.path()).map_err(|e| {
            ConfigError::Invalid(format!("fragment {name}: {}", crate::error::chain_of(&e)))
        })?;
        out.push((name, text));
        if out.len() > MAX_FRAGMENTS {
            return Err(ConfigError::Invalid(format!(
                "more than {MAX_FRAGMENTS} fragments in {}",
                dir.display()
            )));
        }
    }
    out.sort();
    Ok(out)
}

/// The main policy (TOML or PSA's YAML) with each fragment's exemptions merged in: added to
/// the TOML's `[exempt]` lists and `floor_exceptions` (comments and layout kept), or, for YAML,
/// appended as one `NodePolicy` document. Every fragment is validated, and a TOML result is
/// loaded as the hook will read it (a YAML one by the caller, which knows its directory). No
/// fragments: the main text unchanged.
pub fn compose(main: &str, fragments: &[(String, String)]) -> Result<String, ConfigError> {
    if fragments.is_empty() {
        return Ok(main.to_owned());
    }
    let mut merged = RawFragment {
        floor_exceptions: Vec::new(),
        exempt: RawExempt::default(),
    };
    let mut names = Vec::new();
    for (name, text) in fragments {
        let f: RawFragment = toml::from_str(text).map_err(|e| {
            ConfigError::Invalid(format!("fragment {name}: {}", e.message().trim()))
        })?;
        // Validated as the policy validates them.
        Policy::default()
            .add_exemptions(f.exempt.clone())
            .map_err(|e| ConfigError::Invalid(format!("fragment {name}: {e}")))?;
        for ns in &f.floor_exceptions {
            namespace_name(ns, "floor_exceptions")
                .map_err(|e| ConfigError::Invalid(format!("fragment {name}: {e}")))?;
        }
        let add = |to: &mut Vec<String>, from: Vec<String>| {
            for v in from {
                if !to.contains(&v) {
                    to.push(v);
                }
            }
        };
        add(&mut merged.floor_exceptions, f.floor_exceptions);
        add(&mut merged.exempt.namespaces, f.exempt.namespaces);
        add(&mut merged.exempt.images, f.exempt.images);
        add(
            &mut merged.exempt.runtime_handlers,
            f.exempt.runtime_handlers,
        );
        add(&mut merged.exempt.runtime_classes, f.exempt.runtime_classes);
        names.push(name.as_str());
    }
    let out = if is_kubernetes_yaml(main) {
        compose_yaml(main, &merged, &names)
    } else {
        compose_toml(main, &merged, &names)?
    };
    // What is written is what the hook will read: a TOML policy must load. A YAML one is
    // loaded by the caller, beside the file a PodSecurity plugin `path` is relative to.
    if !is_kubernetes_yaml(&out) {
        Policy::from_toml(&out)?;
    }
    Ok(out)
}

fn compose_toml(main: &str, f: &RawFragment, names: &[&str]) -> Result<String, ConfigError> {
    use toml_edit::{Array, DocumentMut, Item, Table, Value};
    let mut doc: DocumentMut = main
        .parse()
        .map_err(|e: toml_edit::TomlError| ConfigError::Invalid(e.message().trim().to_owned()))?;
    let note = format!(" merged from {}", names.join(", "));
    fn extend(arr: &mut Array, values: &[String]) {
        let have: Vec<String> = arr
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        for v in values {
            if !have.contains(v) {
                arr.push(v.as_str());
            }
        }
    }
    fn array_at<'a>(
        t: &'a mut dyn toml_edit::TableLike,
        key: &str,
    ) -> Result<&'a mut Array, ConfigError> {
        if !t.contains_key(key) {
            t.insert(key, Item::Value(Value::Array(Array::new())));
        }
        t.get_mut(key)
            .and_then(Item::as_array_mut)
            .ok_or_else(|| ConfigError::Invalid(format!("{key} is not a list")))
    }
    if !f.floor_exceptions.is_empty() {
        extend(
            array_at(doc.as_table_mut(), "floor_exceptions")?,
            &f.floor_exceptions,
        );
    }
    let lists = [
        ("namespaces", &f.exempt.namespaces),
        ("images", &f.exempt.images),
        ("runtime_handlers", &f.exempt.runtime_handlers),
        ("runtime_classes", &f.exempt.runtime_classes),
    ];
    if lists.iter().any(|(_, v)| !v.is_empty()) {
        if !doc.contains_key("exempt") {
            let mut t = Table::new();
            t.decor_mut().set_prefix(format!("\n#{note}\n"));
            doc.insert("exempt", Item::Table(t));
        }
        let exempt = doc
            .get_mut("exempt")
            .and_then(Item::as_table_like_mut)
            .ok_or_else(|| ConfigError::Invalid("exempt is not a table".into()))?;
        for (key, values) in lists {
            if !values.is_empty() {
                extend(array_at(exempt, key)?, values);
            }
        }
    }
    let mut out = doc.to_string();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!("#{note}\n"));
    Ok(out)
}

fn compose_yaml(main: &str, f: &RawFragment, names: &[&str]) -> String {
    let q = |v: &[String]| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
    let mut out = main.trim_end().to_owned();
    out.push_str(&format!(
        "\n---\n# merged from {}\napiVersion: {NODE_POLICY_API_VERSION}\nkind: NodePolicy\nspec:\n",
        names.join(", ")
    ));
    if !f.floor_exceptions.is_empty() {
        out.push_str(&format!("  floor_exceptions: {}\n", q(&f.floor_exceptions)));
    }
    out.push_str("  exempt:\n");
    for (key, values) in [
        ("namespaces", &f.exempt.namespaces),
        ("images", &f.exempt.images),
        ("runtime_handlers", &f.exempt.runtime_handlers),
        ("runtime_classes", &f.exempt.runtime_classes),
    ] {
        if !values.is_empty() {
            out.push_str(&format!("    {key}: {}\n", q(values)));
        }
    }
    out
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
    fn mode_defaults_to_enforce_and_observe_parses() {
        assert_eq!(Policy::default().mode, Mode::Enforce);
        let p = Policy::from_toml("mode = \"observe\"\n").unwrap();
        assert_eq!(p.mode, Mode::Observe);
        assert!(Policy::from_toml("mode = \"audit\"\n").is_err());
    }

    #[test]
    fn admission_configuration_ignores_other_plugins_and_follows_a_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("psa.yaml"), PSC).unwrap();
        // The CIS benchmark's EventRateLimit beside PodSecurity: its configuration is its own.
        let ac = "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n- name: EventRateLimit\n  configuration:\n    apiVersion: eventratelimit.admission.k8s.io/v1alpha1\n    kind: Configuration\n    limits:\n    - type: Server\n      qps: 50\n      burst: 100\n- name: PodSecurity\n  path: psa.yaml\n";
        std::fs::write(dir.path().join("admission.yaml"), ac).unwrap();
        let p = Policy::load(&dir.path().join("admission.yaml")).unwrap();
        assert_eq!(p.enforce.to_string(), "baseline:v1.30");
        assert!(p.exempt_namespaces.contains("monitoring"));
        assert!(p.exempt_runtime_classes.contains("kata"));
        // Inline works beside another plugin too.
        let indented: String = PSC.lines().map(|l| format!("    {l}\n")).collect();
        let inline = ac.replace(
            "  path: psa.yaml\n",
            &format!("  configuration:\n{indented}"),
        );
        assert_eq!(
            Policy::from_pod_security_configuration(&inline)
                .unwrap()
                .enforce,
            p.enforce
        );
    }

    #[test]
    fn node_policy_documents_carry_the_node_keys_beside_psa_configuration() {
        let yaml = format!(
            "{PSC}---\napiVersion: pss-guard.io/v1alpha1\nkind: NodePolicy\nspec:\n  mode: observe\n  floor: privileged:latest\n  floor_exceptions: [calico-system]\n  default_runtime_handler: nvidia\n  exempt:\n    namespaces: [istio-system]\n  log:\n    path: /tmp/x.log\n"
        );
        let p = Policy::from_pod_security_configuration(&yaml).unwrap();
        assert_eq!(p.mode, Mode::Observe);
        assert_eq!(
            p.enforce.to_string(),
            "baseline:v1.30",
            "PSA's defaults stay"
        );
        assert_eq!(p.floor.level, LevelVersion::PRIVILEGED);
        assert!(p.floor.exceptions.contains("calico-system"));
        assert_eq!(p.default_runtime_handler, "nvidia");
        assert!(
            p.exempt_namespaces.contains("istio-system")
                && p.exempt_namespaces.contains("monitoring")
        );
        assert_eq!(p.log_path, PathBuf::from("/tmp/x.log"));
        for bad in ["  enforce: restricted:latest\n", "  unknown: 1\n"] {
            let y = format!(
                "{PSC}---\napiVersion: pss-guard.io/v1alpha1\nkind: NodePolicy\nspec:\n{bad}"
            );
            assert!(
                Policy::from_pod_security_configuration(&y).is_err(),
                "{bad}"
            );
        }
        let other = format!("{PSC}---\napiVersion: v1\nkind: ConfigMap\n");
        assert!(Policy::from_pod_security_configuration(&other).is_err());
        let version =
            format!("{PSC}---\napiVersion: pss-guard.io/v9\nkind: NodePolicy\nspec: {{}}\n");
        assert!(Policy::from_pod_security_configuration(&version).is_err());
    }

    #[test]
    fn fragments_merge_into_toml_and_yaml_and_only_add() {
        let frag = |n: &str, t: &str| (n.to_owned(), t.to_owned());
        let fragments = [
            frag(
                "exempt-a.toml",
                "# calico\n[exempt]\nnamespaces = [\"calico-system\", \"kube-system\"]\n",
            ),
            frag(
                "exempt-b.toml",
                "floor_exceptions = [\"istio-system\"]\n[exempt]\nnamespaces = [\"falco\"]\n",
            ),
        ];
        let main = "# the operator's comment\nenforce = \"restricted:latest\"\nmode = \"observe\"\n[exempt]\nnamespaces = [\"monitoring\"]\n";
        let out = compose(main, &fragments).unwrap();
        assert!(out.contains("# the operator's comment"), "{out}");
        let p = Policy::from_toml(&out).unwrap();
        assert_eq!(p.enforce.to_string(), "restricted:latest");
        assert_eq!(p.mode, Mode::Observe);
        for ns in ["monitoring", "calico-system", "falco", "kube-system"] {
            assert!(p.exempt_namespaces.contains(ns), "{ns}: {out}");
        }
        assert!(p.floor.exceptions.contains("istio-system"));
        // Composing again adds nothing twice.
        assert_eq!(out.matches("\"calico-system\"").count(), 1);
        let again = compose(&out, &fragments).unwrap();
        assert_eq!(again.matches("\"calico-system\"").count(), 1, "{again}");
        // A policy without [exempt] gets one.
        let p = Policy::from_toml(&compose("enforce = \"baseline:latest\"\n", &fragments).unwrap())
            .unwrap();
        assert!(p.exempt_namespaces.contains("falco"));
        // YAML: one NodePolicy document.
        let y = compose(PSC, &fragments).unwrap();
        let p = Policy::from_pod_security_configuration(&y).unwrap();
        assert!(
            p.exempt_namespaces.contains("calico-system")
                && p.exempt_namespaces.contains("monitoring")
        );
        assert!(p.floor.exceptions.contains("istio-system"));
        // Nothing to merge: the text as it is.
        assert_eq!(compose(main, &[]).unwrap(), main);
        // A fragment may only add exemptions, and each must be valid.
        for bad in [
            "enforce = \"privileged:latest\"\n",
            "mode = \"observe\"\n",
            "[exempt]\nimages = [\"*\"]\n",
            "[exempt]\nnamespaces = [\"a/b\"]\n",
            "[paths]\nallowed_host_paths = [\"/etc\"]\n",
        ] {
            assert!(
                compose(main, &[frag("exempt-x.toml", bad)]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn fragment_files_are_found_by_name_only() {
        let dir = tempfile::tempdir().unwrap();
        for (n, t) in [
            ("exempt-b.toml", "[exempt]\nnamespaces = [\"b\"]\n"),
            ("exempt-a.toml", "[exempt]\nnamespaces = [\"a\"]\n"),
            ("policy.toml", "enforce = \"baseline:latest\"\n"),
            ("exempt-.toml", "garbage"),
            ("notes.toml", "garbage"),
        ] {
            std::fs::write(dir.path().join(n), t).unwrap();
        }
        let f = fragments_in(dir.path()).unwrap();
        let names: Vec<&str> = f.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["exempt-a.toml", "exempt-b.toml"]);
        assert!(
            fragments_in(&dir.path().join("missing"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn node_file_applies_over_every_policy_form_and_reads_back() {
        let n = NodeFile {
            own_namespace: Some("pss-guard".into()),
            default_runtime_handler: Some("nvidia".into()),
            paths: crate::install::paths::RuntimePaths {
                containerd_root: Some("/data/containerd".into()),
                ..Default::default()
            },
        };
        assert_eq!(NodeFile::parse(&n.render()).unwrap(), n);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(NODE_FILE_NAME), n.render()).unwrap();
        for (name, text) in [
            ("policy.toml", "enforce = \"restricted:latest\"\n"),
            ("psa.yaml", PSC),
            ("broken.toml", "enforce = "),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
            let (p, _) = Policy::load_or_default(&dir.path().join(name));
            assert_eq!(p.own_namespace.as_deref(), Some("pss-guard"), "{name}");
            assert_eq!(p.default_runtime_handler, "nvidia", "{name}");
            assert_eq!(p.paths.containerd_root, PathBuf::from("/data/containerd"));
        }
        for bad in [
            "own_namespace = \"default\"\n",
            "own_namespace = \"a/b\"\n",
            "default_runtime_handler = \"\"\n",
            "other = 1\n",
            "[paths]\ncontainerd_root = \"relative\"\n",
        ] {
            assert!(NodeFile::parse(bad).is_err(), "{bad}");
        }
        // A broken node file changes nothing but the notes.
        std::fs::write(dir.path().join(NODE_FILE_NAME), "own_namespace = 1").unwrap();
        let (p, _) = Policy::load_or_default(&dir.path().join("policy.toml"));
        assert_eq!(p.own_namespace, None);
        assert!(
            p.notes.iter().any(|n| n.contains("node file")),
            "{:?}",
            p.notes
        );
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
