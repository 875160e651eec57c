use super::code::Function;
use super::elf::{gnu_hash, sysv_hash, SONAME, VERSION, VERSION_INDEX};
use super::*;
use alloc::string::String;
use alloc::vec::Vec;
use std::process::Command;

use object::read::elf::{ElfFile64, FileHeader, SectionHeader, Sym};
use object::LittleEndian as LE;

const LINUX_2_6_HASH: u32 = 0x03ae_75f6;

fn u16_at(b: &[u8], at: usize) -> u16 {
    crate::bytes::u16_at(b, at).unwrap()
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    crate::bytes::u32_at(b, at).unwrap()
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    crate::bytes::u64_at(b, at).unwrap()
}
fn c_str(b: &[u8], at: usize) -> &str {
    let end = b[at..].iter().position(|&c| c == 0).unwrap();
    core::str::from_utf8(&b[at..at + end]).unwrap()
}

/// The functions' names as glibc, musl and Go look them up, with the weak aliases.
fn all_names() -> Vec<(&'static str, Function)> {
    Function::ALL
        .iter()
        .flat_map(|&f| [(f.name(), f), (f.alias(), f)])
        .collect()
}

#[test]
fn hashes_match_the_values_consumers_hard_code() {
    // Go's `linux26` key and glibc's VDSO_HASH (61765110) are this hash of "LINUX_2.6".
    assert_eq!(sysv_hash(VERSION), LINUX_2_6_HASH);
    assert_eq!(sysv_hash(VERSION), 61_765_110);
    // The GNU hash of the empty string is its seed; "printf" as in the gABI's examples.
    assert_eq!(gnu_hash(""), 5381);
    assert_eq!(gnu_hash("printf"), 0x156b_2bb8);
    assert_eq!(sysv_hash("printf"), 0x077905a6);
}

#[test]
fn headers_describe_one_read_execute_load_and_a_read_only_dynamic_section() {
    let img = image();
    let elf = goblin::elf::Elf::parse(&img).unwrap();
    assert_eq!(elf.header.e_type, goblin::elf::header::ET_DYN);
    assert_eq!(elf.header.e_machine, goblin::elf::header::EM_X86_64);
    use goblin::elf::program_header::{PF_R, PF_X, PT_DYNAMIC, PT_LOAD};
    let loads: Vec<_> = elf
        .program_headers
        .iter()
        .filter(|p| p.p_type == PT_LOAD)
        .collect();
    assert_eq!(loads.len(), 1);
    let load = loads[0];
    assert_eq!((load.p_offset, load.p_vaddr), (0, 0));
    assert_eq!(load.p_flags, PF_R | PF_X);
    assert_eq!(load.p_filesz, img.len() as u64, "the whole file is mapped");
    assert_eq!(load.p_memsz, load.p_filesz);
    assert_eq!(load.p_align, PAGE_SIZE);
    let dynamic = elf
        .program_headers
        .iter()
        .find(|p| p.p_type == PT_DYNAMIC)
        .unwrap();
    // glibc treats a dynamic section without PF_W as read-only and does not write to it.
    assert_eq!(dynamic.p_flags, PF_R);
    assert_eq!(dynamic.p_offset, dynamic.p_vaddr);
    assert!(dynamic.p_offset + dynamic.p_filesz <= load.p_filesz);
    assert!(elf
        .program_headers
        .iter()
        .all(|p| p.p_type != goblin::elf::program_header::PT_TLS));
    assert_eq!(elf.soname, Some(SONAME));
    assert!(elf.libraries.is_empty(), "needs nothing");
    let d = elf.dynamic.as_ref().unwrap();
    assert!(
        d.info.relacount == 0 && d.info.rela == 0 && d.info.jmprel == 0,
        "no relocations"
    );

    // Each function is a global symbol and a weak alias, in .text, inside the mapping.
    let text = elf
        .section_headers
        .iter()
        .position(|s| elf.shdr_strtab.get_at(s.sh_name) == Some(".text"))
        .unwrap();
    let mut found = 0;
    for sym in elf.dynsyms.iter().skip(1) {
        let name = elf.dynstrtab.get_at(sym.st_name).unwrap();
        let (_, f) = all_names().into_iter().find(|(n, _)| *n == name).unwrap();
        let expect_bind = if name == f.name() {
            goblin::elf::sym::STB_GLOBAL
        } else {
            goblin::elf::sym::STB_WEAK
        };
        assert_eq!(sym.st_bind(), expect_bind, "{name}");
        assert_eq!(sym.st_type(), goblin::elf::sym::STT_FUNC, "{name}");
        assert_eq!(sym.st_shndx, text, "{name}");
        assert!(sym.st_size > 0 && sym.st_value + sym.st_size <= load.p_filesz);
        found += 1;
    }
    assert_eq!(found, 2 * Function::ALL.len());
}

