//! Socket system calls over the loopback interface of a fake machine.

use super::*;
use crate::process::Outcome;
use crate::syscall::testutil::*;
use crate::sysno as nr;
use crate::testing::FakeMachine;

const EAGAIN: i64 = -11;

#[test]
fn the_card_is_left_alone_until_the_program_makes_a_socket() {
    // Asking the machine for its card sets the card up: a program that never uses the
    // network must not pay for that on its first system calls.
    let (mut p, mut m, buf) = setup();
    assert!(call(&mut p, &mut m, nr::GETPID, &[]) > 0);
    assert_eq!(call(&mut p, &mut m, nr::WRITE, &[1, buf, 1]), 1);
    assert_eq!(
        m.net_device_asked, 0,
        "the card was asked for before any socket"
    );
    let fd = tcp(&mut p, &mut m, 0);
    addr(&mut p, &mut m, buf, [127, 0, 0, 1], 8080);
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[fd as u64, buf, 16]), 0);
    assert!(m.net_device_asked > 0, "the stack never asked for the card");
}

/// Writes a `sockaddr_in` for `ip:port` at `at`.
fn addr(p: &mut Process, m: &mut FakeMachine, at: u64, ip: [u8; 4], port: u16) {
    poke(p, m, at, &sockaddr_bytes(SockAddr { ip, port }));
}

fn tcp(p: &mut Process, m: &mut FakeMachine, flags: u64) -> i32 {
    let fd = call(p, m, nr::SOCKET, &[2, SOCK_STREAM | flags, 0]);
    assert!(fd >= 3, "socket: {fd}");
    fd as i32
}

fn udp(p: &mut Process, m: &mut FakeMachine) -> i32 {
    let fd = call(p, m, nr::SOCKET, &[2, SOCK_DGRAM, 0]);
    assert!(fd >= 3, "socket: {fd}");
    fd as i32
}

/// A listener on 127.0.0.1:`port` and a connected client; returns (listener, client,
/// accepted).
fn connected_pair(p: &mut Process, m: &mut FakeMachine, buf: u64, port: u16) -> (i32, i32, i32) {
    let l = tcp(p, m, 0);
    addr(p, m, buf, [127, 0, 0, 1], port);
    assert_eq!(call(p, m, nr::BIND, &[l as u64, buf, 16]), 0);
    assert_eq!(call(p, m, nr::LISTEN, &[l as u64, 128]), 0);
    let c = tcp(p, m, 0);
    assert_eq!(call(p, m, nr::CONNECT, &[c as u64, buf, 16]), 0);
    poke(p, m, buf + 128, &16u32.to_le_bytes());
    let a = call(p, m, nr::ACCEPT4, &[l as u64, buf + 64, buf + 128, 0]);
    assert!(a > 0, "accept4: {a}");
    (l, c, a as i32)
}

