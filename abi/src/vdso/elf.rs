//! The vDSO's ELF file: an `ET_DYN` shared object laid out at address 0, one `PT_LOAD`
//! (read and execute) covering the whole file and a read-only `PT_DYNAMIC`, as the linker
//! writes Linux's. Its dynamic section carries what the three kinds of consumer read:
//! `DT_HASH` (musl needs it: it walks the symbols by the hash table's count),
//! `DT_GNU_HASH` (glibc prefers it, Go takes either), `DT_SYMTAB`, `DT_STRTAB`, and the
//! symbol versions (`DT_VERSYM`, `DT_VERDEF`: every function is `LINUX_2.6`, which
//! glibc's `dl_vdso_vsym`, musl's `__vdsosym` and Go's `vdso_parse_symbols` ask for).
//! Section headers are there too, for tools (gdb, `readelf`) rather than for loaders.

use alloc::vec::Vec;

use super::code::{Code, Function};

/// The soname, also the base version definition's name.
pub const SONAME: &str = "linux-vdso.so.1";
/// The version every function is defined with.
pub const VERSION: &str = "LINUX_2.6";

const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const SHDR_SIZE: usize = 64;
const SYM_SIZE: usize = 24;
const DYN_SIZE: usize = 16;
const VERDEF_SIZE: usize = 20;
const VERDAUX_SIZE: usize = 8;
const PAGE: u64 = 4096;

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PF_X: u32 = 1;
const PF_R: u32 = 4;

const STB_GLOBAL: u8 = 1;
const STB_WEAK: u8 = 2;
const STT_FUNC: u8 = 2;

const DT_NULL: u64 = 0;
const DT_HASH: u64 = 4;
const DT_STRTAB: u64 = 5;
const DT_SYMTAB: u64 = 6;
const DT_STRSZ: u64 = 10;
const DT_SYMENT: u64 = 11;
const DT_SONAME: u64 = 14;
const DT_GNU_HASH: u64 = 0x6fff_fef5;
const DT_VERSYM: u64 = 0x6fff_fff0;
const DT_VERDEF: u64 = 0x6fff_fffc;
const DT_VERDEFNUM: u64 = 0x6fff_fffd;

const SHT_PROGBITS: u32 = 1;
const SHT_STRTAB: u32 = 3;
const SHT_HASH: u32 = 5;
const SHT_DYNAMIC: u32 = 6;
const SHT_DYNSYM: u32 = 11;
const SHT_GNU_HASH: u32 = 0x6fff_fff6;
const SHT_GNU_VERDEF: u32 = 0x6fff_fffd;
const SHT_GNU_VERSYM: u32 = 0x6fff_ffff;
const SHF_ALLOC: u64 = 2;
const SHF_EXECINSTR: u64 = 4;

/// `VER_FLG_BASE`: the version definition of the file itself.
const VER_FLG_BASE: u16 = 1;
/// The version index of [`VERSION`] (1 is the base definition).
pub const VERSION_INDEX: u16 = 2;

/// The System V ELF hash (`DT_HASH`, and `vd_hash` of version definitions).
pub fn sysv_hash(name: &str) -> u32 {
    name.bytes().fold(0u32, |h, c| {
        let h = (h << 4).wrapping_add(u32::from(c));
        let g = h & 0xf000_0000;
        (h ^ (g >> 24)) & !g
    })
}

/// The GNU hash (`DT_GNU_HASH`): Bernstein's `h * 33 + c` from 5381.
pub fn gnu_hash(name: &str) -> u32 {
    name.bytes().fold(5381u32, |h, c| {
        h.wrapping_mul(33).wrapping_add(u32::from(c))
    })
}

/// A little-endian byte buffer with alignment.
struct Out(Vec<u8>);

