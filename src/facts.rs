//! What the node knows about one container, gathered once by [`crate::spec`] and read by every
//! check. Nothing here does I/O, so checks stay pure functions over these facts.

use std::fmt;
use std::str::FromStr;

/// containerd's `defaultUnixCaps` (also EKS's base runtime spec and Bottlerocket's default).
pub const CONTAINERD_DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// A set of Linux capabilities as a bitmask over kernel capability numbers.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSet(u64);

impl CapSet {
    pub const EMPTY: CapSet = CapSet(0);

    pub fn insert(&mut self, cap: caps::Capability) {
        self.0 |= cap.bitmask();
    }

    pub fn contains(self, cap: caps::Capability) -> bool {
        self.0 & cap.bitmask() != 0
    }

    pub fn union(self, other: CapSet) -> CapSet {
        CapSet(self.0 | other.0)
    }

    pub fn intersection(self, other: CapSet) -> CapSet {
        CapSet(self.0 & other.0)
    }

    pub fn minus(self, other: CapSet) -> CapSet {
        CapSet(self.0 & !other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn is_superset_of(self, other: CapSet) -> bool {
        other.0 & !self.0 == 0
    }

    /// Parses exact kernel names (`CAP_SYS_ADMIN`). Lowercase, unprefixed or numeric names are
    /// errors: runc ignores names it does not know, so a spec carrying one is not what the pod
    /// author's runtime meant, and we cannot say what it grants.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<CapSet, String> {
        let mut set = CapSet::EMPTY;
        for name in names {
            let cap = caps::Capability::from_str(name).map_err(|_| name.to_owned())?;
            set.insert(cap);
        }
        Ok(set)
    }

    /// Names as Pod Security Admission prints them: without `CAP_`, in kernel number order.
    pub fn pss_names(self) -> Vec<String> {
        let mut all: Vec<caps::Capability> = caps::all()
            .into_iter()
            .filter(|c| self.contains(*c))
            .collect();
        all.sort_by_key(|c| c.index());
        all.into_iter()
            .map(|c| {
                let name = c.to_string();
                name.strip_prefix("CAP_").map(str::to_owned).unwrap_or(name)
            })
            .collect()
    }
}

impl fmt::Debug for CapSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.pss_names()).finish()
    }
}

/// The five capability sets of `process.capabilities`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub bounding: CapSet,
    pub effective: CapSet,
    pub permitted: CapSet,
    pub inheritable: CapSet,
    pub ambient: CapSet,
}

impl Capabilities {
    /// Every capability the process can hold in any set.
    pub fn any(&self) -> CapSet {
        self.bounding
            .union(self.effective)
            .union(self.permitted)
            .union(self.inheritable)
            .union(self.ambient)
    }
}

/// Whether the container shares each pod-relevant namespace with the host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostNamespaces {
    pub network: bool,
    pub pid: bool,
    pub ipc: bool,
}

/// Where a bind mount's source comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountOrigin {
    /// Laid out by kubelet or the runtime for this pod or container. `plugin` is the kubelet
    /// volume plugin directory (`kubernetes.io~configmap`), when the source is a pod volume.
    Managed { plugin: Option<String> },
    /// Anything else: a host path.
    Host,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindMount {
    /// The host path, resolved as far as the host allows (symlinks, `..`).
    pub source: String,
    pub destination: String,
    pub origin: MountOrigin,
}

/// The AppArmor view of the process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppArmor {
    /// The runtime applies no AppArmor profile on this host, so nothing can be observed.
    HostDisabled,
    /// `process.apparmorProfile`, or `None` when the spec has none (= unconfined).
    Profile(Option<String>),
}

