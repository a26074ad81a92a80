//! Hook mode and the decision shared with `check` and `audit`: state -> [`spec::load`] ->
//! exemptions -> [`spec::collect`] -> reports -> [`Decision`] -> log and exit code. Every failure
//! becomes a [`Verdict::Failed`], which refuses the container: the hook fails closed.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{CriLookup, LabelUse, Policy, Unidentified};
use crate::error::Error;
use crate::policy::{self, Ambiguity, Level, LevelVersion};
use crate::psa::{self, Modes};
use crate::report::{Decision, Evaluation, Latest, PolicyFrom, Verdict};
use crate::snapshot::Entry;
use crate::spec::{self, Identity, LoadError, Loaded, RuntimeArg, Target};

/// How long the hook waits for the runtime to write the state on stdin.
pub const STDIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The hook kills itself after this many seconds whatever it is doing; runtimes treat that as a
/// failed hook, so even a hang fails closed. Kept below the installed hook timeout (10 s).
pub const HARD_DEADLINE_SECS: u32 = 8;

/// What the caller knows beyond the policy file and the container.
#[derive(Clone, Debug)]
pub struct Options {
    /// The runtime handler this hook is installed for (`--handler`), for handler exemptions.
    pub handler: Option<String>,
    /// Overrides the enforced level and version (`check --level/--version`).
    pub enforce: Option<LevelVersion>,
    /// The namespace's labels, instead of the snapshot's (`check --namespace-labels`).
    pub namespace_labels: Option<BTreeMap<String, String>>,
    /// The spec belongs to a container being created now (hook mode, or `check` on a running
    /// container's bundle), so its `/proc/<pid>` paths and mount sources are current, and the
    /// runtime can be asked for the CRI configs behind it.
    pub live: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            handler: None,
            enforce: None,
            namespace_labels: None,
            live: true,
        }
    }
}

/// The hook's own arguments, as the installer wrote them.
#[derive(Clone, Debug)]
pub struct HookArgs {
    pub policy: PathBuf,
    pub runtime: RuntimeArg,
    pub handler: Option<String>,
}

impl Default for HookArgs {
    fn default() -> Self {
        HookArgs {
            policy: crate::config::DEFAULT_POLICY_PATH.into(),
            runtime: RuntimeArg::Named(spec::Runtime::Containerd),
            handler: None,
        }
    }
}

/// Reads the state from stdin: bounded in size, and in time.
fn read_state(stdin: impl Read + AsFd, timeout: Duration) -> Result<Vec<u8>, Error> {
    let deadline = Instant::now() + timeout;
    let limit = spec::MAX_STATE_BYTES;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 16 * 1024];
    let mut stdin = stdin;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => return Err(Error::StateTimeout(timeout.as_secs())),
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::ReadState(e.into())),
        }
        match stdin.read(&mut chunk) {
            Ok(0) => return Ok(buf),
            Ok(n) => {
                if buf.len() + n > limit {
                    return Err(Error::StateTooLarge(limit));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::ReadState(e)),
        }
        if Instant::now() >= deadline {
            return Err(Error::StateTimeout(timeout.as_secs()));
        }
    }
}

/// Why this container is exempt, judged only from runtime-set metadata, the hook's args and the
/// RuntimeClasses the snapshot maps to this handler.
fn exemption(
    policy: &Policy,
    opts: &Options,
    identity: &Identity,
    scope: &NamespaceScope,
) -> Option<String> {
    // The handler every pod without a RuntimeClass gets is never exempt: the node cannot tell
    // a pod that asked for it from one that did not.
    if let Some(h) = opts
        .handler
        .as_ref()
        .filter(|h| **h != policy.default_runtime_handler)
    {
        if policy.exempt_runtime_handlers.contains(h) {
            return Some(format!("runtime handler {h:?}"));
        }
        if let Some(rc) = &scope.exempt_runtime_class {
            return Some(format!("runtime class {rc:?} (handler {h:?})"));
        }
    }
    match &identity.kube {
        Some(k) if policy.exempt_namespaces.contains(&k.namespace) => {
            Some(format!("namespace {:?}", k.namespace))
        }
        Some(k) if policy.own_namespace.as_deref() == Some(k.namespace.as_str()) => Some(format!(
            "namespace {:?} (pss-guard's own, from the node file)",
            k.namespace
        )),
        Some(k) => k
            .image
            .as_deref()
            .filter(|i| policy.is_exempt_image(i))
            .map(|i| format!("image {i:?}")),
        // An identity voided because the pod itself carried runtime keys (`note`) is the pod
        // author's doing: it must not earn the exemption for containers outside Kubernetes.
        None if policy.unidentified == Unidentified::Allow && identity.note.is_none() => {
            Some("no Kubernetes metadata (policy: unidentified = \"allow\")".to_owned())
        }
        None => None,
    }
}

