//! The only code that reads OCI files: the state on stdin, the bundle's `config.json`, the pod
//! sandbox's spec, and the host facts they point at (namespace inodes, mount sources). It turns
//! them into [`Facts`] once, before any check runs.

pub mod identity;
pub mod mountinfo;
pub mod mounts;
pub mod namespaces;
pub mod raw;
pub mod scan;

use std::os::fd::AsFd;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespaceType, State};

use crate::bounded::{ReadError, read_all_bounded, read_bounded, require_regular};
use crate::config::{AppArmorMode, Paths, Policy};
use crate::error::Error;
use crate::facts::{AppArmor, CapSet, Capabilities, Facts, HostNamespaces};
pub use identity::{Identity, Runtime};
use raw::RawSpec;

/// Real specs are 10-60 KB; a spec this large is not one a runtime wrote.
pub const MAX_SPEC_BYTES: usize = 8 * 1024 * 1024;
/// The state carries the spec's annotations, so it gets the same bound.
pub const MAX_STATE_BYTES: usize = MAX_SPEC_BYTES;

fn read_error(path: &Path, limit: usize, e: ReadError) -> Error {
    match e {
        ReadError::Io(source) => Error::Read {
            path: path.to_owned(),
            source,
        },
        ReadError::TooLarge => Error::TooLarge {
            path: path.to_owned(),
            limit,
        },
    }
}

pub use scan::MAX_JSON_DEPTH;

/// Parses the OCI state and checks that its bundle is a clean absolute path.
pub fn parse_state(bytes: &[u8]) -> Result<State, Error> {
    let text = scan::check(bytes, &raw::STATE_FIELDS).map_err(Error::ParseState)?;
    let state: State = serde_json::from_str(text).map_err(Error::ParseState)?;
    let bundle = state.bundle();
    if bundle.as_os_str().is_empty() {
        return Err(Error::NoBundle);
    }
    if !crate::paths::is_clean_absolute(bundle) {
        return Err(Error::BundlePath(bundle.clone()));
    }
    Ok(state)
}

/// Parses a spec already in memory.
pub fn parse_spec(bytes: &[u8], path: &Path) -> Result<RawSpec, Error> {
    scan::check(bytes, &raw::SPEC_FIELDS)
        .and_then(serde_json::from_str)
        .map_err(|source| Error::ParseSpec {
            path: path.to_owned(),
            source,
        })
}

/// Reads `<bundle>/config.json`, following no symlink at the bundle or the file.
pub fn load_bundle_spec(bundle: &Path) -> Result<RawSpec, Error> {
    let path = bundle.join("config.json");
    let dir = nix::fcntl::open(
        bundle,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        nix::errno::Errno::ENOTDIR | nix::errno::Errno::ELOOP => {
            Error::BundleNotDir(bundle.to_owned())
        }
        e => Error::Read {
            path: bundle.to_owned(),
            source: e.into(),
        },
    })?;
    // O_NONBLOCK: opening a FIFO must not wait for a writer.
    let fd = openat(
        dir.as_fd(),
        "config.json",
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::Read {
        path: path.clone(),
        source: e.into(),
    })?;
    let file = std::fs::File::from(fd);
    require_regular(&file).map_err(|source| Error::Read {
        path: path.clone(),
        source,
    })?;
    let bytes =
        read_all_bounded(file, MAX_SPEC_BYTES).map_err(|e| read_error(&path, MAX_SPEC_BYTES, e))?;
    parse_spec(&bytes, &path)
}

/// Reads a spec file named directly (the `check` command, saved fixtures).
pub fn load_spec_file(path: &Path) -> Result<RawSpec, Error> {
    let bytes =
        read_bounded(path, MAX_SPEC_BYTES).map_err(|e| read_error(path, MAX_SPEC_BYTES, e))?;
    parse_spec(&bytes, path)
}

