//! Checks that a program is something Kiln can run: an x86_64 Linux ELF executable, static or
//! dynamically linked (whose libraries [`crate::dynamic`] then finds).
//!
//! Lengths and offsets are checked here before goblin parses anything, so corrupt input gives
//! an error, never a panic.

use goblin::container::{Container, Ctx, Endian};
use goblin::elf::header::{self, Header};
use goblin::elf::program_header::{self, ProgramHeader};

/// What [`validate`] learned about a good program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramInfo {
    /// `true` for a PIE (`ET_DYN`: static-pie as `-C target-feature=+crt-static` makes it, or
    /// a dynamically linked PIE).
    pub pie: bool,
    /// The entry point (relative to the load base for a PIE).
    pub entry: u64,
    /// Number of `PT_LOAD` segments.
    pub loads: usize,
    /// The dynamic loader it asks for (`PT_INTERP`), `None` for a static program.
    pub interpreter: Option<String>,
}

/// Why a file is not a program Kiln can run. Each message names the problem, where it was
/// found and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    /// Does not start with `\x7fELF`.
    #[error("not an ELF file (the first 4 bytes are not \\x7fELF); pass a compiled Linux program")]
    NotElf,
    /// ELFCLASS32.
    #[error("a 32-bit ELF (EI_CLASS = 1); Kiln runs 64-bit x86_64 programs: build for x86_64-unknown-linux-gnu (gcc -m64)")]
    Bits32,
    /// Neither ELFCLASS32 nor ELFCLASS64.
    #[error("corrupt ELF header: unknown EI_CLASS {0}; rebuild the program")]
    BadClass(u8),
    /// ELFDATA2MSB.
    #[error("a big-endian ELF (EI_DATA = 2); Kiln runs little-endian x86_64 programs")]
    BigEndian,
    /// Neither ELFDATA2LSB nor ELFDATA2MSB.
    #[error("corrupt ELF header: unknown EI_DATA {0}; rebuild the program")]
    BadData(u8),
    /// `e_machine` is not `EM_X86_64`.
    #[error("built for {0} (e_machine = {1}), not x86_64; build for x86_64-unknown-linux-gnu")]
    WrongMachine(&'static str, u16),
    /// `ET_REL`, `ET_CORE` or another non-executable type.
    #[error("not an executable: it is {0} (e_type = {1}); link it into a program first (cargo build, or gcc -static without -c)")]
    NotExecutable(&'static str, u16),
    /// `ET_DYN` with no entry point: a shared library.
    #[error(
        "a shared library (ET_DYN with entry point 0), not a program; pass the executable instead"
    )]
    SharedLibrary,
    /// A header or segment lies outside the file, or a field is impossible.
    #[error(
        "truncated or corrupt: {0}; the file is damaged or incomplete, rebuild or copy it again"
    )]
    Corrupt(String),
    /// No `PT_LOAD`.
    #[error("has no PT_LOAD segment, so there is nothing to load; it is not a runnable program")]
    NoLoad,
}

const EHDR64: usize = 64;
const PHDR64: usize = 56;

fn machine_name(m: u16) -> &'static str {
    match m {
        header::EM_386 => "32-bit x86",
        header::EM_AARCH64 => "AArch64",
        header::EM_ARM => "ARM",
        header::EM_RISCV => "RISC-V",
        header::EM_PPC64 => "PowerPC64",
        header::EM_S390 => "s390",
        header::EM_MIPS => "MIPS",
        _ => "another architecture",
    }
}

fn type_name(t: u16) -> &'static str {
    match t {
        header::ET_REL => "a relocatable object file (ET_REL, a .o)",
        header::ET_CORE => "a core dump (ET_CORE)",
        header::ET_NONE => "of no type (ET_NONE)",
        _ => "of an unknown type",
    }
}

