//! `timerfd`: a timer read as an 8-byte count of expirations.
//!
//! Deadlines are kept on the monotonic clock (a `CLOCK_REALTIME` target is converted when
//! the timer is set). The process keeps every armed timer in [`Timers`]; the kernel's loop
//! calls [`Timers::fire`] and arms its clock for [`Timers::next_deadline`], so `poll`,
//! `epoll_wait` and blocked reads wake when a timer expires.

use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use spin::Mutex;

use super::file::{Access, FileLike};
use super::poll::{POLLIN, POLLRDNORM};
use super::{anon_stat, OpenFile, Waitable, O_CLOEXEC, O_NONBLOCK, O_RDWR};
use crate::errno::{Errno, KResult};
use crate::fs::Stat;
use crate::machine::Machine;
use crate::process::Process;
use crate::syscall::time::{
    sleep_deadline, Clock, Timespec, CLOCK_BOOTTIME, CLOCK_MONOTONIC, CLOCK_REALTIME,
};
use crate::syscall::{read_user, write_user};

/// `TFD_TIMER_ABSTIME`.
pub const TFD_TIMER_ABSTIME: u64 = 1;
/// `TFD_TIMER_CANCEL_ON_SET` (accepted: the clock is never set).
pub const TFD_TIMER_CANCEL_ON_SET: u64 = 2;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Timer {
    /// Next expiry (monotonic ns), `None` when disarmed.
    deadline: Option<u64>,
    /// Period in ns (0: fires once).
    interval: u64,
    /// Expirations not yet read.
    expired: u64,
}

impl Timer {
    /// Counts the expirations up to `now`; whether any happened.
    fn fire(&mut self, now: u64) -> bool {
        let Some(d) = self.deadline.filter(|&d| d <= now) else {
            return false;
        };
        match (now - d).checked_div(self.interval) {
            None => {
                self.expired += 1;
                self.deadline = None;
            }
            Some(periods) => {
                self.expired += periods + 1;
                self.deadline = Some(d + (periods + 1) * self.interval);
            }
        }
        true
    }
}

/// A timerfd.
#[derive(Debug)]
pub struct TimerFd {
    clock: Clock,
    timer: Mutex<Timer>,
    waitable: Waitable,
}

impl TimerFd {
    /// A disarmed timer on `clock`.
    pub fn new(clock: Clock) -> TimerFd {
        TimerFd {
            clock,
            timer: Mutex::new(Timer::default()),
            waitable: Waitable::new(),
        }
    }

    /// Arms the timer (`value` 0 disarms) as `timerfd_settime` does, at monotonic time
    /// `now` (wall clock through `m`); returns the old setting as [`TimerFd::get`] does.
    pub fn set(&self, m: &dyn Machine, absolute: bool, value: u64, interval: u64) -> (u64, u64) {
        let now = m.monotonic_ns();
        let old = self.get(now);
        let mut t = self.timer.lock();
        t.expired = 0;
        t.interval = interval;
        t.deadline = (value != 0).then(|| sleep_deadline(m, self.clock, absolute, value));
        old
    }

    /// Time left until the next expiry (0 when disarmed) and the interval.
    pub fn get(&self, now: u64) -> (u64, u64) {
        let mut t = self.timer.lock();
        t.fire(now);
        let left = t.deadline.map_or(0, |d| d.saturating_sub(now).max(1));
        (left, t.interval)
    }

    /// Counts expirations up to `now`, waking readers when there were any.
    pub fn fire(&self, m: &mut dyn Machine, now: u64) {
        if self.timer.lock().fire(now) {
            self.waitable.notify(m);
        }
    }

    /// The next expiry, if armed.
    pub fn deadline(&self) -> Option<u64> {
        self.timer.lock().deadline
    }
}

impl FileLike for TimerFd {
    /// Reads and resets the count of expirations: `EINVAL` under 8 bytes, `EAGAIN` while 0.
    fn read(&self, m: &mut dyn Machine, buf: &mut [u8]) -> KResult<usize> {
        if buf.len() < 8 {
            return Err(Errno::EINVAL);
        }
        let mut t = self.timer.lock();
        t.fire(m.monotonic_ns());
        if t.expired == 0 {
            return Err(Errno::EAGAIN);
        }
        buf[..8].copy_from_slice(&t.expired.to_le_bytes());
        t.expired = 0;
        drop(t);
        self.waitable.bump();
        Ok(8)
    }

