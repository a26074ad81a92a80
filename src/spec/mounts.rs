//! Classifies each bind mount's source as managed by kubelet or the runtime for THIS pod and
//! container, or as a host path.
//!
//! A subPath bind (`<pod>/volume-subpaths/<name>/<container>/<index>`) is named after the pod
//! volume, or after the PersistentVolume for a claim, and a hostPath volume used with a subPath
//! lands there too: a pod can name an inline hostPath volume like its claim's PV. Names prove
//! nothing, so a subPath source is managed only when the kernel's mount table shows that what
//! is mounted there lies inside one of this pod's own volumes (same filesystem, root below the
//! volume's). Without a mount table (a saved spec) it is a host path.
//!
//! Managed means under one of: this pod's kubelet directory (`<kubelet>/pods/<uid>/` volumes,
//! volume-subpaths, etc-hosts, containers), containerd's directories for this sandbox and this
//! container, CRI-O/podman storage for this container or sandbox, this container's bundle, or an
//! operator allow-list. Sources are resolved (symlinks, `..`) before comparing, roots too, and
//! prefixes compare whole path components, so `/var/lib/kubelet/pods/<uid>/../<other uid>` and
//! `/var/lib/kubelet/pods/<uid>x` are host paths.

use std::cell::OnceCell;
use std::ffi::OsStr;
use std::fs;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::Mount;

use super::mountinfo::Table;
use crate::facts::{BindMount, MountOrigin};

/// Everything that locates this pod's and container's managed directories.
#[derive(Debug, Default)]
pub struct Roots {
    /// `<kubelet root>/pods/<uid>`, when the pod uid is known.
    pub pod_dir: Option<PathBuf>,
    /// Directories whose whole subtree is managed.
    pub trees: Vec<PathBuf>,
    /// Single managed files or directories (exact match or below).
    pub files: Vec<PathBuf>,
}

/// What the roots are derived from.
pub struct RootInputs<'a> {
    pub paths: &'a crate::config::Paths,
    pub pod_uid: Option<&'a str>,
    pub container_id: &'a str,
    pub sandbox_id: Option<&'a str>,
    pub bundle: &'a Path,
    pub sandbox_bundle: Option<&'a Path>,
}

/// A path with only normal components, so joining it cannot climb out of a root.
fn safe_component(s: &str) -> Option<&str> {
    let p = Path::new(s);
    let mut comps = p.components();
    match (comps.next(), comps.next()) {
        (Some(Component::Normal(_)), None) => Some(s),
        _ => None,
    }
}

impl Roots {
    pub fn new(i: &RootInputs) -> Roots {
        let p = i.paths;
        let mut trees: Vec<PathBuf> = p.allowed_host_paths.iter().map(|a| resolve(a)).collect();
        let mut files = Vec::new();
        trees.push(resolve(i.bundle));
        if let Some(sb) = i.sandbox_bundle {
            trees.push(resolve(sb));
        }
        let cri_root = resolve(&p.containerd_root.join("io.containerd.grpc.v1.cri"));
        let cri_state = resolve(&p.containerd_state.join("io.containerd.grpc.v1.cri"));
        let ids = [Some(i.container_id), i.sandbox_id];
        for id in ids.into_iter().flatten().filter_map(safe_component) {
            for storage in [&p.crio_root, &p.crio_runroot] {
                for driver in super::STORAGE_DRIVERS {
                    trees.push(resolve(&super::storage_container_dir(storage, driver, id)));
                }
            }
        }
        if let Some(cid) = safe_component(i.container_id) {
            trees.push(cri_root.join("containers").join(cid).join("volumes"));
        }
        if let Some(sid) = i.sandbox_id.and_then(safe_component) {
            for f in ["hostname", "hosts", "resolv.conf"] {
                files.push(cri_root.join("sandboxes").join(sid).join(f));
            }
            trees.push(cri_state.join("sandboxes").join(sid).join("shm"));
            trees.push(cri_state.join("image-volumes").join(sid));
        }
        let pod_dir = i
            .pod_uid
            .and_then(safe_component)
            .map(|uid| resolve(&p.kubelet_root).join("pods").join(uid));
        Roots {
            pod_dir,
            trees,
            files,
        }
    }

