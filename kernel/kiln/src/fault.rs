//! Exceptions raised by the program: demand paging, or a crash report and the end of the run.

use kiln_hal::trap::{exception_name, TrapFrame, UserFault};
use kiln_os::vm::Access;

use crate::{console, finish, KERNEL};

/// Linux signal numbers used for faults.
mod sig {
    pub const SIGILL: u8 = 4;
    pub const SIGTRAP: u8 = 5;
    pub const SIGBUS: u8 = 7;
    pub const SIGFPE: u8 = 8;
    pub const SIGSEGV: u8 = 11;
}

fn signal_name(sig: u8) -> &'static str {
    match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => "signal",
    }
}

/// Reports on the program's stderr that it was killed by `sig`.
pub fn report_signal(sig: u8) {
    console::line(
        console::routes().stderr,
        format_args!("program killed by {} (signal {sig})", signal_name(sig)),
    );
}

/// Handles an exception raised in user mode.
pub fn on_user_fault(frame: &mut TrapFrame, cr2: u64) -> UserFault {
    if frame.vector == 14 {
        let access = if frame.error & (1 << 4) != 0 {
            Access::Exec
        } else if frame.error & (1 << 1) != 0 {
            Access::Write
        } else {
            Access::Read
        };
        let result = {
            let mut guard = KERNEL.lock();
            let k = guard.as_mut().expect("fault before the kernel was ready");
            k.process
                .vm
                .handle_fault(&mut kiln_hal_pages(), cr2, access)
        };
        match result {
            Ok(()) => return UserFault::Resume,
            Err(why) => {
                let what = match access {
                    Access::Read => "read",
                    Access::Write => "write",
                    Access::Exec => "execute",
                };
                let signal = why.signal();
                console::line(
                    console::routes().stderr,
                    format_args!(
                        "program killed by {}: invalid {what} at address {cr2:#x} ({why}), ip {:#x}",
                        signal_name(signal),
                        frame.rip
                    ),
                );
                finish(kiln_abi::exit::killed_by(signal));
            }
        }
    }
    let signal = match frame.vector {
        0 | 16 | 19 => sig::SIGFPE,
        6 => sig::SIGILL,
        1 | 3 => sig::SIGTRAP,
        17 => sig::SIGBUS,
        _ => sig::SIGSEGV,
    };
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
    finish(kiln_abi::exit::killed_by(signal))
}

fn kiln_hal_pages() -> crate::machine::HalPages {
    crate::machine::HalPages
}
