//! Threads and futexes: `clone`, `clone3`, `exit`, `futex`, `set_tid_address`, `gettid`,
//! `sched_yield`.
//!
//! A unikernel runs one program, so `clone` makes threads only: a call without `CLONE_VM`
//! and `CLONE_THREAD` (a `fork`, or `posix_spawn`'s `vfork`) fails with `ENOSYS`, logged once.

use alloc::vec;

use crate::errno::{Errno, KResult};
use crate::machine::Machine;
use crate::process::{Channel, Outcome, Process, ThreadState, Wait};
use crate::syscall::time::NSEC_PER_SEC;
use crate::syscall::{read_user, ret, write_user};
use crate::sysno;

/// `clone` flags.
pub mod flags {
    /// Share the address space.
    pub const CLONE_VM: u64 = 0x100;
    /// Share file-system information.
    pub const CLONE_FS: u64 = 0x200;
    /// Share the file table.
    pub const CLONE_FILES: u64 = 0x400;
    /// Share signal handlers.
    pub const CLONE_SIGHAND: u64 = 0x800;
    /// Set up a pidfd (not supported).
    pub const CLONE_PIDFD: u64 = 0x1000;
    /// The parent is suspended until the child execs or exits.
    pub const CLONE_VFORK: u64 = 0x4000;
    /// Same thread group.
    pub const CLONE_THREAD: u64 = 0x10000;
    /// Share System V semaphore undo values.
    pub const CLONE_SYSVSEM: u64 = 0x40000;
    /// Set the TLS (FS base).
    pub const CLONE_SETTLS: u64 = 0x80000;
    /// Store the child's tid in the parent's memory.
    pub const CLONE_PARENT_SETTID: u64 = 0x100000;
    /// Clear the child's tid at exit and wake its futex.
    pub const CLONE_CHILD_CLEARTID: u64 = 0x200000;
    /// Ignored by Linux.
    pub const CLONE_DETACHED: u64 = 0x400000;
    /// Store the child's tid in the child's memory.
    pub const CLONE_CHILD_SETTID: u64 = 0x1000000;
    /// Low byte: the exit signal (must be 0 for threads).
    pub const CSIGNAL: u64 = 0xff;
}
use flags::*;

/// Futex operations and flags.
pub mod futex_op {
    /// Wait while the word equals the value.
    pub const WAIT: u32 = 0;
    /// Wake waiters.
    pub const WAKE: u32 = 1;
    /// Wake some, move the rest to another futex.
    pub const REQUEUE: u32 = 3;
    /// Like REQUEUE after checking the word.
    pub const CMP_REQUEUE: u32 = 4;
    /// Modify a second word and wake on both.
    pub const WAKE_OP: u32 = 5;
    /// WAIT with a bitset and an absolute timeout.
    pub const WAIT_BITSET: u32 = 9;
    /// WAKE with a bitset.
    pub const WAKE_BITSET: u32 = 10;
    /// Private futex (this process only: all futexes here).
    pub const PRIVATE: u32 = 128;
    /// Absolute timeouts are on CLOCK_REALTIME.
    pub const CLOCK_REALTIME: u32 = 256;
    /// Matches every bitset.
    pub const BITSET_MATCH_ANY: u32 = u32::MAX;
}

fn futex_channel(addr: u64, bitset: u32) -> Channel {
    Channel::Futex { addr, bitset }
}

/// Ends the calling thread: `CLONE_CHILD_CLEARTID` / `set_tid_address` semantics, then
/// [`Outcome::ThreadExit`].
pub fn exit_thread(p: &mut Process, m: &mut dyn Machine, status: u8) -> Outcome {
    // The main thread's name stays the process's after it ends, as Linux's leader keeps it.
    let tid = m.thread().tid;
    if i64::from(tid) != crate::process::PID {
        p.proc.names.remove(tid);
    }
    let ctid = m.thread().clear_child_tid;
    if ctid != 0 && write_user(p, m, ctid, &0u32.to_le_bytes()).is_ok() {
        m.wake(futex_channel(ctid, futex_op::BITSET_MATCH_ANY), 1);
    }
    Outcome::ThreadExit(status)
}

