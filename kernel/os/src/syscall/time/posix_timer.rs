//! POSIX per-process timers: `timer_create`, `timer_settime`, `timer_gettime`,
//! `timer_getoverrun`, `timer_delete`.
//!
//! A timer expires on the monotonic clock (a `CLOCK_REALTIME` target is converted when it
//! is set, as timerfds are) and notifies as its `sigevent` asks: a signal to the process
//! (`SIGEV_SIGNAL`), to one thread (`SIGEV_THREAD_ID`, which glibc's `SIGEV_THREAD` also
//! uses, for its helper thread) or nothing (`SIGEV_NONE`). The signal carries `SI_TIMER`,
//! the timer's id, its overrun and the `sigev_value`. Expiries missed between two runs of
//! the kernel's timer loop count as the overrun of the one signal sent for them.
//! `execve` deletes the timers, as on Linux. The CPU-time clocks are refused (`EINVAL`):
//! these timers expire on the monotonic clock only; the CPU-time interval timers are
//! `setitimer`'s (`ITIMER_VIRTUAL`, `ITIMER_PROF`, see [`crate::fd::timerfd::CpuTimer`]),
//! which Go's profiler falls back to when `timer_create` refuses.

use alloc::vec::Vec;

use super::{sleep_deadline, Clock, Timespec};
use crate::errno::{Errno, KResult};
use crate::machine::Machine;
use crate::process::Process;
use crate::sigframe::SigInfo;
use crate::syscall::signal::{NSIG, SIGALRM};
use crate::syscall::{read_user, write_user};

/// `sigev_notify`: a signal to the process.
pub const SIGEV_SIGNAL: i32 = 0;
/// `sigev_notify`: no notification (the timer is read with `timer_gettime`).
pub const SIGEV_NONE: i32 = 1;
/// `sigev_notify`: a signal to the thread `sigev_notify_thread_id`.
pub const SIGEV_THREAD_ID: i32 = 4;
/// `TIMER_ABSTIME`: the value is a time on the timer's clock, not an interval.
pub const TIMER_ABSTIME: u64 = 1;
/// `si_code` of a timer's signal.
pub const SI_TIMER: i32 = -2;
/// Timers a process may hold at once.
pub const MAX_TIMERS: usize = 1024;

/// Whom a timer notifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Notify {
    None,
    Process,
    Thread(u32),
}

/// One timer.
#[derive(Debug, Clone, Copy)]
struct PosixTimer {
    id: i32,
    clock: Clock,
    notify: Notify,
    signo: u32,
    value: u64,
    /// Next expiry (monotonic ns), `None` when disarmed.
    deadline: Option<u64>,
    /// Period in ns (0: expires once).
    interval: u64,
    /// The overrun of the last expiry notified (`timer_getoverrun`).
    overrun: u32,
}

/// The process's POSIX timers.
#[derive(Debug, Default)]
pub struct PosixTimers {
    timers: Vec<PosixTimer>,
    next_id: i32,
}

/// A timer's signal, due to the process (`tid` `None`) or to one thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerSignal {
    /// The thread it is for; `None` for the process.
    pub tid: Option<u32>,
    /// What the handler learns.
    pub info: SigInfo,
}

impl PosixTimers {
    /// Expires the timers due at `now`, pushing the signals they send onto `out`.
    pub fn fire(&mut self, now: u64, out: &mut Vec<TimerSignal>) {
        for t in &mut self.timers {
            let Some(d) = t.deadline.filter(|&d| d <= now) else {
                continue;
            };
            let missed = match (now - d).checked_div(t.interval) {
                None => {
                    t.deadline = None;
                    0
                }
                Some(periods) => {
                    t.deadline = Some(d + (periods + 1) * t.interval);
                    periods
                }
            };
            t.overrun = u32::try_from(missed)
                .unwrap_or(i32::MAX as u32)
                .min(i32::MAX as u32);
            let tid = match t.notify {
                Notify::None => continue,
                Notify::Process => None,
                Notify::Thread(tid) => Some(tid),
            };
            out.push(TimerSignal {
                tid,
                info: SigInfo {
                    signo: t.signo as i32,
                    code: SI_TIMER,
                    addr_or_pid: (t.id as u32 as u64) | (u64::from(t.overrun) << 32),
                    value: t.value,
                },
            });
        }
    }

    /// The earliest expiry of an armed timer.
    pub fn next_deadline(&self) -> Option<u64> {
        self.timers.iter().filter_map(|t| t.deadline).min()
    }

    /// Deletes every timer (`execve`).
    pub fn clear(&mut self) {
        self.timers.clear();
    }

    fn get(&mut self, id: u64) -> KResult<&mut PosixTimer> {
        let id = i32::try_from(id as i64).map_err(|_| Errno::EINVAL)?;
        self.timers
            .iter_mut()
            .find(|t| t.id == id)
            .ok_or(Errno::EINVAL)
    }
}

