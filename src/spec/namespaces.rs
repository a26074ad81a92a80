//! Whether a container shares the host's network, PID, IPC or user namespace.
//!
//! containerd's app containers join the sandbox's namespaces by `/proc/<pid>/ns/*` path, which
//! for a hostNetwork/hostPID/hostIPC pod *is* the host's namespace. Two independent sources
//! decide: the namespace file's identity (device and inode) against the host's, and the sandbox
//! spec, where a missing entry means the sandbox runs in the host's namespace. Either saying
//! "host" is enough; neither being available is an error, never a pass.

use std::path::Path;

use nix::sys::stat::stat;
use oci_spec::runtime::LinuxNamespaceType;

use super::raw::RawSpec;
use crate::error::Error;

/// Device and inode of a namespace file: the kernel's identity for the namespace.
type NsId = (u64, u64);

fn ns_id(path: &Path) -> Option<NsId> {
    stat(path).ok().map(|st| (st.st_dev, st.st_ino))
}

fn proc_name(kind: LinuxNamespaceType) -> &'static str {
    match kind {
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Time => "time",
    }
}

/// The host's namespaces of one kind: PID 1's, and the hook's own (the hook runs in the
/// runtime's namespaces). PID 1's can be unreadable in sandboxed VMs, so either serves.
fn host_ids(kind: LinuxNamespaceType) -> Vec<NsId> {
    let name = proc_name(kind);
    [
        format!("/proc/1/ns/{name}"),
        format!("/proc/self/ns/{name}"),
    ]
    .iter()
    .filter_map(|p| ns_id(Path::new(p)))
    .collect()
}

fn has_entry(spec: &RawSpec, kind: LinuxNamespaceType) -> bool {
    spec.namespaces().iter().any(|n| n.typ() == kind)
}

/// Whether the container runs in the host's namespace of `kind`.
///
/// `live` says the spec belongs to a container being created now, so `/proc/<pid>` paths in it
/// name the right processes; for a saved spec only the sandbox spec can answer.
pub fn is_host(
    kind: LinuxNamespaceType,
    spec: &RawSpec,
    sandbox: Option<&RawSpec>,
    live: bool,
) -> Result<bool, Error> {
    let name = proc_name(kind);
    let sandbox_says_host = sandbox.map(|s| !has_entry(s, kind));
    let Some(entry) = spec.namespaces().iter().find(|n| n.typ() == kind) else {
        // No entry: the container stays in the runtime's own namespace, the host's.
        return Ok(true);
    };
    let Some(path) = entry.path() else {
        // A new namespace of its own.
        return Ok(false);
    };
    let by_inode = if live {
        ns_id(path).and_then(|id| {
            let host = host_ids(kind);
            (!host.is_empty()).then(|| host.contains(&id))
        })
    } else {
        None
    };
    match (by_inode, sandbox_says_host) {
        (Some(a), Some(b)) => Ok(a || b),
        (Some(a), None) => Ok(a),
        (None, Some(b)) => Ok(b),
        (None, None) => Err(Error::Namespace(name, path.clone())),
    }
}

/// A user namespace of the container's own (`hostUsers: false`); a path that cannot be shown to
/// differ from the host's counts as none, so the procMount relaxation is never granted on doubt.
pub fn has_user_namespace(spec: &RawSpec, live: bool) -> bool {
    let Some(entry) = spec
        .namespaces()
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::User)
    else {
        return false;
    };
    match entry.path() {
        None => true,
        Some(p) if live => match ns_id(p) {
            Some(id) => {
                let host = host_ids(LinuxNamespaceType::User);
                !host.is_empty() && !host.contains(&id)
            }
            None => false,
        },
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> RawSpec {
        serde_json::from_str(json).unwrap()
    }

    const PRIVATE: &str =
        r#"{"linux":{"namespaces":[{"type":"network"},{"type":"pid"},{"type":"ipc"}]}}"#;

    #[test]
    fn missing_entry_is_host() {
        let s = spec(r#"{"linux":{"namespaces":[{"type":"pid"}]}}"#);
        assert!(is_host(LinuxNamespaceType::Network, &s, None, true).unwrap());
        assert!(!is_host(LinuxNamespaceType::Pid, &s, None, true).unwrap());
    }

    #[test]
    fn path_to_own_namespace_is_host_by_inode() {
        let s = spec(r#"{"linux":{"namespaces":[{"type":"network","path":"/proc/self/ns/net"}]}}"#);
        assert!(is_host(LinuxNamespaceType::Network, &s, None, true).unwrap());
    }

    #[test]
    fn unreadable_path_falls_back_to_sandbox_spec() {
        let s = spec(
            r#"{"linux":{"namespaces":[{"type":"network","path":"/proc/999999999/ns/net"}]}}"#,
        );
        let private_sandbox = spec(PRIVATE);
        let host_sandbox = spec(r#"{"linux":{"namespaces":[{"type":"pid"}]}}"#);
        assert!(
            !is_host(
                LinuxNamespaceType::Network,
                &s,
                Some(&private_sandbox),
                true
            )
            .unwrap()
        );
        assert!(is_host(LinuxNamespaceType::Network, &s, Some(&host_sandbox), true).unwrap());
        assert!(is_host(LinuxNamespaceType::Network, &s, None, true).is_err());
    }

    #[test]
    fn offline_ignores_proc_paths() {
        let s = spec(r#"{"linux":{"namespaces":[{"type":"network","path":"/proc/self/ns/net"}]}}"#);
        let private_sandbox = spec(PRIVATE);
        assert!(
            !is_host(
                LinuxNamespaceType::Network,
                &s,
                Some(&private_sandbox),
                false
            )
            .unwrap()
        );
        assert!(is_host(LinuxNamespaceType::Network, &s, None, false).is_err());
    }

    #[test]
    fn either_source_saying_host_wins() {
        // The inode says private (a fresh netns of another process is not available here, so
        // use a path that stats to something other than the host's net namespace: our mnt ns).
        let s = spec(r#"{"linux":{"namespaces":[{"type":"network","path":"/proc/self/ns/mnt"}]}}"#);
        let host_sandbox = spec(r#"{"linux":{"namespaces":[]}}"#);
        assert!(is_host(LinuxNamespaceType::Network, &s, Some(&host_sandbox), true).unwrap());
        let private_sandbox = spec(PRIVATE);
        assert!(
            !is_host(
                LinuxNamespaceType::Network,
                &s,
                Some(&private_sandbox),
                true
            )
            .unwrap()
        );
    }

    #[test]
    fn user_namespace_detection() {
        assert!(has_user_namespace(
            &spec(r#"{"linux":{"namespaces":[{"type":"user"}]}}"#),
            true
        ));
        assert!(!has_user_namespace(&spec(PRIVATE), true));
        let host_user =
            spec(r#"{"linux":{"namespaces":[{"type":"user","path":"/proc/self/ns/user"}]}}"#);
        assert!(!has_user_namespace(&host_user, true));
    }
}