/// Arguments of a thread-creating call, normalised from `clone` or `clone3`.
struct CloneArgs {
    flags: u64,
    stack: u64,
    parent_tid: u64,
    child_tid: u64,
    tls: u64,
}

fn clone(p: &mut Process, m: &mut dyn Machine, c: CloneArgs) -> KResult<i64> {
    const THREAD: u64 = CLONE_VM | CLONE_THREAD | CLONE_SIGHAND;
    if c.flags & THREAD != THREAD {
        if c.flags & CLONE_THREAD != 0 && c.flags & CLONE_SIGHAND == 0 {
            return Err(Errno::EINVAL);
        }
        if p.unsupported_logged.insert(u64::MAX - 1) {
            m.log(format_args!(
                "clone without CLONE_VM|CLONE_THREAD (fork, vfork, posix_spawn): a unikernel runs one process: ENOSYS"
            ));
        }
        return Err(Errno::ENOSYS);
    }
    if c.flags & (CLONE_VFORK | CLONE_PIDFD) != 0 || c.flags & CSIGNAL != 0 {
        return Err(Errno::EINVAL);
    }
    let tid = p.next_tid;
    let parent = m.thread().clone();
    let mut child = ThreadState {
        tid,
        clear_child_tid: 0,
        robust_list: (0, 0),
        signals: parent.signals.inherit(),
        partial_write: None,
        ..parent
    };
    if c.flags & CLONE_SETTLS != 0 {
        if c.tls >= crate::vm::USER_END {
            return Err(Errno::EPERM);
        }
        child.fs_base = c.tls;
    }
    if c.flags & CLONE_CHILD_CLEARTID != 0 {
        child.clear_child_tid = c.child_tid;
    }
    if c.flags & CLONE_PARENT_SETTID != 0 {
        write_user(p, m, c.parent_tid, &tid.to_le_bytes())?;
    }
    if c.flags & CLONE_CHILD_SETTID != 0 {
        write_user(p, m, c.child_tid, &tid.to_le_bytes())?;
    }
    m.spawn_thread(child, c.stack)?;
    // A new thread has its maker's name.
    let name = p.proc.thread_comm(parent.tid, &p.exe_path);
    p.proc.names.set(tid, &name);
    p.next_tid += 1;
    Ok(tid.into())
}

fn clone3(p: &mut Process, m: &mut dyn Machine, addr: u64, size: u64) -> KResult<i64> {
    // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack,
    // stack_size, tls, set_tid, set_tid_size, cgroup (8 bytes each).
    if !(64..=4096).contains(&size) {
        return Err(Errno::EINVAL);
    }
    let raw: [u8; 88] = {
        let mut buf = [0u8; 88];
        let n = (size as usize).min(88);
        p.vm.copy_from_user(m.pages(), addr, &mut buf[..n])?;
        buf
    };
    let f = |i: usize| u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap());
    let (flags, exit_signal, stack, stack_size) = (f(0), f(4), f(5), f(6));
    // The exit signal sits in `clone`'s low byte (CSIGNAL), so a process-creating
    // `clone3` (glibc's `posix_spawn`, `system` and `popen` pass SIGCHLD) gets
    // `clone`'s ENOSYS, and a thread with one gets its EINVAL.
    if exit_signal > 64 || flags & CSIGNAL != 0 {
        return Err(Errno::EINVAL);
    }
    if f(8) != 0 || f(9) != 0 || (size >= 88 && f(10) != 0) {
        return Err(Errno::EINVAL);
    }
    let flags = flags | exit_signal;
    if (stack == 0) != (stack_size == 0) {
        return Err(Errno::EINVAL);
    }
    let top = if stack == 0 {
        0
    } else {
        stack.checked_add(stack_size).ok_or(Errno::EINVAL)?
    };
    clone(
        p,
        m,
        CloneArgs {
            flags,
            stack: top,
            parent_tid: f(3),
            child_tid: f(2),
            tls: f(7),
        },
    )
}

