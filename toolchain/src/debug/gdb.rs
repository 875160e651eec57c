//! `run --gdb`: QEMU's gdb stub, and a gdb script that loads the program's symbols where Kiln
//! loads the program and the kernel's symbols where the kernel runs.
//!
//! The program comes out of the image's own payload, so `--image` works without the build
//! tree. Kiln loads `ET_EXEC` programs at their addresses and static-pie programs at Linux's
//! `ELF_ET_DYN_BASE` (no randomisation), aligned to their largest segment alignment: the same
//! rule as `kiln_os::elf::Program::load_bias`, repeated here because the kernel's crate is not
//! a host dependency.

use anyhow::{anyhow, bail, Context};
use std::path::{Path, PathBuf};

/// Where Kiln puts a static-pie program (Linux's `ELF_ET_DYN_BASE` on x86_64).
pub const ET_DYN_BASE: u64 = 0x5555_5555_4000;

/// The files a debugger needs for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GdbSetup {
    /// The gdb script: symbols, then `target remote`.
    pub script: PathBuf,
    /// The program, as extracted from the image.
    pub program: PathBuf,
    /// The address Kiln adds to the program's addresses (0 for `ET_EXEC`).
    pub load_bias: u64,
    /// The kernel ELF, when the build tree has the one this image was linked with.
    pub kernel: Option<PathBuf>,
}

impl GdbSetup {
    /// The command a user runs.
    pub fn command(&self) -> String {
        format!("gdb -x {}", self.script.display())
    }
}

/// The load bias Kiln applies to `program` (an ELF).
pub fn load_bias(program: &[u8]) -> anyhow::Result<u64> {
    let elf = goblin::elf::Elf::parse(program).map_err(|e| anyhow!("program ELF: {e}"))?;
    if elf.header.e_type != goblin::elf::header::ET_DYN {
        return Ok(0);
    }
    let loads: Vec<_> = elf
        .program_headers
        .iter()
        .filter(|p| p.p_type == goblin::elf::program_header::PT_LOAD)
        .collect();
    let first = loads
        .first()
        .ok_or_else(|| anyhow!("program has no PT_LOAD"))?;
    let max_align = loads
        .iter()
        .map(|p| p.p_align.max(4096))
        .max()
        .unwrap_or(4096);
    let base = ET_DYN_BASE & !(max_align.next_power_of_two() - 1);
    base.checked_sub(first.p_vaddr & !0xfff)
        .ok_or_else(|| anyhow!("program's first segment lies above Kiln's load address"))
}

/// The gdb script for a stub on `port`.
pub fn script(program: &Path, bias: u64, kernel: Option<&Path>, port: u16) -> String {
    let mut s = String::from("set pagination off\nset confirm off\n");
    if let Some(k) = kernel {
        s.push_str(&format!("symbol-file {}\n", k.display()));
    }
    if bias == 0 {
        s.push_str(&format!("add-symbol-file {}\n", program.display()));
    } else {
        s.push_str(&format!(
            "add-symbol-file {} -o {bias:#x}\n",
            program.display()
        ));
    }
    s.push_str(&format!("target remote 127.0.0.1:{port}\n"));
    s
}

/// Extracts the program from the PVH image at `image`, writes it and a gdb script into `dir`
/// and returns what it wrote. `kernel` is the build tree's kernel ELF; its symbols are loaded
/// only when it is the kernel the image records.
pub fn prepare(image: &Path, kernel: &Path, dir: &Path, port: u16) -> anyhow::Result<GdbSetup> {
    let bytes =
        std::fs::read(image).with_context(|| format!("could not read {}", image.display()))?;
    if !bytes.starts_with(b"\x7fELF") {
        bail!(
            "--gdb needs a PVH image (.elf); {} is a disk image: run the .elf it was made from",
            image.display()
        );
    }
    let program_bytes = super::program_in_image(&bytes)?;
    let load_bias = load_bias(program_bytes)?;
    let name = crate::provenance::read(&bytes)
        .ok()
        .map(|(p, _)| p.app.name)
        .filter(|n| !n.is_empty() && !n.contains('/'))
        .unwrap_or_else(|| "program".into());
    std::fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    let program = dir.join(format!("{name}.elf"));
    std::fs::write(&program, program_bytes)
        .with_context(|| format!("could not write {}", program.display()))?;
    let kernel = super::kernel_of_image(&bytes, kernel);
    let script_path = dir.join(format!("{name}-{port}.gdb"));
    std::fs::write(
        &script_path,
        script(&program, load_bias, kernel.as_deref(), port),
    )
    .with_context(|| format!("could not write {}", script_path.display()))?;
    Ok(GdbSetup {
        script: script_path,
        program,
        load_bias,
        kernel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_load_symbols_then_connect() {
        let s = script(
            Path::new("/x/p.elf"),
            0x5555_5555_4000,
            Some(Path::new("/k")),
            1234,
        );
        assert_eq!(
            s,
            "set pagination off\nset confirm off\nsymbol-file /k\n\
             add-symbol-file /x/p.elf -o 0x555555554000\ntarget remote 127.0.0.1:1234\n"
        );
        let s = script(Path::new("/x/p.elf"), 0, None, 9);
        assert!(s.contains("add-symbol-file /x/p.elf\ntarget remote 127.0.0.1:9\n"));
        assert!(!s.contains("symbol-file /k"));
    }

    #[test]
    fn load_bias_follows_the_kernel_rule() {
        use crate::elf::testdata::{elf, phdr};
        let load = |vaddr: u64, align: u64| {
            let mut p = phdr(1, 5, 0, vaddr, 0x100, 0x100);
            p[48..56].copy_from_slice(&align.to_le_bytes());
            p
        };
        let exec = elf(2, 62, 0x401000, &[load(0x400000, 0x1000)], &[0; 0x100]);
        assert_eq!(load_bias(&exec).unwrap(), 0);
        let pie = elf(3, 62, 0x1000, &[load(0, 0x1000)], &[0; 0x100]);
        assert_eq!(load_bias(&pie).unwrap(), ET_DYN_BASE);
        let aligned = elf(3, 62, 0x1000, &[load(0, 0x20_0000)], &[0; 0x100]);
        assert_eq!(load_bias(&aligned).unwrap(), 0x5555_5540_0000);
    }
}
