//! Signal system calls, and what happens when a signal reaches the program.
//!
//! The process keeps the dispositions ([`SignalState`]) and the signals pending for the
//! whole process; each thread keeps its mask, pending set and alternate stack
//! ([`ThreadSignals`]). [`send`] picks the thread that takes a signal and interrupts its
//! blocking call, [`restart`] says what becomes of that call, [`wait`] holds the calls that
//! wait for signals. Blocked signals stay pending until unblocked, as on Linux.

use crate::errno::{Errno, KResult};
use crate::machine::Machine;
use crate::process::{Outcome, Process};
use crate::sigframe::SigInfo;
use crate::syscall::{read_user, write_user};
use crate::sysno;

/// Highest signal number (`_NSIG`).
pub const NSIG: u32 = 64;
/// `si_code` of a signal sent by `kill`.
pub const SI_USER: i32 = 0;
/// `SIGHUP`.
pub const SIGHUP: u32 = 1;
/// `SIGINT`.
pub const SIGINT: u32 = 2;
/// `SIGQUIT`.
pub const SIGQUIT: u32 = 3;
/// `SIGILL`: illegal instruction.
pub const SIGILL: u32 = 4;
/// `SIGTRAP`.
pub const SIGTRAP: u32 = 5;
/// `SIGABRT`: sent by `abort()`.
pub const SIGABRT: u32 = 6;
/// `SIGBUS`: bus error (access beyond a mapped file).
pub const SIGBUS: u32 = 7;
/// `SIGFPE`: arithmetic fault.
pub const SIGFPE: u32 = 8;
/// `SIGKILL`: cannot be caught, blocked or ignored.
pub const SIGKILL: u32 = 9;
/// `SIGUSR1`.
pub const SIGUSR1: u32 = 10;
/// `SIGSEGV`: invalid memory access.
pub const SIGSEGV: u32 = 11;
/// `SIGUSR2`.
pub const SIGUSR2: u32 = 12;
/// `SIGPIPE`: write to a pipe or socket with no reader.
pub const SIGPIPE: u32 = 13;
/// `SIGALRM`.
pub const SIGALRM: u32 = 14;
/// `SIGTERM`.
pub const SIGTERM: u32 = 15;
/// `SIGCHLD`.
pub const SIGCHLD: u32 = 17;
/// `SIGCONT`.
pub const SIGCONT: u32 = 18;
/// `SIGSTOP`: cannot be caught, blocked or ignored.
pub const SIGSTOP: u32 = 19;
/// `SIGTSTP`.
pub const SIGTSTP: u32 = 20;
/// `SIGTTIN`.
pub const SIGTTIN: u32 = 21;
/// `SIGTTOU`.
pub const SIGTTOU: u32 = 22;
/// `SIGURG`.
pub const SIGURG: u32 = 23;
/// `SIGXCPU`.
pub const SIGXCPU: u32 = 24;
/// `SIGXFSZ`.
pub const SIGXFSZ: u32 = 25;
/// `SIGVTALRM`: `ITIMER_VIRTUAL` expired.
pub const SIGVTALRM: u32 = 26;
/// `SIGPROF`: `ITIMER_PROF` expired.
pub const SIGPROF: u32 = 27;
/// `SIGWINCH`.
pub const SIGWINCH: u32 = 28;
/// `SIGSYS`.
pub const SIGSYS: u32 = 31;

/// `SIG_DFL` handler value.
pub const SIG_DFL: u64 = 0;
/// `SIG_IGN` handler value.
pub const SIG_IGN: u64 = 1;

/// `SA_NOCLDSTOP`.
pub const SA_NOCLDSTOP: u64 = 0x1;
/// `SA_NOCLDWAIT`.
pub const SA_NOCLDWAIT: u64 = 0x2;
/// `SA_SIGINFO`.
pub const SA_SIGINFO: u64 = 0x4;
/// `SA_UNSUPPORTED`: never reported back, so programs can probe for flag support.
pub const SA_UNSUPPORTED: u64 = 0x400;
/// `SA_EXPOSE_TAGBITS`.
pub const SA_EXPOSE_TAGBITS: u64 = 0x800;
/// `SA_RESTORER`.
pub const SA_RESTORER: u64 = 0x0400_0000;
/// `SA_ONSTACK`.
pub const SA_ONSTACK: u64 = 0x0800_0000;
/// `SA_RESTART`.
pub const SA_RESTART: u64 = 0x1000_0000;
/// `SA_NODEFER`.
pub const SA_NODEFER: u64 = 0x4000_0000;
/// `SA_RESETHAND`.
pub const SA_RESETHAND: u64 = 0x8000_0000;
/// Flags Linux keeps; the others are cleared so that programs can detect missing support.
pub const SA_KNOWN_FLAGS: u64 = SA_NOCLDSTOP
    | SA_NOCLDWAIT
    | SA_SIGINFO
    | SA_UNSUPPORTED
    | SA_EXPOSE_TAGBITS
    | SA_RESTORER
    | SA_ONSTACK
    | SA_RESTART
    | SA_NODEFER
    | SA_RESETHAND;

