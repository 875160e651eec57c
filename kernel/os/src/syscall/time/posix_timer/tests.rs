use super::*;
use crate::syscall::testutil::*;
use crate::sysno;
use crate::testing::FakeMachine;

const MS: u64 = 1_000_000;

/// Writes a `sigevent` at `at`.
fn sigevent(
    p: &mut Process,
    m: &mut FakeMachine,
    at: u64,
    value: u64,
    signo: i32,
    notify: i32,
    tid: i32,
) {
    let mut ev = [0u8; 64];
    ev[..8].copy_from_slice(&value.to_le_bytes());
    ev[8..12].copy_from_slice(&signo.to_le_bytes());
    ev[12..16].copy_from_slice(&notify.to_le_bytes());
    ev[16..20].copy_from_slice(&tid.to_le_bytes());
    poke(p, m, at, &ev);
}

/// Arms timer `id`: first expiry after `value`, then every `interval` (relative).
fn arm(p: &mut Process, m: &mut FakeMachine, at: u64, id: u64, value: u64, interval: u64) -> i64 {
    let mut spec = [0u8; 32];
    spec[..16].copy_from_slice(&Timespec::from_ns(interval).to_bytes());
    spec[16..].copy_from_slice(&Timespec::from_ns(value).to_bytes());
    poke(p, m, at, &spec);
    call(p, m, sysno::TIMER_SETTIME, &[id, 0, at, 0])
}

fn fire(p: &mut Process, m: &mut FakeMachine, now: u64) -> Vec<TimerSignal> {
    let mut out = Vec::new();
    m.now = now;
    p.timers.fire(m, now, &mut out);
    out
}

fn create(p: &mut Process, m: &mut FakeMachine, buf: u64, sev: u64) -> u64 {
    assert_eq!(call(p, m, sysno::TIMER_CREATE, &[1, sev, buf + 200]), 0);
    u32::from_le_bytes(peek(p, m, buf + 200, 4).try_into().unwrap()) as u64
}

#[test]
fn a_periodic_timer_signals_with_its_id_value_and_overrun() {
    let (mut p, mut m, buf) = setup();
    let start = m.now;
    // Ruby's and haproxy's kind: a signal with a value of the program's choosing.
    sigevent(&mut p, &mut m, buf, 0xfeed, 26, SIGEV_SIGNAL, 0);
    let id = create(&mut p, &mut m, buf, buf);
    assert_eq!(arm(&mut p, &mut m, buf + 300, id, 10 * MS, 5 * MS), 0);
    assert_eq!(p.timers.next_deadline(), Some(start + 10 * MS));
    assert!(fire(&mut p, &mut m, start + 9 * MS).is_empty());
    let s = fire(&mut p, &mut m, start + 10 * MS);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].tid, None);
    assert_eq!(
        s[0].info,
        SigInfo {
            signo: 26,
            code: SI_TIMER,
            addr_or_pid: id,
            value: 0xfeed
        }
    );
    // Two periods went by unnoticed: one signal, overrun 2.
    let s = fire(&mut p, &mut m, start + 27 * MS);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].info.addr_or_pid >> 32, 2);
    assert_eq!(call(&mut p, &mut m, sysno::TIMER_GETOVERRUN, &[id]), 2);
    // timer_gettime: 3 ms left to the expiry at 30 ms, every 5 ms.
    assert_eq!(
        call(&mut p, &mut m, sysno::TIMER_GETTIME, &[id, buf + 400]),
        0
    );
    let spec = peek(&mut p, &mut m, buf + 400, 32);
    assert_eq!(spec[..16], Timespec::from_ns(5 * MS).to_bytes());
    assert_eq!(spec[16..], Timespec::from_ns(3 * MS).to_bytes());
    // Disarmed by a zero value; deleted, then unknown.
    assert_eq!(arm(&mut p, &mut m, buf + 300, id, 0, 0), 0);
    assert!(fire(&mut p, &mut m, start + 100 * MS).is_empty());
    assert_eq!(call(&mut p, &mut m, sysno::TIMER_DELETE, &[id]), 0);
    assert_eq!(call(&mut p, &mut m, sysno::TIMER_DELETE, &[id]), -22);
    assert_eq!(arm(&mut p, &mut m, buf + 300, id, MS, 0), -22);
}