/// How the hook knows which runtime built the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeArg {
    /// Named by an argument only that runtime's configuration carries: containerd's
    /// `base_runtime_spec` is read by containerd alone.
    Named(Runtime),
    /// Told from where the bundle lies: one hooks.d file serves CRI-O and Podman alike, and
    /// Podman lets its user set any annotation, `io.container.manager` included.
    Detect,
}

impl std::str::FromStr for RuntimeArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "detect" => Ok(RuntimeArg::Detect),
            other => other.parse().map(RuntimeArg::Named).map_err(|_| {
                format!("unknown runtime {s:?} (expected containerd, cri-o, none or detect)")
            }),
        }
    }
}

/// What to load: one container's bundle and what is known of it.
#[derive(Clone, Debug)]
pub struct Target {
    /// The OCI container id (the state's `id`; runtimes name the bundle directory after it).
    pub id: String,
    pub bundle: PathBuf,
    /// A spec file named directly (`check FILE`), instead of `<bundle>/config.json`.
    pub spec_file: Option<PathBuf>,
    /// An explicit sandbox spec (`check --sandbox`), instead of the sandbox bundle's.
    pub sandbox_file: Option<PathBuf>,
    pub runtime: RuntimeArg,
}

/// A pod sandbox's spec and, when it was found on disk, its bundle.
#[derive(Debug)]
pub struct Sandbox {
    pub spec: RawSpec,
    pub bundle: Option<PathBuf>,
}

/// A container's spec with everything found around it.
#[derive(Debug)]
pub struct Loaded {
    pub spec: RawSpec,
    pub bundle: PathBuf,
    pub identity: Identity,
    /// The pod sandbox's spec: present for every Kubernetes app container.
    pub sandbox: Option<Sandbox>,
}

/// Why loading stopped, with the identity known by then (so the record still names the pod).
#[derive(Debug)]
pub struct LoadError {
    pub identity: Identity,
    pub error: Error,
}

/// Loads the container's spec, tells its runtime and identity, and loads its pod's sandbox spec.
pub fn load(target: &Target, paths: &Paths) -> Result<Loaded, Box<LoadError>> {
    let fail = |identity: Identity| move |error| Box::new(LoadError { identity, error });
    let unknown = Identity::unread(&target.id);
    let spec = match &target.spec_file {
        Some(f) => load_spec_file(f),
        None => load_bundle_spec(&target.bundle),
    }
    .map_err(fail(unknown))?;
    let runtime = match target.runtime {
        RuntimeArg::Named(r) => r,
        RuntimeArg::Detect => detect_runtime(&target.bundle, &target.id, paths),
    };
    let identity = identity::identify(runtime, &target.id, &spec);
    let sandbox_bundle = sandbox_bundle(runtime, &target.bundle, &identity);
    let sandbox = match (&target.sandbox_file, &sandbox_bundle) {
        (Some(f), _) => Some(load_spec_file(f)),
        (None, Some(b)) => Some(load_bundle_spec(b)),
        (None, None) => None,
    }
    .transpose()
    .map_err(|e| Error::SandboxSpec {
        sandbox: identity.sandbox_id().unwrap_or_default().to_owned(),
        source: Box::new(e),
    })
    .map_err(fail(identity.clone()))?;
    // A pod's app container without its sandbox spec would pass with its pod sysctls unseen.
    if sandbox.is_none()
        && runtime != Runtime::None
        && let Some(k) = identity.kube.as_ref().filter(|k| !k.is_sandbox)
    {
        let error = Error::NoSandboxBundle(k.sandbox_id.clone());
        return Err(Box::new(LoadError { identity, error }));
    }
    Ok(Loaded {
        spec,
        bundle: target.bundle.clone(),
        identity,
        sandbox: sandbox.map(|spec| Sandbox {
            spec,
            bundle: if target.sandbox_file.is_some() {
                None
            } else {
                sandbox_bundle
            },
        }),
    })
}

