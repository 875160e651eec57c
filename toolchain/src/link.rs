//! The link step: kernel ELF + payload -> one PVH image.
//!
//! The image holds the kernel's `PT_LOAD` segments unchanged (except for the patched
//! [`kiln_abi::payload::LOCATION_SYMBOL`]), the kernel's PVH note in its own `PT_NOTE`, and
//! one more read-only `PT_LOAD` with the payload at the first page boundary after the kernel.

use crate::pvh::{self, PvhImage, Segment};
use crate::Layout;
use anyhow::{bail, Context};
use goblin::elf::program_header::{PT_LOAD, PT_NOTE};
use kiln_abi::cmdline::Config;
use kiln_abi::payload::LOCATION_SYMBOL;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Page size used to place the payload.
pub const PAGE: u64 = 4096;

/// Why a kernel could not be linked with a payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The kernel ELF itself is unusable.
    #[error("kernel ELF: {0}")]
    BadKernel(String),
    /// The kernel has no PVH note.
    #[error("kernel ELF has no Xen PVH note (type 18) in a PT_NOTE; the kernel's boot code must emit one")]
    NoPvhNote,
    /// The location symbol is missing.
    #[error("kernel ELF has no symbol `{LOCATION_SYMBOL}` in .symtab; define it as a #[no_mangle] #[used] static [u64; 2] and do not strip the kernel")]
    NoSymbol,
    /// The location symbol is not in file-backed bytes of a `PT_LOAD`.
    #[error("kernel symbol `{LOCATION_SYMBOL}` at {0:#x} is not inside the file bytes of a PT_LOAD (is it in .bss?); give it #[link_section = \".data\"]")]
    SymbolNotInFile(u64),
    /// The location symbol is smaller than 16 bytes.
    #[error(
        "kernel symbol `{LOCATION_SYMBOL}` is {0} bytes; it must be 16 (two u64: address, length)"
    )]
    SymbolTooSmall(u64),
    /// The payload does not fit below 4 GiB.
    #[error("the payload ({0} bytes) does not fit below 4 GiB after the kernel")]
    TooLarge(usize),
}

/// Rounds `x` up to a multiple of `a` (a power of two).
pub fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a).saturating_mul(a)
}

/// The configuration baked into an image: `argv[0]` is the program's path in the image
/// (`/bin/<name>`, see [`crate::app::program_path`]), arguments only when some were given,
/// and the environment.
pub fn baked_config(path: &str, args: &[String], env: &[(String, String)]) -> Config {
    let mut c = Config {
        name: Some(path.as_bytes().to_vec()),
        argv: (!args.is_empty()).then(|| args.iter().map(|a| a.as_bytes().to_vec()).collect()),
        ..Config::default()
    };
    for (k, v) in env {
        c.set_env(k.as_bytes().to_vec(), v.as_bytes().to_vec());
    }
    c
}

/// Links `kernel` (an ELF) with `payload` (from [`kiln_abi::payload::build`]) into image bytes.
pub fn link(kernel: &[u8], payload: &[u8]) -> Result<Vec<u8>, LinkError> {
    let bad = |e: String| LinkError::BadKernel(e);
    let (h, phdrs) = crate::elf::headers(kernel).map_err(|e| bad(e.to_string()))?;
    if h.e_machine != goblin::elf::header::EM_X86_64 {
        return Err(bad("not an x86_64 ELF".into()));
    }
    let pvh_desc = phdrs
        .iter()
        .filter(|p| p.p_type == PT_NOTE)
        .filter_map(|p| {
            let end = p.p_offset.checked_add(p.p_filesz)?;
            pvh::find_pvh_desc(kernel.get(p.p_offset as usize..end as usize)?)
        })
        .next()
        .ok_or(LinkError::NoPvhNote)?
        .to_vec();

    let mut segments: Vec<Segment> = phdrs
        .iter()
        .filter(|p| p.p_type == PT_LOAD)
        .map(|p| Segment {
            paddr: p.p_paddr,
            vaddr: p.p_vaddr,
            flags: p.p_flags,
            align: p.p_align,
            data: kernel[p.p_offset as usize..(p.p_offset + p.p_filesz) as usize].to_vec(),
            memsz: p.p_memsz,
        })
        .collect();
    if segments.is_empty() {
        return Err(bad("no PT_LOAD segment".into()));
    }

    let elf = goblin::elf::Elf::parse(kernel).map_err(|e| bad(format!("symbols: {e}")))?;
    let sym = elf
        .syms
        .iter()
        .find(|s| elf.strtab.get_at(s.st_name) == Some(LOCATION_SYMBOL))
        .ok_or(LinkError::NoSymbol)?;
    if sym.st_size != 0 && sym.st_size < 16 {
        return Err(LinkError::SymbolTooSmall(sym.st_size));
    }
    let at = sym.st_value;
    let seg = segments
        .iter_mut()
        .find(|s| at >= s.vaddr && at.saturating_add(16) <= s.vaddr + s.data.len() as u64)
        .ok_or(LinkError::SymbolNotInFile(at))?;

    let kernel_end = phdrs
        .iter()
        .filter(|p| p.p_type == PT_LOAD)
        .map(|p| p.p_paddr.saturating_add(p.p_memsz))
        .max()
        .unwrap_or(0);
    let base = align_up(kernel_end, PAGE);
    if base.saturating_add(payload.len() as u64) > 1 << 32 {
        return Err(LinkError::TooLarge(payload.len()));
    }
    let off = (at - seg.vaddr) as usize;
    seg.data[off..off + 8].copy_from_slice(&base.to_le_bytes());
    seg.data[off + 8..off + 16].copy_from_slice(&(payload.len() as u64).to_le_bytes());

    segments.push(Segment {
        paddr: base,
        vaddr: base,
        flags: pvh::READ_ONLY,
        align: PAGE,
        data: payload.to_vec(),
        memsz: payload.len() as u64,
    });
    let image = PvhImage {
        entry: h.e_entry,
        pvh_desc,
        segments,
    }
    .write();
    pvh::verify(&image).map_err(|e| bad(format!("the linked image is not bootable: {e}")))?;
    Ok(image)
}