/// What a container's namespace brings: its modes, where they came from, what `latest` means,
/// and a RuntimeClass exemption for the hook's handler.
struct NamespaceScope {
    modes: Modes,
    from: PolicyFrom,
    latest: Latest,
    exempt_runtime_class: Option<String>,
    notes: Vec<String>,
}

impl NamespaceScope {
    /// The modes for this container: `check --level/--version` first; else its namespace's
    /// labels (`check --namespace-labels`, or the agent's snapshot) over the node's defaults,
    /// raised to the floor; else the node's defaults. A snapshot that cannot be read (or is not
    /// trusted) changes nothing but the record: the node's defaults apply and the record says
    /// why. A namespace whose own entry cannot be read enforces `restricted`, as admission does
    /// for an enforce label it cannot parse. `latest` is the API server's version from the
    /// snapshot, else the policy's `kubernetes_version`, else the newest this hook knows.
    fn resolve(policy: &Policy, opts: &Options, identity: &Identity) -> NamespaceScope {
        let defaults = policy.modes();
        let mut scope = NamespaceScope {
            modes: defaults,
            from: PolicyFrom::Defaults,
            latest: Latest::default(),
            exempt_runtime_class: None,
            notes: policy.notes.clone(),
        };
        let ns = identity.kube.as_ref().map(|k| k.namespace.as_str());
        let want_classes = opts.handler.is_some() && !policy.exempt_runtime_classes.is_empty();
        let mut labels = opts
            .namespace_labels
            .clone()
            .map(|l| (Entry::Labels(l), PolicyFrom::CommandLine));
        let mut cluster_version = None;
        // The header alone names the cluster's version: read it even when no label is wanted.
        let wanted_ns = if labels.is_none() { ns } else { None };
        match crate::snapshot::read(&policy.snapshot.path, wanted_ns, want_classes) {
            Err(e) => scope.notes.push(format!(
                "{}; {}",
                crate::error::chain_of(&e),
                if labels.is_none() {
                    "node defaults apply"
                } else {
                    "not used"
                }
            )),
            Ok(None) => {}
            Ok(Some(view)) => {
                scope.exempt_runtime_class = exempt_class(policy, opts, &view.runtime_classes);
                if let Some(age) = view.age(std::time::SystemTime::now())
                    && age > policy.snapshot.stale_after
                {
                    scope.notes.push(format!(
                        "namespace snapshot is stale: written {} s ago; the agent may be down",
                        age.as_secs()
                    ));
                }
                cluster_version = view.kubernetes_version;
                if labels.is_none() {
                    labels = view.labels.map(|l| (l, PolicyFrom::Labels));
                }
            }
        }
        scope.latest = latest(policy, cluster_version.as_deref(), &mut scope.notes);
        if let Some((entry, from)) = labels {
            let modes = match entry {
                Entry::Labels(labels) => {
                    let (modes, errors) = psa::from_labels(&labels, defaults);
                    scope.notes.extend(errors);
                    modes
                }
                Entry::Unreadable(why) => {
                    let modes = psa::unreadable(defaults);
                    scope.notes.push(format!(
                        "namespace {:?} in the snapshot: {why}; enforce {} as for an enforce label that does not parse",
                        ns.unwrap_or_default(),
                        modes.enforce
                    ));
                    modes
                }
            };
            scope.modes = match policy.labels {
                LabelUse::Enforce => psa::apply_floor(modes, &policy.floor, ns.unwrap_or_default()),
                LabelUse::Record => Modes {
                    enforce: defaults.enforce,
                    ..modes
                },
            };
            scope.from = from;
        }
        if let Some(lv) = opts.enforce {
            scope.modes.enforce = lv;
            scope.from = PolicyFrom::CommandLine;
        }
        scope
    }
}