#[test]
fn a_blocking_write_or_send_on_a_stream_queues_every_byte() {
    for call_nr in [nr::WRITE, nr::SENDTO, nr::WRITEV, nr::SENDMSG] {
        let (mut p, mut m, buf) = setup();
        // Small buffers both ways (4 KiB each), so 12 KiB cannot be queued at once.
        let l = tcp(&mut p, &mut m, 0);
        let c = tcp(&mut p, &mut m, 0);
        poke(&mut p, &mut m, buf + 2048, &4096u32.to_le_bytes());
        for (fd, opt) in [(l, 8), (c, 7)] {
            let args = [fd as u64, 1, opt, buf + 2048, 4];
            assert_eq!(call(&mut p, &mut m, nr::SETSOCKOPT, &args), 0);
        }
        addr(&mut p, &mut m, buf, [127, 0, 0, 1], 8090);
        assert_eq!(call(&mut p, &mut m, nr::BIND, &[l as u64, buf, 16]), 0);
        assert_eq!(call(&mut p, &mut m, nr::LISTEN, &[l as u64, 8]), 0);
        assert_eq!(call(&mut p, &mut m, nr::CONNECT, &[c as u64, buf, 16]), 0);
        let a = call(&mut p, &mut m, nr::ACCEPT4, &[l as u64, 0, 0, 0]);
        assert!(a > 0, "accept4: {a}");
        let data: Vec<u8> = (0..12288u32).map(|i| (i % 251) as u8).collect();
        let (src, dst) = (buf + 4096, buf + 256);
        poke(&mut p, &mut m, src, &data[..8192]);
        poke(&mut p, &mut m, src + 8192, &data[8192..]);
        // writev and sendmsg take the bytes as three buffers (one empty), at `iov`.
        let (iov, msg) = (buf + 3072, buf + 3200);
        for (i, (base, len)) in [(src, 5000u64), (src + 5000, 0), (src + 5000, 7288)]
            .into_iter()
            .enumerate()
        {
            let at = iov + 16 * i as u64;
            poke(&mut p, &mut m, at, &base.to_le_bytes());
            poke(&mut p, &mut m, at + 8, &len.to_le_bytes());
        }
        let mut hdr = [0u8; 56];
        hdr[16..24].copy_from_slice(&iov.to_le_bytes());
        hdr[24..32].copy_from_slice(&3u64.to_le_bytes());
        poke(&mut p, &mut m, msg, &hdr);
        let args = match call_nr {
            nr::WRITEV => [c as u64, iov, 3, 0, 0, 0],
            nr::SENDMSG => [c as u64, msg, 0, 0, 0, 0],
            _ => [c as u64, src, 12288, 0, 0, 0],
        };
        let mut got = Vec::new();
        let total = loop {
            match outcome(&mut p, &mut m, call_nr, &args) {
                // Waiting for room: the reader takes what arrived, the write goes on.
                Outcome::Block(_) => {
                    let n = call(&mut p, &mut m, nr::READ, &[a as u64, dst, 1536]);
                    assert!(n > 0, "read: {n}");
                    got.extend(peek(&mut p, &mut m, dst, n as usize));
                }
                Outcome::Return(n) => break n,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(total, 12288, "call {call_nr}");
        assert!(!got.is_empty(), "call {call_nr}: it never waited");
        while got.len() < data.len() {
            let n = call(&mut p, &mut m, nr::READ, &[a as u64, dst, 1536]);
            assert!(n > 0, "read: {n}");
            got.extend(peek(&mut p, &mut m, dst, n as usize));
        }
        assert!(got == data, "call {call_nr}: the bytes arrived changed");
        // With a send timeout the call returns what fit at once and keeps no count behind
        // (a wait ended by its deadline would not run the call again).
        let mut tv = [0u8; 16];
        tv[..8].copy_from_slice(&1u64.to_le_bytes());
        poke(&mut p, &mut m, buf + 2048, &tv);
        let opt = [c as u64, 1, 21, buf + 2048, 16];
        assert_eq!(call(&mut p, &mut m, nr::SETSOCKOPT, &opt), 0);
        let n = call(&mut p, &mut m, call_nr, &args);
        assert!(n > 0 && n < 12288, "call {call_nr} with SO_SNDTIMEO: {n}");
        assert_eq!(m.thread.partial_write, None);
        let mut drained = 0;
        while drained < n {
            let r = call(&mut p, &mut m, nr::READ, &[a as u64, dst, 1536]);
            assert!(r > 0, "read: {r}");
            drained += r;
        }
        // Non-blocking, the same write returns what fit.
        let fl = [c as u64, 4, 2048];
        assert_eq!(call(&mut p, &mut m, nr::FCNTL, &fl), 0);
        let n = call(&mut p, &mut m, call_nr, &args);
        assert!(n > 0 && n < 12288, "call {call_nr}: {n}");
    }
}

#[test]
fn tcp_over_loopback() {
    let (mut p, mut m, buf) = setup();
    let (l, c, a) = connected_pair(&mut p, &mut m, buf, 8080);
    // accept4 reported the client's address.
    let peer = peek(&mut p, &mut m, buf + 64, 16);
    assert_eq!(&peer[..2], &2u16.to_le_bytes());
    assert_eq!(&peer[4..8], &[127, 0, 0, 1]);
    let client_port = u16::from_be_bytes([peer[2], peer[3]]);
    // getsockname of the client matches.
    poke(&mut p, &mut m, buf + 200, &16u32.to_le_bytes());
    assert_eq!(
        call(
            &mut p,
            &mut m,
            nr::GETSOCKNAME,
            &[c as u64, buf + 256, buf + 200]
        ),
        0
    );
    let name = peek(&mut p, &mut m, buf + 256, 16);
    assert_eq!(u16::from_be_bytes([name[2], name[3]]), client_port);
    poke(&mut p, &mut m, buf + 200, &16u32.to_le_bytes());
    assert_eq!(
        call(
            &mut p,
            &mut m,
            nr::GETPEERNAME,
            &[c as u64, buf + 256, buf + 200]
        ),
        0
    );
    let name = peek(&mut p, &mut m, buf + 256, 16);
    assert_eq!(u16::from_be_bytes([name[2], name[3]]), 8080);

    poke(&mut p, &mut m, buf + 512, b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(
        call(&mut p, &mut m, nr::WRITE, &[c as u64, buf + 512, 18]),
        18
    );
    assert_eq!(
        call(&mut p, &mut m, nr::READ, &[a as u64, buf + 1024, 100]),
        18
    );
    assert_eq!(
        peek(&mut p, &mut m, buf + 1024, 18),
        b"GET / HTTP/1.0\r\n\r\n"
    );
    // Nothing more: a blocking read waits on the socket.
    match outcome(&mut p, &mut m, nr::READ, &[a as u64, buf + 1024, 100]) {
        Outcome::Block(w) => assert_eq!(w.on_wake, None),
        o => panic!("read did not block: {o:?}"),
    }
    // With MSG_DONTWAIT it fails instead.
    assert_eq!(
        call(
            &mut p,
            &mut m,
            nr::RECVFROM,
            &[a as u64, buf + 1024, 100, MSG_DONTWAIT, 0, 0]
        ),
        EAGAIN
    );
    poke(&mut p, &mut m, buf + 512, b"hello");
    assert_eq!(
        call(
            &mut p,
            &mut m,
            nr::SENDTO,
            &[a as u64, buf + 512, 5, 0x4000, 0, 0]
        ),
        5
    );
    assert_eq!(
        call(
            &mut p,
            &mut m,
            nr::RECVFROM,
            &[c as u64, buf + 1024, 100, MSG_PEEK, 0, 0]
        ),
        5
    );
    assert_eq!(
        call(&mut p, &mut m, nr::READ, &[c as u64, buf + 1024, 100]),
        5
    );
    assert_eq!(peek(&mut p, &mut m, buf + 1024, 5), b"hello");
    // The client closes: the server reads end of file, then its writes still go out
    // until the client's stack resets them.
    assert_eq!(call(&mut p, &mut m, nr::CLOSE, &[c as u64]), 0);
    assert_eq!(
        call(&mut p, &mut m, nr::READ, &[a as u64, buf + 1024, 100]),
        0
    );
    assert_eq!(call(&mut p, &mut m, nr::CLOSE, &[a as u64]), 0);
    assert_eq!(call(&mut p, &mut m, nr::CLOSE, &[l as u64]), 0);
}

#[test]
fn large_transfer_arrives_intact() {
    let (mut p, mut m, buf) = setup();
    let (_l, c, a) = connected_pair(&mut p, &mut m, buf, 8081);
    let data: Vec<u8> = (0..BUF_LEN as usize / 2)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    poke(&mut p, &mut m, buf, &data);
    let half = BUF_LEN / 2;
    let mut sent = 0u64;
    let mut got = Vec::new();
    let total = 40 * data.len() as u64;
    let mut rounds = 0;
    while (got.len() as u64) < total {
        rounds += 1;
        assert!(rounds < 10_000, "stuck after {} bytes", got.len());
        if sent < total {
            let off = sent % data.len() as u64;
            let n = call(
                &mut p,
                &mut m,
                nr::SENDTO,
                &[
                    a as u64,
                    buf + off,
                    data.len() as u64 - off,
                    MSG_DONTWAIT,
                    0,
                    0,
                ],
            );
            if n > 0 {
                sent += n as u64;
            } else {
                assert_eq!(n, EAGAIN);
            }
        }
        let n = call(
            &mut p,
            &mut m,
            nr::RECVFROM,
            &[c as u64, buf + half, half, MSG_DONTWAIT, 0, 0],
        );
        if n > 0 {
            got.extend(peek(&mut p, &mut m, buf + half, n as usize));
        } else {
            assert_eq!(n, EAGAIN);
        }
    }
    for (i, chunk) in got.chunks(data.len()).enumerate() {
        assert!(chunk == &data[..], "chunk {i} differs");
    }
}

#[test]
fn refused_and_nonblocking_connect() {
    let (mut p, mut m, buf) = setup();
    let c = tcp(&mut p, &mut m, 0);
    addr(&mut p, &mut m, buf, [127, 0, 0, 1], 9);
    assert_eq!(
        call(&mut p, &mut m, nr::CONNECT, &[c as u64, buf, 16]),
        -111
    );

    // Non-blocking: EINPROGRESS or already done on loopback; SO_ERROR tells.
    let l = tcp(&mut p, &mut m, 0);
    addr(&mut p, &mut m, buf, [127, 0, 0, 1], 7000);
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[l as u64, buf, 16]), 0);
    assert_eq!(call(&mut p, &mut m, nr::LISTEN, &[l as u64, 1]), 0);
    let nb = tcp(&mut p, &mut m, SOCK_NONBLOCK);
    let r = call(&mut p, &mut m, nr::CONNECT, &[nb as u64, buf, 16]);
    assert!(r == 0 || r == -115, "connect: {r}");
    poke(&mut p, &mut m, buf + 64, &4u32.to_le_bytes());
    assert_eq!(
        call(
            &mut p,
            &mut m,
            nr::GETSOCKOPT,
            &[nb as u64, 1, 4, buf + 68, buf + 64]
        ),
        0
    );
    assert_eq!(peek(&mut p, &mut m, buf + 68, 4), 0u32.to_le_bytes());
    let nb2 = tcp(&mut p, &mut m, SOCK_NONBLOCK);
    addr(&mut p, &mut m, buf, [127, 0, 0, 1], 7001);
    let r = call(&mut p, &mut m, nr::CONNECT, &[nb2 as u64, buf, 16]);
    assert!(r == -111 || r == -115, "connect: {r}");
    if r == -115 {
        assert_eq!(
            call(
                &mut p,
                &mut m,
                nr::GETSOCKOPT,
                &[nb2 as u64, 1, 4, buf + 68, buf + 64]
            ),
            0
        );
        assert_eq!(peek(&mut p, &mut m, buf + 68, 4), 111u32.to_le_bytes());
    }
}

#[test]
fn accept_waits_or_fails_with_eagain() {
    let (mut p, mut m, buf) = setup();
    let l = tcp(&mut p, &mut m, SOCK_NONBLOCK);
    addr(&mut p, &mut m, buf, [0; 4], 8000);
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[l as u64, buf, 16]), 0);
    assert_eq!(call(&mut p, &mut m, nr::LISTEN, &[l as u64, 4]), 0);
    assert_eq!(call(&mut p, &mut m, nr::ACCEPT, &[l as u64, 0, 0]), EAGAIN);
    let b = tcp(&mut p, &mut m, 0);
    addr(&mut p, &mut m, buf, [0; 4], 8001);
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[b as u64, buf, 16]), 0);
    assert_eq!(call(&mut p, &mut m, nr::LISTEN, &[b as u64, 4]), 0);
    match outcome(&mut p, &mut m, nr::ACCEPT, &[b as u64, 0, 0]) {
        Outcome::Block(w) => assert!(matches!(w.channels[..], [Channel::Object(_)])),
        o => panic!("accept did not block: {o:?}"),
    }
    // The same port again is in use; another port with SO_REUSEADDR is fine.
    let d = tcp(&mut p, &mut m, 0);
    addr(&mut p, &mut m, buf, [127, 0, 0, 1], 8001);
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[d as u64, buf, 16]), -98);
    // Ephemeral port when binding port 0.
    addr(&mut p, &mut m, buf, [0; 4], 0);
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[d as u64, buf, 16]), 0);
    poke(&mut p, &mut m, buf + 32, &16u32.to_le_bytes());
    assert_eq!(
        call(
            &mut p,
            &mut m,
            nr::GETSOCKNAME,
            &[d as u64, buf + 64, buf + 32]
        ),
        0
    );
    let name = peek(&mut p, &mut m, buf + 64, 16);
    assert_ne!(u16::from_be_bytes([name[2], name[3]]), 0);
}

