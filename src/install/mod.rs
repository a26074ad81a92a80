//! `pss-guard install` / `uninstall`: put the hook on a node, or take it off, without a window
//! in which a runtime config names a hook binary that is not there (that fails every container
//! on the node).
//!
//! Install order: binary (atomic rename) -> policy (kept unless asked to replace) -> base specs
//! -> runtime config -> restart containerd (only with `--restart`, only if the config changed).
//! Uninstall runs the other way, and keeps the binary unless containerd was restarted: the
//! running containerd still holds the old base spec, which names the binary, until it restarts.
//!
//! Every path is a host path; with `--root /host` (the host's `/` mounted into a container)
//! files are read and written below it while the configs still name host paths.

pub mod containerd;
pub mod elf;
pub mod files;
pub mod hooksd;
pub mod paths;
pub mod process;
pub mod restart;

use std::fmt;
use std::path::{Path, PathBuf};

use containerd::{ConfigVersion, ContainerdError, HandlerState, State};

pub const DEFAULT_BIN_PATH: &str = "/usr/local/bin/pss-guard";
pub const DEFAULT_CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
pub const DEFAULT_SPEC_DIR: &str = "/etc/pss-guard/containerd";
const STATE_FILE: &str = "install-state.json";

/// The policy written when the operator gives none and the node has none.
pub const DEFAULT_POLICY_TOML: &str = "\
# pss-guard node policy (written by `pss-guard install`; kept on upgrades unless replaced).
enforce = \"baseline:latest\"
# Violations of this level are logged, not refused.
audit = \"restricted:latest\"

[exempt]
# kube-system is always exempt. Add the namespace pss-guard's DaemonSet runs in, if it runs one:
# any other namespace listed here is exempt for whoever may create pods in it.
namespaces = [\"kube-system\"]
";

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("reading {0:?}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error("writing {0:?}")]
    Write(PathBuf, #[source] std::io::Error),
    #[error("removing {0:?}")]
    Remove(PathBuf, #[source] std::io::Error),
    #[error("the binary to install, {0:?}, cannot be found")]
    BinarySource(PathBuf, #[source] std::io::Error),
    #[error(
        "{0:?} does not run as pss-guard here (`version` said {1:?}); nothing installed: every container would be refused"
    )]
    NotPssGuard(PathBuf, String),
    #[error("policy {0:?} is not a valid pss-guard policy; nothing installed")]
    Policy(PathBuf, #[source] crate::config::ConfigError),
    #[error("containerd config {0:?}")]
    Containerd(PathBuf, #[source] ContainerdError),
    #[error("install state {0:?} cannot be parsed")]
    State(PathBuf, #[source] serde_json::Error),
    #[error("the hooks.d definition shipped in the binary is not valid")]
    HooksDefinition,
    #[error("restarting containerd")]
    Restart(#[source] restart::RestartError),
    #[error(
        "no runtime to wire below {0:?}: no containerd config at {1:?} or containerd binary, no CRI-O or Podman (pass --only, --containerd-config or --hooks-dir if they are elsewhere)"
    )]
    NoRuntime(PathBuf, PathBuf),
    #[error(
        "this node runs Bottlerocket ({0:?} says ID=bottlerocket): its containerd config cannot carry a hook; see node-config/BOTTLEROCKET.md"
    )]
    Bottlerocket(PathBuf),
    #[error("{0:?} cannot run as this node's hook; nothing installed")]
    Elf(PathBuf, #[source] elf::ElfError),
}

/// Which runtime integrations to touch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Targets {
    /// containerd if it is on the host, hooks.d if CRI-O or Podman is.
    Auto,
    Containerd,
    HooksD,
}

#[derive(Clone, Debug)]
pub struct Options {
    /// The host's `/`.
    pub root: PathBuf,
    pub dry_run: bool,
    pub restart: bool,
    /// The binary to install (default: this executable).
    pub binary_source: Option<PathBuf>,
    /// The policy to install (default: the built-in one, only if the node has none).
    pub policy_source: Option<PathBuf>,
    /// Replace an existing policy file with `policy_source`.
    pub replace_policy: bool,
    /// The namespace pss-guard's DaemonSet runs in (the installer's downward API), written to
    /// the node file so the guard's own pods start under any policy.
    pub own_namespace: Option<String>,
    /// Uninstall: remove the policy file too.
    pub purge: bool,
    pub bin_path: PathBuf,
    pub policy_path: PathBuf,
    pub spec_dir: PathBuf,
    pub containerd_config: PathBuf,
    /// The config version for a node without a config file (else read from the binary).
    pub containerd_version: Option<ConfigVersion>,
    pub hooks_dir: Option<PathBuf>,
    pub targets: Targets,
    /// Instead of `systemctl restart containerd` (argv, run as is).
    pub restart_command: Option<Vec<String>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            root: "/".into(),
            dry_run: false,
            restart: false,
            binary_source: None,
            policy_source: None,
            replace_policy: false,
            own_namespace: None,
            purge: false,
            bin_path: DEFAULT_BIN_PATH.into(),
            policy_path: crate::config::DEFAULT_POLICY_PATH.into(),
            spec_dir: DEFAULT_SPEC_DIR.into(),
            containerd_config: DEFAULT_CONTAINERD_CONFIG.into(),
            containerd_version: None,
            hooks_dir: None,
            targets: Targets::Auto,
            restart_command: None,
        }
    }
}

