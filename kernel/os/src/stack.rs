//! The initial process stack, laid out as Linux's `create_elf_tables` does.
//!
//! From the top down: an 8-byte zero end marker, the strings (argv, then envp, then the
//! executable's path, in ascending order), alignment to 16, the platform string, 16 random
//! bytes, padding, then at the (16-byte aligned) stack pointer: `argc`, the argv pointers, 0,
//! the envp pointers, 0, and the auxiliary vector ending with `AT_NULL`.

use alloc::vec::Vec;
use core::fmt;

/// `AT_NULL`: end of the auxiliary vector.
pub const AT_NULL: u64 = 0;
/// `AT_PHDR`: address of the program headers.
pub const AT_PHDR: u64 = 3;
/// `AT_PHENT`: size of one program header.
pub const AT_PHENT: u64 = 4;
/// `AT_PHNUM`: number of program headers.
pub const AT_PHNUM: u64 = 5;
/// `AT_PAGESZ`: page size.
pub const AT_PAGESZ: u64 = 6;
/// `AT_BASE`: interpreter base (0: none).
pub const AT_BASE: u64 = 7;
/// `AT_FLAGS`.
pub const AT_FLAGS: u64 = 8;
/// `AT_ENTRY`: the program's entry point.
pub const AT_ENTRY: u64 = 9;
/// `AT_UID`.
pub const AT_UID: u64 = 11;
/// `AT_EUID`.
pub const AT_EUID: u64 = 12;
/// `AT_GID`.
pub const AT_GID: u64 = 13;
/// `AT_EGID`.
pub const AT_EGID: u64 = 14;
/// `AT_PLATFORM`: address of the platform string.
pub const AT_PLATFORM: u64 = 15;
/// `AT_HWCAP`: CPU features (CPUID 1 EDX on x86).
pub const AT_HWCAP: u64 = 16;
/// `AT_CLKTCK`: clock ticks per second for `times`.
pub const AT_CLKTCK: u64 = 17;
/// `AT_SECURE`: set-uid mode (0).
pub const AT_SECURE: u64 = 23;
/// `AT_RANDOM`: address of 16 random bytes.
pub const AT_RANDOM: u64 = 25;
/// `AT_HWCAP2`: more CPU features.
pub const AT_HWCAP2: u64 = 26;
/// `AT_EXECFN`: address of the executable's path.
pub const AT_EXECFN: u64 = 31;
/// `AT_SYSINFO_EHDR`: address of the vDSO's ELF header.
pub const AT_SYSINFO_EHDR: u64 = 33;
/// `AT_MINSIGSTKSZ`: minimum signal stack size.
pub const AT_MINSIGSTKSZ: u64 = 51;

/// Longest single argument or environment string, with its NUL (Linux's `MAX_ARG_STRLEN`).
pub const MAX_ARG_STRLEN: usize = 32 * 4096;

/// Values for the auxiliary vector that come from the program and the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuxValues {
    /// Where the program headers are in memory.
    pub phdr: u64,
    /// Size of one program header.
    pub phent: u64,
    /// Number of program headers.
    pub phnum: u64,
    /// Entry point (after the load bias).
    pub entry: u64,
    /// `AT_BASE`: where the dynamic loader was loaded (0 for a static program).
    pub base: u64,
    /// `AT_HWCAP`.
    pub hwcap: u64,
    /// `AT_HWCAP2`.
    pub hwcap2: u64,
    /// `AT_MINSIGSTKSZ`: size of the kernel's signal frame.
    pub minsigstksz: u64,
    /// `AT_SYSINFO_EHDR`: where the vDSO is (0: none, and the entry is left out).
    pub sysinfo_ehdr: u64,
}

/// Everything that goes on the initial stack.
#[derive(Debug, Clone, Copy)]
pub struct StackInputs<'a> {
    /// One past the highest stack byte (16-byte aligned).
    pub stack_top: u64,
    /// Arguments (without NULs).
    pub argv: &'a [Vec<u8>],
    /// Environment, `NAME=value` (without NULs).
    pub envp: &'a [Vec<u8>],
    /// Path of the executable (`AT_EXECFN`).
    pub execfn: &'a [u8],
    /// `AT_PLATFORM`, such as `b"x86_64"`.
    pub platform: &'a [u8],
    /// The 16 bytes `AT_RANDOM` points to.
    pub random: [u8; 16],
    /// The rest of the auxiliary vector.
    pub aux: AuxValues,
    /// Most bytes the image may take (the stack's size, for instance).
    pub limit: u64,
}

