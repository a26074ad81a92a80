//! Hook mode and the evaluation shared with `check`: state -> spec(s) -> identity -> exemptions
//! -> facts -> reports -> decision. Every failure becomes an `Error` decision, which refuses the
//! container: the hook fails closed.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::config::{Policy, Unidentified};
use crate::error::Error;
use crate::policy::{self, Ambiguity, LevelVersion};
use crate::report::{Decision, Kind};
use crate::spec::{self, Identity, Runtime, raw::RawSpec};

/// How long the hook waits for the runtime to write the state on stdin.
pub const STDIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The hook kills itself after this many seconds whatever it is doing; runtimes treat that as a
/// failed hook, so even a hang fails closed. Kept below the installed hook timeout (10 s).
pub const HARD_DEADLINE_SECS: u32 = 8;

/// What the caller knows beyond the policy file.
#[derive(Clone, Debug)]
pub struct Options {
    pub runtime: Runtime,
    /// The runtime handler this hook is installed for (`--handler`), for handler exemptions.
    pub handler: Option<String>,
    /// Overrides the policy's enforced level and version (`check --level/--version`).
    pub enforce: Option<LevelVersion>,
    /// Spec paths name live processes (hook mode, or `check` on a running container's bundle).
    pub live: bool,
    /// An explicit sandbox spec (`check --sandbox`), instead of finding the sandbox bundle.
    pub sandbox_file: Option<PathBuf>,
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

/// A decision that only says what failed.
fn error_decision(policy: &Policy, opts: &Options, identity: Identity, e: &Error) -> Decision {
    Decision {
        kind: Kind::Error,
        identity,
        enforce: opts.enforce.unwrap_or(policy.enforce),
        report: None,
        audit: None,
        exempt: None,
        error: Some(e.chain()),
        policy_error: None,
        note: None,
        eval_us: 0,
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

/// Evaluates one container whose spec is already parsed. An exempt container stays exempt
/// even when it cannot be evaluated: the system namespace and pss-guard's own pods always start.
pub fn decide(
    policy: &Policy,
    opts: &Options,
    spec: &RawSpec,
    identity: Identity,
    bundle: &Path,
) -> Decision {
    let started = Instant::now();
    let exempt = exemption(policy, opts, &identity);
    let mut d = match evaluate(policy, opts, spec, &identity, bundle) {
        Ok((report, audit)) => {
            let kind = if exempt.is_some() {
                Kind::Exempt
            } else if !report.allowed() {
                Kind::Refused
            } else if audit.as_ref().is_some_and(|a| !a.allowed()) {
                Kind::Audit
            } else {
                Kind::Allowed
            };
            Decision {
                kind,
                note: identity.note.clone(),
                identity,
                enforce: report.policy,
                report: Some(report),
                audit,
                exempt: None,
                error: None,
                policy_error: None,
                eval_us: 0,
            }
        }
        Err(e) => {
            let mut d = error_decision(policy, opts, identity, &e);
            if exempt.is_some() {
                d.kind = Kind::Exempt;
            }
            d
        }
    };
    d.exempt = exempt;
    d.eval_us = started.elapsed().as_micros() as u64;
    d
}

fn evaluate(
    policy: &Policy,
    opts: &Options,
    spec: &RawSpec,
    identity: &Identity,
    bundle: &Path,
) -> Result<(policy::Report, Option<policy::Report>), Error> {
    let sandbox_bundle = spec::sandbox_bundle(opts.runtime, bundle, identity);
    let sandbox = match (&opts.sandbox_file, &sandbox_bundle) {
        (Some(f), _) => Some(spec::load_spec_file(f)),
        (None, Some(b)) => Some(spec::load_bundle_spec(b)),
        (None, None) => None,
    }
    .transpose()
    .map_err(|e| {
        let sid = identity.kube.as_ref().map(|k| k.sandbox_id.clone());
        Error::SandboxSpec(sid.unwrap_or_default(), Box::new(e))
    })?;
    // A pod's app container without its sandbox spec would pass with its pod sysctls unseen.
    if sandbox.is_none()
        && opts.runtime != spec::Runtime::None
        && let Some(k) = identity.kube.as_ref().filter(|k| !k.is_sandbox)
    {
        return Err(Error::NoSandboxBundle(k.sandbox_id.clone()));
    }
    let input = spec::Input {
        spec,
        identity,
        bundle,
        sandbox: sandbox.as_ref(),
        sandbox_bundle: sandbox_bundle.as_deref(),
        live: opts.live,
    };
    let facts = spec::collect(&input, policy)?;
    let ambiguity = Ambiguity {
        seccomp_absent: policy.seccomp_absent,
        legacy_volumes: policy.legacy_volumes,
    };
    let name = identity.container_name();
    let run = |lv| policy::evaluate(&facts, lv, name, ambiguity, policy.runtime_default_caps);
    let report = run(opts.enforce.unwrap_or(policy.enforce));
    let audit = policy.audit.map(run);
    Ok((report, audit))
}

/// Reads the state and the bundle's spec, then decides.
pub fn decide_from_state(
    policy: &Policy,
    opts: &Options,
    state: Result<Vec<u8>, Error>,
) -> Decision {
    let started = Instant::now();
    let mut container_id = String::new();
    let loaded = (|| -> Result<_, Error> {
        let state = spec::parse_state(&state?)?;
        container_id.clone_from(state.id());
        let spec = spec::load_bundle_spec(state.bundle())?;
        Ok((spec, state))
    })();
    match loaded {
        Ok((spec, state)) => {
            let identity = spec::identity::identify(opts.runtime, state.id(), &spec);
            decide(policy, opts, &spec, identity, state.bundle())
        }
        Err(e) => {
            let identity = Identity {
                container_id,
                ..Identity::default()
            };
            let mut d = error_decision(policy, opts, identity, &e);
            d.eval_us = started.elapsed().as_micros() as u64;
            d
        }
    }
}

/// The whole hook: read, decide, log, report. Returns the process exit code.
/// `bad_args` is set when the hook's own arguments could not be parsed: the container is then
/// refused as "could not evaluate", logged like any other decision.
pub fn run(policy_path: &Path, opts: &Options, bad_args: Option<String>) -> u8 {
    // A last resort against any hang (a stuck mount source, say): SIGALRM's default action ends
    // the process, and the runtime refuses the container.
    let _ = nix::unistd::alarm::set(HARD_DEADLINE_SECS);
    // Log files are created 0640 whatever umask the runtime passed down.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o027));
    let (policy, policy_error) = Policy::load_or_default(policy_path);
    let state = match bad_args {
        Some(msg) => Err(Error::HookArguments(msg)),
        None => read_state(std::io::stdin().lock(), STDIN_TIMEOUT),
    };
    let mut d = decide_from_state(&policy, opts, state);
    d.policy_error = policy_error;
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
    d.kind.exit_code()
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
        let spec: RawSpec = serde_json::from_str(
            r#"{"process":{"user":{"uid":1000}},"linux":{"namespaces":[{"type":"network"},{"type":"pid"},{"type":"ipc"}]},
            "annotations":{"io.kubernetes.cri.container-type":"container","io.kubernetes.cri.container-name":"app",
            "io.kubernetes.cri.sandbox-id":"..","io.kubernetes.cri.sandbox-name":"web",
            "io.kubernetes.cri.sandbox-namespace":"default","io.kubernetes.cri.sandbox-uid":"u1"}}"#,
        )
        .unwrap();
        let opts = Options {
            runtime: Runtime::Containerd,
            handler: None,
            enforce: None,
            live: true,
            sandbox_file: None,
        };
        let policy = Policy::default();
        let id = spec::identity::identify(Runtime::Containerd, "c1", &spec);
        let d = decide(&policy, &opts, &spec, id, Path::new("/run/k8s.io/c1"));
        assert_eq!(d.kind, Kind::Error, "{d:?}");
        assert!(d.error.unwrap().contains("names no sandbox bundle"));
    }

    #[test]
    fn forged_runtime_keys_never_earn_the_unidentified_exemption() {
        // CRI-O: the pod's own annotations name a runtime key, so the identity is voided.
        let spec: RawSpec = serde_json::from_str(
            r#"{"process":{"user":{"uid":0}},"annotations":{
            "io.kubernetes.cri-o.Labels":"{\"io.kubernetes.pod.namespace\":\"default\",\"io.kubernetes.pod.name\":\"web\",\"io.kubernetes.container.name\":\"app\"}",
            "io.kubernetes.cri-o.SandboxID":"sb1",
            "io.kubernetes.cri-o.Annotations":"{\"io.kubernetes.pod.namespace\":\"x\"}"}}"#,
        )
        .unwrap();
        let id = spec::identity::identify(Runtime::CriO, "c1", &spec);
        assert!(id.kube.is_none() && id.note.is_some(), "{id:?}");
        let policy = Policy::from_toml("unidentified = \"allow\"\n").unwrap();
        let opts = Options {
            runtime: Runtime::CriO,
            handler: None,
            enforce: None,
            live: true,
            sandbox_file: None,
        };
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
