//! Sending signals: to the process (a thread that does not block the signal takes it, or
//! it waits in the process's pending set) or to one thread, and acting on them.
//!
//! A signal with a handler is queued on its thread, and a thread blocked in a system call
//! is interrupted ([`Machine::interrupt`]) so that the handler runs without waiting for the
//! call to end; [`super::restart`] says whether the call then fails with `EINTR` or starts
//! again. A signal that ends the program ends it at once, whichever thread it was for.

use super::{default_action, sig_bit, Action, Disposition, Fate, SignalState, SI_USER};
use super::{SIGKILL, SIGPIPE, SIGSTOP};
use crate::machine::Machine;
use crate::process::PID;
use crate::sigframe::SigInfo;

/// `si_code` of a signal sent by `tkill`/`tgkill` (and so `raise`, `pthread_kill`).
pub const SI_TKILL: i32 = -6;

/// `si_code` of a signal the kernel sends on its own (the CPU-time interval timers).
pub const SI_KERNEL: i32 = 0x80;

/// What a signal the kernel sends on its own tells the receiver (no sender's id).
pub fn kernel_info(sig: u32) -> SigInfo {
    SigInfo {
        signo: sig as i32,
        code: SI_KERNEL,
        addr_or_pid: 0,
        value: 0,
    }
}

/// What `kill` from the program itself tells the receiver.
pub fn user_info(sig: u32) -> SigInfo {
    SigInfo {
        signo: sig as i32,
        code: SI_USER,
        addr_or_pid: PID as u64,
        value: 0,
    }
}

/// The thread that takes a process-directed `sig`: the running thread when it does not
/// block it, else the first thread (lowest id) that does not; `None` when all block it.
pub fn pick_thread(m: &mut dyn Machine, sig: u32) -> Option<u32> {
    let unblocked = |m: &mut dyn Machine, tid: u32| {
        m.thread_of(tid)
            .is_some_and(|t| !t.signals.blocks(sig) || sig == SIGKILL)
    };
    if let Some(cur) = m.running() {
        if unblocked(m, cur) {
            return Some(cur);
        }
    }
    m.tids().into_iter().find(|&t| unblocked(m, t))
}

/// Wakes whoever waits for pending signals: `rt_sigtimedwait` and signalfd readers, and
/// every `poll`/`epoll` waiter (a signalfd may have become readable).
fn wake_signal_waiters(m: &mut dyn Machine) {
    crate::fd::wake_object(m, SIGNAL_OBJECT);
}

/// The kernel object every wait for a pending signal blocks on (`rt_sigtimedwait`,
/// signalfd reads): no other object has this id.
pub const SIGNAL_OBJECT: u64 = u64::MAX - 1;

impl SignalState {
    /// Sends `sig` (1 to 64) to the process, as `kill` to itself does.
    pub fn send(&mut self, m: &mut dyn Machine, sig: u32) -> Fate {
        self.send_info(m, user_info(sig))
    }

    /// Sends a process-directed signal described by `info`.
    pub fn send_info(&mut self, m: &mut dyn Machine, info: SigInfo) -> Fate {
        let sig = info.signo as u32;
        match pick_thread(m, sig) {
            Some(tid) => self.act(m, tid, info),
            None => {
                self.shared.add(info);
                wake_signal_waiters(m);
                Fate::Pending
            }
        }
    }

    /// Sends a signal to thread `tid` alone (`tgkill`): pending in that thread while it
    /// blocks it. `None` when there is no such thread.
    pub fn send_thread(&mut self, m: &mut dyn Machine, tid: u32, info: SigInfo) -> Option<Fate> {
        let sig = info.signo as u32;
        let t = m.thread_of(tid)?;
        if t.signals.blocks(sig) {
            t.signals.pending.add(info);
            wake_signal_waiters(m);
            return Some(Fate::Pending);
        }
        Some(self.act(m, tid, info))
    }

    /// Raises `SIGPIPE` for a write to a broken pipe or socket by the running thread:
    /// returns the signal number when it ends the program (default disposition, not
    /// blocked), `None` when the write should just fail with `EPIPE` (blocked: left
    /// pending; ignored; or handled: the handler runs, then the write fails).
    pub fn send_sigpipe(&mut self, m: &mut dyn Machine) -> Option<u8> {
        let tid = m.thread().tid;
        match self.send_thread(m, tid, user_info(SIGPIPE)) {
            Some(Fate::Killed(s)) => Some(s),
            _ => None,
        }
    }

    /// Acts on the pending signals (the running thread's and the process's) that the
    /// running thread no longer blocks, lowest first; returns the first fate that is not a
    /// plain discard (`Killed` ends the search).
    pub fn deliver_pending(&mut self, m: &mut dyn Machine) -> Option<Fate> {
        let mut result = None;
        loop {
            let t = &mut m.thread().signals;
            let open = !t.mask();
            let tid = m.thread().tid;
            let info = match m.thread().signals.pending.take(open) {
                Some(i) => i,
                None => match self.shared.take(open) {
                    Some(i) => i,
                    None => return result,
                },
            };
            match self.act(m, tid, info) {
                Fate::Killed(s) => return Some(Fate::Killed(s)),
                f @ Fate::Queued(_) => result = Some(f),
                Fate::Pending | Fate::Discarded => {}
            }
        }
    }

