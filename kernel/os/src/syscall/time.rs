//! Clocks and sleeping.
//!
//! The machine has two clocks: monotonic (since boot) and real time (since the epoch).
//! `CLOCK_BOOTTIME` equals the monotonic clock (the machine never suspends) and
//! `CLOCK_TAI` equals real time (Linux's TAI offset is 0 until NTP sets it). The CPU-time
//! clocks read the scheduler's accounting ([`crate::sched::CpuTime`]): user and system
//! time together, of the process or of one thread. No clock can be set: the wall clock
//! belongs to the host.

use crate::errno::{Errno, KResult};
use crate::machine::Machine;
use crate::process::{Outcome, Process, Wait, PID};
use crate::syscall::{read_user, ret, write_user};
use crate::sysno;
use alloc::vec::Vec;

// The clock ids the vDSO serves too, and the coarse clocks' tick: one definition for both.
pub use kiln_abi::vdso::{
    CLOCK_BOOTTIME, CLOCK_MONOTONIC, CLOCK_MONOTONIC_COARSE, CLOCK_MONOTONIC_RAW, CLOCK_REALTIME,
    CLOCK_REALTIME_COARSE, CLOCK_TAI, COARSE_TICK_NS,
};
/// `CLOCK_PROCESS_CPUTIME_ID`.
pub const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
/// `CLOCK_THREAD_CPUTIME_ID`.
pub const CLOCK_THREAD_CPUTIME_ID: i32 = 3;

/// `TIMER_ABSTIME`: `clock_nanosleep` takes an absolute time.
pub const TIMER_ABSTIME: u64 = 1;

/// Nanoseconds per second.
pub const NSEC_PER_SEC: u64 = 1_000_000_000;

/// A clock the program can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Wall-clock time.
    Realtime,
    /// Wall-clock time at tick granularity.
    RealtimeCoarse,
    /// `CLOCK_TAI`: wall-clock time with TAI offset 0.
    Tai,
    /// Time since boot.
    Monotonic,
    /// Time since boot, not slewed by NTP (the same clock here).
    MonotonicRaw,
    /// Time since boot at tick granularity.
    MonotonicCoarse,
    /// Time since boot including suspend (the machine never suspends).
    Boottime,
    /// CPU time of the process (including the encoded per-process clock ids).
    ProcessCpu,
    /// CPU time of a thread: the caller's (0), or the one an encoded per-thread clock id
    /// (`pthread_getcpuclockid`) names.
    ThreadCpu(u32),
}

impl Clock {
    /// Decodes a `clockid_t`: the fixed ids, and the negative ids that
    /// `clock_getcpuclockid`/`pthread_getcpuclockid` build for this process or thread.
    /// `EINVAL` for anything else (including the `_ALARM` clocks: there is no RTC alarm).
    pub fn from_id(id: i32) -> KResult<Clock> {
        Ok(match id {
            CLOCK_REALTIME => Clock::Realtime,
            CLOCK_MONOTONIC => Clock::Monotonic,
            CLOCK_PROCESS_CPUTIME_ID => Clock::ProcessCpu,
            CLOCK_THREAD_CPUTIME_ID => Clock::ThreadCpu(0),
            CLOCK_MONOTONIC_RAW => Clock::MonotonicRaw,
            CLOCK_REALTIME_COARSE => Clock::RealtimeCoarse,
            CLOCK_MONOTONIC_COARSE => Clock::MonotonicCoarse,
            CLOCK_BOOTTIME => Clock::Boottime,
            CLOCK_TAI => Clock::Tai,
            id if id < 0 => {
                // ((~pid) << 3) | per-thread bit (4) | which (0 prof, 1 virt, 2 sched).
                // Whether a named thread exists is for the caller to check (`exists`).
                let pid = !(id >> 3);
                if id & 3 == 3 {
                    return Err(Errno::EINVAL);
                }
                if id & 4 != 0 {
                    Clock::ThreadCpu(pid as u32)
                } else if pid == 0 || i64::from(pid) == PID {
                    Clock::ProcessCpu
                } else {
                    return Err(Errno::EINVAL);
                }
            }
            _ => return Err(Errno::EINVAL),
        })
    }

    /// The clock's current value in nanoseconds.
    pub fn now_ns(self, m: &dyn Machine) -> u64 {
        match self {
            Clock::Realtime | Clock::Tai => m.realtime_ns(),
            Clock::RealtimeCoarse => coarse(m.realtime_ns()),
            Clock::MonotonicCoarse => coarse(m.monotonic_ns()),
            Clock::Monotonic | Clock::MonotonicRaw | Clock::Boottime => m.monotonic_ns(),
            Clock::ProcessCpu => m.cpu_time(None).map_or(0, |t| t.total()),
            Clock::ThreadCpu(tid) => {
                let tid = if tid == 0 { m.running() } else { Some(tid) };
                tid.and_then(|t| m.cpu_time(Some(t)))
                    .map_or(0, |t| t.total())
            }
        }
    }

    /// `EINVAL` for the clock of a thread that does not exist.
    pub fn exists(self, m: &dyn Machine) -> KResult<Clock> {
        match self {
            Clock::ThreadCpu(tid) if tid != 0 && m.cpu_time(Some(tid)).is_none() => {
                Err(Errno::EINVAL)
            }
            c => Ok(c),
        }
    }

    /// The clock's resolution in nanoseconds (`clock_getres`).
    pub fn resolution_ns(self) -> u64 {
        match self {
            Clock::RealtimeCoarse | Clock::MonotonicCoarse => COARSE_TICK_NS,
            _ => 1,
        }
    }
}

fn coarse(ns: u64) -> u64 {
    ns - ns % COARSE_TICK_NS
}

/// A `struct timespec` (16 bytes: `tv_sec`, `tv_nsec`, both 64-bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timespec {
    /// Seconds.
    pub sec: i64,
    /// Nanoseconds.
    pub nsec: i64,
}

impl Timespec {
    /// Size in user memory.
    pub const SIZE: usize = 16;

    /// The time `ns` nanoseconds after zero.
    pub fn from_ns(ns: u64) -> Timespec {
        Timespec {
            sec: (ns / NSEC_PER_SEC) as i64,
            nsec: (ns % NSEC_PER_SEC) as i64,
        }
    }