impl Options {
    fn host(&self, p: &Path) -> PathBuf {
        files::under(&self.root, p)
    }

    /// The `--policy` the hook needs when the policy is not at the default path.
    fn hook_policy_arg(&self) -> Option<&Path> {
        (self.policy_path != Path::new(crate::config::DEFAULT_POLICY_PATH))
            .then_some(self.policy_path.as_path())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Create,
    Replace,
    Unchanged,
    Remove,
    /// Left as it is, with the reason.
    Keep(String),
    /// Not touched, with the reason.
    Skip(String),
    Restart,
}

/// One thing the installer did (or, with `--dry-run`, would do).
#[derive(Clone, Debug)]
pub struct Step {
    pub what: &'static str,
    pub path: PathBuf,
    pub action: Action,
    /// Extra lines: the config keys changed, why a handler was skipped.
    pub details: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub dry_run: bool,
    pub steps: Vec<Step>,
    /// Set when the run stopped short of what was asked (the steps say what was done).
    pub incomplete: Option<String>,
}

impl Outcome {
    fn push(&mut self, what: &'static str, path: &Path, action: Action, details: Vec<String>) {
        self.steps.push(Step {
            what,
            path: path.to_owned(),
            action,
            details,
        });
    }

    /// Whether anything was (or would be) changed.
    pub fn changed(&self) -> bool {
        self.steps.iter().any(|s| {
            matches!(
                s.action,
                Action::Create | Action::Replace | Action::Remove | Action::Restart
            )
        })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.steps {
            let verb = match (&s.action, self.dry_run) {
                (Action::Create, false) => "created".to_owned(),
                (Action::Create, true) => "would create".to_owned(),
                (Action::Replace, false) => "replaced".to_owned(),
                (Action::Replace, true) => "would replace".to_owned(),
                (Action::Remove, false) => "removed".to_owned(),
                (Action::Remove, true) => "would remove".to_owned(),
                (Action::Restart, false) => "restarted".to_owned(),
                (Action::Restart, true) => "would restart".to_owned(),
                (Action::Unchanged, _) => "unchanged".to_owned(),
                (Action::Keep(why), _) => format!("kept: {why}"),
                (Action::Skip(why), _) => format!("skipped: {why}"),
            };
            writeln!(f, "{:<16} {}: {verb}", s.what, s.path.display())?;
            for d in &s.details {
                writeln!(f, "{:<16}   {d}", "")?;
            }
        }
        Ok(())
    }
}

fn write_if_changed(
    opts: &Options,
    out: &mut Outcome,
    what: &'static str,
    host_path: &Path,
    data: &[u8],
    mode: u32,
    details: Vec<String>,
) -> Result<bool, InstallError> {
    let path = opts.host(host_path);
    let current = files::read_optional(&path)?;
    // Config files keep the mode the operator gave them; the binary must be executable.
    let binary = what == "binary";
    let mode = if binary {
        mode
    } else {
        files::mode_of(&path, mode)
    };
    let action = match &current {
        Some(c) if c == data && (!binary || files::mode_of(&path, 0) == mode) => Action::Unchanged,
        Some(_) => Action::Replace,
        None => Action::Create,
    };
    let changed = action != Action::Unchanged;
    if changed && !opts.dry_run {
        files::write_atomic(&path, data, mode)?;
    }
    let details = if changed { details } else { Vec::new() };
    out.push(what, host_path, action, details);
    Ok(changed)
}

fn use_containerd(opts: &Options) -> bool {
    match opts.targets {
        Targets::Containerd => true,
        Targets::HooksD => false,
        Targets::Auto => {
            opts.host(&opts.containerd_config).exists()
                || containerd::version_from_binary(&opts.root).is_some()
        }
    }
}

fn use_hooksd(opts: &Options) -> bool {
    match opts.targets {
        Targets::HooksD => true,
        Targets::Containerd => false,
        Targets::Auto => opts.hooks_dir.is_some() || hooksd::present(&opts.root),
    }
}

fn hooks_dir(opts: &Options) -> PathBuf {
    opts.hooks_dir
        .clone()
        .unwrap_or_else(|| hooksd::target_dir(&opts.root))
}

pub fn install(opts: &Options) -> Result<Outcome, InstallError> {
    let mut out = Outcome {
        dry_run: opts.dry_run,
        ..Outcome::default()
    };
    // Everything is read and validated before the first write.
    let src = match &opts.binary_source {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| InstallError::BinarySource("/proc/self/exe".into(), e))?,
    };
    let binary = std::fs::read(&src).map_err(|e| InstallError::BinarySource(src.clone(), e))?;
    check_binary(&src)?;
    refuse_bottlerocket(opts)?;
    let with_containerd = use_containerd(opts);
    let with_hooksd = use_hooksd(opts);
    if !with_containerd && !with_hooksd {
        return Err(InstallError::NoRuntime(
            opts.root.clone(),
            opts.containerd_config.clone(),
        ));
    }
    // The given policy, any form the hook reads, with the fragments beside it merged in.
    let policy = match &opts.policy_source {
        Some(p) => {
            let bad = |e| InstallError::Policy(p.clone(), e);
            let text = std::fs::read(p).map_err(|e| InstallError::Read(p.clone(), e))?;
            let text = String::from_utf8(text)
                .map_err(|_| bad(crate::config::ConfigError::Invalid("is not UTF-8".into())))?;
            let dir = p.parent().unwrap_or(Path::new("."));
            let fragments = crate::config::fragments_in(dir).map_err(bad)?;
            let text = crate::config::compose(&text, &fragments).map_err(bad)?;
            crate::config::Policy::from_text(&text, Some(dir)).map_err(bad)?;
            text.into_bytes()
        }
        None => DEFAULT_POLICY_TOML.as_bytes().to_vec(),
    };
    let containerd_plan = if with_containerd {
        Some(plan_containerd_install(opts)?)
    } else {
        None
    };

