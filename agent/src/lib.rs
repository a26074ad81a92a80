//! `pss-guard-agent`: the long-running process of pss-guard's DaemonSet. The hook itself stays a
//! short-lived binary with no Kubernetes client; everything that needs a network or a loop lives
//! here:
//!
//! - [`follow`] streams the node's decision log to stdout (with the Kubernetes node name) across
//!   rotation and truncation, and counts every record into [`metrics`]; [`position`] keeps its
//!   place on the host across restarts;
//! - [`http`] serves `/metrics`, `/healthz` and `/readyz`;
//! - [`snapshot`] watches Namespaces (metadata only) and RuntimeClasses and writes the small file
//!   the hook reads on every container start;
//! - [`policy_sync`] copies the mounted policy ConfigMap to the host path the hook reads, only
//!   when it parses;
//! - [`health`] checks the hook's wiring on the host (`pss-guard health`) for `/readyz` and the
//!   metrics;
//! - [`publish`] writes the decisions as PolicyReports ([`policyreport`], from the [`book`]) and
//!   Warning Events (folded by the [`correlator`]), within an API call budget;
//! - [`node_audit`] decides every running container as `pss-guard audit` does, for the reports.

pub mod book;
pub mod cli;
pub mod correlator;
pub mod follow;
pub mod fsutil;
pub mod health;
pub mod http;
pub mod metrics;
pub mod node_audit;
pub mod policy_sync;
pub mod policyreport;
pub mod position;
pub mod publish;
pub mod snapshot;
pub mod status;
