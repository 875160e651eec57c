//! Exit statuses, as the runner reports them (shell conventions).

/// The run was stopped because it exceeded its time limit (like `timeout(1)`).
pub const TIMEOUT: u8 = 124;
/// The kernel itself failed (panic, unusable image) or the hypervisor did.
pub const KERNEL_FAILURE: u8 = 125;
/// I/O port of QEMU's `isa-debug-exit` device as the runner configures it.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Status of a program killed by signal `sig` (128 + N, as a shell reports it).
pub const fn killed_by(sig: u8) -> u8 {
    128u8.wrapping_add(sig)
}

/// Linux's name of signal `sig` (`SIGSEGV`), for the kernel's and the host's reports.
pub fn signal_name(sig: u32) -> Option<&'static str> {
    const NAMES: [&str; 31] = [
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
    NAMES.get((sig as usize).checked_sub(1)?).copied()
}

/// I/O port the runner gives the kernel for the exact exit status (`kiln.status=`):
/// QEMU's own exit code carries only `status & 0x7f` through `isa-debug-exit`.
pub const STATUS_PORT: u16 = 0x404;

/// Translates QEMU's process exit code into the program's status, when the guest left
/// through `isa-debug-exit` (QEMU exits with `(value << 1) | 1`).
///
/// QEMU's exit code is truncated to 8 bits, so only statuses below 128 survive; the runner
/// prefers the byte written to [`STATUS_PORT`]. Returns `None` for codes that `isa-debug-exit` cannot produce (QEMU failed or the guest
/// powered off another way).
pub const fn from_qemu_exit(code: i32) -> Option<u8> {
    if code > 0 && code % 2 == 1 && code <= 255 {
        Some(((code - 1) / 2) as u8)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        assert_eq!(signal_name(1), Some("SIGHUP"));
        assert_eq!(signal_name(11), Some("SIGSEGV"));
        assert_eq!(signal_name(27), Some("SIGPROF"));
        assert_eq!(signal_name(31), Some("SIGSYS"));
        assert_eq!(signal_name(0), None);
        assert_eq!(signal_name(32), None);
    }

    #[test]
    fn qemu_codes_round_trip() {
        for status in 0..=127u8 {
            let qemu = ((status as i32) << 1) | 1;
            assert_eq!(from_qemu_exit(qemu), Some(status));
        }
        assert_eq!(from_qemu_exit(0), None);
        assert_eq!(from_qemu_exit(2), None);
        assert_eq!(from_qemu_exit(-1), None);
        assert_eq!(killed_by(11), 139);
        assert_eq!(killed_by(6), 134);
    }
}
