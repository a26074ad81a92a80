//! Hook mode and the decision shared with `check` and `audit`: state -> [`spec::load`] ->
//! exemptions -> [`spec::collect`] -> reports -> [`Decision`] -> log and exit code. Every failure
//! becomes a [`Verdict::Failed`], which refuses the container: the hook fails closed.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::config::{Policy, Unidentified};
use crate::error::Error;
use crate::policy::{self, Ambiguity, LevelVersion};
use crate::report::{Decision, Evaluation, Verdict};
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
    /// Overrides the policy's enforced level and version (`check --level/--version`).
    pub enforce: Option<LevelVersion>,
    /// The spec belongs to a container being created now (hook mode, or `check` on a running
    /// container's bundle), so its `/proc/<pid>` paths and mount sources are current.
    pub live: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            handler: None,
            enforce: None,
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

/// Why this container is exempt, judged only from runtime-set metadata and the hook's args.
fn exemption(policy: &Policy, opts: &Options, identity: &Identity) -> Option<String> {
    if let Some(h) = &opts.handler
        && policy.exempt_runtime_handlers.contains(h)
    {
        return Some(format!("runtime handler {h:?}"));
    }
    match &identity.kube {
        Some(k) if policy.exempt_namespaces.contains(&k.namespace) => {
            Some(format!("namespace {:?}", k.namespace))
        }
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

/// Decides one container: the one place a [`Decision`] is made. An exempt container stays
/// exempt even when it cannot be evaluated: the system namespace always starts.
pub fn decide(
    policy: &Policy,
    opts: &Options,
    loaded: Result<Loaded, Box<LoadError>>,
    policy_error: Option<String>,
    started: Instant,
) -> Decision {
    let (identity, evaluation) = match loaded {
        Ok(l) => {
            let evaluation = evaluate(policy, opts, &l).map_err(|e| e.chain());
            (l.identity, evaluation)
        }
        Err(e) => (e.identity, Err(e.error.chain())),
    };
    let verdict = match (exemption(policy, opts, &identity), evaluation) {
        (Some(why), evaluation) => Verdict::Exempt { why, evaluation },
        (None, Ok(e)) => Verdict::Evaluated(e),
        (None, Err(e)) => Verdict::Failed(e),
    };
    Decision {
        identity,
        enforce: opts.enforce.unwrap_or(policy.enforce),
        verdict,
        policy_error,
        eval_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
    }
}

fn evaluate(policy: &Policy, opts: &Options, loaded: &Loaded) -> Result<Evaluation, Error> {
    let facts = spec::collect(loaded, policy, opts.live)?;
    let ambiguity = Ambiguity {
        seccomp_absent: policy.seccomp_absent,
        legacy_volumes: policy.legacy_volumes,
    };
    let name = loaded.identity.container_name();
    let run = |lv| policy::evaluate(&facts, lv, name, ambiguity, policy.runtime_default_caps);
    Ok(Evaluation {
        report: run(opts.enforce.unwrap_or(policy.enforce)),
        audit: policy.audit.map(run),
    })
}

/// The container the runtime's state names.
pub fn load_from_state(
    state: Result<Vec<u8>, Error>,
    runtime: RuntimeArg,
    policy: &Policy,
) -> Result<Loaded, Box<LoadError>> {
    let unknown = |error| {
        Box::new(LoadError {
            identity: Identity::default(),
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
        assert_eq!(exemption(&policy, &opts, &id), None);
        let plain = Identity {
            container_id: "c1".into(),
            ..Identity::default()
        };
        assert!(exemption(&policy, &opts, &plain).is_some());
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