/// The built stack: write `bytes` at `sp`; they end at the stack top.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialStack {
    /// The initial stack pointer (points at `argc`, 16-byte aligned).
    pub sp: u64,
    /// The stack's contents from `sp` up to the top.
    pub bytes: Vec<u8>,
    /// Where `AT_RANDOM` points.
    pub random_addr: u64,
    /// Where `AT_EXECFN` points.
    pub execfn_addr: u64,
    /// The argument strings, NUL-terminated one after the other (`/proc/self/cmdline`).
    pub args: core::ops::Range<u64>,
    /// The environment strings, likewise (`/proc/self/environ`).
    pub env: core::ops::Range<u64>,
}

/// Why the initial stack cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StackError {
    /// A string contains a NUL byte (it could not be passed to a C program intact).
    NulInString,
    /// One string is longer than [`MAX_ARG_STRLEN`].
    StringTooLong,
    /// Everything together exceeds the limit (Linux's `E2BIG`).
    TooBig {
        /// Bytes needed.
        needed: u64,
        /// Bytes allowed.
        limit: u64,
    },
    /// The stack top is not 16-byte aligned.
    MisalignedTop,
}

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StackError::NulInString => write!(
                f,
                "an argument or environment string contains a NUL byte, which a program cannot receive"
            ),
            StackError::StringTooLong => write!(
                f,
                "an argument or environment string is longer than {MAX_ARG_STRLEN} bytes (Linux's limit)"
            ),
            StackError::TooBig { needed, limit } => write!(
                f,
                "arguments and environment need {needed} bytes of stack, more than the {limit} allowed (E2BIG): pass fewer or shorter ones"
            ),
            StackError::MisalignedTop => write!(f, "stack top is not 16-byte aligned"),
        }
    }
}