/// containers-storage's graph drivers, by the name a store files its directories under (the
/// driver's `String()`: `overlay2` is an alias of `overlay`). These four are every driver the
/// containers-storage CRI-O v1.36 vendors registers (`go.podman.io/storage/drivers/register`);
/// CRI-O runs on whichever its configuration (`storage_driver`, else storage.conf's `driver`)
/// names, or the first of these the host supports.
pub const STORAGE_DRIVERS: [&str; 4] = ["overlay", "btrfs", "zfs", "vfs"];

/// `<storage root>/<driver>-containers/<id>/userdata`: where containers-storage keeps a
/// container's directory below its graph root or its run root (`ContainerDirectory`,
/// `ContainerRunDirectory` in `go.podman.io/storage`'s `store.go`), on every driver alike.
pub fn storage_container_dir(storage_root: &Path, driver: &str, id: &str) -> PathBuf {
    storage_root
        .join(format!("{driver}-containers"))
        .join(id)
        .join("userdata")
}

/// The runtime that wrote a bundle, from its location alone: CRI-O runs a container from its
/// run directory, `<runroot>/<driver>-containers/<id>/userdata` (`RunDir` in CRI-O's
/// `internal/storage/runtime.go`), while Podman runs it from the same path under the graph
/// root; a Podman user cannot place a bundle in CRI-O's run root without being root on the
/// node. Every storage driver is recognised ([`STORAGE_DRIVERS`]): the driver changes only the
/// directory's name, and all of them lie in the run root only root writes. Anything else has no
/// runtime whose metadata is trusted.
pub fn detect_runtime(bundle: &Path, id: &str, paths: &Paths) -> Runtime {
    let in_run_root = STORAGE_DRIVERS
        .iter()
        .any(|d| bundle == storage_container_dir(&paths.crio_runroot, d, id));
    if id_is_one_component(id) && in_run_root {
        Runtime::CriO
    } else {
        Runtime::None
    }
}

fn id_is_one_component(id: &str) -> bool {
    matches!(
        Path::new(id).components().collect::<Vec<_>>().as_slice(),
        [Component::Normal(_)]
    )
}

/// Where the runtime keeps the pod sandbox's bundle, for a container of that pod.
pub fn sandbox_bundle(runtime: Runtime, bundle: &Path, identity: &Identity) -> Option<PathBuf> {
    let kube = identity.kube.as_ref()?;
    if kube.is_sandbox || !id_is_one_component(&kube.sandbox_id) {
        return None;
    }
    let sid = &kube.sandbox_id;
    match runtime {
        // runtime/v2 bundles: <state>/io.containerd.runtime.v2.task/<namespace>/<id>.
        Runtime::Containerd => Some(bundle.parent()?.join(sid)),
        // <runroot>/<driver>-containers/<id>/userdata: the sandbox's beside it, same driver.
        Runtime::CriO => Some(bundle.parent()?.parent()?.join(sid).join("userdata")),
        Runtime::None => None,
    }
}

/// Parses one capability set. A name that is a real capability with one `CAP_` too many
/// (`CAP_CAP_CHOWN`) is what containerd writes for `capabilities.add: ["CAP_CHOWN"]`: runc
/// ignores it, admission refuses it, so it goes to `requested` (as the pod wrote it) instead of
/// failing the evaluation. Any other unknown name is an error.
fn capset(
    names: &Option<Vec<String>>,
    set: &'static str,
    requested: &mut Vec<String>,
) -> Result<CapSet, Error> {
    let mut out = CapSet::EMPTY;
    for name in names.iter().flatten() {
        match CapSet::from_names([name.as_str()]) {
            Ok(one) => out = out.union(one),
            Err(_) => match name.strip_prefix("CAP_") {
                Some(inner) if CapSet::from_names([inner]).is_ok() => {
                    requested.push(inner.to_owned())
                }
                _ => return Err(Error::UnknownCapability(name.clone(), set)),
            },
        }
    }
    Ok(out)
}

