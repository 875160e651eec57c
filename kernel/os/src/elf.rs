//! Reading and checking the program's ELF file (our own parser: no ELF crate in the kernel).
//!
//! Kiln runs x86_64 Linux programs: `ET_EXEC` (non-PIE, linked at a fixed address such as
//! 0x400000) and `ET_DYN` (static-pie, which applies its own relocations, or a PIE whose
//! dynamic loader does), either with a dynamic loader named by `PT_INTERP`, which the loader
//! module loads beside the program, or without. The dynamic loader itself is an `ET_DYN` file
//! read by the same [`parse`]. [`parse`] checks everything the loader relies on and returns a
//! [`Program`], the plan the loader follows.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use crate::machine::{Prot, PAGE_SIZE};
use crate::vm::{USER_END, USER_START};

/// Segment flag: executable.
pub const PF_X: u32 = 1;
/// Segment flag: writable.
pub const PF_W: u32 = 2;
/// Segment flag: readable.
pub const PF_R: u32 = 4;

/// `EM_X86_64`.
pub const EM_X86_64: u16 = 62;
/// `ET_EXEC`: a program linked at fixed addresses.
pub const ET_EXEC: u16 = 2;
/// `ET_DYN`: position-independent (static-pie when it has no interpreter).
pub const ET_DYN: u16 = 3;

const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_PHDR: u32 = 6;
const PT_TLS: u32 = 7;
const PT_GNU_STACK: u32 = 0x6474_e551;

const EHDR_SIZE: usize = 64;
/// Size of one ELF64 program header.
pub const PHDR_SIZE: u16 = 56;

/// Where Linux puts a position-independent program when address randomisation is off
/// (`ELF_ET_DYN_BASE`, two thirds of the user address space, page-aligned).
pub const ET_DYN_BASE: u64 = 0x5555_5555_4000;

/// How the program is linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `ET_EXEC`: loaded at the addresses it was linked at.
    Exec,
    /// `ET_DYN`: loaded anywhere, at a bias (a static-pie program, a PIE with a dynamic
    /// loader, or the dynamic loader itself).
    StaticPie,
}

/// One `PT_LOAD` segment, at its link-time address (add the load bias).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// `p_vaddr`.
    pub vaddr: u64,
    /// `p_memsz`: bytes in memory (the part past `filesz` is zero, the bss).
    pub memsz: u64,
    /// `p_offset`: where its bytes start in the file.
    pub offset: u64,
    /// `p_filesz`: how many bytes come from the file.
    pub filesz: u64,
    /// Access rights from `p_flags`.
    pub prot: Prot,
    /// `p_align`.
    pub align: u64,
}

impl Segment {
    /// The file bytes of the segment, as a range of the ELF file.
    pub fn file_range(&self) -> Range<usize> {
        self.offset as usize..(self.offset + self.filesz) as usize
    }
    /// One past the last byte in memory (link-time address).
    pub fn end(&self) -> u64 {
        self.vaddr + self.memsz
    }
}

/// The `PT_TLS` segment: the initial image of thread-local storage (the C library sets it up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tls {
    /// `p_vaddr` (link-time).
    pub vaddr: u64,
    /// Bytes of initialised TLS data.
    pub filesz: u64,
    /// Total TLS block size (the rest is zero).
    pub memsz: u64,
    /// Required alignment.
    pub align: u64,
}

/// A checked program: what to load and where to start it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// `ET_EXEC` or static-pie.
    pub kind: Kind,
    /// Entry point (link-time address).
    pub entry: u64,
    /// The non-empty `PT_LOAD` segments, in ascending address order.
    pub segments: Vec<Segment>,
    /// `e_phoff`: file offset of the program-header table.
    pub phoff: u64,
    /// `e_phnum`: number of program headers (`AT_PHNUM`).
    pub phnum: u16,
    /// `e_phentsize`: size of one program header (`AT_PHENT`).
    pub phentsize: u16,
    /// Link-time address at which the program headers are in memory (`AT_PHDR` minus bias).
    pub phdr_vaddr: u64,
    /// Thread-local storage template, if any.
    pub tls: Option<Tls>,
    /// `p_flags` of `PT_GNU_STACK`, or `None` without one.
    pub gnu_stack_flags: Option<u32>,
    /// Largest `p_align` among the loaded segments (at least a page).
    pub max_align: u64,
    /// The dynamic loader named by `PT_INTERP` (an absolute path), `None` for a static
    /// program.
    pub interpreter: Option<String>,
}

