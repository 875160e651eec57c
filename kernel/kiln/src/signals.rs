//! Running the program's signal handlers: frames built on the way back to user mode, and
//! `rt_sigreturn`.

use kiln_hal::context::{FxArea, UserContext};
use kiln_os::sigframe::{self, UserState};

use crate::{fault, finish, Kernel};

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

/// Whether a queued signal waits for its handler.
pub fn pending(k: &Kernel) -> bool {
    k.process.signals.has_queued()
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
    loop {
        deliver_queued(k, ctx);
        let Some(info) = sigframe::check_resume(ctx.regs.rip) else {
            return;
        };
        if !k.process.signals.queue_fault(info) {
            crate::console::line(
                crate::console::routes().stderr,
                format_args!(
                    "program killed by SIGSEGV: cannot resume at {:#x}, outside user space",
                    ctx.regs.rip
                ),
            );
            finish(kiln_abi::exit::killed_by(11));
        }
    }
}

fn deliver_queued(k: &mut Kernel, ctx: &mut UserContext) {
    while let Some((act, info)) = k.process.signals.next_queued() {
        let mut state = to_os(ctx);
        let old_mask = k.process.signals.frame_mask();
        match sigframe::deliver(
            &mut k.process,
            &mut k.machine,
            &mut state,
            &act,
            &info,
            old_mask,
        ) {
            Ok(mask) => {
                k.process.signals.set_mask(mask);
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
                finish(kiln_abi::exit::killed_by(11));
            }
        }
    }
}

/// `rt_sigreturn`: the registers and mask saved in the frame at `rsp`. A frame that cannot
/// be read or restored (a kernel code selector, a bad stack selector) kills the program
/// with SIGSEGV.
pub fn sigreturn(k: &mut Kernel, rsp: u64) -> UserContext {
    match sigframe::sigreturn(&mut k.process, &mut k.machine, rsp) {
        Ok((state, mask)) => {
            k.process.signals.set_mask(mask);
            from_os(&state)
        }
        Err(_) => {
            fault::report_signal(11);
            finish(kiln_abi::exit::killed_by(11))
        }
    }
}
