//! `pss-guard`: parse argv, call into the library, map the outcome to an exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use lexopt::prelude::*;
use pss_guard::config::{DEFAULT_POLICY_PATH, Policy};
use pss_guard::hook::{self, Options};
use pss_guard::policy::{Level, LevelVersion, Version};
use pss_guard::spec::{self, Runtime};

const USAGE: &str = "\
usage:
  pss-guard hook [--policy FILE] [--runtime containerd|cri-o|none] [--handler NAME]
      Run as an OCI createRuntime/prestart hook: the state on stdin, exit 0 allowed,
      1 refused, 2 could not evaluate (refused).
  pss-guard check <BUNDLE-DIR | config.json> [--policy FILE] [--level baseline|restricted]
      [--version v1.N|latest] [--runtime containerd|cri-o|none] [--sandbox FILE]
      [--id CONTAINER-ID] [--offline] [--json]
      Evaluate a spec and print every check. Same exit codes.
  pss-guard install [--root DIR] [--dry-run] [--restart] [--binary FILE] [--policy FILE]
      [--replace-policy] [--bin-path PATH] [--policy-path PATH] [--containerd-config PATH]
      [--containerd-config-version 2|3] [--spec-dir DIR] [--hooks-dir DIR]
      [--only containerd|hooks.d] [--restart-command CMD]
      Put the hook on this node (or the host mounted at --root): binary, policy,
      containerd base specs and config, CRI-O/Podman hooks.d.
  pss-guard uninstall [same options] [--purge]
      Take it off again, in reverse order.
  pss-guard audit [--root DIR] [--policy FILE] [--level L] [--version V] [--json]
      Decide every running container as the hook would; exit 1 if any would be refused.
  pss-guard health [--root DIR] [--json] [--bin-path PATH] [--policy-path PATH]
      [--containerd-config PATH] [--hooks-dir DIR] [--proc DIR]
      Whether the hook is wired on this node: exit 0 healthy, 1 unhealthy.
  pss-guard serve [--log FILE] [--listen ADDR] [--node NAME] [--from-start]
      Follow the decision log to stdout and serve Prometheus metrics on /metrics.
  pss-guard version