/// Builds the kernel with all its optional parts (`cargo build --release` in `kernel/`,
/// progress on stderr) and returns the path of its ELF. Cargo returns quickly when it is up
/// to date.
pub fn build_kernel(layout: &Layout) -> anyhow::Result<PathBuf> {
    build_kernel_variant(layout, KernelVariant::FULL)
}

/// Which optional parts (cargo features of `kiln-kernel`) the kernel of an image has.
/// Each variant has a target directory of its own, so all stay built and switching between
/// them costs nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelVariant {
    /// The IPv4 stack and the virtio-net driver (feature `net`).
    pub net: bool,
    /// The program profiler and its stack walker (feature `profile`, `run --profile`).
    pub profile: bool,
    /// Host directories over 9P (feature `volumes`, `run -v`).
    pub volumes: bool,
}

impl KernelVariant {
    /// Every optional part: the kernel's default features, built in `kernel/target`.
    pub const FULL: KernelVariant = KernelVariant {
        net: true,
        profile: true,
        volumes: true,
    };

    /// Every variant, [`KernelVariant::FULL`] first.
    pub fn all() -> Vec<KernelVariant> {
        (0..8u8)
            .map(|bits| KernelVariant {
                net: bits & 1 == 0,
                profile: bits & 2 == 0,
                volumes: bits & 4 == 0,
            })
            .collect()
    }

    /// The cargo features this variant is built with.
    pub fn features(self) -> Vec<&'static str> {
        [
            ("net", self.net),
            ("profile", self.profile),
            ("volumes", self.volumes),
        ]
        .into_iter()
        .filter_map(|(f, on)| on.then_some(f))
        .collect()
    }

    /// The variant's cargo target directory, relative to `kernel/`: `target` for the full
    /// kernel, else `target/variants/` and its features (`bare` for none).
    pub fn target_dir(self) -> String {
        if self == KernelVariant::FULL {
            return "target".into();
        }
        let features = self.features();
        let name = if features.is_empty() {
            "bare".to_string()
        } else {
            features.join("+")
        };
        format!("target/variants/{name}")
    }
}

/// The cargo arguments that build kernel variant `v`.
pub fn kernel_build_args(v: KernelVariant) -> Vec<String> {
    let mut args: Vec<String> = vec!["build".into(), "--release".into()];
    if v != KernelVariant::FULL {
        args.extend(["-p", "kiln-kernel", "--no-default-features"].map(String::from));
        let features = v.features();
        if !features.is_empty() {
            args.push("--features".into());
            args.push(features.join(","));
        }
        args.push("--target-dir".into());
        args.push(v.target_dir());
    }
    args
}

