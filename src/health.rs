//! `pss-guard health`: whether the hook is really wired on this node, as a report a readiness
//! probe (exit code) and the agent's metrics (JSON) can both use. Each statement is checked on
//! the files the runtime itself reads, not on what the installer remembers writing:
//!
//! - the hook binary is present, a regular executable file, built for this node's CPU;
//! - every containerd runtime handler that runs OCI hooks has a base runtime spec naming that
//!   binary (a handler without one starts pods unchecked); VM handlers (kata) are listed as
//!   unprotected, as `install` reports them, without making the node unhealthy;
//! - the CRI-O/Podman hooks.d definition, where one is installed, names the binary;
//! - the policy file parses (the hook would otherwise run on the built-in fallback);
//! - after containerd (re)started, the decision log holds a record written since: containerd
//!   reads base specs only at start-up, so this is the proof that the running daemon calls the
//!   hook, and it holds once the DaemonSet's own container has started.
//!
//! A node with no runtime to wire at all is unhealthy: there is nothing the hook protects.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::config::Policy;
use crate::install::{self, containerd, elf, files::under, hooksd, process};

#[derive(Clone, Debug)]
pub struct HealthOptions {
    /// The host's `/`.
    pub root: PathBuf,
    pub bin_path: PathBuf,
    pub policy_path: PathBuf,
    pub containerd_config: PathBuf,
    pub hooks_dir: Option<PathBuf>,
    /// Where to look for the containerd process (the host's `/proc`: the pod needs hostPID).
    pub proc_dir: PathBuf,
}

impl Default for HealthOptions {
    fn default() -> Self {
        HealthOptions {
            root: "/".into(),
            bin_path: install::DEFAULT_BIN_PATH.into(),
            policy_path: crate::config::DEFAULT_POLICY_PATH.into(),
            containerd_config: install::DEFAULT_CONTAINERD_CONFIG.into(),
            hooks_dir: None,
            proc_dir: "/proc".into(),
        }
    }
}

/// One statement about the node, true or not, with what was seen.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Statement {
    pub ok: bool,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct HandlerHealth {
    pub runtime: &'static str,
    pub name: String,
    /// The base spec (containerd) or definition (hooks.d) that should name the hook.
    pub path: Option<String>,
    pub protected: bool,
    /// Unprotected but expected to be: VM runtimes do not run OCI hooks on the host.
    pub unprotectable: bool,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub healthy: bool,
    pub binary: Statement,
    pub policy: Statement,
    pub runtime: Statement,
    pub handlers: Vec<HandlerHealth>,
    pub protected: usize,
    pub unprotected: usize,
    pub decision_since_restart: Statement,
}

impl Report {
    /// The report as text, one statement a line, for the probe's output in `kubectl describe`.
    pub fn render_text(&self) -> String {
        let mark = |ok: bool| if ok { "ok  " } else { "FAIL" };
        let mut s = format!(
            "{} pss-guard on this node\n",
            if self.healthy {
                "healthy:"
            } else {
                "UNHEALTHY:"
            }
        );
        for (what, st) in [
            ("binary", &self.binary),
            ("policy", &self.policy),
            ("runtime", &self.runtime),
            ("decision", &self.decision_since_restart),
        ] {
            s.push_str(&format!("{} {what:<9} {}\n", mark(st.ok), st.detail));
        }
        for h in &self.handlers {
            let m = if h.protected {
                "ok  "
            } else if h.unprotectable {
                "--  "
            } else {
                "FAIL"
            };
            s.push_str(&format!(
                "{m} handler   {} {:?}: {}\n",
                h.runtime, h.name, h.detail
            ));
        }
        s.push_str(&format!(
            "     handlers  {} protected, {} unprotected\n",
            self.protected, self.unprotected
        ));
        s
    }
}

