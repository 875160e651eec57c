//! Crash reports: the kernel's crash record ([`kiln_abi::record::Crash`]) explained with the
//! program's own ELF: a backtrace unwound with its `.eh_frame` (gimli's call-frame
//! information, the way crash reporters do it, so release builds without frame pointers
//! unwind too; frame pointers where no CFI covers an address), symbolized from its DWARF
//! (addr2line: functions, inlined frames, files and lines) or, without DWARF, from its
//! symbol table (the nearest symbol and an offset). Stripped programs get addresses.

use kiln_abi::record::{Crash, Regs, GPR_NAMES, RBP};
use object::{Object, ObjectSection, ObjectSymbol};
use std::fmt::Write;

/// Most frames unwound.
pub const MAX_FRAMES: usize = 64;

/// One line of a backtrace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The address in the running program.
    pub pc: u64,
    /// Function name (demangled), when known.
    pub function: Option<String>,
    /// `file:line`, when the program has line tables.
    pub location: Option<String>,
    /// A frame inlined into the next one (same `pc`).
    pub inlined: bool,
}

/// The stack bytes a crash record carries, read as memory.
struct Stack<'a> {
    base: u64,
    bytes: &'a [u8],
}

impl Stack<'_> {
    fn u64_at(&self, addr: u64) -> Option<u64> {
        let off = usize::try_from(addr.checked_sub(self.base)?).ok()?;
        let b = self.bytes.get(off..off.checked_add(8)?)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }
}

/// DWARF register numbers on x86_64 (System V psABI) and where they live in [`Regs`].
fn dwarf_reg(regs: &UnwindRegs, r: gimli::Register) -> Option<u64> {
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

fn set_dwarf_reg(regs: &mut UnwindRegs, r: gimli::Register, v: u64) {
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

#[derive(Debug, Clone, Copy)]
struct UnwindRegs {
    rip: u64,
    rsp: u64,
    gpr: [u64; 15],
}

/// The program's call-frame information.
struct Cfi<'a> {
    eh_frame: gimli::EhFrame<gimli::EndianSlice<'a, gimli::LittleEndian>>,
    bases: gimli::BaseAddresses,
}

impl<'a> Cfi<'a> {
    fn of(obj: &object::File<'a>) -> Option<Cfi<'a>> {
        let section = obj.section_by_name(".eh_frame")?;
        let data = section.data().ok()?;
        let mut bases = gimli::BaseAddresses::default().set_eh_frame(section.address());
        if let Some(t) = obj.section_by_name(".text") {
            bases = bases.set_text(t.address());
        }
        if let Some(h) = obj.section_by_name(".eh_frame_hdr") {
            bases = bases.set_eh_frame_hdr(h.address());
        }
        Some(Cfi {
            eh_frame: gimli::EhFrame::new(data, gimli::LittleEndian),
            bases,
        })
    }

    /// One step: the caller's registers, from the CFI row covering `pc` (a link-time
    /// address) and the current registers.
    fn step(&self, pc: u64, regs: &UnwindRegs, stack: &Stack<'_>) -> Option<UnwindRegs> {
        use gimli::{CfaRule, RegisterRule, UnwindSection};
        let mut ctx = gimli::UnwindContext::new();
        let fde = self
            .eh_frame
            .fde_for_address(&self.bases, pc, gimli::EhFrame::cie_from_offset)
            .ok()?;
        let row = fde
            .unwind_info_for_address(&self.eh_frame, &self.bases, &mut ctx, pc)
            .ok()?;
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
                        return None;
                    }
                    continue;
                }
                RegisterRule::SameValue => continue,
                RegisterRule::Offset(o) => stack.u64_at(cfa.wrapping_add(o as u64))?,
                RegisterRule::ValOffset(o) => cfa.wrapping_add(o as u64),
                RegisterRule::Register(other) => dwarf_reg(regs, other)?,
                _ => continue,
            };
            set_dwarf_reg(&mut next, reg, value);
        }
        Some(next)
    }
}

/// Unwinds the crashed thread: the return addresses (running addresses), innermost first.
pub fn unwind(program: &[u8], crash: &Crash) -> Vec<u64> {
    let Some(first) = crash.threads.first() else {
        return Vec::new();
    };
    let obj = object::File::parse(program).ok();
    let cfi = obj.as_ref().and_then(Cfi::of);
    let stack = Stack {
        base: crash.stack_addr,
        bytes: &crash.stack,
    };
    let bias = crash.load_bias;
    let mut regs = UnwindRegs {
        rip: first.regs.rip,
        rsp: first.regs.rsp,
        gpr: first.regs.gpr,
    };
    let mut pcs = vec![regs.rip];
    while pcs.len() < MAX_FRAMES {
        // A return address points after the call: look up the call itself.
        let lookup = if pcs.len() == 1 {
            regs.rip
        } else {
            regs.rip.wrapping_sub(1)
        }
        .wrapping_sub(bias);
        let next = cfi
            .as_ref()
            .and_then(|c| c.step(lookup, &regs, &stack))
            .or_else(|| frame_pointer_step(&regs, &stack));
        match next {
            Some(n) if n.rip != 0 && n.rsp > regs.rsp => {
                pcs.push(n.rip);
                regs = n;
            }
            _ => break,
        }
    }
    pcs
}

