//! Writing a file the hook reads, so that the hook sees either the old content or the new one,
//! whole, even across a power loss: a temp file in the same directory, fsync, rename, fsync of
//! the directory.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The temp file beside `dest`: same directory (rename must not cross filesystems), and the same
/// file name at the end so a loader that looks at the extension sees the real one.
pub fn temp_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".pss-guard-agent.{}.{name}", std::process::id()))
}

/// Writes `bytes` to `tmp` (mode `mode`) and fsyncs it. The caller renames it into place.
pub fn write_temp(tmp: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let _ = std::fs::remove_file(tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)?;
    // The umask may have narrowed the mode given to open(2).
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Renames `tmp` over `dest` and makes the rename durable.
pub fn commit(tmp: &Path, dest: &Path) -> io::Result<()> {
    if let Err(e) = std::fs::rename(tmp, dest) {
        let _ = std::fs::remove_file(tmp);
        return Err(e);
    }
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// `write_temp` then `commit`, creating the directory if needed.
pub fn write_atomic(dest: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = temp_path(dest);
    if let Err(e) = write_temp(&tmp, bytes, mode) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    commit(&tmp, dest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn write_atomic_replaces_content_with_mode_0644_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dest = dir.path().join("sub/cluster.json");
        write_atomic(&dest, b"one", 0o644).unwrap_or_else(|e| panic!("{e}"));
        write_atomic(&dest, b"two", 0o644).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(std::fs::read(&dest).ok().as_deref(), Some(&b"two"[..]));
        let mode = std::fs::metadata(&dest).map(|m| m.mode() & 0o777).ok();
        assert_eq!(mode, Some(0o644));
        let names: Vec<_> = std::fs::read_dir(dest.parent().unwrap_or(dir.path()))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("cluster.json")]);
    }

    #[test]
    fn temp_path_keeps_the_file_name_at_the_end() {
        let t = temp_path(Path::new("/etc/pss-guard/policy.yaml"));
        assert!(t.starts_with("/etc/pss-guard"));
        assert_eq!(t.extension().and_then(|e| e.to_str()), Some("yaml"));
    }
}
