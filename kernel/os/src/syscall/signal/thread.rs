//! What each thread keeps of signals: its mask, the signals sent to it alone that wait
//! (blocked), the signals accepted for its handlers, and its alternate stack.

use super::{lowest, sig_bit, AltStack, MINSIGSTKSZ, NSIG, SS_AUTODISARM, SS_DISABLE, SS_ONSTACK};
use super::{SIG_BLOCK, SIG_SETMASK, SIG_UNBLOCK, UNBLOCKABLE};
use crate::errno::{Errno, KResult};
use crate::sigframe::SigInfo;

/// One signal set with what each member's receiver will be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigSet {
    set: u64,
    info: [SigInfo; NSIG as usize],
}

impl Default for SigSet {
    fn default() -> Self {
        SigSet {
            set: 0,
            info: [SigInfo::default(); NSIG as usize],
        }
    }
}

impl SigSet {
    /// The members.
    pub fn bits(&self) -> u64 {
        self.set
    }

    /// Adds `info.signo` (a second instance of a standard signal merges into the first).
    pub fn add(&mut self, info: SigInfo) {
        let sig = info.signo as u32;
        if self.set & sig_bit(sig) == 0 {
            self.info[sig as usize - 1] = info;
        }
        self.set |= sig_bit(sig);
    }

    /// Removes the lowest member of `among`, with its information.
    pub fn take(&mut self, among: u64) -> Option<SigInfo> {
        let sig = lowest(self.set & among)?;
        self.set &= !sig_bit(sig);
        Some(self.info[sig as usize - 1])
    }

    /// Drops the members of `set`.
    pub fn discard(&mut self, set: u64) {
        self.set &= !set;
    }
}

/// A thread's signal state (kept in [`crate::process::ThreadState`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadSignals {
    mask: u64,
    /// Signals sent to this thread (`tgkill`) while it blocked them.
    pub pending: SigSet,
    /// Signals accepted for their handlers, run when the thread next returns to user mode.
    pub queued: SigSet,
    altstack: Option<AltStack>,
    /// The mask to record in the next handler's frame, when `rt_sigsuspend` changed it.
    pub suspend_saved: Option<u64>,
}

impl ThreadSignals {
    /// What a new thread starts with: its creator's mask, nothing pending, no alternate
    /// stack (as `clone` with `CLONE_VM` gives).
    pub fn inherit(&self) -> ThreadSignals {
        ThreadSignals {
            mask: self.mask,
            ..ThreadSignals::default()
        }
    }

    /// What the thread keeps across `execve`: its mask and the signals waiting for it; no
    /// alternate stack, and nothing accepted for a handler (the handlers are gone).
    pub fn after_exec(&self) -> ThreadSignals {
        ThreadSignals {
            mask: self.mask,
            pending: self.pending.clone(),
            ..ThreadSignals::default()
        }
    }

    /// The blocked-signal mask.
    pub fn mask(&self) -> u64 {
        self.mask
    }

    /// Sets the mask (SIGKILL and SIGSTOP stay unblocked).
    pub fn set_mask(&mut self, mask: u64) {
        self.mask = mask & !UNBLOCKABLE;
    }

    /// Whether `sig` is blocked.
    pub fn blocks(&self, sig: u32) -> bool {
        self.mask & sig_bit(sig) != 0
    }

    /// Changes the mask as `rt_sigprocmask(how, set)` does (`EINVAL` for an unknown `how`)
    /// and returns the old mask.
    pub fn change_mask(&mut self, how: u64, set: u64) -> KResult<u64> {
        let old = self.mask;
        let new = match how {
            SIG_BLOCK => old | set,
            SIG_UNBLOCK => old & !set,
            SIG_SETMASK => set,
            _ => return Err(Errno::EINVAL),
        };
        self.set_mask(new);
        Ok(old)
    }

    /// Whether a signal waits for its handler.
    pub fn has_queued(&self) -> bool {
        self.queued.bits() & !self.mask != 0
    }

    /// The mask a handler's frame records (restored by `rt_sigreturn`): the one before
    /// `rt_sigsuspend` when that call let the signal in, else the current one.
    pub fn frame_mask(&mut self) -> u64 {
        self.suspend_saved.take().unwrap_or(self.mask)
    }

    /// The alternate signal stack, if one is set.
    pub fn altstack(&self) -> Option<AltStack> {
        self.altstack
    }

    /// The alternate stack as `sigaltstack` reports it (`SS_DISABLE` when there is none).
    pub fn altstack_report(&self) -> AltStack {
        self.altstack.unwrap_or(AltStack {
            sp: 0,
            flags: SS_DISABLE,
            size: 0,
        })
    }

    /// Sets or disables the alternate stack as `sigaltstack` does: `EINVAL` for unknown
    /// flags, `ENOMEM` for a stack below `MINSIGSTKSZ`. Returns the previous report.
    pub fn set_altstack(&mut self, ss: AltStack) -> KResult<AltStack> {
        let old = self.altstack_report();
        let mode = ss.flags & !SS_AUTODISARM;
        if mode == SS_DISABLE {
            self.altstack = None;
        } else if mode == 0 || mode == SS_ONSTACK {
            if ss.size < MINSIGSTKSZ {
                return Err(Errno::ENOMEM);
            }
            self.altstack = Some(AltStack {
                sp: ss.sp,
                flags: ss.flags & SS_AUTODISARM,
                size: ss.size,
            });
        } else {
            return Err(Errno::EINVAL);
        }
        Ok(old)
    }
}
