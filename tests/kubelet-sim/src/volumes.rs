//! The kubelet's on-disk layout for a pod, under a test kubelet root:
//! `<root>/pods/<uid>/volumes/<plugin '/'→'~'>/<name>`, `etc-hosts`,
//! `containers/<ctr>/<hex>` (termination log) and `volume-subpaths/<vol>/<ctr>/<n>`.
//! hostPath volumes are the host path itself.

use std::collections::BTreeMap;
use std::collections::hash_map::RandomState;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::path::{Component, Path, PathBuf};

use nix::mount::{MsFlags, mount};

use crate::Error;
use crate::manifest::Volume;

/// `<kubelet root>/pods/<uid>`.
pub fn pod_dir(kubelet_root: &Path, uid: &str) -> PathBuf {
    kubelet_root.join("pods").join(uid)
}

/// The in-tree plugin directory name kubelet uses for a volume source key
/// (`GetPath` of each plugin: `kubernetes.io/<plugin>` escaped to `kubernetes.io~<plugin>`).
pub fn plugin_dir(source: &str) -> Option<&'static str> {
    Some(match source {
        "emptyDir" => "kubernetes.io~empty-dir",
        "configMap" => "kubernetes.io~configmap",
        "secret" => "kubernetes.io~secret",
        "projected" => "kubernetes.io~projected",
        "downwardAPI" => "kubernetes.io~downward-api",
        "csi" | "ephemeral" | "persistentVolumeClaim" => "kubernetes.io~csi",
        "gitRepo" => "kubernetes.io~git-repo",
        "nfs" => "kubernetes.io~nfs",
        "iscsi" => "kubernetes.io~iscsi",
        "rbd" => "kubernetes.io~rbd",
        "cephfs" => "kubernetes.io~cephfs",
        "glusterfs" => "kubernetes.io~glusterfs",
        "fc" => "kubernetes.io~fc",
        "flocker" => "kubernetes.io~flocker",
        "awsElasticBlockStore" => "kubernetes.io~aws-ebs",
        "gcePersistentDisk" => "kubernetes.io~gce-pd",
        "azureDisk" => "kubernetes.io~azure-disk",
        "azureFile" => "kubernetes.io~azure-file",
        "cinder" => "kubernetes.io~cinder",
        "vsphereVolume" => "kubernetes.io~vsphere-volume",
        "photonPersistentDisk" => "kubernetes.io~photon-pd",
        "portworxVolume" => "kubernetes.io~portworx-volume",
        "quobyte" => "kubernetes.io~quobyte",
        "scaleIO" => "kubernetes.io~scaleio",
        "storageos" => "kubernetes.io~storageos",
        _ => return None,
    })
}

/// A random number, for the names kubelet randomises (termination-log file, pod UID).
pub fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    h.finish()
}

/// Where each volume lives on the host, after kubelet's volume manager set it up.
/// Every volume of the pod is set up, mounted by a container or not (kubelet mounts all of
/// a pod's volumes before starting it).
pub fn setup(
    kubelet_root: &Path,
    host_root: Option<&Path>,
    uid: &str,
    volumes: &[Volume],
) -> Result<BTreeMap<String, PathBuf>, Error> {
    let pod = pod_dir(kubelet_root, uid);
    let mut paths = BTreeMap::new();
    for v in volumes {
        let path = match v.source.as_str() {
            "hostPath" => host_path(v, host_root)?,
            "flexVolume" => {
                // FlexVolume's plugin name is its driver, "vendor/driver" → "vendor~driver".
                let driver = v
                    .spec
                    .get("driver")
                    .and_then(|d| d.as_str())
                    .unwrap_or("unknown");
                let p = pod
                    .join("volumes")
                    .join(driver.replace('/', "~"))
                    .join(&v.name);
                create_dir(&p)?;
                p
            }
            source => {
                let plugin = plugin_dir(source).ok_or_else(|| Error::UnsupportedVolume {
                    volume: v.name.clone(),
                    source_type: source.to_string(),
                })?;
                let mut p = pod.join("volumes").join(plugin).join(&v.name);
                if plugin == "kubernetes.io~csi" {
                    // CSI publishes into `<vol or PV>/mount`.
                    p = p.join("mount");
                }
                create_dir(&p)?;
                fill(source, &p)?;
                p
            }
        };
        paths.insert(v.name.clone(), path);
    }
    Ok(paths)
}

