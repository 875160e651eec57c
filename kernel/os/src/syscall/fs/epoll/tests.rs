//! Waiting and readiness: blocking pipes and eventfds, `poll`/`select` wake-ups, epoll.
//!
//! Cross-thread scenarios are played on the fake machine: thread A's call returns
//! `Outcome::Block`; A is recorded as waiting (`m.waiting`); thread B's call must wake it
//! (remove the channel); A's rerun of the same call then succeeds.

use alloc::vec;
use alloc::vec::Vec;

use crate::errno::Errno;
use crate::fd::epoll::{
    EPOLLERR, EPOLLET, EPOLLEXCLUSIVE, EPOLLHUP, EPOLLIN, EPOLLONESHOT, EPOLLOUT,
};
use crate::fd::{O_CLOEXEC, O_NONBLOCK};
use crate::process::{Channel, Outcome, Process, Wait};
use crate::syscall::testutil::*;
use crate::sysno as nr;
use crate::testing::FakeMachine;

const E: fn(Errno) -> i64 = Errno::as_return;
const ADD: u64 = 1;
const DEL: u64 = 2;
const MOD: u64 = 3;

/// Scratch layout inside the test buffer.
const FDS: u64 = 0; // pipe2 result
const EV: u64 = 0x40; // one epoll_event in
const OUT: u64 = 0x100; // epoll_event results (up to 16)
const IO: u64 = 0x400; // read/write data
const BIG: u64 = 0x1000; // 12 KiB of filler

struct T {
    p: Process,
    m: FakeMachine,
    buf: u64,
}

impl T {
    fn new() -> T {
        let (p, m, buf) = setup();
        T { p, m, buf }
    }

    /// Another thread exists (so waits can end).
    fn threaded() -> T {
        let mut t = T::new();
        t.m.other_threads = 1;
        t
    }

    fn call(&mut self, n: u64, args: &[u64]) -> i64 {
        call(&mut self.p, &mut self.m, n, args)
    }

    fn outcome(&mut self, n: u64, args: &[u64]) -> Outcome {
        outcome(&mut self.p, &mut self.m, n, args)
    }

    fn pipe(&mut self, flags: u64) -> (u64, u64) {
        assert_eq!(self.call(nr::PIPE2, &[self.buf + FDS, flags]), 0);
        let v = peek(&mut self.p, &mut self.m, self.buf + FDS, 8);
        (
            u32::from_le_bytes(v[..4].try_into().unwrap()).into(),
            u32::from_le_bytes(v[4..].try_into().unwrap()).into(),
        )
    }

    fn write(&mut self, fd: u64, data: &[u8]) -> Outcome {
        poke(&mut self.p, &mut self.m, self.buf + IO, data);
        self.outcome(nr::WRITE, &[fd, self.buf + IO, data.len() as u64])
    }

    fn read(&mut self, fd: u64, n: u64) -> Result<Vec<u8>, Outcome> {
        match self.outcome(nr::READ, &[fd, self.buf + IO, n]) {
            Outcome::Return(v) if v >= 0 => {
                Ok(peek(&mut self.p, &mut self.m, self.buf + IO, v as usize))
            }
            other => Err(other),
        }
    }

    fn write64(&mut self, fd: u64, v: u64) -> Outcome {
        self.write(fd, &v.to_le_bytes())
    }

