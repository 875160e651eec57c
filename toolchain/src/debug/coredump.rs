//! Core files that stock gdb reads, written on the host from the kernel's crash and memory
//! records: an ELF `ET_CORE` with a `PT_NOTE` (`NT_PRSTATUS` per thread, the crashed one
//! first, `NT_PRPSINFO`, `NT_AUXV`, `NT_FILE`) and one `PT_LOAD` per memory region.
//!
//! The layouts are Linux's for x86_64 (`struct elf_prstatus`, `struct elf_prpsinfo`,
//! `user_regs_struct`). The auxiliary vector is rebuilt from the program's headers and the
//! load bias: gdb needs `AT_ENTRY` and `AT_PHDR` to place a position-independent program.

use kiln_abi::record::{Crash, Memory, Regs};

const NT_PRSTATUS: u32 = 1;
const NT_PRPSINFO: u32 = 3;
const NT_AUXV: u32 = 6;
const NT_FILE: u32 = 0x4649_4c45;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
/// User code and stack selectors, as Linux reports them.
const USER_CS: u64 = 0x33;
const USER_SS: u64 = 0x2b;

fn note(out: &mut Vec<u8>, kind: u32, desc: &[u8]) {
    out.extend_from_slice(&5u32.to_le_bytes());
    out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(b"CORE\0\0\0\0");
    out.extend_from_slice(desc);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// `user_regs_struct`: r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax
/// rip cs eflags rsp ss fs_base gs_base ds es fs gs.
fn user_regs(r: &Regs) -> [u64; 27] {
    let g = &r.gpr; // rax rbx rcx rdx rsi rdi rbp r8 .. r15
    [
        g[14],
        g[13],
        g[12],
        g[11],
        g[6],
        g[1],
        g[10],
        g[9],
        g[8],
        g[7],
        g[0],
        g[2],
        g[3],
        g[4],
        g[5],
        u64::MAX,
        r.rip,
        USER_CS,
        r.rflags,
        r.rsp,
        USER_SS,
        0,
        0,
        0,
        0,
        0,
        0,
    ]
}

/// `struct elf_prstatus` (336 bytes).
fn prstatus(signal: u32, code: i32, tid: u32, regs: &Regs) -> Vec<u8> {
    let mut d = Vec::with_capacity(336);
    d.extend_from_slice(&(signal as i32).to_le_bytes()); // si_signo
    d.extend_from_slice(&code.to_le_bytes()); // si_code
    d.extend_from_slice(&0i32.to_le_bytes()); // si_errno
    d.extend_from_slice(&(signal as u16).to_le_bytes()); // pr_cursig
    d.extend_from_slice(&[0; 2]);
    d.extend_from_slice(&[0; 16]); // pr_sigpend, pr_sighold
    for id in [tid, 0, 1, 1] {
        d.extend_from_slice(&id.to_le_bytes()); // pid, ppid, pgrp, sid
    }
    d.extend_from_slice(&[0; 64]); // user, system and children's times
    for v in user_regs(regs) {
        d.extend_from_slice(&v.to_le_bytes());
    }
    d.extend_from_slice(&0i32.to_le_bytes()); // pr_fpvalid
    d.extend_from_slice(&[0; 4]);
    debug_assert_eq!(d.len(), 336);
    d
}

/// `struct elf_prpsinfo` (136 bytes).
fn prpsinfo(name: &str, args: &str) -> Vec<u8> {
    let mut d = vec![0u8; 136];
    d[0] = 0; // pr_state: running
    d[1] = b'R';
    d[24..28].copy_from_slice(&1i32.to_le_bytes()); // pr_pid
    let fname = name.as_bytes();
    let n = fname.len().min(15);
    d[40..40 + n].copy_from_slice(&fname[..n]);
    let a = args.as_bytes();
    let n = a.len().min(79);
    d[56..56 + n].copy_from_slice(&a[..n]);
    d
}

/// The program's loadable segments and entry, from its ELF.
struct ProgramLayout {
    entry: u64,
    phdr: u64,
    phnum: u64,
    loads: Vec<(u64, u64, u64)>,
}

fn layout_of(program: &[u8]) -> Option<ProgramLayout> {
    let elf = goblin::elf::Elf::parse(program).ok()?;
    let loads: Vec<(u64, u64, u64)> = elf
        .program_headers
        .iter()
        .filter(|p| p.p_type == goblin::elf::program_header::PT_LOAD)
        .map(|p| (p.p_vaddr, p.p_memsz, p.p_offset))
        .collect();
    let phdr = elf
        .program_headers
        .iter()
        .find(|p| p.p_type == goblin::elf::program_header::PT_PHDR)
        .map(|p| p.p_vaddr)
        .or_else(|| {
            elf.program_headers
                .iter()
                .find(|p| {
                    p.p_type == goblin::elf::program_header::PT_LOAD
                        && p.p_offset <= elf.header.e_phoff
                        && elf.header.e_phoff < p.p_offset + p.p_filesz
                })
                .map(|p| p.p_vaddr + elf.header.e_phoff - p.p_offset)
        })?;
    Some(ProgramLayout {
        entry: elf.header.e_entry,
        phdr,
        phnum: u64::from(elf.header.e_phnum),
        loads,
    })
}

/// The auxiliary vector the program started with (the entries gdb reads).
fn auxv(layout: &ProgramLayout, bias: u64) -> Vec<u8> {
    let mut d = Vec::new();
    for (k, v) in [
        (3u64, layout.phdr + bias), // AT_PHDR
        (4, 56),                    // AT_PHENT
        (5, layout.phnum),          // AT_PHNUM
        (6, 4096),                  // AT_PAGESZ
        (7, 0),                     // AT_BASE: no interpreter
        (9, layout.entry + bias),   // AT_ENTRY
        (0, 0),                     // AT_NULL
    ] {
        d.extend_from_slice(&k.to_le_bytes());
        d.extend_from_slice(&v.to_le_bytes());
    }
    d
}

/// `NT_FILE`: the program's segments, mapped from its path in the image.
fn file_note(layout: &ProgramLayout, bias: u64, path: &str) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&(layout.loads.len() as u64).to_le_bytes());
    d.extend_from_slice(&4096u64.to_le_bytes());
    for (vaddr, memsz, offset) in &layout.loads {
        let start = (vaddr + bias) & !0xfff;
        let end = (vaddr + bias + memsz).next_multiple_of(4096);
        d.extend_from_slice(&start.to_le_bytes());
        d.extend_from_slice(&end.to_le_bytes());
        d.extend_from_slice(&(offset / 4096).to_le_bytes());
    }
    for _ in &layout.loads {
        d.extend_from_slice(path.as_bytes());
        d.push(0);
    }
    d
}