    /// `table` gives the mount table, when the spec is live and the table could be read.
    fn classify<'t>(&self, src: &Path, table: &dyn Fn() -> Option<&'t Table>) -> MountOrigin {
        if let Some(pod) = &self.pod_dir
            && let Ok(rest) = src.strip_prefix(pod)
        {
            return classify_in_pod(pod, rest, src, table);
        }
        if self.trees.iter().any(|t| src.starts_with(t)) || self.files.iter().any(|f| src == f) {
            return MountOrigin::Managed { plugin: None };
        }
        MountOrigin::Host
    }
}

/// `rest` is the path below `<kubelet>/pods/<uid>`.
fn classify_in_pod<'t>(
    pod: &Path,
    rest: &Path,
    src: &Path,
    table: &dyn Fn() -> Option<&'t Table>,
) -> MountOrigin {
    let parts: Vec<&OsStr> = rest.iter().collect();
    match parts.as_slice() {
        // kubelet creates these for its volume plugins only; a hostPath volume has none.
        [v, p, _name, ..] if *v == "volumes" => MountOrigin::Managed {
            plugin: Some(p.to_string_lossy().into_owned()),
        },
        [s, _vol, _ctr, _n, ..] if *s == "volume-subpaths" => match table() {
            Some(t) => subpath_origin(t, pod, src),
            None => MountOrigin::Host,
        },
        [e] if *e == "etc-hosts" => MountOrigin::Managed { plugin: None },
        [c, _ctr, _file] if *c == "containers" => MountOrigin::Managed { plugin: None },
        _ => MountOrigin::Host,
    }
}

/// A subPath source is managed when what it shows lies inside one of this pod's volumes:
/// `<pod>/volumes/<plugin>/<name>` (or its CSI `mount` directory).
fn subpath_origin(table: &Table, pod: &Path, src: &Path) -> MountOrigin {
    let mut volumes = Vec::new();
    if let Ok(plugins) = fs::read_dir(pod.join("volumes")) {
        for plugin in plugins.flatten() {
            let name = plugin.file_name().to_string_lossy().into_owned();
            for volume in fs::read_dir(plugin.path()).into_iter().flatten().flatten() {
                let dir = volume.path();
                for cand in [dir.join("mount"), dir] {
                    if fs::symlink_metadata(&cand).is_ok() {
                        volumes.push((name.clone(), cand));
                    }
                }
            }
        }
    }
    match volume_holding(table, src, &volumes) {
        Some(plugin) => MountOrigin::Managed {
            plugin: Some(plugin.to_owned()),
        },
        None => MountOrigin::Host,
    }
}

/// The plugin of the first of `volumes` (`(plugin, directory)`) whose content holds what `src`
/// shows: the same filesystem, and `src`'s place in it at or below the volume's, each located
/// through the mount table.
pub fn volume_holding<'v>(
    table: &Table,
    src: &Path,
    volumes: &'v [(String, PathBuf)],
) -> Option<&'v str> {
    let (dev, at) = table.locate(src)?;
    volumes
        .iter()
        .find(|(_, dir)| {
            table
                .locate(dir)
                .is_some_and(|(vdev, vat)| vdev == dev && at.starts_with(&vat))
        })
        .map(|(plugin, _)| plugin.as_str())
}

/// `bind` or `rbind` in the options, or type `bind`.
pub fn is_bind(m: &Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .as_deref()
            .is_some_and(|o| o.iter().any(|s| s == "bind" || s == "rbind"))
}

/// Resolves symlinks and `..` as the host sees them; a path that does not exist (a saved spec)
/// is normalised lexically instead.
pub fn resolve(p: &Path) -> PathBuf {
    if p.is_absolute() {
        match symlink_free(p) {
            // No component is a symlink: the path is its own canonical form, once `.`, `..`
            // and repeated slashes are folded, which is what `lexical` does.
            Ok(()) => return lexical(p),
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => return lexical(p),
            // A symlink on the way (ELOOP, EXDEV), no openat2 (ENOSYS), or anything else.
            Err(_) => {}
        }
    }
    match kernel_path(p) {
        Ok(Some(path)) => path,
        // Nothing there, which canonicalize would only find again, component by component
        // (CRI-O's roots on a containerd node, say).
        Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => lexical(p),
        _ => fs::canonicalize(p).unwrap_or_else(|_| lexical(p)),
    }
}

