//! Exceptions raised by the program: demand paging, or a crash report and the end of the run.

use kiln_hal::context::{FxArea, UserContext};
use kiln_hal::trap::{exception_name, TrapFrame, UserFault};
use kiln_os::sigframe::SigInfo;
use kiln_os::vm::Access;

use crate::{console, finish, signals};

/// Runs the program's handler for fault signal `signo`, if it has one that is not blocked:
/// the trap frame then resumes in the handler.
fn run_handler(frame: &mut TrapFrame, fx: &mut FxArea, info: SigInfo) -> bool {
    let mut held = crate::lock();
    let Some(k) = held.get() else {
        return false;
    };
    let tid = k.machine.current_tid();
    let queued = match k.machine.sched.state(tid) {
        Some(t) => k.process.signals.queue_fault(&mut t.signals, info),
        None => false,
    };
    if !queued {
        return false;
    }
    let mut ctx = UserContext::from_trap(frame, fx);
    signals::deliver(k, &mut ctx);
    ctx.to_trap(frame, fx);
    true
}

/// Linux signal numbers used for faults.
mod sig {
    pub const SIGILL: u8 = 4;
    pub const SIGTRAP: u8 = 5;
    pub const SIGBUS: u8 = 7;
    pub const SIGFPE: u8 = 8;
    pub const SIGSEGV: u8 = 11;
}

fn signal_name(sig: u8) -> &'static str {
    kiln_abi::exit::signal_name(u32::from(sig)).unwrap_or("signal")
}

/// Reports on the program's stderr that it was killed by `sig`.
pub fn report_signal(sig: u8) {
    console::line(
        console::routes().stderr,
        format_args!("program killed by {} (signal {sig})", signal_name(sig)),
    );
}

/// Handles an exception raised in user mode.
pub fn on_user_fault(frame: &mut TrapFrame, fx: &mut FxArea, cr2: u64) -> UserFault {
    if frame.vector == 14 {
        let access = if frame.error & (1 << 4) != 0 {
            Access::Exec
        } else if frame.error & (1 << 1) != 0 {
            Access::Write
        } else {
            Access::Read
        };
        let result = {
            let mut held = crate::lock();
            let k = held.get().expect("fault before the kernel was ready");
            // Demand paging is system time, as on Linux.
            k.machine.sched.charge(kiln_hal::time::ticks(), true);
            let r = k
                .process
                .vm
                .handle_fault(&mut kiln_hal_pages(), cr2, access);
            k.machine.sched.charge(kiln_hal::time::ticks(), false);
            r
        };
        crate::control::PAGE_FAULTS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        match result {
            Ok(()) => return UserFault::Resume,
            Err(why) => {
                let what = match access {
                    Access::Read => "read",
                    Access::Write => "write",
                    Access::Exec => "execute",
                };
                let signal = why.signal();
                let info = SigInfo {
                    signo: signal as i32,
                    code: why.si_code(),
                    addr_or_pid: cr2,
                    value: 0,
                };
                if signal == sig::SIGSEGV && run_handler(frame, fx, info) {
                    return UserFault::Resume;
                }
                console::line(
                    console::routes().stderr,
                    format_args!(
                        "program killed by {}: invalid {what} at address {cr2:#x} ({why}), ip {:#x}",
                        signal_name(signal),
                        frame.rip
                    ),
                );
                if why == kiln_os::vm::Fault::OutOfMemory {
                    // Where the memory is, so the fix (more --memory, fewer connections)
                    // can be chosen.
                    let mib = |b: u64| b >> 20;
                    console::line(
                        console::routes().stderr,
                        format_args!(
                            "memory: {} MiB in all, {} MiB in use, kernel heap {} MiB in use and {} MiB held free: give the machine more --memory",
                            mib(kiln_hal::frames::total_bytes()),
                            mib(kiln_hal::frames::used_bytes()),
                            mib(kiln_hal::heap::in_use_bytes() as u64),
                            mib(kiln_hal::heap::slack_bytes() as u64),
                        ),
                    );
                }
                report_crash(frame, fx, info);
                die(signal);
            }
        }
    }
    let (signal, code) = match frame.vector {
        0 => (sig::SIGFPE, 1), // FPE_INTDIV
        16 | 19 => (sig::SIGFPE, 0),
        6 => (sig::SIGILL, 2),      // ILL_ILLOPN
        1 | 3 => (sig::SIGTRAP, 1), // TRAP_BRKPT
        17 => (sig::SIGBUS, 1),     // BUS_ADRALN
        // Segment not present, stack fault (a non-canonical stack pointer): Linux sends
        // SIGBUS with SI_KERNEL.
        11 | 12 => (sig::SIGBUS, 128),
        _ => (sig::SIGSEGV, 128), // SI_KERNEL, as Linux reports a general protection fault
    };
    let info = SigInfo {
        signo: signal as i32,
        code,
        addr_or_pid: if signal == sig::SIGSEGV { 0 } else { frame.rip },
        value: 0,
    };
    if run_handler(frame, fx, info) {
        return UserFault::Resume;
    }
    console::line(
        console::routes().stderr,
        format_args!(
            "program killed by {}: {} at ip {:#x} (rsp {:#x})",
            signal_name(signal),
            exception_name(frame.vector),
            frame.rip,
            frame.rsp
        ),
    );
    report_crash(frame, fx, info);
    die(signal)
}

/// Ends the program killed by `signal`, its shared mappings written back first as every
/// end does ([`crate::end`]).
fn die(signal: u8) -> ! {
    let status = kiln_abi::exit::killed_by(signal);
    let mut held = crate::lock();
    match held.get() {
        Some(k) => crate::end(k, status),
        None => finish(status),
    }
}

/// Sends the crash record of the faulting thread (see [`crate::crash`]).
fn report_crash(frame: &TrapFrame, fx: &FxArea, info: SigInfo) {
    let mut held = crate::lock();
    let Some(k) = held.get() else {
        return;
    };
    let ctx = UserContext::from_trap(frame, fx);
    let tid = k.machine.current_tid();
    let addr = matches!(info.signo, 4 | 7 | 8 | 11).then_some(info.addr_or_pid);
    crate::crash::report(k, tid, &ctx, info.signo as u8, info.code, addr);
}

fn kiln_hal_pages() -> crate::machine::HalPages {
    crate::machine::HalPages
}