/// Lays out the initial stack.
pub fn build(inp: &StackInputs<'_>) -> Result<InitialStack, StackError> {
    if !inp.stack_top.is_multiple_of(16) {
        return Err(StackError::MisalignedTop);
    }
    let strings = inp.argv.iter().chain(inp.envp.iter()).map(|s| s.as_slice());
    let all = strings.clone().chain([inp.execfn, inp.platform]);
    for s in all {
        if s.contains(&0) {
            return Err(StackError::NulInString);
        }
        if s.len() + 1 > MAX_ARG_STRLEN {
            return Err(StackError::StringTooLong);
        }
    }
    let str_bytes: u64 =
        strings.map(|s| s.len() as u64 + 1).sum::<u64>() + inp.execfn.len() as u64 + 1;

    let top = inp.stack_top;
    // End marker, then the strings just below it.
    let strings_start = top - 8 - str_bytes;
    let mut p = strings_start & !15;
    p -= inp.platform.len() as u64 + 1;
    let platform_addr = p;
    p -= 16;
    let random_addr = p;

    let argc = inp.argv.len() as u64;
    let envc = inp.envp.len() as u64;
    let a = &inp.aux;
    let mut cursor = strings_start;
    let mut place = |len: usize| {
        let at = cursor;
        cursor += len as u64 + 1;
        at
    };
    let argv_addrs: Vec<u64> = inp.argv.iter().map(|s| place(s.len())).collect();
    let env_start = strings_start + inp.argv.iter().map(|s| s.len() as u64 + 1).sum::<u64>();
    let envp_addrs: Vec<u64> = inp.envp.iter().map(|s| place(s.len())).collect();
    let execfn_addr = place(inp.execfn.len());
    // Linux puts the vDSO first (`ARCH_DLINFO`).
    let vdso = (a.sysinfo_ehdr != 0).then_some((AT_SYSINFO_EHDR, a.sysinfo_ehdr));
    let rest: [(u64, u64); 20] = [
        (AT_MINSIGSTKSZ, a.minsigstksz),
        (AT_HWCAP, a.hwcap),
        (AT_PAGESZ, 4096),
        (AT_CLKTCK, 100),
        (AT_PHDR, a.phdr),
        (AT_PHENT, a.phent),
        (AT_PHNUM, a.phnum),
        (AT_BASE, a.base),
        (AT_FLAGS, 0),
        (AT_ENTRY, a.entry),
        (AT_UID, 0),
        (AT_EUID, 0),
        (AT_GID, 0),
        (AT_EGID, 0),
        (AT_SECURE, 0),
        (AT_RANDOM, random_addr),
        (AT_HWCAP2, a.hwcap2),
        (AT_EXECFN, execfn_addr),
        (AT_PLATFORM, platform_addr),
        (AT_NULL, 0),
    ];
    let auxv: Vec<(u64, u64)> = vdso.into_iter().chain(rest).collect();
    let words = 1 + (argc + 1) + (envc + 1) + 2 * auxv.len() as u64;
    let needed = (top - p) + words * 8 + 15;
    if needed > inp.limit {
        return Err(StackError::TooBig {
            needed,
            limit: inp.limit,
        });
    }
    let sp = (p - words * 8) & !15;

    let mut bytes = alloc::vec![0u8; (top - sp) as usize];
    let mut put = |addr: u64, data: &[u8]| {
        let o = (addr - sp) as usize;
        bytes[o..o + data.len()].copy_from_slice(data);
    };
    let mut w = sp;
    let mut word = |put: &mut dyn FnMut(u64, &[u8]), v: u64| {
        put(w, &v.to_le_bytes());
        w += 8;
    };
    word(&mut put, argc);
    for &v in &argv_addrs {
        word(&mut put, v);
    }
    word(&mut put, 0);
    for &v in &envp_addrs {
        word(&mut put, v);
    }
    word(&mut put, 0);
    for (k, v) in auxv {
        word(&mut put, k);
        word(&mut put, v);
    }
    put(random_addr, &inp.random);
    put(platform_addr, inp.platform);
    for (s, at) in inp
        .argv
        .iter()
        .chain(inp.envp.iter())
        .zip(argv_addrs.iter().chain(envp_addrs.iter()))
    {
        put(*at, s);
    }
    put(execfn_addr, inp.execfn);
    Ok(InitialStack {
        sp,
        bytes,
        random_addr,
        execfn_addr,
        args: strings_start..env_start,
        env: env_start..execfn_addr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOP: u64 = 0x7fff_ffff_f000;

    fn aux() -> AuxValues {
        AuxValues {
            phdr: 0x400040,
            phent: 56,
            phnum: 9,
            entry: 0x401000,
            base: 0,
            hwcap: 0x178bfbff,
            hwcap2: 0,
            minsigstksz: 2048,
            sysinfo_ehdr: 0,
        }
    }

    fn inputs<'a>(argv: &'a [Vec<u8>], envp: &'a [Vec<u8>]) -> StackInputs<'a> {
        StackInputs {
            stack_top: TOP,
            argv,
            envp,
            execfn: b"/app",
            platform: b"x86_64",
            random: *b"0123456789abcdef",
            aux: aux(),
            limit: 2 << 20,
        }
    }

    fn word(st: &InitialStack, addr: u64) -> u64 {
        let o = (addr - st.sp) as usize;
        u64::from_le_bytes(st.bytes[o..o + 8].try_into().unwrap())
    }

    fn cstr(st: &InitialStack, addr: u64) -> Vec<u8> {
        let o = (addr - st.sp) as usize;
        let n = st.bytes[o..].iter().position(|&b| b == 0).unwrap();
        st.bytes[o..o + n].to_vec()
    }

    #[test]
    fn layout_byte_by_byte() {
        let argv = [b"/app".to_vec(), b"-v".to_vec()];
        let envp = [b"HOME=/".to_vec()];
        let st = build(&inputs(&argv, &envp)).unwrap();
        assert_eq!(st.sp % 16, 0);
        assert_eq!(st.sp + st.bytes.len() as u64, TOP);

        // Strings, ascending, right under the 8-byte end marker.
        let strings = b"/app\0-v\0HOME=/\0/app\0";
        let sstart = TOP - 8 - strings.len() as u64;
        let tail = &st.bytes[st.bytes.len() - 8 - strings.len()..];
        assert_eq!(&tail[..strings.len()], strings);
        assert_eq!(&tail[strings.len()..], &[0u8; 8]);
        assert_eq!(st.execfn_addr, sstart + 15);
        // What /proc/self/cmdline and environ read.
        assert_eq!(st.args, sstart..sstart + 8);
        assert_eq!(st.env, sstart + 8..sstart + 15);

        // Platform string below the 16-aligned string start, random bytes below it.
        let aligned = sstart & !15;
        let platform = aligned - 7;
        assert_eq!(cstr(&st, platform), b"x86_64");
        assert_eq!(st.random_addr, platform - 16);
        let o = (st.random_addr - st.sp) as usize;
        assert_eq!(&st.bytes[o..o + 16], b"0123456789abcdef");

        // The tables.
        let mut a = st.sp;
        let mut next = || {
            let v = word(&st, a);
            a += 8;
            v
        };
        assert_eq!(next(), 2);
        assert_eq!(next(), sstart);
        assert_eq!(next(), sstart + 5);
        assert_eq!(next(), 0);
        assert_eq!(next(), sstart + 8);
        assert_eq!(next(), 0);
        let want = [
            (AT_MINSIGSTKSZ, 2048),
            (AT_HWCAP, 0x178bfbff),
            (AT_PAGESZ, 4096),
            (AT_CLKTCK, 100),
            (AT_PHDR, 0x400040),
            (AT_PHENT, 56),
            (AT_PHNUM, 9),
            (AT_BASE, 0),
            (AT_FLAGS, 0),
            (AT_ENTRY, 0x401000),
            (AT_UID, 0),
            (AT_EUID, 0),
            (AT_GID, 0),
            (AT_EGID, 0),
            (AT_SECURE, 0),
            (AT_RANDOM, st.random_addr),
            (AT_HWCAP2, 0),
            (AT_EXECFN, sstart + 15),
            (AT_PLATFORM, platform),
            (AT_NULL, 0),
        ];
        for (k, v) in want {
            assert_eq!((next(), next()), (k, v));
        }
        // The auxv ends within 16 bytes of the random bytes (only alignment padding between).
        assert!(a <= st.random_addr && st.random_addr - a < 16);
        assert!(
            st.bytes[(a - st.sp) as usize..(st.random_addr - st.sp) as usize]
                .iter()
                .all(|&b| b == 0)
        );
        assert_eq!(cstr(&st, sstart), b"/app");
        assert_eq!(cstr(&st, sstart + 5), b"-v");
        assert_eq!(cstr(&st, sstart + 8), b"HOME=/");
    }

    #[test]
    fn the_vdso_comes_first_in_the_auxiliary_vector_when_there_is_one() {
        let mut i = inputs(&[], &[]);
        let without = build(&i).unwrap();
        i.aux.sysinfo_ehdr = 0x7fff_f800_0000;
        let with = build(&i).unwrap();
        // argc, argv's and envp's terminators, then the vector.
        assert_eq!(word(&with, with.sp + 24), AT_SYSINFO_EHDR);
        assert_eq!(word(&with, with.sp + 32), 0x7fff_f800_0000);
        assert_eq!(word(&with, with.sp + 40), AT_MINSIGSTKSZ);
        assert_eq!(word(&without, without.sp + 24), AT_MINSIGSTKSZ);
        let mut a = without.sp + 24;
        while word(&without, a) != AT_NULL {
            assert_ne!(word(&without, a), AT_SYSINFO_EHDR, "no vDSO, no entry");
            a += 16;
        }
    }

    #[test]
    fn alignment_holds_for_every_argument_count() {
        for n in 0..6usize {
            let argv: Vec<Vec<u8>> = (0..n).map(|i| alloc::vec![b'a'; i + 1]).collect();
            let st = build(&inputs(&argv, &[])).unwrap();
            assert_eq!(st.sp % 16, 0, "{n}");
            assert_eq!(word(&st, st.sp), n as u64);
            assert_eq!(word(&st, st.sp + 8 * (n as u64 + 1)), 0);
            assert_eq!(word(&st, st.sp + 8 * (n as u64 + 2)), 0, "empty envp");
        }
    }

    #[test]
    fn rejects_bad_inputs() {
        let nul = [b"a\0b".to_vec()];
        assert_eq!(build(&inputs(&nul, &[])), Err(StackError::NulInString));
        let long = [alloc::vec![b'x'; MAX_ARG_STRLEN]];
        assert_eq!(build(&inputs(&[], &long)), Err(StackError::StringTooLong));
        let many: Vec<Vec<u8>> = (0..40).map(|_| alloc::vec![b'x'; 100_000]).collect();
        assert!(matches!(
            build(&inputs(&many, &[])),
            Err(StackError::TooBig { .. })
        ));
        let mut i = inputs(&[], &[]);
        i.stack_top = TOP - 8;
        assert_eq!(build(&i), Err(StackError::MisalignedTop));
    }
}