impl Out {
    fn pos(&self) -> usize {
        self.0.len()
    }
    fn align(&mut self, to: usize) {
        while !self.0.len().is_multiple_of(to) {
            self.0.push(0);
        }
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
}

/// A dynamic symbol: its name, binding and the function it names.
struct Symbol {
    name: &'static str,
    bind: u8,
    function: Function,
}

/// A string table under construction.
struct Strings(Vec<u8>);

impl Strings {
    fn new() -> Strings {
        Strings(alloc::vec![0])
    }
    /// Adds `s` and returns its offset.
    fn add(&mut self, s: &str) -> u32 {
        let at = self.0.len() as u32;
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
        at
    }
}

/// Where each piece went (file offsets, equal to addresses: the file is laid out at 0).
#[derive(Default)]
struct Layout {
    hash: (usize, usize),
    gnu_hash: (usize, usize),
    dynsym: (usize, usize),
    dynstr: (usize, usize),
    versym: (usize, usize),
    verdef: (usize, usize),
    text: (usize, usize),
    dynamic: (usize, usize),
    shstrtab: (usize, usize),
}

/// Builds the file. `assemble(base)` gives the code for address `base`; the clock page's
/// address is its business.
pub fn build(assemble: impl Fn(u64) -> Code) -> Vec<u8> {
    let symbols: Vec<Symbol> = Function::ALL
        .iter()
        .flat_map(|&function| {
            [
                Symbol {
                    name: function.name(),
                    bind: STB_GLOBAL,
                    function,
                },
                Symbol {
                    name: function.alias(),
                    bind: STB_WEAK,
                    function,
                },
            ]
        })
        .collect();
    // Dynamic symbol indices: 0 is the null symbol.
    let nsyms = symbols.len() + 1;

    let mut dynstr = Strings::new();
    let soname = dynstr.add(SONAME);
    let version = dynstr.add(VERSION);
    let names: Vec<u32> = symbols.iter().map(|s| dynstr.add(s.name)).collect();

    let mut shstr = Strings::new();
    let sh_names: Vec<u32> = [
        ".hash",
        ".gnu.hash",
        ".dynsym",
        ".dynstr",
        ".gnu.version",
        ".gnu.version_d",
        ".text",
        ".dynamic",
        ".shstrtab",
    ]
    .iter()
    .map(|n| shstr.add(n))
    .collect();

    let mut o = Out(Vec::new());
    let mut at = Layout::default();
    // Headers are written last, over these zeros.
    o.bytes(&[0; EHDR_SIZE + 2 * PHDR_SIZE]);

    // .hash: nbucket, nchain, buckets, chains.
    o.align(4);
    let start = o.pos();
    let nbucket = nsyms;
    let mut buckets = alloc::vec![0u32; nbucket];
    let mut chains = alloc::vec![0u32; nsyms];
    for (i, s) in symbols.iter().enumerate() {
        let index = i + 1;
        let b = sysv_hash(s.name) as usize % nbucket;
        chains[index] = buckets[b];
        buckets[b] = index as u32;
    }
    o.u32(nbucket as u32);
    o.u32(nsyms as u32);
    buckets.iter().chain(&chains).for_each(|&v| o.u32(v));
    at.hash = (start, o.pos());

    // .gnu.hash: one bucket holding every symbol from index 1, a one-word Bloom filter.
    o.align(8);
    let start = o.pos();
    const BLOOM_SHIFT: u32 = 6;
    let hashes: Vec<u32> = symbols.iter().map(|s| gnu_hash(s.name)).collect();
    let bloom = hashes.iter().fold(0u64, |w, &h| {
        w | 1 << (h % 64) | 1 << ((h >> BLOOM_SHIFT) % 64)
    });
    o.u32(1); // nbuckets
    o.u32(1); // symoffset
    o.u32(1); // bloom words
    o.u32(BLOOM_SHIFT);
    o.u64(bloom);
    o.u32(1); // bucket 0: the first symbol
    for (i, &h) in hashes.iter().enumerate() {
        let last = i + 1 == hashes.len();
        o.u32(if last { h | 1 } else { h & !1 });
    }
    at.gnu_hash = (start, o.pos());

    // The code goes after the remaining tables, whose sizes do not depend on it: assemble
    // once to learn its size and functions' offsets, lay everything out, then assemble at
    // the final address (the size does not change with the address).
    let probe = assemble(0);
    let tables_end = {
        let dynsym = (o.pos().next_multiple_of(8)) + nsyms * SYM_SIZE;
        let versym = (dynsym + dynstr.0.len()).next_multiple_of(2) + 2 * nsyms;
        versym.next_multiple_of(4) + 2 * (VERDEF_SIZE + VERDAUX_SIZE)
    };
    let text_start = tables_end.next_multiple_of(16);
    let code = assemble(text_start as u64);
    assert_eq!(code.bytes.len(), probe.bytes.len(), "code size moved");
    let range_of = |f: Function| {
        code.functions
            .iter()
            .find(|(g, _)| *g == f)
            .map(|(_, r)| r.clone())
            .expect("every function assembled")
    };

    // .dynsym
    o.align(8);
    let start = o.pos();
    o.bytes(&[0; SYM_SIZE]);
    for (s, &name) in symbols.iter().zip(&names) {
        let r = range_of(s.function);
        o.u32(name);
        o.u8(s.bind << 4 | STT_FUNC);
        o.u8(0); // STV_DEFAULT
        o.u16(7); // .text's section index
        o.u64(r.start);
        o.u64(r.end - r.start);
    }
    at.dynsym = (start, o.pos());

    // .dynstr
    let start = o.pos();
    o.bytes(&dynstr.0);
    at.dynstr = (start, o.pos());

    // .gnu.version: the null symbol is local (0), every function LINUX_2.6.
    o.align(2);
    let start = o.pos();
    o.u16(0);
    for _ in &symbols {
        o.u16(VERSION_INDEX);
    }
    at.versym = (start, o.pos());

    // .gnu.version_d: the file itself (base), then LINUX_2.6.
    o.align(4);
    let start = o.pos();
    let defs = [
        (VER_FLG_BASE, 1, SONAME, soname),
        (0, VERSION_INDEX, VERSION, version),
    ];
    for (i, &(flags, index, name, name_at)) in defs.iter().enumerate() {
        let last = i + 1 == defs.len();
        o.u16(1); // vd_version
        o.u16(flags);
        o.u16(index);
        o.u16(1); // vd_cnt: one name
        o.u32(sysv_hash(name));
        o.u32(VERDEF_SIZE as u32); // vd_aux: right after
        o.u32(if last {
            0
        } else {
            (VERDEF_SIZE + VERDAUX_SIZE) as u32
        });
        o.u32(name_at); // vda_name
        o.u32(0); // vda_next
    }
    at.verdef = (start, o.pos());
    assert_eq!(o.pos(), tables_end, "tables laid out as planned");

    // .text
    o.align(16);
    let start = o.pos();
    assert_eq!(start, text_start);
    o.bytes(&code.bytes);
    at.text = (start, o.pos());

    // .dynamic
    o.align(8);
    let start = o.pos();
    let entries = [
        (DT_HASH, at.hash.0 as u64),
        (DT_GNU_HASH, at.gnu_hash.0 as u64),
        (DT_STRTAB, at.dynstr.0 as u64),
        (DT_SYMTAB, at.dynsym.0 as u64),
        (DT_STRSZ, dynstr.0.len() as u64),
        (DT_SYMENT, SYM_SIZE as u64),
        (DT_SONAME, u64::from(soname)),
        (DT_VERSYM, at.versym.0 as u64),
        (DT_VERDEF, at.verdef.0 as u64),
        (DT_VERDEFNUM, defs.len() as u64),
        (DT_NULL, 0),
    ];
    for (tag, val) in entries {
        o.u64(tag);
        o.u64(val);
    }
    at.dynamic = (start, o.pos());

    // .shstrtab, then the section headers.
    let start = o.pos();
    o.bytes(&shstr.0);
    at.shstrtab = (start, o.pos());
    o.align(8);
    let shoff = o.pos();
    o.bytes(&[0; SHDR_SIZE]);
    let sections = [
        (SHT_HASH, SHF_ALLOC, at.hash, 3, 0, 4, 4),
        (SHT_GNU_HASH, SHF_ALLOC, at.gnu_hash, 3, 0, 8, 0),
        (SHT_DYNSYM, SHF_ALLOC, at.dynsym, 4, 1, 8, SYM_SIZE),
        (SHT_STRTAB, SHF_ALLOC, at.dynstr, 0, 0, 1, 0),
        (SHT_GNU_VERSYM, SHF_ALLOC, at.versym, 3, 0, 2, 2),
        (SHT_GNU_VERDEF, SHF_ALLOC, at.verdef, 4, 2, 4, 0),
        (
            SHT_PROGBITS,
            SHF_ALLOC | SHF_EXECINSTR,
            at.text,
            0,
            0,
            16,
            0,
        ),
        (SHT_DYNAMIC, SHF_ALLOC, at.dynamic, 4, 0, 8, DYN_SIZE),
        (SHT_STRTAB, 0, at.shstrtab, 0, 0, 1, 0),
    ];
    for (i, &(kind, flags, (from, to), link, info, align, entsize)) in sections.iter().enumerate() {
        o.u32(sh_names[i]);
        o.u32(kind);
        o.u64(flags);
        o.u64(if flags & SHF_ALLOC != 0 {
            from as u64
        } else {
            0
        });
        o.u64(from as u64);
        o.u64((to - from) as u64);
        o.u32(link);
        o.u32(info);
        o.u64(align);
        o.u64(entsize as u64);
    }
    let size = o.pos() as u64;

    // The ELF header and the program headers.
    let mut h = Out(Vec::new());
    h.bytes(b"\x7fELF");
    h.bytes(&[2, 1, 1, 0]); // 64-bit, little-endian, version 1, System V ABI
    h.bytes(&[0; 8]);
    h.u16(3); // ET_DYN
    h.u16(62); // EM_X86_64
    h.u32(1);
    h.u64(0); // e_entry: none
    h.u64(EHDR_SIZE as u64); // e_phoff
    h.u64(shoff as u64);
    h.u32(0); // e_flags
    h.u16(EHDR_SIZE as u16);
    h.u16(PHDR_SIZE as u16);
    h.u16(2);
    h.u16(SHDR_SIZE as u16);
    h.u16(sections.len() as u16 + 1);
    h.u16(sections.len() as u16); // .shstrtab is the last
    let phdrs = [
        (PT_LOAD, PF_R | PF_X, 0, size, PAGE),
        (
            PT_DYNAMIC,
            PF_R,
            at.dynamic.0 as u64,
            (at.dynamic.1 - at.dynamic.0) as u64,
            8,
        ),
    ];
    for (kind, flags, offset, len, align) in phdrs {
        h.u32(kind);
        h.u32(flags);
        h.u64(offset); // p_offset
        h.u64(offset); // p_vaddr
        h.u64(offset); // p_paddr
        h.u64(len); // p_filesz
        h.u64(len); // p_memsz
        h.u64(align);
    }
    o.0[..h.0.len()].copy_from_slice(&h.0);
    o.0
}
