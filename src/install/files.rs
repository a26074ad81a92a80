//! File operations the installer relies on for its safety: every file is replaced by writing a
//! temporary sibling, fsyncing it, renaming it over the target and fsyncing the directory, so a
//! reader (runc exec-ing the hook, containerd reading its config) sees the old file or the new
//! one, never a half-written one, and a crash leaves one of the two on disk.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::InstallError;

/// `root` + an absolute host path: `/host` + `/usr/local/bin/x` = `/host/usr/local/bin/x`.
pub fn under(root: &Path, host_path: &Path) -> PathBuf {
    match host_path.strip_prefix("/") {
        Ok(rel) => root.join(rel),
        Err(_) => root.join(host_path),
    }
}

/// The file's bytes, or `None` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, InstallError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(InstallError::Read(path.to_owned(), e)),
    }
}

fn mkdirs(dir: &Path) -> Result<(), InstallError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| InstallError::Write(dir.to_owned(), e))
}

/// Replaces `path` atomically with `data` and `mode`.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), InstallError> {
    let dir = path
        .parent()
        .ok_or_else(|| InstallError::Write(path.to_owned(), io::ErrorKind::InvalidInput.into()))?;
    mkdirs(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per writer: two installers (host and DaemonSet) may run at once.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(
        ".{name}.pss-guard-{}-{nanos}.tmp",
        std::process::id()
    ));
    let result = (|| -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(data)?;
        // The umask may have narrowed the mode given to open(2).
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(InstallError::Write(path.to_owned(), e));
    }
    Ok(())
}

/// Removes a file and syncs its directory; a missing file is not an error.
pub fn remove(path: &Path) -> Result<bool, InstallError> {
    match fs::remove_file(path) {
        Ok(()) => {
            if let Some(dir) = path.parent()
                && let Ok(d) = File::open(dir)
            {
                let _ = d.sync_all();
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(InstallError::Remove(path.to_owned(), e)),
    }
}

/// The mode of an existing file, to keep it when the file is rewritten.
pub fn mode_of(path: &Path, default: u32) -> u32 {
    fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_joins_host_paths_below_the_root() {
        assert_eq!(
            under(Path::new("/host"), Path::new("/usr/local/bin/pss-guard")),
            PathBuf::from("/host/usr/local/bin/pss-guard")
        );
        assert_eq!(
            under(Path::new("/"), Path::new("/etc/x")),
            PathBuf::from("/etc/x")
        );
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/file");
        write_atomic(&p, b"one", 0o755).unwrap();
        write_atomic(&p, b"two", 0o755).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(mode_of(&p, 0), 0o755);
        let names: Vec<_> = fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