/// Writes a `msghdr` at `at` with one iovec entry (`data`, `len`, the entry itself at
/// `at + 100`), `name`/`namelen` and `control`/`controllen`.
fn msghdr(
    p: &mut Process,
    m: &mut FakeMachine,
    at: u64,
    (name, namelen): (u64, u32),
    (data, len): (u64, u64),
    (control, controllen): (u64, u64),
) {
    let mut msg = [0u8; 56];
    msg[..8].copy_from_slice(&name.to_le_bytes());
    msg[8..12].copy_from_slice(&namelen.to_le_bytes());
    msg[16..24].copy_from_slice(&(at + 100).to_le_bytes());
    msg[24..32].copy_from_slice(&1u64.to_le_bytes());
    msg[32..40].copy_from_slice(&control.to_le_bytes());
    msg[40..48].copy_from_slice(&controllen.to_le_bytes());
    poke(p, m, at, &msg);
    let mut iov = [0u8; 16];
    iov[..8].copy_from_slice(&data.to_le_bytes());
    iov[8..].copy_from_slice(&len.to_le_bytes());
    poke(p, m, at + 100, &iov);
}

#[test]
fn a_udp_socket_queues_a_burst_of_a_thousand_small_datagrams() {
    // Hundreds of DNS questions at once reach a server before it reads one.
    let (mut p, mut m, buf) = setup();
    let s = udp(&mut p, &mut m);
    addr(&mut p, &mut m, buf, [127, 0, 0, 1], 5353);
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[s as u64, buf, 16]), 0);
    let c = udp(&mut p, &mut m);
    for i in 0..1000u32 {
        let mut q = [0u8; 60];
        q[..4].copy_from_slice(&i.to_le_bytes());
        poke(&mut p, &mut m, buf + 64, &q);
        assert_eq!(
            call(
                &mut p,
                &mut m,
                nr::SENDTO,
                &[c as u64, buf + 64, 60, 0, buf, 16]
            ),
            60,
            "datagram {i}"
        );
    }
    for i in 0..1000u32 {
        assert_eq!(
            call(
                &mut p,
                &mut m,
                nr::RECVFROM,
                &[s as u64, buf + 128, 100, MSG_DONTWAIT, 0, 0]
            ),
            60,
            "datagram {i}"
        );
        assert_eq!(peek(&mut p, &mut m, buf + 128, 4), i.to_le_bytes());
    }
}

#[test]
fn udp_sockets_share_a_port_with_so_reuseaddr_and_the_best_match_reads() {
    // iperf3's UDP server: it connects the socket its client's first datagram came to, and
    // binds another to the same port for the next client.
    let (mut p, mut m, buf) = setup();
    let reuse = |p: &mut Process, m: &mut FakeMachine, fd: i32| {
        poke(p, m, buf + 2048, &1u32.to_le_bytes());
        let args = [fd as u64, 1, 2, buf + 2048, 4];
        assert_eq!(call(p, m, nr::SETSOCKOPT, &args), 0);
    };
    let send = |p: &mut Process, m: &mut FakeMachine, fd: i32, what: &[u8]| {
        poke(p, m, buf + 64, what);
        let args = [fd as u64, buf + 64, what.len() as u64, 0, buf, 16];
        assert_eq!(call(p, m, nr::SENDTO, &args), what.len() as i64);
    };
    let recv = |p: &mut Process, m: &mut FakeMachine, fd: i32| -> Option<Vec<u8>> {
        let args = [fd as u64, buf + 128, 100, MSG_DONTWAIT, 0, 0];
        let n = call(p, m, nr::RECVFROM, &args);
        (n >= 0).then(|| peek(p, m, buf + 128, n as usize))
    };
    let first = udp(&mut p, &mut m);
    reuse(&mut p, &mut m, first);
    addr(&mut p, &mut m, buf, [0, 0, 0, 0], 5201);
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[first as u64, buf, 16]), 0);
    let (c1, c2) = (udp(&mut p, &mut m), udp(&mut p, &mut m));
    addr(&mut p, &mut m, buf, [127, 0, 0, 1], 5201);
    send(&mut p, &mut m, c1, b"hello");
    poke(&mut p, &mut m, buf + 200, &16u32.to_le_bytes());
    let args = [first as u64, buf + 128, 100, 0, buf + 256, buf + 200];
    assert_eq!(call(&mut p, &mut m, nr::RECVFROM, &args), 5);
    assert_eq!(
        call(&mut p, &mut m, nr::CONNECT, &[first as u64, buf + 256, 16]),
        0
    );

    // Without SO_REUSEADDR the port is taken; with it, a second socket binds.
    let plain = udp(&mut p, &mut m);
    addr(&mut p, &mut m, buf, [0, 0, 0, 0], 5201);
    let r = call(&mut p, &mut m, nr::BIND, &[plain as u64, buf, 16]);
    assert_eq!(r, -98, "EADDRINUSE");
    let next = udp(&mut p, &mut m);
    reuse(&mut p, &mut m, next);
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[next as u64, buf, 16]), 0);

    // The connected client's datagrams go to the connected socket, a new client's to the
    // other, whichever is read first.
    addr(&mut p, &mut m, buf, [127, 0, 0, 1], 5201);
    send(&mut p, &mut m, c2, b"new client");
    send(&mut p, &mut m, c1, b"data 1");
    send(&mut p, &mut m, c1, b"data 2");
    assert_eq!(
        recv(&mut p, &mut m, next).as_deref(),
        Some(&b"new client"[..])
    );
    assert_eq!(recv(&mut p, &mut m, next), None);
    // FIONREAD and poll see the queued datagram.
    assert_eq!(
        call(
            &mut p,
            &mut m,
            nr::IOCTL,
            &[first as u64, 0x541B, buf + 300]
        ),
        0
    );
    assert_eq!(peek(&mut p, &mut m, buf + 300, 4), 6u32.to_le_bytes());
    assert_eq!(recv(&mut p, &mut m, first).as_deref(), Some(&b"data 1"[..]));
    assert_eq!(recv(&mut p, &mut m, first).as_deref(), Some(&b"data 2"[..]));
    assert_eq!(recv(&mut p, &mut m, first), None);
}

