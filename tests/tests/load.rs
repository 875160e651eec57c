//! Load end to end: http-hello behind `run -p` under many concurrent clients. Nothing may
//! fail: no refused or reset connection, no request left unanswered, no status but 200.
//! (The long version is `cargo xtask bench soak`.)
//!
//! Two things here are QEMU's user networking, not the guest: its port-forward listener on
//! the host has a listen backlog of 1, so when many connections open at once the host drops
//! SYNs and handshake ACKs and the clients retry after 1 s, 3 s, 7 s...; so the clients
//! start 20 ms apart. And under TCG the guest serves a few hundred requests a second: with
//! 256 clients each sending the next request as soon as the last is answered, every request
//! waits behind the others (and `accept` gets one thread's share of the CPU), so answers can
//! take seconds. What counts is that every request is answered: the timeout is generous.

use kiln_tests::{build_image, free_port, Guest};
use kiln_toolchain::bench::load::{drive, LoadResult, REQUEST_TIMEOUT};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// What the clients saw, in one line.
fn summary(r: &LoadResult) -> String {
    format!(
        "{} ok; failed: connect {}, write {}, read {}, timeout {}, status {}; {} clients served; slowest answer {:?}",
        r.ok,
        r.connect,
        r.write,
        r.read,
        r.timeout,
        r.status,
        r.served_clients,
        r.latencies.last().copied().unwrap_or_default()
    )
}

#[test]
fn http_hello_loses_nothing_under_load() {
    let image = build_image("http-hello", &["--example", "http-hello"]);
    let port = free_port();
    let fwd = format!("{port}:8080");
    let g = Guest::boot(&image, &["-p", &fwd, "--memory", "256M"], "listening");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // 256 keep-alive connections at once: every one is accepted and served.
    let t = drive(addr, 256, Duration::from_secs(25), true);
    eprintln!("256 keep-alive clients, 25 s: {}", summary(&t));
    assert_eq!(t.failed(), 0, "{}", summary(&t));
    assert_eq!(t.served_clients, 256, "{}", summary(&t));

    // A new connection per request, closed by the server after its answer.
    let t = drive(addr, 16, Duration::from_secs(10), false);
    eprintln!(
        "16 clients, a connection per request, 10 s: {}",
        summary(&t)
    );
    assert_eq!(t.failed(), 0, "{}", summary(&t));
    assert!(t.ok > 50, "{}", summary(&t));

    // Still up and well, and the answers are the right ones.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(REQUEST_TIMEOUT)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: kiln\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    assert!(reply.starts_with(b"HTTP/1.1 200"), "{reply:?}");
    assert!(reply.ends_with(b"\r\n\r\nhello from kiln\n"), "{reply:?}");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(REQUEST_TIMEOUT)).unwrap();
    s.write_all(b"GET /quit HTTP/1.1\r\nHost: kiln\r\n\r\n")
        .unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    assert!(reply.starts_with(b"HTTP/1.1 200"), "{reply:?}");
    let (status, _) = g.wait();
    assert_eq!(status, 0);
}
