//! Path rules shared by every input that names a host path: the bundle in the runtime's state,
//! the policy file's paths, the installer's flags.

use std::path::Path;

/// Absolute, with no `.`, `..` or empty components and no trailing slash. `Path::components`
/// folds `.` and `//` away, so the bytes are checked instead: `/a/./b` and `/a//b` are refused,
/// not read as `/a/b`.
pub fn is_clean_absolute(p: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Some(rest) = p.as_os_str().as_bytes().strip_prefix(b"/") else {
        return false;
    };
    rest.is_empty()
        || rest
            .split(|b| *b == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b"..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_absolute_paths_only() {
        for ok in ["/", "/a", "/a/b.c", "/a/..b", "/a/b..", "/.x"] {
            assert!(is_clean_absolute(Path::new(ok)), "{ok}");
        }
        for bad in [
            "", "a", "a/b", "/a/", "/a//b", "//a", "/a/./b", "/a/../b", "/.", "/..", "./a",
        ] {
            assert!(!is_clean_absolute(Path::new(bad)), "{bad}");
        }
    }
}
