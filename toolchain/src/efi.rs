//! UEFI: the EFI stub (`kernel/efistub`) turned into a PE32+ application that carries a
//! linked PVH image.
//!
//! The stub is a freestanding static-pie ELF linked at 0 (its linker script puts `.text` at
//! 0x1000 and the data after it, page-aligned). [`build_pe`] maps its executable sections to
//! a PE `.text` and the rest to `.data` at the same relative virtual addresses, rewrites
//! every `R_X86_64_RELATIVE` relocation into the section bytes (image base + addend) and as
//! a PE `DIR64` base relocation, appends the PVH image as a `.kiln` section and writes its
//! RVA and length into the stub's `KILN_EFI_EMBED` static. Everything in the output is a
//! function of the inputs (time stamp 0, no checksum), so builds are reproducible.

use crate::Layout;
use anyhow::{bail, Context};
use goblin::elf::section_header::{SHF_ALLOC, SHF_EXECINSTR, SHT_NOBITS};
use object::pe;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The stub's symbol that receives the embedded image's RVA and length.
pub const EMBED_SYMBOL: &str = "KILN_EFI_EMBED";
/// Preferred load address written in the PE header (the firmware relocates as needed).
pub const IMAGE_BASE: u64 = 0x1_0000_0000;
const SECTION_ALIGN: u32 = 0x1000;
const FILE_ALIGN: u32 = 0x200;
const R_X86_64_RELATIVE: u32 = 8;

/// Builds the EFI stub (`kernel/efistub`) and returns the path of its ELF.
///
/// The stub is position-independent while the kernel workspace's config compiles everything
/// with the static relocation model, so this build replaces the workspace's rustflags for
/// this one crate (it has no dependencies, so the kernel's own artifacts are not touched).
pub fn build_stub(layout: &Layout) -> anyhow::Result<PathBuf> {
    let dir = layout.kernel_dir();
    let status = Command::new(crate::link::cargo())
        .args(["build", "--release", "-p", "kiln-efistub"])
        .current_dir(&dir)
        .env_remove("RUSTFLAGS")
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            ["-Crelocation-model=pie", "-Cno-redzone=yes"].join("\x1f"),
        )
        .env_remove("CARGO_TARGET_DIR")
        .stdin(Stdio::null())
        .stdout(crate::app::stderr_stdio())
        .status()
        .context("could not start cargo to build the EFI stub")?;
    if !status.success() {
        bail!("the EFI stub failed to build (cargo build --release -p kiln-efistub in kernel/); see the errors above");
    }
    let elf = dir.join("target/x86_64-unknown-linux-gnu/release/kiln-efistub");
    if !elf.is_file() {
        bail!("the EFI stub built but {} is missing", elf.display());
    }
    Ok(elf)
}

/// Builds the stub and wraps `pvh_image` into a PE32+ EFI application.
pub fn efi_application(layout: &Layout, pvh_image: &[u8]) -> anyhow::Result<Vec<u8>> {
    let stub_path = build_stub(layout)?;
    let stub = std::fs::read(&stub_path)
        .with_context(|| format!("could not read {}", stub_path.display()))?;
    build_pe(&stub, pvh_image)
}

/// A contiguous run of the stub's memory image.
struct Span {
    start: u64,
    end: u64,
    /// Up to the end of the last section with file bytes.
    file_end: u64,
}