    fn poll_events(&self, _: Access) -> u16 {
        if self.timer.lock().expired > 0 {
            POLLIN | POLLRDNORM
        } else {
            0
        }
    }

    /// Time makes it ready.
    fn locally_driven(&self) -> bool {
        false
    }

    fn waitable(&self) -> Option<&Waitable> {
        Some(&self.waitable)
    }

    fn stat(&self) -> Stat {
        anon_stat(self.waitable.id(), 0o600)
    }
}

/// The process's timerfds, for the kernel's loop.
#[derive(Debug, Default)]
pub struct Timers {
    list: Vec<Weak<TimerFd>>,
    /// The process's `ITIMER_REAL` (`setitimer`, `alarm`): next expiry and interval (0: one
    /// shot), in monotonic nanoseconds.
    pub real: Option<RealTimer>,
    /// The process's POSIX timers (`timer_create`).
    pub posix: crate::syscall::time::posix_timer::PosixTimers,
    /// `ITIMER_VIRTUAL` and `ITIMER_PROF`, in that order.
    pub cpu: [Option<CpuTimer>; 2],
}

/// An armed CPU-time interval timer: `ITIMER_VIRTUAL` (user time, `SIGVTALRM`) or
/// `ITIMER_PROF` (user and system time, `SIGPROF`). CPU time is read when the timer could
/// first be due: never sooner than its remaining CPU time divided among the CPUs, so a
/// process that sleeps is looked at again only that often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimer {
    /// The process's CPU time (ns) at which it expires.
    pub target: u64,
    /// The CPU time between expiries after that (0: it expires once).
    pub interval: u64,
    /// When (monotonic ns) to read the CPU time next.
    pub check_at: u64,
}

impl CpuTimer {
    /// The timer `value` CPU nanoseconds after `used`, armed at `now` on `cpus` CPUs.
    pub fn new(used: u64, value: u64, interval: u64, now: u64, cpus: usize) -> CpuTimer {
        CpuTimer {
            target: used.saturating_add(value),
            interval,
            check_at: Self::check_time(now, value, cpus),
        }
    }

    /// The earliest time `left` CPU nanoseconds can go by from `now` on `cpus` CPUs.
    fn check_time(now: u64, left: u64, cpus: usize) -> u64 {
        now.saturating_add((left / cpus.max(1) as u64).max(1_000))
    }

    /// At `now`, with `used` CPU time gone by: whether it expired (expiries missed
    /// meanwhile count once), and the timer that is left.
    pub fn fire(self, used: u64, now: u64, cpus: usize) -> (bool, Option<CpuTimer>) {
        if used < self.target {
            let check_at = Self::check_time(now, self.target - used, cpus);
            return (false, Some(CpuTimer { check_at, ..self }));
        }
        if self.interval == 0 {
            return (true, None);
        }
        let missed = (used - self.target) / self.interval + 1;
        let target = self.target.saturating_add(missed * self.interval);
        let check_at = Self::check_time(now, target - used, cpus);
        (
            true,
            Some(CpuTimer {
                target,
                check_at,
                ..self
            }),
        )
    }
}

/// An armed `ITIMER_REAL`: `SIGALRM` at `deadline`, then every `interval` nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealTimer {
    /// When it next expires.
    pub deadline: u64,
    /// The period after that (0: it expires once).
    pub interval: u64,
}

impl Timers {
    /// Fires every timer due at `now`; forgets closed ones. Returns whether `ITIMER_REAL`
    /// expired, so the caller sends the process `SIGALRM` (expiries missed meanwhile count
    /// once, as a pending signal does on Linux); the POSIX timers' signals go onto
    /// `signals`, for the caller to send.
    pub fn fire(
        &mut self,
        m: &mut dyn Machine,
        now: u64,
        signals: &mut Vec<crate::syscall::time::posix_timer::TimerSignal>,
    ) -> bool {
        self.posix.fire(now, signals);
        self.fire_cpu(m, now, signals);
        self.list.retain(|w| match w.upgrade() {
            Some(t) => {
                t.fire(m, now);
                true
            }
            None => false,
        });
        match self.real {
            Some(r) if r.deadline <= now => {
                self.real = (r.interval > 0).then(|| {
                    let missed = (now - r.deadline) / r.interval + 1;
                    RealTimer {
                        deadline: r.deadline + missed * r.interval,
                        interval: r.interval,
                    }
                });
                true
            }
            _ => false,
        }
    }

