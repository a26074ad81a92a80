//! The agent's command line. Manifests are written against it: options are only ever added.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lexopt::prelude::*;

pub const DEFAULT_LISTEN: &str = "0.0.0.0:9713";
pub const DEFAULT_SNAPSHOT_PATH: &str = "/var/lib/pss-guard/cluster.json";
pub const DEFAULT_API_QPS: f64 = 5.0;
pub const DEFAULT_MAX_RESULTS: usize = 1000;

pub const USAGE: &str = "\
usage: pss-guard-agent [--log FILE] [--position FILE] [--listen ADDR] [--node NAME] [--from-start]
           [--snapshot FILE] [--snapshot-refresh SECS] [--no-watch]
           [--policy-source FILE --policy-dest FILE] [--host-root DIR]
           [--containerd-config FILE] [--own-namespace NS] [--health] [--proc DIR]
           [--reports policyreport|openreports|off] [--events] [--api-qps N]
           [--max-results N] [--audit-interval SECS]

pss-guard's node agent (the DaemonSet's long-running container):
  - follows the hook's decision log and prints every record to stdout, with the node name;
  - serves Prometheus metrics on /metrics, liveness on /healthz, readiness on /readyz;
  - watches Namespaces (metadata) and RuntimeClasses and writes the snapshot the hook reads;
  - copies the mounted policy to the host path the hook reads, when it parses;
  - publishes decisions as PolicyReports and Warning Events (--reports, --events).

  --log FILE              decision log to follow [HOST-ROOT/var/log/pss-guard/decisions.log]
  --listen ADDR           metrics address [0.0.0.0:9713]
  --node NAME             Kubernetes node name put in printed records (downward API)
  --position FILE         where the read position in the log is kept across restarts
                          [HOST-ROOT/var/lib/pss-guard/log-position]
  --from-start            ignore the saved position: print and count the current log from its
                          start (without a saved position it is read from its start anyway)
  --snapshot FILE         snapshot file to write [HOST-ROOT/var/lib/pss-guard/cluster.json]
  --snapshot-refresh SECS rewrite the snapshot at least this often while watches are healthy [300]
  --no-watch              no API server access: no watches, no snapshot
  --policy-source FILE    policy to install (the mounted ConfigMap key); needs --policy-dest
  --policy-dest FILE      where the hook reads its policy (on the host mount)
  --host-root DIR         where the host's root is mounted; the default paths above are under it [/]
  --containerd-config FILE  containerd's config as the host names it; the policy sync sets the
                          policy's [paths] from it, --health checks its handlers
                          [/etc/containerd/config.toml]
  --own-namespace NS      the namespace this DaemonSet runs in (downward API): written to the
                          node file beside --policy-dest, exempt under every policy form
  --health                check the hook's wiring on the host (`pss-guard health`) every 2 s,
                          in /readyz and the metrics
  --proc DIR              the host's /proc, for --health (the pod needs hostPID) [/proc]
  --reports API           publish results per namespace as wgpolicyk8s.io/v1alpha2 PolicyReports
                          (policyreport) or openreports.io/v1alpha1 Reports (openreports) [off];
                          needs --node
  --events                Warning Events on refused pods and their controllers; needs --node
  --api-qps N             at most N API calls per second for reports and Events [5]
  --max-results N         results per report, fails first [1000]
  --audit-interval SECS   decide every running container as `pss-guard audit` does, at start
                          and every SECS, into the reports (0: off) [0]
  --help, --version
";

#[derive(Clone, Debug)]
pub struct Options {
    pub log: PathBuf,
    /// The follower's position file.
    pub position: PathBuf,
    pub listen: SocketAddr,
    pub node: Option<String>,
    pub from_start: bool,
    pub snapshot: PathBuf,
    pub snapshot_refresh: Duration,
    pub watch: bool,
    pub policy: Option<(PathBuf, PathBuf)>,
    pub host_root: PathBuf,
    /// containerd's config, a host path (read under `host_root`).
    pub containerd_config: PathBuf,
    /// The DaemonSet's namespace, for the node file.
    pub own_namespace: Option<String>,
    pub health: bool,
    pub proc_dir: PathBuf,
    pub reports: Option<crate::policyreport::Api>,
    pub events: bool,
    pub api_qps: f64,
    pub max_results: usize,
    /// `None`: no node audit.
    pub audit_interval: Option<Duration>,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Options>),
    Help,
    Version,
}

