//! Loading the program: ELF segments into the memory map, the heap's start, the stack and
//! its initial contents, as Linux's `execve` leaves them; for a dynamically linked program
//! also its dynamic loader (`PT_INTERP`), which then loads the libraries itself through
//! `open` and `mmap`.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::elf::{self, ElfError, Tls};
use crate::errno::Errno;
use crate::machine::{PageTable, Prot, PAGE_SIZE};
use crate::stack::{self, AuxValues, StackError, StackInputs};
use crate::vm::{page_down, page_up, AddressSpace, Vma, VmaKind, MMAP_BASE, STACK_SIZE, STACK_TOP};

/// `AT_MINSIGSTKSZ`: Kiln's signal frames carry the legacy FXSAVE area (512 bytes) plus the
/// frame itself, well under the classic `MINSIGSTKSZ` of 2048 that this reports.
pub const MINSIGSTKSZ: u64 = 2048;
/// `AT_HWCAP2`: no optional features (in particular not FSGSBASE) are advertised.
pub const HWCAP2: u64 = 0;
/// `AT_PLATFORM`.
pub const PLATFORM: &[u8] = b"x86_64";

/// Where the loaded program starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// Entry point (load bias applied).
    pub entry: u64,
    /// Initial stack pointer (at `argc`, 16-byte aligned).
    pub stack_pointer: u64,
    /// What was added to the program's link-time addresses (0 for `ET_EXEC`).
    pub load_bias: u64,
    /// Where the heap (`brk`) starts.
    pub brk_start: u64,
    /// `AT_PHDR`: where the program headers are in memory.
    pub phdr: u64,
    /// The TLS template at its load address, for reports (the C library sets TLS up itself).
    pub tls: Option<Tls>,
    /// The stack region, `start..end`.
    pub stack: core::ops::Range<u64>,
    /// Where the `AT_RANDOM` bytes are.
    pub random_addr: u64,
    /// Where the argument strings are on the stack (see [`stack::InitialStack::args`]).
    pub args: core::ops::Range<u64>,
    /// Where the environment strings are.
    pub env: core::ops::Range<u64>,
    /// `AT_BASE`: where the dynamic loader was loaded (0 for a static program).
    pub interp_base: u64,
}

/// Why the program could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The ELF file is not something Kiln runs.
    Elf(ElfError),
    /// Arguments and environment do not fit the stack.
    Stack(StackError),
    /// The program's segments collide with the stack region.
    StackOverlap,
    /// The program's segments collide with the vDSO's pages.
    VdsoOverlap,
    /// No memory left for the program's pages.
    OutOfMemory,
    /// The dynamic loader the program names (`PT_INTERP`) is not in the root filesystem.
    NoInterpreter(String),
    /// The dynamic loader is not something Kiln can load (path, why).
    BadInterpreter(String, String),
}

impl From<ElfError> for LoadError {
    fn from(e: ElfError) -> LoadError {
        LoadError::Elf(e)
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Elf(e) => write!(f, "{e}"),
            LoadError::Stack(e) => write!(f, "{e}"),
            LoadError::StackOverlap => write!(
                f,
                "the program's segments reach into the stack area {:#x}..{STACK_TOP:#x}: link it lower",
                STACK_TOP - STACK_SIZE
            ),
            LoadError::VdsoOverlap => write!(
                f,
                "the program's segments reach into the vDSO's pages {:#x}..{:#x}: link it lower",
                crate::vdso::CLOCK_PAGE,
                crate::vdso::image_end()
            ),
            LoadError::OutOfMemory => write!(
                f,
                "out of memory loading the program: give the VM more memory"
            ),
            LoadError::NoInterpreter(path) => write!(
                f,
                "the program is dynamically linked and its loader {path} (PT_INTERP) is not in the root filesystem: build the image with Kiln's build-image, which packs it, or add it with --file"
            ),
            LoadError::BadInterpreter(path, why) => write!(
                f,
                "the program's dynamic loader {path} (PT_INTERP) cannot be loaded: {why}"
            ),
        }
    }
}

fn nomem(e: Errno) -> LoadError {
    if e == Errno::ENOMEM {
        LoadError::OutOfMemory
    } else {
        // Regions were just created for exactly these ranges; anything else is a collision.
        LoadError::StackOverlap
    }
}

