//! Load end to end: http-hello behind `run -p` under many concurrent clients. Nothing may
//! fail: no refused or reset connection, no request left unanswered, no status but 200.
//! (The long version is `cargo xtask bench soak`.)
//!
//! The clients all start at once: the runner gives QEMU's listener on the forwarded host
//! port a backlog of 1024 (libslirp listens with 1; `qemu::backlog`), so a burst of
//! connections is neither dropped nor retried. Under TCG the guest serves a few hundred
//! requests a second: with 256 clients each sending the next request as soon as the last is
//! answered, every request waits behind the others (and `accept` gets one thread's share of
//! the CPU), so answers can take seconds. What counts is that every request is answered:
//! the timeout is generous.

use kiln_tests::{build_image, free_port, kiln, scratch, Guest};
use kiln_toolchain::bench::load::{drive, LoadResult, REQUEST_TIMEOUT};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

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

/// http-hello behind `run -p`, and the host address of its port.
fn boot_http_hello() -> (Guest, SocketAddr) {
    let image = build_image("http-hello", &["--example", "http-hello"]);
    let port = free_port();
    let fwd = format!("{port}:8080");
    let g = Guest::boot(&image, &["-p", &fwd, "--memory", "256M"], "listening");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    (g, addr)
}

#[test]
fn http_hello_loses_nothing_under_load() {
    let (g, addr) = boot_http_hello();

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

#[test]
fn two_cpus_serve_hundreds_of_connections_and_step_aside_for_the_lock() {
    // With a second CPU the server's threads spend their time waiting for the kernel
    // lock; the kernel then keeps the second CPU from taking threads (`stats` says how
    // often). Nothing may fail meanwhile.
    let image = build_image("http-hello", &["--example", "http-hello"]);
    let port = free_port();
    let sock = scratch("load-cpus").join("control.sock");
    let _ = std::fs::remove_file(&sock);
    let fwd = format!("{port}:8080");
    let control = sock.to_str().unwrap();
    let args = [
        "-p",
        &fwd,
        "--memory",
        "256M",
        "--cpus",
        "2",
        "--control-socket",
        control,
    ];
    let g = Guest::boot(&image, &args, "listening");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let t = drive(addr, 256, Duration::from_secs(20), true);
    eprintln!("2 CPUs, 256 keep-alive clients, 20 s: {}", summary(&t));
    assert_eq!(t.failed(), 0, "{}", summary(&t));
    assert_eq!(t.served_clients, 256, "{}", summary(&t));

    let stats = kiln(&["stats", "--socket", control, "--json"]);
    assert_eq!(stats.status, 0, "{stats:?}");
    let j: serde_json::Value = serde_json::from_str(&stats.out()).expect("JSON");
    let cpus = &j["cpus"];
    assert_eq!(cpus["online"], 2, "{j}");
    let taken = cpus["kernel_lock_taken"].as_u64().unwrap();
    let waited = cpus["kernel_lock_waited"].as_u64().unwrap();
    assert!(taken > 1000 && waited > 0 && waited <= taken, "{j}");
    assert!(cpus["held_back"].as_u64().unwrap() >= 1, "{j}");
    drop(g);
}

/// `clients` connections made at the same moment, each sending one request: how many were
/// answered with the whole 200, and the errors of the others.
fn burst(addr: SocketAddr, clients: usize) -> (usize, Vec<String>, Duration) {
    let start = Arc::new(Barrier::new(clients));
    let t0 = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let start = start.clone();
            std::thread::spawn(move || -> Result<(), String> {
                start.wait();
                // Well inside the SYN retries (1 s, 3 s, 7 s...) of a dropped handshake.
                let limit = Duration::from_secs(20);
                let mut s = TcpStream::connect_timeout(&addr, limit).map_err(|e| e.to_string())?;
                s.set_read_timeout(Some(limit)).map_err(|e| e.to_string())?;
                s.write_all(b"GET / HTTP/1.1\r\nHost: kiln\r\nConnection: close\r\n\r\n")
                    .map_err(|e| e.to_string())?;
                let mut reply = Vec::new();
                s.read_to_end(&mut reply).map_err(|e| e.to_string())?;
                if reply.starts_with(b"HTTP/1.1 200") && reply.ends_with(b"hello from kiln\n") {
                    Ok(())
                } else {
                    Err(format!("client {i}: {}", String::from_utf8_lossy(&reply)))
                }
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let errors = results.into_iter().filter_map(Result::err).collect();
    (ok, errors, t0.elapsed())
}

/// 256 clients connecting at the same instant through `run -p` are all answered (none
/// dropped by a listen queue and left to retry), twice.
#[test]
fn a_burst_of_simultaneous_connections_is_served() {
    let (g, addr) = boot_http_hello();
    for round in 1..=2 {
        let (ok, errors, took) = burst(addr, 256);
        eprintln!("burst {round}: {ok} of 256 answered in {took:?}");
        assert_eq!(
            ok,
            256,
            "burst {round}, the first failures: {:?}",
            &errors[..errors.len().min(5)]
        );
    }
    drop(g);
}
