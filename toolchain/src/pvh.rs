//! Writing and checking PVH-bootable ELF images.
//!
//! An image is an ELF64 `ET_EXEC` with only program headers: `PT_LOAD` segments loaded at
//! their physical addresses and one `PT_NOTE` (align 4) holding the Xen PVH entry note
//! (name `Xen`, type 18, desc = 32-bit physical entry). QEMU, Firecracker and Cloud
//! Hypervisor boot such a file directly.

use crate::elf;
use goblin::elf::header;
use goblin::elf::program_header::{PF_R, PF_W, PF_X, PT_LOAD, PT_NOTE};
use object::write::elf::{FileHeader, ProgramHeader, Writer};

/// Note type of the PVH entry (`XEN_ELFNOTE_PHYS32_ENTRY`).
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// One loadable segment of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Physical load address.
    pub paddr: u64,
    /// Virtual address.
    pub vaddr: u64,
    /// `PF_R`/`PF_W`/`PF_X` flags.
    pub flags: u32,
    /// Alignment (`p_align`); the file offset is congruent to `vaddr` modulo it.
    pub align: u64,
    /// Bytes stored in the file (`p_filesz` is their length).
    pub data: Vec<u8>,
    /// Size in memory (`p_memsz`), at least `data.len()`.
    pub memsz: u64,
}

impl Segment {
    /// One past the last physical byte of the segment.
    pub fn paddr_end(&self) -> u64 {
        self.paddr.saturating_add(self.memsz)
    }
}

/// Everything that goes into an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvhImage {
    /// ELF entry point (`e_entry`); PVH loaders use the note instead.
    pub entry: u64,
    /// The descriptor of the PVH note (the 32-bit entry, stored as 4 or 8 bytes).
    pub pvh_desc: Vec<u8>,
    /// Loadable segments, in order.
    pub segments: Vec<Segment>,
}

/// Encodes one ELF note with name `Xen` and type [`XEN_ELFNOTE_PHYS32_ENTRY`].
pub fn xen_pvh_note(desc: &[u8]) -> Vec<u8> {
    let mut n = Vec::new();
    n.extend_from_slice(&4u32.to_le_bytes());
    n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    n.extend_from_slice(&XEN_ELFNOTE_PHYS32_ENTRY.to_le_bytes());
    n.extend_from_slice(b"Xen\0");
    n.extend_from_slice(desc);
    while n.len() % 4 != 0 {
        n.push(0);
    }
    n
}

/// Finds the PVH entry note in a run of notes and returns its descriptor.
pub fn find_pvh_desc(notes: &[u8]) -> Option<&[u8]> {
    let mut at = 0usize;
    let up4 = |x: usize| x.checked_add(3).map(|v| v & !3);
    while at.checked_add(12)? <= notes.len() {
        let word = |i: usize| u32::from_le_bytes(notes[at + i..at + i + 4].try_into().unwrap());
        let (namesz, descsz, ntype) = (word(0) as usize, word(4) as usize, word(8));
        let name_at = at + 12;
        let desc_at = name_at.checked_add(up4(namesz)?)?;
        let next = desc_at.checked_add(up4(descsz)?)?;
        if desc_at.checked_add(descsz)? > notes.len() {
            return None;
        }
        let name = &notes[name_at..name_at + namesz];
        if ntype == XEN_ELFNOTE_PHYS32_ENTRY && (name == b"Xen\0" || name == b"Xen") {
            return Some(&notes[desc_at..desc_at + descsz]);
        }
        at = next;
    }
    None
}

fn file_offset(current: u64, vaddr: u64, align: u64) -> u64 {
    let a = align.max(1);
    current + (vaddr % a + a - current % a) % a
}

