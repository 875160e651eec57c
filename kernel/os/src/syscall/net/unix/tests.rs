//! Socket pairs through the system calls of a fake machine.

use super::*;
use crate::fd::poll::{POLLHUP, POLLIN, POLLOUT};
use crate::net::{POLLRDHUP, S_IFSOCK};
use crate::process::Channel;
use crate::syscall::testutil::*;
use crate::syscall::MSG_NOSIGNAL;
use crate::testing::FakeMachine;

const STREAM: u64 = super::super::SOCK_STREAM;
const DGRAM: u64 = super::super::SOCK_DGRAM;
const EAGAIN: i64 = -11;
const EPIPE: i64 = -32;

/// A pair of `ty`; returns its two descriptors.
fn pair(p: &mut Process, m: &mut FakeMachine, buf: u64, ty: u64) -> (u64, u64) {
    let sv = buf + 0x3000;
    assert_eq!(call(p, m, nr::SOCKETPAIR, &[1, ty, 0, sv]), 0);
    let v = peek(p, m, sv, 8);
    let a = u32::from_le_bytes(v[..4].try_into().unwrap()) as u64;
    let b = u32::from_le_bytes(v[4..].try_into().unwrap()) as u64;
    assert!(a >= 3 && b >= 3 && a != b, "{a} {b}");
    (a, b)
}

fn write(p: &mut Process, m: &mut FakeMachine, buf: u64, fd: u64, data: &[u8]) -> i64 {
    poke(p, m, buf, data);
    call(p, m, nr::WRITE, &[fd, buf, data.len() as u64])
}

/// Reads up to `len` bytes; the result or the bytes.
fn read(p: &mut Process, m: &mut FakeMachine, buf: u64, fd: u64, len: u64) -> Result<Vec<u8>, i64> {
    let n = call(p, m, nr::READ, &[fd, buf + 0x1000, len]);
    if n < 0 {
        return Err(n);
    }
    Ok(peek(p, m, buf + 0x1000, n as usize))
}

/// `poll` of one descriptor with a zero timeout: the returned events.
fn poll1(p: &mut Process, m: &mut FakeMachine, buf: u64, fd: u64, events: u16) -> u16 {
    let at = buf + 0x3800;
    let mut pfd = (fd as i32).to_le_bytes().to_vec();
    pfd.extend_from_slice(&events.to_le_bytes());
    pfd.extend_from_slice(&0u16.to_le_bytes());
    poke(p, m, at, &pfd);
    call(p, m, nr::POLL, &[at, 1, 0]);
    u16::from_le_bytes(peek(p, m, at + 6, 2).try_into().unwrap())
}

#[test]
fn stream_pair_carries_data_both_ways() {
    let (mut p, mut m, buf) = setup();
    let (a, b) = pair(&mut p, &mut m, buf, STREAM | SOCK_CLOEXEC);
    assert_eq!(write(&mut p, &mut m, buf, a, b"ping"), 4);
    assert_eq!(write(&mut p, &mut m, buf, a, b"!"), 1);
    assert_eq!(read(&mut p, &mut m, buf, b, 100).unwrap(), b"ping!");
    assert_eq!(write(&mut p, &mut m, buf, b, b"pong"), 4);
    assert_eq!(read(&mut p, &mut m, buf, a, 2).unwrap(), b"po");
    assert_eq!(read(&mut p, &mut m, buf, a, 2).unwrap(), b"ng");
    // sendto/recvfrom with MSG_PEEK leave the data; the peer address is empty.
    poke(&mut p, &mut m, buf, b"xyz");
    assert_eq!(call(&mut p, &mut m, nr::SENDTO, &[b, buf, 3, 0, 0, 0]), 3);
    poke(&mut p, &mut m, buf + 0x200, &16u32.to_le_bytes());
    let r = call(
        &mut p,
        &mut m,
        nr::RECVFROM,
        &[a, buf + 0x100, 10, MSG_PEEK, buf + 0x180, buf + 0x200],
    );
    assert_eq!(r, 3);
    assert_eq!(peek(&mut p, &mut m, buf + 0x200, 4), 0u32.to_le_bytes());
    assert_eq!(read(&mut p, &mut m, buf, a, 10).unwrap(), b"xyz");
    // Close-on-exec was asked for.
    assert_eq!(call(&mut p, &mut m, nr::FCNTL, &[a, 1]), 1);
    // FIONREAD.
    assert_eq!(write(&mut p, &mut m, buf, a, b"12345"), 5);
    assert_eq!(
        call(&mut p, &mut m, nr::IOCTL, &[b, 0x541b, buf + 0x300]),
        0
    );
    assert_eq!(peek(&mut p, &mut m, buf + 0x300, 4), 5i32.to_le_bytes());
}