/// What `latest` means here: the API server's version as the agent recorded it in the
/// snapshot, else the policy's `kubernetes_version`, else the newest version this hook knows.
/// A cluster newer than this hook is evaluated at the newest version it knows, and says so.
fn latest(policy: &Policy, from_snapshot: Option<&str>, notes: &mut Vec<String>) -> Latest {
    let newest = crate::policy::NEWEST_MINOR;
    let snapshot = from_snapshot.and_then(|v| match crate::config::kubernetes_version(v) {
        Ok(n) => Some(n),
        Err(_) => {
            notes.push(format!(
                "namespace snapshot names API server version {v:?}, not \"v1.N\"; ignored"
            ));
            None
        }
    });
    let (minor, from) = match (snapshot, policy.kubernetes_version) {
        (Some(n), _) => (n, "the API server's version, from the namespace snapshot"),
        (None, Some(n)) => (n, "kubernetes_version in the policy"),
        (None, None) => return Latest::default(),
    };
    if minor > newest {
        return Latest {
            minor: newest,
            from: format!("{from} (v1.{minor}); this hook's checks end at v1.{newest}"),
        };
    }
    Latest {
        minor,
        from: from.to_owned(),
    }
}

/// The exempt RuntimeClass whose handler this hook runs for. Only a handler that nothing but
/// exempt RuntimeClasses name, and that pods without a RuntimeClass do not use, can stand for
/// them: the node sees the handler, not the class.
fn exempt_class(
    policy: &Policy,
    opts: &Options,
    classes: &BTreeMap<String, String>,
) -> Option<String> {
    let h = opts.handler.as_deref()?;
    if h == policy.default_runtime_handler {
        return None;
    }
    let naming: BTreeSet<&str> = classes
        .iter()
        .filter(|(_, handler)| handler.as_str() == h)
        .map(|(name, _)| name.as_str())
        .collect();
    let exempt = naming
        .iter()
        .all(|name| policy.exempt_runtime_classes.contains(*name));
    (exempt && !naming.is_empty()).then(|| naming.into_iter().collect::<Vec<_>>().join(", "))
}

/// Decides one container: the one place a [`Decision`] is made. An exempt container stays
/// exempt even when it cannot be evaluated: the system namespace always starts.
pub fn decide(
    policy: &Policy,
    opts: &Options,
    loaded: Result<Loaded, Box<LoadError>>,
    policy_error: Option<String>,
    started: Instant,
) -> Decision {
    let known = match &loaded {
        Ok(l) => &l.identity,
        Err(e) => &e.identity,
    };
    let scope = NamespaceScope::resolve(policy, opts, known);
    let exempt = exemption(policy, opts, known, &scope);
    let (identity, evaluation, cri_view) = match loaded {
        Ok(l) => {
            let (evaluation, cri) = evaluate(policy, opts, &l, &scope, exempt.is_some());
            (l.identity, evaluation.map_err(|e| e.chain()), cri.record())
        }
        Err(e) => (e.identity, Err(e.error.chain()), None),
    };
    let verdict = match (exempt, evaluation) {
        (Some(why), evaluation) => Verdict::Exempt { why, evaluation },
        (None, Ok(e)) => Verdict::Evaluated(e),
        (None, Err(e)) => Verdict::Failed(e),
    };
    Decision {
        identity,
        mode: policy.mode,
        modes: scope.modes,
        policy_from: scope.from,
        latest: scope.latest,
        notes: scope.notes,
        verdict,
        cri_view,
        policy_error,
        eval_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
    }
}