/// Opens `p` (`O_PATH`, which opens nothing) refusing to follow any symlink: one system call
/// instead of `kernel_path`'s three for the usual mount source, which has none.
fn symlink_free(p: &Path) -> Result<(), nix::errno::Errno> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
    nix::fcntl::openat2(nix::fcntl::AT_FDCWD, p, how).map(drop)
}

/// The kernel's name for the file `p` leads to: one path walk (`open` with `O_PATH`, which opens
/// nothing and never blocks) and one `readlink` of its `/proc/self/fd` entry. `realpath(3)`
/// walks the path again for every component, which made resolving a pod's mounts the costliest
/// part of an evaluation. `Ok(None)` when the answer is not a plain path (a deleted or
/// unreachable file, no `/proc`), and `canonicalize` decides; `Err` when the path cannot be
/// opened.
fn kernel_path(p: &Path) -> Result<Option<PathBuf>, nix::errno::Errno> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let fd = nix::fcntl::open(
        p,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let Ok(link) = nix::fcntl::readlink(format!("/proc/self/fd/{}", fd.as_raw_fd()).as_str())
    else {
        return Ok(None);
    };
    let b = link.as_bytes();
    Ok((b.first() == Some(&b'/') && !b.ends_with(b" (deleted)")).then(|| PathBuf::from(link)))
}

fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Every bind mount of the spec, classified. `live` says the sources are the ones the container
/// is being created with, so the mount table can prove where subPath binds come from.
pub fn classify(mounts: &[Mount], roots: &Roots, bundle: &Path, live: bool) -> Vec<BindMount> {
    // Read once, and only when a subPath source needs it.
    let cell: OnceCell<Option<Table>> = OnceCell::new();
    let table = || {
        if live {
            cell.get_or_init(Table::read).as_ref()
        } else {
            None
        }
    };
    mounts
        .iter()
        .filter(|m| is_bind(m))
        .map(|m| {
            let raw = m.source().clone().unwrap_or_default();
            // runc resolves a relative bind source against the bundle.
            let abs = if raw.is_absolute() {
                raw
            } else {
                bundle.join(raw)
            };
            let src = resolve(&abs);
            BindMount {
                origin: roots.classify(&src, &table),
                source: src.to_string_lossy().into_owned(),
                destination: m.destination().to_string_lossy().into_owned(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Paths;

    fn roots(kubelet: &Path, extra: Vec<PathBuf>) -> Roots {
        let paths = Paths {
            kubelet_root: kubelet.to_owned(),
            allowed_host_paths: extra,
            ..Paths::default()
        };
        Roots::new(&RootInputs {
            paths: &paths,
            pod_uid: Some("uid-1"),
            container_id: "c1",
            sandbox_id: Some("sb1"),
            bundle: Path::new("/run/containerd/io.containerd.runtime.v2.task/k8s.io/c1"),
            sandbox_bundle: None,
        })
    }

    fn no_table<'a>() -> Option<&'a Table> {
        None
    }

    fn origin(r: &Roots, src: &str) -> MountOrigin {
        r.classify(&resolve(Path::new(src)), &no_table)
    }

    #[test]
    fn kubelet_volume_dirs_of_this_pod_are_managed() {
        let r = roots(Path::new("/nonexistent-kubelet"), vec![]);
        assert_eq!(
            origin(
                &r,
                "/nonexistent-kubelet/pods/uid-1/volumes/kubernetes.io~configmap/cfg"
            ),
            MountOrigin::Managed {
                plugin: Some("kubernetes.io~configmap".into())
            }
        );
        assert_eq!(
            origin(&r, "/nonexistent-kubelet/pods/uid-1/etc-hosts"),
            MountOrigin::Managed { plugin: None }
        );
        assert_eq!(
            origin(&r, "/nonexistent-kubelet/pods/uid-1/containers/app/1a2b3c"),
            MountOrigin::Managed { plugin: None }
        );
    }

    #[test]
    fn other_pods_and_escapes_are_host_paths() {
        let r = roots(Path::new("/nonexistent-kubelet"), vec![]);
        for src in [
            "/nonexistent-kubelet/pods/uid-2/volumes/kubernetes.io~secret/s",
            "/nonexistent-kubelet/pods/uid-1/volumes/../../uid-2/volumes/kubernetes.io~secret/s",
            "/nonexistent-kubelet/pods/uid-1x/volumes/kubernetes.io~secret/s",
            "/nonexistent-kubelet/pods/uid-1",
            "/nonexistent-kubelet/pods/uid-1/volumes",
            "/nonexistent-kubelet/pods/uid-1/plugins/x",
            "/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~secret/s",
            "/etc",
            "/",
        ] {
            assert_eq!(origin(&r, src), MountOrigin::Host, "{src}");
        }
    }

    #[test]
    fn containerd_sandbox_files_only_for_this_sandbox() {
        let r = roots(Path::new("/nonexistent-kubelet"), vec![]);
        let c = "/var/lib/containerd/io.containerd.grpc.v1.cri";
        assert_eq!(
            origin(&r, &format!("{c}/sandboxes/sb1/resolv.conf")),
            MountOrigin::Managed { plugin: None }
        );
        assert_eq!(
            origin(&r, &format!("{c}/sandboxes/sb2/resolv.conf")),
            MountOrigin::Host
        );
        assert_eq!(
            origin(&r, &format!("{c}/sandboxes/sb1/secret-file")),
            MountOrigin::Host
        );
        assert_eq!(
            origin(
                &r,
                "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/sb1/shm"
            ),
            MountOrigin::Managed { plugin: None }
        );
        assert_eq!(
            origin(&r, &format!("{c}/containers/c1/volumes/abc")),
            MountOrigin::Managed { plugin: None }
        );
        assert_eq!(
            origin(&r, &format!("{c}/containers/c2/volumes/abc")),
            MountOrigin::Host
        );
    }

    #[test]
    fn symlink_into_host_is_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let kubelet = dir.path().join("kubelet");
        let vol = kubelet.join("pods/uid-1/volumes/kubernetes.io~empty-dir/data");
        fs::create_dir_all(&vol).unwrap();
        std::os::unix::fs::symlink("/etc", vol.join("link")).unwrap();
        let r = roots(&kubelet, vec![]);
        assert_eq!(
            r.classify(&resolve(&vol.join("link")), &no_table),
            MountOrigin::Host,
            "a symlink inside a volume pointing at /etc"
        );
        assert!(matches!(
            r.classify(&resolve(&vol), &no_table),
            MountOrigin::Managed { .. }
        ));
    }

    #[test]
    fn subpath_is_managed_only_when_the_mount_table_puts_it_inside_a_pod_volume() {
        let dir = tempfile::tempdir().unwrap();
        let kubelet = dir.path().join("kubelet");
        let pod = kubelet.join("pods/uid-1");
        let cfg = pod.join("volumes/kubernetes.io~configmap/cfg");
        let pv = pod.join("volumes/kubernetes.io~csi/pvc-1");
        fs::create_dir_all(&cfg).unwrap();
        fs::create_dir_all(pv.join("mount")).unwrap();
        let sp = |vol: &str, n: u32| pod.join(format!("volume-subpaths/{vol}/app/{n}"));
        // The configmap is a directory on the root filesystem; the PV is its own mount; the
        // pod also names an inline hostPath volume `pvc-1` (its PV's name) used with a subPath.
        let table = Table::parse(
            &format!(
                "1 0 8:1 / / rw - ext4 a rw\n\
             2 1 9:9 / {pv}/mount rw - ext4 b rw\n\
             3 1 8:1 {cfg}/sub {cfg_sp} rw - ext4 a rw\n\
             4 1 9:9 /data {pv_sp} rw - ext4 b rw\n\
             5 1 8:1 /etc {host_sp} rw - ext4 a rw\n",
                pv = pv.display(),
                cfg = cfg.display(),
                cfg_sp = sp("cfg", 0).display(),
                pv_sp = sp("pvc-1", 1).display(),
                host_sp = sp("pvc-1", 2).display(),
            )
            .into_bytes(),
        );
        let live = || Some(&table);
        let r = roots(&kubelet, vec![]);
        let managed = |p: &str| MountOrigin::Managed {
            plugin: Some(p.into()),
        };
        assert_eq!(
            r.classify(&sp("cfg", 0), &live),
            managed("kubernetes.io~configmap")
        );
        assert_eq!(
            r.classify(&sp("pvc-1", 1), &live),
            managed("kubernetes.io~csi")
        );
        assert_eq!(
            r.classify(&sp("pvc-1", 2), &live),
            MountOrigin::Host,
            "a hostPath named like the PV"
        );
        // Not a mount point at all: whatever is there lies in kubelet's own directory.
        assert_eq!(r.classify(&sp("cfg", 9), &live), MountOrigin::Host);
        // Without a mount table nothing is proven.
        assert_eq!(r.classify(&sp("cfg", 0), &no_table), MountOrigin::Host);
    }

    #[test]
    fn subpaths_are_host_paths_in_a_saved_spec() {
        let r = roots(Path::new("/nonexistent-kubelet"), vec![]);
        let pod = "/nonexistent-kubelet/pods/uid-1";
        let mounts: Vec<Mount> = serde_json::from_value(serde_json::json!([
            {"destination": "/data", "type": "bind",
             "source": format!("{pod}/volumes/kubernetes.io~empty-dir/data")},
            {"destination": "/sub", "type": "bind",
             "source": format!("{pod}/volume-subpaths/data/app/1")}
        ]))
        .unwrap();
        let got: Vec<MountOrigin> = classify(&mounts, &r, Path::new("/b"), false)
            .into_iter()
            .map(|m| m.origin)
            .collect();
        let empty_dir = MountOrigin::Managed {
            plugin: Some("kubernetes.io~empty-dir".into()),
        };
        assert_eq!(got, vec![empty_dir, MountOrigin::Host]);
    }

    #[test]
    fn allow_list_and_bundle_are_managed() {
        let r = roots(
            Path::new("/nonexistent-kubelet"),
            vec!["/run/cni-sock".into()],
        );
        assert_eq!(
            origin(&r, "/run/cni-sock/a.sock"),
            MountOrigin::Managed { plugin: None }
        );
        assert_eq!(origin(&r, "/run/cni-sockx"), MountOrigin::Host);
        assert_eq!(
            origin(
                &r,
                "/run/containerd/io.containerd.runtime.v2.task/k8s.io/c1/x"
            ),
            MountOrigin::Managed { plugin: None }
        );
    }

    #[test]
    fn resolve_agrees_with_canonicalize() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("a/b");
        fs::create_dir_all(&real).unwrap();
        fs::write(real.join("f"), "").unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        for p in [
            dir.path().join("link/f"),
            dir.path().join("a/b/../b/f"),
            dir.path().join("a/./b//f"),
            dir.path().join("link/../b/f"),
            dir.path().join("link"),
            dir.path().join("a/b/"),
            PathBuf::from("/"),
            PathBuf::from("/proc/self/root/etc"),
        ] {
            assert_eq!(resolve(&p), fs::canonicalize(&p).unwrap(), "{p:?}");
        }
        assert_eq!(
            resolve(&dir.path().join("missing/../x")),
            lexical(&dir.path().join("missing/../x"))
        );
    }

    #[test]
    fn bind_detection() {
        let m: Vec<Mount> = serde_json::from_str(
            r#"[{"destination":"/a","type":"bind","source":"/x"},
                {"destination":"/b","type":"none","source":"/y","options":["rbind","ro"]},
                {"destination":"/proc","type":"proc","source":"proc"}]"#,
        )
        .unwrap();
        let v: Vec<bool> = m.iter().map(is_bind).collect();
        assert_eq!(v, vec![true, true, false]);
    }
}