#[test]
fn vectored_and_msg_io() {
    let (mut p, mut m, buf) = setup();
    let (a, b) = pair(&mut p, &mut m, buf, STREAM);
    // writev of "hello" + " world".
    poke(&mut p, &mut m, buf + 0x100, b"hello world");
    let mut iov = Vec::new();
    for (base, len) in [(buf + 0x100, 5u64), (buf + 0x105, 6)] {
        iov.extend_from_slice(&base.to_le_bytes());
        iov.extend_from_slice(&len.to_le_bytes());
    }
    poke(&mut p, &mut m, buf, &iov);
    assert_eq!(call(&mut p, &mut m, nr::WRITEV, &[a, buf, 2]), 11);
    // readv into 3 + 20 bytes.
    let mut iov = Vec::new();
    for (base, len) in [(buf + 0x400, 3u64), (buf + 0x500, 20)] {
        iov.extend_from_slice(&base.to_le_bytes());
        iov.extend_from_slice(&len.to_le_bytes());
    }
    poke(&mut p, &mut m, buf + 0x40, &iov);
    assert_eq!(call(&mut p, &mut m, nr::READV, &[b, buf + 0x40, 2]), 11);
    assert_eq!(peek(&mut p, &mut m, buf + 0x400, 3), b"hel");
    assert_eq!(peek(&mut p, &mut m, buf + 0x500, 8), b"lo world");
    // sendmsg / recvmsg with a msghdr (no name, no control).
    let msghdr = |iov_at: u64, n: u64, controllen: u64| {
        let mut h = vec![0u8; 56];
        h[16..24].copy_from_slice(&iov_at.to_le_bytes());
        h[24..32].copy_from_slice(&n.to_le_bytes());
        h[32..40].copy_from_slice(&(buf + 0xa00).to_le_bytes());
        h[40..48].copy_from_slice(&controllen.to_le_bytes()); // cleared on receive
        h
    };
    // Descriptors passed with SCM_RIGHTS are refused, not dropped on the way.
    let mut rights = [0u8; 24];
    rights[..8].copy_from_slice(&20u64.to_le_bytes());
    rights[8..16].copy_from_slice(&[1, 0, 0, 0, 1, 0, 0, 0]);
    rights[16..20].copy_from_slice(&1i32.to_le_bytes());
    poke(&mut p, &mut m, buf + 0xa00, &rights);
    poke(&mut p, &mut m, buf + 0x800, &msghdr(buf, 2, 24));
    assert_eq!(
        call(&mut p, &mut m, nr::SENDMSG, &[b, buf + 0x800, MSG_NOSIGNAL]),
        -95
    );
    assert!(m.log.iter().any(|l| l.contains("SCM_RIGHTS")));
    poke(&mut p, &mut m, buf + 0x800, &msghdr(buf, 2, 0));
    assert_eq!(
        call(&mut p, &mut m, nr::SENDMSG, &[b, buf + 0x800, MSG_NOSIGNAL]),
        11
    );
    poke(&mut p, &mut m, buf + 0x900, &msghdr(buf + 0x40, 2, 99));
    assert_eq!(call(&mut p, &mut m, nr::RECVMSG, &[a, buf + 0x900, 0]), 11);
    let h = peek(&mut p, &mut m, buf + 0x900, 56);
    assert_eq!(&h[40..48], &0u64.to_le_bytes(), "no ancillary data");
    assert_eq!(&h[48..52], &0u32.to_le_bytes(), "no flags");
    assert_eq!(peek(&mut p, &mut m, buf + 0x500, 8), b"lo world");
}

#[test]
fn close_gives_eof_and_epipe_with_sigpipe() {
    let (mut p, mut m, buf) = setup();
    let (a, b) = pair(&mut p, &mut m, buf, STREAM);
    assert_eq!(write(&mut p, &mut m, buf, a, b"last"), 4);
    assert_eq!(call(&mut p, &mut m, nr::CLOSE, &[a]), 0);
    // Buffered data first, then end of file.
    assert_eq!(read(&mut p, &mut m, buf, b, 10).unwrap(), b"last");
    assert_eq!(read(&mut p, &mut m, buf, b, 10).unwrap(), b"");
    // MSG_NOSIGNAL: just EPIPE.
    assert_eq!(
        call(&mut p, &mut m, nr::SENDTO, &[b, buf, 1, MSG_NOSIGNAL, 0, 0]),
        EPIPE
    );
    // A plain write raises SIGPIPE, whose default action kills.
    poke(&mut p, &mut m, buf, b"x");
    assert_eq!(
        outcome(&mut p, &mut m, nr::WRITE, &[b, buf, 1]),
        Outcome::Killed(13)
    );
    // Ignored SIGPIPE: EPIPE.
    let mut act = [0u8; 32];
    act[..8].copy_from_slice(&1u64.to_le_bytes()); // SIG_IGN
    poke(&mut p, &mut m, buf + 0x100, &act);
    assert_eq!(
        call(&mut p, &mut m, nr::RT_SIGACTION, &[13, buf + 0x100, 0, 8]),
        0
    );
    assert_eq!(write(&mut p, &mut m, buf, b, b"x"), EPIPE);
}