impl PvhImage {
    /// Writes the image as ELF bytes. The same image always gives the same bytes.
    pub fn write(&self) -> Vec<u8> {
        let note = xen_pvh_note(&self.pvh_desc);
        let mut out = Vec::new();
        let mut w = Writer::new(object::Endianness::Little, true, &mut out);
        w.reserve_file_header();
        w.reserve_program_headers(self.segments.len() as u32 + 1);
        let note_off = w.reserve(note.len(), 4) as u64;
        let mut offsets = Vec::with_capacity(self.segments.len());
        for s in &self.segments {
            if s.data.is_empty() {
                offsets.push(w.reserved_len() as u64);
                continue;
            }
            let off = file_offset(w.reserved_len() as u64, s.vaddr, s.align);
            w.reserve_until(off as usize);
            w.reserve(s.data.len(), 1);
            offsets.push(off);
        }
        w.write_file_header(&FileHeader {
            os_abi: header::ELFOSABI_NONE,
            abi_version: 0,
            e_type: header::ET_EXEC,
            e_machine: header::EM_X86_64,
            e_entry: self.entry,
            e_flags: 0,
        })
        .expect("a Vec buffer never fails to grow");
        w.write_align_program_headers();
        for (s, &off) in self.segments.iter().zip(&offsets) {
            w.write_program_header(&ProgramHeader {
                p_type: PT_LOAD,
                p_flags: s.flags,
                p_offset: off,
                p_vaddr: s.vaddr,
                p_paddr: s.paddr,
                p_filesz: s.data.len() as u64,
                p_memsz: s.memsz.max(s.data.len() as u64),
                p_align: s.align,
            });
        }
        w.write_program_header(&ProgramHeader {
            p_type: PT_NOTE,
            p_flags: PF_R,
            p_offset: note_off,
            p_vaddr: 0,
            p_paddr: 0,
            p_filesz: note.len() as u64,
            p_memsz: 0,
            p_align: 4,
        });
        w.pad_until(note_off as usize);
        w.write(&note);
        for (s, &off) in self.segments.iter().zip(&offsets) {
            if s.data.is_empty() {
                continue;
            }
            w.pad_until(off as usize);
            w.write(&s.data);
        }
        out
    }
}

/// What [`verify`] found in a good image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// The 32-bit PVH entry from the note.
    pub pvh_entry: u64,
    /// `(paddr, memsz, flags)` of each `PT_LOAD`.
    pub loads: Vec<(u64, u64, u32)>,
}

/// Checks that `bytes` is a bootable PVH image: x86_64 ELF64 executable, a `PT_NOTE` with
/// align 4 holding the PVH note, `PT_LOAD` segments inside the file, below 4 GiB, not
/// overlapping, and the PVH entry inside an executable segment.
pub fn verify(bytes: &[u8]) -> Result<ImageInfo, String> {
    let (h, phdrs) = elf::headers(bytes).map_err(|e| e.to_string())?;
    if h.e_machine != header::EM_X86_64 || h.e_type != header::ET_EXEC {
        return Err("not an x86_64 ELF executable".into());
    }
    let mut pvh_entry = None;
    for p in phdrs.iter().filter(|p| p.p_type == PT_NOTE) {
        let end = p
            .p_offset
            .checked_add(p.p_filesz)
            .filter(|&e| e <= bytes.len() as u64);
        let Some(end) = end else {
            return Err("a PT_NOTE lies outside the file".into());
        };
        if let Some(desc) = find_pvh_desc(&bytes[p.p_offset as usize..end as usize]) {
            if p.p_align != 4 {
                return Err(format!(
                    "the PVH note's PT_NOTE has p_align {} (QEMU needs 4)",
                    p.p_align
                ));
            }
            let mut v = [0u8; 8];
            let n = desc.len().min(8);
            v[..n].copy_from_slice(&desc[..n]);
            pvh_entry = Some(u64::from_le_bytes(v));
        }
    }
    let pvh_entry = pvh_entry.ok_or("no PT_NOTE holds a Xen PVH entry note (type 18)")?;
    let mut loads: Vec<(u64, u64, u32)> = Vec::new();
    for p in phdrs.iter().filter(|p| p.p_type == PT_LOAD) {
        let end = p
            .p_paddr
            .checked_add(p.p_memsz)
            .ok_or("a PT_LOAD wraps around")?;
        if end > 1 << 32 {
            return Err(format!("PT_LOAD at {:#x} ends above 4 GiB", p.p_paddr));
        }
        if p.p_align > 1 && p.p_filesz > 0 && p.p_offset % p.p_align != p.p_vaddr % p.p_align {
            return Err(format!(
                "PT_LOAD at {:#x} has a misaligned file offset",
                p.p_paddr
            ));
        }
        if let Some(o) = loads.iter().find(|(a, m, _)| p.p_paddr < a + m && *a < end) {
            return Err(format!(
                "PT_LOAD at {:#x} overlaps the one at {:#x}",
                p.p_paddr, o.0
            ));
        }
        loads.push((p.p_paddr, p.p_memsz, p.p_flags));
    }
    if loads.is_empty() {
        return Err("no PT_LOAD segment".into());
    }
    if !loads
        .iter()
        .any(|&(a, m, f)| f & PF_X != 0 && (a..a + m).contains(&pvh_entry))
    {
        return Err(format!(
            "the PVH entry {pvh_entry:#x} is not inside an executable PT_LOAD"
        ));
    }
    Ok(ImageInfo { pvh_entry, loads })
}