    /// Sends `SIGVTALRM` or `SIGPROF` for the CPU-time timers whose CPU time has come.
    fn fire_cpu(
        &mut self,
        m: &mut dyn Machine,
        now: u64,
        signals: &mut Vec<crate::syscall::time::posix_timer::TimerSignal>,
    ) {
        use crate::syscall::signal::{send::kernel_info, SIGPROF, SIGVTALRM};
        if self.cpu.iter().flatten().all(|t| t.check_at > now) {
            return;
        }
        let cpu = m.cpu_time(None).unwrap_or_default();
        let cpus = m.cpus();
        for (slot, (used, sig)) in self
            .cpu
            .iter_mut()
            .zip([(cpu.user, SIGVTALRM), (cpu.total(), SIGPROF)])
        {
            let Some(t) = slot.filter(|t| t.check_at <= now) else {
                continue;
            };
            let (expired, left) = t.fire(used, now, cpus);
            *slot = left;
            if expired {
                signals.push(crate::syscall::time::posix_timer::TimerSignal {
                    tid: None,
                    info: kernel_info(sig),
                });
            }
        }
    }

    /// The earliest expiry of an armed timer (for a CPU-time timer, when to look at the
    /// CPU time next).
    pub fn next_deadline(&self) -> Option<u64> {
        self.list
            .iter()
            .filter_map(|w| w.upgrade().and_then(|t| t.deadline()))
            .chain(self.real.map(|r| r.deadline))
            .chain(self.posix.next_deadline())
            .chain(self.cpu.iter().flatten().map(|t| t.check_at))
            .min()
    }
}