/// Give content-carrying volumes a file, as their plugins would.
fn fill(source: &str, dir: &Path) -> Result<(), Error> {
    let files: &[(&str, &str)] = match source {
        "projected" => &[
            ("token", "test-token\n"),
            ("ca.crt", "test-ca\n"),
            ("namespace", "default\n"),
        ],
        "configMap" | "secret" | "downwardAPI" => &[("data", "test\n")],
        _ => &[],
    };
    for (name, body) in files {
        let p = dir.join(name);
        fs::write(&p, body).map_err(|e| Error::Io(p.clone(), e))?;
    }
    Ok(())
}

/// Where a hostPath lies on this node: the path itself, or the same path under `host_root` when
/// the node keeps a stand-in host filesystem (see [`crate::Options::host_path_root`]). Two stay
/// the kernel's, the same in every mount namespace: `/proc` and what lies below it (runc mounts
/// nothing but a procfs at a container's `/proc`), and `/dev` itself (runc sets up a container
/// whose `/dev` is a bind mount from the device nodes it finds there, `/dev/null` first).
pub fn host_path_on_node(path: &Path, host_root: Option<&Path>) -> PathBuf {
    match host_root {
        Some(root) if !path.starts_with("/proc") && path != Path::new("/dev") => {
            let rel: PathBuf = path
                .components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .collect();
            root.join(rel)
        }
        _ => path.to_path_buf(),
    }
}

fn host_path(v: &Volume, host_root: Option<&Path>) -> Result<PathBuf, Error> {
    let path =
        v.spec
            .get("path")
            .and_then(|p| p.as_str())
            .ok_or_else(|| Error::UnsupportedVolume {
                volume: v.name.clone(),
                source_type: "hostPath without path".into(),
            })?;
    let path = host_path_on_node(Path::new(path), host_root);
    match v.spec.get("type").and_then(|t| t.as_str()).unwrap_or("") {
        "DirectoryOrCreate" => create_dir(&path)?,
        "FileOrCreate" if !path.exists() => {
            if let Some(parent) = path.parent() {
                create_dir(parent)?;
            }
            fs::write(&path, b"").map_err(|e| Error::Io(path.clone(), e))?;
        }
        "Directory" | "File" | "Socket" | "CharDevice" | "BlockDevice" if !path.exists() => {
            return Err(Error::HostPathMissing(path));
        }
        _ => {}
    }
    Ok(path)
}

fn create_dir(p: &Path) -> Result<(), Error> {
    fs::create_dir_all(p).map_err(|e| Error::Io(p.to_path_buf(), e))
}

/// `<pod>/etc-hosts`, the file kubelet bind-mounts over `/etc/hosts`.
pub fn write_etc_hosts(
    kubelet_root: &Path,
    uid: &str,
    hostname: &str,
    ip: &str,
) -> Result<PathBuf, Error> {
    let p = pod_dir(kubelet_root, uid).join("etc-hosts");
    let mut body = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    if !ip.is_empty() {
        body.push_str(&format!("{ip}\t{hostname}\n"));
    }
    fs::write(&p, body).map_err(|e| Error::Io(p.clone(), e))?;
    Ok(p)
}

/// A fresh termination-log file `<pod>/containers/<ctr>/<8 hex>`.
pub fn termination_log(kubelet_root: &Path, uid: &str, container: &str) -> Result<PathBuf, Error> {
    let dir = pod_dir(kubelet_root, uid)
        .join("containers")
        .join(container);
    create_dir(&dir)?;
    // Truncating to 32 bits is the point: kubelet names the file after a random uint32.
    let p = dir.join(format!("{:08x}", random_u64() as u32));
    fs::write(&p, b"").map_err(|e| Error::Io(p.clone(), e))?;
    Ok(p)
}

/// Reject subPaths that climb out of their volume, as kubelet's validation does.
fn check_sub_path(sub: &str) -> Result<(), Error> {
    let p = Path::new(sub);
    if p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(Error::BadSubPath(sub.to_string()));
    }
    Ok(())
}

/// kubelet `prepareSubpathTarget`/`doBindSubPath`: create `<volume>/<sub>` if missing,
/// bind-mount it at `<pod>/volume-subpaths/<vol>/<ctr>/<index>` and hand that to the runtime.
#[allow(clippy::too_many_arguments)] // the subPath coordinates, as kubelet passes them
pub fn bind_sub_path(
    kubelet_root: &Path,
    uid: &str,
    volume: &str,
    volume_path: &Path,
    container: &str,
    index: usize,
    sub: &str,
    mount_ns: Option<u32>,
) -> Result<PathBuf, Error> {
    check_sub_path(sub)?;
    let source = volume_path.join(sub);
    if !source.exists() {
        create_dir(&source)?;
    }
    let target = pod_dir(kubelet_root, uid)
        .join("volume-subpaths")
        .join(volume)
        .join(container)
        .join(index.to_string());
    if source.is_dir() {
        create_dir(&target)?;
    } else {
        if let Some(parent) = target.parent() {
            create_dir(parent)?;
        }
        fs::write(&target, b"").map_err(|e| Error::Io(target.clone(), e))?;
    }
    match mount_ns {
        None => mount(
            Some(&source),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| Error::Mount(target.clone(), e))?,
        Some(pid) => in_mount_ns(pid, &["mount", "--bind"], &[&source, &target])?,
    }
    Ok(target)
}

