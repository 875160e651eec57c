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

/// Records where the program was loaded (for the host's symbolizer).
pub fn set_load_bias(bias: u64) {
    LOAD_BIAS.store(bias, Ordering::Relaxed);
}

fn regs(ctx: &UserContext) -> Regs {
    let r = &ctx.regs;
    Regs {
        rip: r.rip,
        rsp: r.rsp,
        rflags: r.rflags,
        gpr: [
            r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12,
            r.r13, r.r14, r.r15,
        ],
    }
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