#[test]
fn every_function_is_found_through_both_hash_tables_with_version_linux_2_6() {
    let img = image();
    let elf = ElfFile64::<LE>::parse(&*img).unwrap();
    let endian = LE;
    let sections = elf.elf_section_table();
    let symbols = elf.elf_dynamic_symbol_table();
    let versions = sections.versions(endian, &*img).unwrap().unwrap();
    let linux26 = versions
        .version(object::read::elf::VersionIndex(VERSION_INDEX))
        .unwrap()
        .unwrap();
    assert_eq!(linux26.name(), VERSION.as_bytes());
    assert_eq!(linux26.hash(), LINUX_2_6_HASH);
    let (mut sysv, mut gnu) = (None, None);
    for s in sections.iter() {
        if let Some((t, _)) = s.hash(endian, &*img).unwrap() {
            sysv = Some(t);
        }
        if let Some((t, _)) = s.gnu_hash(endian, &*img).unwrap() {
            gnu = Some(t);
        }
    }
    let (sysv, gnu) = (sysv.unwrap(), gnu.unwrap());
    assert_eq!(sysv.symbol_table_length() as usize, symbols.len());
    for (name, f) in all_names() {
        let n = name.as_bytes();
        let by_sysv = sysv.find(
            endian,
            n,
            sysv_hash(name),
            Some(linux26),
            symbols,
            &versions,
        );
        let by_gnu = gnu.find(endian, n, gnu_hash(name), Some(linux26), symbols, &versions);
        let (a, sym) = by_sysv.unwrap_or_else(|| panic!("{name} through DT_HASH"));
        let (b, _) = by_gnu.unwrap_or_else(|| panic!("{name} through DT_GNU_HASH"));
        assert_eq!(a, b, "{name}");
        let code = code::assemble(0, 0);
        let (_, range) = code.functions.iter().find(|(g, _)| *g == f).unwrap();
        assert_eq!(sym.st_size(endian), range.end - range.start, "{name}");
    }
    // A name that is not there is not found (the Bloom filter and chains end).
    for missing in ["__vdso_getcpu", "clock_gettime64", "__vdso_clock_gettimeX"] {
        let n = missing.as_bytes();
        assert!(sysv
            .find(endian, n, sysv_hash(missing), None, symbols, &versions)
            .is_none());
        assert!(gnu
            .find(endian, n, gnu_hash(missing), None, symbols, &versions)
            .is_none());
    }
    assert_eq!(elf.elf_header().e_phnum(endian), 2);
}

/// What loaders see: the image read only through its program headers and dynamic section,
/// as glibc's `setup_vdso`, musl's `__vdsosym` and Go's `vdso_init_from_sysinfo_ehdr` do
/// (they have no section headers to go by).
struct Loaded<'a> {
    img: &'a [u8],
    /// Added to a `d_ptr` or `st_value` to get an offset into `img`.
    base: usize,
    tags: Vec<(u64, u64)>,
}