/// The frame-pointer chain: `[rbp]` is the caller's rbp, `[rbp+8]` the return address.
fn frame_pointer_step(regs: &UnwindRegs, stack: &Stack<'_>) -> Option<UnwindRegs> {
    let rbp = regs.gpr[RBP];
    if rbp < regs.rsp {
        return None;
    }
    let mut next = *regs;
    next.rip = stack.u64_at(rbp.checked_add(8)?)?;
    next.gpr[RBP] = stack.u64_at(rbp)?;
    next.rsp = rbp + 16;
    Some(next)
}

/// Names for addresses of one program.
pub struct Symbolizer<'a> {
    dwarf: Option<addr2line::Context<gimli::EndianSlice<'a, gimli::LittleEndian>>>,
    symbols: Vec<(u64, u64, String)>,
    bias: u64,
}

impl<'a> Symbolizer<'a> {
    /// A symbolizer for `program` (an ELF) loaded at `bias`.
    pub fn new(program: &'a [u8], bias: u64) -> Symbolizer<'a> {
        let Ok(obj) = object::File::parse(program) else {
            return Symbolizer {
                dwarf: None,
                symbols: Vec::new(),
                bias,
            };
        };
        let load = |id: gimli::SectionId| -> Result<gimli::EndianSlice<'a, gimli::LittleEndian>, gimli::Error> {
            let data: &'a [u8] = obj
                .section_by_name(id.name())
                .and_then(|s| s.data().ok())
                .unwrap_or(&[]);
            Ok(gimli::EndianSlice::new(data, gimli::LittleEndian))
        };
        let dwarf = gimli::Dwarf::load(load)
            .ok()
            .and_then(|d| addr2line::Context::from_dwarf(d).ok());
        let mut symbols: Vec<(u64, u64, String)> = obj
            .symbols()
            .filter(|s| s.kind() == object::SymbolKind::Text && s.address() != 0)
            .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_string())))
            .collect();
        symbols.sort();
        Symbolizer {
            dwarf,
            symbols,
            bias,
        }
    }

    /// The frames at running address `pc` (several when functions were inlined there).
    /// `call` says `pc` is a return address, so the call before it is looked up.
    pub fn frames(&self, pc: u64, call: bool) -> Vec<Frame> {
        let probe = pc.wrapping_sub(self.bias).wrapping_sub(u64::from(call));
        let mut out = Vec::new();
        if let Some(ctx) = &self.dwarf {
            if let Ok(mut it) = ctx.find_frames(probe).skip_all_loads() {
                while let Ok(Some(f)) = it.next() {
                    let function = f
                        .function
                        .as_ref()
                        .and_then(|n| n.demangle().ok().map(|c| c.into_owned()));
                    let location = f
                        .location
                        .as_ref()
                        .and_then(|l| Some(format!("{}:{}", short_path(l.file?), l.line?)));
                    out.push(Frame {
                        pc,
                        function,
                        location,
                        inlined: true,
                    });
                }
            }
        }
        if let Some(last) = out.last_mut() {
            last.inlined = false;
            // Line tables name functions without their path: the symbol table has it.
            if let (Some(short), Some(full)) = (&last.function, self.symbol_name(probe)) {
                if full.ends_with(short.as_str()) {
                    last.function = Some(full);
                }
            }
        }
        if out.iter().all(|f| f.function.is_none()) {
            let location = out.first().and_then(|f| f.location.clone());
            out = vec![Frame {
                pc,
                function: self.nearest_symbol(probe),
                location,
                inlined: false,
            }];
        }
        out
    }

    /// The symbol at or before `addr` (a link-time address) and the offset into it.
    fn symbol(&self, addr: u64) -> Option<(String, u64)> {
        let i = self.symbols.partition_point(|s| s.0 <= addr);
        let (start, size, name) = self.symbols.get(i.checked_sub(1)?)?;
        if *size != 0 && addr >= start + size {
            return None;
        }
        // `{:#}` leaves out Rust's hash suffix.
        let name = format!("{:#}", rustc_demangle::demangle(name));
        Some((name, addr - start))
    }

    /// The demangled name of the symbol containing `addr`.
    fn symbol_name(&self, addr: u64) -> Option<String> {
        self.symbol(addr).map(|(n, _)| n)
    }

    /// `name+0xOFF` of the symbol at or before `addr` (a link-time address).
    fn nearest_symbol(&self, addr: u64) -> Option<String> {
        self.symbol(addr).map(|(name, off)| match off {
            0 => name,
            off => format!("{name}+{off:#x}"),
        })
    }
}

/// Paths as a reader wants them: the toolchain's sources from `library/`, a crate's from
/// its registry directory name onwards, the program's own relative to the directory `run`
/// runs in (a project's root) when it lies below it.
fn short_path(file: &str) -> String {
    if let Ok(cwd) = std::env::current_dir() {
        if let Ok(rel) = std::path::Path::new(file).strip_prefix(&cwd) {
            return rel.display().to_string();
        }
    }
    for marker in ["/library/", "/registry/src/"] {
        if let Some((_, rest)) = file.split_once(marker) {
            return match marker {
                "/registry/src/" => rest.split_once('/').map_or(rest, |(_, r)| r).to_string(),
                _ => rest.to_string(),
            };
        }
    }
    file.to_string()
}

