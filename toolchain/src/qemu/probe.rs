//! The accelerator probe's image: Kiln's real kernel running a tiny ring-3 program.
//!
//! A do-nothing image proves little: a paravirtual KVM (PVM) boots one and then stops Kiln's
//! kernel at its first SSE instruction. So the probe runs the kernel that will run the user's
//! program, with a program (`assets/kvm-probe.S`) that uses SSE (and AVX where the kernel
//! enabled it), takes a page fault, makes system calls and sleeps until the kernel's timer
//! interrupt, checks its vector state survived all of it, and prints [`PROBE_LINE`].

use crate::rootfs::{self, RootfsSpec};

/// The probe program's code: position-independent, loaded at [`TEXT_ADDR`].
/// `assets/kvm-probe.S` is its source (`as kvm-probe.S && objcopy -O binary -j .text`).
pub const CODE: &[u8] = include_bytes!("../../assets/kvm-probe.bin");

/// The line the probe prints when everything it checks held.
pub const PROBE_LINE: &str = "kiln-probe: ok\n";

/// Where the program's headers and code are loaded.
const BASE: u64 = 0x40_0000;
/// ELF header (64 bytes) and three program headers (56 bytes each) precede the code.
const HEADERS: u64 = 64 + 3 * 56;
/// The code's address.
pub const TEXT_ADDR: u64 = BASE + HEADERS;
/// The demand-paged page the program writes first (its page fault).
pub const BSS_ADDR: u64 = 0x40_2000;

/// The probe program: a static `ET_EXEC` x86_64 ELF with a read-execute segment (headers
/// and code), a zero-filled writable page and a non-executable stack.
pub fn program() -> Vec<u8> {
    let mut e = Vec::with_capacity(HEADERS as usize + CODE.len());
    // ELF header.
    e.extend_from_slice(b"\x7fELF");
    e.extend_from_slice(&[2, 1, 1, 0]); // 64-bit, little-endian, version 1, System V
    e.extend_from_slice(&[0; 8]);
    e.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&TEXT_ADDR.to_le_bytes()); // e_entry
    e.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    e.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    e.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    e.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    e.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    e.extend_from_slice(&3u16.to_le_bytes()); // e_phnum
    e.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    e.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    e.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    let file_len = HEADERS + CODE.len() as u64;
    let mut ph = |kind: u32, flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64| {
        e.extend_from_slice(&kind.to_le_bytes());
        e.extend_from_slice(&flags.to_le_bytes());
        e.extend_from_slice(&offset.to_le_bytes());
        e.extend_from_slice(&vaddr.to_le_bytes());
        e.extend_from_slice(&vaddr.to_le_bytes());
        e.extend_from_slice(&filesz.to_le_bytes());
        e.extend_from_slice(&memsz.to_le_bytes());
        e.extend_from_slice(&(if kind == 1 { 0x1000u64 } else { 16 }).to_le_bytes());
    };
    const PT_LOAD: u32 = 1;
    const PT_GNU_STACK: u32 = 0x6474_e551;
    const R: u32 = 4;
    const W: u32 = 2;
    const X: u32 = 1;
    ph(PT_LOAD, R | X, 0, BASE, file_len, file_len);
    ph(PT_LOAD, R | W, 0, BSS_ADDR, 0, 0x1000);
    ph(PT_GNU_STACK, R | W, 0, 0, 0, 0);
    e.extend_from_slice(CODE);
    e
}

/// The probe image: `kernel` (the kernel ELF's bytes) linked with the probe program and a
/// minimal root filesystem.
pub fn image(kernel: &[u8]) -> anyhow::Result<Vec<u8>> {
    let (tar, _) = rootfs::build(&RootfsSpec {
        dir: None,
        files: Vec::new(),
        app_name: "kvm-probe".into(),
        ..RootfsSpec::default()
    })?;
    let config = crate::link::baked_config("/bin/kvm-probe", &[], &[]).to_cmdline();
    let payload = kiln_abi::payload::build(&program(), &tar, &config);
    crate::link::link(kernel, &payload).map_err(|e| anyhow::anyhow!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_program_is_a_static_executable() {
        let p = program();
        let elf = goblin::elf::Elf::parse(&p).unwrap();
        assert_eq!(elf.entry, TEXT_ADDR);
        assert!(elf.interpreter.is_none());
        assert_eq!(elf.program_headers.len(), 3);
        crate::elf::validate(&p).expect("the toolchain accepts the probe program");
        // The code ends with the line it prints.
        assert!(CODE.ends_with(PROBE_LINE.as_bytes()));
    }

    /// The committed code is what its committed source assembles to (when `as` is here).
    #[test]
    fn code_matches_its_source() {
        let Some(_) = crate::qemu::install::which("as") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/kvm-probe.S");
        let obj = dir.path().join("p.o");
        let bin = dir.path().join("p.bin");
        let ok = std::process::Command::new("as")
            .arg(src)
            .arg("-o")
            .arg(&obj)
            .status()
            .unwrap()
            .success()
            && std::process::Command::new("objcopy")
                .args(["-O", "binary", "-j", ".text"])
                .arg(&obj)
                .arg(&bin)
                .status()
                .unwrap()
                .success();
        assert!(ok);
        assert_eq!(std::fs::read(bin).unwrap(), CODE);
    }
}
