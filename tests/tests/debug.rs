//! Debugging an image with stock host tools: `run --pcap` read back by Debian's tcpdump, and
//! `run --gdb` driven by Debian's gdb.

use kiln_tests::{build_image, curl, free_port, root, scratch, wait_for_http, xtask_bin, Guest};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn pcap_holds_the_handshake_and_the_response_for_tcpdump() {
    let image = build_image("debug-http", &["--example", "http-hello"]);
    let pcap = scratch("pcap").join("http.pcap");
    let _ = std::fs::remove_file(&pcap);
    let port = free_port();
    let fwd = format!("{port}:8080");
    let g = Guest::boot(
        &image,
        &["-p", &fwd, "--pcap", pcap.to_str().unwrap()],
        "listening",
    );
    let url = format!("http://127.0.0.1:{port}/");
    let body = wait_for_http(&url);
    assert!(body.contains("hello from kiln"), "{body}");
    let _ = curl(&format!("{url}quit"));
    assert_eq!(g.wait().0, 0);

    let out = Command::new("tcpdump")
        .args(["-r", pcap.to_str().unwrap(), "-nn", "-A", "tcp port 8080"])
        .output()
        .expect("tcpdump runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.lines()
            .any(|l| l.contains("> 10.0.2.15.8080: Flags [S]")),
        "no SYN to the forwarded port:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("10.0.2.15.8080 >") && l.contains("Flags [S.]")),
        "no SYN-ACK:\n{text}"
    );
    assert!(text.contains("HTTP/1.1 200"), "no response:\n{text}");
    assert!(text.contains("hello from kiln"), "no body:\n{text}");
}

#[test]
fn pcap_without_a_network_card_is_refused() {
    let image = build_image("debug-hello", &["--example", "c-hello"]);
    let out = Command::new(xtask_bin())
        .args(["run", "--image", image.to_str().unwrap(), "--net", "none"])
        .args(["--pcap", "/tmp/never.pcap"])
        .current_dir(root())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("--net none"), "{err}");
}

#[test]
fn gdb_breaks_in_the_program_and_shows_its_backtrace() {
    let image = build_image("debug-c-hello", &["--example", "c-hello"]);
    let port = free_port();
    let run = Command::new(xtask_bin())
        .args([
            "run",
            "--image",
            image.to_str().unwrap(),
            "--timeout",
            "240",
        ])
        .args(["--gdb", &port.to_string(), "--gdb-wait"])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The runner prints the gdb command once the stub is about to start.
    let script = root().join(format!("target/kiln/gdb/c-hello-{port}.gdb"));
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "gdb stub never listened"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let gdb = Command::new("timeout")
        .args([
            "120",
            "gdb",
            "-batch",
            "-nx",
            "-x",
            script.to_str().unwrap(),
        ])
        .args([
            "-ex",
            "break main",
            "-ex",
            "continue",
            "-ex",
            "bt",
            "-ex",
            "detach",
        ])
        .output()
        .expect("gdb runs");
    let text = String::from_utf8_lossy(&gdb.stdout);
    assert!(text.contains("Breakpoint 1, "), "{text}");
    assert!(text.contains(" in main ()"), "{text}");
    assert!(text.contains("__libc_start_main"), "backtrace:\n{text}");
    // Detached, the program runs to its end.
    let out = run.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello from C"));
    assert!(
        err.contains(&format!("gdb -x {}", script.display())),
        "{err}"
    );
}
