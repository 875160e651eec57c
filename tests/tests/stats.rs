//! `stats`: live figures from a running image over its control channel, without changing
//! the image: threads, memory, open descriptors with their sockets' addresses and states,
//! system calls and network counters, as text, JSON or Prometheus metrics.

use kiln_tests::{build_image, curl, free_port, kiln, scratch, Guest};
use std::net::TcpStream;

#[test]
fn a_running_server_shows_its_sockets_threads_and_counters() {
    let image = build_image("stats-http-hello", &["--example", "http-hello"]);
    let port = free_port();
    let sock = scratch("stats").join("control.sock");
    let _ = std::fs::remove_file(&sock);
    let fwd = format!("{port}:8080");
    let g = Guest::boot(
        &image,
        &["-p", &fwd, "--control-socket", sock.to_str().unwrap()],
        "listening",
    );
    assert!(curl(&format!("http://127.0.0.1:{port}/")).is_some());
    // Connections the server has not accepted yet show on its listening socket.
    let held: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();

    let first = kiln(&["stats", "--socket", sock.to_str().unwrap(), "--json"]);
    assert_eq!(first.status, 0, "{first:?}");
    let j: serde_json::Value = serde_json::from_str(&first.out()).expect("JSON");
    assert!(j["syscalls"].as_u64().unwrap() > 10, "{j}");
    assert!(j["network"]["rx_bytes"].as_u64().unwrap() > 0, "{j}");
    assert!(j["memory"]["used_bytes"].as_u64().unwrap() > 0, "{j}");
    assert!(!j["threads"].as_array().unwrap().is_empty(), "{j}");
    // The server's CPU time: some, in user mode and in the kernel, and no more than the
    // CPU was busy (its start-up and the request it answered).
    let (user, system) = (
        j["cpu_user_seconds"].as_f64().unwrap(),
        j["cpu_system_seconds"].as_f64().unwrap(),
    );
    assert!(user > 0.0 && system > 0.0, "{j}");
    assert!(
        user + system <= j["cpu_busy_seconds"].as_f64().unwrap(),
        "{j}"
    );
    let by_threads: f64 = j["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["user_seconds"].as_f64().unwrap() + t["system_seconds"].as_f64().unwrap())
        .sum();
    assert!(
        by_threads > 0.0 && by_threads <= user + system + 1e-6,
        "{j}"
    );
    let files = j["files"].as_array().unwrap();
    assert!(
        files.iter().any(|f| f["what"]
            .as_str()
            .unwrap()
            .starts_with("TCP 0.0.0.0:8080 LISTEN")),
        "{j}"
    );

    let text = kiln(&["stats", "--socket", sock.to_str().unwrap(), "--no-stream"]);
    assert_eq!(text.status, 0, "{text:?}");
    assert!(text.out().contains("   FD  WHAT"), "{text:?}");
    assert!(
        text.out().contains("  TID    USER  SYSTEM  STATE"),
        "{text:?}"
    );
    assert!(text.out().contains("% (program "), "{text:?}");

    let prom = kiln(&["stats", "--socket", sock.to_str().unwrap(), "--prometheus"]);
    assert_eq!(prom.status, 0, "{prom:?}");
    let calls = prom
        .out()
        .lines()
        .find(|l| l.starts_with("kiln_syscalls_total{"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .expect("a syscalls counter");
    assert!(calls >= j["syscalls"].as_u64().unwrap(), "{prom:?}");

    drop(held);
    assert!(curl(&format!("http://127.0.0.1:{port}/quit")).is_some());
    let (status, _) = g.wait();
    assert_eq!(status, 0);
}

#[test]
fn stats_without_a_running_image_is_a_clear_error() {
    let sock = scratch("stats-none").join("nothing.sock");
    let r = kiln(&["stats", "--socket", sock.to_str().unwrap()]);
    assert_ne!(r.status, 0, "{r:?}");
    assert!(
        r.stderr
            .contains("cannot reach the image's control channel"),
        "{r:?}"
    );
    assert!(r.stderr.contains("is it running?"), "{r:?}");
}