/// Why an ELF file cannot run on Kiln.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElfError {
    /// No `\x7fELF` magic.
    NotElf,
    /// `ELFCLASS32`.
    Not64Bit,
    /// `ELFDATA2MSB`.
    BigEndian,
    /// `e_machine` is not x86_64.
    WrongMachine(u16),
    /// `e_type` is neither `ET_EXEC` nor `ET_DYN` (an object file, a core dump...).
    NotExecutable(u16),
    /// A header lies (partly) beyond the end of the file.
    Truncated(&'static str),
    /// A header field is malformed.
    BadHeader(&'static str),
    /// Program header `index` refers to bytes beyond the end of the file.
    SegmentOutOfFile {
        /// Index in the program-header table.
        index: usize,
    },
    /// Program header `index` has `p_filesz > p_memsz`.
    FileSizeExceedsMemSize {
        /// Index in the program-header table.
        index: usize,
    },
    /// Program header `index` has a bad `p_align`, or `p_vaddr` and `p_offset` disagree modulo it.
    BadAlignment {
        /// Index in the program-header table.
        index: usize,
        /// Its `p_align`.
        align: u64,
    },
    /// Loadable segment `index` starts before the end of the previous one.
    OverlappingSegments {
        /// Index in the program-header table.
        index: usize,
    },
    /// No non-empty `PT_LOAD` segment.
    NoLoadSegment,
    /// A segment would lie outside the user address range.
    OutsideUserSpace {
        /// First byte (load address).
        start: u64,
        /// One past the last byte.
        end: u64,
    },
    /// A segment would overlap the kernel's own memory.
    OverlapsReserved {
        /// First page of the segment (load address).
        start: u64,
        /// End of its last page.
        end: u64,
        /// The kernel's range.
        reserved: Range<u64>,
    },
    /// The entry point is not inside any loadable segment.
    EntryOutsideSegments(u64),
    /// The program headers are not inside any loadable segment (no `AT_PHDR`).
    PhdrsNotLoaded,
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const TARGET: &str =
            "build for x86_64-unknown-linux-gnu or x86_64-unknown-linux-musl (or `gcc -static` on x86_64)";
        match self {
            ElfError::NotElf => write!(
                f,
                "not an ELF file (no \\x7fELF magic): give Kiln a Linux x86_64 program, not a script or archive"
            ),
            ElfError::Not64Bit => write!(
                f,
                "32-bit ELF: Kiln runs 64-bit x86_64 programs; {TARGET}"
            ),
            ElfError::BigEndian => write!(
                f,
                "big-endian ELF: Kiln runs little-endian x86_64 programs; {TARGET}"
            ),
            ElfError::WrongMachine(m) => write!(
                f,
                "ELF for machine {m} ({}), not x86_64: {TARGET}",
                machine_name(*m)
            ),
            ElfError::NotExecutable(t) => write!(
                f,
                "ELF type {t} ({}) is not a program: link an executable (static ET_EXEC or static-pie)",
                type_name(*t)
            ),
            ElfError::Truncated(what) => write!(
                f,
                "truncated ELF: the {what} lies beyond the end of the file; the file is cut short, rebuild or re-copy it"
            ),
            ElfError::BadHeader(what) => write!(
                f,
                "malformed ELF header ({what}): the file is corrupt or not produced by a standard linker"
            ),
            ElfError::SegmentOutOfFile { index } => write!(
                f,
                "program header {index} refers to bytes beyond the end of the file: the file is truncated or corrupt; rebuild it"
            ),
            ElfError::FileSizeExceedsMemSize { index } => write!(
                f,
                "program header {index} has more file bytes than memory bytes (p_filesz > p_memsz): corrupt ELF, rebuild it"
            ),
            ElfError::BadAlignment { index, align } => write!(
                f,
                "program header {index} is misaligned (p_align {align:#x}: it must be a power of two and \
                 p_vaddr and p_offset must agree modulo it): corrupt ELF or a linker-script error"
            ),
            ElfError::OverlappingSegments { index } => write!(
                f,
                "loadable segment {index} overlaps or precedes the previous one (PT_LOAD must be sorted \
                 and disjoint): check the linker script"
            ),
            ElfError::NoLoadSegment => write!(
                f,
                "no loadable segment (PT_LOAD): there is nothing to run; is this a program?"
            ),
            ElfError::OutsideUserSpace { start, end } => write!(
                f,
                "segment {start:#x}..{end:#x} lies outside the user address range {USER_START:#x}..{USER_END:#x}: \
                 link at a usual address (0x400000) or build static-pie (-C target-feature=+crt-static)"
            ),
            ElfError::OverlapsReserved {
                start,
                end,
                reserved,
            } => write!(
                f,
                "segment {start:#x}..{end:#x} overlaps the Kiln kernel at {:#x}..{:#x}: link the program \
                 above {:#x} (-C link-arg=-Wl,-Ttext-segment=<address>) or build it static-pie \
                 (-C target-feature=+crt-static, without -C relocation-model=static)",
                reserved.start, reserved.end, reserved.end
            ),
            ElfError::EntryOutsideSegments(e) => write!(
                f,
                "entry point {e:#x} is not inside any loadable segment: corrupt ELF or a linker-script error"
            ),
            ElfError::PhdrsNotLoaded => write!(
                f,
                "the program headers are not inside a loadable segment, so the C library cannot find \
                 them (AT_PHDR) to set up TLS: link without a linker script that drops PHDRS/FILEHDR"
            ),
        }
    }
}

