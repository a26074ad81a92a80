//! pss-guard: an OCI runtime hook that refuses containers violating the Kubernetes Pod Security
//! Standards, evaluated on the spec the runtime is about to run.
//!
//! The flow is one direction: [`spec`] reads the OCI state, the bundle's `config.json` and the pod
//! sandbox's spec into [`facts::Facts`] (all I/O happens there), [`policy`] evaluates the facts
//! with one pure function per upstream check ID, and [`hook`] turns the report into a decision,
//! a log record and an exit code.

pub mod audit;
pub mod bounded;
pub mod config;
pub mod cri;
pub mod error;
pub mod facts;
pub mod health;
pub mod hook;
pub mod install;
pub mod log;
pub mod paths;
pub mod policy;
pub mod psa;
pub mod report;
pub mod snapshot;
pub mod spec;
pub mod time;
