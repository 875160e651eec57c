//! Crash records: when the program dies of a signal, the kernel sends the host the raw state
//! it needs to explain the crash (every thread's registers, the crashed thread's stack bytes,
//! the load bias) as one `kiln_abi::record` on the records channel (`kiln.records=PORT`).
//! Unwinding and symbolizing happen on the host, so none of it makes the kernel bigger.

use core::sync::atomic::{AtomicU64, Ordering};

use kiln_abi::cmdline::Sink;
use kiln_abi::record::{self, Crash, Regs, ThreadState};
use kiln_hal::context::UserContext;

use crate::{console, Kernel};

/// Most stack bytes sent for the crashed thread (enough for about a hundred frames).
const STACK_BYTES: usize = 64 * 1024;

static LOAD_BIAS: AtomicU64 = AtomicU64::new(0);
/// `kiln.core`: the most bytes of memory to send for a core file (0: none).
static CORE_LIMIT: AtomicU64 = AtomicU64::new(0);

/// Sets the core-size limit (`kiln.core`); 0 sends no memory.
pub fn set_core_limit(bytes: u64) {
    CORE_LIMIT.store(bytes, Ordering::Relaxed);
}

/// Signals whose default action dumps core on Linux.
fn dumps_core(signal: u8) -> bool {
    matches!(signal, 3..=8 | 11 | 24 | 25 | 31)
}

/// Records where the program was loaded (for the host's symbolizer).
pub fn set_load_bias(bias: u64) {
    LOAD_BIAS.store(bias, Ordering::Relaxed);
}

fn regs(ctx: &UserContext) -> Regs {
    ctx.regs.into()
}

/// Sends a crash record: thread `tid` (registers `ctx`) made the program die of `signal`
/// (`code`, `fault_addr` as in its `siginfo`). Nothing happens without a records channel.
pub fn report(
    k: &mut Kernel,
    tid: u32,
    ctx: &UserContext,
    signal: u8,
    code: i32,
    fault_addr: Option<u64>,
) {
    let sink = console::routes().records;
    if sink == Sink::Off {
        return;
    }
    let mut threads = alloc::vec![ThreadState {
        tid,
        regs: regs(ctx),
    }];
    let others: alloc::vec::Vec<u32> = k.machine.sched.tids().collect();
    for other in others {
        if other == tid || threads.len() >= record::MAX_THREADS {
            continue;
        }
        if let Some(c) = k.machine.sched.ctx(other) {
            threads.push(ThreadState {
                tid: other,
                regs: regs(c),
            });
        }
    }
    let rsp = ctx.regs.rsp;
    let stack = read_stack(k, rsp);
    let crash = Crash {
        signal: u32::from(signal),
        code,
        fault_addr,
        tid,
        load_bias: LOAD_BIAS.load(Ordering::Relaxed),
        threads,
        stack_addr: rsp,
        stack,
    };
    console::write(sink, &crash.encode());
    let limit = CORE_LIMIT.load(Ordering::Relaxed);
    if limit > 0 && dumps_core(signal) {
        send_memory(k, sink, limit);
    }
}

/// Sends the program's writable memory and stacks (what Linux's default `coredump_filter`
/// keeps), at most `limit` bytes of it, as a memory record. Pages never touched are sent
/// as zeros without being faulted in.
fn send_memory(k: &mut Kernel, sink: Sink, limit: u64) {
    use kiln_abi::record::{Memory, Region};
    use kiln_os::machine::PageTable;
    use kiln_os::vm::VmaKind;
    let mut left = limit;
    let mut regions = alloc::vec::Vec::new();
    for (start, vma) in k.process.vm.vmas() {
        let keep = vma.prot.read && (vma.prot.write || vma.kind == VmaKind::Stack);
        if !keep || regions.len() >= 4096 {
            continue;
        }
        let size = vma.end - start;
        let sent = size.min(left) & !0xfff;
        left -= sent;
        let kind = match vma.kind {
            VmaKind::Stack => record::REGION_STACK,
            VmaKind::Heap => record::REGION_HEAP,
            VmaKind::Program => record::REGION_PROGRAM,
            _ => record::REGION_ANON,
        };
        let prot = 4 | if vma.prot.write { 2 } else { 0 } | if vma.prot.exec { 1 } else { 0 };
        regions.push(Region {
            start,
            end: vma.end,
            prot,
            kind,
            sent,
        });
    }
    let len = Memory::body_len(&regions);
    let Ok(len) = u32::try_from(len) else {
        return;
    };
    console::write(sink, &record::header(record::Kind::Memory, len));
    console::write(sink, &Memory::encode_head(&regions));
    let pages = crate::machine::HalPages;
    let mut page = [0u8; 4096];
    for r in &regions {
        let mut at = r.start;
        while at < r.start + r.sent {
            if pages.query(at).is_some() {
                pages.read(at, &mut page);
            } else {
                page.fill(0);
            }
            console::write(sink, &page);
            at += 4096;
        }
    }
}

/// The bytes from `rsp` to the end of its region (at most [`STACK_BYTES`]); empty when
/// the stack pointer points nowhere readable.
fn read_stack(k: &mut Kernel, rsp: u64) -> alloc::vec::Vec<u8> {
    let Some((_, vma)) = k.process.vm.find(rsp) else {
        return alloc::vec::Vec::new();
    };
    let len = (vma.end - rsp).min(STACK_BYTES as u64) as usize;
    let mut buf = alloc::vec::Vec::new();
    if buf.try_reserve_exact(len).is_err() {
        return buf;
    }
    buf.resize(len, 0);
    let mut pages = crate::machine::HalPages;
    match k.process.vm.copy_from_user(&mut pages, rsp, &mut buf) {
        Ok(()) => buf,
        Err(_) => alloc::vec::Vec::new(),
    }
}