fn machine_name(m: u16) -> &'static str {
    match m {
        3 => "i386",
        8 => "MIPS",
        20 => "PowerPC",
        21 => "PowerPC64",
        22 => "s390",
        40 => "ARM",
        183 => "AArch64",
        243 => "RISC-V",
        258 => "LoongArch",
        _ => "unknown",
    }
}

fn type_name(t: u16) -> &'static str {
    match t {
        0 => "no type",
        1 => "relocatable object file",
        4 => "core dump",
        _ => "unknown type",
    }
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// Converts ELF `p_flags` to access rights.
pub fn prot_of_flags(flags: u32) -> Prot {
    Prot {
        read: flags & PF_R != 0,
        write: flags & PF_W != 0,
        exec: flags & PF_X != 0,
    }
}

struct Phdr {
    kind: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
    memsz: u64,
    align: u64,
}

/// Checks an ELF file and returns its loading plan.
pub fn parse(bytes: &[u8]) -> Result<Program, ElfError> {
    if bytes.len() < 4 || bytes[..4] != *b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    if bytes.len() < 16 {
        return Err(ElfError::Truncated("ELF header"));
    }
    match bytes[4] {
        1 => return Err(ElfError::Not64Bit),
        2 => {}
        _ => return Err(ElfError::BadHeader("unknown ELF class")),
    }
    match bytes[5] {
        1 => {}
        2 => return Err(ElfError::BigEndian),
        _ => return Err(ElfError::BadHeader("unknown data encoding")),
    }
    if bytes.len() < EHDR_SIZE {
        return Err(ElfError::Truncated("ELF header"));
    }
    if bytes[6] != 1 || u32_at(bytes, 20) != 1 {
        return Err(ElfError::BadHeader("ELF version is not 1"));
    }
    let machine = u16_at(bytes, 18);
    if machine != EM_X86_64 {
        return Err(ElfError::WrongMachine(machine));
    }
    let kind = match u16_at(bytes, 16) {
        ET_EXEC => Kind::Exec,
        ET_DYN => Kind::StaticPie,
        t => return Err(ElfError::NotExecutable(t)),
    };
    let entry = u64_at(bytes, 24);
    let phoff = u64_at(bytes, 32);
    let phentsize = u16_at(bytes, 54);
    let phnum = u16_at(bytes, 56);
    if phnum == 0 {
        return Err(ElfError::NoLoadSegment);
    }
    if phnum == 0xffff {
        return Err(ElfError::BadHeader("too many program headers (PN_XNUM)"));
    }
    if phentsize != PHDR_SIZE {
        return Err(ElfError::BadHeader("e_phentsize is not 56"));
    }
    let table_len = u64::from(phnum) * u64::from(PHDR_SIZE);
    match phoff.checked_add(table_len) {
        Some(end) if end <= bytes.len() as u64 => {}
        _ => return Err(ElfError::Truncated("program-header table")),
    }
    let phdrs: Vec<Phdr> = (0..usize::from(phnum))
        .map(|i| {
            let o = phoff as usize + i * usize::from(PHDR_SIZE);
            Phdr {
                kind: u32_at(bytes, o),
                flags: u32_at(bytes, o + 4),
                offset: u64_at(bytes, o + 8),
                vaddr: u64_at(bytes, o + 16),
                filesz: u64_at(bytes, o + 32),
                memsz: u64_at(bytes, o + 40),
                align: u64_at(bytes, o + 48),
            }
        })
        .collect();

    let in_file = |ph: &Phdr| {
        ph.offset
            .checked_add(ph.filesz)
            .is_some_and(|e| e <= bytes.len() as u64)
    };

    let mut interpreter = None;
    if let Some((i, ph)) = phdrs.iter().enumerate().find(|(_, p)| p.kind == PT_INTERP) {
        if !in_file(ph) {
            return Err(ElfError::SegmentOutOfFile { index: i });
        }
        let raw = &bytes[ph.offset as usize..(ph.offset + ph.filesz) as usize];
        let raw = raw.split(|&b| b == 0).next().unwrap_or(&[]);
        match core::str::from_utf8(raw) {
            Ok(path) if path.starts_with('/') => interpreter = Some(String::from(path)),
            _ => return Err(ElfError::BadHeader("PT_INTERP names no absolute path")),
        }
    }

    let mut segments: Vec<Segment> = Vec::new();
    let mut tls = None;
    let mut gnu_stack_flags = None;
    let mut pt_phdr = None;
    let mut max_align = PAGE_SIZE;
    for (index, ph) in phdrs.iter().enumerate() {
        match ph.kind {
            PT_LOAD => {
                if !in_file(ph) {
                    return Err(ElfError::SegmentOutOfFile { index });
                }
                if ph.filesz > ph.memsz {
                    return Err(ElfError::FileSizeExceedsMemSize { index });
                }
                let align_ok = ph.align <= 1
                    || (ph.align.is_power_of_two() && ph.vaddr % ph.align == ph.offset % ph.align);
                if !align_ok {
                    return Err(ElfError::BadAlignment {
                        index,
                        align: ph.align,
                    });
                }
                if ph.memsz == 0 {
                    continue;
                }
                if ph.vaddr.checked_add(ph.memsz).is_none_or(|e| e > USER_END) {
                    return Err(ElfError::OutsideUserSpace {
                        start: ph.vaddr,
                        end: ph.vaddr.saturating_add(ph.memsz),
                    });
                }
                if let Some(prev) = segments.last() {
                    if ph.vaddr < prev.end() {
                        return Err(ElfError::OverlappingSegments { index });
                    }
                }
                max_align = max_align.max(ph.align);
                segments.push(Segment {
                    vaddr: ph.vaddr,
                    memsz: ph.memsz,
                    offset: ph.offset,
                    filesz: ph.filesz,
                    prot: prot_of_flags(ph.flags),
                    align: ph.align,
                });
            }
            PT_TLS => {
                if !in_file(ph) {
                    return Err(ElfError::SegmentOutOfFile { index });
                }
                if ph.filesz > ph.memsz {
                    return Err(ElfError::FileSizeExceedsMemSize { index });
                }
                if ph.align > 1 && !ph.align.is_power_of_two() {
                    return Err(ElfError::BadAlignment {
                        index,
                        align: ph.align,
                    });
                }
                tls = Some(Tls {
                    vaddr: ph.vaddr,
                    filesz: ph.filesz,
                    memsz: ph.memsz,
                    align: ph.align,
                });
            }
            PT_GNU_STACK => gnu_stack_flags = Some(ph.flags),
            PT_PHDR => pt_phdr = Some(ph.vaddr),
            _ => {}
        }
    }
    if segments.is_empty() {
        return Err(ElfError::NoLoadSegment);
    }
    if !segments.iter().any(|s| s.vaddr <= entry && entry < s.end()) {
        return Err(ElfError::EntryOutsideSegments(entry));
    }
    // Where the program headers are in memory: inside the segment whose file bytes hold them
    // (as Linux computes AT_PHDR), or at PT_PHDR if that lies inside a segment.
    let from_load = segments.iter().find_map(|s| {
        (s.offset <= phoff && phoff + table_len <= s.offset + s.filesz)
            .then(|| s.vaddr + (phoff - s.offset))
    });
    let from_pt_phdr = pt_phdr.filter(|&v| {
        segments
            .iter()
            .any(|s| s.vaddr <= v && v.saturating_add(table_len) <= s.end())
    });
    let phdr_vaddr = from_load.or(from_pt_phdr).ok_or(ElfError::PhdrsNotLoaded)?;
    Ok(Program {
        kind,
        entry,
        segments,
        phoff,
        phnum,
        phentsize,
        phdr_vaddr,
        tls,
        gnu_stack_flags,
        max_align,
        interpreter,
    })
}