impl<'a> Loaded<'a> {
    fn new(img: &'a [u8]) -> Loaded<'a> {
        let (phoff, phnum) = (u64_at(img, 32) as usize, u16_at(img, 56) as usize);
        let (mut base, mut dynamic) = (None, None);
        for i in 0..phnum {
            let ph = phoff + i * 56;
            match u32_at(img, ph) {
                1 => base = Some(u64_at(img, ph + 8) - u64_at(img, ph + 16)),
                2 => dynamic = Some(u64_at(img, ph + 8) as usize),
                _ => {}
            }
        }
        let (base, mut at) = (base.unwrap() as usize, dynamic.unwrap());
        let mut tags = Vec::new();
        while u64_at(img, at) != 0 {
            tags.push((u64_at(img, at), u64_at(img, at + 8)));
            at += 16;
        }
        Loaded { img, base, tags }
    }

    fn tag(&self, t: u64) -> Option<usize> {
        self.tags
            .iter()
            .find(|(k, _)| *k == t)
            .map(|&(_, v)| self.base + v as usize)
    }

    fn sym_name(&self, index: usize) -> &'a str {
        let sym = self.tag(6).unwrap() + index * 24;
        c_str(
            self.img,
            self.tag(5).unwrap() + u32_at(self.img, sym) as usize,
        )
    }

    /// Whether symbol `index` is a defined function or weak/global as Go and musl check.
    fn acceptable(&self, index: usize) -> bool {
        let sym = self.tag(6).unwrap() + index * 24;
        let info = self.img[sym + 4];
        let (bind, kind) = (info >> 4, info & 0xf);
        kind == 2 && (bind == 1 || bind == 2) && u16_at(self.img, sym + 6) != 0
    }

    fn value(&self, index: usize) -> u64 {
        u64_at(self.img, self.tag(6).unwrap() + index * 24 + 8)
    }

    /// The version index of `LINUX_2.6` found by name and hash in the definitions (Go's
    /// `vdso_find_version`), skipping the base definition.
    fn linux26(&self) -> u16 {
        let mut def = self.tag(0x6fff_fffc).unwrap();
        loop {
            let flags = u16_at(self.img, def + 2);
            let aux = def + u32_at(self.img, def + 12) as usize;
            let name = c_str(
                self.img,
                self.tag(5).unwrap() + u32_at(self.img, aux) as usize,
            );
            if flags & 1 == 0 && u32_at(self.img, def + 8) == LINUX_2_6_HASH && name == VERSION {
                return u16_at(self.img, def + 4) & 0x7fff;
            }
            let next = u32_at(self.img, def + 16) as usize;
            assert_ne!(next, 0, "no LINUX_2.6 definition");
            def += next;
        }
    }

    fn version_of(&self, index: usize) -> u16 {
        u16_at(self.img, self.tag(0x6fff_fff0).unwrap() + 2 * index) & 0x7fff
    }

    /// Go's lookup through `DT_GNU_HASH`.
    fn go_lookup(&self, name: &str) -> Option<u64> {
        let t = self.tag(0x6fff_fef5)?;
        let (nbucket, symoff, bloom) = (
            u32_at(self.img, t) as usize,
            u32_at(self.img, t + 4) as usize,
            u32_at(self.img, t + 8) as usize,
        );
        let buckets = t + 16 + bloom * 8;
        let chains = buckets + nbucket * 4;
        let h = gnu_hash(name);
        let mut index = u32_at(self.img, buckets + 4 * (h as usize % nbucket)) as usize;
        if index < symoff {
            return None;
        }
        let version = self.linux26();
        loop {
            let hash = u32_at(self.img, chains + 4 * (index - symoff));
            if hash | 1 == h | 1
                && self.acceptable(index)
                && self.sym_name(index) == name
                && self.version_of(index) == version
            {
                return Some(self.value(index));
            }
            if hash & 1 != 0 {
                return None;
            }
            index += 1;
        }
    }

    /// musl's lookup: every symbol up to `DT_HASH`'s chain count, by name and version.
    fn musl_lookup(&self, name: &str) -> Option<u64> {
        let count = u32_at(self.img, self.tag(4)? + 4) as usize;
        (0..count).find_map(|i| {
            let ok = self.acceptable(i)
                && self.sym_name(i) == name
                && self.version_of(i) == self.linux26();
            ok.then(|| self.value(i))
        })
    }