/// `SIG_BLOCK`.
pub const SIG_BLOCK: u64 = 0;
/// `SIG_UNBLOCK`.
pub const SIG_UNBLOCK: u64 = 1;
/// `SIG_SETMASK`.
pub const SIG_SETMASK: u64 = 2;

/// `SS_ONSTACK`: the program is running on the alternate stack (never, here).
pub const SS_ONSTACK: i32 = 1;
/// `SS_DISABLE`: no alternate stack.
pub const SS_DISABLE: i32 = 2;
/// `SS_AUTODISARM`.
pub const SS_AUTODISARM: i32 = 1 << 31;
/// `MINSIGSTKSZ`: the smallest alternate stack accepted.
pub const MINSIGSTKSZ: u64 = 2048;

/// Size of the kernel's `sigset_t` (64 signals).
pub const SIGSET_SIZE: u64 = 8;

/// Default action of a signal with `SIG_DFL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// End the program.
    Terminate,
    /// End the program with a core dump (Kiln writes none; the status is the same).
    Core,
    /// Discard the signal.
    Ignore,
    /// Stop the program until `SIGCONT`.
    Stop,
    /// Continue a stopped program.
    Continue,
}

/// Linux's default action for signal `sig` (1 to 64). Real-time signals (32 to 64) and
/// numbers outside the range terminate.
pub fn default_action(sig: u32) -> Action {
    match sig {
        SIGQUIT | SIGILL | SIGTRAP | SIGABRT | SIGBUS | SIGFPE | SIGSEGV | SIGXCPU | SIGXFSZ
        | SIGSYS => Action::Core,
        SIGCHLD | SIGURG | SIGWINCH => Action::Ignore,
        SIGCONT => Action::Continue,
        SIGSTOP | SIGTSTP | SIGTTIN | SIGTTOU => Action::Stop,
        _ => Action::Terminate,
    }
}

/// What the program asked to happen for a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// `SIG_DFL`: the default action.
    Default,
    /// `SIG_IGN`.
    Ignore,
    /// A user handler at this address.
    Handler(u64),
}

/// The x86_64 kernel `struct sigaction` (32 bytes: handler, flags, restorer, mask).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SigAction {
    /// `sa_handler`: `SIG_DFL`, `SIG_IGN` or a handler address.
    pub handler: u64,
    /// `sa_flags` (`SA_*`).
    pub flags: u64,
    /// `sa_restorer`: where the handler returns (glibc's `__restore_rt`).
    pub restorer: u64,
    /// `sa_mask`: signals blocked while the handler runs.
    pub mask: u64,
}

impl SigAction {
    /// Size of the structure in user memory.
    pub const SIZE: usize = 32;

    /// Decodes the user structure.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> SigAction {
        SigAction {
            handler: le64(b, 0),
            flags: le64(b, 8),
            restorer: le64(b, 16),
            mask: le64(b, 24),
        }
    }

    /// Encodes the user structure.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0; Self::SIZE];
        b[0..8].copy_from_slice(&self.handler.to_le_bytes());
        b[8..16].copy_from_slice(&self.flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.restorer.to_le_bytes());
        b[24..32].copy_from_slice(&self.mask.to_le_bytes());
        b
    }

    /// The disposition this action selects.
    pub fn disposition(&self) -> Disposition {
        match self.handler {
            SIG_DFL => Disposition::Default,
            SIG_IGN => Disposition::Ignore,
            h => Disposition::Handler(h),
        }
    }
}

/// An alternate signal stack as `stack_t` describes it (24 bytes: `ss_sp`, `ss_flags`,
/// padding, `ss_size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AltStack {
    /// `ss_sp`: lowest address of the stack.
    pub sp: u64,
    /// `ss_flags`.
    pub flags: i32,
    /// `ss_size`.
    pub size: u64,
}

impl AltStack {
    /// Size of `stack_t` in user memory.
    pub const SIZE: usize = 24;

    /// Decodes the user structure.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> AltStack {
        AltStack {
            sp: le64(b, 0),
            flags: i32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            size: le64(b, 16),
        }
    }

    /// Encodes the user structure.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0; Self::SIZE];
        b[0..8].copy_from_slice(&self.sp.to_le_bytes());
        b[8..12].copy_from_slice(&self.flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.size.to_le_bytes());
        b
    }
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut v = [0; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

/// The bit of `sig` in a signal set.
pub fn sig_bit(sig: u32) -> u64 {
    1 << (sig - 1)
}

/// Signals that can never be blocked, caught or ignored.
pub const UNBLOCKABLE: u64 = (1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1));

pub mod restart;
pub mod send;
pub mod thread;
pub mod wait;

pub use thread::{SigSet, ThreadSignals};

/// What became of a signal that reached the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Blocked: it waits in a pending set.
    Pending,
    /// Ignored, or its default action does nothing.
    Discarded,
    /// A handler is installed: the signal is queued for this thread, which runs the handler
    /// when it next returns to user mode (a blocking call is interrupted for it).
    Queued(u32),
    /// The program ends, killed by this signal.
    Killed(u8),
}