/// Run a mount command in the mount namespace of `pid` (the runtime's, when it is not
/// ours), with that process's root: the node directory is at the same path there.
fn in_mount_ns(pid: u32, cmd: &[&str], paths: &[&Path]) -> Result<(), Error> {
    let target = paths.last().map_or_else(PathBuf::new, |p| p.to_path_buf());
    let out = std::process::Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-m", "-r", "-w", "--"])
        .args(cmd)
        .args(paths)
        .output()
        .map_err(|e| Error::Io(target.clone(), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Io(
            target,
            std::io::Error::other(format!(
                "{} in the mount namespace of pid {pid}: {}",
                cmd.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        ))
    }
}

/// Unmount what [`bind_sub_path`] mounted for this pod and delete the pod directory.
pub fn cleanup(kubelet_root: &Path, uid: &str, mount_ns: Option<u32>) -> Result<(), Error> {
    let pod = pod_dir(kubelet_root, uid);
    let table = match mount_ns {
        Some(pid) => PathBuf::from(format!("/proc/{pid}/mountinfo")),
        None => PathBuf::from("/proc/self/mountinfo"),
    };
    let mountinfo = fs::read_to_string(&table).map_err(|e| Error::Io(table.clone(), e))?;
    let mut under: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(&pod))
        .collect();
    under.sort();
    for m in under.iter().rev() {
        match mount_ns {
            None => nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH)
                .map_err(|e| Error::Mount(m.clone(), e))?,
            Some(pid) => in_mount_ns(pid, &["umount", "-l"], &[m])?,
        }
    }
    if pod.exists() {
        fs::remove_dir_all(&pod).map_err(|e| Error::Io(pod.clone(), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn managed_volumes_land_in_plugin_dirs() {
        let root = tempfile::tempdir().unwrap();
        let vols = vec![
            Volume {
                name: "e".into(),
                source: "emptyDir".into(),
                spec: json!({}),
            },
            Volume {
                name: "c".into(),
                source: "csi".into(),
                spec: json!({"driver": "d"}),
            },
            Volume {
                name: "f".into(),
                source: "flexVolume".into(),
                spec: json!({"driver": "acme/x"}),
            },
            Volume {
                name: "h".into(),
                source: "hostPath".into(),
                spec: json!({"path": "/a/b"}),
            },
        ];
        let paths = setup(root.path(), None, "u", &vols).unwrap();
        let pod = root.path().join("pods/u/volumes");
        assert_eq!(paths["e"], pod.join("kubernetes.io~empty-dir/e"));
        assert_eq!(paths["c"], pod.join("kubernetes.io~csi/c/mount"));
        assert_eq!(paths["f"], pod.join("acme~x/f"));
        assert_eq!(paths["h"], PathBuf::from("/a/b"));
        assert!(
            !Path::new("/a/b").exists(),
            "a plain hostPath is not created"
        );
    }

    #[test]
    fn host_paths_move_under_a_stand_in_root_except_proc() {
        let root = Path::new("/node/host");
        let on = |p: &str| host_path_on_node(Path::new(p), Some(root));
        assert_eq!(on("/var/lib/kubelet"), root.join("var/lib/kubelet"));
        assert_eq!(on("/"), root.to_path_buf());
        assert_eq!(on("/a/../b/"), root.join("a/b"), "no component climbs out");
        assert_eq!(on("/proc"), PathBuf::from("/proc"));
        assert_eq!(on("/proc/1/ns"), PathBuf::from("/proc/1/ns"));
        assert_eq!(on("/procfs"), root.join("procfs"));
        assert_eq!(on("/dev"), PathBuf::from("/dev"));
        assert_eq!(on("/dev/disk/"), root.join("dev/disk"));
        assert_eq!(
            host_path_on_node(Path::new("/var/log"), None),
            PathBuf::from("/var/log")
        );
    }

    #[test]
    fn sub_path_escape_is_rejected() {
        assert!(check_sub_path("../x").is_err());
        assert!(check_sub_path("/x").is_err());
        assert!(check_sub_path("a/b").is_ok());
    }
}