/// Everything the checks read, for one container.
#[derive(Clone, Debug)]
pub struct Facts {
    pub caps: Capabilities,
    /// Capabilities the pod asked for with a `CAP_` prefix (`add: ["CAP_CHOWN"]`), which
    /// containerd writes as `CAP_CAP_CHOWN` and runc ignores: nothing granted, but admission
    /// refuses the request. As the pod wrote them, sorted, unique.
    pub prefixed_caps: Vec<String>,
    /// The full set a privileged container gets on this host (the runtime's bounding set).
    /// Read only when `proc_unmasked` holds and no other privileged trait does, empty
    /// otherwise: it decides nothing else.
    pub host_caps: CapSet,
    /// `linux.maskedPaths` and `linux.readonlyPaths` are both empty: `/proc` is unmasked.
    pub proc_unmasked: bool,
    /// A sysfs is mounted without `ro`.
    pub sys_writable: bool,
    /// `/proc/sys` is neither read-only nor masked while other `/proc` paths are masked.
    pub proc_sys_writable: bool,
    /// The device cgroup allows every device (`{"allow": true, "access": "rwm"}` with no type).
    pub all_devices: bool,
    pub host_ns: HostNamespaces,
    /// A user namespace entry is present (`hostUsers: false`).
    pub user_namespace: bool,
    pub mounts: Vec<BindMount>,
    /// Sysctl names from the sandbox and container specs, sorted, unique.
    pub sysctls: Vec<String>,
    /// `linux.seccomp` is present.
    pub seccomp: bool,
    pub apparmor: AppArmor,
    /// `process.selinuxLabel`, when set.
    pub selinux_label: Option<String>,
    pub no_new_privileges: bool,
    /// `process.user.uid`: the uid the process really starts with.
    pub uid: u32,
}

impl Facts {
    /// A compliant, unprivileged container as containerd builds it for a pod with no security
    /// settings: the base for unit tests, which then change one fact.
    #[cfg(test)]
    pub fn compliant_example() -> Facts {
        let mut caps = CapSet::EMPTY;
        for c in CONTAINERD_DEFAULT_CAPS {
            if let Ok(cap) = caps::Capability::from_str(c) {
                caps.insert(cap);
            }
        }
        let mut host_caps = CapSet::EMPTY;
        for cap in caps::all() {
            host_caps.insert(cap);
        }
        Facts {
            prefixed_caps: Vec::new(),
            caps: Capabilities {
                bounding: caps,
                effective: caps,
                permitted: caps,
                inheritable: CapSet::EMPTY,
                ambient: CapSet::EMPTY,
            },
            host_caps,
            proc_unmasked: false,
            sys_writable: false,
            proc_sys_writable: false,
            all_devices: false,
            host_ns: HostNamespaces::default(),
            user_namespace: false,
            mounts: Vec::new(),
            sysctls: Vec::new(),
            seccomp: true,
            apparmor: AppArmor::HostDisabled,
            selinux_label: None,
            no_new_privileges: true,
            uid: 65_535,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_names_rejects_lowercase_unprefixed_and_numeric() {
        assert!(CapSet::from_names(["CAP_SYS_ADMIN"]).is_ok());
        assert_eq!(
            CapSet::from_names(["cap_sys_admin"]),
            Err("cap_sys_admin".into())
        );
        assert_eq!(CapSet::from_names(["SYS_ADMIN"]), Err("SYS_ADMIN".into()));
        assert_eq!(CapSet::from_names(["21"]), Err("21".into()));
        assert_eq!(
            CapSet::from_names(["CAP_CAP_CHOWN"]),
            Err("CAP_CAP_CHOWN".into())
        );
    }

    #[test]
    fn pss_names_strip_prefix_in_kernel_order() {
        let set = CapSet::from_names(["CAP_SYS_ADMIN", "CAP_CHOWN", "CAP_NET_RAW"]).unwrap();
        assert_eq!(set.pss_names(), vec!["CHOWN", "NET_RAW", "SYS_ADMIN"]);
    }

    #[test]
    fn set_algebra_is_bitwise() {
        let a = CapSet::from_names(["CAP_CHOWN", "CAP_KILL"]).unwrap();
        let b = CapSet::from_names(["CAP_KILL"]).unwrap();
        assert!(a.is_superset_of(b));
        assert!(!b.is_superset_of(a));
        assert_eq!(a.minus(b).pss_names(), vec!["CHOWN"]);
        assert!(b.minus(a).is_empty());
    }
}