/// Signals sent to the process that every thread blocked: they wait here, shared with
/// the signalfds that read them.
#[derive(Debug, Default)]
pub struct ProcessPending {
    set: spin::Mutex<SigSet>,
    seq: core::sync::atomic::AtomicU64,
}

impl ProcessPending {
    /// The pending signals.
    pub fn bits(&self) -> u64 {
        self.set.lock().bits()
    }

    /// Takes the lowest pending member of `among`.
    pub fn take(&self, among: u64) -> Option<SigInfo> {
        let got = self.set.lock().take(among);
        if got.is_some() {
            self.bump();
        }
        got
    }

    fn add(&self, info: SigInfo) {
        self.set.lock().add(info);
        self.bump();
    }

    fn discard(&self, set: u64) {
        self.set.lock().discard(set);
    }

    /// How many times the set changed (edge-triggered epoll on a signalfd).
    pub fn seq(&self) -> u64 {
        self.seq.load(core::sync::atomic::Ordering::Relaxed)
    }

    fn bump(&self) {
        self.seq.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    }
}

/// The process's signal dispositions and the signals pending for the whole process; each
/// thread's mask, pending set and alternate stack are in its [`ThreadSignals`].
#[derive(Debug)]
pub struct SignalState {
    actions: [SigAction; NSIG as usize],
    /// Process-directed signals that every thread blocks.
    pub shared: alloc::sync::Arc<ProcessPending>,
    /// Signals whose ignored stop has been logged.
    stop_logged: u64,
}

impl Default for SignalState {
    fn default() -> Self {
        SignalState {
            actions: [SigAction::default(); NSIG as usize],
            shared: Default::default(),
            stop_logged: 0,
        }
    }
}

impl SignalState {
    /// The disposition of signal `sig` (1 to 64; others read as `Default`).
    pub fn disposition(&self, sig: u32) -> Disposition {
        match self.action(sig) {
            Some(a) => a.disposition(),
            None => Disposition::Default,
        }
    }

    /// The installed action of `sig`, or `None` outside 1 to 64.
    pub fn action(&self, sig: u32) -> Option<SigAction> {
        (1..=NSIG)
            .contains(&sig)
            .then(|| self.actions[sig as usize - 1])
    }

    /// Installs `act` for `sig` and returns the previous action, as `rt_sigaction` does:
    /// `EINVAL` outside 1 to 64 and for `SIGKILL`/`SIGSTOP`. Unknown flags are dropped;
    /// `SIGKILL` and `SIGSTOP` are removed from the mask. An action that discards the signal
    /// also discards it from the process's pending set (threads' sets: the caller, see
    /// [`SignalState::discards`]).
    pub fn set_action(&mut self, sig: u32, act: SigAction) -> KResult<SigAction> {
        let old = self.action(sig).ok_or(Errno::EINVAL)?;
        if sig == SIGKILL || sig == SIGSTOP {
            return Err(Errno::EINVAL);
        }
        let act = SigAction {
            flags: act.flags & SA_KNOWN_FLAGS,
            mask: act.mask & !UNBLOCKABLE,
            ..act
        };
        self.actions[sig as usize - 1] = act;
        if self.discards(sig) {
            self.shared.discard(sig_bit(sig));
        }
        Ok(old)
    }

    /// What `execve` leaves of the actions: ignored signals stay ignored, every other one
    /// gets its default action back; no flags, masks or restorers (as Linux's
    /// `flush_signal_handlers`).
    pub fn reset_for_exec(&mut self) {
        for a in &mut self.actions {
            let ignored = a.disposition() == Disposition::Ignore;
            *a = SigAction {
                handler: if ignored { SIG_IGN } else { SIG_DFL },
                ..SigAction::default()
            };
        }
    }

    /// Whether the action of `sig` throws it away (ignored, or a default that ignores).
    pub fn discards(&self, sig: u32) -> bool {
        match self.disposition(sig) {
            Disposition::Ignore => true,
            Disposition::Default => default_action(sig) == Action::Ignore,
            Disposition::Handler(_) => false,
        }
    }

    /// Signals sent to the whole process, waiting for a thread that does not block them.
    pub fn pending(&self) -> u64 {
        self.shared.bits()
    }

    /// Queues a hardware fault's signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP) for the
    /// handler of the faulting thread `t`; `false` when it has none or the signal is
    /// blocked (the program then dies, as Linux forces such signals).
    pub fn queue_fault(&self, t: &mut ThreadSignals, info: SigInfo) -> bool {
        let sig = info.signo as u32;
        if t.blocks(sig) || !matches!(self.disposition(sig), Disposition::Handler(_)) {
            return false;
        }
        t.queued.add(info);
        true
    }

    /// Takes the lowest queued signal `t` does not block whose handler is still installed,
    /// with its action and information.
    pub fn next_queued(&self, t: &mut ThreadSignals) -> Option<(SigAction, SigInfo)> {
        while let Some(info) = t.queued.take(!t.mask()) {
            let act = self.actions[info.signo as usize - 1];
            if let Disposition::Handler(_) = act.disposition() {
                return Some((act, info));
            }
        }
        None
    }