/// Signal names for reports.
pub fn signal_name(sig: u32) -> String {
    const NAMES: [&str; 32] = [
        "0",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    NAMES
        .get(sig as usize)
        .map_or_else(|| format!("signal {sig}"), |n| n.to_string())
}

/// One backtrace line: `  #N  0xADDR in FUNCTION at FILE:LINE`.
pub fn frame_line(n: usize, f: &Frame) -> String {
    let mut s = format!("  #{n:<2} {:#018x}", f.pc);
    if let Some(func) = &f.function {
        let _ = write!(s, " in {func}");
    }
    if let Some(loc) = &f.location {
        let _ = write!(s, " at {loc}");
    }
    if f.inlined {
        s.push_str(" (inlined)");
    }
    s
}

fn regs_line(r: &Regs) -> String {
    let mut s = format!("rip {:#x} rsp {:#x} rflags {:#x}", r.rip, r.rsp, r.rflags);
    for (name, v) in GPR_NAMES.iter().zip(r.gpr) {
        let _ = write!(s, " {name} {v:#x}");
    }
    s
}

/// The report for a crash of `program`: the crashed thread's backtrace and registers, and
/// every other thread's registers and location. Lines end with `\n`.
pub fn report(program: &[u8], crash: &Crash) -> String {
    let sym = Symbolizer::new(program, crash.load_bias);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "backtrace of thread {} ({}{}):",
        crash.tid,
        signal_name(crash.signal),
        crash
            .fault_addr
            .map(|a| format!(" at address {a:#x}"))
            .unwrap_or_default()
    );
    let mut frames = Vec::new();
    for (i, pc) in unwind(program, crash).into_iter().enumerate() {
        frames.extend(sym.frames(pc, i > 0));
    }
    // As Rust's own short backtraces: the runtime's frames below the program's `main`.
    let shown = frames
        .iter()
        .position(|f| {
            f.function
                .as_deref()
                .is_some_and(|n| n.contains("__rust_begin_short_backtrace"))
        })
        .unwrap_or(frames.len());
    for (n, f) in frames[..shown].iter().enumerate() {
        let _ = writeln!(out, "{}", frame_line(n, f));
    }
    if shown < frames.len() {
        let _ = writeln!(
            out,
            "  ({} frames of the Rust runtime left out)",
            frames.len() - shown
        );
    }
    for t in &crash.threads {
        let _ = writeln!(out, "thread {}: {}", t.tid, regs_line(&t.regs));
        if t.tid != crash.tid {
            if let Some(f) = sym.frames(t.regs.rip, false).last() {
                let _ = writeln!(out, "{}", frame_line(0, f));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_abi::record::ThreadState;

    #[test]
    fn signal_names() {
        assert_eq!(signal_name(11), "SIGSEGV");
        assert_eq!(signal_name(6), "SIGABRT");
        assert_eq!(signal_name(99), "signal 99");
    }

    #[test]
    fn paths_are_shortened() {
        assert_eq!(
            short_path("/rustc/abc/library/std/src/rt.rs"),
            "std/src/rt.rs"
        );
        assert_eq!(
            short_path(
                "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.0/src/lib.rs"
            ),
            "tokio-1.0/src/lib.rs"
        );
        assert_eq!(short_path("src/main.rs"), "src/main.rs");
    }

    #[test]
    fn frame_pointers_unwind_without_cfi() {
        // Two frames: rbp chain at 0x1000 -> 0x1020 -> 0 (end).
        let mut stack = vec![0u8; 0x40];
        let put =
            |s: &mut Vec<u8>, off: usize, v: u64| s[off..off + 8].copy_from_slice(&v.to_le_bytes());
        put(&mut stack, 0x10, 0x1030); // [rbp] = caller's rbp
        put(&mut stack, 0x18, 0x401234); // return address
        put(&mut stack, 0x30, 0); // caller's caller rbp
        let mut gpr = [0; 15];
        gpr[RBP] = 0x1010;
        let crash = Crash {
            signal: 11,
            code: 1,
            fault_addr: Some(0),
            tid: 1,
            load_bias: 0,
            threads: vec![ThreadState {
                tid: 1,
                regs: Regs {
                    rip: 0x401000,
                    rsp: 0x1000,
                    rflags: 0,
                    gpr,
                },
            }],
            stack_addr: 0x1000,
            stack,
        };
        let pcs = unwind(b"not an elf", &crash);
        assert_eq!(pcs, vec![0x401000, 0x401234]);
        let r = report(b"not an elf", &crash);
        assert!(
            r.starts_with("backtrace of thread 1 (SIGSEGV at address 0x0):\n"),
            "{r}"
        );
        assert!(r.contains("#0  0x0000000000401000\n"), "{r}");
        assert!(r.contains("thread 1: rip 0x401000 rsp 0x1000"), "{r}");
    }
}