#[test]
fn udp_round_trip() {
    let (mut p, mut m, buf) = setup();
    let s = udp(&mut p, &mut m);
    addr(&mut p, &mut m, buf, [127, 0, 0, 1], 5353);
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[s as u64, buf, 16]), 0);
    let c = udp(&mut p, &mut m);
    poke(&mut p, &mut m, buf + 64, b"ping");
    assert_eq!(
        call(
            &mut p,
            &mut m,
            nr::SENDTO,
            &[c as u64, buf + 64, 4, 0, buf, 16]
        ),
        4
    );
    poke(&mut p, &mut m, buf + 200, &16u32.to_le_bytes());
    assert_eq!(
        call(
            &mut p,
            &mut m,
            nr::RECVFROM,
            &[s as u64, buf + 128, 100, 0, buf + 256, buf + 200]
        ),
        4
    );
    assert_eq!(peek(&mut p, &mut m, buf + 128, 4), b"ping");
    let from = peek(&mut p, &mut m, buf + 256, 16);
    assert_eq!(&from[4..8], &[127, 0, 0, 1]);
    // Echo back to the sender through sendmsg; read it with recvmsg.
    msghdr(
        &mut p,
        &mut m,
        buf + 300,
        (buf + 256, 16),
        (buf + 128, 4),
        (0, 0),
    );
    assert_eq!(
        call(&mut p, &mut m, nr::SENDMSG, &[s as u64, buf + 300, 0]),
        4
    );
    msghdr(
        &mut p,
        &mut m,
        buf + 300,
        (buf + 600, 16),
        (buf + 700, 100),
        (0, 0),
    );
    assert_eq!(
        call(&mut p, &mut m, nr::RECVMSG, &[c as u64, buf + 300, 0]),
        4
    );
    assert_eq!(peek(&mut p, &mut m, buf + 700, 4), b"ping");
    assert_eq!(&peek(&mut p, &mut m, buf + 600, 8)[4..8], &[127, 0, 0, 1]);
    // Nothing left: EAGAIN with MSG_DONTWAIT.
    assert_eq!(
        call(
            &mut p,
            &mut m,
            nr::RECVFROM,
            &[c as u64, buf + 700, 100, MSG_DONTWAIT, 0, 0]
        ),
        EAGAIN
    );
    // A write without a destination.
    assert_eq!(
        call(&mut p, &mut m, nr::WRITE, &[c as u64, buf + 64, 4]),
        -89
    );
    // Connected UDP: write works.
    assert_eq!(call(&mut p, &mut m, nr::CONNECT, &[c as u64, buf, 16]), 0);
    assert_eq!(call(&mut p, &mut m, nr::WRITE, &[c as u64, buf + 64, 4]), 4);
    assert_eq!(
        call(&mut p, &mut m, nr::READ, &[s as u64, buf + 700, 100]),
        4
    );
}

#[test]
fn errors_as_linux_reports_them() {
    let (mut p, mut m, buf) = setup();
    assert_eq!(call(&mut p, &mut m, nr::SOCKET, &[10, 1, 0]), -97);
    assert_eq!(call(&mut p, &mut m, nr::SOCKET, &[2, 3, 0]), -94);
    assert_eq!(call(&mut p, &mut m, nr::SOCKET, &[2, 1, 17]), -93);
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[1, buf, 16]), -88);
    assert_eq!(call(&mut p, &mut m, nr::LISTEN, &[77, 1]), -9);
    let s = tcp(&mut p, &mut m, SOCK_CLOEXEC);
    assert_eq!(
        call(&mut p, &mut m, nr::GETPEERNAME, &[s as u64, buf, buf + 32]),
        -107
    );
    assert_eq!(call(&mut p, &mut m, nr::READ, &[s as u64, buf, 10]), -107);
    assert_eq!(
        call(
            &mut p,
            &mut m,
            nr::SENDTO,
            &[s as u64, buf, 1, 0x4000, 0, 0]
        ),
        -32
    );
    addr(&mut p, &mut m, buf, [192, 0, 2, 1], 80);
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[s as u64, buf, 8]), -22);
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[s as u64, buf, 16]), -99);
    assert_eq!(
        call(&mut p, &mut m, nr::CONNECT, &[s as u64, buf, 16]),
        -101
    );
    assert_eq!(
        call(&mut p, &mut m, nr::SETSOCKOPT, &[s as u64, 1, 999, buf, 4]),
        -92
    );
    // Options read back.
    poke(&mut p, &mut m, buf, &1u32.to_le_bytes());
    assert_eq!(
        call(&mut p, &mut m, nr::SETSOCKOPT, &[s as u64, 1, 2, buf, 4]),
        0
    );
    assert_eq!(
        call(&mut p, &mut m, nr::SETSOCKOPT, &[s as u64, 6, 1, buf, 4]),
        0
    );
    poke(&mut p, &mut m, buf + 8, &4u32.to_le_bytes());
    assert_eq!(
        call(
            &mut p,
            &mut m,
            nr::GETSOCKOPT,
            &[s as u64, 6, 1, buf + 16, buf + 8]
        ),
        0
    );
    assert_eq!(peek(&mut p, &mut m, buf + 16, 4), 1u32.to_le_bytes());
    assert_eq!(
        call(
            &mut p,
            &mut m,
            nr::GETSOCKOPT,
            &[s as u64, 1, 3, buf + 16, buf + 8]
        ),
        0
    );
    assert_eq!(peek(&mut p, &mut m, buf + 16, 4), 1u32.to_le_bytes());
    // fstat says socket.
    assert_eq!(call(&mut p, &mut m, nr::FSTAT, &[s as u64, buf + 512]), 0);
    let mode = u32::from_le_bytes(peek(&mut p, &mut m, buf + 512 + 24, 4).try_into().unwrap());
    assert_eq!(mode & 0o170000, 0o140000);
}

#[test]
fn broken_connections() {
    let (mut p, mut m, buf) = setup();
    // Writing after shutdown(SHUT_WR): EPIPE, and SIGPIPE without MSG_NOSIGNAL.
    let (_l, c, a) = connected_pair(&mut p, &mut m, buf, 8090);
    assert_eq!(call(&mut p, &mut m, nr::SHUTDOWN, &[c as u64, 1]), 0);
    assert_eq!(
        call(&mut p, &mut m, nr::READ, &[a as u64, buf + 512, 10]),
        0
    );
    assert_eq!(
        call(
            &mut p,
            &mut m,
            nr::SENDTO,
            &[c as u64, buf, 1, 0x4000, 0, 0]
        ),
        -32
    );
    assert_eq!(
        outcome(&mut p, &mut m, nr::WRITE, &[c as u64, buf, 1]),
        Outcome::Killed(13)
    );
    // Closing with unread data resets the connection: the peer sees ECONNRESET.
    let (mut p, mut m, buf) = setup();
    let (_l, c, a) = connected_pair(&mut p, &mut m, buf, 8091);
    poke(&mut p, &mut m, buf, b"unread");
    assert_eq!(call(&mut p, &mut m, nr::WRITE, &[a as u64, buf, 6]), 6);
    assert_eq!(call(&mut p, &mut m, nr::CLOSE, &[c as u64]), 0);
    assert_eq!(call(&mut p, &mut m, nr::READ, &[a as u64, buf, 10]), -104);
    assert_eq!(call(&mut p, &mut m, nr::READ, &[a as u64, buf, 10]), 0);
}

#[test]
fn poll_reports_socket_readiness() {
    let (mut p, mut m, buf) = setup();
    let (l, c, a) = connected_pair(&mut p, &mut m, buf, 8095);
    let file = p.files.get(a).unwrap();
    assert_eq!(file.poll(0x1 | 0x4), 0x4);
    poke(&mut p, &mut m, buf, b"x");
    assert_eq!(call(&mut p, &mut m, nr::WRITE, &[c as u64, buf, 1]), 1);
    assert_eq!(file.poll(0x1), 0x1);
    let lf = p.files.get(l).unwrap();
    assert_eq!(lf.poll(0x1), 0);
    let c2 = tcp(&mut p, &mut m, 0);
    addr(&mut p, &mut m, buf, [127, 0, 0, 1], 8095);
    assert_eq!(call(&mut p, &mut m, nr::CONNECT, &[c2 as u64, buf, 16]), 0);
    assert_eq!(lf.poll(0x1), 0x1);
    assert!(call(&mut p, &mut m, nr::ACCEPT, &[l as u64, 0, 0]) > 0);
    assert_eq!(lf.poll(0x1), 0);
    // The wake-up reaches the listener's waiters.
    m.waiting.push(Channel::Object(lf.waitable().unwrap().id()));
    let c3 = tcp(&mut p, &mut m, 0);
    assert_eq!(call(&mut p, &mut m, nr::CONNECT, &[c3 as u64, buf, 16]), 0);
    assert!(m.waiting.is_empty());
}

