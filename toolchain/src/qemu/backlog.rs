//! A real listen backlog for `run -p` TCP forwards.
//!
//! QEMU's user networking (libslirp) listens on each forwarded host port with
//! `listen(fd, 1)`. When a client opens hundreds of connections at once (a load tester, a
//! connection pool), the host kernel's accept queue for that socket overflows at once: it
//! drops SYNs and handshake ACKs, the clients retry after 1 s, 3 s, 7 s, and some hang.
//! Nothing in QEMU's options changes that backlog, so once QEMU has made its listeners the
//! runner takes a copy of each one from QEMU (`pidfd_getfd`, which a parent may do to its
//! child) and calls `listen` on it again with [`BACKLOG`]: Linux lets a listening socket's
//! backlog be changed that way. The socket stays QEMU's; no byte passes through the runner.
//! Where the host forbids taking a child's descriptor (some container sandboxes), the
//! forward works as before and `--verbose` says why the backlog stayed at 1.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::process::{pidfd_getfd, pidfd_open, Pid, PidfdFlags, PidfdGetfdFlags};

/// The backlog given to each forwarded port (the host caps it at `net.core.somaxconn`).
pub const BACKLOG: i32 = 1024;

/// How long [`widen_when_listening`] waits for QEMU's listeners to appear.
const WAIT: Duration = Duration::from_secs(20);

/// Gives every listening TCP socket of process `pid` bound to one of `ports` the backlog
/// [`BACKLOG`]; returns the ports it found listening. Fails when the process's descriptors
/// cannot be read or taken (no such process, or not allowed).
pub fn widen(pid: u32, ports: &BTreeSet<u16>) -> Result<BTreeSet<u16>, String> {
    let target = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| format!("no process {pid}"))?;
    let pidfd =
        pidfd_open(target, PidfdFlags::empty()).map_err(|e| format!("pidfd_open({pid}): {e}"))?;
    let dir = format!("/proc/{pid}/fd");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))?;
    let mut widened = BTreeSet::new();
    for entry in entries.flatten() {
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"));
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if !is_socket {
            continue;
        }
        let copy: OwnedFd = match pidfd_getfd(&pidfd, fd, PidfdGetfdFlags::empty()) {
            Ok(copy) => copy,
            // Closed since the directory was read.
            Err(rustix::io::Errno::BADF) => continue,
            Err(e) => return Err(format!("pidfd_getfd({pid}, {fd}): {e}")),
        };
        if let Some(port) = listening_port(copy, ports)? {
            widened.insert(port);
        }
    }
    Ok(widened)
}

/// The port of `socket` when it is a listening TCP socket on one of `ports`, after giving
/// it [`BACKLOG`]; the copy is closed either way (the owner's descriptor stays open).
fn listening_port(socket: OwnedFd, ports: &BTreeSet<u16>) -> Result<Option<u16>, String> {
    if !rustix::net::sockopt::socket_acceptconn(&socket).unwrap_or(false) {
        return Ok(None);
    }
    // Not an internet socket (QEMU's monitor and console are Unix sockets): no address.
    let listener = TcpListener::from(socket);
    let Ok(addr) = listener.local_addr() else {
        return Ok(None);
    };
    if !ports.contains(&addr.port()) {
        return Ok(None);
    }
    rustix::net::listen(&listener, BACKLOG)
        .map_err(|e| format!("listen on port {}: {e}", addr.port()))?;
    Ok(Some(addr.port()))
}

/// Waits (polling, at most 20 s) until process `pid` listens on every port of `ports`,
/// widening each backlog as it appears ([`widen`]); says on stderr why it could not when
/// `verbose`. For a thread started beside QEMU: it returns when done or when QEMU is gone.
pub fn widen_when_listening(pid: u32, ports: BTreeSet<u16>, verbose: bool) {
    let start = Instant::now();
    let mut left = ports;
    while !left.is_empty() {
        match widen(pid, &left) {
            Ok(done) => left.retain(|p| !done.contains(p)),
            Err(e) => {
                // Gone (QEMU ended or failed to start) is not worth a word.
                if verbose && std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    eprintln!("kiln: forwarded ports keep QEMU's listen backlog of 1 ({e})");
                }
                return;
            }
        }
        if start.elapsed() > WAIT {
            if verbose {
                eprintln!("kiln: QEMU never listened on forwarded ports {left:?}");
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, TcpStream};

    /// How many of `n` connects to `addr` finish within `limit` each, none accepted.
    fn connects(addr: SocketAddr, n: usize, limit: Duration) -> (usize, Vec<TcpStream>) {
        let mut kept = Vec::new();
        for _ in 0..n {
            if let Ok(s) = TcpStream::connect_timeout(&addr, limit) {
                kept.push(s);
            }
        }
        (kept.len(), kept)
    }

    #[test]
    fn a_listener_with_a_backlog_of_one_gets_a_real_one() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        rustix::net::listen(&l, 1).unwrap();
        let addr = l.local_addr().unwrap();
        // With a backlog of 1, nothing accepting, the queue fills after two and the next
        // handshakes wait for a SYN resend (1 s later).
        let (made, held) = connects(addr, 6, Duration::from_millis(300));
        assert!(made < 6, "a backlog of 1 took {made} connections");
        drop(held);
        // Let the host forget them.
        while l.set_nonblocking(true).is_ok() && l.accept().is_ok() {}
        l.set_nonblocking(false).unwrap();

        // Port 1 is privileged: nothing in the tests listens there.
        let other: BTreeSet<u16> = [1].into();
        let wanted: BTreeSet<u16> = [addr.port()].into();
        assert_eq!(widen(std::process::id(), &other), Ok(BTreeSet::new()));
        assert_eq!(widen(std::process::id(), &wanted), Ok(wanted.clone()));
        let (made, _held) = connects(addr, 64, Duration::from_millis(300));
        assert_eq!(made, 64, "after widening");
    }

    #[test]
    fn a_process_that_does_not_exist_is_an_error() {
        let ports: BTreeSet<u16> = [1].into();
        assert!(widen(u32::MAX, &ports).is_err());
        // Returns at once rather than waiting for listeners that will never come.
        let start = Instant::now();
        widen_when_listening(u32::MAX, ports, false);
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
