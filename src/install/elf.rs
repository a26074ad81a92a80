//! The CPU architecture an executable was built for, read from its ELF header (`e_machine`), so
//! that a binary for another architecture is refused before a runtime config names it. Running
//! the file is not enough: a node with qemu-user registered in binfmt_misc runs a foreign binary,
//! slowly, and one without it fails every container start with "exec format error".

use std::io::Read;
use std::path::Path;

/// `e_machine` values from the System V ABI's registry (elf.h: EM_386, EM_ARM, EM_X86_64,
/// EM_AARCH64, EM_RISCV, ...).
const MACHINES: [(u16, &str); 7] = [
    (3, "x86"),
    (20, "powerpc"),
    (21, "powerpc64"),
    (22, "s390x"),
    (40, "arm"),
    (62, "x86_64"),
    (183, "aarch64"),
];
const EM_RISCV: u16 = 243;

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("reading its ELF header")]
    Read(#[source] std::io::Error),
    #[error("it is not an ELF executable")]
    NotElf,
    #[error("it is built for {found}, this node is {host}")]
    Foreign { found: String, host: &'static str },
}

/// The architecture named in the header, in Rust's `std::env::consts::ARCH` spelling.
pub fn machine(header: &[u8]) -> Result<String, ElfError> {
    // e_ident (16 bytes: magic, class, data, ...), e_type (2), e_machine (2).
    if header.len() < 20 || &header[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    let raw = [header[18], header[19]];
    let em = match header[5] {
        1 => u16::from_le_bytes(raw),
        2 => u16::from_be_bytes(raw),
        _ => return Err(ElfError::NotElf),
    };
    let name = MACHINES
        .iter()
        .find(|(m, _)| *m == em)
        .map(|(_, n)| (*n).to_owned());
    Ok(match (name, em, header[4]) {
        (Some(n), ..) => n,
        (None, EM_RISCV, 2) => "riscv64".to_owned(),
        (None, EM_RISCV, _) => "riscv32".to_owned(),
        (None, em, _) => format!("unknown machine {em}"),
    })
}

/// The architecture of the file at `path`.
pub fn machine_of(path: &Path) -> Result<String, ElfError> {
    let mut header = [0u8; 20];
    let mut f = std::fs::File::open(path).map_err(ElfError::Read)?;
    f.read_exact(&mut header).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => ElfError::NotElf,
        _ => ElfError::Read(e),
    })?;
    machine(&header)
}

/// Ok when the file at `path` is an ELF executable for the architecture this binary runs on
/// (the node's: the hook and the installer are the same build).
pub fn check_native(path: &Path) -> Result<(), ElfError> {
    let found = machine_of(path)?;
    let host = std::env::consts::ARCH;
    if found != host {
        return Err(ElfError::Foreign { found, host });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(class: u8, data: u8, em: u16) -> Vec<u8> {
        let mut h = vec![0x7f, b'E', b'L', b'F', class, data, 1, 0];
        h.resize(16, 0);
        h.extend_from_slice(&2u16.to_le_bytes());
        if data == 2 {
            h.extend_from_slice(&em.to_be_bytes());
        } else {
            h.extend_from_slice(&em.to_le_bytes());
        }
        h
    }

    #[test]
    fn x86_64_and_aarch64_headers_are_named() {
        assert_eq!(machine(&header(2, 1, 62)).unwrap(), "x86_64");
        assert_eq!(machine(&header(2, 1, 183)).unwrap(), "aarch64");
        assert_eq!(machine(&header(2, 2, 22)).unwrap(), "s390x");
        assert_eq!(machine(&header(2, 1, 243)).unwrap(), "riscv64");
    }

    #[test]
    fn scripts_and_short_files_are_not_elf() {
        assert!(matches!(
            machine(b"#!/bin/sh\necho hi\n"),
            Err(ElfError::NotElf)
        ));
        assert!(matches!(machine(b"\x7fELF"), Err(ElfError::NotElf)));
        assert!(matches!(machine(&header(2, 9, 62)), Err(ElfError::NotElf)));
    }

    #[test]
    fn the_running_test_binary_is_native() {
        let me = std::env::current_exe().unwrap();
        check_native(&me).unwrap();
    }
}
