//! A graceful stop: the virtual machine's power button (`kiln_hal::power`), pressed by the
//! host (`run`'s Ctrl-C, `stop`) or a cloud, becomes SIGTERM for the program, as systemd
//! does on Linux. It is process-directed: a thread that does not block it takes it, and
//! one blocked in a system call is interrupted to run the handler. A program that handles
//! it ends in its own time with its own status; one that does not dies of it (143).

use kiln_os::sigframe::SigInfo;
use kiln_os::syscall::signal::send::user_info;
use kiln_os::syscall::signal::Fate;

use crate::{console, fault, Kernel};

/// SIGTERM.
const SIGTERM: u32 = 15;

/// Acts on a press of the power button since the last look.
pub fn check(k: &mut Kernel) {
    if !kiln_hal::power::take_press() {
        return;
    }
    console::info(format_args!("power button pressed: SIGTERM to the program"));
    // From outside the machine, as `docker stop`'s is from outside the container: no
    // sender the program could name (`si_pid` 0; 1 would be the program itself).
    let info = SigInfo {
        addr_or_pid: 0,
        ..user_info(SIGTERM)
    };
    if let Fate::Killed(sig) = k.process.signals.send_info(&mut k.machine, info) {
        fault::report_signal(sig);
        crate::end(k, kiln_abi::exit::killed_by(sig));
    }
}
