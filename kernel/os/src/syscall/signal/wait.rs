//! Waiting for signals: `pause`, `rt_sigsuspend` and `rt_sigtimedwait`.

use super::{Fate, SIGSET_SIZE, UNBLOCKABLE};
use crate::errno::{Errno, KResult};
use crate::machine::Machine;
use crate::process::{Channel, Outcome, Process, Wait};
use crate::sigframe::SigInfo;
use crate::syscall::{read_user, write_user};

/// `pause` (`mask` `None`) and `rt_sigsuspend`: waits for a signal with `mask` in force.
///
/// Pending signals the mask lets through are acted on first: one that ends the program
/// ends it; one with a handler returns `EINTR` (after the handler). Otherwise the thread
/// waits, with the temporary mask, until a signal interrupts it. The handler's frame
/// records the mask from before the call, which `rt_sigreturn` puts back.
pub fn suspend(p: &mut Process, m: &mut dyn Machine, mask: Option<u64>) -> Outcome {
    let t = &mut m.thread().signals;
    let saved = t.suspend_saved.unwrap_or(t.mask());
    if let Some(mask) = mask {
        t.set_mask(mask);
    }
    t.suspend_saved = Some(saved);
    match p.signals.deliver_pending(m) {
        Some(Fate::Killed(sig)) => Outcome::Killed(sig),
        Some(_) => Outcome::Return(Errno::EINTR.as_return()),
        None => Outcome::Block(Wait {
            channels: alloc::vec::Vec::new(),
            deadline: None,
            on_timeout: 0,
            on_wake: Some(Errno::EINTR.as_return()),
        }),
    }
}

/// Takes the lowest pending signal of `set` for the running thread: its own first, then
/// the process's.
pub fn take_pending(p: &Process, m: &mut dyn Machine, set: u64) -> Option<SigInfo> {
    m.thread()
        .signals
        .pending
        .take(set)
        .or_else(|| p.signals.shared.take(set))
}

/// `rt_sigtimedwait(set, info, timeout, sigsetsize)`: takes a pending signal of `set`
/// (writing its `siginfo_t`) and returns its number; waits for one otherwise, at most
/// `timeout` (`EAGAIN` when it passes). A handler of another signal ends the wait with
/// `EINTR`.
pub fn rt_sigtimedwait(p: &mut Process, m: &mut dyn Machine, a: [u64; 6]) -> Outcome {
    match sigtimedwait(p, m, a) {
        Ok(o) => o,
        Err(e) => Outcome::Return(e.as_return()),
    }
}

fn sigtimedwait(p: &mut Process, m: &mut dyn Machine, a: [u64; 6]) -> KResult<Outcome> {
    let [set, info, timeout, size, ..] = a;
    if size != SIGSET_SIZE {
        return Err(Errno::EINVAL);
    }
    let set = u64::from_le_bytes(read_user(p, m, set)?) & !UNBLOCKABLE;
    let deadline = match (m.restart_deadline(), timeout) {
        (Some(d), _) => Some(d),
        (None, 0) => None,
        (None, t) => {
            let ns = crate::syscall::time::Timespec::from_bytes(&read_user(p, m, t)?).to_ns()?;
            Some(m.monotonic_ns().saturating_add(ns))
        }
    };
    if let Some(got) = take_pending(p, m, set) {
        if info != 0 {
            write_user(p, m, info, &got.to_bytes())?;
        }
        return Ok(Outcome::Return(i64::from(got.signo)));
    }
    if deadline.is_some_and(|d| d <= m.monotonic_ns()) {
        return Err(Errno::EAGAIN);
    }
    Ok(Outcome::Block(Wait {
        channels: alloc::vec![Channel::Object(super::send::SIGNAL_OBJECT)],
        deadline,
        on_timeout: Errno::EAGAIN.as_return(),
        on_wake: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::signal::{sig_bit, SIGTERM, SIGUSR1, SIG_BLOCK};
    use crate::syscall::testutil::*;
    use crate::sysno;

    #[test]
    fn sigtimedwait_takes_pending_or_waits() {
        let (mut p, mut m, buf) = setup();
        let set = sig_bit(SIGTERM) | sig_bit(SIGUSR1);
        m.thread.signals.change_mask(SIG_BLOCK, set).unwrap();
        poke(&mut p, &mut m, buf, &set.to_le_bytes());
        // Nothing pending, a zero timeout: EAGAIN at once.
        poke(&mut p, &mut m, buf + 8, &[0; 16]);
        let args = [buf, buf + 32, buf + 8, 8];
        assert_eq!(call(&mut p, &mut m, sysno::RT_SIGTIMEDWAIT, &args), -11);
        // No timeout: waits for a signal.
        let w = outcome(
            &mut p,
            &mut m,
            sysno::RT_SIGTIMEDWAIT,
            &[buf, buf + 32, 0, 8],
        );
        assert!(
            matches!(w, Outcome::Block(ref w) if w.channels == [Channel::Object(crate::syscall::signal::send::SIGNAL_OBJECT)])
        );
        // A process-directed SIGTERM waits in the process's set, and is taken with its
        // siginfo_t.
        assert_eq!(p.signals.send(&mut m, SIGTERM), Fate::Pending);
        assert_eq!(call(&mut p, &mut m, sysno::RT_SIGTIMEDWAIT, &args), 15);
        let si = peek(&mut p, &mut m, buf + 32, 128);
        assert_eq!(&si[..4], &15i32.to_le_bytes());
        assert_eq!(&si[16..20], &1i32.to_le_bytes(), "si_pid");
        assert_eq!(p.signals.pending(), 0);
        assert_eq!(
            call(&mut p, &mut m, sysno::RT_SIGTIMEDWAIT, &[buf, 0, 0, 4]),
            -22
        );
    }
}
