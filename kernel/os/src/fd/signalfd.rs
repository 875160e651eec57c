//! `signalfd`: pending signals read as 128-byte `struct signalfd_siginfo` records.
//!
//! A read takes the calling thread's pending signals of the descriptor's mask, then the
//! process's. Readiness (`poll`, `epoll`) sees the process's pending set only, which is
//! where the signals programs read this way (SIGTERM, SIGINT, SIGCHLD sent to the process)
//! wait; the program must block them, as on Linux.

use alloc::sync::Arc;
use spin::Mutex;

use super::file::{Access, FileLike};
use super::poll::{POLLIN, POLLRDNORM};
use super::{anon_stat, OpenFile, Waitable, O_CLOEXEC, O_NONBLOCK, O_RDWR};
use crate::errno::{Errno, KResult};
use crate::fs::Stat;
use crate::machine::Machine;
use crate::process::Process;
use crate::sigframe::SigInfo;
use crate::syscall::read_user;
use crate::syscall::signal::send::SIGNAL_OBJECT;
use crate::syscall::signal::{ProcessPending, SIGSET_SIZE, UNBLOCKABLE};

/// Size of `struct signalfd_siginfo`.
pub const SIGINFO_SIZE: usize = 128;

/// A signalfd: the signals it reads and where the process's pending ones wait.
#[derive(Debug)]
pub struct SignalFd {
    mask: Mutex<u64>,
    shared: Arc<ProcessPending>,
    waitable: Waitable,
}

/// The `signalfd_siginfo` record of `info`: number, code, sender pid (signals sent by a
/// program) or address (faults).
pub fn record(info: &SigInfo) -> [u8; SIGINFO_SIZE] {
    let mut b = [0; SIGINFO_SIZE];
    b[..4].copy_from_slice(&info.signo.to_le_bytes());
    b[8..12].copy_from_slice(&info.code.to_le_bytes());
    if matches!(info.signo, 4 | 7 | 8 | 11) {
        b[72..80].copy_from_slice(&info.addr_or_pid.to_le_bytes());
    } else {
        b[12..16].copy_from_slice(&(info.addr_or_pid as u32).to_le_bytes());
    }
    b
}

impl SignalFd {
    /// A signalfd for `mask` (SIGKILL and SIGSTOP are never read).
    pub fn new(mask: u64, shared: Arc<ProcessPending>) -> SignalFd {
        SignalFd {
            mask: Mutex::new(mask & !UNBLOCKABLE),
            shared,
            waitable: Waitable::with_id(SIGNAL_OBJECT),
        }
    }

    /// The signals it reads.
    pub fn mask(&self) -> u64 {
        *self.mask.lock()
    }
}

impl FileLike for SignalFd {
    /// Takes as many pending signals as whole records fit: `EINVAL` under one record,
    /// `EAGAIN` when none is pending.
    fn read(&self, m: &mut dyn Machine, buf: &mut [u8]) -> KResult<usize> {
        if buf.len() < SIGINFO_SIZE {
            return Err(Errno::EINVAL);
        }
        let mask = self.mask();
        let mut n = 0;
        while n + SIGINFO_SIZE <= buf.len() {
            let Some(info) = m
                .thread()
                .signals
                .pending
                .take(mask)
                .or_else(|| self.shared.take(mask))
            else {
                break;
            };
            buf[n..n + SIGINFO_SIZE].copy_from_slice(&record(&info));
            n += SIGINFO_SIZE;
        }
        if n == 0 {
            return Err(Errno::EAGAIN);
        }
        Ok(n)
    }

    fn poll_events(&self, _: Access) -> u16 {
        if self.shared.bits() & self.mask() != 0 {
            POLLIN | POLLRDNORM
        } else {
            0
        }
    }

    fn event_seq(&self) -> u64 {
        self.shared.seq()
    }

    fn stat(&self) -> Stat {
        anon_stat(self.waitable.id(), 0o600)
    }

    fn waitable(&self) -> Option<&Waitable> {
        Some(&self.waitable)
    }