#[test]
fn socket_buffers_are_enomem_when_memory_is_low() {
    let (mut p, mut m, buf) = setup();
    let l = tcp(&mut p, &mut m, 0);
    addr(&mut p, &mut m, buf, [127, 0, 0, 1], 7070);
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[l as u64, buf, 16]), 0);
    m.pages.out_of_frames = true;
    assert_eq!(call(&mut p, &mut m, nr::LISTEN, &[l as u64, 16]), -12);
    let c = tcp(&mut p, &mut m, 0);
    assert_eq!(call(&mut p, &mut m, nr::CONNECT, &[c as u64, buf, 16]), -12);
    let u = udp(&mut p, &mut m);
    addr(&mut p, &mut m, buf, [127, 0, 0, 1], 7071);
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[u as u64, buf, 16]), -12);
    // Memory back: the same calls work.
    m.pages.out_of_frames = false;
    assert_eq!(call(&mut p, &mut m, nr::LISTEN, &[l as u64, 16]), 0);
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[u as u64, buf, 16]), 0);
}

/// `SO_ERROR` of socket `fd` (0: none).
fn so_error(p: &mut Process, m: &mut FakeMachine, fd: i32, buf: u64) -> u32 {
    poke(p, m, buf, &4u32.to_le_bytes());
    assert_eq!(
        call(p, m, nr::GETSOCKOPT, &[fd as u64, 1, 4, buf + 4, buf]),
        0
    );
    u32::from_le_bytes(peek(p, m, buf + 4, 4).try_into().unwrap())
}

/// Accepts on the non-blocking listener `l` until `EAGAIN`; returns how many came.
fn accept_all(p: &mut Process, m: &mut FakeMachine, l: i32) -> usize {
    let mut n = 0;
    loop {
        let a = call(p, m, nr::ACCEPT4, &[l as u64, 0, 0, 0]);
        if a == EAGAIN {
            return n;
        }
        assert!(a > 0, "accept4: {a}");
        n += 1;
    }
}

#[test]
fn a_burst_of_connections_waits_in_the_backlog() {
    let (mut p, mut m, buf) = setup();
    let l = tcp(&mut p, &mut m, SOCK_NONBLOCK);
    addr(&mut p, &mut m, buf, [127, 0, 0, 1], 7100);
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[l as u64, buf, 16]), 0);
    // A negative backlog means the largest (somaxconn), as on Linux.
    assert_eq!(
        call(&mut p, &mut m, nr::LISTEN, &[l as u64, -1i64 as u64]),
        0
    );
    let mut clients = Vec::new();
    for _ in 0..100 {
        let c = tcp(&mut p, &mut m, SOCK_NONBLOCK);
        let r = call(&mut p, &mut m, nr::CONNECT, &[c as u64, buf, 16]);
        assert!(r == 0 || r == -115, "connect: {r}");
        clients.push(c);
    }
    // Every one of them was queued (none refused), and accept takes them all.
    assert_eq!(accept_all(&mut p, &mut m, l), 100);
    for c in clients {
        assert_eq!(so_error(&mut p, &mut m, c, buf + 64), 0);
    }
}

#[test]
fn connections_beyond_the_queue_wait_for_a_syn_retransmission() {
    let (mut p, mut m, buf) = setup();
    let l = tcp(&mut p, &mut m, SOCK_NONBLOCK);
    addr(&mut p, &mut m, buf, [127, 0, 0, 1], 7200);
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[l as u64, buf, 16]), 0);
    assert_eq!(call(&mut p, &mut m, nr::LISTEN, &[l as u64, 2]), 0);
    let mut clients = Vec::new();
    for _ in 0..300 {
        let c = tcp(&mut p, &mut m, SOCK_NONBLOCK);
        let r = call(&mut p, &mut m, nr::CONNECT, &[c as u64, buf, 16]);
        assert!(r == 0 || r == -115, "connect: {r}");
        clients.push(c);
    }
    // Backlog 2, but the queue of connections being made or waiting for accept holds
    // 256: that many are made at once; the SYNs of the others were dropped, not refused.
    let first = accept_all(&mut p, &mut m, l);
    assert_eq!(first, 256);
    for &c in &clients {
        assert_eq!(so_error(&mut p, &mut m, c, buf + 64), 0);
    }
    // Their SYNs are sent again and find room.
    let mut total = first;
    for _ in 0..8 {
        m.now += 5_000_000_000;
        total += accept_all(&mut p, &mut m, l);
        if total == clients.len() {
            break;
        }
    }
    assert_eq!(total, clients.len());
    for &c in &clients {
        assert_eq!(so_error(&mut p, &mut m, c, buf + 64), 0);
    }
}

/// The text of `/proc/net/NAME`, read through the system calls.
fn proc_net(p: &mut Process, m: &mut FakeMachine, buf: u64, name: &str) -> alloc::string::String {
    let path = alloc::format!("/proc/net/{name}\0");
    poke(p, m, buf, path.as_bytes());
    let fd = call(p, m, nr::OPENAT, &[-100i64 as u64, buf, 0, 0]);
    assert!(fd >= 0, "open {path}: {fd}");
    let n = call(p, m, nr::READ, &[fd as u64, buf, 4096]);
    assert!(n >= 0, "read {path}: {n}");
    call(p, m, nr::CLOSE, &[fd as u64]);
    alloc::string::String::from_utf8(peek(p, m, buf, n as usize)).unwrap()
}

#[test]
fn proc_net_tcp_and_udp_list_the_sockets_as_netstat_reads_them() {
    let (mut p, mut m, buf) = setup();
    let (l, c, a) = connected_pair(&mut p, &mut m, buf + 1024, 8080);
    // A second client, connected but not accepted yet.
    let w = tcp(&mut p, &mut m, 0);
    addr(&mut p, &mut m, buf + 1024, [127, 0, 0, 1], 8080);
    assert_eq!(
        call(&mut p, &mut m, nr::CONNECT, &[w as u64, buf + 1024, 16]),
        0
    );
    assert_eq!(call(&mut p, &mut m, nr::WRITE, &[c as u64, buf, 5]), 5);
    let u = udp(&mut p, &mut m);
    addr(&mut p, &mut m, buf + 1024, [0, 0, 0, 0], 5353);
    assert_eq!(
        call(&mut p, &mut m, nr::BIND, &[u as u64, buf + 1024, 16]),
        0
    );
    let ino = |p: &mut Process, fd: i32| p.files.get(fd).unwrap().stat().ino;
    let (li, ci, ai, wi, ui) = (
        ino(&mut p, l),
        ino(&mut p, c),
        ino(&mut p, a),
        ino(&mut p, w),
        ino(&mut p, u),
    );

    let text = proc_net(&mut p, &mut m, buf, "tcp");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("  sl  local_address rem_address   st tx_queue rx_queue"));
    let row = |local: &str, st: &str| {
        lines[1..]
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f[1] == local && f[3] == st)
            .unwrap_or_else(|| panic!("no {local} {st} in {text}"))
    };
    // The listener: backlog and one connection waiting; 127.0.0.1 is 0100007F, 8080 1F90.
    let listen = row("0100007F:1F90", "0A");
    assert_eq!(listen[2], "00000000:0000");
    assert_eq!(listen[4], "00000080:00000001", "{text}");
    assert_eq!(listen[9], alloc::format!("{li}"));
    // The accepted connection has 5 bytes to read; the client's side of it has them sent.
    let accepted = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f[9] == alloc::format!("{ai}"))
        .unwrap();
    assert_eq!((accepted[1], accepted[3]), ("0100007F:1F90", "01"));
    assert_eq!(accepted[4], "00000000:00000005", "{text}");
    assert!(text.contains(&alloc::format!(" {ci} 1 ")), "{text}");
    // The waiting connection: established, no socket yet (inode 0); its client's has one.
    let waiting: Vec<_> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f[1] == "0100007F:1F90" && f[3] == "01" && f[9] == "0")
        .collect();
    assert_eq!(waiting.len(), 1, "{text}");
    assert!(text.contains(&alloc::format!(" {wi} 1 ")), "{text}");
    assert_eq!(lines.len(), 1 + 5, "{text}");

    let text = proc_net(&mut p, &mut m, buf, "udp");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let f: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!((f[1], f[2], f[3]), ("00000000:14E9", "00000000:0000", "07"));
    assert_eq!(f[9], alloc::format!("{ui}"));
    // IPv4 only: the IPv6 tables have their header alone.
    assert_eq!(proc_net(&mut p, &mut m, buf, "tcp6").lines().count(), 1);
    assert_eq!(proc_net(&mut p, &mut m, buf, "udp6").lines().count(), 1);
}