    /// A System V hash-chain lookup (glibc's when a file has no `DT_GNU_HASH`).
    fn sysv_lookup(&self, name: &str) -> Option<u64> {
        let t = self.tag(4)?;
        let nbucket = u32_at(self.img, t) as usize;
        let chains = t + 8 + 4 * nbucket;
        let mut index = u32_at(self.img, t + 8 + 4 * (sysv_hash(name) as usize % nbucket));
        while index != 0 {
            let i = index as usize;
            if self.acceptable(i) && self.sym_name(i) == name {
                return Some(self.value(i));
            }
            index = u32_at(self.img, chains + 4 * i);
        }
        None
    }
}

#[test]
fn loaders_reading_only_program_headers_find_every_function() {
    let img = image();
    let l = Loaded::new(&img);
    assert_eq!(l.base, 0, "vaddr and offset agree");
    assert_eq!(l.linux26(), VERSION_INDEX);
    let code = code::assemble(0, 0);
    let text = l.go_lookup("__vdso_clock_gettime").unwrap();
    for (name, f) in all_names() {
        let (_, range) = code.functions.iter().find(|(g, _)| *g == f).unwrap();
        let want = text + range.start;
        assert_eq!(l.go_lookup(name), Some(want), "Go: {name}");
        assert_eq!(l.musl_lookup(name), Some(want), "musl: {name}");
        assert_eq!(l.sysv_lookup(name), Some(want), "DT_HASH: {name}");
        // The code there is the function's.
        let at = want as usize;
        let len = (range.end - range.start) as usize;
        let start = range.start as usize;
        assert_eq!(
            img[at..at + len][..3],
            code.bytes[start..start + len][..3],
            "{name}"
        );
    }
    for missing in ["__vdso_getcpu", "getcpu", "__vdso_clock_gettime64", ""] {
        assert_eq!(l.go_lookup(missing), None, "{missing}");
        assert_eq!(l.musl_lookup(missing), None, "{missing}");
        assert_eq!(l.sysv_lookup(missing), None, "{missing}");
    }
    // glibc names the object by its soname.
    let soname = l.tags.iter().find(|(t, _)| *t == 14).unwrap().1 as usize;
    assert_eq!(c_str(&img, l.tag(5).unwrap() + soname), SONAME);
}

#[test]
fn the_code_in_the_image_reads_the_page_below_the_image() {
    let img = image();
    let l = Loaded::new(&img);
    let at = l.go_lookup("__vdso_time").unwrap() as usize;
    // `__vdso_time` starts with `mov r8, [rip + disp32]`, the clock rate.
    assert_eq!(img[at..at + 3], [0x4c, 0x8b, 0x05]);
    let disp = i64::from(u32_at(&img, at + 3) as i32);
    let target = (at as i64 + 7) + disp;
    assert_eq!(target, -(PAGE_SIZE as i64) + ClockPage::NS_PER_TICK as i64);
}

#[test]
fn the_image_is_the_same_every_time_and_fits_a_page() {
    assert_eq!(image(), image());
    assert!(image().len() as u64 <= PAGE_SIZE, "{} bytes", image().len());
}

