//! Errors mean "could not evaluate": the hook refuses the container (fail closed) and exits 2.
//! Violations are not errors; they are data in a [`crate::policy::Report`].

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad hook arguments (check the hook entry the installer wrote): {0}")]
    HookArguments(String),
    #[error("reading the container state from stdin")]
    ReadState(#[source] std::io::Error),
    #[error("the container state on stdin is larger than {0} bytes")]
    StateTooLarge(usize),
    #[error("no container state arrived on stdin within {0} seconds")]
    StateTimeout(u64),
    #[error("parsing the container state")]
    ParseState(#[source] serde_json::Error),
    #[error("the container state has no bundle path")]
    NoBundle,
    #[error("bundle path {0:?} is not a clean absolute path")]
    BundlePath(PathBuf),
    #[error("bundle {0:?} is not a directory")]
    BundleNotDir(PathBuf),
    #[error("reading {path:?}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path:?} is larger than {limit} bytes")]
    TooLarge { path: PathBuf, limit: usize },
    #[error("parsing {path:?}")]
    ParseSpec {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0:?} has no process section")]
    NoProcess(PathBuf),
    #[error("unknown capability name {0:?} in {1}")]
    UnknownCapability(String, &'static str),
    #[error(
        "cannot tell whether the {0} namespace is the host's: {1:?} cannot be read and there is no sandbox spec"
    )]
    Namespace(&'static str, PathBuf),
    #[error("cannot read any host namespace reference for {0} (/proc/1/ns and /proc/self/ns)")]
    HostNamespaceRef(&'static str),
    #[error(
        "the pod sandbox spec (sandbox {sandbox:?}) holds the pod's sysctls and host namespaces but cannot be read"
    )]
    SandboxSpec {
        sandbox: String,
        #[source]
        source: Box<Error>,
    },
    #[error(
        "the pod sandbox spec is needed but the sandbox id {0:?} names no sandbox bundle; pod sysctls and host namespaces cannot be evaluated"
    )]
    NoSandboxBundle(String),
    #[error(
        "the pod uid is unknown (no {0} annotation); kubelet volumes cannot be told from host paths"
    )]
    NoPodUid(&'static str),
    #[error(
        "the runtime's CRI view is unavailable and the policy requires it (cri.lookup = \"required\"): {0}"
    )]
    CriRequired(String),
    #[error("policy file {path:?}")]
    Policy {
        path: PathBuf,
        #[source]
        source: crate::config::ConfigError,
    },
}

impl Error {
    /// The whole cause chain on one line, `a: b: c`, for stderr and the decision log.
    pub fn chain(&self) -> String {
        chain_of(self)
    }
}

/// Any error with its causes on one line, `a: b: c`.
pub fn chain_of(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}
