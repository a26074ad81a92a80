//! The parts of an OCI runtime spec (`config.json`) that the checks read, deserialised with
//! oci-spec's types wherever they are exact.
//!
//! Why not `oci_spec::runtime::Spec` as a whole: its capability parser upper-cases names and
//! strips any number of `CAP_` prefixes, so `cap_sys_admin` and `CAP_CAP_CHOWN` would read as
//! real capabilities, while runc ignores them; we need the literal names to refuse what we cannot
//! evaluate. And parsing every field with strict enums would refuse legitimate containers over
//! fields no check reads (a new seccomp action, say). Unknown fields are ignored; duplicate
//! fields and wrong types are errors, so the hook fails closed on them.

use std::collections::HashMap;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxNamespace, Mount};
use serde::Deserialize;
use serde::de::IgnoredAny;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawSpec {
    #[serde(default)]
    pub process: Option<RawProcess>,
    #[serde(default)]
    pub mounts: Option<Vec<Mount>>,
    #[serde(default)]
    pub annotations: Option<HashMap<String, String>>,
    #[serde(default)]
    pub linux: Option<RawLinux>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawProcess {
    pub user: RawUser,
    #[serde(default)]
    pub capabilities: Option<RawCapabilities>,
    #[serde(default)]
    pub no_new_privileges: Option<bool>,
    #[serde(default)]
    pub apparmor_profile: Option<String>,
    #[serde(default)]
    pub selinux_label: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RawUser {
    pub uid: u32,
}

/// Capability sets as the literal strings in the spec.
#[derive(Debug, Default, Deserialize)]
pub struct RawCapabilities {
    #[serde(default)]
    pub bounding: Option<Vec<String>>,
    #[serde(default)]
    pub effective: Option<Vec<String>>,
    #[serde(default)]
    pub inheritable: Option<Vec<String>>,
    #[serde(default)]
    pub permitted: Option<Vec<String>>,
    #[serde(default)]
    pub ambient: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawLinux {
    #[serde(default)]
    pub namespaces: Option<Vec<LinuxNamespace>>,
    #[serde(default)]
    pub sysctl: Option<HashMap<String, String>>,
    /// Only its presence matters: any profile is RuntimeDefault or Localhost to admission.
    #[serde(default)]
    pub seccomp: Option<IgnoredAny>,
    #[serde(default)]
    pub masked_paths: Option<Vec<String>>,
    #[serde(default)]
    pub readonly_paths: Option<Vec<String>>,
    #[serde(default)]
    pub resources: Option<RawResources>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawResources {
    #[serde(default)]
    pub devices: Option<Vec<LinuxDeviceCgroup>>,
}

impl RawSpec {
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn namespaces(&self) -> &[LinuxNamespace] {
        self.linux
            .as_ref()
            .and_then(|l| l.namespaces.as_deref())
            .unwrap_or(&[])
    }

    pub fn mounts(&self) -> &[Mount] {
        self.mounts.as_deref().unwrap_or(&[])
    }
}
