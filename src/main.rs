//! `pss-guard`: parse argv, call into the library, map the outcome to an exit code.
//!
//! Exit codes: 0 allowed / done, 1 refused (or, for `audit`, something would be), 2 could not
//! evaluate or failed, 64 the command line itself is wrong (sysexits' EX_USAGE). In `hook` mode
//! every failure refuses the container; even `hook --help` exits non-zero.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use lexopt::prelude::*;
use pss_guard::config::{DEFAULT_POLICY_PATH, Policy};
use pss_guard::error::chain_of;
use pss_guard::hook::{self, HookArgs, Options};
use pss_guard::policy::{Level, LevelVersion, Version};
use pss_guard::spec::{self, Runtime, RuntimeArg, Target};

/// The command line is wrong.
const EXIT_USAGE: u8 = 64;

struct Command {
    name: &'static str,
    usage: &'static str,
}

const HOOK: Command = Command {
    name: "hook",
    usage: "\
pss-guard hook [--policy FILE] [--runtime containerd|detect|none] [--handler NAME]
    Run as an OCI createRuntime/prestart hook: the state on stdin, exit 0 allowed,
    1 refused, 2 could not evaluate (refused). --runtime detect (hooks.d) tells CRI-O
    from Podman by where the bundle lies; containerd's base spec names containerd.
",
};
const CHECK: Command = Command {
    name: "check",
    usage: "\
pss-guard check <BUNDLE-DIR | config.json> [--policy FILE] [--level baseline|restricted]
    [--version v1.N|latest] [--runtime containerd|cri-o|none|detect] [--sandbox FILE]
    [--handler NAME] [--id CONTAINER-ID] [--namespace-labels KEY=VALUE[,KEY=VALUE...]]
    [--offline] [--json]
    Evaluate a spec and print every check of each mode (enforce, audit, warn). The modes
    come from --level/--version, else the namespace's labels (--namespace-labels, else the
    agent's snapshot), else the policy's defaults. On containerd a live container's CRI
    configs are read too, as the hook reads them (the CRI view); --offline reads the spec
    alone. Exit 0 allowed, 1 refused, 2 could not evaluate.
",
};
const INSTALL: Command = Command {
    name: "install",
    usage: "\
pss-guard install [--root DIR] [--dry-run] [--restart] [--binary FILE] [--policy FILE]
    [--replace-policy] [--own-namespace NS] [--bin-path PATH] [--policy-path PATH]
    [--containerd-config PATH] [--containerd-config-version 2|3] [--spec-dir DIR]
    [--hooks-dir DIR] [--only containerd|hooks.d] [--restart-command CMD]
    Put the hook on this node (or the host mounted at --root): binary, policy (TOML or
    PSA's YAML, with the exempt-*.toml fragments beside it merged in), the node file
    (--own-namespace: the DaemonSet's namespace, exempt under every policy; containerd's
    default handler; the runtime's directories), containerd base specs and config,
    CRI-O/Podman hooks.d.
",
};
const UNINSTALL: Command = Command {
    name: "uninstall",
    usage: "\
pss-guard uninstall [the install options] [--purge]
    Take the hook off again, in reverse order.
",
};
const AUDIT: Command = Command {
    name: "audit",
    usage: "\
pss-guard audit [--root DIR] [--policy FILE] [--level L] [--version V] [--json]
    Decide every running container as the hook would; exit 1 if any would be refused.
",
};
const HEALTH: Command = Command {
    name: "health",
    usage: "\
pss-guard health [--root DIR] [--json] [--bin-path PATH] [--policy-path PATH]
    [--containerd-config PATH] [--hooks-dir DIR] [--proc DIR]
    Whether the hook is wired on this node (the DaemonSet's readiness probe):
    exit 0 healthy, 1 unhealthy.
",
};
const POLICY: Command = Command {
    name: "policy",
    usage: "\
pss-guard policy FILE
    Print the node policy FILE makes (TOML or PSA's YAML, with the exempt-*.toml fragments
    beside it merged in), as install and the agent write it onto a node; exit 0 when it
    loads, 2 when it does not.
",
};
const VERSION: Command = Command {
    name: "version",
    usage: "\
pss-guard version (or --version)
    Print the version.
",
};
const COMMANDS: [&Command; 8] = [
    &HOOK, &CHECK, &INSTALL, &UNINSTALL, &AUDIT, &HEALTH, &POLICY, &VERSION,
];

fn usage() -> String {
    let mut out = String::from("usage:\n");
    for c in COMMANDS {
        for line in c.usage.lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("  pss-guard help [COMMAND]\n");
    out
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    /// The command line is wrong; `command` names the usage to point at.
    #[error("{msg}")]
    Usage {
        msg: String,
        command: Option<&'static str>,
    },
    /// The command ran and failed; printed with its cause chain.
    #[error(transparent)]
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

impl CliError {
    fn usage(command: &Command, msg: impl std::fmt::Display) -> CliError {
        CliError::Usage {
            msg: msg.to_string(),
            command: Some(command.name),
        }
    }

    fn failed(e: impl std::error::Error + Send + Sync + 'static) -> CliError {
        CliError::Failed(Box::new(e))
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(CliError::Usage { msg, command }) => {
            let hint = match command {
                Some(c) => format!("pss-guard {c} --help"),
                None => "pss-guard --help".to_owned(),
            };
            eprintln!("pss-guard: {msg}\n(see '{hint}')");
            ExitCode::from(EXIT_USAGE)
        }
        Err(CliError::Failed(e)) => {
            eprintln!("pss-guard: {}", chain_of(e.as_ref()));
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<u8, CliError> {
    let mut parser = lexopt::Parser::from_env();
    let top = |msg: String| CliError::Usage { msg, command: None };
    let cmd = match parser.next().map_err(|e| top(e.to_string()))? {
        Some(Value(v)) => v.string().map_err(|v| top(format!("{v:?} is not UTF-8")))?,
        Some(Long("help") | Short('h')) => {
            print!("{}", usage());
            return Ok(0);
        }
        Some(Long("version") | Short('V')) => return Ok(version()),
        Some(other) => return Err(top(other.unexpected().to_string())),
        None => return Err(top("a command is required".to_owned())),
    };
    match cmd.as_str() {
        "hook" => Ok(hook_cmd(parser)),
        "check" => check_cmd(parser),
        "install" => install_cmd(parser, &INSTALL),
        "uninstall" => install_cmd(parser, &UNINSTALL),
        "audit" => audit_cmd(parser),
        "health" => health_cmd(parser),
        "policy" => policy_cmd(parser),
        "version" => {
            no_arguments(parser, &VERSION)?;
            Ok(version())
        }
        "help" => help_cmd(parser),
        other => Err(top(format!("unknown command {other:?}"))),
    }
}

fn policy_cmd(mut p: lexopt::Parser) -> Result<u8, CliError> {
    let c = &POLICY;
    let mut file = None;
    while let Some(arg) = p.next().map_err(|e| CliError::usage(c, e))? {
        match arg {
            Long("help") | Short('h') => return Ok(print_usage(c)),
            Value(v) if file.is_none() => file = Some(PathBuf::from(v)),
            other => return Err(CliError::usage(c, other.unexpected())),
        }
    }
    let file = file.ok_or_else(|| CliError::usage(c, "a policy file is required"))?;
    let failed = |e: pss_guard::config::ConfigError| {
        CliError::failed(pss_guard::error::Error::Policy {
            path: file.clone(),
            source: e,
        })
    };
    let text = std::fs::read_to_string(&file)
        .map_err(|e| failed(pss_guard::config::ConfigError::Read(e)))?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let fragments = pss_guard::config::fragments_in(dir).map_err(failed)?;
    let text = pss_guard::config::compose(&text, &fragments).map_err(failed)?;
    Policy::from_text(&text, Some(dir)).map_err(failed)?;
    print!("{text}");
    Ok(0)
}

fn version() -> u8 {
    println!("pss-guard {}", env!("CARGO_PKG_VERSION"));
    0
}

fn help_cmd(mut p: lexopt::Parser) -> Result<u8, CliError> {
    let top = |msg: String| CliError::Usage { msg, command: None };
    match p.next().map_err(|e| top(e.to_string()))? {
        None => print!("{}", usage()),
        Some(Value(v)) => {
            let name = v.to_string_lossy();
            let c = COMMANDS
                .iter()
                .find(|c| c.name == name)
                .ok_or_else(|| top(format!("unknown command {name:?}")))?;
            print!("usage:\n{}", c.usage);
        }
        Some(other) => return Err(top(other.unexpected().to_string())),
    }
    Ok(0)
}

fn print_usage(c: &Command) -> u8 {
    print!("usage:\n{}", c.usage);
    0
}

fn no_arguments(mut p: lexopt::Parser, c: &'static Command) -> Result<(), CliError> {
    match p.next().map_err(|e| CliError::usage(c, e))? {
        None => Ok(()),
        Some(Long("help") | Short('h')) => {
            print_usage(c);
            Ok(())
        }
        Some(other) => Err(CliError::usage(c, other.unexpected())),
    }
}

/// The next argument's value as a string or a parsed type, as a usage error of `c` if it fails.
fn value<T: std::str::FromStr>(p: &mut lexopt::Parser, c: &Command) -> Result<T, CliError>
where
    T::Err: std::fmt::Display,
{
    let raw = p.value().map_err(|e| CliError::usage(c, e))?;
    let s = raw
        .to_str()
        .ok_or_else(|| CliError::usage(c, format!("{raw:?} is not UTF-8")))?;
    s.parse().map_err(|e| CliError::usage(c, e))
}

fn path_value(p: &mut lexopt::Parser, c: &Command) -> Result<PathBuf, CliError> {
    Ok(p.value().map_err(|e| CliError::usage(c, e))?.into())
}

/// Hook mode. `--help` prints the usage and refuses (exit 64) without a decision record: a hook
/// entry that says `--help` must never let a container through, and is not a container's
/// decision. Any other bad argument refuses the container with a logged decision.
fn hook_cmd(mut p: lexopt::Parser) -> u8 {
    let mut args = HookArgs::default();
    let mut bad_args = None;
    let step = |p: &mut lexopt::Parser, args: &mut HookArgs| -> Result<bool, String> {
        let Some(arg) = p.next().map_err(|e| e.to_string())? else {
            return Ok(false);
        };
        match arg {
            Long("help") | Short('h') => return Err("--help".to_owned()),
            Long("policy") => args.policy = p.value().map_err(|e| e.to_string())?.into(),
            Long("runtime") => {
                let r: RuntimeArg = value(p, &HOOK).map_err(|e| e.to_string())?;
                // A hooks.d entry naming cri-o serves Podman too, whose users set any
                // annotation: such entries (written before detection existed) get detection.
                args.runtime = match r {
                    RuntimeArg::Named(Runtime::CriO) => RuntimeArg::Detect,
                    r => r,
                };
            }
            Long("handler") => args.handler = Some(value(p, &HOOK).map_err(|e| e.to_string())?),
            other => return Err(other.unexpected().to_string()),
        }
        Ok(true)
    };
    loop {
        match step(&mut p, &mut args) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) if e == "--help" => {
                print!("usage:\n{}", HOOK.usage);
                return EXIT_USAGE;
            }
            Err(e) => {
                bad_args = Some(e);
                break;
            }
        }
    }
    hook::run(&args, bad_args)
}

/// An explicit policy file must load; the default one may be absent (a workstation), and then
/// the built-in default applies with the reason.
fn load_policy(
    explicit: Option<&Path>,
    default: &Path,
) -> Result<(Policy, Option<String>), CliError> {
    match explicit {
        Some(path) => Policy::load(path).map(|p| (p, None)).map_err(|source| {
            CliError::failed(pss_guard::error::Error::Policy {
                path: path.to_owned(),
                source,
            })
        }),
        None => Ok(Policy::load_or_default(default)),
    }
}

/// `--level`/`--version` override the policy's enforced level, each falling back to the policy's.
fn enforce_override(
    level: Option<Level>,
    version: Option<Version>,
    policy: &Policy,
) -> Option<LevelVersion> {
    (level.is_some() || version.is_some()).then(|| LevelVersion {
        level: level.unwrap_or(policy.enforce.level),
        version: version.unwrap_or(policy.enforce.version),
    })
}

fn check_cmd(mut p: lexopt::Parser) -> Result<u8, CliError> {
    let c = &CHECK;
    let mut path: Option<PathBuf> = None;
    let mut policy_path: Option<PathBuf> = None;
    let (mut level, mut version) = (None, None);
    let mut json = false;
    let mut id: Option<String> = None;
    let mut runtime = RuntimeArg::Named(Runtime::Containerd);
    let mut sandbox_file = None;
    let mut opts = Options::default();
    while let Some(arg) = p.next().map_err(|e| CliError::usage(c, e))? {
        match arg {
            Long("help") | Short('h') => return Ok(print_usage(c)),
            Value(v) if path.is_none() => path = Some(v.into()),
            Long("policy") => policy_path = Some(path_value(&mut p, c)?),
            Long("level") => level = Some(value(&mut p, c)?),
            Long("version") => version = Some(value(&mut p, c)?),
            Long("runtime") => runtime = value(&mut p, c)?,
            Long("handler") => opts.handler = Some(value(&mut p, c)?),
            Long("sandbox") => sandbox_file = Some(path_value(&mut p, c)?),
            Long("offline") => opts.live = false,
            Long("id") => id = Some(value(&mut p, c)?),
            Long("namespace-labels") => {
                let text: String = value(&mut p, c)?;
                opts.namespace_labels = Some(labels(&text).map_err(|e| CliError::usage(c, e))?);
            }
            Long("json") => json = true,
            other => return Err(CliError::usage(c, other.unexpected())),
        }
    }
    let path = path.ok_or_else(|| CliError::usage(c, "check needs a bundle or config.json"))?;
    let (policy, policy_error) =
        load_policy(policy_path.as_deref(), Path::new(DEFAULT_POLICY_PATH))?;
    opts.enforce = enforce_override(level, version, &policy);
    let (bundle, spec_file) = if path.is_dir() {
        (path, None)
    } else {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        (dir, Some(path))
    };
    let bundle = std::path::absolute(&bundle).unwrap_or(bundle);
    let target = Target {
        // The OCI container id, which runtimes use as the bundle directory's name.
        id: id.unwrap_or_else(|| {
            let name = bundle.file_name().unwrap_or_default();
            name.to_string_lossy().into_owned()
        }),
        bundle,
        spec_file,
        sandbox_file,
        runtime,
    };
    let started = Instant::now();
    let loaded = spec::load(&target, &policy.paths);
    let decision = hook::decide(&policy, &opts, loaded, policy_error, started);
    if json {
        println!("{}", decision.to_json());
    } else {
        print!("{}", decision.render_text());
    }
    Ok(decision.kind().exit_code())
}

/// `KEY=VALUE[,KEY=VALUE...]`, as a namespace's labels.
fn labels(text: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    text.split(',')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(format!("--namespace-labels: {kv:?} is not KEY=VALUE")),
        })
        .collect()
}

fn install_cmd(mut p: lexopt::Parser, c: &'static Command) -> Result<u8, CliError> {
    use pss_guard::install::{self, Targets};
    let uninstall = c.name == UNINSTALL.name;
    let mut o = install::Options::default();
    while let Some(arg) = p.next().map_err(|e| CliError::usage(c, e))? {
        match arg {
            Long("help") | Short('h') => return Ok(print_usage(c)),
            Long("root") => o.root = path_value(&mut p, c)?,
            Long("dry-run") => o.dry_run = true,
            Long("restart") => o.restart = true,
            Long("binary") => o.binary_source = Some(path_value(&mut p, c)?),
            Long("policy") => o.policy_source = Some(path_value(&mut p, c)?),
            Long("replace-policy") => o.replace_policy = true,
            Long("own-namespace") => o.own_namespace = Some(value(&mut p, c)?),
            Long("purge") if uninstall => o.purge = true,
            Long("bin-path") => o.bin_path = path_value(&mut p, c)?,
            Long("policy-path") => o.policy_path = path_value(&mut p, c)?,
            Long("containerd-config") => o.containerd_config = path_value(&mut p, c)?,
            Long("containerd-config-version") => o.containerd_version = Some(value(&mut p, c)?),
            Long("spec-dir") => o.spec_dir = path_value(&mut p, c)?,
            Long("hooks-dir") => o.hooks_dir = Some(path_value(&mut p, c)?),
            Long("only") => {
                o.targets = match value::<String>(&mut p, c)?.as_str() {
                    "containerd" => Targets::Containerd,
                    "hooks.d" => Targets::HooksD,
                    other => {
                        let msg = format!("--only {other:?}: expected containerd or hooks.d");
                        return Err(CliError::usage(c, msg));
                    }
                }
            }
            Long("restart-command") => {
                let cmd: String = value(&mut p, c)?;
                o.restart_command = Some(cmd.split_whitespace().map(String::from).collect());
            }
            other => return Err(CliError::usage(c, other.unexpected())),
        }
    }
    for (flag, v) in [
        ("--bin-path", &o.bin_path),
        ("--policy-path", &o.policy_path),
        ("--containerd-config", &o.containerd_config),
        ("--spec-dir", &o.spec_dir),
    ] {
        if !pss_guard::paths::is_clean_absolute(v) {
            return Err(CliError::usage(
                c,
                format!("{flag} {v:?} must be a clean absolute host path"),
            ));
        }
    }
    let outcome = if uninstall {
        install::uninstall(&o)
    } else {
        install::install(&o)
    }
    .map_err(CliError::failed)?;
    print!("{outcome}");
    match outcome.incomplete {
        Some(why) => Err(CliError::Failed(why.into())),
        None => Ok(0),
    }
}

fn audit_cmd(mut p: lexopt::Parser) -> Result<u8, CliError> {
    let c = &AUDIT;
    let mut root = PathBuf::from("/");
    let mut policy_path: Option<PathBuf> = None;
    let (mut level, mut version) = (None, None);
    let mut json = false;
    while let Some(arg) = p.next().map_err(|e| CliError::usage(c, e))? {
        match arg {
            Long("help") | Short('h') => return Ok(print_usage(c)),
            Long("root") => root = path_value(&mut p, c)?,
            Long("policy") => policy_path = Some(path_value(&mut p, c)?),
            Long("level") => level = Some(value(&mut p, c)?),
            Long("version") => version = Some(value(&mut p, c)?),
            Long("json") => json = true,
            other => return Err(CliError::usage(c, other.unexpected())),
        }
    }
    let default = pss_guard::install::files::under(&root, Path::new(DEFAULT_POLICY_PATH));
    let (policy, policy_error) = load_policy(policy_path.as_deref(), &default)?;
    if let Some(e) = &policy_error {
        eprintln!("pss-guard: {e}");
    }
    let enforce = enforce_override(level, version, &policy);
    let shown = enforce.unwrap_or(policy.enforce).to_string();
    let paths = &policy.paths;
    let found = pss_guard::audit::find(
        &root,
        &paths.containerd_state,
        &paths.crio_runroot,
        &paths.crio_root,
    );
    if found.is_empty()
        && let Some(why) = pss_guard::audit::no_runtime_state(
            &root,
            &paths.containerd_state,
            &paths.crio_runroot,
            &paths.crio_root,
        )
    {
        return Err(CliError::Failed(why.into()));
    }
    let entries = pss_guard::audit::audit(&policy, found, enforce);
    if json {
        println!("{}", pss_guard::audit::to_json(&entries, &shown));
    } else {
        print!("{}", pss_guard::audit::render_table(&entries, &shown));
    }
    Ok(pss_guard::audit::exit_code(&entries))
}

fn health_cmd(mut p: lexopt::Parser) -> Result<u8, CliError> {
    let c = &HEALTH;
    let mut o = pss_guard::health::HealthOptions::default();
    let mut json = false;
    while let Some(arg) = p.next().map_err(|e| CliError::usage(c, e))? {
        match arg {
            Long("help") | Short('h') => return Ok(print_usage(c)),
            Long("root") => o.root = path_value(&mut p, c)?,
            Long("bin-path") => o.bin_path = path_value(&mut p, c)?,
            Long("policy-path") => o.policy_path = path_value(&mut p, c)?,
            Long("containerd-config") => o.containerd_config = path_value(&mut p, c)?,
            Long("hooks-dir") => o.hooks_dir = Some(path_value(&mut p, c)?),
            Long("proc") => o.proc_dir = path_value(&mut p, c)?,
            Long("json") => json = true,
            other => return Err(CliError::usage(c, other.unexpected())),
        }
    }
    let report = pss_guard::health::check(&o);
    if json {
        let text = serde_json::to_string(&report).map_err(CliError::failed)?;
        println!("{text}");
    } else {
        print!("{}", report.render_text());
    }
    Ok(u8::from(!report.healthy))
}
