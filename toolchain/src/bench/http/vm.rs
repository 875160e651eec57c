//! One guest under test: a QEMU process we started, and the host-side probe that times its
//! first HTTP response.

use anyhow::Context;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// A running QEMU, killed when dropped.
pub struct Vm {
    child: Child,
    /// When QEMU was started.
    pub started: Instant,
    /// The file holding QEMU's own messages.
    pub qemu_log: PathBuf,
    /// The file holding the guest's console (the kernel log).
    pub console: PathBuf,
}

impl Vm {
    /// Starts `qemu args` with stdout and stderr going to `qemu_log`; `console` is where
    /// the arguments send the guest's console.
    pub fn start(
        qemu: &Path,
        args: &[OsString],
        qemu_log: &Path,
        console: &Path,
    ) -> anyhow::Result<Vm> {
        let out = std::fs::File::create(qemu_log)
            .with_context(|| format!("could not create {}", qemu_log.display()))?;
        let err = out.try_clone()?;
        let started = Instant::now();
        let child = Command::new(qemu)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("could not start {}", qemu.display()))?;
        Ok(Vm {
            child,
            started,
            qemu_log: qemu_log.to_path_buf(),
            console: console.to_path_buf(),
        })
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `None` while QEMU runs; how it ended otherwise.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(s)) => Some(format!("QEMU exited ({s})")),
            Ok(None) => None,
            Err(e) => Some(format!("QEMU: {e}")),
        }
    }

    /// The last lines of the console and of QEMU's messages, for error messages.
    pub fn log_tail(&self) -> String {
        let tail = |p: &Path| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(8)..].join("\n")
        };
        format!(
            "{}\n{}",
            tail(&self.console).trim_end(),
            tail(&self.qemu_log).trim_end()
        )
        .trim()
        .to_string()
    }

    /// Waits for the first `200` answer to `GET /` at `addr`; the time from QEMU's start.
    ///
    /// A new connection is tried every 10 ms (each with its own thread, at most 32 at a
    /// time), so neither TCP's 1 s SYN retransmission nor a slow attempt hides the moment
    /// the server starts answering.
    pub fn first_response(
        &mut self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<Duration, String> {
        self.first_answer(addr, timeout, get_ok)
    }

    /// Waits for the first answer at `addr` that `probe` accepts (such as [`get_ok`] or
    /// [`ping_ok`]), probing as [`Vm::first_response`] does; the time from QEMU's start.
    pub fn first_answer(
        &mut self,
        addr: SocketAddr,
        timeout: Duration,
        probe: fn(SocketAddr, Duration) -> bool,
    ) -> Result<Duration, String> {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let first = self.probe(addr, timeout, probe, &in_flight)?;
        // Let the other probes finish (at most 3 s), so their connections do not crowd
        // the server when the load starts.
        let drain = Instant::now();
        while in_flight.load(Ordering::Acquire) > 0 && drain.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(first)
    }

    fn probe(
        &mut self,
        addr: SocketAddr,
        timeout: Duration,
        probe: fn(SocketAddr, Duration) -> bool,
        in_flight: &Arc<AtomicUsize>,
    ) -> Result<Duration, String> {
        let (tx, rx) = mpsc::channel::<Instant>();
        loop {
            if let Ok(t) = rx.try_recv() {
                return Ok(t.duration_since(self.started));
            }
            if let Some(why) = self.exited() {
                return Err(format!(
                    "{why} before answering; its last lines:\n{}",
                    self.log_tail()
                ));
            }
            if self.started.elapsed() > timeout {
                return Err(format!(
                    "no answer from {addr} within {} s; QEMU's last lines:\n{}",
                    timeout.as_secs(),
                    self.log_tail()
                ));
            }
            if in_flight.load(Ordering::Acquire) < 32 {
                in_flight.fetch_add(1, Ordering::AcqRel);
                let (tx, in_flight) = (tx.clone(), in_flight.clone());
                std::thread::spawn(move || {
                    if probe(addr, Duration::from_secs(1)) {
                        let _ = tx.send(Instant::now());
                    }
                    in_flight.fetch_sub(1, Ordering::AcqRel);
                });
            }
            if let Ok(t) = rx.recv_timeout(Duration::from_millis(10)) {
                return Ok(t.duration_since(self.started));
            }
        }
    }

    /// Kills QEMU and reaps it.
    pub fn stop(mut self) {
        crate::qemu::kill_and_reap(&mut self.child);
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            crate::qemu::kill_and_reap(&mut self.child);
        }
    }
}

/// Whether `bytes` begin an HTTP/1.x response with status 200.
pub fn is_ok_response(bytes: &[u8]) -> bool {
    let Some(line) = bytes.split(|&b| b == b'\n').next() else {
        return false;
    };
    let line = String::from_utf8_lossy(line);
    let mut w = line.split_whitespace();
    matches!((w.next(), w.next()), (Some(v), Some("200")) if v.starts_with("HTTP/1."))
}

/// One `GET /` over a fresh connection: true when a 200 status line comes back in time.
pub fn get_ok(addr: SocketAddr, timeout: Duration) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(timeout * 2));
    let _ = s.set_write_timeout(Some(timeout));
    let req = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !got.contains(&b'\n') && got.len() < 4096 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    is_ok_response(&got)
}

/// One `PING` to a Redis server over a fresh connection: true when `+PONG` comes back in
/// time.
pub fn ping_ok(addr: SocketAddr, timeout: Duration) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(timeout * 2));
    let _ = s.set_write_timeout(Some(timeout));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while !got.contains(&b'\n') && got.len() < 512 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got.starts_with(b"+PONG\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert!(is_ok_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nhi\n"
        ));
        assert!(is_ok_response(b"HTTP/1.0 200 OK\r\n"));
        assert!(!is_ok_response(b"HTTP/1.1 404 Not Found\r\n"));
        assert!(!is_ok_response(b""));
        assert!(!is_ok_response(b"SSH-2.0-OpenSSH\r\n"));
    }

    #[test]
    fn probes_a_local_server() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut b = [0u8; 256];
            let _ = s.read(&mut b);
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
        });
        assert!(get_ok(addr, Duration::from_secs(5)));
        t.join().unwrap();
    }

    #[test]
    fn pings_a_local_redis_like_server() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            for answer in [&b"+PONG\r\n"[..], b"-LOADING\r\n"] {
                let (mut s, _) = l.accept().unwrap();
                let mut b = [0u8; 64];
                let n = s.read(&mut b).unwrap();
                assert_eq!(&b[..n], b"PING\r\n");
                s.write_all(answer).unwrap();
            }
        });
        assert!(ping_ok(addr, Duration::from_secs(5)));
        assert!(!ping_ok(addr, Duration::from_secs(5)));
        t.join().unwrap();
        // Nothing listening any more.
        assert!(!ping_ok(addr, Duration::from_millis(200)));
    }
}