/// Checks the ELF identification bytes and header fields every later step relies on.
fn check_ident(bytes: &[u8]) -> Result<(), ElfError> {
    if bytes.len() < 4 || bytes[..4] != *b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    if bytes.len() < 6 {
        return Err(ElfError::Corrupt(format!(
            "the file is only {} bytes, shorter than the ELF identification",
            bytes.len()
        )));
    }
    match bytes[header::EI_CLASS] {
        header::ELFCLASS64 => {}
        header::ELFCLASS32 => return Err(ElfError::Bits32),
        c => return Err(ElfError::BadClass(c)),
    }
    match bytes[header::EI_DATA] {
        header::ELFDATA2LSB => {}
        header::ELFDATA2MSB => return Err(ElfError::BigEndian),
        d => return Err(ElfError::BadData(d)),
    }
    if bytes.len() < EHDR64 {
        return Err(ElfError::Corrupt(format!(
            "the ELF header needs {EHDR64} bytes but the file has {}",
            bytes.len()
        )));
    }
    Ok(())
}

/// Parses the header and program headers of a 64-bit little-endian ELF, checking bounds.
pub fn headers(bytes: &[u8]) -> Result<(Header, Vec<ProgramHeader>), ElfError> {
    check_ident(bytes)?;
    let h = goblin::elf::Elf::parse_header(bytes)
        .map_err(|e| ElfError::Corrupt(format!("ELF header: {e}")))?;
    let phnum = h.e_phnum as usize;
    if phnum > 0 && h.e_phentsize as usize != PHDR64 {
        return Err(ElfError::Corrupt(format!(
            "e_phentsize is {} (expected {PHDR64})",
            h.e_phentsize
        )));
    }
    if phnum == 0xffff {
        return Err(ElfError::Corrupt(
            "e_phnum is PN_XNUM (too many program headers)".into(),
        ));
    }
    let end = (h.e_phoff as u128) + (phnum * PHDR64) as u128;
    if end > bytes.len() as u128 {
        return Err(ElfError::Corrupt(format!(
            "the program headers (offset {:#x}, {phnum} entries) end at byte {end:#x}, past the end of the {}-byte file",
            h.e_phoff,
            bytes.len()
        )));
    }
    let ctx = Ctx::new(Container::Big, Endian::Little);
    let phdrs = ProgramHeader::parse(bytes, h.e_phoff as usize, phnum, ctx)
        .map_err(|e| ElfError::Corrupt(format!("program headers: {e}")))?;
    for (i, p) in phdrs.iter().enumerate() {
        if p.p_type != program_header::PT_LOAD && p.p_type != program_header::PT_INTERP {
            continue;
        }
        let end = p.p_offset as u128 + p.p_filesz as u128;
        if end > bytes.len() as u128 {
            return Err(ElfError::Corrupt(format!(
                "program header {i} ({}) covers bytes {:#x}..{end:#x}, past the end of the {}-byte file",
                program_header::pt_to_str(p.p_type),
                p.p_offset,
                bytes.len()
            )));
        }
        if p.p_type == program_header::PT_LOAD && p.p_filesz > p.p_memsz {
            return Err(ElfError::Corrupt(format!(
                "PT_LOAD {i} has p_filesz {:#x} larger than p_memsz {:#x}",
                p.p_filesz, p.p_memsz
            )));
        }
    }
    Ok((h, phdrs))
}

/// Checks that `bytes` is a static x86_64 Linux executable (ET_EXEC or static PIE).
pub fn validate(bytes: &[u8]) -> Result<ProgramInfo, ElfError> {
    check_ident(bytes)?;
    // The type and machine are checked before the rest so that the message names the real
    // problem (a .o file or an ARM binary) rather than some secondary inconsistency.
    let e_type = u16::from_le_bytes([bytes[16], bytes[17]]);
    let e_machine = u16::from_le_bytes([bytes[18], bytes[19]]);
    if e_machine != header::EM_X86_64 {
        return Err(ElfError::WrongMachine(machine_name(e_machine), e_machine));
    }
    if e_type != header::ET_EXEC && e_type != header::ET_DYN {
        return Err(ElfError::NotExecutable(type_name(e_type), e_type));
    }
    let (h, phdrs) = headers(bytes)?;
    let interpreter = phdrs
        .iter()
        .find(|p| p.p_type == program_header::PT_INTERP)
        .map(|interp| {
            let raw =
                &bytes[interp.p_offset as usize..(interp.p_offset + interp.p_filesz) as usize];
            let name = String::from_utf8_lossy(raw.split(|&b| b == 0).next().unwrap_or(&[]));
            name.into_owned()
        });
    if interpreter.as_deref() == Some("")
        || interpreter.as_ref().is_some_and(|i| !i.starts_with('/'))
    {
        return Err(ElfError::Corrupt(format!(
            "its PT_INTERP names no absolute path ({:?})",
            interpreter.unwrap_or_default()
        )));
    }
    if h.e_type == header::ET_DYN && h.e_entry == 0 {
        return Err(ElfError::SharedLibrary);
    }
    let loads = phdrs
        .iter()
        .filter(|p| p.p_type == program_header::PT_LOAD)
        .count();
    if loads == 0 {
        return Err(ElfError::NoLoad);
    }
    Ok(ProgramInfo {
        pie: h.e_type == header::ET_DYN,
        entry: h.e_entry,
        loads,
        interpreter,
    })
}