fn setsockopt_int(
    p: &mut Process,
    m: &mut FakeMachine,
    fd: i32,
    buf: u64,
    level: u64,
    name: u64,
    v: i32,
) -> i64 {
    poke(p, m, buf, &v.to_le_bytes());
    call(p, m, nr::SETSOCKOPT, &[fd as u64, level, name, buf, 4])
}

fn getsockopt_int(
    p: &mut Process,
    m: &mut FakeMachine,
    fd: i32,
    buf: u64,
    level: u64,
    name: u64,
) -> i32 {
    poke(p, m, buf + 8, &4u32.to_le_bytes());
    assert_eq!(
        call(
            p,
            m,
            nr::GETSOCKOPT,
            &[fd as u64, level, name, buf, buf + 8]
        ),
        0
    );
    i32::from_le_bytes(peek(p, m, buf, 4).try_into().unwrap())
}

#[test]
fn ip_options_glibc_and_dns_servers_set_are_kept() {
    let (mut p, mut m, buf) = setup();
    let s = udp(&mut p, &mut m);
    let o = buf + 900;
    // glibc's resolver gives up on a server when IP_RECVERR fails.
    assert_eq!(
        setsockopt_int(&mut p, &mut m, s, o, IPPROTO_IP, IP_RECVERR, 1),
        0
    );
    assert_eq!(
        getsockopt_int(&mut p, &mut m, s, o, IPPROTO_IP, IP_RECVERR),
        1
    );
    assert_eq!(
        getsockopt_int(&mut p, &mut m, s, o, IPPROTO_IP, IP_MTU_DISCOVER),
        1
    );
    assert_eq!(
        setsockopt_int(&mut p, &mut m, s, o, IPPROTO_IP, IP_MTU_DISCOVER, 5),
        0
    );
    assert_eq!(
        getsockopt_int(&mut p, &mut m, s, o, IPPROTO_IP, IP_MTU_DISCOVER),
        5
    );
    assert_eq!(
        setsockopt_int(&mut p, &mut m, s, o, IPPROTO_IP, IP_MTU_DISCOVER, 9),
        -22
    );
    assert_eq!(
        setsockopt_int(&mut p, &mut m, s, o, IPPROTO_IP, IP_TTL, 300),
        -22
    );
    assert_eq!(
        setsockopt_int(&mut p, &mut m, s, o, IPPROTO_IP, IP_TTL, 7),
        0
    );
    assert_eq!(getsockopt_int(&mut p, &mut m, s, o, IPPROTO_IP, IP_TTL), 7);
    assert_eq!(
        setsockopt_int(&mut p, &mut m, s, o, IPPROTO_IP, IP_TTL, -1),
        0
    );
    assert_eq!(getsockopt_int(&mut p, &mut m, s, o, IPPROTO_IP, IP_TTL), 64);
    assert_eq!(
        setsockopt_int(&mut p, &mut m, s, o, IPPROTO_IP, IP_TOS, 0x10),
        0
    );
    assert_eq!(
        getsockopt_int(&mut p, &mut m, s, o, IPPROTO_IP, IP_TOS),
        0x10
    );
    // IP_PKTINFO: recvmsg says where each datagram was sent.
    assert_eq!(
        setsockopt_int(&mut p, &mut m, s, o, IPPROTO_IP, IP_PKTINFO, 1),
        0
    );
    addr(&mut p, &mut m, buf, [0, 0, 0, 0], 5354);
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[s as u64, buf, 16]), 0);
    let c = udp(&mut p, &mut m);
    addr(&mut p, &mut m, buf, [127, 0, 0, 1], 5354);
    poke(&mut p, &mut m, buf + 64, b"query");
    assert_eq!(
        call(
            &mut p,
            &mut m,
            nr::SENDTO,
            &[c as u64, buf + 64, 5, 0, buf, 16]
        ),
        5
    );
    // FIONREAD on UDP: the next datagram's length.
    assert_eq!(call(&mut p, &mut m, nr::IOCTL, &[s as u64, 0x541b, o]), 0);
    assert_eq!(peek(&mut p, &mut m, o, 4), 5u32.to_le_bytes());
    // recvmsg with `room` bytes for control data: (msg_controllen, msg_flags).
    let recv = |p: &mut Process, m: &mut FakeMachine, room: u64| {
        msghdr(p, m, buf + 300, (0, 0), (buf + 700, 100), (buf + 500, room));
        assert_eq!(call(p, m, nr::RECVMSG, &[s as u64, buf + 300, 0]), 5);
        let h = peek(p, m, buf + 300, 56);
        (
            u64::from_le_bytes(h[40..48].try_into().unwrap()),
            u32::from_le_bytes(h[48..52].try_into().unwrap()),
        )
    };
    // IP_RECVERR's error queue stays empty (no ICMP errors reach sockets): EAGAIN at
    // once, with a datagram waiting in the data queue that must stay there.
    let errqueue = [s as u64, buf + 600, 100, MSG_ERRQUEUE, 0, 0];
    assert_eq!(call(&mut p, &mut m, nr::RECVFROM, &errqueue), EAGAIN);
    msghdr(
        &mut p,
        &mut m,
        buf + 300,
        (0, 0),
        (buf + 700, 100),
        (buf + 500, 64),
    );
    let errqueue = [s as u64, buf + 300, MSG_ERRQUEUE];
    assert_eq!(call(&mut p, &mut m, nr::RECVMSG, &errqueue), EAGAIN);
    assert_eq!(recv(&mut p, &mut m, 64), (32, 0));
    let cmsg = peek(&mut p, &mut m, buf + 500, 28);
    assert_eq!(cmsg[..8], 28u64.to_le_bytes());
    assert_eq!(cmsg[8..16], [0, 0, 0, 0, 8, 0, 0, 0]);
    assert_eq!(cmsg[16..20], 1i32.to_le_bytes(), "lo's index");
    assert_eq!(cmsg[24..28], [127, 0, 0, 1]);
    // Too little room: MSG_CTRUNC, no control data.
    let again = [c as u64, buf + 64, 5, 0, buf, 16];
    assert_eq!(call(&mut p, &mut m, nr::SENDTO, &again), 5);
    assert_eq!(recv(&mut p, &mut m, 8), (0, MSG_CTRUNC));
    // A connected UDP socket bound to any address names its source address.
    assert_eq!(call(&mut p, &mut m, nr::CONNECT, &[c as u64, buf, 16]), 0);
    poke(&mut p, &mut m, buf + 200, &16u32.to_le_bytes());
    assert_eq!(
        call(
            &mut p,
            &mut m,
            nr::GETSOCKNAME,
            &[c as u64, buf + 256, buf + 200]
        ),
        0
    );
    assert_eq!(peek(&mut p, &mut m, buf + 260, 4), [127, 0, 0, 1]);
}

#[test]
fn fionread_and_siocoutq_on_tcp() {
    let (mut p, mut m, buf) = setup();
    let (l, c, a) = connected_pair(&mut p, &mut m, buf, 8081);
    let o = buf + 900;
    // A listener has no queue to tell (EINVAL, as Linux).
    assert_eq!(call(&mut p, &mut m, nr::IOCTL, &[l as u64, 0x541b, o]), -22);
    assert_eq!(call(&mut p, &mut m, nr::IOCTL, &[a as u64, 0x541b, o]), 0);
    assert_eq!(peek(&mut p, &mut m, o, 4), 0u32.to_le_bytes());
    poke(&mut p, &mut m, buf + 64, b"hello");
    assert_eq!(call(&mut p, &mut m, nr::WRITE, &[c as u64, buf + 64, 5]), 5);
    // Sent, not yet acknowledged: in the sender's SIOCOUTQ until the stack runs.
    assert_eq!(call(&mut p, &mut m, nr::IOCTL, &[c as u64, 0x5411, o]), 0);
    let outq = u32::from_le_bytes(peek(&mut p, &mut m, o, 4).try_into().unwrap());
    assert!(outq <= 5);
    let mut readable = 0;
    for _ in 0..50 {
        m.now += 1_000_000;
        p.net.poll(&mut m);
        assert_eq!(call(&mut p, &mut m, nr::IOCTL, &[a as u64, 0x541b, o]), 0);
        readable = u32::from_le_bytes(peek(&mut p, &mut m, o, 4).try_into().unwrap());
        if readable == 5 {
            break;
        }
    }
    assert_eq!(readable, 5);
    // The (delayed) acknowledgement goes out.
    for _ in 0..50 {
        m.now += 1_000_000;
        p.net.poll(&mut m);
    }
    assert_eq!(call(&mut p, &mut m, nr::IOCTL, &[c as u64, 0x5411, o]), 0);
    assert_eq!(
        peek(&mut p, &mut m, o, 4),
        0u32.to_le_bytes(),
        "acknowledged"
    );
}