fn under(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}

fn string(p: &mut lexopt::Parser, name: &str) -> Result<String, String> {
    p.value()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|_| format!("{name}: not UTF-8"))
}

pub fn parse(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<Command, String> {
    let mut p = lexopt::Parser::from_args(args);
    let mut log = None;
    let mut position = None;
    let mut snapshot = None;
    let mut source = None;
    let mut dest = None;
    let mut listen = DEFAULT_LISTEN.parse().map_err(|e| format!("{e}"))?;
    let mut node = None;
    let mut from_start = false;
    let mut watch = true;
    let mut refresh = crate::snapshot::DEFAULT_REFRESH;
    let mut host_root = PathBuf::from("/");
    let mut containerd_config = PathBuf::from(pss_guard::install::DEFAULT_CONTAINERD_CONFIG);
    let mut health = false;
    let mut own_namespace = None;
    let mut proc_dir = PathBuf::from("/proc");
    let mut reports = None;
    let mut events = false;
    let mut api_qps = DEFAULT_API_QPS;
    let mut max_results = DEFAULT_MAX_RESULTS;
    let mut audit_interval = None;
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Long("help") | Short('h') => return Ok(Command::Help),
            Long("version") | Short('V') => return Ok(Command::Version),
            Long("log") => log = Some(PathBuf::from(p.value().map_err(|e| e.to_string())?)),
            Long("position") => {
                position = Some(PathBuf::from(p.value().map_err(|e| e.to_string())?))
            }
            Long("listen") => {
                listen = string(&mut p, "--listen")?
                    .parse()
                    .map_err(|e| format!("--listen: {e}"))?
            }
            Long("node") => node = Some(string(&mut p, "--node")?).filter(|n| !n.is_empty()),
            Long("from-start") => from_start = true,
            Long("snapshot") => {
                snapshot = Some(PathBuf::from(p.value().map_err(|e| e.to_string())?))
            }
            Long("snapshot-refresh") => {
                let s: u64 = string(&mut p, "--snapshot-refresh")?
                    .parse()
                    .map_err(|e| format!("--snapshot-refresh: {e}"))?;
                if s == 0 {
                    return Err("--snapshot-refresh: must be at least 1".into());
                }
                refresh = Duration::from_secs(s);
            }
            Long("no-watch") => watch = false,
            Long("policy-source") => {
                source = Some(PathBuf::from(p.value().map_err(|e| e.to_string())?))
            }
            Long("policy-dest") => {
                dest = Some(PathBuf::from(p.value().map_err(|e| e.to_string())?))
            }
            Long("host-root") => host_root = PathBuf::from(p.value().map_err(|e| e.to_string())?),
            Long("containerd-config") => {
                containerd_config = PathBuf::from(p.value().map_err(|e| e.to_string())?)
            }
            Long("health") => health = true,
            Long("own-namespace") => {
                own_namespace = Some(string(&mut p, "--own-namespace")?).filter(|n| !n.is_empty())
            }
            Long("proc") => proc_dir = PathBuf::from(p.value().map_err(|e| e.to_string())?),
            Long("reports") => {
                let v = string(&mut p, "--reports")?;
                reports = match v.as_str() {
                    "off" => None,
                    other => Some(crate::policyreport::Api::parse(other).ok_or_else(|| {
                        format!("--reports: {other:?} is not policyreport, openreports or off")
                    })?),
                }
            }
            Long("events") => events = true,
            Long("api-qps") => {
                let v: f64 = string(&mut p, "--api-qps")?
                    .parse()
                    .map_err(|e| format!("--api-qps: {e}"))?;
                if !(0.01..=1000.0).contains(&v) {
                    return Err("--api-qps: must be between 0.01 and 1000".into());
                }
                api_qps = v;
            }
            Long("max-results") => {
                let v: usize = string(&mut p, "--max-results")?
                    .parse()
                    .map_err(|e| format!("--max-results: {e}"))?;
                if v == 0 {
                    return Err("--max-results: must be at least 1".into());
                }
                max_results = v;
            }
            Long("audit-interval") => {
                let v: u64 = string(&mut p, "--audit-interval")?
                    .parse()
                    .map_err(|e| format!("--audit-interval: {e}"))?;
                audit_interval = (v > 0).then(|| Duration::from_secs(v));
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    let policy = match (source, dest) {
        (Some(s), Some(d)) => Some((s, d)),
        (None, None) => None,
        _ => return Err("--policy-source and --policy-dest go together".into()),
    };
    if audit_interval.is_some() && reports.is_none() {
        return Err(
            "--audit-interval: the node audit writes into the reports; give --reports".into(),
        );
    }
    if (reports.is_some() || events) && node.is_none() {
        return Err("--reports and --events need --node (the reports and Events name it)".into());
    }
    if (reports.is_some() || events) && !watch {
        return Err(
            "--reports and --events write to the API server; --no-watch says there is none".into(),
        );
    }
    Ok(Command::Run(Box::new(Options {
        log: log.unwrap_or_else(|| under(&host_root, pss_guard::config::DEFAULT_LOG_PATH)),
        position: position.unwrap_or_else(|| crate::position::default_path(&host_root)),
        snapshot: snapshot.unwrap_or_else(|| under(&host_root, DEFAULT_SNAPSHOT_PATH)),
        listen,
        node,
        from_start,
        snapshot_refresh: refresh,
        watch,
        policy,
        host_root,
        containerd_config,
        own_namespace,
        health,
        proc_dir,
        reports,
        events,
        api_qps,
        max_results,
        audit_interval,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options, String> {
        match parse(args.iter().map(std::ffi::OsString::from))? {
            Command::Run(o) => Ok(*o),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn defaults_are_the_documented_paths() {
        let o = run(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.log, Path::new("/var/log/pss-guard/decisions.log"));
        assert_eq!(o.snapshot, Path::new("/var/lib/pss-guard/cluster.json"));
        assert_eq!(o.position, Path::new("/var/lib/pss-guard/log-position"));
        assert_eq!(o.listen.to_string(), "0.0.0.0:9713");
        assert!(o.watch && o.policy.is_none());
    }

    #[test]
    fn host_root_moves_only_the_default_paths() {
        let o =
            run(&["--host-root", "/host", "--log", "/l/d.log"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.log, Path::new("/l/d.log"));
        assert_eq!(
            o.snapshot,
            Path::new("/host/var/lib/pss-guard/cluster.json")
        );
        assert_eq!(
            o.position,
            Path::new("/host/var/lib/pss-guard/log-position")
        );
    }

    #[test]
    fn policy_source_without_dest_is_an_error() {
        assert!(run(&["--policy-source", "/config/policy.toml"]).is_err());
        assert!(run(&["--listen", "nowhere"]).is_err());
        assert!(run(&["--bogus"]).is_err());
    }

    #[test]
    fn publishing_needs_a_node_and_the_api() {
        assert!(run(&["--reports", "policyreport"]).is_err());
        assert!(run(&["--events", "--node", "n1", "--no-watch"]).is_err());
        assert!(run(&["--reports", "wgpolicy", "--node", "n1"]).is_err());
        assert!(run(&["--api-qps", "0", "--node", "n1"]).is_err());
        assert!(run(&["--audit-interval", "60", "--node", "n1", "--events"]).is_err());
        let o = run(&[
            "--reports",
            "openreports",
            "--node",
            "n1",
            "--api-qps",
            "2.5",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.reports, Some(crate::policyreport::Api::OpenReports));
        assert_eq!((o.api_qps, o.max_results, o.events), (2.5, 1000, false));
    }
}
