//! A test-only stand-in for the kubelet's CRI client.
//!
//! Given a Pod manifest, [`Kubelet`] issues the CRI calls kubelet's kuberuntime manager
//! would (RunPodSandbox, then CreateContainer + StartContainer for init and app
//! containers, ephemeral containers into a running sandbox), with the security context,
//! namespaces and mounts translated the way kubelet translates them. It exists so that the
//! pss-guard hook can be tested under a real containerd without a cluster. README.md lists
//! which kubelet behaviours are reproduced, by upstream function name, and which are not.

use std::path::PathBuf;

pub mod manifest;
pub mod runner;
pub mod translate;
pub mod volumes;

pub use manifest::{PodManifest, Source, load};
pub use runner::{ContainerKind, ContainerRun, Kubelet, Options, PodRun, UserNamespaces};

/// Everything that stops kubelet-sim from driving the runtime. A runtime *refusing* a
/// container is not an error: it is recorded in [`ContainerRun::error`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot parse pod manifest as YAML")]
    ParseYaml(#[source] serde_yaml::Error),
    #[error("manifest is not a Pod")]
    NotAPod,
    #[error("cannot decode pod manifest")]
    ParsePod(#[source] serde_json::Error),
    #[error("pod has no spec")]
    NoSpec,
    #[error("volume {volume:?} has an unsupported source {source_type:?}")]
    UnsupportedVolume { volume: String, source_type: String },
    #[error("hostPath {0} does not exist")]
    HostPathMissing(PathBuf),
    #[error("subPath {0:?} leaves its volume")]
    BadSubPath(String),
    #[error("volume mount names no pod volume: {0:?}")]
    UnknownVolume(String),
    #[error("no container {0:?} in the pod")]
    UnknownContainer(String),
    #[error("{}", .0.display())]
    Io(PathBuf, #[source] std::io::Error),
    #[error("mount {}", .0.display())]
    Mount(PathBuf, #[source] nix::Error),
    #[error("cannot connect to CRI socket {}", .0.display())]
    Connect(PathBuf, #[source] tonic::transport::Error),
    #[error("CRI {0} failed")]
    Cri(&'static str, #[source] tonic::Status),
}