/// [`build_kernel`] for variant `v`.
pub fn build_kernel_variant(layout: &Layout, v: KernelVariant) -> anyhow::Result<PathBuf> {
    let dir = layout.kernel_dir();
    if !dir.join("Cargo.toml").is_file() {
        bail!("no kernel workspace at {}", dir.display());
    }
    let status = Command::new(cargo())
        .args(kernel_build_args(v))
        .current_dir(&dir)
        // The kernel's flags come from kernel/.cargo/config.toml; RUSTFLAGS would replace them.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .stdin(Stdio::null())
        .stdout(crate::app::stderr_stdio())
        .status()
        .context("could not start cargo to build the kernel")?;
    if !status.success() {
        bail!(
            "the kernel failed to build (cargo {} in kernel/); see the errors above",
            kernel_build_args(v).join(" ")
        );
    }
    let elf = layout.kernel_elf_for(v);
    if !elf.is_file() {
        bail!("the kernel built but {} is missing", elf.display());
    }
    Ok(elf)
}

/// The cargo binary to run: the one that runs us, else `cargo` from PATH.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use object::write::elf::{FileHeader, ProgramHeader, SectionHeader, Sym, Writer};

    /// A tiny kernel: code at 1 MiB (R+X), data with the location symbol at 0x101000 (R+W,
    /// with some .bss), a PVH note and a symbol table.
    pub fn fake_kernel(symbol: &str, sym_size: u64) -> Vec<u8> {
        let code = crate::floor::CODE.to_vec();
        let data = vec![0xaau8; 32];
        let note = pvh::xen_pvh_note(&0x100000u64.to_le_bytes());
        let mut out = Vec::new();
        let mut w = Writer::new(object::Endianness::Little, true, &mut out);
        w.reserve_file_header();
        w.reserve_program_headers(3);
        let note_off = w.reserve(note.len(), 4);
        let code_off = w.reserve(code.len(), 0x1000);
        let data_off = w.reserve(data.len(), 0x1000);
        let data_name = w.add_section_name(b".data");
        let _null = w.reserve_null_section_index();
        let data_idx = w.reserve_section_index();
        let sym_name = w.add_string(symbol.as_bytes());
        w.reserve_null_symbol_index();
        w.reserve_symbol_index(Some(data_idx));
        w.reserve_symtab_section_index();
        w.reserve_strtab_section_index();
        w.reserve_shstrtab_section_index();
        w.reserve_symtab();
        w.reserve_strtab();
        w.reserve_shstrtab();
        w.reserve_section_headers();
        w.write_file_header(&FileHeader {
            os_abi: 0,
            abi_version: 0,
            e_type: goblin::elf::header::ET_EXEC,
            e_machine: goblin::elf::header::EM_X86_64,
            e_entry: 0x100000,
            e_flags: 0,
        })
        .unwrap();
        w.write_align_program_headers();
        let ph = |p_type, p_flags, off: usize, addr, filesz: usize, memsz, align| ProgramHeader {
            p_type,
            p_flags,
            p_offset: off as u64,
            p_vaddr: addr,
            p_paddr: addr,
            p_filesz: filesz as u64,
            p_memsz: memsz,
            p_align: align,
        };
        w.write_program_header(&ph(PT_NOTE, 4, note_off, 0, note.len(), 0, 4));
        w.write_program_header(&ph(PT_LOAD, 5, code_off, 0x100000, code.len(), 8, 0x1000));
        w.write_program_header(&ph(
            PT_LOAD,
            6,
            data_off,
            0x101000,
            data.len(),
            0x2345,
            0x1000,
        ));
        w.pad_until(note_off);
        w.write(&note);
        w.pad_until(code_off);
        w.write(&code);
        w.pad_until(data_off);
        w.write(&data);
        w.write_null_symbol();
        w.write_symbol(&Sym {
            name: Some(sym_name),
            section: Some(data_idx),
            st_info: (1 << 4) | 1, // GLOBAL OBJECT
            st_other: 0,
            st_shndx: 0,
            st_value: 0x101008,
            st_size: sym_size,
        });
        w.write_strtab();
        w.write_shstrtab();
        w.write_null_section_header();
        w.write_section_header(&SectionHeader {
            name: Some(data_name),
            sh_type: 1,
            sh_flags: 3,
            sh_addr: 0x101000,
            sh_offset: data_off as u64,
            sh_size: data.len() as u64,
            sh_link: 0,
            sh_info: 0,
            sh_addralign: 8,
            sh_entsize: 0,
        });
        w.write_symtab_section_header(1);
        w.write_strtab_section_header();
        w.write_shstrtab_section_header();
        out
    }

    #[test]
    fn kernel_variants_have_their_own_features_and_target_directories() {
        assert_eq!(
            kernel_build_args(KernelVariant::FULL),
            ["build", "--release"],
            "the full kernel is the workspace's default build"
        );
        let lean = KernelVariant {
            net: true,
            profile: false,
            volumes: false,
        };
        assert_eq!(
            kernel_build_args(lean).join(" "),
            "build --release -p kiln-kernel --no-default-features --features net --target-dir target/variants/net"
        );
        let bare = KernelVariant {
            net: false,
            profile: false,
            volumes: false,
        };
        assert_eq!(
            kernel_build_args(bare).join(" "),
            "build --release -p kiln-kernel --no-default-features --target-dir target/variants/bare"
        );
        let all = KernelVariant::all();
        assert_eq!(all[0], KernelVariant::FULL);
        let dirs: std::collections::BTreeSet<_> = all.iter().map(|v| v.target_dir()).collect();
        assert_eq!(dirs.len(), 8);
        for v in all {
            assert_eq!(v.features().contains(&"net"), v.net);
            assert_eq!(v.features().contains(&"profile"), v.profile);
            assert_eq!(v.features().contains(&"volumes"), v.volumes);
        }
    }

    #[test]
    fn links_payload_after_kernel_and_patches_location() {
        let kernel = fake_kernel(LOCATION_SYMBOL, 16);
        let payload = kiln_abi::payload::build(b"\x7fELFprog", b"tar", "kiln.name=/bin/x");
        let image = link(&kernel, &payload).unwrap();
        let info = pvh::verify(&image).unwrap();
        assert_eq!(info.pvh_entry, 0x100000);
        // Kernel segments kept, payload at align_up(0x101000 + 0x2345, 4096) = 0x104000.
        assert_eq!(
            info.loads,
            vec![
                (0x100000, 8, 5),
                (0x101000, 0x2345, 6),
                (0x104000, payload.len() as u64, pvh::READ_ONLY)
            ]
        );
        let (h, ph) = crate::elf::headers(&image).unwrap();
        assert_eq!(h.e_entry, 0x100000);
        let data = &image[ph[1].p_offset as usize..][..32];
        assert_eq!(&data[..8], &[0xaa; 8]);
        assert_eq!(&data[8..16], &0x104000u64.to_le_bytes());
        assert_eq!(&data[16..24], &(payload.len() as u64).to_le_bytes());
        assert_eq!(&data[24..], &[0xaa; 8]);
        let p = &image[ph[2].p_offset as usize..][..payload.len()];
        assert_eq!(p, &payload[..]);
        assert_eq!(kiln_abi::payload::parse(p).unwrap().rootfs, {
            let h = kiln_abi::payload::parse(&payload).unwrap();
            h.rootfs
        });
        // The PVH note sits alone in a PT_NOTE with align 4.
        let notes: Vec<_> = ph.iter().filter(|p| p.p_type == PT_NOTE).collect();
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].p_align, 4);
    }

    #[test]
    fn linking_is_deterministic() {
        let kernel = fake_kernel(LOCATION_SYMBOL, 16);
        let payload = kiln_abi::payload::build(b"p", b"r", "c");
        assert_eq!(
            link(&kernel, &payload).unwrap(),
            link(&kernel, &payload).unwrap()
        );
    }

    #[test]
    fn refuses_bad_kernels() {
        let payload = kiln_abi::payload::build(b"p", b"r", "c");
        assert_eq!(
            link(&fake_kernel("OTHER", 16), &payload),
            Err(LinkError::NoSymbol)
        );
        assert_eq!(
            link(&fake_kernel(LOCATION_SYMBOL, 8), &payload),
            Err(LinkError::SymbolTooSmall(8))
        );
        // The floor image has a PVH note but no symbol table.
        assert_eq!(
            link(&crate::floor::bytes(), &payload),
            Err(LinkError::NoSymbol)
        );
        assert!(matches!(
            link(b"nope", &payload),
            Err(LinkError::BadKernel(_))
        ));
        // No PVH note: break the note type.
        let mut k = fake_kernel(LOCATION_SYMBOL, 16);
        let (_, ph) = crate::elf::headers(&k).unwrap();
        let off = ph[0].p_offset as usize;
        k[off + 8] = 0;
        assert_eq!(link(&k, &payload), Err(LinkError::NoPvhNote));
        let msg = LinkError::NoSymbol.to_string();
        assert!(msg.contains(LOCATION_SYMBOL) && msg.contains("no_mangle"));
    }

    #[test]
    fn baked_config_names_the_program() {
        let c = baked_config("/bin/hello", &[], &[("A".into(), "1".into())]);
        assert_eq!(c.to_cmdline(), "kiln.name=/bin/hello kiln.env=A=1");
        let c = baked_config("/bin/hello", &["x y".into()], &[]);
        assert_eq!(c.argv, Some(vec![b"x y".to_vec()]));
        assert_eq!(align_up(0x1001, 0x1000), 0x2000);
        assert_eq!(align_up(0x1000, 0x1000), 0x1000);
    }
}