    /// The flags of the handler `t` runs next, if any (`SA_RESTART` decides whether an
    /// interrupted call starts again).
    pub fn next_handler_flags(&self, t: &ThreadSignals) -> Option<u64> {
        let mut set = t.queued.bits() & !t.mask();
        while let Some(sig) = lowest(set) {
            let act = self.actions[sig as usize - 1];
            if let Disposition::Handler(_) = act.disposition() {
                return Some(act.flags);
            }
            set &= !sig_bit(sig);
        }
        None
    }

    /// `SA_RESETHAND`: the handler runs once, then the default action is back.
    pub fn reset_to_default(&mut self, sig: u32) {
        if (1..=NSIG).contains(&sig) {
            self.actions[sig as usize - 1] = SigAction::default();
        }
    }
}

fn lowest(set: u64) -> Option<u32> {
    (set != 0).then(|| set.trailing_zeros() + 1)
}

/// Handles the signal system calls; `None` for numbers this family does not own.
///
/// `rt_sigreturn` is not owned here: the kernel binary restores the frame itself, so a
/// call reaching this table is reported as unsupported.
#[inline(never)]
pub fn handle(p: &mut Process, m: &mut dyn Machine, nr: u64, a: [u64; 6]) -> Option<Outcome> {
    let r = match nr {
        sysno::RT_SIGACTION => rt_sigaction(p, m, a[0], a[1], a[2], a[3]),
        sysno::RT_SIGPROCMASK => return Some(rt_sigprocmask(p, m, a[0], a[1], a[2], a[3])),
        sysno::RT_SIGPENDING => rt_sigpending(p, m, a[0], a[1]),
        sysno::SIGALTSTACK => sigaltstack(p, m, a[0], a[1]),
        sysno::PAUSE => return Some(wait::suspend(p, m, None)),
        sysno::RT_SIGSUSPEND => {
            if a[1] != SIGSET_SIZE {
                Err(Errno::EINVAL)
            } else {
                match read_user::<8>(p, m, a[0]) {
                    Ok(b) => return Some(wait::suspend(p, m, Some(u64::from_le_bytes(b)))),
                    Err(e) => Err(e),
                }
            }
        }
        sysno::RT_SIGTIMEDWAIT => return Some(wait::rt_sigtimedwait(p, m, a)),
        sysno::SIGNALFD => crate::fd::signalfd::signalfd(p, m, a[0], a[1], a[2], 0),
        sysno::SIGNALFD4 => crate::fd::signalfd::signalfd(p, m, a[0], a[1], a[2], a[3]),
        _ => return None,
    };
    Some(Outcome::Return(r.unwrap_or_else(Errno::as_return)))
}

fn rt_sigaction(
    p: &mut Process,
    m: &mut dyn Machine,
    sig: u64,
    act: u64,
    oact: u64,
    sigsetsize: u64,
) -> KResult<i64> {
    if sigsetsize != SIGSET_SIZE {
        return Err(Errno::EINVAL);
    }
    let new = if act != 0 {
        Some(SigAction::from_bytes(&read_user(p, m, act)?))
    } else {
        None
    };
    let sig = sig as u32;
    let old = match new {
        Some(new) => {
            let old = p.signals.set_action(sig, new)?;
            if p.signals.discards(sig) {
                for tid in m.tids() {
                    if let Some(t) = m.thread_of(tid) {
                        t.signals.pending.discard(sig_bit(sig));
                    }
                }
            }
            old
        }
        None => p.signals.action(sig).ok_or(Errno::EINVAL)?,
    };
    if oact != 0 {
        let old = SigAction {
            flags: old.flags & !SA_UNSUPPORTED,
            ..old
        };
        write_user(p, m, oact, &old.to_bytes())?;
    }
    Ok(0)
}

fn rt_sigprocmask(
    p: &mut Process,
    m: &mut dyn Machine,
    how: u64,
    set: u64,
    oset: u64,
    sigsetsize: u64,
) -> Outcome {
    let r = (|| {
        if sigsetsize != SIGSET_SIZE {
            return Err(Errno::EINVAL);
        }
        let old = m.thread().signals.mask();
        if set != 0 {
            let new = u64::from_le_bytes(read_user(p, m, set)?);
            m.thread().signals.change_mask(how, new)?;
        }
        if oset != 0 {
            write_user(p, m, oset, &old.to_le_bytes())?;
        }
        Ok(0)
    })();
    if let Some(Fate::Killed(sig)) = p.signals.deliver_pending(m) {
        return Outcome::Killed(sig);
    }
    Outcome::Return(r.unwrap_or_else(Errno::as_return))
}

fn rt_sigpending(p: &mut Process, m: &mut dyn Machine, set: u64, sigsetsize: u64) -> KResult<i64> {
    if sigsetsize > SIGSET_SIZE {
        return Err(Errno::EINVAL);
    }
    let t = &m.thread().signals;
    let pending = ((t.pending.bits() | p.signals.pending()) & t.mask()).to_le_bytes();
    write_user(p, m, set, &pending[..sigsetsize as usize])?;
    Ok(0)
}

