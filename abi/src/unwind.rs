//! Walking a program's call stack from its call-frame information (`.eh_frame`, found
//! through `PT_GNU_EH_FRAME` and searched with `.eh_frame_hdr`'s index), with the frame-pointer
//! chain where no CFI covers an address. One walker for both sides: the host unwinds crash
//! records with it, and the kernel unwinds the profiler's samples in place, so a sample is
//! a handful of return addresses rather than a copy of the stack.
//!
//! gimli (no_std, `read` only) does the CFI parsing and evaluation; memory comes from a
//! caller's closure, so the walker works on a live address space and on a stack copy alike.

use crate::bytes::{u16_at, u32_at, u64_at};
use alloc::vec::Vec;
use gimli::{
    BaseAddresses, CfaRule, EhFrame, EhFrameHdr, EndianSlice, LittleEndian, ParsedEhFrameHdr,
    Pointer, RegisterRule, UnwindContext, UnwindSection,
};

use crate::record::{Regs, RBP};

type Slice<'a> = EndianSlice<'a, LittleEndian>;

/// Most frames a walk returns.
pub const MAX_FRAMES: usize = 64;

const PT_LOAD: u32 = 1;
const PT_GNU_EH_FRAME: u32 = 0x6474_e550;

/// A program's call-frame information, at the addresses where the program runs.
pub struct Cfi<'a> {
    eh_frame: EhFrame<Slice<'a>>,
    /// `.eh_frame_hdr`'s sorted table, when the program has one.
    hdr: Option<ParsedEhFrameHdr<Slice<'a>>>,
    /// Without it (`gcc -static` links without `--eh-frame-hdr`): every FDE's start, end
    /// and offset, sorted, built once.
    index: Vec<(u64, u64, usize)>,
    bases: BaseAddresses,
    /// Where the program's code is: a return address elsewhere ends the walk.
    code: Vec<core::ops::Range<u64>>,
}

/// One program header (only what the walker needs).
struct Phdr {
    kind: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
    memsz: u64,
}

const PF_X: u32 = 1;

fn phdrs(elf: &[u8]) -> Option<Vec<Phdr>> {
    if elf.get(..4)? != b"\x7fELF" || *elf.get(4)? != 2 {
        return None;
    }
    let phoff = usize::try_from(u64_at(elf, 32)?).ok()?;
    let (entsize, num) = (usize::from(u16_at(elf, 54)?), usize::from(u16_at(elf, 56)?));
    if entsize < 56 {
        return None;
    }
    (0..num)
        .map(|i| {
            let o = phoff.checked_add(i.checked_mul(entsize)?)?;
            Some(Phdr {
                kind: u32_at(elf, o)?,
                flags: u32_at(elf, o + 4)?,
                offset: u64_at(elf, o + 8)?,
                vaddr: u64_at(elf, o + 16)?,
                filesz: u64_at(elf, o + 32)?,
                memsz: u64_at(elf, o + 40)?,
            })
        })
        .collect()
}

/// The link-time address of the section `name`, from the section headers.
fn section_addr(elf: &[u8], name: &[u8]) -> Option<u64> {
    let shoff = usize::try_from(u64_at(elf, 0x28)?).ok()?;
    let (entsize, num) = (
        usize::from(u16_at(elf, 0x3a)?),
        usize::from(u16_at(elf, 0x3c)?),
    );
    let strndx = usize::from(u16_at(elf, 0x3e)?);
    if entsize < 64 || num == 0 {
        return None;
    }
    let shdr = |i: usize| shoff.checked_add(i.checked_mul(entsize)?);
    let strtab = usize::try_from(u64_at(elf, shdr(strndx)? + 24)?).ok()?;
    (0..num).find_map(|i| {
        let o = shdr(i)?;
        let at = strtab.checked_add(usize::try_from(u32_at(elf, o)?).ok()?)?;
        let n = elf.get(at..at.checked_add(name.len() + 1)?)?;
        (n[..name.len()] == *name && n[name.len()] == 0)
            .then(|| u64_at(elf, o + 16))
            .flatten()
            .filter(|&addr| addr != 0)
    })
}

/// The bytes of `elf` that are in memory at link-time address `vaddr`, to the end of
/// their segment's file data.
fn loaded_bytes<'a>(elf: &'a [u8], phdrs: &[Phdr], vaddr: u64) -> Option<&'a [u8]> {
    let seg = phdrs
        .iter()
        .find(|p| p.kind == PT_LOAD && p.vaddr <= vaddr && vaddr - p.vaddr < p.filesz)?;
    let start = usize::try_from(seg.offset + (vaddr - seg.vaddr)).ok()?;
    let end = usize::try_from(seg.offset.checked_add(seg.filesz)?).ok()?;
    elf.get(start..end)
}