#[test]
fn shutdown_each_direction() {
    let (mut p, mut m, buf) = setup();
    let (a, b) = pair(&mut p, &mut m, buf, STREAM | SOCK_NONBLOCK);
    assert_eq!(write(&mut p, &mut m, buf, a, b"bye"), 3);
    assert_eq!(call(&mut p, &mut m, nr::SHUTDOWN, &[a, 1]), 0); // SHUT_WR
    assert_eq!(
        call(&mut p, &mut m, nr::SHUTDOWN, &[a, 1]),
        0,
        "twice is fine"
    );
    assert_eq!(
        call(&mut p, &mut m, nr::SENDTO, &[a, buf, 1, MSG_NOSIGNAL, 0, 0]),
        EPIPE
    );
    assert_eq!(read(&mut p, &mut m, buf, b, 10).unwrap(), b"bye");
    assert_eq!(read(&mut p, &mut m, buf, b, 10).unwrap(), b"", "EOF");
    let ev = poll1(&mut p, &mut m, buf, b, POLLIN | POLLOUT | POLLRDHUP);
    assert_eq!(
        ev,
        POLLIN | POLLOUT | POLLRDHUP,
        "read side shut, not hung up"
    );
    // The other direction still works.
    assert_eq!(write(&mut p, &mut m, buf, b, b"ok"), 2);
    assert_eq!(read(&mut p, &mut m, buf, a, 10).unwrap(), b"ok");
    // SHUT_RD on a: its reads end, b's writes fail.
    assert_eq!(read(&mut p, &mut m, buf, a, 10), Err(EAGAIN));
    assert_eq!(call(&mut p, &mut m, nr::SHUTDOWN, &[a, 0]), 0);
    assert_eq!(read(&mut p, &mut m, buf, a, 10).unwrap(), b"");
    assert_eq!(
        call(&mut p, &mut m, nr::SENDTO, &[b, buf, 1, MSG_NOSIGNAL, 0, 0]),
        EPIPE
    );
    // Both directions shut on both ends: hang-up.
    assert_eq!(poll1(&mut p, &mut m, buf, a, POLLIN) & POLLHUP, POLLHUP);
    assert_eq!(poll1(&mut p, &mut m, buf, b, POLLIN) & POLLHUP, POLLHUP);
    assert_eq!(call(&mut p, &mut m, nr::SHUTDOWN, &[a, 3]), -22);
}

#[test]
fn nonblocking_reads_and_writes_eagain() {
    let (mut p, mut m, buf) = setup();
    let (a, b) = pair(&mut p, &mut m, buf, STREAM | SOCK_NONBLOCK);
    assert_eq!(read(&mut p, &mut m, buf, a, 10), Err(EAGAIN));
    assert_eq!(call(&mut p, &mut m, nr::FCNTL, &[a, 3]) & 0o4000, 0o4000);
    // Fill b's direction until it refuses.
    let chunk = 0x2000u64;
    let mut total = 0;
    loop {
        let n = call(&mut p, &mut m, nr::WRITE, &[b, buf, chunk]);
        if n == EAGAIN {
            break;
        }
        assert!(n > 0);
        total += n;
    }
    assert_eq!(total as usize, crate::fd::unix::UNIX_CAPACITY);
    assert_eq!(
        poll1(&mut p, &mut m, buf, b, POLLOUT),
        0,
        "full: not writable"
    );
    // A blocking end still honours MSG_DONTWAIT; fcntl clears O_NONBLOCK.
    let (c, _d) = pair(&mut p, &mut m, buf, STREAM);
    assert_eq!(
        call(
            &mut p,
            &mut m,
            nr::RECVFROM,
            &[c, buf, 10, MSG_DONTWAIT, 0, 0]
        ),
        EAGAIN
    );
    assert_eq!(call(&mut p, &mut m, nr::FCNTL, &[a, 4, 0]), 0);
    assert_eq!(call(&mut p, &mut m, nr::FCNTL, &[a, 3]) & 0o4000, 0);
    assert_eq!(
        read(&mut p, &mut m, buf, c, 10),
        Err(-35),
        "blocking with one thread and only us to write: EDEADLK"
    );
}

#[test]
fn blocking_read_waits_for_the_peer() {
    let (mut p, mut m, buf) = setup();
    let (a, b) = pair(&mut p, &mut m, buf, STREAM);
    m.other_threads = 1;
    let Outcome::Block(w) = outcome(&mut p, &mut m, nr::READ, &[a, buf + 0x100, 10]) else {
        panic!("read should block");
    };
    assert_eq!(w.on_wake, None, "the read runs again");
    let [ch @ Channel::Object(_)] = w.channels[..] else {
        panic!("{w:?}");
    };
    m.waiting.push(ch);
    // The peer (another thread) writes: the reader is woken and its rerun succeeds.
    assert_eq!(write(&mut p, &mut m, buf, b, b"wake"), 4);
    assert!(m.waiting.is_empty(), "woken");
    assert_eq!(read(&mut p, &mut m, buf, a, 10).unwrap(), b"wake");
    // recvfrom blocks too, and SO_RCVTIMEO bounds it.
    let tv = [1u64.to_le_bytes(), 0u64.to_le_bytes()].concat();
    poke(&mut p, &mut m, buf + 0x200, &tv);
    assert_eq!(
        call(&mut p, &mut m, nr::SETSOCKOPT, &[a, 1, 20, buf + 0x200, 16]),
        0
    );
    let Outcome::Block(w) = outcome(&mut p, &mut m, nr::RECVFROM, &[a, buf, 10, 0, 0, 0]) else {
        panic!("recvfrom should block");
    };
    assert_eq!(w.channels, vec![ch]);
    assert_eq!(w.deadline, Some(m.now + 1_000_000_000));
    assert_eq!(w.on_timeout, EAGAIN);
    // Closing the peer wakes a waiter too.
    m.waiting.push(ch);
    assert_eq!(call(&mut p, &mut m, nr::CLOSE, &[b]), 0);
    assert!(m.waiting.is_empty(), "woken by close");
    assert_eq!(read(&mut p, &mut m, buf, a, 10).unwrap(), b"");
}