/// The functions' code as `objdump` disassembles it, assembled at 0x1000 with the clock
/// page at 0 (so `[0x0]` is `ns_per_tick`, `[0x8]` `tsc_at_boot`, `[0x10]`
/// `epoch_at_boot_ns`); the `int3` padding between functions left out.
const LISTING: &str = "\
1000: cmp edi,0x1f
1003: ja 0x10a9
1009: mov r10d,0x1
100f: mov ecx,edi
1011: shl r10d,cl
1014: test r10d,0x8f3
101b: je 0x10a9
1021: mov r8,QWORD PTR [0x0]
1028: test r8,r8
102b: je 0x10a9
1031: rdtsc
1033: shl rdx,0x20
1037: or rax,rdx
103a: sub rax,QWORD PTR [0x8]
1041: mul r8
1044: shrd rax,rdx,0x20
1049: shr rdx,0x20
104d: je 0x105a
1053: mov rax,0xffffffffffffffff
105a: add rax,0x3b9aca00
1060: test r10d,0x821
1067: je 0x107a
106d: sub rax,0x3b9aca00
1073: add rax,QWORD PTR [0x10]
107a: test r10d,0x60
1081: je 0x1095
1087: xor edx,edx
1089: mov ecx,0x3d0900
108e: div rcx
1091: imul rax,rcx
1095: xor edx,edx
1097: mov ecx,0x3b9aca00
109c: div rcx
109f: mov QWORD PTR [rsi],rax
10a2: mov QWORD PTR [rsi+0x8],rdx
10a6: xor eax,eax
10a8: ret
10a9: mov eax,0xe4
10ae: syscall
10b0: ret
10c0: test rdi,rdi
10c3: je 0x1133
10c9: mov r8,QWORD PTR [0x0]
10d0: test r8,r8
10d3: je 0x1146
10d9: rdtsc
10db: shl rdx,0x20
10df: or rax,rdx
10e2: sub rax,QWORD PTR [0x8]
10e9: mul r8
10ec: shrd rax,rdx,0x20
10f1: shr rdx,0x20
10f5: je 0x1102
10fb: mov rax,0xffffffffffffffff
1102: add rax,0x3b9aca00
1108: sub rax,0x3b9aca00
110e: add rax,QWORD PTR [0x10]
1115: xor edx,edx
1117: mov ecx,0x3b9aca00
111c: div rcx
111f: mov QWORD PTR [rdi],rax
1122: mov rax,rdx
1125: xor edx,edx
1127: mov ecx,0x3e8
112c: div rcx
112f: mov QWORD PTR [rdi+0x8],rax
1133: test rsi,rsi
1136: je 0x1143
113c: mov QWORD PTR [rsi],0x0
1143: xor eax,eax
1145: ret
1146: mov eax,0x60
114b: syscall
114d: ret
1150: mov r8,QWORD PTR [0x0]
1157: test r8,r8
115a: je 0x11b3
1160: rdtsc
1162: shl rdx,0x20
1166: or rax,rdx
1169: sub rax,QWORD PTR [0x8]
1170: mul r8
1173: shrd rax,rdx,0x20
1178: shr rdx,0x20
117c: je 0x1189
1182: mov rax,0xffffffffffffffff
1189: add rax,0x3b9aca00
118f: sub rax,0x3b9aca00
1195: add rax,QWORD PTR [0x10]
119c: xor edx,edx
119e: mov ecx,0x3b9aca00
11a3: div rcx
11a6: test rdi,rdi
11a9: je 0x11b2
11af: mov QWORD PTR [rdi],rax
11b2: ret
11b3: mov eax,0xc9
11b8: syscall
11ba: ret
11c0: cmp edi,0x1f
11c3: ja 0x120c
11c9: mov r10d,0x1
11cf: mov ecx,edi
11d1: shl r10d,cl
11d4: test r10d,0x8f3
11db: je 0x120c
11e1: test rsi,rsi
11e4: je 0x1209
11ea: mov QWORD PTR [rsi],0x0
11f1: mov eax,0x1
11f6: mov edx,0x3d0900
11fb: test r10d,0x60
1202: cmovne eax,edx
1205: mov QWORD PTR [rsi+0x8],rax
1209: xor eax,eax
120b: ret
120c: mov eax,0xe5
1211: syscall
1213: ret
";