/// The capabilities this host grants a privileged container: the runtime's bounding set, which
/// the hook inherits. Unreadable means every capability the caps crate knows.
fn host_caps() -> CapSet {
    let set = caps::read(None, caps::CapSet::Bounding).unwrap_or_else(|_| caps::all());
    let mut out = CapSet::EMPTY;
    for c in set {
        out.insert(c);
    }
    out
}

/// Whether `runtime` applies AppArmor profiles on this host, as it decides it itself.
fn apparmor_applied(runtime: Runtime, mode: AppArmorMode) -> bool {
    if mode == AppArmorMode::Disabled {
        return false;
    }
    let kernel = Path::new("/sys/kernel/security/apparmor").exists()
        && std::fs::read("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|b| b.first() == Some(&b'Y'));
    kernel && (runtime != Runtime::Containerd || Path::new("/sbin/apparmor_parser").exists())
}

/// Builds the facts. All the I/O of an evaluation happens here. `live` says the spec belongs to
/// a container being created now (hook mode, or `check` on a running container's bundle), so
/// `/proc/<pid>` paths and mount sources in it are current.
pub fn collect(loaded: &Loaded, policy: &Policy, live: bool) -> Result<Facts, Error> {
    let spec = &loaded.spec;
    let sandbox = loaded.sandbox.as_ref().map(|s| &s.spec);
    let identity = &loaded.identity;
    let path = || loaded.bundle.join("config.json");
    let process = spec
        .process
        .as_ref()
        .ok_or_else(|| Error::NoProcess(path()))?;
    let empty = raw::RawCapabilities::default();
    let c = process.capabilities.as_ref().unwrap_or(&empty);
    let mut prefixed_caps = Vec::new();
    let r = &mut prefixed_caps;
    let caps = Capabilities {
        bounding: capset(&c.bounding, "process.capabilities.bounding", r)?,
        effective: capset(&c.effective, "process.capabilities.effective", r)?,
        permitted: capset(&c.permitted, "process.capabilities.permitted", r)?,
        inheritable: capset(&c.inheritable, "process.capabilities.inheritable", r)?,
        ambient: capset(&c.ambient, "process.capabilities.ambient", r)?,
    };
    prefixed_caps.sort_unstable();
    prefixed_caps.dedup();
    let linux = spec.linux.as_ref();
    let is_empty = |v: Option<&Vec<String>>| v.is_none_or(|v| v.is_empty());
    let proc_unmasked = is_empty(linux.and_then(|l| l.masked_paths.as_ref()))
        && is_empty(linux.and_then(|l| l.readonly_paths.as_ref()));
    // Any sysfs mounted without `ro`: runtimes mount /sys read-write only for privileged.
    let sys_writable = spec.mounts().iter().any(|m| {
        m.typ().as_deref() == Some("sysfs")
            && !m
                .options()
                .as_deref()
                .is_some_and(|o| o.iter().any(|s| s == "ro"))
    });
    // /proc/sys left writable while the rest of /proc is masked: no runtime builds that for
    // an unprivileged container (kubelet's default lists make it read-only, Unmasked empties
    // both lists).
    let covers_proc_sys = |v: Option<&Vec<String>>| {
        v.is_some_and(|v| v.iter().any(|p| Path::new("/proc/sys").starts_with(p)))
    };
    let proc_sys_writable = !proc_unmasked
        && !covers_proc_sys(linux.and_then(|l| l.readonly_paths.as_ref()))
        && !covers_proc_sys(linux.and_then(|l| l.masked_paths.as_ref()));
    let all_devices = linux
        .and_then(|l| l.resources.as_ref())
        .and_then(|r| r.devices.as_ref())
        .is_some_and(|devs| {
            devs.iter().any(|d| {
                d.allow()
                    && matches!(d.typ(), None | Some(oci_spec::runtime::LinuxDeviceType::A))
                    && d.major().is_none()
                    && d.minor().is_none()
                    && d.access()
                        .as_deref()
                        .is_none_or(|a| a.contains('r') && a.contains('w'))
            })
        });

    let ns = |kind| namespaces::is_host(kind, spec, sandbox, live);
    let host_ns = HostNamespaces {
        network: ns(LinuxNamespaceType::Network)?,
        pid: ns(LinuxNamespaceType::Pid)?,
        ipc: ns(LinuxNamespaceType::Ipc)?,
    };

    let kube = identity.kube.as_ref();
    let pod_uid = kube
        .and_then(|k| k.pod_uid.clone())
        .or_else(|| sandbox.and_then(uid_from_log_directory));
    if kube.is_some() && pod_uid.is_none() {
        return Err(Error::NoPodUid(identity.runtime.pod_uid_key()));
    }
    let roots = mounts::Roots::new(&mounts::RootInputs {
        paths: &policy.paths,
        pod_uid: pod_uid.as_deref(),
        container_id: &identity.container_id,
        sandbox_id: kube.map(|k| k.sandbox_id.as_str()),
        bundle: &loaded.bundle,
        sandbox_bundle: loaded.sandbox.as_ref().and_then(|s| s.bundle.as_deref()),
    });
    let mounts = mounts::classify(spec.mounts(), &roots, &loaded.bundle, live);

    let mut sysctls: Vec<String> = [Some(spec), sandbox]
        .into_iter()
        .flatten()
        .filter_map(|s| s.linux.as_ref()?.sysctl.as_ref())
        .flat_map(|m| m.keys().cloned())
        .collect();
    sysctls.sort_unstable();
    sysctls.dedup();

    let profile = process.apparmor_profile.clone().filter(|p| !p.is_empty());
    let apparmor = if profile.is_some() || apparmor_applied(identity.runtime, policy.apparmor) {
        AppArmor::Profile(profile)
    } else {
        AppArmor::HostDisabled
    };

    Ok(Facts {
        caps,
        prefixed_caps,
        // Reading the bounding set costs a prctl per capability; only an unmasked /proc with
        // no other privileged trait needs it (`is_privileged` reads it only then).
        host_caps: if proc_unmasked && !(sys_writable || proc_sys_writable || all_devices) {
            host_caps()
        } else {
            CapSet::EMPTY
        },
        proc_unmasked,
        sys_writable,
        proc_sys_writable,
        all_devices,
        host_ns,
        user_namespace: namespaces::has_user_namespace(spec, live),
        mounts,
        sysctls,
        seccomp: linux.is_some_and(|l| l.seccomp.is_some()),
        apparmor,
        selinux_label: process.selinux_label.clone().filter(|l| !l.is_empty()),
        no_new_privileges: process.no_new_privileges.unwrap_or(false),
        uid: process.user.uid,
    })
}

/// containerd before 1.6.11 sets no sandbox-uid; its sandbox spec still names the pod's log
/// directory, `/var/log/pods/<namespace>_<name>_<uid>`.
fn uid_from_log_directory(sandbox: &RawSpec) -> Option<String> {
    let dir = sandbox.annotation(identity::keys::CRI_SANDBOX_LOG_DIRECTORY)?;
    let last = Path::new(dir).file_name()?.to_str()?;
    let uid = last.rsplit('_').next()?;
    (!uid.is_empty() && uid != last).then(|| uid.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_requires_clean_absolute_bundle() {
        let ok =
            br#"{"ociVersion":"1.0.2","id":"c","status":"creating","pid":1,"bundle":"/run/b/c"}"#;
        assert!(parse_state(ok).is_ok());
        for bad in [
            &br#"{"ociVersion":"1.0.2","id":"c","status":"creating"}"#[..],
            br#"{"id":"c","status":"creating","bundle":"rel/b"}"#,
            br#"{"id":"c","status":"creating","bundle":"/run/../etc"}"#,
            br#"{"id":"c","status":"creating","bundle":"/run/./b"}"#,
            br#"{"id":"c","status":"creating","bundle":"/run//b"}"#,
            br#"{"id":"c","status":"creating","bundle":"/run/b/"}"#,
            br#"not json"#,
            br#""#,
        ] {
            assert!(
                parse_state(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    static NONE: scan::Fields = scan::Fields(&[]);

    fn check_depth(bytes: &[u8]) -> Result<&str, serde_json::Error> {
        scan::check(bytes, &NONE)
    }

    /// A byte-at-a-time scan: the depth it reaches.
    fn reference_depth(bytes: &[u8]) -> usize {
        let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0, false, false);
        for &b in bytes {
            if in_string {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    max = max.max(depth);
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        max
    }

    #[test]
    fn depth_scan_agrees_with_a_byte_at_a_time_scan() {
        let n = MAX_JSON_DEPTH;
        for body in [
            r#""[\"[\\"{"#,
            r#""a\\"["#,
            r#""\\\"[""#,
            r#""é\u00e9[""#,
            r#""unterminated ["#,
            r#""ends in a backslash \"#,
            r#"[]"[" {}"#,
            "",
        ] {
            for open in [n - 1, n] {
                for close in [0, open] {
                    let doc = format!("{}{body}{}", "[".repeat(open), "]".repeat(close));
                    let deeper = reference_depth(doc.as_bytes()) > n;
                    assert_eq!(check_depth(doc.as_bytes()).is_err(), deeper, "{body}");
                }
            }
        }
        // The cases above reach both verdicts.
        assert!(check_depth(format!("{}{{", "[".repeat(n)).as_bytes()).is_err());
        assert!(check_depth(format!("{}\"{{\"", "[".repeat(n)).as_bytes()).is_ok());
    }

    #[test]
    fn deep_nesting_is_refused_even_in_ignored_fields() {
        let deep = |n: usize| {
            format!(
                r#"{{"process":{{"user":{{"uid":0}}}},"x":{}"[{{\"]"{}}}"#,
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        let p = Path::new("config.json");
        assert!(parse_spec(deep(MAX_JSON_DEPTH - 1).as_bytes(), p).is_ok());
        let e = parse_spec(deep(MAX_JSON_DEPTH).as_bytes(), p).unwrap_err();
        assert!(
            e.chain().contains("nested deeper than 128"),
            "{}",
            e.chain()
        );
        assert!(parse_spec(deep(10_000).as_bytes(), p).is_err());
        let e = parse_spec(b"{\"x\":\"\xff\"}", p).unwrap_err();
        assert!(
            e.chain().contains("not UTF-8 (invalid byte at offset 6)"),
            "{}",
            e.chain()
        );
    }

    #[test]
    fn fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("config.json");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
        assert!(read_bounded(&fifo, 100).is_err());
        assert!(load_spec_file(&fifo).is_err());
        let e = load_bundle_spec(dir.path()).unwrap_err();
        assert!(e.chain().contains("not a regular file"), "{}", e.chain());
    }

    #[test]
    fn bounded_read_refuses_oversize() {
        let data = [b' '; 100];
        assert!(read_all_bounded(&data[..], 100).is_ok());
        assert!(matches!(
            read_all_bounded(&data[..], 99),
            Err(ReadError::TooLarge)
        ));
    }

    #[test]
    fn pod_uid_from_log_directory() {
        let s: RawSpec = serde_json::from_str(
            r#"{"annotations":{"io.kubernetes.cri.sandbox-log-directory":"/var/log/pods/default_web_1234-ab"}}"#,
        )
        .unwrap();
        assert_eq!(uid_from_log_directory(&s).as_deref(), Some("1234-ab"));
    }

    #[test]
    fn sandbox_bundle_locations() {
        let mut id = Identity {
            kube: Some(identity::Kube {
                sandbox_id: "sb1".into(),
                ..identity::Kube::default()
            }),
            ..Identity::default()
        };
        let b = Path::new("/run/containerd/io.containerd.runtime.v2.task/k8s.io/c1");
        assert_eq!(
            sandbox_bundle(Runtime::Containerd, b, &id).unwrap(),
            Path::new("/run/containerd/io.containerd.runtime.v2.task/k8s.io/sb1")
        );
        let b = Path::new("/run/containers/storage/overlay-containers/c1/userdata");
        assert_eq!(
            sandbox_bundle(Runtime::CriO, b, &id).unwrap(),
            Path::new("/run/containers/storage/overlay-containers/sb1/userdata")
        );
        id.kube.as_mut().unwrap().sandbox_id = "../x".into();
        assert_eq!(sandbox_bundle(Runtime::Containerd, b, &id), None);
    }

    /// CRI-O's bundle on each containers-storage driver, laid out as CRI-O v1.36.3 lays it out
    /// (`ContainerRunDirectory`: `<runroot>/<driver>-containers/<id>/userdata`; overlay and vfs
    /// also seen live, tests/kubelet-sim/tests/crio.rs). btrfs and zfs need their filesystems,
    /// so their layouts are checked here only.
    #[test]
    fn cri_o_is_recognised_on_every_storage_driver_and_only_in_its_run_root() {
        let paths = Paths {
            crio_runroot: "/run/containers/storage".into(),
            crio_root: "/var/lib/containers/storage".into(),
            ..Paths::default()
        };
        let id = "0123abcd";
        for driver in ["overlay", "vfs", "btrfs", "zfs"] {
            let run = format!("/run/containers/storage/{driver}-containers/{id}/userdata");
            assert_eq!(
                detect_runtime(Path::new(&run), id, &paths),
                Runtime::CriO,
                "{driver}"
            );
            // Podman's bundle: the same directory in the graph root.
            let graph = format!("/var/lib/containers/storage/{driver}-containers/{id}/userdata");
            assert_eq!(
                detect_runtime(Path::new(&graph), id, &paths),
                Runtime::None,
                "{driver}"
            );
            // Another container's directory, another store directory, a path that climbs.
            for other in [
                format!("/run/containers/storage/{driver}-containers/other/userdata"),
                format!("/run/containers/storage/{driver}-layers/{id}/userdata"),
                format!("/run/containers/storage/{driver}-containers/{id}"),
                format!("/run/containers/storage/{driver}-containers/x/../{id}/userdata"),
            ] {
                assert_eq!(
                    detect_runtime(Path::new(&other), id, &paths),
                    Runtime::None,
                    "{other}"
                );
            }
            // The sandbox lies beside the container, on the same driver.
            let kube = identity::Kube {
                sandbox_id: "sb1".into(),
                ..identity::Kube::default()
            };
            let ident = Identity {
                kube: Some(kube),
                ..Identity::default()
            };
            assert_eq!(
                sandbox_bundle(Runtime::CriO, Path::new(&run), &ident).unwrap(),
                PathBuf::from(format!(
                    "/run/containers/storage/{driver}-containers/sb1/userdata"
                ))
            );
        }
        // A driver containers-storage does not have is not CRI-O's directory.
        for name in ["aufs", "devicemapper", "overlay2", "", "x/.."] {
            let b = format!("/run/containers/storage/{name}-containers/{id}/userdata");
            assert_eq!(
                detect_runtime(Path::new(&b), id, &paths),
                Runtime::None,
                "{b}"
            );
        }
        // An id that is not one path component never matches.
        let b = "/run/containers/storage/vfs-containers/a/b/userdata";
        assert_eq!(detect_runtime(Path::new(b), "a/b", &paths), Runtime::None);
    }
}