/// Flags for a read-only data segment.
pub const READ_ONLY: u32 = PF_R;
/// Flags for code.
pub const READ_EXEC: u32 = PF_R | PF_X;
/// Flags for writable data.
pub const READ_WRITE: u32 = PF_R | PF_W;

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PvhImage {
        PvhImage {
            entry: 0x100000,
            pvh_desc: 0x100000u32.to_le_bytes().to_vec(),
            segments: vec![
                Segment {
                    paddr: 0x100000,
                    vaddr: 0x100000,
                    flags: READ_EXEC,
                    align: 0x1000,
                    data: vec![0xf4; 10],
                    memsz: 10,
                },
                Segment {
                    paddr: 0x101000,
                    vaddr: 0xffff_8000_0010_1000,
                    flags: READ_WRITE,
                    align: 0x1000,
                    data: vec![1, 2, 3],
                    memsz: 0x2000,
                },
            ],
        }
    }

    #[test]
    fn notes_round_trip() {
        let n = xen_pvh_note(&[1, 2, 3, 4, 5]);
        assert_eq!(n.len() % 4, 0);
        assert_eq!(find_pvh_desc(&n), Some(&[1u8, 2, 3, 4, 5][..]));
        let mut two = xen_pvh_note(&[9; 8]);
        two[8] = 1; // some other note type first
        two.extend(xen_pvh_note(&[7; 4]));
        assert_eq!(find_pvh_desc(&two), Some(&[7u8; 4][..]));
        assert_eq!(find_pvh_desc(&n[..14]), None);
        assert_eq!(find_pvh_desc(&[0xff; 40]), None);
        assert_eq!(find_pvh_desc(&[]), None);
    }

    #[test]
    fn writes_a_verifiable_image() {
        let bytes = sample().write();
        let info = verify(&bytes).unwrap();
        assert_eq!(info.pvh_entry, 0x100000);
        assert_eq!(
            info.loads,
            vec![(0x100000, 10, READ_EXEC), (0x101000, 0x2000, READ_WRITE)]
        );
        let (h, ph) = elf::headers(&bytes).unwrap();
        assert_eq!(h.e_entry, 0x100000);
        assert_eq!(h.e_shnum, 0);
        assert_eq!(ph.len(), 3);
        assert_eq!(ph[1].p_vaddr, 0xffff_8000_0010_1000);
        assert_eq!(&bytes[ph[0].p_offset as usize..][..10], &[0xf4; 10]);
        assert_eq!(sample().write(), bytes, "deterministic");
    }

    #[test]
    fn verify_catches_broken_images() {
        let mut s = sample();
        s.segments[1].paddr = 0x100004;
        assert!(verify(&s.write()).unwrap_err().contains("overlaps"));
        let mut s = sample();
        s.pvh_desc = 0x200000u32.to_le_bytes().to_vec();
        assert!(verify(&s.write()).unwrap_err().contains("not inside"));
        let mut bytes = sample().write();
        // Break the note type.
        let (_, ph) = elf::headers(&bytes).unwrap();
        let note = ph.iter().find(|p| p.p_type == PT_NOTE).unwrap().p_offset as usize;
        bytes[note + 8] = 17;
        assert!(verify(&bytes).unwrap_err().contains("PVH"));
        assert!(verify(b"junk").is_err());
    }
}