    /// Acts on a signal that thread `tid` does not block.
    fn act(&mut self, m: &mut dyn Machine, tid: u32, info: SigInfo) -> Fate {
        let sig = info.signo as u32;
        let disposition = if sig == SIGKILL || sig == SIGSTOP {
            Disposition::Default
        } else {
            self.disposition(sig)
        };
        match disposition {
            Disposition::Ignore => return Fate::Discarded,
            Disposition::Handler(_) => {
                if let Some(t) = m.thread_of(tid) {
                    t.signals.queued.add(info);
                }
                m.interrupt(tid);
                return Fate::Queued(tid);
            }
            Disposition::Default => {}
        }
        match default_action(sig) {
            Action::Terminate | Action::Core => Fate::Killed(sig as u8),
            Action::Stop => {
                if self.stop_logged & sig_bit(sig) == 0 {
                    self.stop_logged |= sig_bit(sig);
                    m.log(format_args!(
                        "signal {sig} would stop the program, but nothing could continue it: ignored"
                    ));
                }
                Fate::Discarded
            }
            Action::Ignore | Action::Continue => Fate::Discarded,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::ThreadState;
    use crate::syscall::signal::{sig_bit, SigAction, SIGTERM, SIGUSR1, SIG_BLOCK};
    use crate::testing::FakeMachine;

    fn with_threads(tids: &[u32]) -> FakeMachine {
        let mut m = FakeMachine::default();
        for &tid in tids {
            let t = ThreadState {
                tid,
                ..ThreadState::default()
            };
            m.others.insert(tid, t);
        }
        m
    }

    fn handled(sig: u32) -> SignalState {
        let mut s = SignalState::default();
        let act = SigAction {
            handler: 0x1000,
            ..SigAction::default()
        };
        s.set_action(sig, act).unwrap();
        s
    }

    #[test]
    fn a_process_signal_goes_to_a_thread_that_does_not_block_it() {
        let mut m = with_threads(&[2, 3]);
        // The running thread first.
        assert_eq!(pick_thread(&mut m, SIGTERM), Some(1));
        let term = sig_bit(SIGTERM);
        m.thread.signals.change_mask(SIG_BLOCK, term).unwrap();
        assert_eq!(pick_thread(&mut m, SIGTERM), Some(2));
        m.others.get_mut(&2).unwrap().signals.set_mask(term);
        assert_eq!(pick_thread(&mut m, SIGTERM), Some(3));
        m.others.get_mut(&3).unwrap().signals.set_mask(term);
        assert_eq!(pick_thread(&mut m, SIGTERM), None);
        assert_eq!(
            pick_thread(&mut m, SIGKILL),
            Some(1),
            "SIGKILL is never blocked"
        );
    }

    #[test]
    fn a_handled_signal_interrupts_its_thread() {
        let mut m = with_threads(&[2]);
        let mut s = handled(SIGTERM);
        m.thread
            .signals
            .change_mask(SIG_BLOCK, sig_bit(SIGTERM))
            .unwrap();
        assert_eq!(s.send(&mut m, SIGTERM), Fate::Queued(2));
        assert_eq!(m.interrupted, [2]);
        assert!(m.others[&2].signals.has_queued());
        // Blocked everywhere: pending for the process, taken by the first to unblock.
        m.others
            .get_mut(&2)
            .unwrap()
            .signals
            .set_mask(sig_bit(SIGTERM));
        let mut s = handled(SIGTERM);
        assert_eq!(s.send(&mut m, SIGTERM), Fate::Pending);
        assert_eq!(s.pending(), sig_bit(SIGTERM));
        m.thread.signals.set_mask(0);
        assert_eq!(s.deliver_pending(&mut m), Some(Fate::Queued(1)));
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn thread_signals_stay_with_their_thread() {
        let mut m = with_threads(&[2]);
        let mut s = handled(SIGUSR1);
        let info = SigInfo {
            code: SI_TKILL,
            ..user_info(SIGUSR1)
        };
        m.others
            .get_mut(&2)
            .unwrap()
            .signals
            .set_mask(sig_bit(SIGUSR1));
        assert_eq!(s.send_thread(&mut m, 2, info), Some(Fate::Pending));
        assert_eq!(m.others[&2].signals.pending.bits(), sig_bit(SIGUSR1));
        assert!(m.interrupted.is_empty());
        assert_eq!(s.pending(), 0, "not the process's");
        assert_eq!(s.send_thread(&mut m, 9, info), None);
        assert_eq!(s.send_thread(&mut m, 1, info), Some(Fate::Queued(1)));
        assert_eq!(
            s.next_queued(&mut m.thread.signals).map(|q| q.1.code),
            Some(SI_TKILL)
        );
        // A default action that kills does so whichever thread it was for.
        let mut plain = SignalState::default();
        assert_eq!(
            plain.send_thread(&mut m, 2, user_info(SIGTERM)),
            Some(Fate::Killed(15))
        );
    }
}