fn union(a: Prot, b: Prot) -> Prot {
    Prot {
        read: a.read || b.read,
        write: a.write || b.write,
        exec: a.exec || b.exec,
    }
}

/// Puts one segment's bytes in place. Pages of read-only segments that hold only file bytes
/// are mapped in place from `elf` (no copy, no frame); the rest is copied.
fn load_segment(
    vm: &mut AddressSpace,
    pt: &mut dyn PageTable,
    elf: &'static [u8],
    s: &elf::Segment,
    bias: u64,
    regions: &[(u64, u64, Prot, u64)],
) -> Result<(), LoadError> {
    let start = s.vaddr + bias;
    let file = s.file_range();
    let data = &elf[file.clone()];
    if s.prot.write || !(start - file.start as u64).is_multiple_of(PAGE_SIZE) {
        return vm.populate(pt, start, data).map_err(nomem);
    }
    // Pages wholly inside the file bytes, in a region of this segment's own rights (a page
    // shared with a neighbouring segment is copied).
    let file_end = start + data.len() as u64;
    let mut copy_from = start;
    let mut page = start.next_multiple_of(PAGE_SIZE);
    while page + PAGE_SIZE <= file_end {
        let own = regions
            .iter()
            .any(|r| r.0 <= page && page < r.1 && r.2 == s.prot);
        let offset = file.start + (page - start) as usize;
        if own {
            let bytes = &elf[offset..offset + PAGE_SIZE as usize];
            if pt.map_borrowed(page, bytes, s.prot).map_err(nomem)? {
                if copy_from < page {
                    let from = (copy_from - start) as usize;
                    let to = (page - start) as usize;
                    vm.populate(pt, copy_from, &data[from..to]).map_err(nomem)?;
                }
                copy_from = page + PAGE_SIZE;
            }
        }
        page += PAGE_SIZE;
    }
    if copy_from < file_end {
        let from = (copy_from - start) as usize;
        vm.populate(pt, copy_from, &data[from..]).map_err(nomem)?;
    }
    Ok(())
}

/// Maps one ELF file's segments at `bias` as regions of `kind` (a page shared by two
/// segments gets the union of their rights) and puts their bytes in place. Returns the end of
/// the highest region.
fn map_elf(
    vm: &mut AddressSpace,
    pt: &mut dyn PageTable,
    elf: &'static [u8],
    prog: &elf::Program,
    bias: u64,
    kind: &VmaKind,
) -> Result<u64, LoadError> {
    // Page ranges of the segments; a page shared by two segments gets the union of rights.
    let mut regions: Vec<(u64, u64, Prot, u64)> = Vec::new();
    for s in &prog.segments {
        let mut start = page_down(s.vaddr + bias);
        let end = page_up(s.end() + bias).ok_or(ElfError::OutsideUserSpace {
            start,
            end: u64::MAX,
        })?;
        let offset = page_down(s.offset);
        if let Some(last) = regions.last_mut() {
            if start < last.1 {
                // Segments are sorted and disjoint, so only the page holding this one's start
                // can be shared, and it is the previous region's last page.
                if last.1 - last.0 > PAGE_SIZE {
                    last.1 -= PAGE_SIZE;
                    let shared = (last.1, last.1 + PAGE_SIZE, union(last.2, s.prot), offset);
                    regions.push(shared);
                } else {
                    last.2 = union(last.2, s.prot);
                }
                start += PAGE_SIZE;
            }
        }
        if start < end {
            regions.push((
                start,
                end,
                s.prot,
                offset + (start - page_down(s.vaddr + bias)),
            ));
        }
    }
    for &(start, end, prot, offset) in &regions {
        vm.insert(
            start,
            Vma {
                end,
                prot,
                kind: kind.clone(),
                shared: false,
                offset,
            },
        )
        .map_err(|_| LoadError::StackOverlap)?;
    }
    for s in &prog.segments {
        load_segment(vm, pt, elf, s, bias, &regions)?;
    }
    Ok(regions.last().map(|r| r.1).unwrap_or(0))
}

/// How many pages below [`MMAP_BASE`] the dynamic loader's placement may move at random:
/// 2^20 pages, a 4 GiB window.
pub const INTERP_RANDOM_PAGES: u64 = 1 << 20;