pub fn check(o: &HealthOptions) -> Report {
    let binary = check_binary(&under(&o.root, &o.bin_path), &o.bin_path);
    let (policy, policy_stmt) = check_policy(&under(&o.root, &o.policy_path), &o.policy_path);
    let mut handlers = Vec::new();
    let config_host = under(&o.root, &o.containerd_config);
    let mut containerd_err = None;
    let has_containerd = config_host.exists();
    if has_containerd {
        match containerd_handlers(o) {
            Ok(mut h) => handlers.append(&mut h),
            Err(e) => containerd_err = Some(e),
        }
    }
    let hooksd_dir = o
        .hooks_dir
        .clone()
        .or_else(|| hooksd::present(&o.root).then(|| hooksd::target_dir(&o.root)));
    if let Some(dir) = &hooksd_dir {
        handlers.push(hooksd_handler(o, dir));
    }
    let protected = handlers.iter().filter(|h| h.protected).count();
    let runtime = match (&containerd_err, has_containerd, &hooksd_dir) {
        (Some(e), ..) => Statement {
            ok: false,
            detail: format!("containerd config {:?}: {e}", o.containerd_config),
        },
        (None, false, None) => Statement {
            ok: false,
            detail: format!(
                "no runtime to protect: no containerd config at {:?} and no CRI-O/Podman",
                o.containerd_config
            ),
        },
        _ => {
            let missing: Vec<&str> = handlers
                .iter()
                .filter(|h| !h.protected && !h.unprotectable)
                .map(|h| h.name.as_str())
                .collect();
            if missing.is_empty() && protected > 0 {
                Statement {
                    ok: true,
                    detail: format!("{protected} handler(s) run the hook"),
                }
            } else if missing.is_empty() {
                Statement {
                    ok: false,
                    detail: "no runtime handler runs the hook".into(),
                }
            } else {
                Statement {
                    ok: false,
                    detail: format!("handlers without the hook: {}", missing.join(", ")),
                }
            }
        }
    };
    let log_path = policy.as_ref().map_or_else(
        || PathBuf::from(crate::config::DEFAULT_LOG_PATH),
        |p| p.log_path.clone(),
    );
    let decision_since_restart = if has_containerd {
        check_decision_since_restart(o, &log_path)
    } else {
        Statement {
            ok: true,
            detail: "no containerd on this node (hooks.d runtimes read the definition live)".into(),
        }
    };
    let unprotected = handlers.len() - protected;
    Report {
        healthy: binary.ok && policy_stmt.ok && runtime.ok && decision_since_restart.ok,
        binary,
        policy: policy_stmt,
        runtime,
        handlers,
        protected,
        unprotected,
        decision_since_restart,
    }
}

fn check_binary(path: &Path, shown: &Path) -> Statement {
    use std::os::unix::fs::PermissionsExt;
    let fail = |detail: String| Statement { ok: false, detail };
    // The runtime execs the path as given: a symlink is followed, so metadata() is right.
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return fail(format!("{shown:?}: {e}")),
    };
    if !meta.is_file() {
        return fail(format!("{shown:?} is not a regular file"));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return fail(format!("{shown:?} is not executable"));
    }
    match elf::check_native(path) {
        Ok(()) => Statement {
            ok: true,
            detail: format!("{shown:?} ({})", std::env::consts::ARCH),
        },
        Err(e) => fail(format!("{shown:?}: {e}")),
    }
}

fn check_policy(path: &Path, shown: &Path) -> (Option<Policy>, Statement) {
    match Policy::load(path) {
        Ok(p) => {
            let detail = format!("{shown:?}: enforce {}", p.enforce);
            (Some(p), Statement { ok: true, detail })
        }
        Err(e) => {
            let err = crate::error::chain_of(&e);
            let detail = format!("{shown:?}: {err}; the hook runs on the built-in default");
            (None, Statement { ok: false, detail })
        }
    }
}

fn containerd_handlers(o: &HealthOptions) -> Result<Vec<HandlerHealth>, String> {
    let text =
        std::fs::read_to_string(under(&o.root, &o.containerd_config)).map_err(|e| e.to_string())?;
    let doc = containerd::parse(&text).map_err(|e| crate::error::chain_of(&e))?;
    let version = containerd::version_of(&doc)
        .map_err(|e| crate::error::chain_of(&e))?
        .ok_or("is empty: containerd runs its built-in config, without the hook")?;
    Ok(containerd::handlers(&doc, version)
        .into_iter()
        .map(|h| {
            let mut out = HandlerHealth {
                runtime: "containerd",
                name: h.name.clone(),
                path: h.base_runtime_spec.clone().filter(|p| !p.is_empty()),
                protected: false,
                unprotectable: !h.runs_hooks(),
                detail: String::new(),
            };
            out.detail = if !h.runs_hooks() {
                format!(
                    "runtime_type {:?} does not run OCI hooks on the host",
                    h.runtime_type
                )
            } else if let Some(p) = &out.path {
                match containerd::load_base_spec(&o.root, &h.name, p) {
                    Ok(spec) if spec_names(&spec, &o.bin_path) => {
                        out.protected = true;
                        format!("base spec {p:?} runs the hook")
                    }
                    Ok(_) => format!("base spec {p:?} does not name {:?}", o.bin_path),
                    Err(e) => crate::error::chain_of(&e),
                }
            } else {
                "no base_runtime_spec: containerd's default spec, without the hook".into()
            };
            out
        })
        .collect())
}