#[test]
fn the_code_is_the_listed_instructions() {
    let code = code::assemble(0x1000, 0);
    let dir = std::env::temp_dir().join(std::format!("kiln-vdso-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("code.bin");
    std::fs::write(&file, &code.bytes).unwrap();
    let out = Command::new("objdump")
        .args(["-D", "-b", "binary", "-m", "i386:x86-64", "-M", "intel"])
        .arg("--adjust-vma=0x1000")
        .arg(&file)
        .output()
        .expect("objdump (binutils, which the Rust toolchain's linker needs) disassembles the vDSO's code");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut got = String::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() < 3 || fields[2].starts_with("int3") {
            continue;
        }
        let mut insn = String::from(fields[2]);
        // RIP-relative operands as the address they reach (objdump's comment).
        if let (Some(open), Some(hash)) = (insn.find("[rip+"), insn.find("# ")) {
            let target = String::from(insn[hash + 2..].trim());
            let close = insn[open..].find(']').unwrap() + open;
            insn = std::format!("{}[{target}]{}", &insn[..open], &insn[close + 1..hash]);
        }
        if let Some(hash) = insn.find('#') {
            insn.truncate(hash);
        }
        if let Some(lt) = insn.find(" <") {
            insn.truncate(lt);
        }
        let insn = insn.split_whitespace().collect::<Vec<_>>().join(" ");
        got.push_str(&std::format!("{} {insn}\n", fields[0].trim()));
    }
    assert_eq!(
        got, LISTING,
        "the vDSO's code changed: check it and update LISTING"
    );
    // Every function ends in `ret` or the system call's `ret`, and uses no stack: no push,
    // pop, call or rsp.
    for line in LISTING.lines() {
        let mnemonic = line.split(' ').nth(1).unwrap();
        assert!(!["push", "pop", "call"].contains(&mnemonic), "{line}");
        assert!(!line.contains("rsp") && !line.contains("rbp"), "{line}");
    }
}

#[test]
fn functions_stand_for_their_system_calls() {
    let calls: Vec<(&str, Option<&str>)> = Function::ALL
        .iter()
        .map(|f| (f.alias(), crate::sysno::name(f.syscall())))
        .collect();
    for (alias, call) in calls {
        assert_eq!(Some(alias), call);
    }
}

#[test]
fn served_clocks_are_the_ones_the_kernel_computes_from_the_tsc() {
    let s = |base, coarse| Some(Served { base, coarse });
    assert_eq!(served(CLOCK_REALTIME), s(Base::Realtime, false));
    assert_eq!(served(CLOCK_TAI), s(Base::Realtime, false));
    assert_eq!(served(CLOCK_REALTIME_COARSE), s(Base::Realtime, true));
    assert_eq!(served(CLOCK_MONOTONIC), s(Base::Monotonic, false));
    assert_eq!(served(CLOCK_MONOTONIC_RAW), s(Base::Monotonic, false));
    assert_eq!(served(CLOCK_BOOTTIME), s(Base::Monotonic, false));
    assert_eq!(served(CLOCK_MONOTONIC_COARSE), s(Base::Monotonic, true));
    // CPU-time clocks (2, 3 and the negative per-process/thread ids), the alarm clocks
    // (8, 9) and unknown ids go to the system call.
    for id in [2, 3, 8, 9, 10, 12, 31, 32, -2, -6, i32::MIN] {
        assert_eq!(served(id), None, "{id}");
    }
    for id in CLOCK_ID_LIMIT as i32..1000 {
        assert_eq!(served(id), None, "{id}");
    }
}

#[test]
fn the_clock_page_holds_the_kernels_numbers_at_fixed_offsets() {
    let page = ClockPage {
        ns_per_tick: crate::rate::factor(2_596_200_000, 1_000_000_000),
        tsc_at_boot: 1_000_000,
        epoch_at_boot_ns: 1_700_000_000_000_000_000,
    };
    let b = page.encode();
    assert_eq!(u64_at(&b, ClockPage::NS_PER_TICK), page.ns_per_tick);
    assert_eq!(u64_at(&b, ClockPage::TSC_AT_BOOT), page.tsc_at_boot);
    assert_eq!(
        u64_at(&b, ClockPage::EPOCH_AT_BOOT_NS),
        page.epoch_at_boot_ns
    );
    // One second of ticks after boot.
    let second = page.since_boot_ns(1_000_000 + 2_596_200_000);
    assert!(second.abs_diff(1_000_000_000) <= 1, "{second}");
    assert_eq!(page.realtime_ns(1_000_000), page.epoch_at_boot_ns);
    assert_eq!(page.since_boot_ns(1_000_000), 0);
    // The monotonic clocks start at MONOTONIC_AT_BOOT_NS, the wall clock at the RTC's time.
    assert_eq!(
        page.monotonic_ns(1_000_000),
        crate::vdso::MONOTONIC_AT_BOOT_NS
    );
    // A TSC behind the boot value wraps to a huge count, exactly as in the kernel's clock
    // (the CPUs share one TSC, so it does not happen).
    assert_eq!(
        page.since_boot_ns(999_999),
        crate::rate::convert(u64::MAX, page.ns_per_tick)
    );
    assert_eq!(
        ClockPage::default().since_boot_ns(12345),
        0,
        "an empty page reads 0"
    );
}