    fn read64(&mut self, fd: u64) -> Result<u64, Outcome> {
        self.read(fd, 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    }

    fn ctl(&mut self, ep: u64, op: u64, fd: u64, events: u32, data: u64) -> i64 {
        let mut ev = events.to_le_bytes().to_vec();
        ev.extend_from_slice(&data.to_le_bytes());
        poke(&mut self.p, &mut self.m, self.buf + EV, &ev);
        self.call(nr::EPOLL_CTL, &[ep, op, fd, self.buf + EV])
    }

    /// `epoll_wait` that must return: the (events, data) pairs.
    fn wait(&mut self, ep: u64, max: u64) -> Vec<(u32, u64)> {
        match self.epoll_wait(ep, max, 0) {
            Outcome::Return(n) if n >= 0 => self.events(n as usize),
            other => panic!("epoll_wait: {other:?}"),
        }
    }

    fn epoll_wait(&mut self, ep: u64, max: u64, timeout_ms: i32) -> Outcome {
        self.outcome(
            nr::EPOLL_WAIT,
            &[ep, self.buf + OUT, max, timeout_ms as i64 as u64],
        )
    }

    fn events(&mut self, n: usize) -> Vec<(u32, u64)> {
        let raw = peek(&mut self.p, &mut self.m, self.buf + OUT, n * 12);
        raw.chunks_exact(12)
            .map(|c| {
                (
                    u32::from_le_bytes(c[..4].try_into().unwrap()),
                    u64::from_le_bytes(c[4..].try_into().unwrap()),
                )
            })
            .collect()
    }

    fn epoll(&mut self) -> u64 {
        let ep = self.call(nr::EPOLL_CREATE1, &[0]);
        assert!(ep >= 0);
        ep as u64
    }
}

fn block_on(c: Channel, deadline: Option<u64>) -> Outcome {
    Outcome::Block(Wait {
        channels: vec![c],
        deadline,
        on_timeout: 0,
        on_wake: None,
    })
}

/// The channel a blocked call waits on.
fn channel(o: &Outcome) -> Channel {
    match o {
        Outcome::Block(w) => w.channels[0],
        other => panic!("expected a wait, got {other:?}"),
    }
}

#[test]
fn pipe_read_blocks_until_another_thread_writes() {
    let mut t = T::threaded();
    let (r, w) = t.pipe(0);
    // Thread A: the pipe is empty.
    let a = t.read(r, 10).unwrap_err();
    let ch = channel(&a);
    assert!(matches!(ch, Channel::Object(_)));
    assert_eq!(a, block_on(ch, None));
    t.m.waiting = vec![ch, Channel::Io];
    // Thread B writes: the reader and every poller wake.
    assert_eq!(t.write(w, b"hi"), Outcome::Return(2));
    assert!(t.m.waiting.is_empty());
    // A runs its read again.
    assert_eq!(t.read(r, 10).unwrap(), b"hi");
    // Reading wakes writers too (space freed).
    t.m.waiting = vec![ch];
    t.write(w, b"x");
    t.read(r, 10).unwrap();
    assert!(t.m.waiting.is_empty());
}

#[test]
fn pipe_write_blocks_while_full() {
    let mut t = T::threaded();
    let (r, w) = t.pipe(0);
    let chunk = 12 * 1024;
    poke(&mut t.p, &mut t.m, t.buf + BIG, &vec![7u8; chunk]);
    let mut total = 0;
    while total < 65536 {
        let left = (65536 - total).min(chunk) as u64;
        match t.outcome(nr::WRITE, &[w, t.buf + BIG, left]) {
            Outcome::Return(n) => total += n as usize,
            other => panic!("{other:?}"),
        }
    }
    let a = t.write(w, b"more");
    let ch = channel(&a);
    assert_eq!(a, block_on(ch, None));
    t.m.waiting = vec![ch];
    // The reader drains some: the writer wakes and its rerun fits.
    assert_eq!(t.read(r, 100).unwrap().len(), 100);
    assert!(t.m.waiting.is_empty());
    assert_eq!(t.write(w, b"more"), Outcome::Return(4));
}

#[test]
fn closing_an_end_wakes_the_other() {
    let mut t = T::threaded();
    let (r, w) = t.pipe(0);
    let ch = channel(&t.read(r, 1).unwrap_err());
    t.m.waiting = vec![ch, Channel::Io];
    assert_eq!(t.call(nr::CLOSE, &[w]), 0);
    assert!(t.m.waiting.is_empty());
    assert_eq!(t.read(r, 1).unwrap(), b"", "end of file");
    // dup2 over a write end and close_range close it too.
    let (r, w) = t.pipe(0);
    let ch = channel(&t.read(r, 1).unwrap_err());
    t.m.waiting = vec![ch];
    assert_eq!(t.call(nr::DUP2, &[0, w]), w as i64);
    assert!(t.m.waiting.is_empty());
    assert_eq!(t.read(r, 1).unwrap(), b"");
    let (r, w) = t.pipe(0);
    t.m.waiting = vec![Channel::Io];
    assert_eq!(t.call(nr::CLOSE_RANGE, &[r, r, 0]), 0);
    assert!(t.m.waiting.is_empty());
    assert_eq!(t.write(w, b"x"), Outcome::Killed(13), "SIGPIPE");
}

#[test]
fn nonblocking_descriptors_say_eagain() {
    let mut t = T::threaded();
    let (r, _w) = t.pipe(u64::from(O_NONBLOCK));
    assert_eq!(t.read(r, 1), Err(Outcome::Return(E(Errno::EAGAIN))));
    // fcntl(F_SETFL) clears and sets O_NONBLOCK.
    assert_eq!(t.call(nr::FCNTL, &[r, 4, 0]), 0);
    assert!(matches!(t.read(r, 1), Err(Outcome::Block(_))));
    assert_eq!(t.call(nr::FCNTL, &[r, 4, u64::from(O_NONBLOCK)]), 0);
    assert_eq!(t.read(r, 1), Err(Outcome::Return(E(Errno::EAGAIN))));
    assert_eq!(
        t.call(nr::FCNTL, &[r, 3]) & i64::from(O_NONBLOCK),
        i64::from(O_NONBLOCK)
    );
}

#[test]
fn one_thread_cannot_wait_for_itself() {
    let mut t = T::new();
    let (r, w) = t.pipe(0);
    assert_eq!(t.read(r, 1), Err(Outcome::Return(E(Errno::EDEADLK))));
    let efd = t.call(nr::EVENTFD2, &[0, 0]) as u64;
    assert_eq!(t.read64(efd), Err(Outcome::Return(E(Errno::EDEADLK))));
    let ep = t.epoll();
    t.ctl(ep, ADD, r, EPOLLIN, 0);
    assert_eq!(t.epoll_wait(ep, 4, -1), Outcome::Return(E(Errno::EDEADLK)));
    assert_eq!(t.m.log.len(), 1, "logged once: {:?}", t.m.log);
    assert!(t.m.log[0].contains("EDEADLK"));
    // A finite timeout simply waits.
    let now = t.m.now;
    assert_eq!(
        t.epoll_wait(ep, 4, 5),
        block_on(Channel::Io, Some(now + 5_000_000))
    );
    let _ = w;
}

#[test]
fn poll_wakes_on_another_threads_write() {
    let mut t = T::threaded();
    let (r, w) = t.pipe(0);
    let mut pfd = (r as i32).to_le_bytes().to_vec();
    pfd.extend_from_slice(&1u16.to_le_bytes());
    pfd.extend_from_slice(&0xffffu16.to_le_bytes());
    let at = t.buf + EV;
    poke(&mut t.p, &mut t.m, at, &pfd);
    assert_eq!(
        t.outcome(nr::POLL, &[at, 1, u64::MAX]),
        block_on(Channel::Io, None)
    );
    t.m.waiting = vec![Channel::Io];
    assert_eq!(t.write(w, b"!"), Outcome::Return(1));
    assert!(t.m.waiting.is_empty());
    assert_eq!(t.call(nr::POLL, &[at, 1, u64::MAX]), 1);
    assert_eq!(peek(&mut t.p, &mut t.m, at + 6, 2), 1u16.to_le_bytes());
}

#[test]
fn eventfd_counts() {
    let mut t = T::threaded();
    let efd = t.call(nr::EVENTFD2, &[3, 0]) as u64;
    assert_eq!(t.call(nr::FCNTL, &[efd, 1]), 0, "no close-on-exec");
    assert_eq!(t.read64(efd), Ok(3));
    // Empty: a blocking read waits on the counter; a write wakes it.
    let a = t.read64(efd).unwrap_err();
    let ch = channel(&a);
    t.m.waiting = vec![ch, Channel::Io];
    assert_eq!(t.write64(efd, 5), Outcome::Return(8));
    assert!(t.m.waiting.is_empty());
    t.write64(efd, 2);
    assert_eq!(t.read64(efd), Ok(7));
    // Short buffers and the reserved value.
    t.write64(efd, 1);
    assert_eq!(t.call(nr::READ, &[efd, t.buf + IO, 7]), E(Errno::EINVAL));
    assert_eq!(
        t.write(efd, &[1, 0, 0, 0]),
        Outcome::Return(E(Errno::EINVAL))
    );
    assert_eq!(t.write64(efd, u64::MAX), Outcome::Return(E(Errno::EINVAL)));
    // Overflow: the write waits until a read makes room.
    let a = t.write64(efd, u64::MAX - 1);
    let ch = channel(&a);
    t.m.waiting = vec![ch];
    assert_eq!(t.read64(efd), Ok(1));
    assert!(t.m.waiting.is_empty());
    assert_eq!(t.write64(efd, u64::MAX - 1), Outcome::Return(8));
    // Bigger buffers move 8 bytes.
    assert_eq!(t.call(nr::READ, &[efd, t.buf + IO, 64]), 8);
    // Flags.
    assert_eq!(t.call(nr::EVENTFD2, &[0, 0x10]), E(Errno::EINVAL));
    let nb = t.call(nr::EVENTFD2, &[0, u64::from(O_NONBLOCK | O_CLOEXEC)]) as u64;
    assert_eq!(t.call(nr::FCNTL, &[nb, 1]), 1);
    assert_eq!(t.read64(nb), Err(Outcome::Return(E(Errno::EAGAIN))));
    assert_eq!(t.call(nr::EVENTFD, &[1]), nb as i64 + 1);
}

#[test]
fn eventfd_semaphore_and_poll() {
    let mut t = T::threaded();
    let efd = t.call(nr::EVENTFD2, &[2, 1]) as u64;
    assert_eq!(t.read64(efd), Ok(1));
    assert_eq!(t.read64(efd), Ok(1));
    assert!(matches!(t.read64(efd), Err(Outcome::Block(_))));
    let ep = t.epoll();
    assert_eq!(t.ctl(ep, ADD, efd, EPOLLIN | EPOLLOUT, 9), 0);
    assert_eq!(t.wait(ep, 4), [(EPOLLOUT, 9)]);
    t.write64(efd, 1);
    assert_eq!(t.wait(ep, 4), [(EPOLLIN | EPOLLOUT, 9)]);
    // fstat: an anonymous inode.
    assert_eq!(t.call(nr::FSTAT, &[efd, t.buf + BIG]), 0);
    let st = peek(&mut t.p, &mut t.m, t.buf + BIG + 24, 4);
    assert_eq!(u32::from_le_bytes(st.try_into().unwrap()), 0o600);
}

#[test]
fn epoll_create_and_ctl_errors() {
    let mut t = T::threaded();
    assert_eq!(t.call(nr::EPOLL_CREATE, &[0]), E(Errno::EINVAL));
    assert_eq!(t.call(nr::EPOLL_CREATE1, &[1]), E(Errno::EINVAL));
    let ep = t.call(nr::EPOLL_CREATE, &[1]) as u64;
    let ep2 = t.call(nr::EPOLL_CREATE1, &[u64::from(O_CLOEXEC)]) as u64;
    assert_eq!(t.call(nr::FCNTL, &[ep2, 1]), 1);
    let (r, w) = t.pipe(0);
    assert_eq!(t.ctl(ep, ADD, 99, EPOLLIN, 0), E(Errno::EBADF));
    assert_eq!(t.ctl(99, ADD, r, EPOLLIN, 0), E(Errno::EBADF));
    assert_eq!(t.ctl(r, ADD, w, EPOLLIN, 0), E(Errno::EINVAL), "not epoll");
    assert_eq!(t.ctl(ep, ADD, ep, EPOLLIN, 0), E(Errno::EINVAL), "itself");
    assert_eq!(t.ctl(ep, 7, r, EPOLLIN, 0), E(Errno::EINVAL));
    assert_eq!(t.ctl(ep, MOD, r, EPOLLIN, 0), E(Errno::ENOENT));
    assert_eq!(t.ctl(ep, DEL, r, 0, 0), E(Errno::ENOENT));
    assert_eq!(t.ctl(ep, ADD, r, EPOLLIN, 0), 0);
    assert_eq!(t.ctl(ep, ADD, r, EPOLLIN, 0), E(Errno::EEXIST));
    assert_eq!(
        t.call(nr::EPOLL_CTL, &[ep, ADD, w, UNMAPPED]),
        E(Errno::EFAULT)
    );
    assert_eq!(t.call(nr::EPOLL_CTL, &[ep, DEL, r, 0]), 0, "DEL takes NULL");
    // Regular files and devices have no readiness to watch.
    poke(&mut t.p, &mut t.m, t.buf + BIG, b"/dev/null\0");
    let null = t.call(nr::OPEN, &[t.buf + BIG, 0]) as u64;
    assert_eq!(t.ctl(ep, ADD, null, EPOLLIN, 0), E(Errno::EPERM));
    // EPOLLEXCLUSIVE: only with ADD, not with one-shot, not on epoll instances.
    assert_eq!(t.ctl(ep, ADD, w, EPOLLOUT | EPOLLEXCLUSIVE, 0), 0);
    assert_eq!(
        t.ctl(ep, MOD, w, EPOLLOUT | EPOLLEXCLUSIVE, 0),
        E(Errno::EINVAL)
    );
    assert_eq!(t.ctl(ep, MOD, w, EPOLLOUT, 0), E(Errno::EINVAL));
    assert_eq!(
        t.ctl(ep, ADD, r, EPOLLIN | EPOLLEXCLUSIVE | EPOLLONESHOT, 0),
        E(Errno::EINVAL)
    );
    assert_eq!(
        t.ctl(ep, ADD, ep2, EPOLLIN | EPOLLEXCLUSIVE, 0),
        E(Errno::EINVAL)
    );
    assert_eq!(t.wait(ep, 4), [(EPOLLOUT, 0)]);
    // Nesting loops.
    assert_eq!(t.ctl(ep, ADD, ep2, EPOLLIN, 0), 0);
    assert_eq!(t.ctl(ep2, ADD, ep, EPOLLIN, 0), E(Errno::ELOOP));
    // Wait arguments.
    assert_eq!(t.epoll_wait(ep, 0, 0), Outcome::Return(E(Errno::EINVAL)));
    assert_eq!(t.epoll_wait(r, 1, 0), Outcome::Return(E(Errno::EINVAL)));
    assert_eq!(t.epoll_wait(99, 1, 0), Outcome::Return(E(Errno::EBADF)));
    assert_eq!(t.call(nr::READ, &[ep, t.buf + IO, 8]), E(Errno::EINVAL));
}

#[test]
fn level_triggered_reports_while_ready() {
    let mut t = T::threaded();
    let ep = t.epoll();
    let (r, w) = t.pipe(0);
    assert_eq!(t.ctl(ep, ADD, r, EPOLLIN, 42), 0);
    assert_eq!(t.ctl(ep, ADD, w, EPOLLOUT, 43), 0);
    assert_eq!(t.wait(ep, 8), [(EPOLLOUT, 43)]);
    t.write(w, b"abc");
    assert_eq!(t.wait(ep, 8), [(EPOLLIN, 42), (EPOLLOUT, 43)]);
    assert_eq!(t.wait(ep, 8), [(EPOLLIN, 42), (EPOLLOUT, 43)]);
    // A full buffer of events does not starve the others: the next wait goes on from
    // where the last stopped.
    assert_eq!(t.wait(ep, 1), [(EPOLLIN, 42)]);
    assert_eq!(t.wait(ep, 1), [(EPOLLOUT, 43)]);
    assert_eq!(t.wait(ep, 1), [(EPOLLIN, 42)]);
    t.read(r, 3).unwrap();
    assert_eq!(t.wait(ep, 8), [(EPOLLOUT, 43)]);
    // MOD changes what is watched and the data.
    assert_eq!(t.ctl(ep, MOD, w, EPOLLIN, 44), 0);
    assert_eq!(t.wait(ep, 8), []);
    // The write end closes: hang-up is reported though not asked for.
    assert_eq!(t.ctl(ep, DEL, w, 0, 0), 0);
    t.call(nr::CLOSE, &[w]);
    assert_eq!(t.wait(ep, 8), [(EPOLLHUP, 42)]);
    // And the epoll descriptor itself polls readable.
    let mut pfd = (ep as i32).to_le_bytes().to_vec();
    pfd.extend_from_slice(&1u16.to_le_bytes());
    pfd.extend_from_slice(&[0, 0]);
    poke(&mut t.p, &mut t.m, t.buf + EV, &pfd);
    assert_eq!(t.call(nr::POLL, &[t.buf + EV, 1, 0]), 1);
}

#[test]
fn edge_triggered_reports_changes_once() {
    let mut t = T::threaded();
    let ep = t.epoll();
    let (r, w) = t.pipe(0);
    assert_eq!(t.ctl(ep, ADD, r, EPOLLIN | EPOLLET, 1), 0);
    assert_eq!(t.ctl(ep, ADD, w, EPOLLOUT | EPOLLET, 2), 0);
    // Registering a ready file is an edge.
    assert_eq!(t.wait(ep, 8), [(EPOLLOUT, 2)]);
    assert_eq!(t.wait(ep, 8), []);
    t.write(w, b"a");
    let first = t.wait(ep, 8);
    assert!(first.contains(&(EPOLLIN, 1)), "{first:?}");
    assert_eq!(t.wait(ep, 8), [], "still readable, but no new edge");
    // More data is a new edge, though it was readable all along.
    t.write(w, b"b");
    assert!(t.wait(ep, 8).contains(&(EPOLLIN, 1)));
    // Drained: no report; new data: one report.
    t.read(r, 10).unwrap();
    assert!(!t.wait(ep, 8).iter().any(|e| e.1 == 1));
    t.write(w, b"c");
    assert!(t.wait(ep, 8).contains(&(EPOLLIN, 1)));
    assert_eq!(t.wait(ep, 8), []);
    // MOD re-arms: reported again if ready.
    assert_eq!(t.ctl(ep, MOD, r, EPOLLIN | EPOLLET, 3), 0);
    assert_eq!(t.wait(ep, 8), [(EPOLLIN, 3)]);
}

#[test]
fn one_shot_disables_until_modified() {
    let mut t = T::threaded();
    let ep = t.epoll();
    let (r, w) = t.pipe(0);
    assert_eq!(t.ctl(ep, ADD, r, EPOLLIN | EPOLLONESHOT, 5), 0);
    assert_eq!(t.wait(ep, 8), []);
    t.write(w, b"x");
    assert_eq!(t.wait(ep, 8), [(EPOLLIN, 5)]);
    t.write(w, b"y");
    assert_eq!(t.wait(ep, 8), [], "disabled");
    assert_eq!(t.ctl(ep, MOD, r, EPOLLIN | EPOLLONESHOT, 6), 0);
    assert_eq!(t.wait(ep, 8), [(EPOLLIN, 6)]);
    assert_eq!(t.wait(ep, 8), []);
}

#[test]
fn closed_descriptors_leave_the_interest_list() {
    let mut t = T::threaded();
    let ep = t.epoll();
    let (r, w) = t.pipe(0);
    t.write(w, b"x");
    assert_eq!(t.ctl(ep, ADD, r, EPOLLIN, 1), 0);
    // While another descriptor keeps the file open, the entry stays (Linux keys entries
    // on the open file).
    let dup = t.call(nr::DUP, &[r]) as u64;
    t.call(nr::CLOSE, &[r]);
    assert_eq!(t.wait(ep, 8), [(EPOLLIN, 1)]);
    t.call(nr::CLOSE, &[dup]);
    assert_eq!(t.wait(ep, 8), []);
    // The number can be registered again for a new file.
    let (r2, _w2) = t.pipe(0);
    assert_eq!(r2, r);
    assert_eq!(t.ctl(ep, ADD, r2, EPOLLIN, 2), 0);
    // Closing the epoll descriptor frees the instance.
    assert_eq!(t.call(nr::CLOSE, &[ep]), 0);
    assert_eq!(t.ctl(ep, ADD, r2, EPOLLIN, 2), E(Errno::EBADF));
}

#[test]
fn nested_instances_propagate_readiness() {
    let mut t = T::threaded();
    let outer = t.epoll();
    let inner = t.epoll();
    let (r, w) = t.pipe(0);
    assert_eq!(t.ctl(inner, ADD, r, EPOLLIN, 1), 0);
    assert_eq!(t.ctl(outer, ADD, inner, EPOLLIN | EPOLLET, 2), 0);
    assert_eq!(t.wait(outer, 8), []);
    t.write(w, b"x");
    assert_eq!(t.wait(outer, 8), [(EPOLLIN, 2)]);
    assert_eq!(t.wait(outer, 8), [], "edge-triggered on the inner instance");
    assert_eq!(t.wait(inner, 8), [(EPOLLIN, 1)]);
}

#[test]
fn epoll_wait_blocks_until_a_change() {
    let mut t = T::threaded();
    let ep = t.epoll();
    let (r, w) = t.pipe(0);
    assert_eq!(t.ctl(ep, ADD, r, EPOLLIN | EPOLLET | EPOLLERR, 7), 0);
    // Infinite: waits on I/O with no deadline.
    assert_eq!(t.epoll_wait(ep, 8, -1), block_on(Channel::Io, None));
    // Finite: the deadline; a rerun keeps the first one.
    let now = t.m.now;
    let d = now + 100_000_000;
    assert_eq!(t.epoll_wait(ep, 8, 100), block_on(Channel::Io, Some(d)));
    t.m.waiting = vec![Channel::Io];
    t.m.now += 1_000;
    // Thread B writes: A wakes and its rerun reports the edge.
    t.write(w, b"x");
    assert!(t.m.waiting.is_empty());
    t.m.restart = Some(d);
    assert_eq!(t.epoll_wait(ep, 8, 100), Outcome::Return(1));
    assert_eq!(t.events(1), [(EPOLLIN, 7)]);
    // Nothing new: waits again, still for the first deadline; past it, 0.
    assert_eq!(t.epoll_wait(ep, 8, 100), block_on(Channel::Io, Some(d)));
    t.m.now = d;
    assert_eq!(t.epoll_wait(ep, 8, 100), Outcome::Return(0));
    t.m.restart = None;
    // epoll_ctl wakes waiters: a ready file added by another thread.
    let (r2, w2) = t.pipe(0);
    t.write(w2, b"z");
    t.m.waiting = vec![Channel::Io];
    assert_eq!(t.ctl(ep, ADD, r2, EPOLLIN, 8), 0);
    assert!(t.m.waiting.is_empty());
    assert_eq!(t.wait(ep, 8), [(EPOLLIN, 8)]);
    let _ = r;
}

#[test]
fn epoll_pwait_and_pwait2() {
    let mut t = T::threaded();
    let ep = t.epoll();
    let (r, w) = t.pipe(0);
    t.ctl(ep, ADD, r, EPOLLIN, 3);
    let out = t.buf + OUT;
    let mask = t.buf + BIG;
    poke(&mut t.p, &mut t.m, mask, &[0xff; 8]);
    assert_eq!(
        t.call(nr::EPOLL_PWAIT, &[ep, out, 4, 0, mask, 4]),
        E(Errno::EINVAL)
    );
    assert_eq!(t.call(nr::EPOLL_PWAIT, &[ep, out, 4, 0, mask, 8]), 0);
    assert_eq!(t.call(nr::EPOLL_PWAIT, &[ep, out, 4, 0, 0, 0]), 0);
    // epoll_pwait2: a timespec, NULL for none.
    let ts = t.buf + BIG + 0x100;
    let mut v = 2u64.to_le_bytes().to_vec();
    v.extend_from_slice(&5u64.to_le_bytes());
    poke(&mut t.p, &mut t.m, ts, &v);
    let now = t.m.now;
    assert_eq!(
        t.outcome(nr::EPOLL_PWAIT2, &[ep, out, 4, ts, 0, 8]),
        block_on(Channel::Io, Some(now + 2_000_000_005))
    );
    assert_eq!(
        t.outcome(nr::EPOLL_PWAIT2, &[ep, out, 4, 0, 0, 8]),
        block_on(Channel::Io, None)
    );
    t.write(w, b"x");
    assert_eq!(t.call(nr::EPOLL_PWAIT2, &[ep, out, 4, 0, 0, 8]), 1);
    assert_eq!(t.events(1), [(EPOLLIN, 3)]);
    // A bad events buffer.
    assert_eq!(
        t.call(nr::EPOLL_WAIT, &[ep, UNMAPPED, 4, 0]),
        E(Errno::EFAULT)
    );
}