    // 1. The binary: every config written later names it.
    write_if_changed(
        opts,
        &mut out,
        "binary",
        &opts.bin_path,
        &binary,
        0o755,
        vec![],
    )?;

    // 2. The policy: an operator's policy is never overwritten unless asked, but its `[paths]`
    // follow the runtime's config: with stock paths on a node whose runtime uses others, every
    // pod would be refused.
    let runtime_paths = runtime_paths(opts, with_containerd, with_hooksd)?;
    let policy_host = opts.host(&opts.policy_path);
    let existing = files::read_optional(&policy_host)?;
    let keep = existing.is_some() && !(opts.replace_policy && opts.policy_source.is_some());
    let base = match (&existing, keep) {
        (Some(e), true) => e.clone(),
        _ => policy,
    };
    let text = String::from_utf8_lossy(&base).into_owned();
    // A PodSecurityConfiguration has no `[paths]`: the node file carries them (below).
    let applied = if crate::config::is_kubernetes_yaml(&text) {
        crate::config::Policy::from_text(&text, opts.host(&opts.policy_path).parent())
            .ok()
            .map(|_| (text.clone(), Vec::new()))
    } else {
        paths::apply(&text, &runtime_paths)
    };
    match applied {
        Some((_, details)) if keep && details.is_empty() => {
            let why = if opts.policy_source.is_some() {
                "exists (pass --replace-policy to overwrite it)"
            } else {
                "exists"
            };
            out.push(
                "policy",
                &opts.policy_path,
                Action::Keep(why.into()),
                vec![],
            );
        }
        Some((patched, details)) => {
            write_if_changed(
                opts,
                &mut out,
                "policy",
                &opts.policy_path,
                patched.as_bytes(),
                0o644,
                details,
            )?;
        }
        // Only a kept policy can fail to parse here: a given one was validated above.
        None => out.push(
            "policy",
            &opts.policy_path,
            Action::Keep("exists but does not parse: the hook runs on the built-in default".into()),
            vec![],
        ),
    }

