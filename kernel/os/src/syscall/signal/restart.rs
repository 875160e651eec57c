//! What becomes of a system call a signal handler interrupted, by Linux's rules (signal(7),
//! "Interruption of system calls and library functions by signal handlers"): calls that
//! wait for I/O, a child, a lock or a futex start again when the handler was installed
//! with `SA_RESTART` and fail with `EINTR` otherwise; calls that wait for time or for a
//! signal (`poll`, `select`, `epoll_wait`, `nanosleep`, `pause`, `sigsuspend`,
//! `rt_sigtimedwait`) always fail with `EINTR`, sleeps reporting the time left.

use crate::errno::Errno;
use crate::machine::Machine;
use crate::process::Process;
use crate::syscall::write_user;
use crate::sysno;

/// `TIMER_ABSTIME` for `clock_nanosleep`.
const TIMER_ABSTIME: u64 = 1;

/// Whether blocking call `nr` starts again after a handler installed with `SA_RESTART`.
pub fn restarts(nr: u64) -> bool {
    matches!(
        nr,
        sysno::READ
            | sysno::READV
            | sysno::PREAD64
            | sysno::PREADV
            | sysno::PREADV2
            | sysno::WRITE
            | sysno::WRITEV
            | sysno::PWRITE64
            | sysno::PWRITEV
            | sysno::PWRITEV2
            | sysno::IOCTL
            | sysno::OPEN
            | sysno::OPENAT
            | sysno::WAIT4
            | sysno::WAITID
            | sysno::ACCEPT
            | sysno::ACCEPT4
            | sysno::CONNECT
            | sysno::RECVFROM
            | sysno::RECVMSG
            | sysno::RECVMMSG
            | sysno::SENDTO
            | sysno::SENDMSG
            | sysno::SENDMMSG
            | sysno::SENDFILE
            | sysno::SPLICE
            | sysno::TEE
            | sysno::FLOCK
            | sysno::FCNTL
            | sysno::FUTEX
            | sysno::GETRANDOM
    )
}

/// Whether the call is run again: it restarts by [`restarts`] and the handler about to
/// run has `SA_RESTART` (`handler_flags`), or no handler runs at all (the interruption is
/// then invisible, as Linux restarts every call when no handler ran).
pub fn starts_again(nr: u64, handler_flags: Option<u64>) -> bool {
    match handler_flags {
        None => true,
        Some(flags) => flags & super::SA_RESTART != 0 && restarts(nr),
    }
}

/// The result of call `nr` (arguments `a`) that a handler interrupted and that does not
/// start again: the count a blocking write had queued, else `-EINTR`, after writing the
/// time left before `deadline` for the sleeps that report it.
pub fn interrupted(
    p: &mut Process,
    m: &mut dyn Machine,
    nr: u64,
    a: [u64; 6],
    deadline: Option<u64>,
) -> i64 {
    if let Some(w) = m.thread().partial_write.take() {
        if w.call == [nr, a[0], a[1], a[2]] {
            return w.done as i64;
        }
    }
    let rem = match nr {
        sysno::NANOSLEEP => a[1],
        sysno::CLOCK_NANOSLEEP if a[1] & TIMER_ABSTIME == 0 => a[3],
        _ => 0,
    };
    if rem != 0 {
        let left = deadline.map_or(0, |d| d.saturating_sub(m.monotonic_ns()));
        let ts = crate::syscall::time::Timespec::from_ns(left).to_bytes();
        if write_user(p, m, rem, &ts).is_err() {
            return Errno::EFAULT.as_return();
        }
    }
    Errno::EINTR.as_return()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::signal::SA_RESTART;
    use crate::syscall::testutil::*;

    #[test]
    fn io_waits_restart_only_with_sa_restart() {
        for nr in [
            sysno::READ,
            sysno::ACCEPT4,
            sysno::FUTEX,
            sysno::WAIT4,
            sysno::RECVFROM,
        ] {
            assert!(starts_again(nr, Some(SA_RESTART)), "{nr}");
            assert!(!starts_again(nr, Some(0)), "{nr}");
        }
    }

    #[test]
    fn time_and_signal_waits_never_restart() {
        for nr in [
            sysno::EPOLL_WAIT,
            sysno::EPOLL_PWAIT,
            sysno::POLL,
            sysno::PPOLL,
            sysno::SELECT,
            sysno::PSELECT6,
            sysno::NANOSLEEP,
            sysno::CLOCK_NANOSLEEP,
            sysno::PAUSE,
            sysno::RT_SIGSUSPEND,
            sysno::RT_SIGTIMEDWAIT,
        ] {
            assert!(!starts_again(nr, Some(SA_RESTART)), "{nr}");
        }
        // With no handler to run, the interruption is invisible.
        assert!(starts_again(sysno::EPOLL_WAIT, None));
    }

    #[test]
    fn nanosleep_reports_the_time_left() {
        let (mut p, mut m, buf) = setup();
        m.now = 1_000;
        let a = [0, buf, 0, 0, 0, 0];
        let r = interrupted(&mut p, &mut m, sysno::NANOSLEEP, a, Some(2_500_001_000));
        assert_eq!(r, -4);
        assert_eq!(peek64(&mut p, &mut m, buf), 2);
        assert_eq!(peek64(&mut p, &mut m, buf + 8), 500_000_000);
        // clock_nanosleep with TIMER_ABSTIME writes nothing.
        poke(&mut p, &mut m, buf + 16, &[0xff; 16]);
        let a = [1, TIMER_ABSTIME, 0, buf + 16, 0, 0];
        assert_eq!(
            interrupted(&mut p, &mut m, sysno::CLOCK_NANOSLEEP, a, Some(5)),
            -4
        );
        assert_eq!(peek64(&mut p, &mut m, buf + 16), u64::MAX);
        assert_eq!(
            interrupted(&mut p, &mut m, sysno::EPOLL_WAIT, [0; 6], None),
            -4
        );
    }
}