impl Program {
    /// The load bias (0 for `ET_EXEC`; for static-pie, [`ET_DYN_BASE`] aligned to the largest
    /// segment alignment, as Linux without address randomisation), after checking that every
    /// segment then lies in user space and clear of `reserved` (the kernel's own memory).
    pub fn load_bias(&self, reserved: &Range<u64>) -> Result<u64, ElfError> {
        let bias = match self.kind {
            Kind::Exec => 0,
            Kind::StaticPie => {
                let base = ET_DYN_BASE & !(self.max_align - 1);
                let first = self.segments[0].vaddr & !(PAGE_SIZE - 1);
                base.checked_sub(first).ok_or(ElfError::OutsideUserSpace {
                    start: self.segments[0].vaddr,
                    end: self.segments[0].end(),
                })?
            }
        };
        for s in &self.segments {
            let start = (s.vaddr + bias) & !(PAGE_SIZE - 1);
            let end = (s.end() + bias)
                .checked_next_multiple_of(PAGE_SIZE)
                .unwrap_or(u64::MAX);
            if start < USER_START || end > USER_END {
                return Err(ElfError::OutsideUserSpace { start, end });
            }
            if start < reserved.end && reserved.start < end {
                return Err(ElfError::OverlapsReserved {
                    start,
                    end,
                    reserved: reserved.clone(),
                });
            }
        }
        Ok(bias)
    }