    /// Nanoseconds, saturating; `EINVAL` unless `sec >= 0` and `0 <= nsec < 10^9`
    /// (Linux's `timespec64_valid`).
    pub fn to_ns(self) -> KResult<u64> {
        if self.sec < 0 || !(0..NSEC_PER_SEC as i64).contains(&self.nsec) {
            return Err(Errno::EINVAL);
        }
        Ok((self.sec as u64)
            .saturating_mul(NSEC_PER_SEC)
            .saturating_add(self.nsec as u64))
    }

    /// Decodes the user structure.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Timespec {
        let (s, n) = split16(b);
        Timespec { sec: s, nsec: n }
    }

    /// Encodes the user structure.
    pub fn to_bytes(self) -> [u8; Self::SIZE] {
        join16(self.sec, self.nsec)
    }
}

/// A `struct timeval` (16 bytes: `tv_sec`, `tv_usec`, both 64-bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timeval {
    /// Seconds.
    pub sec: i64,
    /// Microseconds.
    pub usec: i64,
}

impl Timeval {
    /// Size in user memory.
    pub const SIZE: usize = 16;

    /// The time `ns` nanoseconds after zero, truncated to microseconds.
    pub fn from_ns(ns: u64) -> Timeval {
        Timeval {
            sec: (ns / NSEC_PER_SEC) as i64,
            usec: (ns % NSEC_PER_SEC / 1000) as i64,
        }
    }

    /// Decodes the user structure.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Timeval {
        let (s, u) = split16(b);
        Timeval { sec: s, usec: u }
    }

    /// Encodes the user structure.
    pub fn to_bytes(self) -> [u8; Self::SIZE] {
        join16(self.sec, self.usec)
    }
}

fn split16(b: &[u8; 16]) -> (i64, i64) {
    let mut x = [0; 8];
    let mut y = [0; 8];
    x.copy_from_slice(&b[..8]);
    y.copy_from_slice(&b[8..]);
    (i64::from_le_bytes(x), i64::from_le_bytes(y))
}

fn join16(x: i64, y: i64) -> [u8; 16] {
    let mut b = [0; 16];
    b[..8].copy_from_slice(&x.to_le_bytes());
    b[8..].copy_from_slice(&y.to_le_bytes());
    b
}

/// The monotonic deadline of a `clock_nanosleep` on `clock` for `t` (relative, or
/// absolute with `TIMER_ABSTIME`). Real-time targets are converted to the monotonic clock
/// at the time of the call; a target in the past gives the current time.
pub fn sleep_deadline(m: &dyn Machine, clock: Clock, absolute: bool, t: u64) -> u64 {
    let now = m.monotonic_ns();
    if !absolute {
        return now.saturating_add(t);
    }
    match clock {
        Clock::Realtime | Clock::Tai => now.saturating_add(t.saturating_sub(m.realtime_ns())),
        // The CPU-time target as a wall-clock wait: the process uses no CPU while its
        // threads sleep, so this is the earliest it could be reached.
        Clock::ProcessCpu | Clock::ThreadCpu(_) => {
            now.saturating_add(t.saturating_sub(clock.now_ns(m)))
        }
        _ => t.max(now),
    }
}

pub mod posix_timer;

/// Handles the time system calls; `None` for numbers this family does not own.
#[inline(never)]
pub fn handle(p: &mut Process, m: &mut dyn Machine, nr: u64, a: [u64; 6]) -> Option<Outcome> {
    if let Some(r) = posix_timer::handle(p, m, nr, a) {
        return Some(ret(r));
    }
    let r = match nr {
        sysno::CLOCK_GETTIME => clock_gettime(p, m, a[0], a[1]),
        sysno::CLOCK_GETRES => clock_getres(p, m, a[0], a[1]),
        sysno::CLOCK_SETTIME => clock_settime(p, m, a[0], a[1]),
        sysno::ADJTIMEX => adjtimex(p, m, a[0]),
        sysno::CLOCK_ADJTIME => clock_adjtime(p, m, a[0], a[1]),
        sysno::GETTIMEOFDAY => gettimeofday(p, m, a[0], a[1]),
        sysno::SETTIMEOFDAY => settimeofday(p, m, a[0], a[1]),
        sysno::TIME => time(p, m, a[0]),
        sysno::NANOSLEEP => {
            let d = nanosleep(p, m, a[0]);
            return Some(sleep(m, d));
        }
        sysno::CLOCK_NANOSLEEP => {
            let d = clock_nanosleep(p, m, a[0], a[1], a[2]);
            return Some(sleep(m, d));
        }
        sysno::TIMERFD_CREATE => crate::fd::timerfd::timerfd_create(p, a[0], a[1]),
        sysno::TIMERFD_SETTIME => crate::fd::timerfd::timerfd_settime(p, m, a),
        sysno::TIMERFD_GETTIME => crate::fd::timerfd::timerfd_gettime(p, m, a[0], a[1]),
        sysno::SETITIMER => setitimer(p, m, a[0], a[1], a[2]),
        sysno::GETITIMER => getitimer(p, m, a[0], a[1]),
        sysno::ALARM => Ok(alarm(p, m, a[0] as u32)),
        _ => return None,
    };
    Some(ret(r))
}

/// `ITIMER_REAL`: wall-clock time, `SIGALRM`.
pub const ITIMER_REAL: u64 = 0;
/// `ITIMER_VIRTUAL`: the process's user CPU time, `SIGVTALRM`.
pub const ITIMER_VIRTUAL: u64 = 1;
/// `ITIMER_PROF`: the process's CPU time, `SIGPROF`.
pub const ITIMER_PROF: u64 = 2;

const NS_PER_US: u64 = 1_000;

/// The CPU time an `ITIMER_VIRTUAL` (user time) or `ITIMER_PROF` (all of it) counts.
fn cpu_used(m: &dyn Machine, which: u64) -> u64 {
    let t = m.cpu_time(None).unwrap_or_default();
    if which == ITIMER_VIRTUAL {
        t.user
    } else {
        t.total()
    }
}