/// `timerfd_create(clockid, flags)`: `CLOCK_REALTIME`, `CLOCK_MONOTONIC` or
/// `CLOCK_BOOTTIME`; flags `TFD_NONBLOCK`, `TFD_CLOEXEC`.
pub fn timerfd_create(p: &mut Process, clockid: u64, flags: u64) -> KResult<i64> {
    let clock = match clockid as u32 as i32 {
        CLOCK_REALTIME | CLOCK_MONOTONIC | CLOCK_BOOTTIME => Clock::from_id(clockid as i32)?,
        _ => return Err(Errno::EINVAL),
    };
    if flags & !u64::from(O_NONBLOCK | O_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let t = Arc::new(TimerFd::new(clock));
    p.timers.list.push(Arc::downgrade(&t));
    let file = OpenFile::new(
        t,
        "anon_inode:[timerfd]".into(),
        O_RDWR | (flags as u32 & O_NONBLOCK),
    );
    p.files
        .install(file, flags & u64::from(O_CLOEXEC) != 0)
        .map(i64::from)
}

fn timer_of(p: &Process, fd: u64) -> KResult<Arc<OpenFile>> {
    let f = p.files.get(fd as i32)?;
    if f.downcast::<TimerFd>().is_none() {
        return Err(Errno::EINVAL);
    }
    Ok(f)
}

fn itimerspec(left: u64, interval: u64) -> [u8; 32] {
    let mut b = [0; 32];
    b[..16].copy_from_slice(&Timespec::from_ns(interval).to_bytes());
    b[16..].copy_from_slice(&Timespec::from_ns(left).to_bytes());
    b
}

/// `timerfd_settime(fd, flags, new, old)`.
pub fn timerfd_settime(p: &mut Process, m: &mut dyn Machine, a: [u64; 6]) -> KResult<i64> {
    let [fd, flags, new, old, ..] = a;
    if flags & !(TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET) != 0 {
        return Err(Errno::EINVAL);
    }
    let f = timer_of(p, fd)?;
    let b: [u8; 32] = read_user(p, m, new)?;
    let interval = Timespec::from_bytes(b[..16].try_into().expect("16 bytes")).to_ns()?;
    let value = Timespec::from_bytes(b[16..].try_into().expect("16 bytes")).to_ns()?;
    let t = f.downcast::<TimerFd>().expect("checked by timer_of");
    let (left, was) = t.set(m, flags & TFD_TIMER_ABSTIME != 0, value, interval);
    if old != 0 {
        write_user(p, m, old, &itimerspec(left, was))?;
    }
    Ok(0)
}

/// `timerfd_gettime(fd, cur)`.
pub fn timerfd_gettime(p: &mut Process, m: &mut dyn Machine, fd: u64, cur: u64) -> KResult<i64> {
    let f = timer_of(p, fd)?;
    let t = f.downcast::<TimerFd>().expect("checked by timer_of");
    let (left, interval) = t.get(m.monotonic_ns());
    write_user(p, m, cur, &itimerspec(left, interval))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fd::poll::POLLIN;
    use crate::syscall::testutil::*;
    use crate::sysno;

    const MS: u64 = 1_000_000;

    fn spec(
        p: &mut Process,
        m: &mut crate::testing::FakeMachine,
        at: u64,
        value: u64,
        interval: u64,
    ) {
        poke(p, m, at, &itimerspec(value, interval));
    }

    #[test]
    fn expirations_count_and_reset() {
        let mut t = Timer {
            deadline: Some(100),
            interval: 10,
            expired: 0,
        };
        assert!(!t.fire(99));
        assert!(t.fire(100));
        assert_eq!((t.expired, t.deadline), (1, Some(110)));
        // Three more periods passed unread: they add up.
        assert!(t.fire(135));
        assert_eq!((t.expired, t.deadline), (4, Some(140)));
        let mut once = Timer {
            deadline: Some(5),
            ..Timer::default()
        };
        assert!(once.fire(50));
        assert_eq!((once.expired, once.deadline), (1, None));
    }

    #[test]
    fn timerfd_calls() {
        let (mut p, mut m, buf) = setup();
        let fd = call(
            &mut p,
            &mut m,
            sysno::TIMERFD_CREATE,
            &[1, u64::from(O_NONBLOCK)],
        );
        assert!(fd >= 3);
        let fd = fd as u64;
        assert_eq!(call(&mut p, &mut m, sysno::TIMERFD_CREATE, &[4, 0]), -22);
        assert_eq!(call(&mut p, &mut m, sysno::TIMERFD_CREATE, &[1, 1]), -22);
        assert_eq!(call(&mut p, &mut m, sysno::READ, &[fd, buf + 64, 8]), -11);
        spec(&mut p, &mut m, buf, 10 * MS, 5 * MS);
        assert_eq!(
            call(&mut p, &mut m, sysno::TIMERFD_SETTIME, &[fd, 0, buf, 0]),
            0
        );
        assert_eq!(p.timers.next_deadline(), Some(10 * MS));
        m.now = 9 * MS;
        assert_eq!(
            call(&mut p, &mut m, sysno::TIMERFD_GETTIME, &[fd, buf + 32]),
            0
        );
        assert_eq!(peek64(&mut p, &mut m, buf + 32 + 8), 5 * MS, "interval");
        assert_eq!(peek64(&mut p, &mut m, buf + 32 + 24), MS, "time left");
        let f = p.files.get(fd as i32).unwrap();
        m.now = 21 * MS;
        let now = m.now;
        p.timers.fire(&mut m, now, &mut alloc::vec::Vec::new());
        assert_eq!(f.poll(POLLIN), POLLIN);
        assert_eq!(call(&mut p, &mut m, sysno::READ, &[fd, buf + 64, 8]), 8);
        assert_eq!(peek64(&mut p, &mut m, buf + 64), 3);
        assert_eq!(f.poll(POLLIN), 0);
        assert_eq!(call(&mut p, &mut m, sysno::READ, &[fd, buf + 64, 4]), -22);
        // Disarm; the old setting comes back.
        spec(&mut p, &mut m, buf, 0, 0);
        assert_eq!(
            call(
                &mut p,
                &mut m,
                sysno::TIMERFD_SETTIME,
                &[fd, 0, buf, buf + 32]
            ),
            0
        );
        assert_eq!(peek64(&mut p, &mut m, buf + 32 + 24), 4 * MS);
        assert_eq!(p.timers.next_deadline(), None);
        assert_eq!(
            call(&mut p, &mut m, sysno::TIMERFD_SETTIME, &[fd, 4, buf, 0]),
            -22
        );
        assert_eq!(call(&mut p, &mut m, sysno::TIMERFD_GETTIME, &[0, buf]), -22);
        // An absolute monotonic time.
        spec(&mut p, &mut m, buf, 30 * MS, 0);
        call(
            &mut p,
            &mut m,
            sysno::TIMERFD_SETTIME,
            &[fd, TFD_TIMER_ABSTIME, buf, 0],
        );
        assert_eq!(p.timers.next_deadline(), Some(30 * MS));
    }
}
