//! Crash reports: the kernel's crash record ([`kiln_abi::record::Crash`]) explained with the
//! program's own ELF: a backtrace unwound with its `.eh_frame` (gimli's call-frame
//! information, the way crash reporters do it, so release builds without frame pointers
//! unwind too; frame pointers where no CFI covers an address), symbolized from its DWARF
//! (addr2line: functions, inlined frames, files and lines) or, without DWARF, from its
//! symbol table (the nearest symbol and an offset). Stripped programs get addresses.

use kiln_abi::record::{Crash, Regs, GPR_NAMES};
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

/// Unwinds the crashed thread: the return addresses (running addresses), innermost first.
pub fn unwind(program: &[u8], crash: &Crash) -> Vec<u64> {
    let Some(first) = crash.threads.first() else {
        return Vec::new();
    };
    let cfi = kiln_abi::unwind::Cfi::from_elf(program, crash.load_bias);
    let stack = Stack {
        base: crash.stack_addr,
        bytes: &crash.stack,
    };
    kiln_abi::unwind::walk(cfi.as_ref(), &first.regs, MAX_FRAMES, |a| stack.u64_at(a))
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
        Symbolizer::with(program, bias, false)
    }

    /// A symbolizer for Kiln's kernel ELF (linked where it runs): as [`Symbolizer::new`],
    /// and its assembly entry points (`kiln_syscall_entry`, the interrupt stubs), whose
    /// symbols are untyped labels in `.text`, have names too.
    pub fn for_kernel(kernel: &'a [u8]) -> Symbolizer<'a> {
        Symbolizer::with(kernel, 0, true)
    }

    fn with(program: &'a [u8], bias: u64, labels: bool) -> Symbolizer<'a> {
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
            .filter(|s| {
                let label = labels
                    && s.kind() == object::SymbolKind::Unknown
                    && s.section_index()
                        .and_then(|i| obj.section_by_index(i).ok())
                        .is_some_and(|sec| sec.kind() == object::SectionKind::Text);
                (s.kind() == object::SymbolKind::Text || label) && s.address() != 0
            })
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
    kiln_abi::exit::signal_name(sig).map_or_else(|| format!("signal {sig}"), str::to_string)
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
    fn a_report_without_cfi_follows_frame_pointers() {
        use kiln_abi::record::RBP;
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