/// Converts the stub ELF into a PE32+ EFI application embedding `pvh_image`.
pub fn build_pe(stub: &[u8], pvh_image: &[u8]) -> anyhow::Result<Vec<u8>> {
    let bad = |m: String| anyhow::anyhow!("EFI stub ELF: {m}");
    let elf = goblin::elf::Elf::parse(stub).map_err(|e| bad(e.to_string()))?;
    if elf.header.e_machine != goblin::elf::header::EM_X86_64 {
        bail!(bad("not an x86_64 ELF".into()));
    }
    crate::pvh::verify(pvh_image)
        .map_err(|e| anyhow::anyhow!("the image to embed is not a PVH image: {e}"))?;
    let dynamic = [
        ".rela.dyn",
        ".dynamic",
        ".dynsym",
        ".dynstr",
        ".hash",
        ".gnu.hash",
    ];
    let mut text: Option<Span> = None;
    let mut data: Option<Span> = None;
    for sh in &elf.section_headers {
        let name = elf.shdr_strtab.get_at(sh.sh_name).unwrap_or("");
        if sh.sh_flags & SHF_ALLOC as u64 == 0 || sh.sh_size == 0 || dynamic.contains(&name) {
            continue;
        }
        let slot = if sh.sh_flags & SHF_EXECINSTR as u64 != 0 {
            &mut text
        } else {
            &mut data
        };
        let end = sh.sh_addr + sh.sh_size;
        let file_end = if sh.sh_type == SHT_NOBITS {
            sh.sh_addr
        } else {
            end
        };
        let s = slot.get_or_insert(Span {
            start: sh.sh_addr,
            end,
            file_end,
        });
        s.start = s.start.min(sh.sh_addr);
        s.end = s.end.max(end);
        s.file_end = s.file_end.max(file_end);
    }
    let (Some(text), Some(data)) = (text, data) else {
        bail!(bad("no code or no data sections".into()));
    };
    let page = SECTION_ALIGN as u64;
    if text.start != page || data.start != crate::link::align_up(text.end, page) {
        bail!(bad(format!(
            "unexpected layout (code {:#x}..{:#x}, data {:#x}..{:#x}); kernel/efistub/link.ld must put .text at 0x1000 and the data on the next page",
            text.start, text.end, data.start, data.end
        )));
    }
    // The memory image from 0x1000 to the end of the data, with file bytes in place.
    let mut mem = vec![0u8; (data.end - text.start) as usize];
    for sh in &elf.section_headers {
        let name = elf.shdr_strtab.get_at(sh.sh_name).unwrap_or("");
        if sh.sh_flags & SHF_ALLOC as u64 == 0
            || sh.sh_type == SHT_NOBITS
            || dynamic.contains(&name)
            || sh.sh_size == 0
        {
            continue;
        }
        let src = stub
            .get(sh.sh_offset as usize..(sh.sh_offset + sh.sh_size) as usize)
            .ok_or_else(|| bad(format!("section {name} lies outside the file")))?;
        let at = (sh.sh_addr - text.start) as usize;
        mem[at..at + src.len()].copy_from_slice(src);
    }
    let put = |mem: &mut Vec<u8>, addr: u64, bytes: &[u8]| -> anyhow::Result<()> {
        let at = addr
            .checked_sub(text.start)
            .filter(|a| a + bytes.len() as u64 <= data.file_end - text.start)
            .ok_or_else(|| bad(format!("address {addr:#x} is not in the stub's file bytes")))?;
        mem[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
        Ok(())
    };
    let mut relocs = Vec::new();
    for r in elf.dynrelas.iter().chain(elf.dynrels.iter()) {
        if r.r_type != R_X86_64_RELATIVE {
            bail!(bad(format!(
                "relocation type {} at {:#x}; only R_X86_64_RELATIVE can become a PE base relocation (is the stub built as static-pie with no dependencies?)",
                r.r_type, r.r_offset
            )));
        }
        let value = IMAGE_BASE.wrapping_add(r.r_addend.unwrap_or(0) as u64);
        put(&mut mem, r.r_offset, &value.to_le_bytes())?;
        relocs.push(r.r_offset as u32);
    }
    relocs.sort_unstable();
    let embed = elf
        .syms
        .iter()
        .find(|s| elf.strtab.get_at(s.st_name) == Some(EMBED_SYMBOL))
        .ok_or_else(|| bad(format!("no symbol {EMBED_SYMBOL}; do not strip the stub")))?
        .st_value;

    let mut out = Vec::new();
    let mut w = object::write::pe::Writer::new(true, SECTION_ALIGN, FILE_ALIGN, &mut out);
    w.reserve_dos_header_and_stub();
    w.reserve_nt_headers(16);
    w.reserve_section_headers(4);
    let text_len = (text.end - text.start) as u32;
    let text_range = w.reserve_text_section(text_len);
    let data_file = (data.file_end - data.start) as u32;
    let data_range = w.reserve_data_section((data.end - data.start) as u32, data_file);
    let kiln_len = u32::try_from(pvh_image.len())
        .map_err(|_| anyhow::anyhow!("the image is too large for a PE file (4 GiB)"))?;
    let kiln_range = w.reserve_section(
        *b".kiln\0\0\0",
        pe::IMAGE_SCN_CNT_INITIALIZED_DATA | pe::IMAGE_SCN_MEM_READ,
        kiln_len,
        kiln_len,
    );
    if text_range.virtual_address as u64 != text.start
        || data_range.virtual_address as u64 != data.start
    {
        bail!(bad(
            "the PE sections do not land at the ELF addresses".into()
        ));
    }
    put(
        &mut mem,
        embed,
        &[
            (kiln_range.virtual_address as u64).to_le_bytes(),
            (pvh_image.len() as u64).to_le_bytes(),
        ]
        .concat(),
    )?;
    for r in relocs {
        w.add_reloc(r, pe::IMAGE_REL_BASED_DIR64);
    }
    w.reserve_reloc_section();

    w.write_dos_header_and_stub()
        .map_err(|e| anyhow::anyhow!("writing the PE header: {e}"))?;
    w.write_nt_headers(object::write::pe::NtHeaders {
        machine: pe::IMAGE_FILE_MACHINE_AMD64,
        time_date_stamp: 0,
        characteristics: pe::IMAGE_FILE_EXECUTABLE_IMAGE | pe::IMAGE_FILE_LARGE_ADDRESS_AWARE,
        major_linker_version: 0,
        minor_linker_version: 0,
        address_of_entry_point: elf.header.e_entry as u32,
        image_base: IMAGE_BASE,
        major_operating_system_version: 0,
        minor_operating_system_version: 0,
        major_image_version: 0,
        minor_image_version: 0,
        major_subsystem_version: 0,
        minor_subsystem_version: 0,
        subsystem: pe::IMAGE_SUBSYSTEM_EFI_APPLICATION,
        dll_characteristics: pe::IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE
            | pe::IMAGE_DLLCHARACTERISTICS_HIGH_ENTROPY_VA
            | pe::IMAGE_DLLCHARACTERISTICS_NX_COMPAT,
        size_of_stack_reserve: 0x10_0000,
        size_of_stack_commit: 0x1000,
        size_of_heap_reserve: 0,
        size_of_heap_commit: 0,
    });
    w.write_section_headers();
    w.write_section(text_range.file_offset, &mem[..text_len as usize]);
    let d = (data.start - text.start) as usize;
    w.write_section(data_range.file_offset, &mem[d..d + data_file as usize]);
    w.write_section(kiln_range.file_offset, pvh_image);
    w.write_reloc_section();
    Ok(out)
}

/// What [`inspect_pe`] finds in an EFI application built by Kiln.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeInfo {
    /// `Subsystem` of the optional header (10 for an EFI application).
    pub subsystem: u16,
    /// The embedded PVH image.
    pub embedded: Vec<u8>,
}

/// Reads back the subsystem and the `.kiln` section of a PE built by [`build_pe`].
pub fn inspect_pe(file: &[u8]) -> anyhow::Result<PeInfo> {
    use object::read::pe::PeFile64;
    use object::{Object, ObjectSection};
    let pe = PeFile64::parse(file).map_err(|e| anyhow::anyhow!("not a PE32+ file: {e}"))?;
    let subsystem = pe
        .nt_headers()
        .optional_header
        .subsystem
        .get(object::LittleEndian);
    let kiln = pe
        .section_by_name(".kiln")
        .ok_or_else(|| anyhow::anyhow!("no .kiln section: not a Kiln EFI application"))?;
    let data = kiln
        .data()
        .map_err(|e| anyhow::anyhow!("reading .kiln: {e}"))?;
    // The raw data is padded to the file alignment; the virtual size is the image's length.
    let embedded = data[..data.len().min(kiln.size() as usize)].to_vec();
    Ok(PeInfo {
        subsystem,
        embedded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_non_elf_stub() {
        let img = crate::floor::bytes();
        assert!(build_pe(b"nope", &img).is_err());
    }
}