/// Where the dynamic loader `interp` goes: top-down below [`MMAP_BASE`], where Linux's `mmap`
/// would put it, lowered by `random` pages (modulo [`INTERP_RANDOM_PAGES`]) and aligned to its
/// largest segment alignment. Returns the bias.
fn interp_bias(interp: &elf::Program, random: u64) -> Result<u64, ElfError> {
    let first = page_down(interp.segments[0].vaddr);
    let last = interp.segments.last().map_or(first, |s| s.end());
    let span = page_up(last - first).ok_or(ElfError::OutsideUserSpace {
        start: first,
        end: last,
    })?;
    let top = MMAP_BASE - (random % INTERP_RANDOM_PAGES) * PAGE_SIZE;
    let base = top.checked_sub(span).ok_or(ElfError::OutsideUserSpace {
        start: 0,
        end: span,
    })? & !(interp.max_align.max(PAGE_SIZE) - 1);
    base.checked_sub(first).ok_or(ElfError::OutsideUserSpace {
        start: first,
        end: last,
    })
}

/// Replaces the whole user address space with the program in `elf`: segments with their
/// rights and bytes (the bss reads as zero), the heap starting after the highest segment,
/// an 8 MiB demand-paged stack ending at [`STACK_TOP`] holding argv, envp and the auxiliary
/// vector, and the vDSO (`AT_SYSINFO_EHDR`, see [`crate::vdso`]). A static program only
/// (see [`load_dynamic`]). Errors in the file or the arguments leave the address space
/// untouched; running out of memory leaves it partly built (see [`Prepared::install`]).
#[allow(clippy::too_many_arguments)]
pub fn load_program(
    vm: &mut AddressSpace,
    pt: &mut dyn PageTable,
    elf: &'static [u8],
    argv: &[Vec<u8>],
    envp: &[Vec<u8>],
    execfn: &[u8],
    random: [u8; 16],
    hwcap: u64,
) -> Result<Loaded, LoadError> {
    load_dynamic(
        vm,
        pt,
        elf,
        argv,
        envp,
        execfn,
        random,
        hwcap,
        &|_: &str| None,
        0,
    )
}

/// [`load_program`] for any program: when it names a dynamic loader (`PT_INTERP`),
/// `find_file` gives that file's bytes (from the root filesystem), the loader is mapped too
/// (at [`interp_bias`]'s place, moved down by `interp_random` pages), execution starts at its
/// entry point, and the auxiliary vector tells it where the program is (`AT_PHDR`,
/// `AT_ENTRY`) and where it is itself (`AT_BASE`), as Linux's `execve` does.
#[allow(clippy::too_many_arguments)]
pub fn load_dynamic(
    vm: &mut AddressSpace,
    pt: &mut dyn PageTable,
    elf: &'static [u8],
    argv: &[Vec<u8>],
    envp: &[Vec<u8>],
    execfn: &[u8],
    random: [u8; 16],
    hwcap: u64,
    find_file: &dyn Fn(&str) -> Option<&'static [u8]>,
    interp_random: u64,
) -> Result<Loaded, LoadError> {
    let args = Args {
        argv,
        envp,
        execfn,
        random,
        hwcap,
        interp_random,
    };
    prepare(vm, elf, &args, find_file)?.install(vm, pt)
}

/// What a program is started with besides its file (see [`load_dynamic`]).
pub struct Args<'a> {
    /// Arguments, `argv[0]` first.
    pub argv: &'a [Vec<u8>],
    /// Environment strings (`NAME=value`).
    pub envp: &'a [Vec<u8>],
    /// `AT_EXECFN`: the path the program was started by.
    pub execfn: &'a [u8],
    /// `AT_RANDOM`'s bytes.
    pub random: [u8; 16],
    /// `AT_HWCAP`.
    pub hwcap: u64,
    /// How many pages the dynamic loader's place moves down (see [`interp_bias`]).
    pub interp_random: u64,
}