    // 2b. The node file: what this node says of itself, read by the hook over any policy.
    let node = crate::config::NodeFile {
        own_namespace: opts.own_namespace.clone(),
        default_runtime_handler: if with_containerd {
            default_handler(opts)?
        } else {
            None
        },
        paths: runtime_paths.clone(),
    };
    // What is written must read back: an own namespace the hook would refuse to take (say
    // `default`) stops the install here rather than exempting nothing on the node.
    crate::config::NodeFile::parse(&node.render())
        .map_err(|e| InstallError::Policy(node_file_path(opts), e))?;
    write_if_changed(
        opts,
        &mut out,
        "node file",
        &node_file_path(opts),
        node.render().as_bytes(),
        0o644,
        vec![],
    )?;

    // 3. containerd: base specs, then the config that names them.
    let mut config_changed = false;
    if let Some(plan) = containerd_plan {
        for (host_path, data) in &plan.specs {
            write_if_changed(opts, &mut out, "base spec", host_path, data, 0o644, vec![])?;
        }
        let state_path = opts.spec_dir.join(STATE_FILE);
        let state = serde_json::to_vec_pretty(&plan.state).unwrap_or_default();
        write_if_changed(
            opts,
            &mut out,
            "install state",
            &state_path,
            &state,
            0o644,
            vec![],
        )?;
        for (name, why) in &plan.skipped {
            out.push(
                "handler",
                Path::new(name),
                Action::Skip(why.clone()),
                vec![],
            );
        }
        config_changed = write_if_changed(
            opts,
            &mut out,
            "containerd",
            &opts.containerd_config,
            plan.config.as_bytes(),
            0o644,
            plan.details,
        )?;
    }

    // 4. CRI-O / Podman.
    if use_hooksd(opts) {
        let def = hooksd::definition(&opts.bin_path, opts.hook_policy_arg())
            .ok_or(InstallError::HooksDefinition)?;
        let path = hooks_dir(opts).join(hooksd::FILE_NAME);
        write_if_changed(opts, &mut out, "hooks.d", &path, &def, 0o644, vec![])?;
    }

    // 5. containerd reads base specs at start-up only.
    if config_changed {
        restart_step(opts, &mut out)?;
    }
    Ok(out)
}

/// Runs the binary about to be installed: a file that does not execute here (wrong
/// architecture, truncated, not pss-guard) would make the runtime refuse every container.
fn check_binary(src: &Path) -> Result<(), InstallError> {
    elf::check_native(src).map_err(|e| InstallError::Elf(src.to_owned(), e))?;
    let out = std::process::Command::new(src)
        .arg("version")
        .env_clear()
        .output()
        .map_err(|e| InstallError::BinarySource(src.to_owned(), e))?;
    let said = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || !said.starts_with("pss-guard ") {
        return Err(InstallError::NotPssGuard(src.to_owned(), said));
    }
    Ok(())
}

/// Bottlerocket renders containerd's config from its settings at every boot and has no hook
/// setting: a hook written there would be lost, or name a binary its read-only root cannot hold.
fn refuse_bottlerocket(opts: &Options) -> Result<(), InstallError> {
    let os_release = Path::new("/etc/os-release");
    let text = files::read_optional(&opts.host(os_release))?.unwrap_or_default();
    let bottlerocket = String::from_utf8_lossy(&text)
        .lines()
        .any(|l| l.trim() == "ID=bottlerocket" || l.trim() == "ID=\"bottlerocket\"");
    if bottlerocket {
        return Err(InstallError::Bottlerocket(os_release.to_owned()));
    }
    Ok(())
}

