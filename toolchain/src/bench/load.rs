//! A small HTTP load generator that accounts for every request: `clients` threads send
//! `GET /` until the time is up, each on one keep-alive connection (or a new connection per
//! request), and every request either completes (a 200 with its whole body) or counts as
//! failed, by kind.
//!
//! Used by `bench soak` instead of wrk because wrk's accounting cannot tell a failed request
//! from a connection still being made: its timeout check counts, every 2 s, each connection
//! whose request started more than `--timeout` ago, and a connection that has not sent its
//! first request yet has a start time of 0, so slow connection set-up under load turns into
//! "timeouts". The clients all start at once.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a connection attempt, a write or an answer may take before it counts as
/// failed. Generous: under TCG a saturated guest answers in seconds, and what counts is
/// that every request is answered.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What the clients saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadResult {
    /// Completed requests (200 with the whole body).
    pub ok: u64,
    /// Connections that could not be made within [`REQUEST_TIMEOUT`].
    pub connect: u64,
    /// Requests whose write failed.
    pub write: u64,
    /// Requests whose connection was reset or closed before the whole answer came.
    pub read: u64,
    /// Requests unanswered within [`REQUEST_TIMEOUT`].
    pub timeout: u64,
    /// Answers that were not a 200 with a well-formed body.
    pub status: u64,
    /// Latency of each completed request (write to the end of the answer), sorted.
    pub latencies: Vec<Duration>,
    /// The longest time a connection took to be made.
    pub slowest_connect: Duration,
    /// Seconds the load ran.
    pub seconds: f64,
    /// Clients that completed at least one request.
    pub served_clients: u64,
}

impl LoadResult {
    /// Failed requests of every kind.
    pub fn failed(&self) -> u64 {
        self.connect + self.write + self.read + self.timeout + self.status
    }

    /// Completed requests per second.
    pub fn rps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ok as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// The latency below which `p` (0 to 1) of the completed requests stayed.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[i.min(self.latencies.len() - 1)]
    }

    fn merge(&mut self, o: LoadResult) {
        self.ok += o.ok;
        self.connect += o.connect;
        self.write += o.write;
        self.read += o.read;
        self.timeout += o.timeout;
        self.status += o.status;
        self.latencies.extend(o.latencies);
        self.slowest_connect = self.slowest_connect.max(o.slowest_connect);
        self.served_clients += o.served_clients;
    }
}

enum Failure {
    Write,
    Read,
    Timeout,
    Status,
}

fn read_failure(e: std::io::Error) -> Failure {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Failure::Timeout,
        _ => Failure::Read,
    }
}

/// Where an HTTP head ends and how long its body is, once `got` holds the whole head;
/// `Err` when the answer is not a 200 with a `Content-Length`.
pub fn parse_head(got: &[u8]) -> Option<Result<(usize, usize), ()>> {
    let end = got.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200 ") && !head.starts_with("http/1.0 200 ") {
        return Some(Err(()));
    }
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok());
    Some(len.map(|l| (end, l)).ok_or(()))
}

/// One `GET /` on `s`, its whole answer read.
fn request(s: &mut TcpStream, keep_alive: bool) -> Result<(), Failure> {
    let req: &[u8] = if keep_alive {
        b"GET / HTTP/1.1\r\nHost: kiln\r\n\r\n"
    } else {
        b"GET / HTTP/1.1\r\nHost: kiln\r\nConnection: close\r\n\r\n"
    };
    s.write_all(req).map_err(|_| Failure::Write)?;
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    let (end, len) = loop {
        if let Some(h) = parse_head(&got) {
            break h.map_err(|_| Failure::Status)?;
        }
        match s.read(&mut buf).map_err(read_failure)? {
            0 => return Err(Failure::Read),
            n => got.extend_from_slice(&buf[..n]),
        }
    };
    while got.len() < end + len {
        match s.read(&mut buf).map_err(read_failure)? {
            0 => return Err(Failure::Read),
            n => got.extend_from_slice(&buf[..n]),
        }
    }
    Ok(())
}

/// One client: requests until `end`.
fn client(addr: SocketAddr, end: Instant, keep_alive: bool) -> LoadResult {
    let mut r = LoadResult::default();
    let mut conn: Option<TcpStream> = None;
    while Instant::now() < end {
        let mut s = match conn.take() {
            Some(s) => s,
            None => {
                let t = Instant::now();
                match TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT) {
                    Ok(s) => {
                        r.slowest_connect = r.slowest_connect.max(t.elapsed());
                        let _ = s.set_read_timeout(Some(REQUEST_TIMEOUT));
                        let _ = s.set_write_timeout(Some(REQUEST_TIMEOUT));
                        let _ = s.set_nodelay(true);
                        s
                    }
                    Err(_) => {
                        r.connect += 1;
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                }
            }
        };
        let t = Instant::now();
        match request(&mut s, keep_alive) {
            Ok(()) => {
                r.ok += 1;
                r.latencies.push(t.elapsed());
                if keep_alive {
                    conn = Some(s);
                }
            }
            Err(Failure::Write) => r.write += 1,
            Err(Failure::Read) => r.read += 1,
            Err(Failure::Timeout) => r.timeout += 1,
            Err(Failure::Status) => r.status += 1,
        }
    }
    r
}

/// Runs `clients` clients against `addr` for `duration`.
pub fn drive(addr: SocketAddr, clients: usize, duration: Duration, keep_alive: bool) -> LoadResult {
    let start = Instant::now();
    let end = start + duration;
    let total = Mutex::new(LoadResult::default());
    std::thread::scope(|s| {
        for _ in 0..clients {
            let total = &total;
            s.spawn(move || {
                let mut r = client(addr, end, keep_alive);
                r.served_clients = u64::from(r.ok > 0);
                total.lock().unwrap().merge(r);
            });
        }
    });
    let mut total = total.into_inner().unwrap();
    total.seconds = start.elapsed().as_secs_f64();
    total.latencies.sort();
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    #[test]
    fn heads() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\n"), None);
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
            Some(Ok((38, 5)))
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"),
            Some(Err(()))
        );
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n"), Some(Err(())));
    }

    #[test]
    fn counts_a_local_server() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { return };
                std::thread::spawn(move || {
                    let mut w = s.try_clone().unwrap();
                    let mut r = std::io::BufReader::new(s);
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            let _ =
                                w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nhi\n");
                        }
                    }
                });
            }
        });
        let r = drive(addr, 4, Duration::from_millis(300), true);
        assert!(r.ok > 0);
        assert_eq!(r.failed(), 0);
        assert_eq!(r.served_clients, 4);
        assert!(r.percentile(0.99) >= r.percentile(0.5));
    }
}