fn timeout_deadline(
    p: &mut Process,
    m: &mut dyn Machine,
    addr: u64,
    absolute: bool,
    realtime: bool,
) -> KResult<Option<u64>> {
    if addr == 0 {
        return Ok(None);
    }
    if let Some(d) = m.restart_deadline() {
        return Ok(Some(d));
    }
    let ts: [u8; 16] = read_user(p, m, addr)?;
    let sec = i64::from_le_bytes(ts[..8].try_into().unwrap());
    let nsec = i64::from_le_bytes(ts[8..].try_into().unwrap());
    if sec < 0 || !(0..NSEC_PER_SEC as i64).contains(&nsec) {
        return Err(Errno::EINVAL);
    }
    let ns = (sec as u64)
        .saturating_mul(NSEC_PER_SEC)
        .saturating_add(nsec as u64);
    let now = m.monotonic_ns();
    Ok(Some(if !absolute {
        now.saturating_add(ns)
    } else if realtime {
        let wall = m.realtime_ns();
        now.saturating_add(ns.saturating_sub(wall))
    } else {
        ns
    }))
}

fn futex(p: &mut Process, m: &mut dyn Machine, a: [u64; 6]) -> KResult<Outcome> {
    let (addr, op, val) = (a[0], a[1] as u32, a[2] as u32);
    let cmd = op & !(futex_op::PRIVATE | futex_op::CLOCK_REALTIME);
    let realtime = op & futex_op::CLOCK_REALTIME != 0;
    if realtime && !matches!(cmd, futex_op::WAIT | futex_op::WAIT_BITSET) {
        return Err(Errno::ENOSYS);
    }
    if !addr.is_multiple_of(4) {
        return Err(Errno::EINVAL);
    }
    let word = |p: &mut Process, m: &mut dyn Machine, addr: u64| -> KResult<u32> {
        Ok(u32::from_le_bytes(read_user::<4>(p, m, addr)?))
    };
    match cmd {
        futex_op::WAIT | futex_op::WAIT_BITSET => {
            let bitset = if cmd == futex_op::WAIT {
                futex_op::BITSET_MATCH_ANY
            } else {
                a[5] as u32
            };
            if bitset == 0 {
                return Err(Errno::EINVAL);
            }
            // FUTEX_WAIT's timeout is relative (on CLOCK_MONOTONIC); WAIT_BITSET's absolute.
            let deadline = timeout_deadline(p, m, a[3], cmd == futex_op::WAIT_BITSET, realtime)?;
            if word(p, m, addr)? != val {
                return Err(Errno::EAGAIN);
            }
            if deadline.is_some_and(|d| d <= m.monotonic_ns()) {
                return Err(Errno::ETIMEDOUT);
            }
            Ok(Outcome::Block(Wait {
                channels: vec![futex_channel(addr, bitset)],
                deadline,
                on_timeout: Errno::ETIMEDOUT.as_return(),
                on_wake: Some(0),
            }))
        }
        futex_op::WAKE | futex_op::WAKE_BITSET => {
            let bitset = if cmd == futex_op::WAKE {
                futex_op::BITSET_MATCH_ANY
            } else {
                a[5] as u32
            };
            if bitset == 0 {
                return Err(Errno::EINVAL);
            }
            let n = m.wake(futex_channel(addr, bitset), val as usize);
            Ok(Outcome::Return(n as i64))
        }
        futex_op::REQUEUE | futex_op::CMP_REQUEUE => {
            let to = a[4];
            if !to.is_multiple_of(4) {
                return Err(Errno::EINVAL);
            }
            if cmd == futex_op::CMP_REQUEUE && word(p, m, addr)? != a[5] as u32 {
                return Err(Errno::EAGAIN);
            }
            let requeue = a[3] as u32 as usize; // val2 travels in the timeout slot
            let any = futex_op::BITSET_MATCH_ANY;
            let n = m.requeue(
                futex_channel(addr, any),
                futex_channel(to, any),
                val as usize,
                requeue,
            );
            Ok(Outcome::Return(n as i64))
        }
        futex_op::WAKE_OP => {
            let (addr2, encoded) = (a[4], a[5] as u32);
            if !addr2.is_multiple_of(4) {
                return Err(Errno::EINVAL);
            }
            let old = word(p, m, addr2)?;
            let (new, cond) = wake_op(encoded, old)?;
            write_user(p, m, addr2, &new.to_le_bytes())?;
            let any = futex_op::BITSET_MATCH_ANY;
            let mut n = m.wake(futex_channel(addr, any), val as usize);
            if cond {
                n += m.wake(futex_channel(addr2, any), a[3] as u32 as usize);
            }
            Ok(Outcome::Return(n as i64))
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// Decodes `FUTEX_WAKE_OP`'s operation: the new value of the second word and whether its
/// old value passes the comparison.
fn wake_op(encoded: u32, old: u32) -> KResult<(u32, bool)> {
    let op = (encoded >> 28) & 7;
    let shift = encoded & (8 << 28) != 0;
    let cmp = (encoded >> 24) & 15;
    let mut oparg = (encoded >> 12) & 0xfff;
    let cmparg = encoded & 0xfff;
    if shift {
        if oparg > 31 {
            return Err(Errno::EINVAL);
        }
        oparg = 1 << oparg;
    }
    let new = match op {
        0 => oparg,
        1 => old.wrapping_add(oparg),
        2 => old | oparg,
        3 => old & !oparg,
        4 => old ^ oparg,
        _ => return Err(Errno::ENOSYS),
    };
    let (o, c) = (old as i32, cmparg as i32);
    let cond = match cmp {
        0 => o == c,
        1 => o != c,
        2 => o < c,
        3 => o <= c,
        4 => o > c,
        5 => o >= c,
        _ => return Err(Errno::ENOSYS),
    };
    Ok((new, cond))
}

/// Handles the thread family; `None` for numbers it does not own.
#[inline(never)]
pub fn handle(p: &mut Process, m: &mut dyn Machine, nr: u64, a: [u64; 6]) -> Option<Outcome> {
    Some(match nr {
        sysno::CLONE => ret(clone(
            p,
            m,
            CloneArgs {
                flags: a[0],
                stack: a[1],
                parent_tid: a[2],
                child_tid: a[3],
                tls: a[4],
            },
        )),
        sysno::CLONE3 => ret(clone3(p, m, a[0], a[1])),
        sysno::EXIT => {
            if m.thread_count() <= 1 {
                // The last thread: the program ends, as with exit_group.
                return Some(Outcome::Exit(a[0] as u8));
            }
            exit_thread(p, m, a[0] as u8)
        }
        sysno::FUTEX => futex(p, m, a).unwrap_or_else(|e| Outcome::Return(e.as_return())),
        sysno::GETTID => Outcome::Return(m.thread().tid.into()),
        sysno::SET_TID_ADDRESS => {
            m.thread().clear_child_tid = a[0];
            Outcome::Return(m.thread().tid.into())
        }
        sysno::SCHED_YIELD => {
            // Wait for "now": the thread goes behind every ready thread.
            let now = m.monotonic_ns();
            Outcome::Block(Wait {
                channels: vec![],
                deadline: Some(now),
                on_timeout: 0,
                on_wake: None,
            })
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::testutil::*;
    use crate::testing::FakeMachine;

    const THREAD_FLAGS: u64 = CLONE_VM
        | CLONE_FS
        | CLONE_FILES
        | CLONE_SIGHAND
        | CLONE_THREAD
        | CLONE_SYSVSEM
        | CLONE_SETTLS
        | CLONE_PARENT_SETTID
        | CLONE_CHILD_CLEARTID;
    const EAGAIN: i64 = -11;
    const ENOSYS: i64 = -38;
    const EINVAL: i64 = -22;

    #[test]
    fn clone_starts_a_thread_with_its_tls_and_tids() {
        let (mut p, mut m, buf) = setup();
        let r = call(
            &mut p,
            &mut m,
            sysno::CLONE,
            &[THREAD_FLAGS, 0x7000_0000, buf, buf + 8, 0x1234_0000],
        );
        assert_eq!(r, 2);
        let (child, stack) = &m.spawned[0];
        assert_eq!(
            (child.tid, child.fs_base, child.clear_child_tid, *stack),
            (2, 0x1234_0000, buf + 8, 0x7000_0000)
        );
        assert_eq!(peek(&mut p, &mut m, buf, 4), 2u32.to_le_bytes());
        // The next thread gets the next id.
        assert_eq!(
            call(
                &mut p,
                &mut m,
                sysno::CLONE,
                &[THREAD_FLAGS, 0, buf, buf + 8, 0]
            ),
            3
        );
    }

    #[test]
    fn clone3_uses_the_top_of_the_given_stack() {
        let (mut p, mut m, buf) = setup();
        let mut args = [0u64; 11];
        args[0] = CLONE_VM | CLONE_THREAD | CLONE_SIGHAND | CLONE_SETTLS;
        args[5] = 0x6000_0000; // stack
        args[6] = 0x1_0000; // stack size
        args[7] = 0x4444_0000; // tls
        let bytes: alloc::vec::Vec<u8> = args.iter().flat_map(|v| v.to_le_bytes()).collect();
        poke(&mut p, &mut m, buf, &bytes);
        assert_eq!(call(&mut p, &mut m, sysno::CLONE3, &[buf, 88]), 2);
        assert_eq!(m.spawned[0].1, 0x6001_0000);
        assert_eq!(m.spawned[0].0.fs_base, 0x4444_0000);
        assert_eq!(call(&mut p, &mut m, sysno::CLONE3, &[buf, 8]), EINVAL);
    }

    #[test]
    fn clone3_of_a_process_is_enosys_and_a_thread_with_an_exit_signal_einval() {
        let (mut p, mut m, buf) = setup();
        let mut args = [0u64; 11];
        // glibc's posix_spawn: CLONE_VM | CLONE_VFORK, exit_signal SIGCHLD.
        args[0] = CLONE_VM | CLONE_VFORK;
        args[4] = 17;
        let bytes: alloc::vec::Vec<u8> = args.iter().flat_map(|v| v.to_le_bytes()).collect();
        poke(&mut p, &mut m, buf, &bytes);
        assert_eq!(call(&mut p, &mut m, sysno::CLONE3, &[buf, 88]), ENOSYS);
        assert!(m.log.iter().any(|l| l.contains("one process")));
        args[0] = CLONE_VM | CLONE_THREAD | CLONE_SIGHAND;
        let bytes: alloc::vec::Vec<u8> = args.iter().flat_map(|v| v.to_le_bytes()).collect();
        poke(&mut p, &mut m, buf, &bytes);
        assert_eq!(call(&mut p, &mut m, sysno::CLONE3, &[buf, 88]), EINVAL);
        args[4] = 65;
        let bytes: alloc::vec::Vec<u8> = args.iter().flat_map(|v| v.to_le_bytes()).collect();
        poke(&mut p, &mut m, buf, &bytes);
        assert_eq!(call(&mut p, &mut m, sysno::CLONE3, &[buf, 88]), EINVAL);
        assert!(m.spawned.is_empty());
    }

    #[test]
    fn fork_is_refused_and_logged_once() {
        let (mut p, mut m, _) = setup();
        assert_eq!(
            call(&mut p, &mut m, sysno::CLONE, &[17, 0, 0, 0, 0]),
            ENOSYS
        );
        assert_eq!(
            call(
                &mut p,
                &mut m,
                sysno::CLONE,
                &[CLONE_VM | CLONE_VFORK | 17, 0, 0, 0, 0]
            ),
            ENOSYS
        );
        assert_eq!(
            m.log.iter().filter(|l| l.contains("one process")).count(),
            1
        );
        assert!(m.spawned.is_empty());
    }

    #[test]
    fn futex_wait_blocks_only_while_the_word_matches() {
        let (mut p, mut m, buf) = setup();
        poke(&mut p, &mut m, buf, &5u32.to_le_bytes());
        let wait = |p: &mut Process, m: &mut FakeMachine, val: u64, timeout: u64| {
            outcome(
                p,
                m,
                sysno::FUTEX,
                &[
                    buf,
                    (futex_op::WAIT | futex_op::PRIVATE) as u64,
                    val,
                    timeout,
                ],
            )
        };
        assert_eq!(wait(&mut p, &mut m, 4, 0), Outcome::Return(EAGAIN));
        match wait(&mut p, &mut m, 5, 0) {
            Outcome::Block(w) => {
                assert_eq!(
                    w.channels,
                    [Channel::Futex {
                        addr: buf,
                        bitset: u32::MAX
                    }]
                );
                assert_eq!((w.deadline, w.on_wake, w.on_timeout), (None, Some(0), -110));
            }
            other => panic!("{other:?}"),
        }
        // A relative timeout of 2 s from now.
        m.now = 1000;
        poke(
            &mut p,
            &mut m,
            buf + 16,
            &[2u64.to_le_bytes(), 0u64.to_le_bytes()].concat(),
        );
        match wait(&mut p, &mut m, 5, buf + 16) {
            Outcome::Block(w) => assert_eq!(w.deadline, Some(1000 + 2 * NSEC_PER_SEC)),
            other => panic!("{other:?}"),
        }
        // A restarted wait keeps its deadline.
        m.restart = Some(7_000);
        match wait(&mut p, &mut m, 5, buf + 16) {
            Outcome::Block(w) => assert_eq!(w.deadline, Some(7_000)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            outcome(&mut p, &mut m, sysno::FUTEX, &[buf + 1, 0, 5, 0]),
            Outcome::Return(EINVAL)
        );
    }

    #[test]
    fn futex_wake_and_requeue_count_threads() {
        let (mut p, mut m, buf) = setup();
        let any = u32::MAX;
        m.waiting = vec![
            Channel::Futex {
                addr: buf,
                bitset: any
            };
            3
        ];
        assert_eq!(
            call(
                &mut p,
                &mut m,
                sysno::FUTEX,
                &[buf, futex_op::WAKE as u64, 1]
            ),
            1
        );
        poke(&mut p, &mut m, buf, &9u32.to_le_bytes());
        let cmp = futex_op::CMP_REQUEUE as u64;
        assert_eq!(
            call(&mut p, &mut m, sysno::FUTEX, &[buf, cmp, 0, 1, buf + 64, 8]),
            EAGAIN
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::FUTEX, &[buf, cmp, 1, 1, buf + 64, 9]),
            2
        );
        assert_eq!(
            m.waiting,
            [Channel::Futex {
                addr: buf + 64,
                bitset: any
            }]
        );
        // WAKE_BITSET reaches only intersecting waiters.
        m.waiting = vec![Channel::Futex {
            addr: buf,
            bitset: 2,
        }];
        let wb = futex_op::WAKE_BITSET as u64;
        assert_eq!(
            call(&mut p, &mut m, sysno::FUTEX, &[buf, wb, 1, 0, 0, 1]),
            0
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::FUTEX, &[buf, wb, 1, 0, 0, 3]),
            1
        );
    }

    #[test]
    fn wake_op_decodes_operations_and_comparisons() {
        // op ADD 1, compare old > 0.
        let encoded = (1 << 28) | (4 << 24) | (1 << 12);
        assert_eq!(wake_op(encoded, 0).unwrap(), (1, false));
        assert_eq!(wake_op(encoded, 5).unwrap(), (6, true));
        // SET with shifted argument: 1 << 3.
        assert_eq!(wake_op((8 << 28) | (3 << 12), 0).unwrap(), (8, true));
        assert!(wake_op((8 << 28) | (40 << 12), 0).is_err());
    }

    #[test]
    fn exit_ends_a_thread_or_the_program() {
        let (mut p, mut m, buf) = setup();
        assert_eq!(outcome(&mut p, &mut m, sysno::EXIT, &[3]), Outcome::Exit(3));
        m.other_threads = 1;
        m.thread.clear_child_tid = buf;
        poke(&mut p, &mut m, buf, &7u32.to_le_bytes());
        m.waiting = vec![Channel::Futex {
            addr: buf,
            bitset: u32::MAX,
        }];
        assert_eq!(
            outcome(&mut p, &mut m, sysno::EXIT, &[4]),
            Outcome::ThreadExit(4)
        );
        assert_eq!(peek(&mut p, &mut m, buf, 4), [0; 4]);
        assert!(m.waiting.is_empty(), "the joiner was woken");
    }

    #[test]
    fn gettid_set_tid_address_and_yield() {
        let (mut p, mut m, _) = setup();
        m.thread.tid = 9;
        assert_eq!(call(&mut p, &mut m, sysno::GETTID, &[]), 9);
        assert_eq!(call(&mut p, &mut m, sysno::SET_TID_ADDRESS, &[0x1000]), 9);
        assert_eq!(m.thread.clear_child_tid, 0x1000);
        m.now = 50;
        match outcome(&mut p, &mut m, sysno::SCHED_YIELD, &[]) {
            Outcome::Block(w) => assert_eq!((w.deadline, w.on_timeout), (Some(50), 0)),
            other => panic!("{other:?}"),
        }
    }
}