#[test]
fn udp_datagrams_larger_than_a_frame_go_in_fragments() {
    let (mut p, mut m, buf) = setup();
    let s = udp(&mut p, &mut m);
    addr(&mut p, &mut m, buf, [127, 0, 0, 1], 5355);
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[s as u64, buf, 16]), 0);
    let c = udp(&mut p, &mut m);
    let big: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let data = buf + 0x1000;
    poke(&mut p, &mut m, data, &big);
    let send = |p: &mut Process, m: &mut FakeMachine, len: u64| {
        call(p, m, nr::SENDTO, &[c as u64, data, len, 0, buf, 16])
    };
    assert_eq!(send(&mut p, &mut m, 5000), 5000);
    let mut got = EAGAIN;
    for _ in 0..20 {
        m.now += 1_000_000;
        p.net.poll(&mut m);
        let r = call(
            &mut p,
            &mut m,
            nr::RECVFROM,
            &[s as u64, buf + 0x2400, 6000, MSG_DONTWAIT, 0, 0],
        );
        if r != EAGAIN {
            got = r;
            break;
        }
    }
    assert_eq!(got, 5000, "the reassembled datagram");
    assert_eq!(peek(&mut p, &mut m, buf + 0x2400, 5000), big);
    // The largest datagram IPv4 carries, 65,507 bytes, as on Linux; past it EMSGSIZE.
    let len = 65_507u64;
    let area = call(
        &mut p,
        &mut m,
        nr::MMAP,
        &[0, 2 * 65_536, 3, 0x22, u64::MAX, 0],
    );
    assert!(area > 0, "mmap: {area}");
    let (out, back) = (area as u64, area as u64 + 65_536);
    let huge: Vec<u8> = (0..len as u32).map(|i| (i % 253) as u8).collect();
    poke(&mut p, &mut m, out, &huge);
    let sent = call(
        &mut p,
        &mut m,
        nr::SENDTO,
        &[c as u64, out, len, 0, buf, 16],
    );
    assert_eq!(sent, len as i64);
    let mut got = EAGAIN;
    for _ in 0..50 {
        m.now += 1_000_000;
        p.net.poll(&mut m);
        let args = [s as u64, back, 65_536, MSG_DONTWAIT, 0, 0];
        got = call(&mut p, &mut m, nr::RECVFROM, &args);
        if got != EAGAIN {
            break;
        }
    }
    assert_eq!(got, len as i64, "the reassembled 64 KiB datagram");
    assert!(peek(&mut p, &mut m, back, len as usize) == huge);
    let past = [c as u64, out, len + 1, 0, buf, 16];
    assert_eq!(call(&mut p, &mut m, nr::SENDTO, &past), -90);
}

#[test]
fn hundreds_of_connections_keep_working_as_the_socket_sets_grow() {
    // The stack sizes smoltcp's socket sets itself and rebuilds them bigger (8, 16, ...
    // 512 sockets), moving every socket: each connection must still reach its peer.
    let (mut p, mut m, buf) = setup();
    let l = tcp(&mut p, &mut m, 0);
    addr(&mut p, &mut m, buf, [127, 0, 0, 1], 7300);
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[l as u64, buf, 16]), 0);
    assert_eq!(call(&mut p, &mut m, nr::LISTEN, &[l as u64, 512]), 0);
    let mut pairs = Vec::new();
    for _ in 0..150 {
        let c = tcp(&mut p, &mut m, 0);
        addr(&mut p, &mut m, buf, [127, 0, 0, 1], 7300);
        assert_eq!(call(&mut p, &mut m, nr::CONNECT, &[c as u64, buf, 16]), 0);
        let a = call(&mut p, &mut m, nr::ACCEPT4, &[l as u64, 0, 0, 0]);
        assert!(a > 0, "accept4: {a}");
        pairs.push((c, a));
    }
    for (i, &(c, a)) in pairs.iter().enumerate() {
        let msg = alloc::format!("message {i}");
        poke(&mut p, &mut m, buf, msg.as_bytes());
        let n = msg.len() as u64;
        assert_eq!(
            call(&mut p, &mut m, nr::WRITE, &[c as u64, buf, n]),
            n as i64
        );
        assert_eq!(
            call(&mut p, &mut m, nr::READ, &[a as u64, buf + 256, 64]),
            n as i64
        );
        assert_eq!(peek(&mut p, &mut m, buf + 256, n as usize), msg.as_bytes());
    }
}

#[test]
fn new_sockets_need_memory_beyond_the_kernels_reserve() {
    let (mut p, mut m, buf) = setup();
    let l = tcp(&mut p, &mut m, SOCK_NONBLOCK);
    addr(&mut p, &mut m, buf, [127, 0, 0, 1], 7200);
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[l as u64, buf, 16]), 0);
    assert_eq!(call(&mut p, &mut m, nr::LISTEN, &[l as u64, 64]), 0);
    // Memory down to the reserve: a connection's buffers cannot be made.
    m.pages.out_of_frames = true;
    let c = tcp(&mut p, &mut m, SOCK_NONBLOCK);
    assert_eq!(call(&mut p, &mut m, nr::CONNECT, &[c as u64, buf, 16]), -12);
    // Memory again: connections are made, on both ends.
    m.pages.out_of_frames = false;
    for _ in 0..crate::net::IDLE_LISTENERS + 3 {
        let c = tcp(&mut p, &mut m, SOCK_NONBLOCK);
        // EINPROGRESS, as from Linux, though the handshake is over on loopback.
        let r = call(&mut p, &mut m, nr::CONNECT, &[c as u64, buf, 16]);
        assert_eq!(r, -115, "connect");
    }
    assert_eq!(
        accept_all(&mut p, &mut m, l),
        crate::net::IDLE_LISTENERS + 3
    );
}

/// Writes a `struct mmsghdr` at `at`: no name unless `name` is non-zero, one iovec (at
/// `iov`) over `data`/`len`.
fn mmsghdr(
    p: &mut Process,
    m: &mut FakeMachine,
    at: u64,
    name: u64,
    iov: u64,
    data: u64,
    len: u64,
) {
    let mut msg = [0u8; 64];
    msg[..8].copy_from_slice(&name.to_le_bytes());
    msg[8..12].copy_from_slice(&(if name != 0 { 16u32 } else { 0 }).to_le_bytes());
    msg[16..24].copy_from_slice(&iov.to_le_bytes());
    msg[24..32].copy_from_slice(&1u64.to_le_bytes());
    poke(p, m, at, &msg);
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&data.to_le_bytes());
    v[8..].copy_from_slice(&len.to_le_bytes());
    poke(p, m, iov, &v);
}

