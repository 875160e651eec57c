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

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_tests::{build_image, kiln, root};

/// How long a request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Time between the starts of two clients.
const RAMP: Duration = Duration::from_millis(20);

/// A port that was free on the host a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A booted image running in the background, stopped when dropped.
struct Guest {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Guest {
    /// Boots `image` with `extra` run options and waits for a stdout line containing `ready`.
    fn boot(image: &std::path::Path, extra: &[&str], ready: &str) -> Guest {
        assert_eq!(kiln(&["--help"]).status, 0);
        let mut child = Command::new(root().join("target/debug/xtask"))
            .args([
                "run",
                "--image",
                image.to_str().unwrap(),
                "--timeout",
                "240",
            ])
            .args(extra)
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("xtask runs");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            let n = stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "the guest ended before printing `{ready}`");
            if line.contains(ready) {
                break;
            }
        }
        Guest { child, stdout }
    }

    fn wait(mut self) -> (i32, String) {
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        let status = self.child.wait().unwrap().code().unwrap_or(-1);
        (status, rest)
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let group = format!("-{}", self.child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = self.child.wait();
        }
    }
}

/// What the clients saw, by kind of failure.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    connect: AtomicU64,
    write: AtomicU64,
    read: AtomicU64,
    timeout: AtomicU64,
    status: AtomicU64,
    /// Clients that completed at least one request.
    served_clients: AtomicU64,
    /// The slowest completed request (ms).
    slowest_ms: AtomicU64,
}

impl Tally {
    fn failed(&self) -> u64 {
        [
            &self.connect,
            &self.write,
            &self.read,
            &self.timeout,
            &self.status,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }

    fn summary(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "{} ok; failed: connect {}, write {}, read {}, timeout {}, status {}; {} clients \
             served; slowest answer {} ms",
            g(&self.ok),
            g(&self.connect),
            g(&self.write),
            g(&self.read),
            g(&self.timeout),
            g(&self.status),
            g(&self.served_clients),
            g(&self.slowest_ms)
        )
    }
}

enum Failure {
    Write,
    Read,
    Timeout,
    Status,
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// One `GET /` on `s`; the whole response read (it must be a 200 with its body).
fn request(s: &mut TcpStream, keep_alive: bool) -> Result<(), Failure> {
    let req: &[u8] = if keep_alive {
        b"GET / HTTP/1.1\r\nHost: kiln\r\n\r\n"
    } else {
        b"GET / HTTP/1.1\r\nHost: kiln\r\nConnection: close\r\n\r\n"
    };
    s.write_all(req).map_err(|_| Failure::Write)?;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let read_err = |e: std::io::Error| {
        if is_timeout(&e) {
            Failure::Timeout
        } else {
            Failure::Read
        }
    };
    let head_end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut buf).map_err(read_err)? {
            0 => return Err(Failure::Read),
            n => got.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200 ") {
        return Err(Failure::Status);
    }
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or(Failure::Status)?;
    while got.len() < head_end + len {
        match s.read(&mut buf).map_err(read_err)? {
            0 => return Err(Failure::Read),
            n => got.extend_from_slice(&buf[..n]),
        }
    }
    if &got[head_end..head_end + len] != b"hello from kiln\n" {
        return Err(Failure::Status);
    }
    Ok(())
}

/// `clients` threads send requests to `addr` until `secs` have passed, each on one
/// connection (`keep_alive`) or a new connection per request; counts what happened.
fn drive(addr: SocketAddr, clients: usize, secs: u64, keep_alive: bool) -> Arc<Tally> {
    let tally = Arc::new(Tally::default());
    let end = Instant::now() + Duration::from_secs(secs);
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let tally = tally.clone();
            std::thread::spawn(move || {
                std::thread::sleep(RAMP * i as u32);
                let mut conn: Option<TcpStream> = None;
                let mut served = false;
                while Instant::now() < end {
                    let mut s = match conn.take() {
                        Some(s) => s,
                        None => match TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT) {
                            Ok(s) => {
                                s.set_read_timeout(Some(REQUEST_TIMEOUT)).unwrap();
                                s.set_write_timeout(Some(REQUEST_TIMEOUT)).unwrap();
                                s
                            }
                            Err(_) => {
                                tally.connect.fetch_add(1, Ordering::Relaxed);
                                std::thread::sleep(Duration::from_millis(100));
                                continue;
                            }
                        },
                    };
                    let t = Instant::now();
                    match request(&mut s, keep_alive) {
                        Ok(()) => {
                            tally.ok.fetch_add(1, Ordering::Relaxed);
                            tally
                                .slowest_ms
                                .fetch_max(t.elapsed().as_millis() as u64, Ordering::Relaxed);
                            served = true;
                            if keep_alive {
                                conn = Some(s);
                            }
                        }
                        Err(f) => {
                            let c = match f {
                                Failure::Write => &tally.write,
                                Failure::Read => &tally.read,
                                Failure::Timeout => &tally.timeout,
                                Failure::Status => &tally.status,
                            };
                            c.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                if served {
                    tally.served_clients.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    tally
}

#[test]
fn http_hello_loses_nothing_under_load() {
    let image = build_image("http-hello", &["--example", "http-hello"]);
    let port = free_port();
    let fwd = format!("{port}:8080");
    let g = Guest::boot(&image, &["-p", &fwd, "--memory", "256M"], "listening");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // 256 keep-alive connections at once: every one is accepted and served.
    let t = drive(addr, 256, 25, true);
    eprintln!("256 keep-alive clients, 25 s: {}", t.summary());
    assert_eq!(t.failed(), 0, "{}", t.summary());
    assert_eq!(
        t.served_clients.load(Ordering::Relaxed),
        256,
        "{}",
        t.summary()
    );

    // A new connection per request, closed by the server after its answer.
    let t = drive(addr, 16, 10, false);
    eprintln!(
        "16 clients, a connection per request, 10 s: {}",
        t.summary()
    );
    assert_eq!(t.failed(), 0, "{}", t.summary());
    assert!(t.ok.load(Ordering::Relaxed) > 50, "{}", t.summary());

    // Still up and well.
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