/// The node file beside the policy file.
fn node_file_path(opts: &Options) -> PathBuf {
    opts.policy_path
        .with_file_name(crate::config::NODE_FILE_NAME)
}

/// containerd's `default_runtime_name`, from its config (its own default where the config
/// names none, or there is no config).
fn default_handler(opts: &Options) -> Result<Option<String>, InstallError> {
    let Some(b) = files::read_optional(&opts.host(&opts.containerd_config))? else {
        return Ok(Some(containerd::DEFAULT_HANDLER.to_owned()));
    };
    Ok(Some(containerd::default_handler_of(
        &String::from_utf8_lossy(&b),
    )))
}

/// The runtime directories the node's configs name, for the policy's `[paths]`.
fn runtime_paths(
    opts: &Options,
    with_containerd: bool,
    with_hooksd: bool,
) -> Result<paths::RuntimePaths, InstallError> {
    let mut rt = paths::RuntimePaths::default();
    if with_containerd && let Some(b) = files::read_optional(&opts.host(&opts.containerd_config))? {
        rt = paths::from_containerd(&String::from_utf8_lossy(&b));
    }
    if with_hooksd {
        rt = rt.merge(paths::from_crio(&opts.root));
    }
    Ok(rt)
}

/// Restarts containerd and, for uninstall, waits to see a new daemon: the binary may go only
/// once no running containerd holds a base spec naming it. A restart command that returned 0
/// without restarting anything leaves the old daemon; then `false` and `out.incomplete`.
fn restart_and_verify(opts: &Options, out: &mut Outcome) -> Result<bool, InstallError> {
    let proc_dir = Path::new("/proc");
    let before = process::containerd(proc_dir, &opts.root, &opts.containerd_config);
    if !restart_step(opts, out)? {
        return Ok(false);
    }
    let Some(before) = before.filter(|_| !opts.dry_run) else {
        return Ok(true);
    };
    let deadline = std::time::Instant::now() + RELOAD_WAIT;
    loop {
        let now = process::containerd(proc_dir, &opts.root, &opts.containerd_config);
        if now != Some(before) {
            return Ok(true);
        }
        if std::time::Instant::now() >= deadline {
            out.incomplete = Some(format!(
                "containerd (pid {}) is still the daemon that started with the hook {}s after the restart command: it did not restart, so the binary and base specs are kept; restart containerd and run `pss-guard uninstall --restart` again",
                before.pid,
                RELOAD_WAIT.as_secs()
            ));
            return Ok(false);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// How long uninstall waits for a new containerd after the restart command returned.
const RELOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

fn restart_step(opts: &Options, out: &mut Outcome) -> Result<bool, InstallError> {
    let unit = Path::new("containerd");
    if !opts.restart {
        out.push(
            "restart",
            unit,
            Action::Skip(
                "not asked (--restart); the change applies when containerd restarts".into(),
            ),
            vec![],
        );
        return Ok(false);
    }
    if !opts.dry_run {
        restart::containerd(&opts.root, opts.restart_command.as_deref())
            .map_err(InstallError::Restart)?;
    }
    out.push("restart", unit, Action::Restart, vec![]);
    Ok(true)
}

struct ContainerdPlan {
    config: String,
    details: Vec<String>,
    /// (host path, contents) of each base spec to write.
    specs: Vec<(PathBuf, Vec<u8>)>,
    state: State,
    skipped: Vec<(String, String)>,
}

fn load_config(opts: &Options) -> Result<(toml_edit::DocumentMut, bool), InstallError> {
    let cfg_err = |e| InstallError::Containerd(opts.containerd_config.clone(), e);
    let path = opts.host(&opts.containerd_config);
    let text = files::read_optional(&path)?;
    let exists = text.is_some();
    let text = String::from_utf8_lossy(&text.unwrap_or_default()).into_owned();
    Ok((containerd::parse(&text).map_err(cfg_err)?, exists))
}

fn load_state(opts: &Options) -> Result<State, InstallError> {
    let host_path = opts.spec_dir.join(STATE_FILE);
    match files::read_optional(&opts.host(&host_path))? {
        Some(b) => serde_json::from_slice(&b).map_err(|e| InstallError::State(host_path, e)),
        None => Ok(State::default()),
    }
}

fn plan_containerd_install(opts: &Options) -> Result<ContainerdPlan, InstallError> {
    let cfg_err = |e| InstallError::Containerd(opts.containerd_config.clone(), e);
    let (mut doc, _) = load_config(opts)?;
    let version = match containerd::version_of(&doc).map_err(cfg_err)? {
        Some(v) => v,
        None => {
            let v = opts
                .containerd_version
                .or_else(|| containerd::version_from_binary(&opts.root))
                .ok_or_else(|| cfg_err(ContainerdError::UnknownVersion))?;
            doc = containerd::new_document(v);
            v
        }
    };
    let old_state = load_state(opts)?;
    let imports: Vec<String> = doc
        .get("imports")
        .and_then(toml_edit::Item::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut plan = ContainerdPlan {
        config: String::new(),
        details: vec![format!("config version {}", version.number())],
        specs: Vec::new(),
        state: State::default(),
        skipped: Vec::new(),
    };
    for h in containerd::handlers(&doc, version) {
        if !h.runs_hooks() {
            plan.skipped.push((
                h.name.clone(),
                format!(
                    "runtime_type {:?} does not run OCI hooks on the host; pods using this handler are not checked",
                    h.runtime_type
                ),
            ));
            continue;
        }
        let ours = opts.spec_dir.join(containerd::spec_file_name(&h.name));
        let ours_str = ours.to_string_lossy().into_owned();
        let already = h.base_runtime_spec.as_deref() == Some(ours_str.as_str());
        let previous = old_state.handlers.get(&h.name);
        let entry = if already {
            previous.cloned().unwrap_or_default()
        } else {
            HandlerState {
                original_base_runtime_spec: h.base_runtime_spec.clone(),
                created_table: h.implicit,
            }
        };
        // Derive from the node's own base spec when there is one, re-read on every run so an
        // upgrade picks up changes to it; else from our own file (state lost); else CRI's default.
        let base = match (&entry.original_base_runtime_spec, already) {
            (Some(orig), _) if !orig.is_empty() => {
                containerd::load_base_spec(&opts.root, &h.name, orig).map_err(cfg_err)?
            }
            (None, true) if previous.is_none() => {
                containerd::load_base_spec(&opts.root, &h.name, &ours_str).map_err(cfg_err)?
            }
            _ => containerd::cri_default_spec(),
        };
        let hook = containerd::hook_entry(&opts.bin_path, &h.name, opts.hook_policy_arg());
        let spec = containerd::with_hook(&base, &hook, &opts.bin_path).ok_or_else(|| {
            cfg_err(ContainerdError::BaseSpecShape {
                handler: h.name.clone(),
                path: ours.clone(),
            })
        })?;
        plan.specs
            .push((ours.clone(), containerd::render_spec(&spec)));
        if !already {
            containerd::set_base_runtime_spec(&mut doc, version, &h.name, Some(&ours_str))
                .map_err(cfg_err)?;
            plan.details.push(format!(
                "runtimes.{}.base_runtime_spec = {:?} (was {})",
                h.name,
                ours_str,
                h.base_runtime_spec
                    .as_deref()
                    .map_or("unset".to_owned(), |p| format!("{p:?}")),
            ));
        }
        plan.state.handlers.insert(h.name.clone(), entry);
    }
    if !imports.is_empty() {
        // Handlers declared in imported files are not seen here, and would bypass the hook.
        plan.details.push(format!(
            "warning: this config imports {imports:?}; runtime handlers declared there are not changed"
        ));
    }
    plan.config = doc.to_string();
    Ok(plan)
}

pub fn uninstall(opts: &Options) -> Result<Outcome, InstallError> {
    let mut out = Outcome {
        dry_run: opts.dry_run,
        ..Outcome::default()
    };
    let cfg_err = |e| InstallError::Containerd(opts.containerd_config.clone(), e);

    // 1. CRI-O / Podman read hooks.d as it changes: remove the definition first.
    if use_hooksd(opts) {
        let path = hooks_dir(opts).join(hooksd::FILE_NAME);
        remove_step(opts, &mut out, "hooks.d", &path)?;
    }

    // 2. containerd: restore each handler pss-guard took over.
    let mut keep_binary = false;
    if use_containerd(opts) {
        let state_path = opts.spec_dir.join(STATE_FILE);
        let had_state = opts.host(&state_path).exists();
        let state = load_state(opts)?;
        let (mut doc, exists) = load_config(opts)?;
        let mut details = Vec::new();
        let mut changed = false;
        if exists && let Some(version) = containerd::version_of(&doc).map_err(cfg_err)? {
            for h in containerd::handlers(&doc, version) {
                let Some(cur) = &h.base_runtime_spec else {
                    continue;
                };
                if Path::new(cur).parent() != Some(opts.spec_dir.as_path()) {
                    continue;
                }
                let entry = state.handlers.get(&h.name).cloned().unwrap_or_default();
                let original = entry.original_base_runtime_spec.as_deref();
                containerd::set_base_runtime_spec(&mut doc, version, &h.name, original)
                    .map_err(cfg_err)?;
                if entry.created_table {
                    containerd::remove_created_table(&mut doc, version, &h.name);
                }
                details.push(format!(
                    "runtimes.{}.base_runtime_spec = {} (was {cur:?})",
                    h.name,
                    original.map_or("unset".to_owned(), |p| format!("{p:?}")),
                ));
            }
            changed = write_if_changed(
                opts,
                &mut out,
                "containerd",
                &opts.containerd_config,
                doc.to_string().as_bytes(),
                0o644,
                details,
            )?;
        }
        // The state file stays until containerd has restarted, so a later `uninstall
        // --restart` still knows the running daemon may hold the hook.
        if changed || had_state {
            let restarted = restart_and_verify(opts, &mut out)?;
            keep_binary = !restarted;
        }
        if keep_binary {
            out.push(
                "base specs",
                &opts.spec_dir,
                Action::Keep("until containerd restarts".into()),
                vec![],
            );
        } else {
            if let Ok(rd) = std::fs::read_dir(opts.host(&opts.spec_dir)) {
                let mut names: Vec<_> = rd
                    .filter_map(|e| e.ok().map(|e| e.file_name()))
                    .filter(|n| {
                        let n = n.to_string_lossy();
                        n.starts_with("base-runtime-spec-") && n.ends_with(".json")
                    })
                    .collect();
                names.sort();
                for n in names {
                    remove_step(opts, &mut out, "base spec", &opts.spec_dir.join(n))?;
                }
            }
            remove_step(opts, &mut out, "install state", &state_path)?;
        }
    }

    // 3. The node file is the installer's own; the policy only on request: it is the operator's.
    remove_step(opts, &mut out, "node file", &node_file_path(opts))?;
    if opts.purge {
        remove_step(opts, &mut out, "policy", &opts.policy_path)?;
    } else {
        out.push(
            "policy",
            &opts.policy_path,
            Action::Keep("the operator's file (pass --purge to remove it)".into()),
            vec![],
        );
    }

    // 4. The binary last, and only once no running containerd can still call it.
    if keep_binary {
        out.push(
            "binary",
            &opts.bin_path,
            Action::Keep(
                "containerd still runs with the hook until it restarts; run `pss-guard uninstall --restart` or remove it after restarting containerd".into(),
            ),
            vec![],
        );
    } else {
        remove_step(opts, &mut out, "binary", &opts.bin_path)?;
    }
    Ok(out)
}

fn remove_step(
    opts: &Options,
    out: &mut Outcome,
    what: &'static str,
    host_path: &Path,
) -> Result<(), InstallError> {
    let path = opts.host(host_path);
    if !path.exists() {
        out.push(what, host_path, Action::Unchanged, vec!["absent".into()]);
        return Ok(());
    }
    if !opts.dry_run {
        files::remove(&path)?;
    }
    out.push(what, host_path, Action::Remove, vec![]);
    Ok(())
}