/// The `struct itimerval` of timer `which` as it stands at `now`: interval, then the time
/// left (zeros when disarmed).
fn itimerval_now(p: &Process, m: &dyn Machine, which: u64, now: u64) -> [u8; 2 * Timeval::SIZE] {
    // Linux never reports 0 left for an armed timer: it rounds up to a microsecond.
    let (interval, left) = match which {
        ITIMER_REAL => match p.timers.real {
            Some(r) => (r.interval, r.deadline.saturating_sub(now).max(NS_PER_US)),
            None => (0, 0),
        },
        _ => match p.timers.cpu[which as usize - 1] {
            Some(t) => (
                t.interval,
                t.target.saturating_sub(cpu_used(m, which)).max(NS_PER_US),
            ),
            None => (0, 0),
        },
    };
    let mut out = [0u8; 2 * Timeval::SIZE];
    out[..Timeval::SIZE].copy_from_slice(&Timeval::from_ns(interval).to_bytes());
    out[Timeval::SIZE..].copy_from_slice(&Timeval::from_ns(left).to_bytes());
    out
}

/// Checks the interval timer named by `which`: `ITIMER_REAL`, `ITIMER_VIRTUAL` or
/// `ITIMER_PROF`.
fn check_which(which: u64) -> KResult<()> {
    match which {
        ITIMER_REAL | ITIMER_VIRTUAL | ITIMER_PROF => Ok(()),
        _ => Err(Errno::EINVAL),
    }
}

fn timeval_ns(t: Timeval) -> KResult<u64> {
    if t.sec < 0 || !(0..1_000_000).contains(&t.usec) {
        return Err(Errno::EINVAL);
    }
    (t.sec as u64)
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(t.usec as u64 * NS_PER_US))
        .ok_or(Errno::EINVAL)
}

/// `setitimer(which, new, old)`: arms (or with a zero value disarms) `ITIMER_REAL`, which
/// sends the process `SIGALRM` when it expires, then every interval, or a CPU-time timer
/// (`ITIMER_VIRTUAL`: `SIGVTALRM` after so much user time, `ITIMER_PROF`: `SIGPROF` after
/// so much user and system time); `old` gets the previous setting.
fn setitimer(p: &mut Process, m: &mut dyn Machine, which: u64, new: u64, old: u64) -> KResult<i64> {
    check_which(which)?;
    let now = m.monotonic_ns();
    let next = if new == 0 {
        // Linux (since 5.x) treats a null new value as disarming.
        None
    } else {
        let b: [u8; 2 * Timeval::SIZE] = read_user(p, m, new)?;
        let mut iv = [0u8; Timeval::SIZE];
        iv.copy_from_slice(&b[..Timeval::SIZE]);
        let mut val = [0u8; Timeval::SIZE];
        val.copy_from_slice(&b[Timeval::SIZE..]);
        let interval = timeval_ns(Timeval::from_bytes(&iv))?;
        let value = timeval_ns(Timeval::from_bytes(&val))?;
        (value > 0).then_some(RealTimerArg { value, interval })
    };
    if old != 0 {
        let prev = itimerval_now(p, m, which, now);
        write_user(p, m, old, &prev)?;
    }
    if which == ITIMER_REAL {
        p.timers.real = next.map(|n| crate::fd::timerfd::RealTimer {
            deadline: now.saturating_add(n.value),
            interval: n.interval,
        });
    } else {
        let used = cpu_used(m, which);
        p.timers.cpu[which as usize - 1] = next
            .map(|n| crate::fd::timerfd::CpuTimer::new(used, n.value, n.interval, now, m.cpus()));
    }
    Ok(0)
}

struct RealTimerArg {
    value: u64,
    interval: u64,
}

/// `getitimer(which, cur)`.
fn getitimer(p: &mut Process, m: &mut dyn Machine, which: u64, cur: u64) -> KResult<i64> {
    check_which(which)?;
    let v = itimerval_now(p, m, which, m.monotonic_ns());
    write_user(p, m, cur, &v)?;
    Ok(0)
}

/// `alarm(seconds)`: `ITIMER_REAL` once after `seconds` (0 cancels); returns the seconds
/// that were left on the previous alarm, rounded to the nearest (at least 1 when one was
/// armed), as Linux does.
fn alarm(p: &mut Process, m: &mut dyn Machine, seconds: u32) -> i64 {
    let now = m.monotonic_ns();
    let left = p
        .timers
        .real
        .map(|r| {
            let ns = r.deadline.saturating_sub(now);
            ((ns + 500_000_000) / 1_000_000_000).max(1)
        })
        .unwrap_or(0);
    p.timers.real = (seconds > 0).then(|| crate::fd::timerfd::RealTimer {
        deadline: now + u64::from(seconds) * 1_000_000_000,
        interval: 0,
    });
    left as i64
}

/// The outcome of a sleep until `deadline`: the thread waits (other threads run) and the
/// call returns 0 when the deadline passes.
fn sleep(m: &mut dyn Machine, deadline: KResult<u64>) -> Outcome {
    match deadline {
        Err(e) => Outcome::Return(e.as_return()),
        Ok(d) if d <= m.monotonic_ns() => Outcome::Return(0),
        Ok(d) => Outcome::Block(Wait {
            channels: Vec::new(),
            deadline: Some(d),
            on_timeout: 0,
            on_wake: None,
        }),
    }
}

/// `clockid_t` is an `int`: the upper half of the register is ignored.
fn clock_arg(id: u64) -> KResult<Clock> {
    Clock::from_id(id as u32 as i32)
}

fn clock_gettime(p: &mut Process, m: &mut dyn Machine, id: u64, tp: u64) -> KResult<i64> {
    let clock = clock_arg(id)?.exists(m)?;
    let now = Timespec::from_ns(clock.now_ns(m));
    write_user(p, m, tp, &now.to_bytes())?;
    Ok(0)
}

fn clock_getres(p: &mut Process, m: &mut dyn Machine, id: u64, res: u64) -> KResult<i64> {
    let clock = clock_arg(id)?.exists(m)?;
    if res != 0 {
        write_user(
            p,
            m,
            res,
            &Timespec::from_ns(clock.resolution_ns()).to_bytes(),
        )?;
    }
    Ok(0)
}