impl<'a> Cfi<'a> {
    /// The call-frame information of `elf` (the program's file) loaded at `bias`, found
    /// the way a running program finds its own: `PT_GNU_EH_FRAME` and the `.eh_frame` it
    /// points at. `None` for a program without one.
    pub fn from_elf(elf: &'a [u8], bias: u64) -> Option<Cfi<'a>> {
        let phdrs = phdrs(elf)?;
        let code = phdrs
            .iter()
            .filter(|p| p.kind == PT_LOAD && p.flags & PF_X != 0)
            .map(|p| p.vaddr.wrapping_add(bias)..p.vaddr.wrapping_add(bias + p.memsz))
            .collect();
        let mut bases = BaseAddresses::default();
        let mut hdr = None;
        let eh_link = match phdrs.iter().find(|p| p.kind == PT_GNU_EH_FRAME) {
            Some(ph) => {
                let start = usize::try_from(ph.offset).ok()?;
                let len = usize::try_from(ph.filesz).ok()?;
                let bytes = elf.get(start..start.checked_add(len)?)?;
                bases = bases.set_eh_frame_hdr(ph.vaddr.wrapping_add(bias));
                let parsed = EhFrameHdr::new(bytes, LittleEndian).parse(&bases, 8).ok()?;
                let Pointer::Direct(eh_addr) = parsed.eh_frame_ptr() else {
                    return None;
                };
                hdr = Some(parsed);
                eh_addr.wrapping_sub(bias)
            }
            None => section_addr(elf, b".eh_frame")?,
        };
        let eh_bytes = loaded_bytes(elf, &phdrs, eh_link)?;
        let mut cfi = Cfi {
            eh_frame: EhFrame::new(eh_bytes, LittleEndian),
            index: Vec::new(),
            bases: bases.set_eh_frame(eh_link.wrapping_add(bias)),
            code,
            hdr: None,
        };
        match hdr {
            Some(h) if h.table().is_some() => cfi.hdr = Some(h),
            _ => cfi.build_index(),
        }
        Some(cfi)
    }

    /// Indexes every FDE by the addresses it covers.
    fn build_index(&mut self) {
        let mut entries = self.eh_frame.entries(&self.bases);
        while let Ok(Some(entry)) = entries.next() {
            let gimli::CieOrFde::Fde(partial) = entry else {
                continue;
            };
            if let Ok(fde) = partial.parse(EhFrame::cie_from_offset) {
                let start = fde.initial_address();
                self.index
                    .push((start, start.wrapping_add(fde.len()), fde.offset()));
            }
        }
        self.index.sort_unstable();
    }

    /// The caller's registers, from the CFI row covering `pc` and the current registers.
    fn step(
        &self,
        ctx: &mut UnwindContext<usize>,
        pc: u64,
        regs: &Regs,
        read: &mut dyn FnMut(u64) -> Option<u64>,
    ) -> Option<Regs> {
        let get_cie = EhFrame::cie_from_offset;
        let row = match self.hdr.as_ref().and_then(|h| h.table()) {
            Some(table) => table
                .unwind_info_for_address(&self.eh_frame, &self.bases, ctx, pc, get_cie)
                .ok()?,
            None => {
                let i = self.index.partition_point(|e| e.0 <= pc).checked_sub(1)?;
                let (_, end, offset) = self.index[i];
                if pc >= end {
                    return None;
                }
                self.eh_frame
                    .fde_from_offset(&self.bases, gimli::EhFrameOffset(offset), get_cie)
                    .ok()?
                    .unwind_info_for_address(&self.eh_frame, &self.bases, ctx, pc)
                    .ok()?
            }
        };
        let cfa = match row.cfa() {
            CfaRule::RegisterAndOffset { register, offset } => {
                dwarf_reg(regs, *register)?.wrapping_add(*offset as u64)
            }
            CfaRule::Expression(_) => return None,
        };
        let mut next = *regs;
        next.rsp = cfa;
        // Caller-saved registers are unknown in the caller; keep the callee-saved ones.
        for r in 0..=16u16 {
            let reg = gimli::Register(r);
            let value = match row.register(reg) {
                RegisterRule::Undefined => {
                    if r == 16 {
                        // The outermost frame (`_start` marks its return address undefined).
                        return None;
                    }
                    continue;
                }
                RegisterRule::SameValue => continue,
                RegisterRule::Offset(o) => read(cfa.wrapping_add(o as u64))?,
                RegisterRule::ValOffset(o) => cfa.wrapping_add(o as u64),
                RegisterRule::Register(other) => dwarf_reg(regs, other)?,
                _ => continue,
            };
            set_dwarf_reg(&mut next, reg, value);
        }
        Some(next)
    }
}

impl Cfi<'_> {
    /// Whether `addr` is in the program's code.
    fn is_code(&self, addr: u64) -> bool {
        self.code.iter().any(|r| r.contains(&addr))
    }
}

