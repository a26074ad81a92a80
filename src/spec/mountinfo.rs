//! The kernel's mount table (`/proc/self/mountinfo`, proc(5)): which filesystem each mount
//! point shows, and which directory of that filesystem (its `root`). It proves where a bind
//! mount really comes from, which names on disk cannot: a subPath bind is kubelet's only if
//! its root lies inside one of the pod's own volumes.

use std::path::{Path, PathBuf};

/// One line of mountinfo: where a mount is, and what it shows when its line could be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted, in the reader's mount namespace.
    pub mount_point: PathBuf,
    /// What it shows; `None` when the rest of its line could not be read, so nothing below this
    /// mount point is proven.
    pub shows: Option<Shows>,
}

/// The filesystem a mount shows and which of its directories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shows {
    /// `major:minor` of the filesystem.
    pub dev: (u32, u32),
    /// The directory of that filesystem the mount shows.
    pub root: PathBuf,
}

/// The mount table, in the kernel's order (a later mount on the same point covers an earlier).
#[derive(Clone, Debug, Default)]
pub struct Table {
    mounts: Vec<Mount>,
    /// Lines that name no mount point this parser can read: they place nothing, so they are
    /// left out (the kernel never prints one: it escapes the bytes that would break a field).
    pub unplaced: usize,
}

/// mountinfo is a few hundred KB on a busy node; more is not a mount table.
const MAX_BYTES: usize = 64 * 1024 * 1024;

impl Table {
    /// This process's mount table; `None` when it cannot be read.
    pub fn read() -> Option<Table> {
        use std::io::Read;
        let f = std::fs::File::open("/proc/self/mountinfo").ok()?;
        let mut bytes = Vec::new();
        f.take(MAX_BYTES as u64 + 1).read_to_end(&mut bytes).ok()?;
        (bytes.len() <= MAX_BYTES).then(|| Table::parse(&bytes))
    }