/// Setting the real-time clock is refused with `EPERM` (the program runs as root, but the
/// wall clock is the host's); CPU clocks refuse with `EPERM` as on Linux; the others are
/// not settable (`EINVAL`).
fn clock_settime(p: &mut Process, m: &mut dyn Machine, id: u64, tp: u64) -> KResult<i64> {
    let clock = clock_arg(id)?;
    let t = Timespec::from_bytes(&read_user(p, m, tp)?);
    match clock {
        Clock::Realtime => {
            t.to_ns()?;
            Err(Errno::EPERM)
        }
        Clock::ProcessCpu | Clock::ThreadCpu(_) => Err(Errno::EPERM),
        _ => Err(Errno::EINVAL),
    }
}

/// `struct timex`'s size.
const TIMEX_SIZE: usize = 208;
/// `adjtimex`'s `modes` that only read (`ADJ_OFFSET_SS_READ`).
const ADJ_OFFSET_SS_READ: u32 = 0xa001;
/// `adjtimex`'s answer for a clock no NTP daemon disciplines (`TIME_ERROR`).
const TIME_ERROR: i64 = 5;

/// The clock's NTP state as `adjtimex` reads it: not synchronised (`STA_UNSYNC`), since no
/// NTP daemon in the guest disciplines it (the wall clock is the host's, taken at boot
/// and advanced by the TSC), with Linux's values for such a clock and the time now.
pub fn timex_bytes(realtime_ns: u64) -> [u8; TIMEX_SIZE] {
    const STA_UNSYNC: i32 = 0x40;
    // NTP_PHASE_LIMIT (µs), the largest error; MAXFREQ_SCALED (500 ppm << 16); USER_HZ's tick.
    const MAX_ERROR_US: i64 = 16_000_000;
    const TOLERANCE: i64 = 500 << 16;
    const TICK_US: i64 = 10_000;
    let mut b = [0u8; TIMEX_SIZE];
    let mut put = |at: usize, v: i64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    put(24, MAX_ERROR_US);
    put(32, MAX_ERROR_US);
    put(48, 2);
    put(56, 1);
    put(64, TOLERANCE);
    put(88, TICK_US);
    b[40..44].copy_from_slice(&STA_UNSYNC.to_le_bytes());
    b[72..88].copy_from_slice(&Timeval::from_ns(realtime_ns).to_bytes());
    b
}

/// `adjtimex`: reads the clock's NTP state ([`timex_bytes`]); adjusting it is refused with
/// `EPERM`, as setting it is (the wall clock belongs to the host).
fn adjtimex(p: &mut Process, m: &mut dyn Machine, buf: u64) -> KResult<i64> {
    let head: [u8; 4] = read_user(p, m, buf)?;
    let modes = u32::from_le_bytes(head);
    if modes != 0 && modes != ADJ_OFFSET_SS_READ {
        return Err(Errno::EPERM);
    }
    let timex = timex_bytes(m.realtime_ns());
    write_user(p, m, buf, &timex)?;
    Ok(TIME_ERROR)
}

/// `clock_adjtime`: `adjtimex` for `CLOCK_REALTIME`; the other clocks cannot be adjusted
/// (`EOPNOTSUPP`, as on Linux).
fn clock_adjtime(p: &mut Process, m: &mut dyn Machine, id: u64, buf: u64) -> KResult<i64> {
    match clock_arg(id)?.exists(m)? {
        Clock::Realtime => adjtimex(p, m, buf),
        _ => Err(Errno::EOPNOTSUPP),
    }
}

fn gettimeofday(p: &mut Process, m: &mut dyn Machine, tv: u64, tz: u64) -> KResult<i64> {
    if tv != 0 {
        let now = Timeval::from_ns(m.realtime_ns());
        write_user(p, m, tv, &now.to_bytes())?;
    }
    if tz != 0 {
        // struct timezone { tz_minuteswest, tz_dsttime }: UTC.
        write_user(p, m, tz, &[0; 8])?;
    }
    Ok(0)
}

/// Like `clock_settime`: a request to set the time or time zone is refused with `EPERM`.
fn settimeofday(p: &mut Process, m: &mut dyn Machine, tv: u64, tz: u64) -> KResult<i64> {
    if tv != 0 {
        let t = Timeval::from_bytes(&read_user(p, m, tv)?);
        if t.sec < 0 || !(0..1_000_000).contains(&t.usec) {
            return Err(Errno::EINVAL);
        }
    }
    if tz != 0 {
        read_user::<8>(p, m, tz)?;
    }
    if tv != 0 || tz != 0 {
        return Err(Errno::EPERM);
    }
    Ok(0)
}

fn time(p: &mut Process, m: &mut dyn Machine, tloc: u64) -> KResult<i64> {
    let secs = (m.realtime_ns() / NSEC_PER_SEC) as i64;
    if tloc != 0 {
        write_user(p, m, tloc, &secs.to_le_bytes())?;
    }
    Ok(secs)
}

/// `nanosleep`'s deadline: the remaining time is never written, since no signal can
/// interrupt. A restarted call keeps its first deadline.
fn nanosleep(p: &mut Process, m: &mut dyn Machine, req: u64) -> KResult<u64> {
    let t = Timespec::from_bytes(&read_user(p, m, req)?).to_ns()?;
    Ok(m.restart_deadline()
        .unwrap_or_else(|| sleep_deadline(m, Clock::Monotonic, false, t)))
}