/// The core file for `crash` of `program` (run as `path`), with the memory `mem`.
pub fn write(program: &[u8], path: &str, crash: &Crash, mem: &Memory) -> Vec<u8> {
    let mut notes = Vec::new();
    for t in &crash.threads {
        note(
            &mut notes,
            NT_PRSTATUS,
            &prstatus(crash.signal, crash.code, t.tid, &t.regs),
        );
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    note(&mut notes, NT_PRPSINFO, &prpsinfo(name, path));
    if let Some(layout) = layout_of(program) {
        note(&mut notes, NT_AUXV, &auxv(&layout, crash.load_bias));
        note(
            &mut notes,
            NT_FILE,
            &file_note(&layout, crash.load_bias, path),
        );
    }
    let phnum = 1 + mem.regions.len();
    let headers = 64 + 56 * phnum;
    let notes_at = headers;
    let mut data_at = (notes_at + notes.len()).next_multiple_of(4096);
    let mut out = Vec::new();
    // ELF header.
    out.extend_from_slice(b"\x7fELF\x02\x01\x01\x00");
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&4u16.to_le_bytes()); // ET_CORE
    out.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes()); // e_entry
    out.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    out.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&64u16.to_le_bytes());
    out.extend_from_slice(&56u16.to_le_bytes());
    out.extend_from_slice(&(phnum as u16).to_le_bytes());
    out.extend_from_slice(&64u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    let mut ph =
        |kind: u32, flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64, align: u64| {
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&flags.to_le_bytes());
            for v in [offset, vaddr, 0, filesz, memsz, align] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        };
    ph(PT_NOTE, 0, notes_at as u64, 0, notes.len() as u64, 0, 4);
    let mut placed = Vec::new();
    for r in &mem.regions {
        // PF_X 1, PF_W 2, PF_R 4: the record's bits are the same.
        ph(
            PT_LOAD,
            r.prot,
            data_at as u64,
            r.start,
            r.sent,
            r.end - r.start,
            4096,
        );
        placed.push(data_at);
        data_at += r.sent as usize;
    }
    out.extend_from_slice(&notes);
    for (i, at) in placed.into_iter().enumerate() {
        out.resize(at, 0);
        out.extend_from_slice(mem.bytes_of(i));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_abi::record::{Region, ThreadState, REGION_STACK};

    #[test]
    fn cores_are_elf_core_files_with_notes_and_memory() {
        let crash = Crash {
            signal: 11,
            code: 1,
            fault_addr: Some(0),
            tid: 1,
            load_bias: 0,
            threads: vec![
                ThreadState {
                    tid: 1,
                    regs: Regs {
                        rip: 0x401000,
                        rsp: 0x7fff_f000,
                        rflags: 0x246,
                        gpr: [1; 15],
                    },
                },
                ThreadState {
                    tid: 2,
                    regs: Regs::default(),
                },
            ],
            stack_addr: 0x7fff_f000,
            stack: vec![],
        };
        let mem = Memory {
            regions: vec![Region {
                start: 0x7fff_0000,
                end: 0x8000_0000,
                prot: 6,
                kind: REGION_STACK,
                sent: 0x1000,
            }],
            data: vec![0xab; 0x1000],
        };
        let program = crate::elf::testdata::good_exec();
        let core = write(&program, "/bin/p", &crash, &mem);
        let elf = goblin::elf::Elf::parse(&core).unwrap();
        assert_eq!(elf.header.e_type, goblin::elf::header::ET_CORE);
        assert_eq!(elf.program_headers.len(), 2);
        let load = &elf.program_headers[1];
        assert_eq!(
            (load.p_vaddr, load.p_filesz, load.p_memsz),
            (0x7fff_0000, 0x1000, 0x1_0000)
        );
        assert_eq!(load.p_offset % 4096, 0);
        assert_eq!(core[load.p_offset as usize], 0xab);
        let notes: Vec<u32> = elf
            .iter_note_headers(&core)
            .unwrap()
            .map(|n| n.unwrap().n_type)
            .collect();
        assert_eq!(
            notes,
            [NT_PRSTATUS, NT_PRSTATUS, NT_PRPSINFO, NT_AUXV, NT_FILE]
        );
        assert_eq!(prstatus(11, 1, 1, &Regs::default()).len(), 336);
    }
}
