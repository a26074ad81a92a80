//! The running containerd that serves a given config file, found in `/proc` (the host's: a pod
//! needs `hostPID: true`). containerd reads base runtime specs only when it starts, so "has the
//! daemon reloaded?" is "is it a different process than before?", and "does the running daemon
//! call the hook?" needs its start time.

use std::path::{Path, PathBuf};

use super::files::under;

/// One containerd process: its pid and start time (clock ticks after boot, and seconds since
/// the epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Daemon {
    pub pid: i32,
    pub start_ticks: u64,
    pub started: u64,
}

/// The newest containerd process started with `config` (a host path, matched as the host sees
/// it or as it appears below `root`, e.g. a test's fake root).
pub fn containerd(proc_dir: &Path, root: &Path, config: &Path) -> Option<Daemon> {
    let btime = std::fs::read_to_string(proc_dir.join("stat"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok())?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)
        .unwrap_or(100);
    let below_root = under(root, config);
    let mut best: Option<Daemon> = None;
    for entry in std::fs::read_dir(proc_dir).ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        let is_containerd =
            std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim_end() == "containerd");
        if !is_containerd {
            continue;
        }
        let Some(cfg) = config_of(&dir) else { continue };
        if cfg != config && cfg != below_root {
            continue;
        }
        let Some(start_ticks) = start_ticks(&dir) else {
            continue;
        };
        let d = Daemon {
            pid,
            start_ticks,
            started: btime + start_ticks / hz,
        };
        if best.is_none_or(|b| d.start_ticks > b.start_ticks) {
            best = Some(d);
        }
    }
    best
}

/// Field 22 of `/proc/PID/stat` (starttime), counted after the parenthesised comm.
fn start_ticks(proc_pid: &Path) -> Option<u64> {
    let s = std::fs::read_to_string(proc_pid.join("stat")).ok()?;
    let after = s.get(s.rfind(')')? + 2..)?;
    after.split(' ').nth(19)?.parse().ok()
}

/// The config file a containerd process was started with (`--config`/`-c`, else the default).
pub fn config_of(proc_pid: &Path) -> Option<PathBuf> {
    let raw = std::fs::read(proc_pid.join("cmdline")).ok()?;
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let mut found = None;
    for (i, a) in args.iter().enumerate() {
        if let Some(v) = a.strip_prefix("--config=") {
            found = Some(PathBuf::from(v));
        } else if a == "--config" || a == "-c" {
            found = args.get(i + 1).map(PathBuf::from);
        }
    }
    Some(found.unwrap_or_else(|| PathBuf::from(super::DEFAULT_CONTAINERD_CONFIG)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_of_reads_both_spellings_and_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let w = |args: &[&str]| {
            let mut b = Vec::new();
            for a in args {
                b.extend_from_slice(a.as_bytes());
                b.push(0);
            }
            std::fs::write(dir.path().join("cmdline"), b).unwrap();
            config_of(dir.path()).unwrap()
        };
        assert_eq!(
            w(&["containerd", "--config", "/x.toml"]),
            Path::new("/x.toml")
        );
        assert_eq!(w(&["containerd", "--config=/y.toml"]), Path::new("/y.toml"));
        assert_eq!(w(&["containerd", "-c", "/z.toml"]), Path::new("/z.toml"));
        assert_eq!(
            w(&["/usr/bin/containerd"]),
            Path::new("/etc/containerd/config.toml")
        );
    }

    #[test]
    fn start_ticks_of_this_process_is_read() {
        let me = Path::new("/proc/self");
        assert!(start_ticks(me).is_some());
    }
}