#[test]
fn blocking_write_waits_for_room() {
    let (mut p, mut m, buf) = setup();
    let (a, b) = pair(&mut p, &mut m, buf, DGRAM);
    m.other_threads = 1;
    let mut sent = 0;
    let out = loop {
        match outcome(&mut p, &mut m, nr::WRITE, &[a, buf, 0x3000]) {
            Outcome::Return(n) => {
                assert_eq!(n, 0x3000);
                sent += 1;
            }
            other => break other,
        }
    };
    assert!(sent > 10);
    assert!(matches!(out, Outcome::Block(_)), "{out:?}");
    // One message read makes room.
    assert_eq!(call(&mut p, &mut m, nr::READ, &[b, buf, 0x3000]), 0x3000);
    assert_eq!(call(&mut p, &mut m, nr::WRITE, &[a, buf, 0x3000]), 0x3000);
}

#[test]
fn readiness_through_poll_and_epoll() {
    let (mut p, mut m, buf) = setup();
    let (a, b) = pair(&mut p, &mut m, buf, STREAM | SOCK_NONBLOCK);
    let all = POLLIN | POLLOUT | POLLRDHUP;
    assert_eq!(poll1(&mut p, &mut m, buf, b, all), POLLOUT);
    // Edge-triggered epoll on b, as tokio registers it.
    let ep = call(&mut p, &mut m, nr::EPOLL_CREATE1, &[0]) as u64;
    let epollet = 1u32 << 31;
    let mut ev = (1u32 | 4 | 0x2000 | epollet).to_le_bytes().to_vec();
    ev.extend_from_slice(&7u64.to_le_bytes());
    poke(&mut p, &mut m, buf + 0x600, &ev);
    assert_eq!(
        call(&mut p, &mut m, nr::EPOLL_CTL, &[ep, 1, b, buf + 0x600]),
        0
    );
    let wait = |p: &mut Process, m: &mut FakeMachine| -> Vec<u32> {
        let n = call(p, m, nr::EPOLL_WAIT, &[ep, buf + 0x700, 4, 0]);
        (0..n as u64)
            .map(|i| {
                let e = peek(p, m, buf + 0x700 + i * 12, 12);
                assert_eq!(&e[4..], &7u64.to_le_bytes());
                u32::from_le_bytes(e[..4].try_into().unwrap())
            })
            .collect()
    };
    assert_eq!(wait(&mut p, &mut m), vec![4], "writable at first");
    assert_eq!(wait(&mut p, &mut m), Vec::<u32>::new(), "no new edge");
    assert_eq!(write(&mut p, &mut m, buf, a, b"sig"), 3);
    assert_eq!(poll1(&mut p, &mut m, buf, b, all), POLLIN | POLLOUT);
    assert_eq!(wait(&mut p, &mut m), vec![1 | 4], "data: an edge");
    assert_eq!(read(&mut p, &mut m, buf, b, 10).unwrap(), b"sig");
    // An epoll waiter is woken by the peer's write.
    m.waiting.push(Channel::Io);
    assert_eq!(write(&mut p, &mut m, buf, a, b"x"), 1);
    assert!(m.waiting.is_empty());
    // Peer closed: readable (EOF), hung up.
    assert_eq!(call(&mut p, &mut m, nr::CLOSE, &[a]), 0);
    let ev = poll1(&mut p, &mut m, buf, b, all);
    assert_eq!(ev, POLLIN | POLLOUT | POLLRDHUP | POLLHUP);
    assert_eq!(wait(&mut p, &mut m), vec![1 | 4 | 0x2000 | 0x10]);
}