    /// Parses mountinfo as the kernel prints it: bytes, not text (a directory name need not be
    /// UTF-8), one mount per line. A line affects only the mount it describes: one whose mount
    /// point can be read but not the rest is kept as showing nothing known; one whose mount
    /// point cannot be read is counted in [`Table::unplaced`] and left out.
    pub fn parse(bytes: &[u8]) -> Table {
        let mut t = Table::default();
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match parse_line(line) {
                Some(m) => t.mounts.push(m),
                None => t.unplaced += 1,
            }
        }
        t
    }

    /// Every mount, in the kernel's order.
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// The mount visible at exactly `path`: the last one mounted there.
    pub fn at(&self, path: &Path) -> Option<&Mount> {
        self.mounts.iter().rev().find(|m| m.mount_point == path)
    }

    /// Where `path` lies: the filesystem of the mount that holds it (the deepest mount point
    /// above it, the last one mounted there) and the path inside that filesystem; `None` when
    /// that mount's line could not be read.
    pub fn locate(&self, path: &Path) -> Option<((u32, u32), PathBuf)> {
        let m = self
            .mounts
            .iter()
            .enumerate()
            .filter(|(_, m)| path.starts_with(&m.mount_point))
            .max_by_key(|(i, m)| (m.mount_point.components().count(), *i))
            .map(|(_, m)| m)?;
        let shows = m.shows.as_ref()?;
        let rest = path.strip_prefix(&m.mount_point).ok()?;
        Some((shows.dev, shows.root.join(rest)))
    }
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`: the
/// third field is the device, the fourth the root, the fifth the mount point. `None` when the
/// mount point cannot be read.
fn parse_line(line: &[u8]) -> Option<Mount> {
    let fields: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
    let mount_point = unescape(fields.get(4)?).filter(|p| p.starts_with("/"))?;
    Some(Mount {
        shows: shows(&fields),
        mount_point,
    })
}

/// The device and root of a line split into fields, if every field says what it should.
fn shows(fields: &[&[u8]]) -> Option<Shows> {
    let (major, minor) = std::str::from_utf8(fields.get(2)?).ok()?.split_once(':')?;
    // A root need not be a path: a bind of a namespace file shows `net:[4026532301]`.
    let root = unescape(fields.get(3)?)?;
    // The separator of the optional fields must follow, or the line is not what it seems.
    fields.get(6..)?.iter().find(|x| **x == b"-")?;
    Some(Shows {
        dev: (major.parse().ok()?, minor.parse().ok()?),
        root,
    })
}

/// The kernel escapes space, tab, newline and backslash in paths as `\ooo` octal; every other
/// byte is printed as it is.
fn unescape(b: &[u8]) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'\\' {
            let digits = b.get(i + 1..i + 4)?;
            let mut v: u32 = 0;
            for d in digits {
                if !(b'0'..=b'7').contains(d) {
                    return None;
                }
                v = v * 8 + u32::from(d - b'0');
            }
            out.push(u8::try_from(v).ok()?);
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
        let t = Table::parse(SAMPLE.as_bytes());
        let m = t
            .at(Path::new(
                "/var/lib/kubelet/pods/u1/volume-subpaths/v/app/0",
            ))
            .unwrap();
        let shows = m.shows.as_ref().unwrap();
        assert_eq!(shows.dev, (254, 0));
        assert_eq!(shows.root, Path::new("/data/x"));
        let m = t.at(Path::new("/mnt/with space")).unwrap();
        assert_eq!(m.shows.as_ref().unwrap().root, Path::new("/a b"));
        assert!(t.at(Path::new("/var/lib/kubelet")).is_none());
    }

    #[test]
    fn locates_a_path_in_its_filesystem() {
        let t = Table::parse(SAMPLE.as_bytes());
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
        let t = Table::parse(b"1 0 8:1 / / rw - ext4 a rw\n2 1 8:1 /x /m rw - ext4 a rw\n3 1 0:5 / /m rw - tmpfs t rw\n");
        assert_eq!(
            t.at(Path::new("/m")).unwrap().shows.as_ref().unwrap().dev,
            (0, 5)
        );
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
    fn any_bytes_the_kernel_prints_parse() {
        use std::os::unix::ffi::OsStrExt;
        // A directory named with bytes that are not UTF-8, and one with an escaped newline.
        let t = Table::parse(
            b"22 1 254:0 / / rw - ext4 /dev/vda rw\n\
              41 22 254:0 /v/\xff\xfe/d /mnt/\xff\xfe rw shared:1 - ext4 /dev/vda rw\n\
              42 22 254:0 /v/a\\012b /mnt/a\\012b rw - ext4 /dev/vda rw\n",
        );
        assert_eq!(t.unplaced, 0);
        let odd = Path::new(std::ffi::OsStr::from_bytes(b"/mnt/\xff\xfe"));
        assert_eq!(
            t.locate(&odd.join("f")),
            Some((
                (254, 0),
                PathBuf::from(std::ffi::OsStr::from_bytes(b"/v/\xff\xfe/d/f"))
            ))
        );
        assert_eq!(
            t.locate(Path::new("/mnt/a\nb")),
            Some(((254, 0), PathBuf::from("/v/a\nb")))
        );
    }

    #[test]
    fn a_line_that_cannot_be_read_affects_only_its_own_mount() {
        let good = "22 1 254:0 / / rw - ext4 a rw\n30 22 0:26 / /run rw - tmpfs t rw\n";
        for (bad, unknown) in [
            ("40 22 254:0 /x /m rw\n", Some("/m")),
            ("40 22 254 /x /m rw - ext4 a rw\n", Some("/m")),
            ("40 22 a:b /x /m rw - ext4 a rw\n", Some("/m")),
            ("40 22 1:2 /\\04 /m rw - ext4 a rw\n", Some("/m")),
            ("40 22 1:2 /\\777 /m rw - ext4 a rw\n", Some("/m")),
            ("40 22 1:2 / relative rw - ext4 a rw\n", None),
            ("40 22 1:2 / /\\04 rw - ext4 a rw\n", None),
            ("garbage\n", None),
        ] {
            let t = Table::parse(format!("{good}{bad}").as_bytes());
            assert_eq!(
                t.locate(Path::new("/run/x")),
                Some(((0, 26), PathBuf::from("/x"))),
                "{bad}"
            );
            match unknown {
                Some(mp) => {
                    assert_eq!(t.unplaced, 0, "{bad}");
                    assert!(t.at(Path::new(mp)).unwrap().shows.is_none(), "{bad}");
                    assert_eq!(t.locate(&Path::new(mp).join("f")), None, "{bad}");
                }
                None => {
                    assert_eq!(t.unplaced, 1, "{bad}");
                    assert_eq!(t.mounts().len(), 2, "{bad}");
                }
            }
        }
    }
}