#[test]
fn thread_none_and_default_notifications() {
    let (mut p, mut m, buf) = setup();
    let start = m.now;
    // SIGEV_THREAD_ID (glibc's SIGEV_THREAD helper): to that thread alone.
    sigevent(&mut p, &mut m, buf, 7, 34, SIGEV_THREAD_ID, 1);
    let to_thread = create(&mut p, &mut m, buf, buf);
    // No sigevent: SIGALRM to the process, the id as value.
    let plain = create(&mut p, &mut m, buf, 0);
    // SIGEV_NONE: expires silently.
    sigevent(&mut p, &mut m, buf, 0, 0, SIGEV_NONE, 0);
    let silent = create(&mut p, &mut m, buf, buf);
    assert_ne!(to_thread, plain);
    for id in [to_thread, plain, silent] {
        assert_eq!(arm(&mut p, &mut m, buf + 300, id, MS, 0), 0);
    }
    let s = fire(&mut p, &mut m, start + MS);
    assert_eq!(s.len(), 2);
    assert_eq!(
        (s[0].tid, s[0].info.signo, s[0].info.value),
        (Some(1), 34, 7)
    );
    assert_eq!(
        (s[1].tid, s[1].info.signo, s[1].info.value),
        (None, SIGALRM as i32, plain)
    );
    // One-shot timers are disarmed after they expire.
    assert!(fire(&mut p, &mut m, start + 10 * MS).is_empty());
    assert_eq!(p.timers.next_deadline(), None);
}

#[test]
fn bad_requests_are_refused() {
    let (mut p, mut m, buf) = setup();
    // A thread that does not exist; a signal out of range; an unknown notification.
    sigevent(&mut p, &mut m, buf, 0, 10, SIGEV_THREAD_ID, 99);
    assert_eq!(
        call(&mut p, &mut m, sysno::TIMER_CREATE, &[1, buf, buf + 200]),
        -22
    );
    sigevent(&mut p, &mut m, buf, 0, 65, SIGEV_SIGNAL, 0);
    assert_eq!(
        call(&mut p, &mut m, sysno::TIMER_CREATE, &[1, buf, buf + 200]),
        -22
    );
    sigevent(&mut p, &mut m, buf, 0, 10, 9, 0);
    assert_eq!(
        call(&mut p, &mut m, sysno::TIMER_CREATE, &[1, buf, buf + 200]),
        -22
    );
    // The CPU-time clocks: Kiln keeps no CPU time to expire them on.
    assert_eq!(
        call(&mut p, &mut m, sysno::TIMER_CREATE, &[2, 0, buf + 200]),
        -22
    );
    assert_eq!(
        call(&mut p, &mut m, sysno::TIMER_CREATE, &[3, 0, buf + 200]),
        -22
    );
    // An unreadable sigevent, an unwritable id.
    assert_eq!(
        call(&mut p, &mut m, sysno::TIMER_CREATE, &[1, 8, buf + 200]),
        -14
    );
    assert_eq!(call(&mut p, &mut m, sysno::TIMER_CREATE, &[1, 0, 8]), -14);
    assert!(p.timers.posix.timers.is_empty());
    // A bad time.
    let id = create(&mut p, &mut m, buf, 0);
    let mut spec = [0u8; 32];
    spec[24..32].copy_from_slice(&2_000_000_000i64.to_le_bytes());
    poke(&mut p, &mut m, buf + 300, &spec);
    assert_eq!(
        call(&mut p, &mut m, sysno::TIMER_SETTIME, &[id, 0, buf + 300, 0]),
        -22
    );
    // execve deletes them.
    p.timers.posix.clear();
    assert_eq!(call(&mut p, &mut m, sysno::TIMER_GETOVERRUN, &[id]), -22);
}