/// Handles the timer calls; `None` for other numbers.
pub fn handle(p: &mut Process, m: &mut dyn Machine, nr: u64, a: [u64; 6]) -> Option<KResult<i64>> {
    Some(match nr {
        crate::sysno::TIMER_CREATE => timer_create(p, m, a[0], a[1], a[2]),
        crate::sysno::TIMER_SETTIME => timer_settime(p, m, a[0], a[1], a[2], a[3]),
        crate::sysno::TIMER_GETTIME => timer_gettime(p, m, a[0], a[1]),
        crate::sysno::TIMER_GETOVERRUN => p.timers.posix.get(a[0]).map(|t| i64::from(t.overrun)),
        crate::sysno::TIMER_DELETE => timer_delete(p, a[0]),
        _ => return None,
    })
}

/// `timer_create(clockid, sevp, timerid)`: without `sevp`, `SIGALRM` to the process with
/// the timer's id as value.
fn timer_create(
    p: &mut Process,
    m: &mut dyn Machine,
    clockid: u64,
    sevp: u64,
    idp: u64,
) -> KResult<i64> {
    let clock = Clock::from_id(clockid as u32 as i32)?;
    if matches!(clock, Clock::ProcessCpu | Clock::ThreadCpu(_)) {
        return Err(Errno::EINVAL);
    }
    let id = p.timers.posix.next_id;
    let (notify, signo, value) = if sevp == 0 {
        (Notify::Process, SIGALRM, id as u64)
    } else {
        let ev: [u8; 20] = read_user(p, m, sevp)?;
        let int = |o: usize| i32::from_le_bytes(ev[o..o + 4].try_into().expect("4 bytes"));
        let value = u64::from_le_bytes(ev[..8].try_into().expect("8 bytes"));
        let signo = int(8);
        let notify = match int(12) {
            SIGEV_NONE => Notify::None,
            SIGEV_SIGNAL => Notify::Process,
            SIGEV_THREAD_ID => {
                let tid = u32::try_from(int(16)).map_err(|_| Errno::EINVAL)?;
                if m.thread_of(tid).is_none() {
                    return Err(Errno::EINVAL);
                }
                Notify::Thread(tid)
            }
            _ => return Err(Errno::EINVAL),
        };
        if notify != Notify::None && !(1..=NSIG as i32).contains(&signo) {
            return Err(Errno::EINVAL);
        }
        (notify, signo as u32, value)
    };
    if p.timers.posix.timers.len() >= MAX_TIMERS {
        return Err(Errno::EAGAIN);
    }
    write_user(p, m, idp, &id.to_le_bytes())?;
    let timers = &mut p.timers.posix;
    timers.next_id = timers.next_id.checked_add(1).unwrap_or(0);
    timers.timers.push(PosixTimer {
        id,
        clock,
        notify,
        signo,
        value,
        deadline: None,
        interval: 0,
        overrun: 0,
    });
    Ok(0)
}

/// The `struct itimerspec` of a timer at `now`: interval, then the time left (0: disarmed).
fn itimerspec(t: &PosixTimer, now: u64) -> [u8; 32] {
    let left = t.deadline.map_or(0, |d| d.saturating_sub(now).max(1));
    let mut b = [0; 32];
    b[..16].copy_from_slice(&Timespec::from_ns(t.interval).to_bytes());
    b[16..].copy_from_slice(&Timespec::from_ns(left).to_bytes());
    b
}

/// `timer_settime(id, flags, new, old)`: arms (a zero value disarms) the timer.
fn timer_settime(
    p: &mut Process,
    m: &mut dyn Machine,
    id: u64,
    flags: u64,
    new: u64,
    old: u64,
) -> KResult<i64> {
    let b: [u8; 32] = read_user(p, m, new)?;
    let interval = Timespec::from_bytes(b[..16].try_into().expect("16 bytes")).to_ns()?;
    let value = Timespec::from_bytes(b[16..].try_into().expect("16 bytes")).to_ns()?;
    let now = m.monotonic_ns();
    let t = p.timers.posix.get(id)?;
    let before = itimerspec(t, now);
    t.interval = interval;
    t.deadline =
        (value != 0).then(|| sleep_deadline(m, t.clock, flags & TIMER_ABSTIME != 0, value));
    if old != 0 {
        write_user(p, m, old, &before)?;
    }
    Ok(0)
}

/// `timer_gettime(id, cur)`.
fn timer_gettime(p: &mut Process, m: &mut dyn Machine, id: u64, cur: u64) -> KResult<i64> {
    let now = m.monotonic_ns();
    let spec = itimerspec(p.timers.posix.get(id)?, now);
    write_user(p, m, cur, &spec)?;
    Ok(0)
}

/// `timer_delete(id)`.
fn timer_delete(p: &mut Process, id: u64) -> KResult<i64> {
    let id = p.timers.posix.get(id)?.id;
    p.timers.posix.timers.retain(|t| t.id != id);
    Ok(0)
}

#[cfg(test)]
mod tests;
