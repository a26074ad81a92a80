//! Restarting containerd so it reads the new base specs (containers keep running: their shims
//! outlive the daemon). On the node this is `systemctl restart containerd`; from a container with
//! the host's `/` at `--root`, the command runs in the host's mount namespace (PID 1's, which
//! needs `hostPID: true`), where systemctl finds the host's systemd and is not a chroot.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;

const SYSTEMCTL: &str = "/usr/bin/systemctl";
const HOST_MNT_NS: &str = "/proc/1/ns/mnt";

#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    #[error("opening the host mount namespace {HOST_MNT_NS} (the pod needs hostPID: true)")]
    Namespace(#[source] std::io::Error),
    #[error("running {0:?}")]
    Spawn(String, #[source] std::io::Error),
    #[error("{0:?} failed ({1}): {2}")]
    Failed(String, std::process::ExitStatus, String),
    #[error("empty restart command")]
    Empty,
}

pub fn containerd(root: &Path, command: Option<&[String]>) -> Result<(), RestartError> {
    let argv: Vec<String> = match command {
        Some(c) => c.to_vec(),
        None => vec![SYSTEMCTL.into(), "restart".into(), "containerd".into()],
    };
    let (prog, args) = argv.split_first().ok_or(RestartError::Empty)?;
    let mut cmd = Command::new(prog);
    cmd.args(args);
    let ns = if root != Path::new("/") && command.is_none() {
        Some(File::open(HOST_MNT_NS).map_err(RestartError::Namespace)?)
    } else {
        None
    };
    if let Some(ns) = &ns {
        let fd = ns.as_raw_fd();
        #[allow(unsafe_code)]
        // SAFETY: the closure runs in the forked child before exec and only calls setns(2) and
        // chdir(2), both async-signal-safe; `fd` stays open in the parent until spawn returns.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::chdir(c"/".as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let shown = argv.join(" ");
    let out = cmd
        .output()
        .map_err(|e| RestartError::Spawn(shown.clone(), e))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        return Err(RestartError::Failed(shown, out.status, err));
    }
    Ok(())
}