/// A program checked and ready to replace the address space: its files parsed, its
/// dynamic loader found and its stack's contents built, nothing changed yet.
pub struct Prepared {
    elf: &'static [u8],
    prog: elf::Program,
    bias: u64,
    interp: Option<(String, &'static [u8], elf::Program, u64)>,
    entry: u64,
    base: u64,
    phdr: u64,
    stack: stack::InitialStack,
}

/// Checks `elf` (and its dynamic loader, from `find_file`) and builds its initial stack,
/// without touching `vm`: every error here leaves the running program as it was, so
/// `execve` can return it.
pub fn prepare(
    vm: &AddressSpace,
    elf: &'static [u8],
    args: &Args<'_>,
    find_file: &dyn Fn(&str) -> Option<&'static [u8]>,
) -> Result<Prepared, LoadError> {
    let prog = elf::parse(elf)?;
    let bias = prog.load_bias(&vm.reserved())?;
    let interp = match &prog.interpreter {
        None => None,
        Some(path) => {
            let bytes = find_file(path).ok_or_else(|| LoadError::NoInterpreter(path.clone()))?;
            let ip = elf::parse(bytes)
                .map_err(|e| LoadError::BadInterpreter(path.clone(), alloc::format!("{e}")))?;
            if ip.kind != elf::Kind::StaticPie || ip.interpreter.is_some() {
                return Err(LoadError::BadInterpreter(
                    path.clone(),
                    "not a position-independent dynamic loader (ET_DYN without PT_INTERP)".into(),
                ));
            }
            let ibias = interp_bias(&ip, args.interp_random)?;
            Some((path.clone(), bytes, ip, ibias))
        }
    };
    let entry = match &interp {
        None => prog.entry + bias,
        Some((_, _, ip, ibias)) => ip.entry + ibias,
    };
    let base = interp.as_ref().map_or(0, |i| i.3);
    let phdr = prog.phdr_vaddr + bias;
    let stack = stack::build(&StackInputs {
        stack_top: STACK_TOP,
        argv: args.argv,
        envp: args.envp,
        execfn: args.execfn,
        platform: PLATFORM,
        random: args.random,
        aux: AuxValues {
            phdr,
            phent: u64::from(prog.phentsize),
            phnum: u64::from(prog.phnum),
            entry: prog.entry + bias,
            base,
            hwcap: args.hwcap,
            hwcap2: HWCAP2,
            minsigstksz: MINSIGSTKSZ,
            sysinfo_ehdr: crate::vdso::IMAGE_START,
        },
        // Linux allows arguments and environment a quarter of the stack limit.
        limit: STACK_SIZE / 4,
    })
    .map_err(LoadError::Stack)?;
    Ok(Prepared {
        elf,
        prog,
        bias,
        interp,
        entry,
        base,
        phdr,
        stack,
    })
}

impl Prepared {
    /// Replaces the whole of `vm` with the program. An error here (out of memory) leaves
    /// the address space partly built: the old program is gone.
    pub fn install(
        self,
        vm: &mut AddressSpace,
        pt: &mut dyn PageTable,
    ) -> Result<Loaded, LoadError> {
        let Prepared {
            elf,
            prog,
            bias,
            interp,
            entry,
            base,
            phdr,
            stack: built,
        } = self;
        vm.clear(pt);
        let brk_start = map_elf(vm, pt, elf, &prog, bias, &VmaKind::Program)?;
        vm.init_brk(brk_start);
        if let Some((path, bytes, ip, ibias)) = &interp {
            map_elf(vm, pt, bytes, ip, *ibias, &VmaKind::File(path.clone()))?;
        }
        let stack_start = STACK_TOP - STACK_SIZE;
        vm.insert(
            stack_start,
            Vma {
                end: STACK_TOP,
                prot: Prot {
                    read: true,
                    write: true,
                    exec: prog.exec_stack(),
                },
                kind: VmaKind::Stack,
                shared: false,
                offset: 0,
            },
        )
        .map_err(|_| LoadError::StackOverlap)?;
        crate::vdso::map(vm, pt).map_err(|e| match e {
            Errno::ENOMEM => LoadError::OutOfMemory,
            _ => LoadError::VdsoOverlap,
        })?;
        vm.populate(pt, built.sp, &built.bytes).map_err(nomem)?;
        Ok(Loaded {
            entry,
            stack_pointer: built.sp,
            load_bias: bias,
            brk_start,
            phdr,
            tls: prog.tls.map(|t| Tls {
                vaddr: t.vaddr + bias,
                ..t
            }),
            stack: stack_start..STACK_TOP,
            random_addr: built.random_addr,
            args: built.args,
            env: built.env,
            interp_base: base,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::build::{elf, Ph};
    use crate::elf::{ET_DYN, ET_EXEC, PF_R, PF_W, PF_X};
    use crate::stack::{AT_ENTRY, AT_PHDR, AT_RANDOM, AT_SYSINFO_EHDR};
    use crate::testing::FakePages;
    use crate::vm::Access;

    const RESERVED: core::ops::Range<u64> = 0x10_0000..0x30_0000;

    /// A static program: headers+rodata page, code page, data page whose bss runs 2 pages on.
    /// Static-pie programs get no `PT_GNU_STACK` (so an executable stack), others a RW one.
    fn program(e_type: u16, base: u64) -> Vec<u8> {
        let mut phs = alloc::vec![
            Ph::load(PF_R, 0, base, 0x300, 0x300),
            Ph::load(PF_R | PF_X, 0x1000, base + 0x1000, 0x10, 0x10),
            Ph::load(PF_R | PF_W, 0x2000, base + 0x2000, 0x20, 0x2800),
        ];
        if e_type == ET_EXEC {
            phs.push(Ph::other(0x6474_e551, PF_R | PF_W));
        }
        let mut b = elf(e_type, base + 0x1000, &phs, 0x2020);
        b[0x1000..0x1010].copy_from_slice(b"\x0f\x05code-bytes!!..");
        b[0x2000..0x2020].copy_from_slice(&[0x11; 0x20]);
        b
    }

    fn argv() -> Vec<Vec<u8>> {
        alloc::vec![b"/app".to_vec(), b"x".to_vec()]
    }

    fn word(vm: &mut AddressSpace, pt: &mut FakePages, addr: u64) -> u64 {
        let mut b = [0u8; 8];
        vm.copy_from_user(pt, addr, &mut b).unwrap();
        u64::from_le_bytes(b)
    }

    fn auxv(vm: &mut AddressSpace, pt: &mut FakePages, sp: u64, key: u64) -> u64 {
        let argc = word(vm, pt, sp);
        let mut a = sp + 8 * (argc + 2);
        while word(vm, pt, a) != 0 {
            a += 8;
        }
        a += 8;
        loop {
            let k = word(vm, pt, a);
            if k == key {
                return word(vm, pt, a + 8);
            }
            assert_ne!(k, 0, "no auxv key {key}");
            a += 16;
        }
    }

    #[test]
    fn loads_a_static_exec() {
        let mut vm = AddressSpace::new(RESERVED);
        let mut pt = FakePages::default();
        let env = [b"A=1".to_vec()];
        let l = load_program(
            &mut vm,
            &mut pt,
            program(ET_EXEC, 0x40_0000).leak(),
            &argv(),
            &env,
            b"/app",
            [7; 16],
            0xabc,
        )
        .unwrap();
        assert_eq!(l.entry, 0x40_1000);
        assert_eq!(l.load_bias, 0);
        assert_eq!(l.phdr, 0x40_0040);
        assert_eq!(l.brk_start, 0x40_5000);
        assert_eq!(l.stack, STACK_TOP - STACK_SIZE..STACK_TOP);
        assert_eq!(l.stack_pointer % 16, 0);

        let maps = vm.maps_text("/app");
        let lines: Vec<&str> = maps.lines().collect();
        assert_eq!(lines.len(), 6, "{maps}");
        assert!(lines[0].starts_with("00400000-00401000 r--p 00000000 "));
        assert!(lines[1].starts_with("00401000-00402000 r-xp 00001000 "));
        assert!(lines[2].starts_with("00402000-00405000 rw-p 00002000 "));
        assert!(
            lines[3].starts_with("7ffff7fff000-7ffff8000000 r--p ") && lines[3].ends_with("[vvar]")
        );
        assert!(
            lines[4].starts_with("7ffff8000000-7ffff8001000 r-xp ") && lines[4].ends_with("[vdso]")
        );
        assert!(
            lines[5].starts_with("7fffff7ff000-7ffffffff000 rw-p ")
                && lines[5].ends_with("[stack]")
        );
        // The vDSO is in the auxiliary vector, and its ELF image at that address.
        let ehdr = auxv(&mut vm, &mut pt, l.stack_pointer, AT_SYSINFO_EHDR);
        assert_eq!(ehdr, crate::vdso::IMAGE_START);
        let mut magic = [0u8; 4];
        vm.copy_from_user(&mut pt, ehdr, &mut magic).unwrap();
        assert_eq!(&magic, b"\x7fELF");

        // Code is there and executable, not writable.
        let mut code = [0u8; 16];
        vm.copy_from_user(&mut pt, 0x40_1000, &mut code).unwrap();
        assert_eq!(&code, b"\x0f\x05code-bytes!!..");
        assert_eq!(
            pt.pages[&0x40_1000].1,
            Prot {
                read: true,
                write: false,
                exec: true
            }
        );
        assert_eq!(
            vm.handle_fault(&mut pt, 0x40_1000, Access::Write),
            Err(crate::vm::Fault::Denied)
        );
        // Data, then zeroed bss in the same page and demand-zeroed pages after.
        let mut d = [0u8; 0x30];
        vm.copy_from_user(&mut pt, 0x40_2000, &mut d).unwrap();
        assert_eq!(&d[..0x20], &[0x11; 0x20]);
        assert_eq!(&d[0x20..], &[0; 0x10]);
        assert!(!pt.pages.contains_key(&0x40_4000), "bss is demand-paged");
        assert_eq!(vm.handle_fault(&mut pt, 0x40_47ff, Access::Write), Ok(()));
        // The heap starts where the program ends.
        assert_eq!(vm.brk(&mut pt, 0), 0x40_5000);
        assert_eq!(vm.brk(&mut pt, 0x40_6000), 0x40_6000);

        // The stack: argc, argv, envp, auxv.
        let sp = l.stack_pointer;
        assert_eq!(word(&mut vm, &mut pt, sp), 2);
        let arg0 = word(&mut vm, &mut pt, sp + 8);
        assert_eq!(vm.read_cstr(&mut pt, arg0, 100).unwrap(), b"/app");
        let env0 = word(&mut vm, &mut pt, sp + 32);
        assert_eq!(vm.read_cstr(&mut pt, env0, 100).unwrap(), b"A=1");
        assert_eq!(auxv(&mut vm, &mut pt, sp, AT_PHDR), 0x40_0040);
        assert_eq!(auxv(&mut vm, &mut pt, sp, AT_ENTRY), 0x40_1000);
        assert_eq!(auxv(&mut vm, &mut pt, sp, crate::stack::AT_HWCAP), 0xabc);
        let r = auxv(&mut vm, &mut pt, sp, AT_RANDOM);
        assert_eq!(r, l.random_addr);
        let mut rnd = [0u8; 16];
        vm.copy_from_user(&mut pt, r, &mut rnd).unwrap();
        assert_eq!(rnd, [7; 16]);
        // The program headers can be read at AT_PHDR.
        let mut ph = [0u8; 4];
        vm.copy_from_user(&mut pt, l.phdr, &mut ph).unwrap();
        assert_eq!(u32::from_le_bytes(ph), 1, "PT_LOAD");
        // Only the stack's top pages are backed.
        assert!(pt
            .pages
            .range(STACK_TOP - STACK_SIZE..STACK_TOP - 0x2000)
            .next()
            .is_none());
    }

    #[test]
    fn loads_static_pie_at_linux_bias() {
        let mut vm = AddressSpace::new(RESERVED);
        let mut pt = FakePages::default();
        let l = load_program(
            &mut vm,
            &mut pt,
            program(ET_DYN, 0).leak(),
            &argv(),
            &[],
            b"/app",
            [0; 16],
            0,
        )
        .unwrap();
        assert_eq!(l.load_bias, 0x5555_5555_4000);
        assert_eq!(l.entry, 0x5555_5555_5000);
        assert_eq!(l.phdr, 0x5555_5555_4040);
        assert_eq!(l.brk_start, 0x5555_5555_9000);
        let mut code = [0u8; 2];
        vm.copy_from_user(&mut pt, l.entry, &mut code).unwrap();
        assert_eq!(code, [0x0f, 0x05]);
        // No PT_GNU_STACK: executable stack, as Linux.
        assert!(vm.find(STACK_TOP - 1).unwrap().1.prot.exec);
    }

    #[test]
    fn segments_sharing_a_page_get_both_rights() {
        let mut b = elf(
            ET_EXEC,
            0x40_0100,
            &[
                Ph::load(PF_R | PF_X, 0, 0x40_0000, 0x180, 0x180),
                Ph::load(PF_R | PF_W, 0x180, 0x40_0180, 0x10, 0x1000),
            ],
            0x190,
        );
        b[0x180..0x190].copy_from_slice(&[0x22; 16]);
        let mut vm = AddressSpace::new(RESERVED);
        let mut pt = FakePages::default();
        load_program(
            &mut vm,
            &mut pt,
            b.clone().leak(),
            &argv(),
            &[],
            b"/app",
            [0; 16],
            0,
        )
        .unwrap();
        let regions: Vec<(u64, u64, Prot)> = vm.vmas().map(|(s, v)| (s, v.end, v.prot)).collect();
        let rwx = Prot {
            read: true,
            write: true,
            exec: true,
        };
        assert_eq!(regions[0], (0x40_0000, 0x40_1000, rwx));
        assert_eq!(regions[1], (0x40_1000, 0x40_2000, Prot::RW));
        let mut d = [0u8; 16];
        vm.copy_from_user(&mut pt, 0x40_0180, &mut d).unwrap();
        assert_eq!(d, [0x22; 16]);
    }

    #[test]
    fn load_errors_are_clean() {
        let mut vm = AddressSpace::new(RESERVED);
        let mut pt = FakePages::default();
        let e = load_program(&mut vm, &mut pt, b"nope", &argv(), &[], b"/app", [0; 16], 0);
        assert_eq!(e, Err(LoadError::Elf(ElfError::NotElf)));
        // Linked into the kernel's range.
        let e = load_program(
            &mut vm,
            &mut pt,
            program(ET_EXEC, 0x20_0000).leak(),
            &argv(),
            &[],
            b"/a",
            [0; 16],
            0,
        );
        assert!(matches!(
            e,
            Err(LoadError::Elf(ElfError::OverlapsReserved { .. }))
        ));
        // Out of frames.
        pt.budget = Some(2);
        let e = load_program(
            &mut vm,
            &mut pt,
            program(ET_EXEC, 0x40_0000).leak(),
            &argv(),
            &[],
            b"/a",
            [0; 16],
            0,
        );
        assert_eq!(e, Err(LoadError::OutOfMemory));
        assert!(LoadError::OutOfMemory.to_string().contains("memory"));
        // Too much environment.
        let mut pt = FakePages::default();
        let big: Vec<Vec<u8>> = (0..30).map(|_| alloc::vec![b'x'; 100_000]).collect();
        let e = load_program(
            &mut vm,
            &mut pt,
            program(ET_EXEC, 0x40_0000).leak(),
            &argv(),
            &big,
            b"/a",
            [0; 16],
            0,
        );
        assert!(matches!(
            e,
            Err(LoadError::Stack(StackError::TooBig { .. }))
        ));
        // Segments in the stack area.
        let b = elf(
            ET_EXEC,
            STACK_TOP - 0x1000,
            &[Ph::load(PF_R | PF_X, 0, STACK_TOP - 0x1000, 0x100, 0x100)],
            0x100,
        );
        let e = load_program(
            &mut vm,
            &mut pt,
            b.clone().leak(),
            &argv(),
            &[],
            b"/a",
            [0; 16],
            0,
        );
        assert_eq!(e, Err(LoadError::StackOverlap));
    }

    /// A dynamically linked PIE naming `/lib64/ld.so`, and that loader (ET_DYN, entry 0x1000).
    fn dynamic_pair() -> (Vec<u8>, Vec<u8>) {
        let mut interp = Ph::other(3, PF_R);
        interp.offset = 0x200;
        interp.filesz = 12;
        let mut prog = elf(
            ET_DYN,
            0x1000,
            &[
                Ph::load(PF_R, 0, 0, 0x300, 0x300),
                Ph::load(PF_R | PF_X, 0x1000, 0x1000, 0x10, 0x10),
                interp,
            ],
            0x1010,
        );
        prog[0x200..0x20c].copy_from_slice(b"/lib64/ld.so");
        let mut ld = elf(
            ET_DYN,
            0x1000,
            &[
                Ph::load(PF_R, 0, 0, 0x300, 0x300),
                Ph::load(PF_R | PF_X, 0x1000, 0x1000, 0x10, 0x10),
                Ph::load(PF_R | PF_W, 0x2000, 0x2000, 0x10, 0x3000),
            ],
            0x2010,
        );
        ld[0x1000..0x1004].copy_from_slice(b"LDSO");
        (prog, ld)
    }

    #[test]
    fn loads_the_dynamic_loader_beside_a_dynamic_program() {
        let (prog, ld) = dynamic_pair();
        let ld: &'static [u8] = ld.leak();
        let find = move |p: &str| (p == "/lib64/ld.so").then_some(ld);
        let mut vm = AddressSpace::new(RESERVED);
        let mut pt = FakePages::default();
        let l = load_dynamic(
            &mut vm,
            &mut pt,
            prog.clone().leak(),
            &argv(),
            &[],
            b"/app",
            [0; 16],
            0,
            &find,
            3,
        )
        .unwrap();
        // The loader sits below the mmap base, moved down 3 pages, and runs first.
        let base = MMAP_BASE - 3 * PAGE_SIZE - 0x5000;
        assert_eq!(l.interp_base, base);
        assert_eq!(l.entry, base + 0x1000);
        let mut code = [0u8; 4];
        vm.copy_from_user(&mut pt, l.entry, &mut code).unwrap();
        assert_eq!(&code, b"LDSO");
        // The program is where a PIE goes; the auxiliary vector points the loader at it.
        assert_eq!(l.load_bias, crate::elf::ET_DYN_BASE);
        let sp = l.stack_pointer;
        assert_eq!(auxv(&mut vm, &mut pt, sp, AT_ENTRY), l.load_bias + 0x1000);
        assert_eq!(auxv(&mut vm, &mut pt, sp, AT_PHDR), l.load_bias + 0x40);
        assert_eq!(auxv(&mut vm, &mut pt, sp, crate::stack::AT_BASE), base);
        // /proc/self/maps names the loader's regions by its path; its bss is writable.
        let maps = vm.maps_text("/app");
        assert!(
            maps.lines()
                .any(|l| l.contains("r-xp 00001000") && l.ends_with("/lib64/ld.so")),
            "{maps}"
        );
        assert_eq!(
            vm.handle_fault(&mut pt, base + 0x4000, Access::Write),
            Ok(())
        );
        // The heap follows the program, not the loader.
        assert_eq!(l.brk_start, l.load_bias + 0x2000);

        // Without the loader in the root filesystem: a clear error naming it.
        let e = load_dynamic(
            &mut vm,
            &mut pt,
            prog.clone().leak(),
            &argv(),
            &[],
            b"/app",
            [0; 16],
            0,
            &|_: &str| None,
            0,
        )
        .unwrap_err();
        assert_eq!(e, LoadError::NoInterpreter("/lib64/ld.so".into()));
        assert!(e.to_string().contains("/lib64/ld.so"));
        // A loader that is itself a fixed-address program is refused.
        let bad: &'static [u8] = program(ET_EXEC, 0x40_0000).leak();
        let e = load_dynamic(
            &mut vm,
            &mut pt,
            prog.leak(),
            &argv(),
            &[],
            b"/app",
            [0; 16],
            0,
            &move |_: &str| Some(bad),
            0,
        )
        .unwrap_err();
        assert!(matches!(e, LoadError::BadInterpreter(..)), "{e}");
    }

    #[test]
    fn reloading_replaces_everything() {
        let mut vm = AddressSpace::new(RESERVED);
        let mut pt = FakePages::default();
        let p = program(ET_EXEC, 0x40_0000);
        load_program(
            &mut vm,
            &mut pt,
            p.clone().leak(),
            &argv(),
            &[],
            b"/app",
            [0; 16],
            0,
        )
        .unwrap();
        vm.mmap(
            &mut pt,
            0,
            0x1000,
            Prot::RW,
            crate::vm::MAP_PRIVATE | crate::vm::MAP_ANONYMOUS,
        )
        .unwrap();
        load_program(
            &mut vm,
            &mut pt,
            p.clone().leak(),
            &argv(),
            &[],
            b"/app",
            [0; 16],
            0,
        )
        .unwrap();
        // Three segments, the clock page, the vDSO and the stack.
        assert_eq!(vm.vmas().count(), 6);
    }
}