/// What became of the CRI lookup for one container.
#[derive(Debug)]
enum CriStatus {
    /// Not a case for it: a pod sandbox, a container outside Kubernetes, another runtime.
    NotApplicable,
    Used,
    Skipped(&'static str),
    Unavailable(String),
}

impl CriStatus {
    /// The record's `cri_view`.
    fn record(&self) -> Option<String> {
        match self {
            CriStatus::NotApplicable => None,
            CriStatus::Used => Some("used".into()),
            CriStatus::Skipped(why) => Some(format!("skipped: {why}")),
            CriStatus::Unavailable(why) => Some(format!("unavailable: {why}")),
        }
    }
}

/// The spec's facts against each mode, then, where the spec alone does not refuse, again with
/// the CRI view of the container (which can only add refusals).
fn evaluate(
    policy: &Policy,
    opts: &Options,
    loaded: &Loaded,
    scope: &NamespaceScope,
    exempt: bool,
) -> (Result<Evaluation, Error>, CriStatus) {
    let modes = scope.modes;
    let facts = match spec::collect(loaded, policy, opts.live) {
        Ok(f) => f,
        Err(e) => return (Err(e), CriStatus::NotApplicable),
    };
    let ambiguity = Ambiguity {
        seccomp_absent: policy.seccomp_absent,
        legacy_volumes: policy.legacy_volumes,
    };
    let name = loaded.identity.container_name();
    let run = |lv, cri| {
        policy::evaluate(
            &facts,
            cri,
            lv,
            scope.latest.minor,
            name,
            ambiguity,
            policy.runtime_default_caps,
        )
    };
    // A mode at `privileged` checks nothing and records nothing.
    let all = |cri| Evaluation {
        report: run(modes.enforce, cri),
        audit: (modes.audit.level != Level::Privileged).then(|| run(modes.audit, cri)),
        warn: (modes.warn.level != Level::Privileged).then(|| run(modes.warn, cri)),
    };
    let spec_only = all(None);
    let wanted = cri_wanted(policy, opts, loaded, modes, exempt, &spec_only);
    let (view, status) = match wanted {
        Err(status) => (None, status),
        Ok((sandbox_id, identity)) => match crate::cri::client::fetch(
            &policy.paths.containerd_socket,
            &loaded.identity.container_id,
            sandbox_id,
            policy.cri.budget,
        )
        .map_err(|e| e.0)
        .and_then(|v| same_container(&v, identity).map(|()| v))
        {
            Ok(v) => (Some(v), CriStatus::Used),
            Err(why) => (None, CriStatus::Unavailable(why)),
        },
    };
    if let (CriStatus::Unavailable(why), CriLookup::Required) = (&status, policy.cri.lookup) {
        return (Err(Error::CriRequired(why.clone())), status);
    }
    match view {
        Some(v) => (Ok(all(Some(&v))), status),
        None => (Ok(spec_only), status),
    }
}

/// Whether to ask the runtime for the CRI view, and with which sandbox id; else why not.
fn cri_wanted<'a>(
    policy: &Policy,
    opts: &Options,
    loaded: &'a Loaded,
    modes: Modes,
    exempt: bool,
    spec_only: &Evaluation,
) -> Result<(&'a str, &'a spec::identity::Kube), CriStatus> {
    let kube = match &loaded.identity.kube {
        Some(k) if loaded.identity.runtime == spec::Runtime::Containerd && !k.is_sandbox => k,
        _ => return Err(CriStatus::NotApplicable),
    };
    if !opts.live {
        return Err(CriStatus::Skipped(
            "--offline reads the spec alone; the runtime is not asked",
        ));
    }
    if policy.cri.lookup == CriLookup::Off {
        return Err(CriStatus::Skipped("cri.lookup = \"off\""));
    }
    if exempt {
        return Err(CriStatus::Skipped("exempt"));
    }
    if !spec_only.report.allowed() {
        return Err(CriStatus::Skipped("the spec alone refuses"));
    }
    if [modes.enforce, modes.audit, modes.warn]
        .iter()
        .all(|m| m.level == Level::Privileged)
    {
        return Err(CriStatus::Skipped("every mode is privileged"));
    }
    Ok((kube.sandbox_id.as_str(), kube))
}