#[test]
fn datagrams_keep_boundaries() {
    for ty in [DGRAM, SOCK_SEQPACKET] {
        let (mut p, mut m, buf) = setup();
        let (a, b) = pair(&mut p, &mut m, buf, ty | SOCK_NONBLOCK);
        assert_eq!(write(&mut p, &mut m, buf, a, b"ab"), 2);
        assert_eq!(write(&mut p, &mut m, buf, a, b"cde"), 3);
        assert_eq!(write(&mut p, &mut m, buf, a, b""), 0);
        assert_eq!(write(&mut p, &mut m, buf, a, b"fgh"), 3);
        assert_eq!(read(&mut p, &mut m, buf, b, 100).unwrap(), b"ab");
        // Peek, then a short read truncates (the rest is dropped); MSG_TRUNC reports
        // the full length.
        let r = call(&mut p, &mut m, nr::RECVFROM, &[b, buf, 100, MSG_PEEK, 0, 0]);
        assert_eq!(r, 3);
        let r = call(&mut p, &mut m, nr::RECVFROM, &[b, buf, 1, MSG_TRUNC, 0, 0]);
        assert_eq!(r, 3);
        assert_eq!(peek(&mut p, &mut m, buf, 1), b"c");
        assert_eq!(
            read(&mut p, &mut m, buf, b, 100).unwrap(),
            b"",
            "empty message"
        );
        // recvmsg flags the truncation.
        let mut iov = (buf + 0x400).to_le_bytes().to_vec();
        iov.extend_from_slice(&2u64.to_le_bytes());
        poke(&mut p, &mut m, buf + 0x100, &iov);
        let mut h = vec![0u8; 56];
        h[16..24].copy_from_slice(&(buf + 0x100).to_le_bytes());
        h[24..32].copy_from_slice(&1u64.to_le_bytes());
        poke(&mut p, &mut m, buf + 0x200, &h);
        assert_eq!(call(&mut p, &mut m, nr::RECVMSG, &[b, buf + 0x200, 0]), 2);
        assert_eq!(peek(&mut p, &mut m, buf + 0x400, 2), b"fg");
        let flags = peek(&mut p, &mut m, buf + 0x200 + 48, 4);
        assert_eq!(flags, (MSG_TRUNC as u32).to_le_bytes());
        assert_eq!(read(&mut p, &mut m, buf, b, 100), Err(EAGAIN));
        // Too big for the buffer ever.
        let big = (crate::fd::unix::UNIX_CAPACITY + 1) as u64;
        let mut iov = buf.to_le_bytes().to_vec();
        iov.extend_from_slice(&big.to_le_bytes());
        poke(&mut p, &mut m, buf + 0x100, &iov);
        let mut h = vec![0u8; 56];
        h[16..24].copy_from_slice(&(buf + 0x100).to_le_bytes());
        h[24..32].copy_from_slice(&1u64.to_le_bytes());
        poke(&mut p, &mut m, buf + 0x200, &h);
        // (The copy-in is capped at the buffer size, so this sends a full buffer's worth
        // from a 16 KiB mapping: EFAULT, not a partial message.)
        assert!(call(&mut p, &mut m, nr::SENDMSG, &[a, buf + 0x200, 0]) < 0);
        assert_eq!(
            read(&mut p, &mut m, buf, b, 100),
            Err(EAGAIN),
            "nothing sent"
        );
    }
}

#[test]
fn socket_info() {
    let (mut p, mut m, buf) = setup();
    let (a, _b) = pair(&mut p, &mut m, buf, SOCK_SEQPACKET);
    // fstat: a socket.
    assert_eq!(call(&mut p, &mut m, nr::FSTAT, &[a, buf]), 0);
    let mode = u32::from_le_bytes(peek(&mut p, &mut m, buf + 24, 4).try_into().unwrap());
    assert_eq!(mode & 0o170000, S_IFSOCK);
    let opt = |p: &mut Process, m: &mut FakeMachine, name: u64| -> i32 {
        poke(p, m, buf + 0x100, &4u32.to_le_bytes());
        assert_eq!(
            call(
                p,
                m,
                nr::GETSOCKOPT,
                &[a, 1, name, buf + 0x108, buf + 0x100]
            ),
            0
        );
        i32::from_le_bytes(peek(p, m, buf + 0x108, 4).try_into().unwrap())
    };
    assert_eq!(opt(&mut p, &mut m, SO_TYPE), 5);
    assert_eq!(opt(&mut p, &mut m, SO_DOMAIN), 1);
    assert_eq!(opt(&mut p, &mut m, SO_ERROR), 0);
    assert_eq!(opt(&mut p, &mut m, SO_SNDBUF), UNIX_CAPACITY as i32);
    assert_eq!(opt(&mut p, &mut m, SO_RCVBUF), UNIX_CAPACITY as i32);
    poke(&mut p, &mut m, buf + 0x200, &4096i32.to_le_bytes());
    assert_eq!(
        call(
            &mut p,
            &mut m,
            nr::SETSOCKOPT,
            &[a, 1, SO_RCVBUF, buf + 0x200, 4]
        ),
        0
    );
    assert_eq!(opt(&mut p, &mut m, SO_RCVBUF), 8192);
    // Names: AF_UNIX alone, length 2.
    for call_nr in [nr::GETSOCKNAME, nr::GETPEERNAME] {
        poke(&mut p, &mut m, buf + 0x100, &110u32.to_le_bytes());
        poke(&mut p, &mut m, buf + 0x108, &[0xff; 4]);
        assert_eq!(
            call(&mut p, &mut m, call_nr, &[a, buf + 0x108, buf + 0x100]),
            0
        );
        assert_eq!(peek(&mut p, &mut m, buf + 0x100, 4), 2u32.to_le_bytes());
        assert_eq!(peek(&mut p, &mut m, buf + 0x108, 4), [1, 0, 0xff, 0xff]);
    }
    // Already connected.
    assert_eq!(call(&mut p, &mut m, nr::CONNECT, &[a, buf, 16]), -106);
    assert_eq!(call(&mut p, &mut m, nr::LISTEN, &[a, 1]), -22);
}

