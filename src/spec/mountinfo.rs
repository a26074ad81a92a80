//! The kernel's mount table (`/proc/self/mountinfo`, proc(5)): which filesystem each mount
//! point shows, and which directory of that filesystem (its `root`). It proves where a bind
//! mount really comes from, which names on disk cannot: a subPath bind is kubelet's only if
//! its root lies inside one of the pod's own volumes.

use std::path::{Path, PathBuf};

/// One line of mountinfo: the fields that say what a mount shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// `major:minor` of the filesystem.
    pub dev: (u32, u32),
    /// The directory of that filesystem the mount shows.
    pub root: PathBuf,
    /// Where it is mounted, in the reader's mount namespace.
    pub mount_point: PathBuf,
}

/// The mount table, in the kernel's order (a later mount on the same point covers an earlier).
#[derive(Clone, Debug, Default)]
pub struct Table(Vec<Mount>);

/// mountinfo is a few hundred KB on a busy node; more is not a mount table.
const MAX_BYTES: usize = 64 * 1024 * 1024;

impl Table {
    /// This process's mount table; `None` when it cannot be read or parsed, so that nothing
    /// is proven from it.
    pub fn read() -> Option<Table> {
        use std::io::Read;
        let f = std::fs::File::open("/proc/self/mountinfo").ok()?;
        let mut text = String::new();
        f.take(MAX_BYTES as u64 + 1)
            .read_to_string(&mut text)
            .ok()?;
        (text.len() <= MAX_BYTES)
            .then(|| Table::parse(&text))
            .flatten()
    }

    /// Parses mountinfo text; any malformed line makes the whole table unusable.
    pub fn parse(text: &str) -> Option<Table> {
        text.lines()
            .map(parse_line)
            .collect::<Option<Vec<_>>>()
            .map(Table)
    }

    /// Every mount, in the kernel's order.
    pub fn mounts(&self) -> &[Mount] {
        &self.0
    }

    /// The mount visible at exactly `path`: the last one mounted there.
    pub fn at(&self, path: &Path) -> Option<&Mount> {
        self.0.iter().rev().find(|m| m.mount_point == path)
    }

    /// Where `path` lies: the filesystem of the mount that holds it (the deepest mount point
    /// above it, the last one mounted there) and the path inside that filesystem.
    pub fn locate(&self, path: &Path) -> Option<((u32, u32), PathBuf)> {
        let m = self
            .0
            .iter()
            .enumerate()
            .filter(|(_, m)| path.starts_with(&m.mount_point))
            .max_by_key(|(i, m)| (m.mount_point.components().count(), *i))
            .map(|(_, m)| m)?;
        let rest = path.strip_prefix(&m.mount_point).ok()?;
        Some((m.dev, m.root.join(rest)))
    }
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`: the
/// third field is the device, the fourth the root, the fifth the mount point.
fn parse_line(line: &str) -> Option<Mount> {
    let mut f = line.split(' ');
    let (_id, _parent) = (f.next()?, f.next()?);
    let (major, minor) = f.next()?.split_once(':')?;
    // A root need not be a path: a bind of a namespace file shows `net:[4026532301]`.
    let root = unescape(f.next()?)?;
    let mount_point = unescape(f.next()?).filter(|p| p.starts_with("/"))?;
    // The separator of the optional fields must follow, or the line is not what it seems.
    f.find(|x| *x == "-")?;
    Some(Mount {
        dev: (major.parse().ok()?, minor.parse().ok()?),
        root,
        mount_point,
    })
}

/// The kernel escapes space, tab, newline and backslash in paths as `\ooo` octal.
fn unescape(s: &str) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'\\' {
            let digits = b.get(i + 1..i + 4)?;
            let text = std::str::from_utf8(digits).ok()?;
            out.push(u8::from_str_radix(text, 8).ok()?);
            i += 4;
        } else {
            out.push(c);
            i += 1;
        }
    }
    Some(PathBuf::from(std::ffi::OsString::from_vec(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:26 / /run rw,nosuid shared:5 - tmpfs tmpfs rw
41 22 254:0 /data/x /var/lib/kubelet/pods/u1/volume-subpaths/v/app/0 rw shared:1 - ext4 /dev/vda rw
42 22 0:40 / /var/lib/kubelet/pods/u1/volumes/kubernetes.io~secret/s rw shared:9 - tmpfs tmpfs rw
43 22 0:40 /k /var/lib/kubelet/pods/u1/volume-subpaths/s/app/1 rw shared:9 - tmpfs tmpfs rw
44 22 254:0 /a\\040b /mnt/with\\040space rw - ext4 /dev/vda rw
45 30 0:4 net:[4026532301] /run/netns/cni-1 rw shared:6 - nsfs nsfs rw
";

    #[test]
    fn parses_device_root_and_mount_point() {
        let t = Table::parse(SAMPLE).unwrap();
        let m = t
            .at(Path::new(
                "/var/lib/kubelet/pods/u1/volume-subpaths/v/app/0",
            ))
            .unwrap();
        assert_eq!(m.dev, (254, 0));
        assert_eq!(m.root, Path::new("/data/x"));
        let m = t.at(Path::new("/mnt/with space")).unwrap();
        assert_eq!(m.root, Path::new("/a b"));
        assert!(t.at(Path::new("/var/lib/kubelet")).is_none());
    }

    #[test]
    fn locates_a_path_in_its_filesystem() {
        let t = Table::parse(SAMPLE).unwrap();
        assert_eq!(
            t.locate(Path::new(
                "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/d"
            )),
            Some((
                (254, 0),
                PathBuf::from("/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/d")
            ))
        );
        assert_eq!(
            t.locate(Path::new(
                "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~secret/s"
            )),
            Some(((0, 40), PathBuf::from("/")))
        );
        assert_eq!(
            t.locate(Path::new("/run/containerd/x")),
            Some(((0, 26), PathBuf::from("/containerd/x")))
        );
    }

    #[test]
    fn a_later_mount_on_the_same_point_covers_the_earlier() {
        let t = Table::parse("1 0 8:1 / / rw - ext4 a rw\n2 1 8:1 /x /m rw - ext4 a rw\n3 1 0:5 / /m rw - tmpfs t rw\n")
            .unwrap();
        assert_eq!(t.at(Path::new("/m")).unwrap().dev, (0, 5));
        assert_eq!(
            t.locate(Path::new("/m/f")),
            Some(((0, 5), PathBuf::from("/f")))
        );
    }

    #[test]
    fn this_machines_mount_table_parses() {
        let t = Table::read().expect("/proc/self/mountinfo parses");
        assert!(t.at(Path::new("/")).is_some());
    }

    #[test]
    fn malformed_tables_prove_nothing() {
        for bad in [
            "22 1 254:0 / / rw",
            "22 1 254 / / rw - ext4 a rw",
            "22 1 a:b / / rw - ext4 a rw",
            "22 1 1:2 / relative rw - ext4 a rw",
            "22 1 1:2 /\\04 / rw - ext4 a rw",
        ] {
            assert!(Table::parse(bad).is_none(), "{bad}");
        }
    }
}