    /// Signals come from other threads and from outside (the power button).
    fn locally_driven(&self) -> bool {
        false
    }
}

/// `signalfd(fd, mask, sizemask)` and `signalfd4(..., flags)`: a new signalfd when `fd` is
/// -1, else a new mask for the signalfd `fd` (`EINVAL` for another kind of file). Flags:
/// `SFD_NONBLOCK` (`O_NONBLOCK`), `SFD_CLOEXEC` (`O_CLOEXEC`).
pub fn signalfd(
    p: &mut Process,
    m: &mut dyn Machine,
    fd: u64,
    mask: u64,
    size: u64,
    flags: u64,
) -> KResult<i64> {
    if size != SIGSET_SIZE || flags & !u64::from(O_NONBLOCK | O_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let set = u64::from_le_bytes(read_user(p, m, mask)?);
    let fd = fd as u32 as i32;
    if fd != -1 {
        let f = p.files.get(fd)?;
        let s = f.downcast::<SignalFd>().ok_or(Errno::EINVAL)?;
        *s.mask.lock() = set & !UNBLOCKABLE;
        return Ok(i64::from(fd));
    }
    let file = OpenFile::new(
        Arc::new(SignalFd::new(set, p.signals.shared.clone())),
        "anon_inode:[signalfd]".into(),
        O_RDWR | (flags as u32 & O_NONBLOCK),
    );
    p.files
        .install(file, flags & u64::from(O_CLOEXEC) != 0)
        .map(i64::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fd::poll::POLLIN;
    use crate::syscall::signal::{sig_bit, SIGINT, SIGTERM, SIG_BLOCK};
    use crate::syscall::testutil::*;
    use crate::sysno;

    #[test]
    fn reads_pending_signals_as_records() {
        let (mut p, mut m, buf) = setup();
        let set = sig_bit(SIGTERM) | sig_bit(SIGINT);
        m.thread.signals.change_mask(SIG_BLOCK, set).unwrap();
        poke(&mut p, &mut m, buf, &set.to_le_bytes());
        let fd = call(
            &mut p,
            &mut m,
            sysno::SIGNALFD4,
            &[u64::MAX, buf, 8, u64::from(O_NONBLOCK)],
        );
        assert!(fd >= 3);
        let fd = fd as u64;
        let f = p.files.get(fd as i32).unwrap();
        assert_eq!(f.poll(POLLIN), 0);
        assert_eq!(call(&mut p, &mut m, sysno::READ, &[fd, buf + 64, 128]), -11);
        p.signals.send(&mut m, SIGTERM);
        p.signals.send(&mut m, SIGINT);
        assert_eq!(f.poll(POLLIN), POLLIN);
        assert_eq!(call(&mut p, &mut m, sysno::READ, &[fd, buf + 64, 127]), -22);
        // Two records fit: both come, lowest signal first.
        assert_eq!(call(&mut p, &mut m, sysno::READ, &[fd, buf + 64, 300]), 256);
        let r = peek(&mut p, &mut m, buf + 64, 256);
        assert_eq!(&r[..4], &2u32.to_le_bytes());
        assert_eq!(&r[12..16], &1u32.to_le_bytes(), "ssi_pid");
        assert_eq!(&r[128..132], &15u32.to_le_bytes());
        assert_eq!(f.poll(POLLIN), 0);
        // A new mask through the same descriptor; another kind of file is EINVAL.
        poke(&mut p, &mut m, buf, &sig_bit(SIGINT).to_le_bytes());
        assert_eq!(
            call(&mut p, &mut m, sysno::SIGNALFD, &[fd, buf, 8]),
            fd as i64
        );
        assert_eq!(f.downcast::<SignalFd>().unwrap().mask(), sig_bit(SIGINT));
        assert_eq!(call(&mut p, &mut m, sysno::SIGNALFD, &[1, buf, 8]), -22);
        assert_eq!(call(&mut p, &mut m, sysno::SIGNALFD, &[fd, buf, 4]), -22);
    }
}