";

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("pss-guard: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<u8, String> {
    let mut parser = lexopt::Parser::from_env();
    let cmd = match parser.next().map_err(|e| e.to_string())? {
        Some(Value(v)) => v.string().map_err(|e| e.to_string())?,
        Some(Long("help")) | Some(Short('h')) => {
            print!("{USAGE}");
            return Ok(0);
        }
        _ => return Err(format!("a command is required\n{USAGE}")),
    };
    match cmd.as_str() {
        "hook" => hook_cmd(parser),
        "check" => check_cmd(parser),
        "install" => install_cmd(parser, false),
        "uninstall" => install_cmd(parser, true),
        "audit" => audit_cmd(parser),
        "serve" => serve_cmd(parser),
        "health" => health_cmd(parser),
        "version" => {
            println!("pss-guard {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    }
}

fn parsed<T: std::str::FromStr<Err = String>>(p: &mut lexopt::Parser) -> Result<T, String> {
    string(p)?.parse()
}

/// An explicit policy file must load; the default one may be absent (a workstation), and then
/// the built-in default applies with the reason.
fn load_policy(
    explicit: Option<&std::path::Path>,
    default: &std::path::Path,
) -> Result<(Policy, Option<String>), String> {
    match explicit {
        Some(path) => Policy::load(path).map(|p| (p, None)).map_err(|e| {
            pss_guard::error::Error::Policy {
                path: path.to_owned(),
                source: e,
            }
            .chain()
        }),
        None => Ok(Policy::load_or_default(default)),
    }
}

fn string(p: &mut lexopt::Parser) -> Result<String, String> {
    p.value()
        .map_err(|e| e.to_string())?
        .string()
        .map_err(|e| e.to_string())
}

fn hook_cmd(mut p: lexopt::Parser) -> Result<u8, String> {
    let mut policy = PathBuf::from(DEFAULT_POLICY_PATH);
    let mut opts = Options {
        runtime: Runtime::Containerd,
        handler: None,
        enforce: None,
        live: true,
        sandbox_file: None,
    };
    // A hook that cannot understand its own arguments refuses the container like any other
    // failure: one stderr line and an error record in the log.
    let mut bad_args = None;
    loop {
        let arg = match p.next() {
            Ok(Some(arg)) => arg,
            Ok(None) => break,
            Err(e) => {
                bad_args = Some(e.to_string());
                break;
            }
        };
        let step = match arg {
            Long("policy") => p
                .value()
                .map(|v| policy = v.into())
                .map_err(|e| e.to_string()),
            Long("runtime") => parsed(&mut p).map(|r| opts.runtime = r),
            Long("handler") => string(&mut p).map(|h| opts.handler = Some(h)),
            other => Err(other.unexpected().to_string()),
        };
        if let Err(e) = step {
            bad_args = Some(e);
            break;
        }
    }
    Ok(hook::run(&policy, &opts, bad_args))
}

fn check_cmd(mut p: lexopt::Parser) -> Result<u8, String> {
    let mut target: Option<PathBuf> = None;
    let mut policy_path: Option<PathBuf> = None;
    let mut level: Option<Level> = None;
    let mut version: Option<Version> = None;
    let mut json = false;
    let mut id: Option<String> = None;
    let mut opts = Options {
        runtime: Runtime::Containerd,
        handler: None,
        enforce: None,
        live: true,
        sandbox_file: None,
    };
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Value(v) if target.is_none() => target = Some(v.into()),
            Long("policy") => policy_path = Some(p.value().map_err(|e| e.to_string())?.into()),
            Long("level") => level = Some(parsed(&mut p)?),
            Long("version") => version = Some(parsed(&mut p)?),
            Long("runtime") => opts.runtime = parsed(&mut p)?,
            Long("handler") => opts.handler = Some(string(&mut p)?),
            Long("sandbox") => {
                opts.sandbox_file = Some(p.value().map_err(|e| e.to_string())?.into())
            }
            Long("offline") => opts.live = false,
            Long("id") => id = Some(string(&mut p)?),
            Long("json") => json = true,
            other => return Err(other.unexpected().to_string()),
        }
    }
    let target = target.ok_or_else(|| format!("check needs a bundle or config.json\n{USAGE}"))?;
    // An explicit policy file must load; the default path may be absent (a workstation).
    let (policy, policy_error) = load_policy(
        policy_path.as_deref(),
        std::path::Path::new(DEFAULT_POLICY_PATH),
    )?;
    if level.is_some() || version.is_some() {
        opts.enforce = Some(LevelVersion {
            level: level.unwrap_or(policy.enforce.level),
            version: version.unwrap_or(policy.enforce.version),
        });
    }
    let (bundle, spec) = if target.is_dir() {
        let s = spec::load_bundle_spec(&target);
        (target.clone(), s)
    } else {
        let bundle = target
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_else(|| PathBuf::from("."));
        (bundle, spec::load_spec_file(&target))
    };
    let bundle = std::path::absolute(&bundle).unwrap_or(bundle);
    // The OCI container ID, which runtimes use as the bundle directory's name.
    let id = id.unwrap_or_else(|| {
        bundle
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let mut decision = match spec {
        Ok(spec) => {
            let identity = spec::identity::identify(opts.runtime, &id, &spec);
            hook::decide(&policy, &opts, &spec, identity, &bundle)
        }
        Err(e) => hook::decide_from_state(&policy, &opts, Err(e)),
    };
    decision.policy_error = policy_error;
    if json {
        println!("{}", decision.to_json());
    } else {
        print!("{}", decision.render_text());
    }
    Ok(decision.kind.exit_code())
}

fn install_cmd(mut p: lexopt::Parser, uninstall: bool) -> Result<u8, String> {
    use pss_guard::install::{self, Targets};
    let mut o = install::Options::default();
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        let path = |p: &mut lexopt::Parser| -> Result<PathBuf, String> {
            Ok(p.value().map_err(|e| e.to_string())?.into())
        };
        match arg {
            Long("root") => o.root = path(&mut p)?,
            Long("dry-run") => o.dry_run = true,
            Long("restart") => o.restart = true,
            Long("binary") => o.binary_source = Some(path(&mut p)?),
            Long("policy") => o.policy_source = Some(path(&mut p)?),
            Long("replace-policy") => o.replace_policy = true,
            Long("purge") if uninstall => o.purge = true,
            Long("bin-path") => o.bin_path = path(&mut p)?,
            Long("policy-path") => o.policy_path = path(&mut p)?,
            Long("containerd-config") => o.containerd_config = path(&mut p)?,
            Long("containerd-config-version") => o.containerd_version = Some(parsed(&mut p)?),
            Long("spec-dir") => o.spec_dir = path(&mut p)?,
            Long("hooks-dir") => o.hooks_dir = Some(path(&mut p)?),
            Long("only") => {
                o.targets = match string(&mut p)?.as_str() {
                    "containerd" => Targets::Containerd,
                    "hooks.d" => Targets::HooksD,
                    other => {
                        return Err(format!("--only {other:?}: expected containerd or hooks.d"));
                    }
                }
            }
            Long("restart-command") => {
                o.restart_command = Some(
                    string(&mut p)?
                        .split_whitespace()
                        .map(String::from)
                        .collect(),
                )
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    for (flag, v) in [
        ("--bin-path", &o.bin_path),
        ("--policy-path", &o.policy_path),
        ("--containerd-config", &o.containerd_config),
        ("--spec-dir", &o.spec_dir),
    ] {
        if !spec::is_clean_absolute(v) {
            return Err(format!("{flag} {v:?} must be a clean absolute host path"));
        }
    }
    let result = if uninstall {
        install::uninstall(&o)
    } else {
        install::install(&o)
    };
    let outcome = result.map_err(|e| pss_guard::error::chain_of(&e))?;
    print!("{outcome}");
    match outcome.incomplete {
        Some(why) => Err(why),
        None => Ok(0),
    }
}

fn audit_cmd(mut p: lexopt::Parser) -> Result<u8, String> {
    let mut root = PathBuf::from("/");
    let mut policy_path: Option<PathBuf> = None;
    let mut level: Option<Level> = None;
    let mut version: Option<Version> = None;
    let mut json = false;
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Long("root") => root = p.value().map_err(|e| e.to_string())?.into(),
            Long("policy") => policy_path = Some(p.value().map_err(|e| e.to_string())?.into()),
            Long("level") => level = Some(parsed(&mut p)?),
            Long("version") => version = Some(parsed(&mut p)?),
            Long("json") => json = true,
            other => return Err(other.unexpected().to_string()),
        }
    }
    let (policy, policy_error) = load_policy(
        policy_path.as_deref(),
        &pss_guard::install::files::under(&root, std::path::Path::new(DEFAULT_POLICY_PATH)),
    )?;
    if let Some(e) = &policy_error {
        eprintln!("pss-guard: {e}");
    }
    let enforce = (level.is_some() || version.is_some()).then(|| LevelVersion {
        level: level.unwrap_or(policy.enforce.level),
        version: version.unwrap_or(policy.enforce.version),
    });
    let shown = enforce.unwrap_or(policy.enforce).to_string();
    let found = pss_guard::audit::find(
        &root,
        &policy.paths.containerd_state,
        &policy.paths.crio_runroot,
        &policy.paths.crio_root,
    );
    if found.is_empty()
        && let Some(why) = pss_guard::audit::no_runtime_state(
            &root,
            &policy.paths.containerd_state,
            &policy.paths.crio_runroot,
            &policy.paths.crio_root,
        )
    {
        return Err(why);
    }
    let entries = pss_guard::audit::audit(&policy, found, enforce);
    if json {
        println!("{}", pss_guard::audit::to_json(&entries, &shown));
    } else {
        print!("{}", pss_guard::audit::render_table(&entries, &shown));
    }
    Ok(pss_guard::audit::exit_code(&entries))
}

fn serve_cmd(mut p: lexopt::Parser) -> Result<u8, String> {
    use pss_guard::serve::{self, ServeOptions};
    let mut o = ServeOptions {
        log: pss_guard::config::DEFAULT_LOG_PATH.into(),
        listen: serve::DEFAULT_LISTEN
            .parse()
            .map_err(|e: std::net::AddrParseError| e.to_string())?,
        node: None,
        from_start: false,
        poll: std::time::Duration::from_millis(200),
    };
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Long("log") => o.log = p.value().map_err(|e| e.to_string())?.into(),
            Long("listen") => {
                o.listen = string(&mut p)?
                    .parse()
                    .map_err(|e: std::net::AddrParseError| format!("--listen: {e}"))?
            }
            Long("node") => o.node = Some(string(&mut p)?).filter(|n| !n.is_empty()),
            Long("from-start") => o.from_start = true,
            other => return Err(other.unexpected().to_string()),
        }
    }
    serve::run(o).map_err(|e| pss_guard::error::chain_of(&e))?;
    Ok(0)
}

fn health_cmd(mut p: lexopt::Parser) -> Result<u8, String> {
    let mut o = pss_guard::health::HealthOptions::default();
    let mut json = false;
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        let path = |p: &mut lexopt::Parser| -> Result<PathBuf, String> {
            Ok(p.value().map_err(|e| e.to_string())?.into())
        };
        match arg {
            Long("root") => o.root = path(&mut p)?,
            Long("bin-path") => o.bin_path = path(&mut p)?,
            Long("policy-path") => o.policy_path = path(&mut p)?,
            Long("containerd-config") => o.containerd_config = path(&mut p)?,
            Long("hooks-dir") => o.hooks_dir = Some(path(&mut p)?),
            Long("proc") => o.proc_dir = path(&mut p)?,
            Long("json") => json = true,
            other => return Err(other.unexpected().to_string()),
        }
    }
    let report = pss_guard::health::check(&o);
    if json {
        println!(
            "{}",
            serde_json::to_string(&report).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", report.render_text());
    }
    Ok(u8::from(!report.healthy))
}