    /// Whether the stack should be executable: `PT_GNU_STACK` with `PF_X`, or no
    /// `PT_GNU_STACK` at all (Linux's default on x86_64).
    pub fn exec_stack(&self) -> bool {
        self.gnu_stack_flags.is_none_or(|f| f & PF_X != 0)
    }
}

/// Hand-made ELF files for tests (also used by the loader's tests).
#[cfg(test)]
pub(crate) mod build {
    use alloc::vec::Vec;

    /// A program header to write.
    #[derive(Clone, Copy)]
    pub struct Ph {
        pub kind: u32,
        pub flags: u32,
        pub offset: u64,
        pub vaddr: u64,
        pub filesz: u64,
        pub memsz: u64,
        pub align: u64,
    }

    impl Ph {
        pub fn load(flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Ph {
            Ph {
                kind: super::PT_LOAD,
                flags,
                offset,
                vaddr,
                filesz,
                memsz,
                align: 0x1000,
            }
        }
        pub fn other(kind: u32, flags: u32) -> Ph {
            Ph {
                kind,
                flags,
                offset: 0,
                vaddr: 0,
                filesz: 0,
                memsz: 0,
                align: 0,
            }
        }
    }

    /// An ELF of `len` bytes (filled with `0xAB` past the headers) with these program headers
    /// right after the ELF header.
    pub fn elf(e_type: u16, entry: u64, phs: &[Ph], len: usize) -> Vec<u8> {
        let mut b = alloc::vec![0xABu8; len.max(64 + 56 * phs.len())];
        b[..64].fill(0);
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[6] = 1;
        b[16..18].copy_from_slice(&e_type.to_le_bytes());
        b[18..20].copy_from_slice(&super::EM_X86_64.to_le_bytes());
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        b[24..32].copy_from_slice(&entry.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[52..54].copy_from_slice(&64u16.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&(phs.len() as u16).to_le_bytes());
        for (i, p) in phs.iter().enumerate() {
            let o = 64 + 56 * i;
            b[o..o + 4].copy_from_slice(&p.kind.to_le_bytes());
            b[o + 4..o + 8].copy_from_slice(&p.flags.to_le_bytes());
            b[o + 8..o + 16].copy_from_slice(&p.offset.to_le_bytes());
            b[o + 16..o + 24].copy_from_slice(&p.vaddr.to_le_bytes());
            b[o + 24..o + 32].copy_from_slice(&p.vaddr.to_le_bytes());
            b[o + 32..o + 40].copy_from_slice(&p.filesz.to_le_bytes());
            b[o + 40..o + 48].copy_from_slice(&p.memsz.to_le_bytes());
            b[o + 48..o + 56].copy_from_slice(&p.align.to_le_bytes());
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::build::{elf, Ph};
    use super::*;
    use alloc::string::ToString;

    const R: u32 = PF_R;
    const RX: u32 = PF_R | PF_X;
    const RW: u32 = PF_R | PF_W;

    fn good_exec() -> Vec<u8> {
        elf(
            ET_EXEC,
            0x401000,
            &[
                Ph::load(R, 0, 0x400000, 0x200, 0x200),
                Ph::load(RX, 0x1000, 0x401000, 0x100, 0x100),
                Ph::load(RW, 0x2000, 0x402000, 0x80, 0x3000),
                Ph::other(PT_GNU_STACK, RW),
            ],
            0x2080,
        )
    }

    #[test]
    fn parses_a_static_exec() {
        let p = parse(&good_exec()).unwrap();
        assert_eq!(p.kind, Kind::Exec);
        assert_eq!(p.entry, 0x401000);
        assert_eq!(p.segments.len(), 3);
        assert_eq!(
            p.segments[1].prot,
            Prot {
                read: true,
                write: false,
                exec: true
            }
        );
        assert_eq!(p.segments[2].memsz, 0x3000);
        assert_eq!(p.segments[2].file_range(), 0x2000..0x2080);
        assert_eq!(p.phdr_vaddr, 0x400040);
        assert_eq!((p.phnum, p.phentsize, p.phoff), (4, 56, 64));
        assert_eq!(p.gnu_stack_flags, Some(RW));
        assert!(!p.exec_stack());
        assert_eq!(p.load_bias(&(0x100000..0x300000)), Ok(0));
    }

    #[test]
    fn static_pie_gets_linux_bias_and_tls() {
        let mut tls = Ph::other(PT_TLS, R);
        tls.offset = 0x2000;
        tls.vaddr = 0x2000;
        tls.filesz = 0x10;
        tls.memsz = 0x40;
        tls.align = 8;
        let b = elf(
            ET_DYN,
            0x1000,
            &[
                Ph::load(R, 0, 0, 0x200, 0x200),
                Ph::load(RX, 0x1000, 0x1000, 0x100, 0x100),
                Ph::load(RW, 0x2000, 0x2000, 0x80, 0x100),
                tls,
            ],
            0x2080,
        );
        let p = parse(&b).unwrap();
        assert_eq!(p.kind, Kind::StaticPie);
        assert_eq!(
            p.tls,
            Some(Tls {
                vaddr: 0x2000,
                filesz: 0x10,
                memsz: 0x40,
                align: 8
            })
        );
        assert!(p.exec_stack(), "no PT_GNU_STACK means an executable stack");
        assert_eq!(p.load_bias(&(0x100000..0x300000)), Ok(0x5555_5555_4000));
    }

    #[test]
    fn static_pie_bias_honours_large_alignment() {
        let mut l = Ph::load(RX, 0, 0, 0x200, 0x200);
        l.align = 0x20_0000;
        let p = parse(&elf(ET_DYN, 0x100, &[l], 0x200)).unwrap();
        assert_eq!(p.load_bias(&(0..0)), Ok(0x5555_5540_0000));
    }

    #[test]
    fn rejects_non_elf_and_wrong_kinds() {
        assert_eq!(parse(b"#!/bin/sh\n"), Err(ElfError::NotElf));
        assert_eq!(parse(b""), Err(ElfError::NotElf));
        assert_eq!(
            parse(b"\x7fELF\x02\x01"),
            Err(ElfError::Truncated("ELF header"))
        );
        let mut b = good_exec();
        b[4] = 1;
        assert_eq!(parse(&b), Err(ElfError::Not64Bit));
        let mut b = good_exec();
        b[5] = 2;
        assert_eq!(parse(&b), Err(ElfError::BigEndian));
        let mut b = good_exec();
        b[18..20].copy_from_slice(&183u16.to_le_bytes());
        assert_eq!(parse(&b), Err(ElfError::WrongMachine(183)));
        assert!(ElfError::WrongMachine(183).to_string().contains("AArch64"));
        let mut b = good_exec();
        b[16..18].copy_from_slice(&1u16.to_le_bytes());
        assert_eq!(parse(&b), Err(ElfError::NotExecutable(1)));
        assert!(ElfError::NotExecutable(1)
            .to_string()
            .contains("relocatable"));
        let mut b = good_exec();
        b[54] = 32;
        assert!(matches!(parse(&b), Err(ElfError::BadHeader(_))));
        assert_eq!(
            parse(&good_exec()[..63]),
            Err(ElfError::Truncated("ELF header"))
        );
    }

    #[test]
    fn reads_the_interpreter_of_dynamic_programs() {
        let mut interp = Ph::other(PT_INTERP, R);
        interp.offset = 0x100;
        interp.filesz = 28;
        let mut b = elf(
            ET_DYN,
            0x100,
            &[Ph::load(RX, 0, 0, 0x200, 0x200), interp],
            0x200,
        );
        b[0x100..0x11c].copy_from_slice(b"/lib64/ld-linux-x86-64.so.2\0");
        let p = parse(&b).unwrap();
        assert_eq!(
            p.interpreter.as_deref(),
            Some("/lib64/ld-linux-x86-64.so.2")
        );
        assert_eq!(p.kind, Kind::StaticPie);
        b[0x100] = b'x';
        assert!(matches!(parse(&b), Err(ElfError::BadHeader(_))));
    }

    #[test]
    fn rejects_truncated_and_inconsistent_segments() {
        // Program-header table past the end.
        let b = good_exec();
        let mut short = b.clone();
        short[56..58].copy_from_slice(&200u16.to_le_bytes());
        assert_eq!(
            parse(&short),
            Err(ElfError::Truncated("program-header table"))
        );
        // Segment bytes past the end of the file.
        let b = elf(
            ET_EXEC,
            0x400100,
            &[Ph::load(RX, 0, 0x400000, 0x5000, 0x5000)],
            0x1000,
        );
        assert_eq!(parse(&b), Err(ElfError::SegmentOutOfFile { index: 0 }));
        let b = elf(
            ET_EXEC,
            0x400100,
            &[Ph::load(RX, u64::MAX - 2, 0x400000, 0x10, 0x10)],
            0x1000,
        );
        assert_eq!(parse(&b), Err(ElfError::SegmentOutOfFile { index: 0 }));
        // filesz > memsz.
        let b = elf(
            ET_EXEC,
            0x400100,
            &[Ph::load(RX, 0, 0x400000, 0x200, 0x100)],
            0x1000,
        );
        assert_eq!(
            parse(&b),
            Err(ElfError::FileSizeExceedsMemSize { index: 0 })
        );
        // vaddr and offset disagree modulo p_align.
        let b = elf(
            ET_EXEC,
            0x400100,
            &[Ph::load(RX, 0x10, 0x400000, 0x200, 0x200)],
            0x1000,
        );
        assert_eq!(
            parse(&b),
            Err(ElfError::BadAlignment {
                index: 0,
                align: 0x1000
            })
        );
        let mut l = Ph::load(RX, 0, 0x400000, 0x200, 0x200);
        l.align = 0x1800;
        let b = elf(ET_EXEC, 0x400100, &[l], 0x1000);
        assert_eq!(
            parse(&b),
            Err(ElfError::BadAlignment {
                index: 0,
                align: 0x1800
            })
        );
        // Overlapping segments.
        let b = elf(
            ET_EXEC,
            0x400100,
            &[
                Ph::load(RX, 0, 0x400000, 0x200, 0x2000),
                Ph::load(RW, 0x1000, 0x401000, 0x10, 0x10),
            ],
            0x2000,
        );
        assert_eq!(parse(&b), Err(ElfError::OverlappingSegments { index: 1 }));
        // No PT_LOAD at all, or only empty ones.
        let b = elf(ET_EXEC, 0x400100, &[Ph::other(PT_GNU_STACK, RW)], 0x1000);
        assert_eq!(parse(&b), Err(ElfError::NoLoadSegment));
        let b = elf(
            ET_EXEC,
            0x400100,
            &[Ph::load(RX, 0, 0x400000, 0, 0)],
            0x1000,
        );
        assert_eq!(parse(&b), Err(ElfError::NoLoadSegment));
        // Entry outside the segments.
        let b = elf(
            ET_EXEC,
            0x900000,
            &[Ph::load(RX, 0, 0x400000, 0x200, 0x200)],
            0x1000,
        );
        assert_eq!(parse(&b), Err(ElfError::EntryOutsideSegments(0x900000)));
        // Segment beyond user space.
        let b = elf(
            ET_EXEC,
            0xffff_8000_0000_0100,
            &[Ph::load(RX, 0, 0xffff_8000_0000_0000, 0x200, 0x200)],
            0x1000,
        );
        assert!(matches!(parse(&b), Err(ElfError::OutsideUserSpace { .. })));
    }

    #[test]
    fn rejects_program_headers_outside_segments() {
        let b = elf(
            ET_EXEC,
            0x401000,
            &[Ph::load(RX, 0x1000, 0x401000, 0x100, 0x100)],
            0x1100,
        );
        assert_eq!(parse(&b), Err(ElfError::PhdrsNotLoaded));
        // PT_PHDR pointing into a segment rescues it.
        let mut ph = Ph::other(PT_PHDR, R);
        ph.vaddr = 0x401040;
        let b = elf(
            ET_EXEC,
            0x401000,
            &[Ph::load(RX, 0x1000, 0x401000, 0x100, 0x100), ph],
            0x1100,
        );
        assert_eq!(parse(&b).unwrap().phdr_vaddr, 0x401040);
    }

    #[test]
    fn placement_checks_reserved_and_low_memory() {
        let b = elf(
            ET_EXEC,
            0x200100,
            &[Ph::load(RX, 0, 0x200000, 0x200, 0x200)],
            0x1000,
        );
        let p = parse(&b).unwrap();
        let e = p.load_bias(&(0x100000..0x300000)).unwrap_err();
        assert_eq!(
            e,
            ElfError::OverlapsReserved {
                start: 0x200000,
                end: 0x201000,
                reserved: 0x100000..0x300000
            }
        );
        assert!(e.to_string().contains("static-pie"));
        let b = elf(ET_EXEC, 0x100, &[Ph::load(RX, 0, 0, 0x200, 0x200)], 0x1000);
        let p = parse(&b).unwrap();
        assert!(matches!(
            p.load_bias(&(0..0)),
            Err(ElfError::OutsideUserSpace { .. })
        ));
    }
}