fn clock_nanosleep(
    p: &mut Process,
    m: &mut dyn Machine,
    id: u64,
    flags: u64,
    req: u64,
) -> KResult<u64> {
    let clock = clock_arg(id)?;
    if matches!(
        clock,
        Clock::MonotonicRaw | Clock::MonotonicCoarse | Clock::RealtimeCoarse
    ) {
        return Err(Errno::EOPNOTSUPP);
    }
    let t = Timespec::from_bytes(&read_user(p, m, req)?).to_ns()?;
    if matches!(clock, Clock::ThreadCpu(_)) {
        return Err(Errno::EINVAL);
    }
    Ok(m.restart_deadline()
        .unwrap_or_else(|| sleep_deadline(m, clock, flags & TIMER_ABSTIME != 0, t)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::testutil::*;
    use crate::testing::FakeMachine;

    const EINVAL: i64 = -22;
    const EFAULT: i64 = -14;
    const EPERM: i64 = -1;
    const EPOCH: u64 = 1_700_000_000 * NSEC_PER_SEC;

    fn ts(sec: i64, nsec: i64) -> [u8; 16] {
        Timespec { sec, nsec }.to_bytes()
    }

    #[test]
    fn clock_gettime_call() {
        let (mut p, mut m, buf) = setup();
        m.now = 3 * NSEC_PER_SEC + 9;
        m.epoch_offset = EPOCH;
        assert_eq!(call(&mut p, &mut m, sysno::CLOCK_GETTIME, &[1, buf]), 0);
        assert_eq!(peek(&mut p, &mut m, buf, 16), ts(3, 9));
        assert_eq!(call(&mut p, &mut m, sysno::CLOCK_GETTIME, &[0, buf]), 0);
        assert_eq!(peek(&mut p, &mut m, buf, 16), ts(1_700_000_003, 9));
        // Only the low 32 bits name the clock.
        assert_eq!(
            call(&mut p, &mut m, sysno::CLOCK_GETTIME, &[0x1_0000_0001, buf]),
            0
        );
        assert_eq!(peek(&mut p, &mut m, buf, 16), ts(3, 9));
        assert_eq!(
            call(&mut p, &mut m, sysno::CLOCK_GETTIME, &[8, buf]),
            EINVAL
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::CLOCK_GETTIME, &[1, UNMAPPED]),
            EFAULT
        );
    }

    #[test]
    fn clock_getres_call() {
        let (mut p, mut m, buf) = setup();
        assert_eq!(call(&mut p, &mut m, sysno::CLOCK_GETRES, &[1, buf]), 0);
        assert_eq!(peek(&mut p, &mut m, buf, 16), ts(0, 1));
        assert_eq!(call(&mut p, &mut m, sysno::CLOCK_GETRES, &[6, buf]), 0);
        assert_eq!(peek(&mut p, &mut m, buf, 16), ts(0, 4_000_000));
        assert_eq!(call(&mut p, &mut m, sysno::CLOCK_GETRES, &[0, 0]), 0);
        assert_eq!(call(&mut p, &mut m, sysno::CLOCK_GETRES, &[10, 0]), EINVAL);
        assert_eq!(
            call(&mut p, &mut m, sysno::CLOCK_GETRES, &[0, UNMAPPED]),
            EFAULT
        );
    }

    #[test]
    fn wall_clock_calls() {
        let (mut p, mut m, buf) = setup();
        m.now = 1_234_567_890;
        m.epoch_offset = EPOCH;
        poke(&mut p, &mut m, buf + 16, &[0xff; 8]);
        assert_eq!(
            call(&mut p, &mut m, sysno::GETTIMEOFDAY, &[buf, buf + 16]),
            0
        );
        assert_eq!(
            peek(&mut p, &mut m, buf, 24)[..16],
            Timeval {
                sec: 1_700_000_001,
                usec: 234_567
            }
            .to_bytes()
        );
        assert_eq!(peek(&mut p, &mut m, buf + 16, 8), [0; 8]);
        assert_eq!(call(&mut p, &mut m, sysno::GETTIMEOFDAY, &[0, 0]), 0);
        assert_eq!(
            call(&mut p, &mut m, sysno::GETTIMEOFDAY, &[UNMAPPED, 0]),
            EFAULT
        );
        assert_eq!(call(&mut p, &mut m, sysno::TIME, &[0]), 1_700_000_001);
        assert_eq!(call(&mut p, &mut m, sysno::TIME, &[buf]), 1_700_000_001);
        assert_eq!(peek64(&mut p, &mut m, buf), 1_700_000_001);
        assert_eq!(call(&mut p, &mut m, sysno::TIME, &[UNMAPPED]), EFAULT);
    }

    #[test]
    fn setting_clocks_is_refused() {
        let (mut p, mut m, buf) = setup();
        poke(&mut p, &mut m, buf, &ts(5, 0));
        assert_eq!(call(&mut p, &mut m, sysno::CLOCK_SETTIME, &[0, buf]), EPERM);
        assert_eq!(
            call(&mut p, &mut m, sysno::CLOCK_SETTIME, &[1, buf]),
            EINVAL
        );
        assert_eq!(call(&mut p, &mut m, sysno::CLOCK_SETTIME, &[2, buf]), EPERM);
        assert_eq!(
            call(&mut p, &mut m, sysno::CLOCK_SETTIME, &[99, buf]),
            EINVAL
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::CLOCK_SETTIME, &[0, UNMAPPED]),
            EFAULT
        );
        poke(&mut p, &mut m, buf, &ts(5, -1));
        assert_eq!(
            call(&mut p, &mut m, sysno::CLOCK_SETTIME, &[0, buf]),
            EINVAL
        );
        assert_eq!(call(&mut p, &mut m, sysno::SETTIMEOFDAY, &[0, 0]), 0);
        poke(&mut p, &mut m, buf, &Timeval { sec: 5, usec: 1 }.to_bytes());
        assert_eq!(call(&mut p, &mut m, sysno::SETTIMEOFDAY, &[buf, 0]), EPERM);
        poke(
            &mut p,
            &mut m,
            buf,
            &Timeval {
                sec: 5,
                usec: 1_000_000,
            }
            .to_bytes(),
        );
        assert_eq!(call(&mut p, &mut m, sysno::SETTIMEOFDAY, &[buf, 0]), EINVAL);
        assert_eq!(call(&mut p, &mut m, sysno::SETTIMEOFDAY, &[0, buf]), EPERM);
    }

    #[test]
    fn nanosleep_call() {
        let (mut p, mut m, buf) = setup();
        m.now = 100;
        poke(&mut p, &mut m, buf, &ts(1, 500));
        poke(&mut p, &mut m, buf + 16, &[0xee; 16]);
        assert_eq!(call(&mut p, &mut m, sysno::NANOSLEEP, &[buf, buf + 16]), 0);
        assert_eq!(m.now, 100 + NSEC_PER_SEC + 500);
        assert_eq!(peek(&mut p, &mut m, buf + 16, 16), [0xee; 16]);
        poke(&mut p, &mut m, buf, &ts(0, 1_000_000_000));
        assert_eq!(call(&mut p, &mut m, sysno::NANOSLEEP, &[buf, 0]), EINVAL);
        poke(&mut p, &mut m, buf, &ts(-1, 0));
        assert_eq!(call(&mut p, &mut m, sysno::NANOSLEEP, &[buf, 0]), EINVAL);
        assert_eq!(
            call(&mut p, &mut m, sysno::NANOSLEEP, &[UNMAPPED, 0]),
            EFAULT
        );
    }

    #[test]
    fn clock_nanosleep_call() {
        let (mut p, mut m, buf) = setup();
        m.now = 1_000;
        m.epoch_offset = EPOCH;
        poke(&mut p, &mut m, buf, &ts(0, 5_000));
        assert_eq!(
            call(&mut p, &mut m, sysno::CLOCK_NANOSLEEP, &[1, 0, buf, 0]),
            0
        );
        assert_eq!(m.now, 6_000);
        assert_eq!(
            call(
                &mut p,
                &mut m,
                sysno::CLOCK_NANOSLEEP,
                &[1, TIMER_ABSTIME, buf, 0]
            ),
            0
        );
        assert_eq!(m.now, 6_000);
        poke(&mut p, &mut m, buf, &ts(0, 9_000));
        assert_eq!(
            call(
                &mut p,
                &mut m,
                sysno::CLOCK_NANOSLEEP,
                &[7, TIMER_ABSTIME, buf, 0]
            ),
            0
        );
        assert_eq!(m.now, 9_000);
        // Absolute real time: one second after the current wall clock.
        let target = Timespec::from_ns(EPOCH + 9_000 + NSEC_PER_SEC);
        poke(&mut p, &mut m, buf, &target.to_bytes());
        assert_eq!(
            call(
                &mut p,
                &mut m,
                sysno::CLOCK_NANOSLEEP,
                &[0, TIMER_ABSTIME, buf, 0]
            ),
            0
        );
        assert_eq!(m.now, 9_000 + NSEC_PER_SEC);
        assert_eq!(
            call(&mut p, &mut m, sysno::CLOCK_NANOSLEEP, &[4, 0, buf, 0]),
            -95
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::CLOCK_NANOSLEEP, &[3, 0, buf, 0]),
            EINVAL
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::CLOCK_NANOSLEEP, &[8, 0, buf, 0]),
            EINVAL
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::CLOCK_NANOSLEEP, &[1, 0, UNMAPPED, 0]),
            EFAULT
        );
        poke(&mut p, &mut m, buf, &ts(0, -5));
        assert_eq!(
            call(&mut p, &mut m, sysno::CLOCK_NANOSLEEP, &[1, 0, buf, 0]),
            EINVAL
        );
    }

    #[test]
    fn clock_ids() {
        assert_eq!(Clock::from_id(0), Ok(Clock::Realtime));
        assert_eq!(Clock::from_id(1), Ok(Clock::Monotonic));
        assert_eq!(Clock::from_id(2), Ok(Clock::ProcessCpu));
        assert_eq!(Clock::from_id(3), Ok(Clock::ThreadCpu(0)));
        assert_eq!(Clock::from_id(4), Ok(Clock::MonotonicRaw));
        assert_eq!(Clock::from_id(5), Ok(Clock::RealtimeCoarse));
        assert_eq!(Clock::from_id(6), Ok(Clock::MonotonicCoarse));
        assert_eq!(Clock::from_id(7), Ok(Clock::Boottime));
        assert_eq!(Clock::from_id(11), Ok(Clock::Tai));
        for bad in [8, 9, 10, 12, 100, i32::MAX] {
            assert_eq!(Clock::from_id(bad), Err(Errno::EINVAL), "{bad}");
        }
    }

    #[test]
    fn cpu_clocks_read_the_accounting_not_the_wall_clock() {
        let (mut p, mut m, buf) = setup();
        m.now = 9 * NSEC_PER_SEC;
        m.cpu_time = crate::sched::CpuTime {
            user: 1_500_000_000,
            system: 250_000_000,
        };
        let me = m.thread.tid;
        let read = |p: &mut Process, m: &mut FakeMachine, id: i32| {
            let r = call(p, m, sysno::CLOCK_GETTIME, &[id as u32 as u64, buf]);
            (r == 0).then(|| peek64(p, m, buf) * NSEC_PER_SEC + peek64(p, m, buf + 8))
        };
        // The thread's clock is its user and system time; the process's includes the
        // ended threads' (the fake machine doubles it).
        assert_eq!(read(&mut p, &mut m, 3), Some(1_750_000_000));
        assert_eq!(read(&mut p, &mut m, 2), Some(3_500_000_000));
        // pthread_getcpuclockid of an existing thread, and of one that is not.
        let thread_clock = |tid: u32| ((!(tid as i32)) << 3) | 4 | 2;
        assert_eq!(read(&mut p, &mut m, thread_clock(me)), Some(1_750_000_000));
        assert_eq!(
            call(
                &mut p,
                &mut m,
                sysno::CLOCK_GETTIME,
                &[thread_clock(4242) as u32 as u64, buf]
            ),
            EINVAL
        );
        assert_eq!(
            call(
                &mut p,
                &mut m,
                sysno::CLOCK_GETRES,
                &[thread_clock(4242) as u32 as u64, buf]
            ),
            EINVAL
        );
    }

    #[test]
    fn adjtimex_reads_an_unsynchronised_clock_and_refuses_adjustments() {
        let (mut p, mut m, buf) = setup();
        m.epoch_offset = 1_700_000_000 * NSEC_PER_SEC;
        poke(&mut p, &mut m, buf, &[0; TIMEX_SIZE]);
        // TIME_ERROR; STA_UNSYNC; the time in microseconds; maxerror 16 s; tick 10 ms.
        assert_eq!(call(&mut p, &mut m, sysno::ADJTIMEX, &[buf]), 5);
        assert_eq!(peek64(&mut p, &mut m, buf + 40) as u32, 0x40);
        assert_eq!(
            peek64(&mut p, &mut m, buf + 72),
            m.realtime_ns() / NSEC_PER_SEC
        );
        assert_eq!(peek64(&mut p, &mut m, buf + 24), 16_000_000);
        assert_eq!(peek64(&mut p, &mut m, buf + 88), 10_000);
        // ADJ_OFFSET_SS_READ only reads; any adjustment is refused.
        poke(&mut p, &mut m, buf, &0xa001u32.to_le_bytes());
        assert_eq!(call(&mut p, &mut m, sysno::ADJTIMEX, &[buf]), 5);
        poke(&mut p, &mut m, buf, &1u32.to_le_bytes());
        assert_eq!(call(&mut p, &mut m, sysno::ADJTIMEX, &[buf]), EPERM);
        assert_eq!(call(&mut p, &mut m, sysno::ADJTIMEX, &[UNMAPPED]), EFAULT);
        // clock_adjtime: the real-time clock only.
        poke(&mut p, &mut m, buf, &[0; 4]);
        assert_eq!(call(&mut p, &mut m, sysno::CLOCK_ADJTIME, &[0, buf]), 5);
        assert_eq!(call(&mut p, &mut m, sysno::CLOCK_ADJTIME, &[1, buf]), -95);
        assert_eq!(
            call(&mut p, &mut m, sysno::CLOCK_ADJTIME, &[99, buf]),
            EINVAL
        );
    }

    #[test]
    fn cpu_time_interval_timers_signal_when_the_process_has_used_the_time() {
        use crate::sched::CpuTime;
        let (mut p, mut m, buf) = setup();
        m.now = 10 * NSEC_PER_SEC;
        m.cpus = 2;
        // The fake machine's process has twice the thread's time: 0.2 s user, 0.1 s system.
        m.cpu_time = CpuTime {
            user: 100_000_000,
            system: 50_000_000,
        };
        let itv = |interval_us: i64, value_us: i64| {
            let mut b = Timeval {
                sec: 0,
                usec: interval_us,
            }
            .to_bytes()
            .to_vec();
            b.extend_from_slice(
                &Timeval {
                    sec: 0,
                    usec: value_us,
                }
                .to_bytes(),
            );
            b
        };
        // ITIMER_PROF: 0.5 s of CPU time, then every 0.25 s.
        poke(&mut p, &mut m, buf, &itv(250_000, 500_000));
        assert_eq!(
            call(&mut p, &mut m, sysno::SETITIMER, &[ITIMER_PROF, buf, 0]),
            0
        );
        // Two CPUs use 0.5 s of CPU time in 0.25 s at the soonest: it is looked at then.
        assert_eq!(p.timers.next_deadline(), Some(m.now + 250_000_000));
        let fire = |p: &mut Process, m: &mut FakeMachine| {
            let mut out = alloc::vec::Vec::new();
            let now = m.now;
            p.timers.fire(m, now, &mut out);
            out.iter()
                .map(|s| (s.tid, s.info.signo, s.info.code))
                .collect::<alloc::vec::Vec<_>>()
        };
        // The process slept meanwhile: not due, looked at again 0.25 s later.
        m.now += 250_000_000;
        assert!(fire(&mut p, &mut m).is_empty());
        assert_eq!(p.timers.next_deadline(), Some(m.now + 250_000_000));
        assert_eq!(
            call(&mut p, &mut m, sysno::GETITIMER, &[ITIMER_PROF, buf]),
            0
        );
        assert_eq!(peek64(&mut p, &mut m, buf + 8), 250_000);
        assert_eq!(peek64(&mut p, &mut m, buf + 24), 500_000);
        // 0.6 s of CPU time later (0.3 s per thread): SIGPROF, from the kernel, to the
        // process; the next expiry 0.25 s of CPU time after the first.
        m.cpu_time.user += 300_000_000;
        m.now += 250_000_000;
        assert_eq!(fire(&mut p, &mut m), [(None, 27, 0x80)]);
        assert_eq!(
            call(&mut p, &mut m, sysno::GETITIMER, &[ITIMER_PROF, buf]),
            0
        );
        assert_eq!(peek64(&mut p, &mut m, buf + 24), 150_000);
        // ITIMER_VIRTUAL counts user time only; a zero value disarms.
        poke(&mut p, &mut m, buf, &itv(0, 100_000));
        assert_eq!(
            call(&mut p, &mut m, sysno::SETITIMER, &[ITIMER_VIRTUAL, buf, 0]),
            0
        );
        m.cpu_time.system += 100_000_000;
        m.now += NSEC_PER_SEC;
        assert_eq!(fire(&mut p, &mut m), [(None, 27, 0x80)]);
        m.cpu_time.user += 50_000_000;
        m.now += NSEC_PER_SEC;
        assert_eq!(fire(&mut p, &mut m), [(None, 26, 0x80)]);
        assert_eq!(p.timers.cpu[0], None, "one shot");
        poke(&mut p, &mut m, buf, &itv(0, 0));
        assert_eq!(
            call(&mut p, &mut m, sysno::SETITIMER, &[ITIMER_PROF, buf, 0]),
            0
        );
        assert_eq!(p.timers.next_deadline(), None);
    }

    #[test]
    fn cpu_clock_ids() {
        // clock_getcpuclockid(0): MAKE_PROCESS_CPUCLOCK(0, CPUCLOCK_SCHED).
        assert_eq!(Clock::from_id((!0 << 3) | 2), Ok(Clock::ProcessCpu));
        assert_eq!(Clock::from_id((!1 << 3) | 2), Ok(Clock::ProcessCpu));
        // pthread_getcpuclockid: MAKE_THREAD_CPUCLOCK(tid 1, CPUCLOCK_SCHED).
        assert_eq!(Clock::from_id((!1 << 3) | 4 | 2), Ok(Clock::ThreadCpu(1)));
        assert_eq!(Clock::from_id((!7 << 3) | 4 | 2), Ok(Clock::ThreadCpu(7)));
        assert_eq!(Clock::from_id((!2 << 3) | 2), Err(Errno::EINVAL));
        assert_eq!(Clock::from_id((!0 << 3) | 3), Err(Errno::EINVAL));
    }

    #[test]
    fn clock_values() {
        let m = FakeMachine {
            now: 5 * NSEC_PER_SEC + 7_654_321,
            epoch_offset: 1_700_000_000 * NSEC_PER_SEC,
            ..FakeMachine::default()
        };
        assert_eq!(Clock::Monotonic.now_ns(&m), 5_007_654_321);
        assert_eq!(Clock::Boottime.now_ns(&m), 5_007_654_321);
        assert_eq!(Clock::MonotonicCoarse.now_ns(&m), 5_004_000_000);
        assert_eq!(Clock::MonotonicCoarse.now_ns(&m), 5_004_000_000);
        assert_eq!(Clock::Realtime.now_ns(&m), 1_700_000_005_007_654_321);
        assert_eq!(Clock::Tai.now_ns(&m), 1_700_000_005_007_654_321);
        assert_eq!(Clock::RealtimeCoarse.now_ns(&m), 1_700_000_005_004_000_000);
        assert_eq!(Clock::Monotonic.resolution_ns(), 1);
        assert_eq!(Clock::RealtimeCoarse.resolution_ns(), 4_000_000);
        assert_eq!(Clock::MonotonicCoarse.resolution_ns(), 4_000_000);
    }

    #[test]
    fn timespec_codec_and_validity() {
        let t = Timespec::from_ns(3 * NSEC_PER_SEC + 5);
        assert_eq!(t, Timespec { sec: 3, nsec: 5 });
        assert_eq!(Timespec::from_bytes(&t.to_bytes()), t);
        assert_eq!(t.to_ns(), Ok(3_000_000_005));
        assert_eq!(Timespec { sec: -1, nsec: 0 }.to_ns(), Err(Errno::EINVAL));
        assert_eq!(Timespec { sec: 0, nsec: -1 }.to_ns(), Err(Errno::EINVAL));
        assert_eq!(
            Timespec {
                sec: 0,
                nsec: 1_000_000_000
            }
            .to_ns(),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            Timespec {
                sec: i64::MAX,
                nsec: 0
            }
            .to_ns(),
            Ok(u64::MAX)
        );
        let v = Timeval::from_ns(2 * NSEC_PER_SEC + 123_456_789);
        assert_eq!(
            v,
            Timeval {
                sec: 2,
                usec: 123_456
            }
        );
        assert_eq!(Timeval::from_bytes(&v.to_bytes()), v);
    }

    #[test]
    fn deadlines() {
        let m = FakeMachine {
            now: 1_000,
            epoch_offset: 1_000_000,
            ..FakeMachine::default()
        };
        assert_eq!(sleep_deadline(&m, Clock::Monotonic, false, 500), 1_500);
        assert_eq!(sleep_deadline(&m, Clock::Realtime, false, 500), 1_500);
        assert_eq!(sleep_deadline(&m, Clock::Monotonic, true, 5_000), 5_000);
        assert_eq!(sleep_deadline(&m, Clock::Monotonic, true, 10), 1_000);
        // Real time now is 1_001_000: a target 2_000 ns later is 2_000 ns from now.
        assert_eq!(sleep_deadline(&m, Clock::Realtime, true, 1_003_000), 3_000);
        assert_eq!(sleep_deadline(&m, Clock::Tai, true, 5), 1_000);
        assert_eq!(
            sleep_deadline(&m, Clock::Monotonic, false, u64::MAX),
            u64::MAX
        );
    }

    fn itv(interval: (i64, i64), value: (i64, i64)) -> Vec<u8> {
        let mut v = Timeval {
            sec: interval.0,
            usec: interval.1,
        }
        .to_bytes()
        .to_vec();
        v.extend_from_slice(
            &Timeval {
                sec: value.0,
                usec: value.1,
            }
            .to_bytes(),
        );
        v
    }

    #[test]
    fn interval_timer_and_alarm() {
        let (mut p, mut m, buf) = setup();
        let old = buf + 64;
        m.now = 10 * NSEC_PER_SEC;
        // Every 250 ms after 1.5 s.
        poke(&mut p, &mut m, buf, &itv((0, 250_000), (1, 500_000)));
        assert_eq!(
            call(&mut p, &mut m, sysno::SETITIMER, &[ITIMER_REAL, buf, old]),
            0
        );
        assert_eq!(peek(&mut p, &mut m, old, 32), itv((0, 0), (0, 0)));
        assert_eq!(p.timers.next_deadline(), Some(11_500_000_000));
        m.now += NSEC_PER_SEC;
        assert_eq!(
            call(&mut p, &mut m, sysno::GETITIMER, &[ITIMER_REAL, old]),
            0
        );
        assert_eq!(
            peek(&mut p, &mut m, old, 32),
            itv((0, 250_000), (0, 500_000))
        );
        // Not due yet; then due (once, though two periods passed), and re-armed.
        assert!(!p
            .timers
            .fire(&mut m, 11_400_000_000, &mut alloc::vec::Vec::new()));
        assert!(p
            .timers
            .fire(&mut m, 11_800_000_000, &mut alloc::vec::Vec::new()));
        assert_eq!(p.timers.next_deadline(), Some(12_000_000_000));
        // Bad values and unknown timers are refused.
        poke(&mut p, &mut m, buf, &itv((0, 0), (0, 1_000_000)));
        assert_eq!(
            call(&mut p, &mut m, sysno::SETITIMER, &[ITIMER_REAL, buf, 0]),
            EINVAL
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::SETITIMER, &[ITIMER_PROF, buf, 0]),
            EINVAL
        );
        assert_eq!(call(&mut p, &mut m, sysno::SETITIMER, &[3, buf, 0]), EINVAL);
        assert_eq!(
            call(&mut p, &mut m, sysno::SETITIMER, &[ITIMER_REAL, 8, 0]),
            EFAULT
        );
        // A zero value disarms.
        poke(&mut p, &mut m, buf, &itv((1, 0), (0, 0)));
        assert_eq!(
            call(&mut p, &mut m, sysno::SETITIMER, &[ITIMER_REAL, buf, 0]),
            0
        );
        assert_eq!(p.timers.next_deadline(), None);
        // alarm: one shot; returns the seconds left on the previous one, rounded.
        m.now = 100 * NSEC_PER_SEC;
        assert_eq!(call(&mut p, &mut m, sysno::ALARM, &[5]), 0);
        m.now += 1_400_000_000;
        assert_eq!(call(&mut p, &mut m, sysno::ALARM, &[2]), 4);
        assert_eq!(p.timers.next_deadline(), Some(103_400_000_000));
        assert!(p
            .timers
            .fire(&mut m, 103_400_000_000, &mut alloc::vec::Vec::new()));
        assert_eq!(p.timers.next_deadline(), None);
        assert_eq!(call(&mut p, &mut m, sysno::ALARM, &[0]), 0);
    }
}