#[test]
fn unsupported_cases_fail_clearly() {
    let (mut p, mut m, buf) = setup();
    // Not AF_UNIX.
    assert_eq!(call(&mut p, &mut m, nr::SOCKETPAIR, &[2, 1, 0, buf]), -95);
    assert_eq!(call(&mut p, &mut m, nr::SOCKETPAIR, &[10, 1, 0, buf]), -97);
    // Bad type, flags, protocol, pointer.
    assert_eq!(call(&mut p, &mut m, nr::SOCKETPAIR, &[1, 3, 0, buf]), -94);
    assert_eq!(
        call(&mut p, &mut m, nr::SOCKETPAIR, &[1, 1 | 0x10, 0, buf]),
        -22
    );
    assert_eq!(call(&mut p, &mut m, nr::SOCKETPAIR, &[1, 1, 6, buf]), -93);
    assert_eq!(
        call(&mut p, &mut m, nr::SOCKETPAIR, &[1, 1, 0, UNMAPPED]),
        -14
    );
    assert_eq!(
        call(&mut p, &mut m, nr::FCNTL, &[3, 1]),
        -9,
        "nothing installed"
    );
    // socket(AF_UNIX) checks its type and protocol as socketpair does.
    assert_eq!(call(&mut p, &mut m, nr::SOCKET, &[1, 3, 0]), -94);
    assert_eq!(call(&mut p, &mut m, nr::SOCKET, &[1, 1, 6]), -93);
}

/// A `sockaddr_un` for `path` (a leading NUL: abstract) at `at`; returns its length.
fn sun(p: &mut Process, m: &mut FakeMachine, at: u64, path: &[u8]) -> u64 {
    let mut b = 1u16.to_le_bytes().to_vec();
    b.extend_from_slice(path);
    if path.first() != Some(&0) {
        b.push(0);
    }
    poke(p, m, at, &b);
    b.len() as u64
}

fn socket(p: &mut Process, m: &mut FakeMachine, ty: u64) -> u64 {
    let fd = call(p, m, nr::SOCKET, &[1, ty, 0]);
    assert!(fd >= 3, "socket: {fd}");
    fd as u64
}

/// `getsockname` of `fd`: the `sun_path` bytes it reports (after the family).
fn sockname(p: &mut Process, m: &mut FakeMachine, buf: u64, fd: u64) -> Vec<u8> {
    let (at, len_ptr) = (buf + 0x3400, buf + 0x3000);
    poke(p, m, len_ptr, &110u32.to_le_bytes());
    assert_eq!(call(p, m, nr::GETSOCKNAME, &[fd, at, len_ptr]), 0);
    let n = u32::from_le_bytes(peek(p, m, len_ptr, 4).try_into().unwrap());
    peek(p, m, at + 2, n as usize - 2)
}

#[test]
fn a_named_stream_socket_listens_and_accepts_the_programs_own_connections() {
    let (mut p, mut m, buf) = setup();
    let addr = buf + 0x2000;
    let s = socket(&mut p, &mut m, STREAM | SOCK_NONBLOCK);
    let len = sun(&mut p, &mut m, addr, b"/tmp/app.sock");
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[s, addr, len]), 0);
    assert_eq!(
        call(&mut p, &mut m, nr::BIND, &[s, addr, len]),
        -22,
        "bound twice"
    );
    // Before listen a connection is refused; a second socket cannot take the name.
    let c = socket(&mut p, &mut m, STREAM);
    assert_eq!(call(&mut p, &mut m, nr::CONNECT, &[c, addr, len]), -111);
    let other = socket(&mut p, &mut m, STREAM);
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[other, addr, len]), -98);
    assert_eq!(call(&mut p, &mut m, nr::LISTEN, &[s, 8]), 0);
    // Nothing waits: a non-blocking listener says so.
    assert_eq!(call(&mut p, &mut m, nr::ACCEPT4, &[s, 0, 0, 0]), EAGAIN);
    assert_eq!(poll1(&mut p, &mut m, buf, s, POLLIN), 0);
    // A relative path from the working directory reaches the same name.
    p.cwd = "/tmp".into();
    let rel = sun(&mut p, &mut m, addr + 0x200, b"app.sock");
    assert_eq!(
        call(&mut p, &mut m, nr::CONNECT, &[c, addr + 0x200, rel]),
        0
    );
    assert_eq!(poll1(&mut p, &mut m, buf, s, POLLIN), POLLIN);
    let a = call(&mut p, &mut m, nr::ACCEPT4, &[s, 0, 0, SOCK_CLOEXEC]);
    assert!(a > 0, "accept4: {a}");
    let a = a as u64;
    assert_eq!(p.files.cloexec(a as i32), Ok(true));
    // The connection carries data both ways.
    assert_eq!(write(&mut p, &mut m, buf, c, b"ping"), 4);
    assert_eq!(read(&mut p, &mut m, buf, a, 100).unwrap(), b"ping");
    assert_eq!(write(&mut p, &mut m, buf, a, b"pong"), 4);
    assert_eq!(read(&mut p, &mut m, buf, c, 100).unwrap(), b"pong");
    // The listener's name, as getsockname gives it; the connected end is unnamed.
    assert_eq!(sockname(&mut p, &mut m, buf, s), b"/tmp/app.sock\0");
    assert_eq!(sockname(&mut p, &mut m, buf, c), b"");
    // Closing the listener frees the name: connecting now finds no socket at all.
    assert_eq!(call(&mut p, &mut m, nr::CLOSE, &[s]), 0);
    let c2 = socket(&mut p, &mut m, STREAM);
    assert_eq!(call(&mut p, &mut m, nr::CONNECT, &[c2, addr, len]), -2);
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[c2, addr, len]), 0);
}