/// The view must be of the container and pod the runtime's own metadata names.
fn same_container(v: &crate::cri::View, k: &spec::identity::Kube) -> Result<(), String> {
    if v.container.name != k.container {
        return Err(format!(
            "containerd's config names container {:?}, the spec {:?}",
            v.container.name, k.container
        ));
    }
    let uid_differs = k.pod_uid.as_deref().is_some_and(|u| u != v.pod.uid);
    if v.pod.namespace != k.namespace || v.pod.name != k.pod || uid_differs {
        return Err(format!(
            "containerd's sandbox config names pod {}/{}, the spec {}/{}",
            v.pod.namespace, v.pod.name, k.namespace, k.pod
        ));
    }
    Ok(())
}

/// The container the runtime's state names.
pub fn load_from_state(
    state: Result<Vec<u8>, Error>,
    runtime: RuntimeArg,
    policy: &Policy,
) -> Result<Loaded, Box<LoadError>> {
    let unknown = |error| {
        Box::new(LoadError {
            identity: Identity::unread(""),
            error,
        })
    };
    let state = spec::parse_state(&state.map_err(unknown)?).map_err(unknown)?;
    let target = Target {
        id: state.id().clone(),
        bundle: state.bundle().clone(),
        spec_file: None,
        sandbox_file: None,
        runtime,
    };
    spec::load(&target, &policy.paths)
}

/// The whole hook: read, decide, log, report. Returns the process exit code.
/// `bad_args` is set when the hook's own arguments could not be parsed: the container is then
/// refused as "could not evaluate", logged like any other decision.
pub fn run(args: &HookArgs, bad_args: Option<String>) -> u8 {
    // A last resort against any hang (a stuck mount source, say): SIGALRM's default action ends
    // the process, and the runtime refuses the container.
    let _ = nix::unistd::alarm::set(HARD_DEADLINE_SECS);
    // Log files are created 0640 whatever umask the runtime passed down.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o027));
    let (policy, policy_error) = Policy::load_or_default(&args.policy);
    let started = Instant::now();
    let state = match bad_args {
        Some(msg) => Err(Error::HookArguments(msg)),
        None => read_state(std::io::stdin().lock(), STDIN_TIMEOUT),
    };
    let opts = Options {
        handler: args.handler.clone(),
        ..Options::default()
    };
    let loaded = load_from_state(state, args.runtime, &policy);
    let d = decide(&policy, &opts, loaded, policy_error, started);
    finish(&policy, &d)
}