/// Walks the stack from `regs`: the instruction pointer, then each return address, at most
/// `max` of them. `read` gives the 8 bytes at an address (`None` where unreadable). CFI
/// decides each step where `cfi` covers the address, the frame-pointer chain otherwise.
pub fn walk(
    cfi: Option<&Cfi<'_>>,
    regs: &Regs,
    max: usize,
    mut read: impl FnMut(u64) -> Option<u64>,
) -> Vec<u64> {
    let mut ctx = cfi.map(|_| UnwindContext::new());
    let mut regs = *regs;
    let mut pcs = Vec::new();
    pcs.push(regs.rip);
    while pcs.len() < max {
        // A return address points after the call: look up the call itself.
        let lookup = if pcs.len() == 1 {
            regs.rip
        } else {
            regs.rip.wrapping_sub(1)
        };
        let next = match (cfi, ctx.as_mut()) {
            (Some(c), Some(ctx)) => c.step(ctx, lookup, &regs, &mut read),
            _ => None,
        }
        .or_else(|| frame_pointer_step(&regs, &mut read));
        match next {
            Some(n) if n.rip != 0 && n.rsp > regs.rsp && cfi.is_none_or(|c| c.is_code(n.rip)) => {
                pcs.push(n.rip);
                regs = n;
            }
            _ => break,
        }
    }
    pcs
}

/// The frame-pointer chain: `[rbp]` is the caller's rbp, `[rbp+8]` the return address.
fn frame_pointer_step(regs: &Regs, read: &mut dyn FnMut(u64) -> Option<u64>) -> Option<Regs> {
    let rbp = regs.gpr[RBP];
    if rbp < regs.rsp {
        return None;
    }
    let mut next = *regs;
    next.rip = read(rbp.checked_add(8)?)?;
    next.gpr[RBP] = read(rbp)?;
    next.rsp = rbp + 16;
    Some(next)
}

/// DWARF register numbers on x86_64 (System V psABI) and where they live in [`Regs`].
fn dwarf_reg(regs: &Regs, r: gimli::Register) -> Option<u64> {
    let g = &regs.gpr;
    let v = match r.0 {
        0 => g[0], // rax
        1 => g[3], // rdx
        2 => g[2], // rcx
        3 => g[1], // rbx
        4 => g[4], // rsi
        5 => g[5], // rdi
        6 => g[6], // rbp
        7 => regs.rsp,
        8..=15 => g[7 + (r.0 as usize - 8)],
        16 => regs.rip,
        _ => return None,
    };
    Some(v)
}

fn set_dwarf_reg(regs: &mut Regs, r: gimli::Register, v: u64) {
    let g = &mut regs.gpr;
    match r.0 {
        0 => g[0] = v,
        1 => g[3] = v,
        2 => g[2] = v,
        3 => g[1] = v,
        4 => g[4] = v,
        5 => g[5] = v,
        6 => g[6] = v,
        7 => regs.rsp = v,
        8..=15 => g[7 + (r.0 as usize - 8)] = v,
        16 => regs.rip = v,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs(rip: u64, rsp: u64, rbp: u64) -> Regs {
        let mut gpr = [0; 15];
        gpr[RBP] = rbp;
        Regs {
            rip,
            rsp,
            rflags: 0,
            gpr,
        }
    }

    #[test]
    fn frame_pointers_unwind_without_cfi() {
        // Two frames: rbp 0x1000 -> [0x1000]=0x1100 (caller's rbp), [0x1008]=0x401234.
        let mem = |a: u64| match a {
            0x1000 => Some(0x1100),
            0x1008 => Some(0x40_1234),
            0x1100 => Some(0),
            0x1108 => Some(0),
            _ => None,
        };
        let pcs = walk(None, &regs(0x40_1000, 0xff0, 0x1000), MAX_FRAMES, mem);
        assert_eq!(pcs, [0x40_1000, 0x40_1234]);
    }

    #[test]
    fn a_walk_stops_at_max_and_at_unreadable_memory() {
        // A frame-pointer loop that never ends but climbs: cut at `max`.
        let mem = |a: u64| {
            Some(if a.is_multiple_of(16) {
                a + 16
            } else {
                0x40_0000 + a
            })
        };
        assert_eq!(walk(None, &regs(1, 0, 0x100), 5, mem).len(), 5);
        assert_eq!(walk(None, &regs(1, 0, 0x100), 5, |_| None), [1]);
    }

    #[test]
    fn no_program_headers_no_cfi() {
        assert!(Cfi::from_elf(b"not an elf", 0).is_none());
        assert!(Cfi::from_elf(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0], 0).is_none());
    }
}
