//! A graceful stop: the virtual machine's power button (`kiln_hal::power`), pressed by the
//! host (`run`'s Ctrl-C, `stop`) or a cloud, becomes SIGTERM for the program, as systemd
//! does on Linux. It is process-directed: a thread that does not block it takes it, and
//! one blocked in a system call is interrupted to run the handler. A program that handles
//! it ends in its own time with its own status; one that does not dies of it (143).

use kiln_os::syscall::signal::Fate;

use crate::{console, fault, finish, Kernel};

/// SIGTERM.
const SIGTERM: u32 = 15;

/// Acts on a press of the power button since the last look.
pub fn check(k: &mut Kernel) {
    if !kiln_hal::power::take_press() {
        return;
    }
    console::info(format_args!("power button pressed: SIGTERM to the program"));
    if let Fate::Killed(sig) = k.process.signals.send(&mut k.machine, SIGTERM) {
        fault::report_signal(sig);
        crate::machine::net::flush(k);
        finish(kiln_abi::exit::killed_by(sig));
    }
}