/// Logs the decision and writes the stderr line; returns the exit code.
pub fn finish(policy: &Policy, d: &Decision) -> u8 {
    let node = crate::log::node_name(policy.node_name.as_deref());
    let line = crate::log::render(d, &node, crate::time::rfc3339(std::time::SystemTime::now()));
    let logged = crate::log::append_rotating(&policy.log_path, &line, policy.log_rotation);
    let mut stderr = d.stderr_line();
    if let Err(e) = logged {
        // The decision stands; the operator learns the log is broken from the same line.
        let msg = format!("decision log not written: {}", crate::error::chain_of(&e));
        stderr = Some(match stderr {
            Some(s) => format!("{s} ({msg})"),
            None => format!("pss-guard: {msg}"),
        });
    }
    if let Some(s) = stderr {
        // Not eprintln!, which panics (exit 101) when the runtime has closed our stderr: the
        // exit code must stay the decision's, and an allowed container must still start.
        use std::io::Write;
        let _ = writeln!(std::io::stderr().lock(), "{s}");
    }
    d.kind().exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::PolicyFrom;

    #[test]
    fn state_read_times_out_on_silent_stdin() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        let f = std::fs::File::from(r);
        let e = read_state(&f, Duration::from_millis(50)).unwrap_err();
        assert!(matches!(e, Error::StateTimeout(_)), "{e:?}");
    }

    #[test]
    fn app_container_without_a_locatable_sandbox_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let spec = r#"{"process":{"user":{"uid":1000}},"linux":{"namespaces":[{"type":"network"},{"type":"pid"},{"type":"ipc"}]},
            "annotations":{"io.kubernetes.cri.container-type":"container","io.kubernetes.cri.container-name":"app",
            "io.kubernetes.cri.sandbox-id":"..","io.kubernetes.cri.sandbox-name":"web",
            "io.kubernetes.cri.sandbox-namespace":"default","io.kubernetes.cri.sandbox-uid":"u1"}}"#;
        std::fs::write(dir.path().join("config.json"), spec).unwrap();
        let target = Target {
            id: "c1".into(),
            bundle: dir.path().to_owned(),
            spec_file: None,
            sandbox_file: None,
            runtime: RuntimeArg::Named(spec::Runtime::Containerd),
        };
        let policy = Policy::default();
        let loaded = spec::load(&target, &policy.paths);
        let d = decide(&policy, &Options::default(), loaded, None, Instant::now());
        assert_eq!(d.kind(), crate::report::Kind::Error, "{d:?}");
        assert!(d.error().unwrap().contains("names no sandbox bundle"));
        assert_eq!(
            d.identity.kube.unwrap().pod,
            "web",
            "the record still names the pod"
        );
    }

    #[test]
    fn malformed_runtime_metadata_never_earns_the_unidentified_exemption() {
        let spec: crate::spec::raw::RawSpec = serde_json::from_str(
            r#"{"process":{"user":{"uid":0}},"annotations":{
            "io.kubernetes.cri-o.Labels":"{not json","io.kubernetes.cri-o.SandboxID":"sb1"}}"#,
        )
        .unwrap();
        let id = spec::identity::identify(spec::Runtime::CriO, "c1", &spec);
        assert!(id.kube.is_none() && id.note.is_some(), "{id:?}");
        let policy = Policy::from_toml("unidentified = \"allow\"\n").unwrap();
        let opts = Options::default();
        let scope = NamespaceScope {
            modes: policy.modes(),
            from: PolicyFrom::Defaults,
            latest: Latest::default(),
            exempt_runtime_class: None,
            notes: Vec::new(),
        };
        assert_eq!(exemption(&policy, &opts, &id, &scope), None);
        let plain = Identity {
            container_id: "c1".into(),
            ..Identity::default()
        };
        assert!(exemption(&policy, &opts, &plain, &scope).is_some());
    }

    fn kube(ns: &str) -> Identity {
        Identity {
            container_id: "c1".into(),
            kube: Some(spec::identity::Kube {
                namespace: ns.into(),
                ..Default::default()
            }),
            ..Identity::default()
        }
    }

    #[test]
    fn namespace_labels_come_from_the_snapshot_over_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let snap = dir.path().join("cluster.json");
        let label = |v: &str| -> BTreeMap<String, String> {
            [(
                "pod-security.kubernetes.io/enforce".to_owned(),
                v.to_owned(),
            )]
            .into()
        };
        let namespaces = [("a", "restricted"), ("b", "privileged"), ("c", "nonsense")]
            .into_iter()
            .map(|(n, v)| (n.to_owned(), label(v)))
            .collect();
        let classes = [("gvisor", "runsc"), ("kata", "kata"), ("runc", "runc")]
            .into_iter()
            .map(|(n, h)| (n.to_owned(), h.to_owned()))
            .collect();
        let long_ago = std::time::UNIX_EPOCH + Duration::from_secs(946_684_800);
        std::fs::write(
            &snap,
            crate::snapshot::render(
                long_ago,
                crate::snapshot::Cluster {
                    namespaces: &namespaces,
                    runtime_classes: &classes,
                    kubernetes_version: None,
                },
            ),
        )
        .unwrap();
        let policy = Policy::from_toml(&format!(
            "audit = \"restricted:latest\"\nfloor_exceptions = [\"b\"]\n[exempt]\nruntime_classes = [\"gvisor\", \"runc\"]\n[snapshot]\npath = {snap:?}\n"
        ))
        .unwrap();
        let opts = Options::default();
        let s = NamespaceScope::resolve(&policy, &opts, &kube("a"));
        assert_eq!(
            (s.modes.enforce.to_string(), s.from),
            ("restricted:latest".into(), PolicyFrom::Labels)
        );
        assert!(s.notes.iter().any(|n| n.contains("stale")), "{:?}", s.notes);
        assert_eq!(
            NamespaceScope::resolve(&policy, &opts, &kube("b"))
                .modes
                .enforce,
            LevelVersion::PRIVILEGED
        );
        let c = NamespaceScope::resolve(&policy, &opts, &kube("c"));
        assert_eq!(
            c.modes.enforce.to_string(),
            "restricted:latest",
            "an unparsable label fails closed"
        );
        let d = NamespaceScope::resolve(&policy, &opts, &kube("unlisted"));
        assert_eq!((d.modes, d.from), (policy.modes(), PolicyFrom::Defaults));
        // A RuntimeClass exemption reaches the handler only it names, never the default handler.
        let on = |h: &str| Options {
            handler: Some(h.into()),
            ..Options::default()
        };
        assert_eq!(
            NamespaceScope::resolve(&policy, &on("runsc"), &kube("a"))
                .exempt_runtime_class
                .as_deref(),
            Some("gvisor")
        );
        assert_eq!(
            NamespaceScope::resolve(&policy, &on("kata"), &kube("a")).exempt_runtime_class,
            None
        );
        assert_eq!(
            NamespaceScope::resolve(&policy, &on("runc"), &kube("a")).exempt_runtime_class,
            None
        );
        // Labels given on the command line, and a broken snapshot.
        let given = Options {
            namespace_labels: Some(
                [(
                    "pod-security.kubernetes.io/enforce".to_owned(),
                    "privileged".to_owned(),
                )]
                .into(),
            ),
            ..Options::default()
        };
        let g = NamespaceScope::resolve(&policy, &given, &kube("a"));
        assert_eq!(
            (g.modes.enforce.to_string(), g.from),
            ("baseline:latest".into(), PolicyFrom::CommandLine),
            "the floor holds"
        );
        // Labels that only record: enforce stays the node's (observe-only rollouts).
        let record = Policy::from_toml(&format!(
            "enforce = \"privileged:latest\"\naudit = \"baseline:latest\"\nlabels = \"record\"\n[snapshot]\npath = {snap:?}\n"
        ))
        .unwrap();
        let r = NamespaceScope::resolve(&record, &opts, &kube("a"));
        assert_eq!(r.modes.enforce, LevelVersion::PRIVILEGED);
        assert_eq!(
            r.modes.warn.to_string(),
            "restricted:latest",
            "warn follows the label"
        );
        std::fs::write(&snap, "{").unwrap();
        let broken = NamespaceScope::resolve(&policy, &opts, &kube("a"));
        assert_eq!(broken.modes, policy.modes());
        assert!(
            broken.notes[0].contains("parsing namespace snapshot"),
            "{:?}",
            broken.notes
        );
    }

    #[test]
    fn a_view_of_another_container_or_pod_is_not_used() {
        let k = spec::identity::Kube {
            namespace: "default".into(),
            pod: "web".into(),
            pod_uid: Some("u1".into()),
            container: "app".into(),
            sandbox_id: "sb1".into(),
            ..Default::default()
        };
        let view = |container: &str, ns: &str, pod: &str, uid: &str| crate::cri::View {
            container: crate::cri::ContainerView {
                name: container.into(),
                ..Default::default()
            },
            pod: crate::cri::PodView {
                namespace: ns.into(),
                name: pod.into(),
                uid: uid.into(),
                ..Default::default()
            },
        };
        assert_eq!(
            same_container(&view("app", "default", "web", "u1"), &k),
            Ok(())
        );
        for other in [
            view("sidecar", "default", "web", "u1"),
            view("app", "kube-system", "web", "u1"),
            view("app", "default", "api", "u1"),
            view("app", "default", "web", "u2"),
        ] {
            assert!(same_container(&other, &k).is_err(), "{other:?}");
        }
    }

    #[test]
    fn state_read_refuses_oversize() {
        let data = vec![b' '; spec::MAX_STATE_BYTES + 1];
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state");
        std::fs::write(&p, &data).unwrap();
        let f = std::fs::File::open(&p).unwrap();
        let e = read_state(&f, Duration::from_secs(5)).unwrap_err();
        assert!(matches!(e, Error::StateTooLarge(_)), "{e:?}");
    }
}