/// Hand-built ELF files for tests (here and in other modules).
#[cfg(test)]
pub(crate) mod testdata {
    /// One program header, 56 bytes.
    pub fn phdr(
        p_type: u32,
        flags: u32,
        offset: u64,
        vaddr: u64,
        filesz: u64,
        memsz: u64,
    ) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&p_type.to_le_bytes());
        v.extend_from_slice(&flags.to_le_bytes());
        for x in [offset, vaddr, vaddr, filesz, memsz, 0x1000] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v
    }

    /// A 64-byte ELF header followed by `phdrs` and `tail`.
    pub fn elf(e_type: u16, machine: u16, entry: u64, phdrs: &[Vec<u8>], tail: &[u8]) -> Vec<u8> {
        let mut v = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
        v.resize(16, 0);
        v.extend_from_slice(&e_type.to_le_bytes());
        v.extend_from_slice(&machine.to_le_bytes());
        v.extend_from_slice(&1u32.to_le_bytes());
        v.extend_from_slice(&entry.to_le_bytes());
        v.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
        v.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
        v.extend_from_slice(&0u32.to_le_bytes()); // e_flags
        v.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
        v.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
        v.extend_from_slice(&(phdrs.len() as u16).to_le_bytes());
        v.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
        v.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
        v.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
        assert_eq!(v.len(), 64);
        for p in phdrs {
            v.extend_from_slice(p);
        }
        v.extend_from_slice(tail);
        v
    }

    /// A minimal static executable: one PT_LOAD covering the whole file.
    pub fn good_exec() -> Vec<u8> {
        let len = 64 + 56 + 8;
        elf(
            2,
            62,
            0x400078,
            &[phdr(1, 5, 0, 0x400000, len, len)],
            &[0xf4; 8],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::testdata::*;
    use super::*;

    #[test]
    fn accepts_static_exec_and_static_pie() {
        let info = validate(&good_exec()).unwrap();
        assert!(!info.pie);
        assert_eq!(info.loads, 1);
        let len = 64 + 56;
        let pie = elf(3, 62, 0x1000, &[phdr(1, 5, 0, 0, len, len)], &[]);
        assert!(validate(&pie).unwrap().pie);
    }

    #[test]
    fn refuses_non_elf() {
        assert_eq!(validate(b""), Err(ElfError::NotElf));
        assert_eq!(validate(b"#!/bin/sh\necho hi\n"), Err(ElfError::NotElf));
        assert_eq!(validate(b"\x7fEL"), Err(ElfError::NotElf));
    }

    #[test]
    fn refuses_32_bit_and_big_endian() {
        let mut e = good_exec();
        e[4] = 1;
        assert_eq!(validate(&e), Err(ElfError::Bits32));
        assert!(validate(&e).unwrap_err().to_string().contains("32-bit"));
        e[4] = 7;
        assert_eq!(validate(&e), Err(ElfError::BadClass(7)));
        let mut e = good_exec();
        e[5] = 2;
        assert_eq!(validate(&e), Err(ElfError::BigEndian));
        e[5] = 0;
        assert_eq!(validate(&e), Err(ElfError::BadData(0)));
    }

    #[test]
    fn refuses_other_machines() {
        let e = elf(2, 183, 0, &[], &[]);
        let err = validate(&e).unwrap_err();
        assert_eq!(err, ElfError::WrongMachine("AArch64", 183));
        assert!(err.to_string().contains("x86_64-unknown-linux-gnu"));
    }

    #[test]
    fn refuses_objects_and_cores() {
        let err = validate(&elf(1, 62, 0, &[], &[])).unwrap_err();
        assert!(matches!(err, ElfError::NotExecutable(_, 1)));
        assert!(err.to_string().contains(".o"));
        let err = validate(&elf(4, 62, 0, &[], &[])).unwrap_err();
        assert!(err.to_string().contains("core dump"));
    }

    #[test]
    fn reports_the_interpreter_of_dynamic_programs() {
        let interp = b"/lib64/ld-linux-x86-64.so.2\0";
        let off = 64 + 2 * 56;
        let len = (off + interp.len()) as u64;
        let e = elf(
            3,
            62,
            0x1000,
            &[
                phdr(
                    3,
                    4,
                    off as u64,
                    0,
                    interp.len() as u64,
                    interp.len() as u64,
                ),
                phdr(1, 5, 0, 0, len, len),
            ],
            interp,
        );
        let info = validate(&e).unwrap();
        assert_eq!(
            info.interpreter.as_deref(),
            Some("/lib64/ld-linux-x86-64.so.2")
        );
        assert!(info.pie);
        let mut rel = e.clone();
        rel[off] = b'l';
        assert!(matches!(validate(&rel), Err(ElfError::Corrupt(m)) if m.contains("PT_INTERP")));
    }

    #[test]
    fn refuses_shared_libraries() {
        let len = 64 + 56;
        let e = elf(3, 62, 0, &[phdr(1, 5, 0, 0, len, len)], &[]);
        assert_eq!(validate(&e), Err(ElfError::SharedLibrary));
    }

    #[test]
    fn refuses_no_load() {
        let e = elf(2, 62, 0x1000, &[phdr(4, 4, 0, 0, 0, 0)], &[]);
        assert_eq!(validate(&e), Err(ElfError::NoLoad));
        assert_eq!(
            validate(&elf(2, 62, 0x1000, &[], &[])),
            Err(ElfError::NoLoad)
        );
    }

    #[test]
    fn refuses_truncated_and_corrupt_headers() {
        let good = good_exec();
        // Every truncation fails cleanly.
        for n in 0..good.len() {
            assert!(validate(&good[..n]).is_err(), "length {n}");
        }
        // Program headers pointing past the end.
        let mut e = good.clone();
        e[32] = 0xf0; // e_phoff
        assert!(matches!(validate(&e), Err(ElfError::Corrupt(m)) if m.contains("program headers")));
        // Absurd phnum.
        let mut e = good.clone();
        e[56] = 0xff;
        e[57] = 0xff;
        assert!(matches!(validate(&e), Err(ElfError::Corrupt(_))));
        // Bad phentsize.
        let mut e = good.clone();
        e[54] = 32;
        assert!(matches!(validate(&e), Err(ElfError::Corrupt(m)) if m.contains("e_phentsize")));
        // A segment past the end of the file.
        let e = elf(2, 62, 0, &[phdr(1, 5, 0, 0, 0x10000, 0x10000)], &[]);
        assert!(matches!(validate(&e), Err(ElfError::Corrupt(m)) if m.contains("past the end")));
        // filesz > memsz.
        let e = elf(2, 62, 0, &[phdr(1, 5, 0, 0, 64, 8)], &[]);
        assert!(matches!(validate(&e), Err(ElfError::Corrupt(m)) if m.contains("p_memsz")));
        // Offsets that overflow.
        let e = elf(2, 62, 0, &[phdr(1, 5, u64::MAX, 0, 2, 2)], &[]);
        assert!(matches!(validate(&e), Err(ElfError::Corrupt(_))));
    }

    #[test]
    fn never_panics_on_mangled_input() {
        let good = good_exec();
        for i in 0..good.len() {
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut e = good.clone();
                e[i] = v;
                let _ = validate(&e);
            }
        }
    }
}