fn sigaltstack(p: &mut Process, m: &mut dyn Machine, ss: u64, old_ss: u64) -> KResult<i64> {
    let old = if ss != 0 {
        let new = AltStack::from_bytes(&read_user(p, m, ss)?);
        m.thread().signals.set_altstack(new)?
    } else {
        m.thread().signals.altstack_report()
    };
    if old_ss != 0 {
        write_user(p, m, old_ss, &old.to_bytes())?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::testutil::*;
    use crate::testing::FakeMachine;

    const EINVAL: i64 = -22;
    const EFAULT: i64 = -14;

    #[test]
    fn rt_sigaction_call() {
        let (mut p, mut m, buf) = setup();
        let act = SigAction {
            handler: SIG_IGN,
            flags: SA_RESTORER | SA_UNSUPPORTED | 0x200,
            restorer: 0x40_2000,
            mask: 0,
        };
        poke(&mut p, &mut m, buf, &act.to_bytes());
        let pipe = SIGPIPE as u64;
        assert_eq!(
            call(
                &mut p,
                &mut m,
                sysno::RT_SIGACTION,
                &[pipe, buf, buf + 32, 8]
            ),
            0
        );
        assert_eq!(peek(&mut p, &mut m, buf + 32, 32), [0; 32]);
        assert_eq!(p.signals.disposition(SIGPIPE), Disposition::Ignore);
        assert_eq!(
            call(&mut p, &mut m, sysno::RT_SIGACTION, &[pipe, 0, buf + 32, 8]),
            0
        );
        let old = SigAction::from_bytes(&peek(&mut p, &mut m, buf + 32, 32).try_into().unwrap());
        // Unknown flags are dropped; SA_UNSUPPORTED is never reported.
        assert_eq!(old.flags, SA_RESTORER);
        assert_eq!(old.restorer, 0x40_2000);

        assert_eq!(
            call(&mut p, &mut m, sysno::RT_SIGACTION, &[pipe, buf, 0, 4]),
            EINVAL
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::RT_SIGACTION, &[9, buf, 0, 8]),
            EINVAL
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::RT_SIGACTION, &[19, buf, 0, 8]),
            EINVAL
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::RT_SIGACTION, &[9, 0, buf + 32, 8]),
            0
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::RT_SIGACTION, &[0, 0, buf + 32, 8]),
            EINVAL
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::RT_SIGACTION, &[65, buf, 0, 8]),
            EINVAL
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::RT_SIGACTION, &[64, buf, 0, 8]),
            0
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::RT_SIGACTION, &[11, UNMAPPED, 0, 8]),
            EFAULT
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::RT_SIGACTION, &[11, 0, UNMAPPED, 8]),
            EFAULT
        );
    }

    #[test]
    fn rt_sigprocmask_call() {
        let (mut p, mut m, buf) = setup();
        poke(&mut p, &mut m, buf, &u64::MAX.to_le_bytes());
        assert_eq!(
            call(
                &mut p,
                &mut m,
                sysno::RT_SIGPROCMASK,
                &[SIG_SETMASK, buf, buf + 8, 8]
            ),
            0
        );
        assert_eq!(peek64(&mut p, &mut m, buf + 8), 0);
        assert_eq!(
            call(
                &mut p,
                &mut m,
                sysno::RT_SIGPROCMASK,
                &[SIG_BLOCK, 0, buf + 8, 8]
            ),
            0
        );
        assert_eq!(peek64(&mut p, &mut m, buf + 8), !UNBLOCKABLE);
        assert_eq!(
            call(&mut p, &mut m, sysno::RT_SIGPROCMASK, &[7, buf, 0, 8]),
            EINVAL
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::RT_SIGPROCMASK, &[7, 0, 0, 8]),
            0
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::RT_SIGPROCMASK, &[0, buf, 0, 16]),
            EINVAL
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::RT_SIGPROCMASK, &[0, UNMAPPED, 0, 8]),
            EFAULT
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::RT_SIGPENDING, &[buf, 9]),
            EINVAL
        );
        assert_eq!(call(&mut p, &mut m, sysno::RT_SIGPENDING, &[buf, 8]), 0);
        assert_eq!(peek64(&mut p, &mut m, buf), 0);
        assert_eq!(
            call(&mut p, &mut m, sysno::RT_SIGPENDING, &[UNMAPPED, 8]),
            EFAULT
        );
    }

    #[test]
    fn sigaltstack_call() {
        let (mut p, mut m, buf) = setup();
        assert_eq!(call(&mut p, &mut m, sysno::SIGALTSTACK, &[0, buf]), 0);
        let old = AltStack::from_bytes(&peek(&mut p, &mut m, buf, 24).try_into().unwrap());
        assert_eq!(old.flags, SS_DISABLE);
        let ss = AltStack {
            sp: 0x7000_0000,
            flags: 0,
            size: 0x4000,
        };
        poke(&mut p, &mut m, buf, &ss.to_bytes());
        assert_eq!(
            call(&mut p, &mut m, sysno::SIGALTSTACK, &[buf, buf + 32]),
            0
        );
        assert_eq!(m.thread.signals.altstack(), Some(ss));
        assert_eq!(call(&mut p, &mut m, sysno::SIGALTSTACK, &[0, buf + 32]), 0);
        let got = AltStack::from_bytes(&peek(&mut p, &mut m, buf + 32, 24).try_into().unwrap());
        assert_eq!(got, ss);
        poke(
            &mut p,
            &mut m,
            buf,
            &AltStack { size: 100, ..ss }.to_bytes(),
        );
        assert_eq!(call(&mut p, &mut m, sysno::SIGALTSTACK, &[buf, 0]), -12);
        assert_eq!(
            call(&mut p, &mut m, sysno::SIGALTSTACK, &[UNMAPPED, 0]),
            EFAULT
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::SIGALTSTACK, &[0, UNMAPPED]),
            EFAULT
        );
    }

    #[test]
    fn pause_waits_for_a_signal() {
        let (mut p, mut m, buf) = setup();
        let forever = Outcome::Block(crate::process::Wait {
            channels: alloc::vec::Vec::new(),
            deadline: None,
            on_timeout: 0,
            on_wake: Some(-4),
        });
        assert_eq!(outcome(&mut p, &mut m, sysno::PAUSE, &[]), forever);
        poke(&mut p, &mut m, buf, &0u64.to_le_bytes());
        assert_eq!(
            outcome(&mut p, &mut m, sysno::RT_SIGSUSPEND, &[buf, 8]),
            forever
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::RT_SIGSUSPEND, &[buf, 4]),
            EINVAL
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::RT_SIGSUSPEND, &[UNMAPPED, 8]),
            EFAULT
        );
    }

    #[test]
    fn sigsuspend_delivers_pending() {
        let (mut p, mut m, buf) = setup();
        m.thread
            .signals
            .change_mask(SIG_BLOCK, sig_bit(SIGTERM) | sig_bit(SIGUSR1))
            .unwrap();
        p.signals
            .set_action(
                SIGUSR1,
                SigAction {
                    handler: 0x1000,
                    ..Default::default()
                },
            )
            .unwrap();
        p.signals.send(&mut m, SIGUSR1);
        // SIGUSR1 has a handler: the wait ends with EINTR and the handler runs with the
        // temporary mask; its frame records the original mask.
        let original = m.thread.signals.mask();
        poke(&mut p, &mut m, buf, &sig_bit(SIGTERM).to_le_bytes());
        assert_eq!(
            outcome(&mut p, &mut m, sysno::RT_SIGSUSPEND, &[buf, 8]),
            Outcome::Return(-4)
        );
        assert_eq!(
            p.signals
                .next_queued(&mut m.thread.signals)
                .map(|q| q.1.signo),
            Some(SIGUSR1 as i32)
        );
        assert_eq!(m.thread.signals.frame_mask(), original);
        m.thread.signals.set_mask(original);
        // A handled signal whose default is to ignore interrupts the wait.
        p.signals
            .set_action(
                SIGCHLD,
                SigAction {
                    handler: 0x1000,
                    ..Default::default()
                },
            )
            .unwrap();
        m.thread
            .signals
            .change_mask(SIG_BLOCK, sig_bit(SIGCHLD))
            .unwrap();
        p.signals.send(&mut m, SIGCHLD);
        assert_eq!(call(&mut p, &mut m, sysno::RT_SIGSUSPEND, &[buf, 8]), -4);
        assert_eq!(m.now, 0);
        // Until the handler returns, the temporary mask (only SIGTERM) is in force.
        assert_eq!(m.thread.signals.mask(), sig_bit(SIGTERM));
        assert_eq!(
            m.thread.signals.frame_mask(),
            sig_bit(SIGTERM) | sig_bit(SIGUSR1) | sig_bit(SIGCHLD)
        );
        p.signals.next_queued(&mut m.thread.signals);
        m.thread
            .signals
            .set_mask(sig_bit(SIGTERM) | sig_bit(SIGUSR1) | sig_bit(SIGCHLD));
        p.signals.send(&mut m, SIGTERM);
        poke(&mut p, &mut m, buf, &0u64.to_le_bytes());
        assert_eq!(
            outcome(&mut p, &mut m, sysno::RT_SIGSUSPEND, &[buf, 8]),
            Outcome::Killed(15)
        );
    }

    fn handler(h: u64) -> SigAction {
        SigAction {
            handler: h,
            ..SigAction::default()
        }
    }

    #[test]
    fn default_actions() {
        assert_eq!(default_action(SIGSEGV), Action::Core);
        assert_eq!(default_action(SIGBUS), Action::Core);
        assert_eq!(default_action(SIGFPE), Action::Core);
        assert_eq!(default_action(SIGILL), Action::Core);
        assert_eq!(default_action(SIGABRT), Action::Core);
        assert_eq!(default_action(SIGTERM), Action::Terminate);
        assert_eq!(default_action(SIGPIPE), Action::Terminate);
        assert_eq!(default_action(SIGKILL), Action::Terminate);
        assert_eq!(default_action(SIGCHLD), Action::Ignore);
        assert_eq!(default_action(SIGURG), Action::Ignore);
        assert_eq!(default_action(SIGWINCH), Action::Ignore);
        assert_eq!(default_action(SIGCONT), Action::Continue);
        assert_eq!(default_action(SIGSTOP), Action::Stop);
        assert_eq!(default_action(SIGTSTP), Action::Stop);
        assert_eq!(default_action(34), Action::Terminate);
        assert_eq!(default_action(64), Action::Terminate);
    }

    #[test]
    fn sigaction_bytes_round_trip() {
        let a = SigAction {
            handler: 0x401000,
            flags: SA_SIGINFO | SA_ONSTACK | SA_RESTORER,
            restorer: 0x402000,
            mask: 0x8000_0000_0000_0001,
        };
        let b = a.to_bytes();
        assert_eq!(&b[0..8], &0x401000u64.to_le_bytes());
        assert_eq!(&b[16..24], &0x402000u64.to_le_bytes());
        assert_eq!(SigAction::from_bytes(&b), a);
    }

    #[test]
    fn altstack_bytes_round_trip() {
        let s = AltStack {
            sp: 0x7000,
            flags: SS_DISABLE,
            size: 8192,
        };
        let b = s.to_bytes();
        assert_eq!(&b[8..12], &2i32.to_le_bytes());
        assert_eq!(&b[12..16], &[0; 4]);
        assert_eq!(AltStack::from_bytes(&b), s);
    }

    #[test]
    fn dispositions() {
        let mut s = SignalState::default();
        assert_eq!(s.disposition(SIGPIPE), Disposition::Default);
        s.set_action(SIGPIPE, handler(SIG_IGN)).unwrap();
        assert_eq!(s.disposition(SIGPIPE), Disposition::Ignore);
        let old = s.set_action(SIGSEGV, handler(0x1234)).unwrap();
        assert_eq!(old, SigAction::default());
        assert_eq!(s.disposition(SIGSEGV), Disposition::Handler(0x1234));
        assert_eq!(s.disposition(0), Disposition::Default);
        assert_eq!(s.disposition(65), Disposition::Default);
    }

    #[test]
    fn set_action_rejects_bad_signals() {
        let mut s = SignalState::default();
        assert_eq!(s.set_action(0, handler(1)), Err(Errno::EINVAL));
        assert_eq!(s.set_action(65, handler(1)), Err(Errno::EINVAL));
        assert_eq!(s.set_action(SIGKILL, handler(1)), Err(Errno::EINVAL));
        assert_eq!(s.set_action(SIGSTOP, handler(0x10)), Err(Errno::EINVAL));
        assert!(s.set_action(64, handler(1)).is_ok());
        assert_eq!(s.action(SIGKILL), Some(SigAction::default()));
        assert_eq!(s.action(0), None);
    }

    #[test]
    fn set_action_cleans_flags_and_mask() {
        let mut s = SignalState::default();
        let a = SigAction {
            handler: 0x1000,
            flags: SA_RESTART | 0x200,
            restorer: 0,
            mask: u64::MAX,
        };
        s.set_action(SIGINT, a).unwrap();
        let got = s.action(SIGINT).unwrap();
        assert_eq!(got.flags, SA_RESTART);
        assert_eq!(got.mask, !(sig_bit(SIGKILL) | sig_bit(SIGSTOP)));
    }

    #[test]
    fn masks() {
        let mut m = FakeMachine::default();
        assert_eq!(
            m.thread.signals.change_mask(SIG_BLOCK, sig_bit(SIGINT)),
            Ok(0)
        );
        assert_eq!(
            m.thread.signals.change_mask(
                SIG_BLOCK,
                sig_bit(SIGTERM) | sig_bit(SIGKILL) | sig_bit(SIGSTOP)
            ),
            Ok(sig_bit(SIGINT))
        );
        assert_eq!(m.thread.signals.mask(), sig_bit(SIGINT) | sig_bit(SIGTERM));
        m.thread
            .signals
            .change_mask(SIG_UNBLOCK, sig_bit(SIGINT))
            .unwrap();
        assert_eq!(m.thread.signals.mask(), sig_bit(SIGTERM));
        m.thread.signals.change_mask(SIG_SETMASK, u64::MAX).unwrap();
        assert_eq!(m.thread.signals.mask(), !UNBLOCKABLE);
        assert_eq!(m.thread.signals.change_mask(3, 0), Err(Errno::EINVAL));
        assert_eq!(m.thread.signals.mask(), !UNBLOCKABLE);
    }

    #[test]
    fn altstack_rules() {
        let mut m = FakeMachine::default();
        assert_eq!(m.thread.signals.altstack_report().flags, SS_DISABLE);
        let small = AltStack {
            sp: 0x1000,
            flags: 0,
            size: MINSIGSTKSZ - 1,
        };
        assert_eq!(m.thread.signals.set_altstack(small), Err(Errno::ENOMEM));
        let ok = AltStack {
            sp: 0x1000,
            flags: 0,
            size: 8192,
        };
        assert_eq!(m.thread.signals.set_altstack(ok).unwrap().flags, SS_DISABLE);
        assert_eq!(m.thread.signals.altstack(), Some(ok));
        assert_eq!(
            m.thread.signals.set_altstack(AltStack { flags: 4, ..ok }),
            Err(Errno::EINVAL)
        );
        let disable = AltStack {
            sp: 0x5555,
            flags: SS_DISABLE,
            size: 0,
        };
        assert_eq!(m.thread.signals.set_altstack(disable), Ok(ok));
        assert_eq!(m.thread.signals.altstack(), None);
        // SS_ONSTACK is accepted as "enable", SS_AUTODISARM is kept.
        let auto = AltStack {
            sp: 0x2000,
            flags: SS_ONSTACK | SS_AUTODISARM,
            size: 4096,
        };
        m.thread.signals.set_altstack(auto).unwrap();
        assert_eq!(m.thread.signals.altstack_report().flags, SS_AUTODISARM);
    }

    #[test]
    fn send_default_ignore_handler() {
        let mut m = FakeMachine::default();
        let mut s = SignalState::default();
        assert_eq!(s.send(&mut m, SIGTERM), Fate::Killed(15));
        assert_eq!(s.send(&mut m, SIGABRT), Fate::Killed(6));
        assert_eq!(s.send(&mut m, SIGKILL), Fate::Killed(9));
        assert_eq!(s.send(&mut m, SIGCHLD), Fate::Discarded);
        assert_eq!(s.send(&mut m, SIGCONT), Fate::Discarded);
        s.set_action(SIGTERM, handler(SIG_IGN)).unwrap();
        assert_eq!(s.send(&mut m, SIGTERM), Fate::Discarded);
        assert!(m.log.is_empty());
        s.set_action(SIGABRT, handler(0x4000)).unwrap();
        assert_eq!(s.send(&mut m, SIGABRT), Fate::Queued(1));
        s.set_action(SIGWINCH, handler(0x4000)).unwrap();
        assert_eq!(s.send(&mut m, SIGWINCH), Fate::Queued(1));
        assert!(m.log.is_empty());
        let (act, info) = s.next_queued(&mut m.thread.signals).unwrap();
        assert_eq!((act.handler, info.signo), (0x4000, SIGABRT as i32));
        assert_eq!(
            s.next_queued(&mut m.thread.signals).unwrap().1.signo,
            SIGWINCH as i32
        );
        assert_eq!(s.next_queued(&mut m.thread.signals), None);
    }

    #[test]
    fn stop_signals_are_ignored_with_a_log_line() {
        let mut m = FakeMachine::default();
        let mut s = SignalState::default();
        assert_eq!(s.send(&mut m, SIGSTOP), Fate::Discarded);
        assert_eq!(s.send(&mut m, SIGSTOP), Fate::Discarded);
        assert_eq!(m.log.len(), 1);
        assert!(m.log[0].starts_with("signal 19 would stop the program"));
    }

    #[test]
    fn blocked_signals_pend_until_unblocked() {
        let mut m = FakeMachine::default();
        let mut s = SignalState::default();
        m.thread
            .signals
            .change_mask(SIG_BLOCK, sig_bit(SIGUSR1) | sig_bit(SIGCHLD))
            .unwrap();
        assert_eq!(s.send(&mut m, SIGCHLD), Fate::Pending);
        assert_eq!(s.send(&mut m, SIGUSR1), Fate::Pending);
        assert_eq!(s.pending(), sig_bit(SIGUSR1) | sig_bit(SIGCHLD));
        assert_eq!(s.deliver_pending(&mut m), None);
        m.thread
            .signals
            .change_mask(SIG_UNBLOCK, sig_bit(SIGCHLD))
            .unwrap();
        assert_eq!(s.deliver_pending(&mut m), None);
        assert_eq!(s.pending(), sig_bit(SIGUSR1));
        m.thread.signals.change_mask(SIG_SETMASK, 0).unwrap();
        assert_eq!(s.deliver_pending(&mut m), Some(Fate::Killed(10)));
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn ignoring_a_pending_signal_discards_it() {
        let mut m = FakeMachine::default();
        let mut s = SignalState::default();
        m.thread
            .signals
            .change_mask(SIG_BLOCK, sig_bit(SIGUSR2))
            .unwrap();
        s.send(&mut m, SIGUSR2);
        s.set_action(SIGUSR2, handler(SIG_IGN)).unwrap();
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn sigpipe() {
        let mut m = FakeMachine::default();
        let mut s = SignalState::default();
        assert_eq!(s.send_sigpipe(&mut m), Some(13));
        s.set_action(SIGPIPE, handler(SIG_IGN)).unwrap();
        assert_eq!(s.send_sigpipe(&mut m), None);
        s.set_action(SIGPIPE, handler(0x1000)).unwrap();
        assert_eq!(s.send_sigpipe(&mut m), None);
        assert!(
            m.thread.signals.has_queued(),
            "the handler runs, then the write fails with EPIPE"
        );
        s.set_action(SIGPIPE, handler(SIG_DFL)).unwrap();
        m.thread
            .signals
            .change_mask(SIG_BLOCK, sig_bit(SIGPIPE))
            .unwrap();
        assert_eq!(s.send_sigpipe(&mut m), None);
        assert_eq!(m.thread.signals.pending.bits(), sig_bit(SIGPIPE));
    }
}
