//! kubelet-sim CLI: run, extend and stop pods through a CRI socket like kubelet would.
//! Prints a JSON result on stdout; exit 0 = every container started (or pod stopped),
//! 1 = something was refused, 2 = kubelet-sim itself failed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use k8s_openapi::api::core::v1::EphemeralContainer;
use kubelet_sim::runner::chain;
use kubelet_sim::{Kubelet, Options, Source};

const USAGE: &str = "usage:
  kubelet-sim run-pod   --socket S --kubelet-root K [--static] [--runtime-handler H]
                        [--init-timeout SECS] [--allowed-unsafe-sysctl NAME]... [--seccomp-default] POD.yaml
  kubelet-sim ephemeral --socket S --kubelet-root K --sandbox-id ID --pod POD.yaml CONTAINER.yaml
  kubelet-sim stop-pod  --socket S --kubelet-root K SANDBOX_ID";

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("{0}\n{USAGE}")]
    Usage(String),
    #[error(transparent)]
    Args(#[from] lexopt::Error),
    #[error("cannot read {}", .0.display())]
    Read(PathBuf, #[source] std::io::Error),
    #[error(transparent)]
    Sim(#[from] kubelet_sim::Error),
    #[error("cannot parse ephemeral container")]
    Ephemeral(#[source] serde_yaml::Error),
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
}

#[derive(Default)]
struct Args {
    command: String,
    socket: Option<PathBuf>,
    kubelet_root: Option<PathBuf>,
    static_pod: bool,
    runtime_handler: Option<String>,
    init_timeout: Option<u64>,
    unsafe_sysctls: Vec<String>,
    seccomp_default: bool,
    sandbox_id: Option<String>,
    pod: Option<PathBuf>,
    positional: Vec<String>,
}

fn parse() -> Result<Args, CliError> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    let mut a = Args::default();
    while let Some(arg) = p.next()? {
        match arg {
            Long("socket") => a.socket = Some(p.value()?.into()),
            Long("kubelet-root") => a.kubelet_root = Some(p.value()?.into()),
            Long("static") => a.static_pod = true,
            Long("runtime-handler") => a.runtime_handler = Some(p.value()?.string()?),
            Long("init-timeout") => a.init_timeout = Some(p.value()?.parse()?),
            Long("allowed-unsafe-sysctl") => a.unsafe_sysctls.push(p.value()?.string()?),
            Long("seccomp-default") => a.seccomp_default = true,
            Long("sandbox-id") => a.sandbox_id = Some(p.value()?.string()?),
            Long("pod") => a.pod = Some(p.value()?.into()),
            Long("help") | Short('h') => return Err(CliError::Usage(String::new())),
            Value(v) if a.command.is_empty() => a.command = v.string()?,
            Value(v) => a.positional.push(v.string()?),
            _ => return Err(arg.unexpected().into()),
        }
    }
    Ok(a)
}

fn read(path: &PathBuf) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|e| CliError::Read(path.clone(), e))
}

fn required<T: Clone>(v: &Option<T>, flag: &str) -> Result<T, CliError> {
    v.clone()
        .ok_or_else(|| CliError::Usage(format!("missing {flag}")))
}

async fn run(a: Args) -> Result<bool, CliError> {
    if !matches!(a.command.as_str(), "run-pod" | "ephemeral" | "stop-pod") {
        return Err(CliError::Usage(format!("unknown command {:?}", a.command)));
    }
    let socket = required(&a.socket, "--socket")?;
    let mut opts = Options::new(required(&a.kubelet_root, "--kubelet-root")?);
    opts.runtime_handler = a.runtime_handler.clone();
    opts.seccomp_default = a.seccomp_default;
    opts.allowed_unsafe_sysctls = a.unsafe_sysctls.clone();
    if let Some(t) = a.init_timeout {
        opts.init_timeout = Duration::from_secs(t);
    }
    let mut k = Kubelet::connect(&socket, opts).await?;
    let one = |what: &str| -> Result<String, CliError> {
        match a.positional.as_slice() {
            [x] => Ok(x.clone()),
            _ => Err(CliError::Usage(format!("expected exactly one {what}"))),
        }
    };
    match a.command.as_str() {
        "run-pod" => {
            let path = PathBuf::from(one("POD.yaml")?);
            let source = if a.static_pod {
                Source::Static
            } else {
                Source::ApiServer
            };
            let m = kubelet_sim::load(&read(&path)?, source)?;
            let expected = m.pod.spec.as_ref().map_or(0, |s| {
                s.containers.len() + s.init_containers.as_ref().map_or(0, Vec::len)
            });
            let run = k.run_pod(&m).await?;
            println!("{}", serde_json::to_string_pretty(&run).unwrap_or_default());
            Ok(run.all_started(expected))
        }
        "ephemeral" => {
            let path = PathBuf::from(one("CONTAINER.yaml")?);
            let ec: EphemeralContainer =
                serde_yaml::from_str(&read(&path)?).map_err(CliError::Ephemeral)?;
            let m = kubelet_sim::load(&read(&required(&a.pod, "--pod")?)?, Source::ApiServer)?;
            let sandbox = required(&a.sandbox_id, "--sandbox-id")?;
            let cr = k.run_ephemeral(&m, &sandbox, &ec).await?;
            println!("{}", serde_json::to_string_pretty(&cr).unwrap_or_default());
            Ok(cr.started)
        }
        "stop-pod" => {
            k.stop_pod(&one("SANDBOX_ID")?).await?;
            Ok(true)
        }
        other => Err(CliError::Usage(format!("unknown command {other:?}"))),
    }
}

fn main() -> ExitCode {
    let result = parse().and_then(|a| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(CliError::Runtime)?
            .block_on(run(a))
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("kubelet-sim: {}", chain(&e));
            ExitCode::from(2)
        }
    }
}