/// Whether a createRuntime or prestart hook of `spec` runs `bin` with the `hook` command.
fn spec_names(spec: &Value, bin: &Path) -> bool {
    ["createRuntime", "prestart"].iter().any(|stage| {
        spec["hooks"][stage].as_array().is_some_and(|a| {
            a.iter().any(|h| {
                h["path"].as_str().is_some_and(|p| Path::new(p) == bin)
                    && h["args"][1].as_str() == Some("hook")
            })
        })
    })
}

fn hooksd_handler(o: &HealthOptions, dir: &Path) -> HandlerHealth {
    let path = dir.join(hooksd::FILE_NAME);
    let mut out = HandlerHealth {
        runtime: "hooks.d",
        name: "cri-o/podman".into(),
        path: Some(path.to_string_lossy().into_owned()),
        protected: false,
        unprotectable: false,
        detail: String::new(),
    };
    out.detail = match std::fs::read(under(&o.root, &path)) {
        Err(e) => format!("{path:?}: {e}"),
        Ok(b) => match serde_json::from_slice::<Value>(&b) {
            Err(e) => format!("{path:?}: {e}"),
            Ok(v) if v["hook"]["path"].as_str().map(Path::new) == Some(o.bin_path.as_path()) => {
                out.protected = true;
                format!("{path:?} runs the hook")
            }
            Ok(_) => format!("{path:?} does not name {:?}", o.bin_path),
        },
    };
    out
}

fn check_decision_since_restart(o: &HealthOptions, log_path: &Path) -> Statement {
    let Some(process::Daemon { pid, started, .. }) =
        process::containerd(&o.proc_dir, &o.root, &o.containerd_config)
    else {
        return Statement {
            ok: false,
            detail: format!(
                "no containerd running with {:?} in {:?} (the pod needs hostPID)",
                o.containerd_config, o.proc_dir
            ),
        };
    };
    let since =
        crate::time::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(started));
    match last_record_time(&under(&o.root, log_path)) {
        Some((t, text)) if t >= started => Statement {
            ok: true,
            detail: format!("decision at {text}, containerd (pid {pid}) started {since}"),
        },
        Some((_, text)) => Statement {
            ok: false,
            detail: format!(
                "no decision since containerd (pid {pid}) started {since} (last at {text}): no container has started through the hook since"
            ),
        },
        None => Statement {
            ok: false,
            detail: format!(
                "no decision in {log_path:?} since containerd (pid {pid}) started {since}"
            ),
        },
    }
}

/// The time of the last whole record in the log (whole seconds since the epoch, and as written).
fn last_record_time(path: &Path) -> Option<(u64, String)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    // Records are a few hundred bytes; the tail holds the last one.
    let start = len.saturating_sub(64 * 1024);
    f.seek(SeekFrom::Start(start)).ok()?;
    let mut tail = Vec::new();
    f.take(64 * 1024).read_to_end(&mut tail).ok()?;
    tail.split(|b| *b == b'\n').rev().find_map(|line| {
        let v: Value = serde_json::from_slice(line).ok()?;
        let text = v["time"].as_str()?.to_owned();
        let t = crate::time::parse_rfc3339(&text)?;
        let secs = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
        Some((secs, text))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spec_names_only_a_hook_command_at_the_binary() {
        let bin = Path::new("/usr/local/bin/pss-guard");
        let hook = |p: &str, cmd: &str| json!({"hooks": {"createRuntime": [{"path": p, "args": ["pss-guard", cmd]}]}});
        assert!(spec_names(&hook("/usr/local/bin/pss-guard", "hook"), bin));
        assert!(!spec_names(&hook("/opt/pss-guard", "hook"), bin));
        assert!(!spec_names(
            &hook("/usr/local/bin/pss-guard", "version"),
            bin
        ));
        assert!(!spec_names(&json!({}), bin));
    }

    #[test]
    fn last_record_time_skips_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.log");
        std::fs::write(
            &p,
            "{\"time\":\"2026-11-30T01:00:00.000000Z\"}\n{\"time\":\"2026-11-30T02:00:00.0",
        )
        .unwrap();
        let (t, text) = last_record_time(&p).unwrap();
        assert_eq!(text, "2026-11-30T01:00:00.000000Z");
        assert_eq!(
            crate::time::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t)),
            text
        );
    }
}
