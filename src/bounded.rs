//! Bounded reads of regular files: every file the hook reads is one a runtime or the operator
//! wrote, so one that is too large or is not a regular file (a FIFO would block the open, and the
//! hook, until a writer came) is refused rather than read.

use std::io::Read;
use std::path::Path;

#[derive(Debug)]
pub enum ReadError {
    Io(std::io::Error),
    TooLarge,
}

/// Reads at most `limit` bytes; more is an error, never a truncation. Only a regular file is
/// read: a FIFO would block the open (and the hook) until a writer came.
pub fn read_bounded(path: &Path, limit: usize) -> Result<Vec<u8>, ReadError> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(ReadError::Io)?;
    require_regular(&f).map_err(ReadError::Io)?;
    read_all_bounded(f, limit)
}

pub fn require_regular(f: &std::fs::File) -> std::io::Result<()> {
    if f.metadata()?.file_type().is_file() {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ))
    }
}

pub fn read_all_bounded(r: impl Read, limit: usize) -> Result<Vec<u8>, ReadError> {
    let mut buf = Vec::with_capacity(64 * 1024);
    r.take(limit as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(ReadError::Io)?;
    if buf.len() > limit {
        return Err(ReadError::TooLarge);
    }
    Ok(buf)
}