#[test]
fn sendmmsg_and_recvmmsg_move_several_datagrams_in_one_call() {
    let (mut p, mut m, buf) = setup();
    let s = udp(&mut p, &mut m);
    addr(&mut p, &mut m, buf, [127, 0, 0, 1], 5354);
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[s as u64, buf, 16]), 0);
    let c = udp(&mut p, &mut m);
    // Two questions in one call, as glibc's resolver sends A and AAAA.
    poke(&mut p, &mut m, buf + 3000, b"one");
    poke(&mut p, &mut m, buf + 3100, b"three");
    mmsghdr(&mut p, &mut m, buf + 1000, buf, buf + 2000, buf + 3000, 3);
    mmsghdr(&mut p, &mut m, buf + 1064, buf, buf + 2016, buf + 3100, 5);
    assert_eq!(
        call(&mut p, &mut m, nr::SENDMMSG, &[c as u64, buf + 1000, 2, 0]),
        2
    );
    assert_eq!(peek(&mut p, &mut m, buf + 1000 + 56, 4), 3u32.to_le_bytes());
    assert_eq!(peek(&mut p, &mut m, buf + 1064 + 56, 4), 5u32.to_le_bytes());
    // Both arrive in one recvmmsg with room for three; the third slot is left alone.
    for i in 0..3 {
        mmsghdr(
            &mut p,
            &mut m,
            buf + 1200 + i * 64,
            0,
            buf + 2100 + i * 16,
            buf + 3200 + i * 100,
            100,
        );
    }
    assert_eq!(
        call(
            &mut p,
            &mut m,
            nr::RECVMMSG,
            &[s as u64, buf + 1200, 3, MSG_DONTWAIT, 0]
        ),
        2
    );
    assert_eq!(peek(&mut p, &mut m, buf + 3200, 3), b"one");
    assert_eq!(peek(&mut p, &mut m, buf + 3300, 5), b"three");
    assert_eq!(peek(&mut p, &mut m, buf + 1264 + 56, 4), 5u32.to_le_bytes());
    // Nothing queued: the first message's error.
    assert_eq!(
        call(
            &mut p,
            &mut m,
            nr::RECVMMSG,
            &[s as u64, buf + 1200, 3, MSG_DONTWAIT, 0]
        ),
        EAGAIN
    );
    // An empty vector sends nothing.
    assert_eq!(
        call(&mut p, &mut m, nr::SENDMMSG, &[c as u64, buf + 1000, 0, 0]),
        0
    );
}

#[test]
fn tcp_options_servers_and_clients_set_read_back_and_tcp_info_gives_the_state() {
    let (mut p, mut m, buf) = setup();
    let (c, srv, _l) = connected_pair(&mut p, &mut m, buf, 7300);
    let o = buf + 900;
    // dig aborts when TCP_USER_TIMEOUT fails; the rest are set by servers and clients.
    for (level, name, v) in [
        (IPPROTO_TCP, TCP_USER_TIMEOUT, 5000),
        (IPPROTO_TCP, TCP_QUICKACK, 1),
        (IPPROTO_TCP, TCP_CORK, 1),
        (IPPROTO_TCP, TCP_DEFER_ACCEPT, 30),
        (IPPROTO_TCP, TCP_FASTOPEN, 16),
        (IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1),
        (SOL_SOCKET, SO_PRIORITY, 6),
        (IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1),
    ] {
        assert_eq!(
            setsockopt_int(&mut p, &mut m, c, o, level, name, v),
            0,
            "{name}"
        );
        assert_eq!(
            getsockopt_int(&mut p, &mut m, c, o, level, name),
            v,
            "{name}"
        );
    }
    // TCP_CONGESTION: a name; unknown ones are ENOENT.
    poke(&mut p, &mut m, o, b"reno\0");
    assert_eq!(
        call(
            &mut p,
            &mut m,
            nr::SETSOCKOPT,
            &[c as u64, IPPROTO_TCP, TCP_CONGESTION, o, 5]
        ),
        0
    );
    poke(&mut p, &mut m, o + 64, &16u32.to_le_bytes());
    assert_eq!(
        call(
            &mut p,
            &mut m,
            nr::GETSOCKOPT,
            &[c as u64, IPPROTO_TCP, TCP_CONGESTION, o, o + 64]
        ),
        0
    );
    assert_eq!(peek(&mut p, &mut m, o, 5), b"reno\0");
    poke(&mut p, &mut m, o, b"bbr9\0");
    assert_eq!(
        call(
            &mut p,
            &mut m,
            nr::SETSOCKOPT,
            &[c as u64, IPPROTO_TCP, TCP_CONGESTION, o, 5]
        ),
        -2
    );
    // TCP_INFO: the state (TCP_ESTABLISHED) and the receive space.
    poke(&mut p, &mut m, o + 300, &232u32.to_le_bytes());
    assert_eq!(
        call(
            &mut p,
            &mut m,
            nr::GETSOCKOPT,
            &[srv as u64, IPPROTO_TCP, TCP_INFO, o, o + 300]
        ),
        0
    );
    assert_eq!(peek(&mut p, &mut m, o + 300, 4), 232u32.to_le_bytes());
    let info = peek(&mut p, &mut m, o, 232);
    assert_eq!(info[0], 1);
    assert_eq!(
        u32::from_le_bytes(info[92..96].try_into().unwrap()),
        64 * 1024
    );
    // Not on a UDP socket.
    let u = udp(&mut p, &mut m);
    assert_eq!(
        setsockopt_int(&mut p, &mut m, u, o, IPPROTO_TCP, TCP_USER_TIMEOUT, 1),
        -92
    );
}

#[test]
fn reads_on_sockets_keep_to_so_rcvtimeo() {
    let (mut p, mut m, buf) = setup();
    let (_l, _c, a) = connected_pair(&mut p, &mut m, buf, 8094);
    // A unix stream pair too.
    assert_eq!(
        call(
            &mut p,
            &mut m,
            nr::SOCKETPAIR,
            &[1, SOCK_STREAM, 0, buf + 512]
        ),
        0
    );
    let u = i32::from_le_bytes(peek(&mut p, &mut m, buf + 512, 4).try_into().unwrap());
    for fd in [a, u] {
        // No timeout: a read with nothing to read waits as long as it takes (and where
        // only this lone thread could end the wait, the unix pair's, it is EDEADLK).
        match outcome(&mut p, &mut m, nr::READ, &[fd as u64, buf + 1024, 16]) {
            Outcome::Block(w) => assert_eq!((fd, w.deadline), (a, None)),
            Outcome::Return(-35) => assert_eq!(fd, u),
            other => panic!("fd {fd}: {other:?}"),
        }
        // SO_RCVTIMEO of 1.5 s: the wait ends then with EAGAIN; readv likewise.
        let mut tv = [0u8; 16];
        tv[..8].copy_from_slice(&1u64.to_le_bytes());
        tv[8..].copy_from_slice(&500_000u64.to_le_bytes());
        poke(&mut p, &mut m, buf + 2048, &tv);
        let opt = [fd as u64, 1, 20, buf + 2048, 16];
        assert_eq!(call(&mut p, &mut m, nr::SETSOCKOPT, &opt), 0);
        poke(&mut p, &mut m, buf + 3072, &(buf + 1024).to_le_bytes());
        poke(&mut p, &mut m, buf + 3080, &16u64.to_le_bytes());
        for (nr_, args) in [
            (nr::READ, [fd as u64, buf + 1024, 16]),
            (nr::READV, [fd as u64, buf + 3072, 1]),
        ] {
            let start = m.monotonic_ns();
            match outcome(&mut p, &mut m, nr_, &args) {
                Outcome::Block(w) => {
                    assert_eq!(w.deadline, Some(start + 1_500_000_000), "fd {fd}");
                    assert_eq!(w.on_timeout, EAGAIN);
                }
                other => panic!("fd {fd}: {other:?}"),
            }
        }
    }
}

#[test]
fn a_resumed_vectored_write_skips_what_went_before() {
    use crate::syscall::iov_after;
    let iov = [(100, 10), (200, 0), (300, 5)];
    assert_eq!(iov_after(&iov, 0), iov.to_vec());
    assert_eq!(iov_after(&iov, 4), vec![(104, 6), (200, 0), (300, 5)]);
    assert_eq!(iov_after(&iov, 10), vec![(200, 0), (300, 5)]);
    assert_eq!(iov_after(&iov, 12), vec![(302, 3)]);
    assert_eq!(iov_after(&iov, 15), vec![]);
}