#[test]
fn accept_waits_for_a_connection_from_another_thread() {
    let (mut p, mut m, buf) = setup();
    let addr = buf + 0x2000;
    let s = socket(&mut p, &mut m, STREAM);
    let len = sun(&mut p, &mut m, addr, b"\0abstract-name");
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[s, addr, len]), 0);
    assert_eq!(call(&mut p, &mut m, nr::LISTEN, &[s, 1]), 0);
    // One thread alone would wait forever: EDEADLK. With another thread it blocks.
    let a = [s, 0, 0, 0, 0, 0];
    assert_eq!(
        handle(&mut p, &mut m, nr::ACCEPT, a),
        Some(Outcome::Return(-35))
    );
    m.other_threads = 1;
    assert!(matches!(
        handle(&mut p, &mut m, nr::ACCEPT, a),
        Some(Outcome::Block(_))
    ));
    let c = socket(&mut p, &mut m, STREAM);
    assert_eq!(call(&mut p, &mut m, nr::CONNECT, &[c, addr, len]), 0);
    assert!(call(&mut p, &mut m, nr::ACCEPT, &[s, 0, 0]) > 0);
    // The queue holds the backlog plus one; then connecting waits (or, non-blocking, fails).
    for _ in 0..2 {
        let c = socket(&mut p, &mut m, STREAM);
        assert_eq!(call(&mut p, &mut m, nr::CONNECT, &[c, addr, len]), 0);
    }
    let c = socket(&mut p, &mut m, STREAM | SOCK_NONBLOCK);
    assert_eq!(call(&mut p, &mut m, nr::CONNECT, &[c, addr, len]), EAGAIN);
    // A seqpacket socket cannot connect to a stream listener.
    let q = socket(&mut p, &mut m, SOCK_SEQPACKET);
    assert_eq!(call(&mut p, &mut m, nr::CONNECT, &[q, addr, len]), -91);
}

#[test]
fn names_nobody_bound_fail_as_on_linux_without_the_service() {
    let (mut p, mut m, buf) = setup();
    let addr = buf + 0x2000;
    let c = socket(&mut p, &mut m, STREAM);
    // No such file: ENOENT (a client of nscd, PostgreSQL's default socket...).
    let len = sun(&mut p, &mut m, addr, b"/var/run/postgresql/.s.PGSQL.5432");
    assert_eq!(call(&mut p, &mut m, nr::CONNECT, &[c, addr, len]), -2);
    // A file that is no socket, an abstract name nobody holds: ECONNREFUSED.
    let len = sun(&mut p, &mut m, addr, b"/bin/prog");
    assert_eq!(call(&mut p, &mut m, nr::CONNECT, &[c, addr, len]), -111);
    let len = sun(&mut p, &mut m, addr, b"\0nobody");
    assert_eq!(call(&mut p, &mut m, nr::CONNECT, &[c, addr, len]), -111);
    // syslog's datagrams to /dev/log: no such socket.
    let d = socket(&mut p, &mut m, DGRAM);
    let len = sun(&mut p, &mut m, addr, b"/dev/log");
    assert_eq!(call(&mut p, &mut m, nr::CONNECT, &[d, addr, len]), -2);
    assert_eq!(
        call(&mut p, &mut m, nr::SENDTO, &[d, buf, 1, 0, addr, len]),
        -2
    );
    assert_eq!(
        call(&mut p, &mut m, nr::SENDTO, &[d, buf, 1, 0, 0, 0]),
        -107
    );
    // Not connected: reads, writes and the peer's name.
    assert_eq!(write(&mut p, &mut m, buf, c, b"x"), -107);
    assert_eq!(read(&mut p, &mut m, buf, c, 1), Err(-22));
    assert_eq!(call(&mut p, &mut m, nr::GETPEERNAME, &[c, addr, buf]), -107);
    // Binding: the root file system is read-only, a missing directory is ENOENT, a
    // datagram socket cannot be bound (logged once), a bad family is EINVAL.
    let s = socket(&mut p, &mut m, STREAM);
    let len = sun(&mut p, &mut m, addr, b"/app.sock");
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[s, addr, len]), -30);
    let len = sun(&mut p, &mut m, addr, b"/tmp/none/app.sock");
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[s, addr, len]), -2);
    let len = sun(&mut p, &mut m, addr, b"/tmp/d.sock");
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[d, addr, len]), -95);
    assert_eq!(m.log.iter().filter(|l| l.contains("SOCK_DGRAM")).count(), 1);
    poke(&mut p, &mut m, addr, &2u16.to_le_bytes());
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[s, addr, len]), -22);
    // The family alone: an abstract name of the socket's own (autobind).
    poke(&mut p, &mut m, addr, &1u16.to_le_bytes());
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[s, addr, 2]), 0);
    let name = sockname(&mut p, &mut m, buf, s);
    assert_eq!((name.len(), name[0]), (1 + 5, 0));
    // Its type and domain, as getsockopt reports them.
    poke(&mut p, &mut m, buf + 0x3000, &4u32.to_le_bytes());
    assert_eq!(
        call(
            &mut p,
            &mut m,
            nr::GETSOCKOPT,
            &[d, 1, 3, buf + 0x3100, buf + 0x3000]
        ),
        0
    );
    assert_eq!(peek(&mut p, &mut m, buf + 0x3100, 4), 2i32.to_le_bytes());
}

