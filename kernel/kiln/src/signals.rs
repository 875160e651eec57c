//! Running the program's signal handlers: frames built on the way back to user mode,
//! system calls interrupted for a handler, and `rt_sigreturn`.

use kiln_hal::context::{FxArea, UserContext};
use kiln_os::sigframe::{self, UserState};
use kiln_os::syscall::signal::{restart, Fate, ThreadSignals};

use crate::{fault, Kernel};

fn to_os(ctx: &UserContext) -> UserState {
    UserState {
        regs: ctx.regs,
        fx: ctx.fx.0,
    }
}

fn from_os(s: &UserState) -> UserContext {
    UserContext {
        regs: s.regs,
        fx: FxArea(s.fx),
    }
}

/// The signal state of thread `tid`.
fn thread(k: &mut Kernel, tid: u32) -> Option<&mut ThreadSignals> {
    k.machine.sched.state(tid).map(|t| &mut t.signals)
}

/// Whether a signal waits for its handler in the running thread.
pub fn pending(k: &mut Kernel) -> bool {
    let tid = k.machine.current_tid();
    has_queued(k, tid)
}

/// Whether a signal waits for its handler in thread `tid`.
pub fn has_queued(k: &mut Kernel, tid: u32) -> bool {
    thread(k, tid).is_some_and(|t| t.has_queued())
}

/// Finishes the system call of thread `tid` (registers `ctx`, `rax` still the call's
/// number) that a signal handler interrupted: by Linux's rules it starts again after the
/// handler (the frame resumes at the `syscall` instruction) or fails with `EINTR`.
/// `deadline` is its wait's, for the sleeps that report the time left.
pub fn interrupted(k: &mut Kernel, tid: u32, ctx: &mut UserContext, deadline: Option<u64>) {
    let nr = ctx.regs.rax;
    let flags = match k.machine.sched.state(tid) {
        Some(t) => k.process.signals.next_handler_flags(&t.signals),
        None => None,
    };
    if restart::starts_again(nr, flags) {
        // `syscall` is two bytes long; rax still holds the number.
        ctx.regs.rip -= 2;
    } else {
        let a = ctx.regs.syscall_args();
        ctx.regs.rax = restart::interrupted(&mut k.process, &mut k.machine, nr, a, deadline) as u64;
    }
}

/// Sets up the frames of every queued signal the thread does not block, so that it runs
/// the handlers before going on, and makes sure the thread resumes at a user address. A
/// frame that cannot be written (bad stack) kills the program with SIGSEGV, as Linux does.
///
/// Every return to user mode other than straight back after a system call passes here, so
/// this is where a program-chosen RIP (from `rt_sigreturn` or a handler's address) is
/// checked: an address outside user space is never returned to; the program gets the
/// SIGSEGV Linux would deliver when the return faults.
pub fn deliver(k: &mut Kernel, ctx: &mut UserContext) {
    let tid = k.machine.current_tid();
    loop {
        deliver_queued(k, tid, ctx);
        let Some(info) = sigframe::check_resume(ctx.regs.rip) else {
            return;
        };
        let queued = match k.machine.sched.state(tid) {
            Some(t) => k.process.signals.queue_fault(&mut t.signals, info),
            None => false,
        };
        if !queued {
            crate::console::line(
                crate::console::routes().stderr,
                format_args!(
                    "program killed by SIGSEGV: cannot resume at {:#x}, outside user space",
                    ctx.regs.rip
                ),
            );
            crate::end(k, kiln_abi::exit::killed_by(11));
        }
    }
}

fn deliver_queued(k: &mut Kernel, tid: u32, ctx: &mut UserContext) {
    loop {
        let Some(t) = k.machine.sched.state(tid) else {
            return;
        };
        let Some((act, info)) = k.process.signals.next_queued(&mut t.signals) else {
            // A sigsuspend whose wait no handler ended gets its mask back.
            if let Some(saved) = t.signals.suspend_saved.take() {
                t.signals.set_mask(saved);
            }
            return;
        };
        let old_mask = t.signals.frame_mask();
        let mut state = to_os(ctx);
        match sigframe::deliver(
            &mut k.process,
            &mut k.machine,
            &mut state,
            &act,
            &info,
            old_mask,
        ) {
            Ok(mask) => {
                if let Some(t) = thread(k, tid) {
                    t.set_mask(mask);
                }
                *ctx = from_os(&state);
            }
            Err(_) => {
                crate::console::line(
                    crate::console::routes().stderr,
                    format_args!(
                        "program killed by SIGSEGV: cannot run the handler of signal {} (stack at {:#x} unusable)",
                        info.signo, ctx.regs.rsp
                    ),
                );
                crate::end(k, kiln_abi::exit::killed_by(11));
            }
        }
    }
}

/// `rt_sigreturn`: the registers and mask saved in the frame at `rsp`. A frame that cannot
/// be read or restored (a kernel code selector, a bad stack selector) kills the program
/// with SIGSEGV. Signals the restored mask lets through are acted on.
pub fn sigreturn(k: &mut Kernel, rsp: u64) -> UserContext {
    match sigframe::sigreturn(&mut k.process, &mut k.machine, rsp) {
        Ok((state, mask)) => {
            let tid = k.machine.current_tid();
            if let Some(t) = thread(k, tid) {
                t.set_mask(mask);
            }
            if let Some(Fate::Killed(sig)) = k.process.signals.deliver_pending(&mut k.machine) {
                fault::report_signal(sig);
                crate::end(k, kiln_abi::exit::killed_by(sig));
            }
            from_os(&state)
        }
        Err(_) => {
            fault::report_signal(11);
            crate::end(k, kiln_abi::exit::killed_by(11))
        }
    }
}