#[test]
fn a_socket_registered_with_epoll_before_connect_reports_the_connections_events() {
    let (mut p, mut m, buf) = setup();
    let addr = buf + 0x2000;
    let s = socket(&mut p, &mut m, STREAM);
    let len = sun(&mut p, &mut m, addr, b"/tmp/ep.sock");
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[s, addr, len]), 0);
    assert_eq!(call(&mut p, &mut m, nr::LISTEN, &[s, 4]), 0);
    let c = socket(&mut p, &mut m, STREAM | SOCK_NONBLOCK);
    // Registered first (edge-triggered, EPOLLIN | EPOLLOUT), as an event loop may.
    let ep = call(&mut p, &mut m, nr::EPOLL_CREATE1, &[0]) as u64;
    let mut ev = (1u32 | 4 | (1u32 << 31)).to_le_bytes().to_vec();
    ev.extend_from_slice(&9u64.to_le_bytes());
    poke(&mut p, &mut m, buf + 0x600, &ev);
    assert_eq!(
        call(&mut p, &mut m, nr::EPOLL_CTL, &[ep, 1, c, buf + 0x600]),
        0
    );
    let wait = |p: &mut Process, m: &mut FakeMachine| -> Vec<u32> {
        let n = call(p, m, nr::EPOLL_WAIT, &[ep, buf + 0x700, 4, 0]);
        (0..n as u64)
            .map(|i| u32::from_le_bytes(peek(p, m, buf + 0x700 + i * 12, 4).try_into().unwrap()))
            .collect()
    };
    wait(&mut p, &mut m);
    assert_eq!(call(&mut p, &mut m, nr::CONNECT, &[c, addr, len]), 0);
    let a = call(&mut p, &mut m, nr::ACCEPT, &[s, 0, 0]) as u64;
    assert_eq!(read(&mut p, &mut m, buf, c, 10), Err(EAGAIN));
    assert_eq!(write(&mut p, &mut m, buf, a, b"hi"), 2);
    // The same descriptor and registration report the data.
    assert_eq!(wait(&mut p, &mut m), vec![1 | 4]);
    assert_eq!(read(&mut p, &mut m, buf, c, 10).unwrap(), b"hi");
    assert_eq!(call(&mut p, &mut m, nr::CONNECT, &[c, addr, len]), -106);
}

#[test]
fn options_set_before_connect_stay_with_the_connection() {
    let (mut p, mut m, buf) = setup();
    let addr = buf + 0x2000;
    let s = socket(&mut p, &mut m, STREAM);
    let len = sun(&mut p, &mut m, addr, b"/tmp/opt.sock");
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[s, addr, len]), 0);
    assert_eq!(call(&mut p, &mut m, nr::LISTEN, &[s, 4]), 0);
    let (val, len_ptr) = (buf + 0x3100, buf + 0x3000);
    let get = |p: &mut Process, m: &mut FakeMachine, fd: u64, name: u64| -> Vec<u8> {
        poke(p, m, len_ptr, &16u32.to_le_bytes());
        assert_eq!(call(p, m, nr::GETSOCKOPT, &[fd, 1, name, val, len_ptr]), 0);
        let n = u32::from_le_bytes(peek(p, m, len_ptr, 4).try_into().unwrap());
        peek(p, m, val, n as usize)
    };
    // SO_ACCEPTCONN (30): the listener listens.
    assert_eq!(get(&mut p, &mut m, s, 30), 1i32.to_le_bytes());
    // SO_RCVTIMEO (20) of 2.5 s, set before connect.
    let c = socket(&mut p, &mut m, STREAM);
    let mut tv = 2u64.to_le_bytes().to_vec();
    tv.extend_from_slice(&500_000u64.to_le_bytes());
    poke(&mut p, &mut m, val, &tv);
    assert_eq!(
        call(&mut p, &mut m, nr::SETSOCKOPT, &[c, 1, 20, val, 16]),
        0
    );
    assert_eq!(get(&mut p, &mut m, c, 20), tv);
    assert_eq!(call(&mut p, &mut m, nr::CONNECT, &[c, addr, len]), 0);
    assert_eq!(get(&mut p, &mut m, c, 20), tv);
    // A read with nothing there waits no longer than that.
    m.other_threads = 1;
    let a = [c, buf, 8, 0, 0, 0];
    match handle(&mut p, &mut m, nr::RECVFROM, a) {
        Some(Outcome::Block(w)) => assert_eq!(w.deadline, Some(m.now + 2_500_000_000)),
        other => panic!("{other:?}"),
    }
    // An option the sockets do not have.
    assert_eq!(
        call(&mut p, &mut m, nr::SETSOCKOPT, &[c, 1, 99, val, 4]),
        -92
    );
}
