//! The load generator: Debian's `wrk`, run with a fixed duration, connection count, timeout
//! and `--latency` (optionally with `Connection: close`: a new connection per request), and
//! its report parsed.

use anyhow::Context;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// How hard and how long to push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// `-t`: wrk threads.
    pub threads: u32,
    /// `-c`: open connections.
    pub connections: u32,
    /// `-d`: seconds.
    pub seconds: u32,
    /// `--timeout`: seconds after which wrk counts a request as a timeout (socket error).
    pub timeout_secs: u32,
    /// `-H 'Connection: close'`: a new connection for every request instead of keep-alive.
    pub close: bool,
}

impl Default for Load {
    /// `wrk -t2 -c16 -d10s --timeout 2s`, keep-alive.
    fn default() -> Self {
        Load {
            threads: 2,
            connections: 16,
            seconds: 10,
            timeout_secs: 2,
            close: false,
        }
    }
}

impl Load {
    /// wrk's arguments for this load against `url` (requests that take more than
    /// `timeout_secs` count as timeouts).
    pub fn args(&self, url: &str) -> Vec<String> {
        let mut a = vec![
            format!("-t{}", self.threads),
            format!("-c{}", self.connections),
            format!("-d{}s", self.seconds),
            "--timeout".into(),
            format!("{}s", self.timeout_secs),
            "--latency".into(),
        ];
        if self.close {
            a.push("-H".into());
            a.push("Connection: close".into());
        }
        a.push(url.into());
        a
    }

    /// The command as a reader would type it (an argument with a space in single quotes).
    pub fn command(&self, url: &str) -> String {
        let words: Vec<String> = self
            .args(url)
            .into_iter()
            .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
            .collect();
        format!("wrk {}", words.join(" "))
    }

    /// A short description for a table row: `16 connections, keep-alive` or
    /// `16 connections, a new connection per request`.
    pub fn label(&self) -> String {
        format!(
            "{} connection{}, {}",
            self.connections,
            if self.connections == 1 { "" } else { "s" },
            if self.close {
                "a new connection per request"
            } else {
                "keep-alive"
            }
        )
    }
}

/// wrk's `Socket errors:` line, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SocketErrors {
    /// Connections that could not be made.
    pub connect: u64,
    /// Reads that failed (including connections closed before a whole answer).
    pub read: u64,
    /// Writes that failed.
    pub write: u64,
    /// Requests with no answer within `--timeout`.
    pub timeout: u64,
}

impl SocketErrors {
    /// All of them.
    pub fn total(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout
    }
}

/// What one wrk run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct WrkResult {
    /// Completed requests.
    pub requests: u64,
    /// `Requests/sec`.
    pub rps: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Socket errors (connect + read + write + timeout).
    pub socket_errors: u64,
    /// The same, by kind.
    pub errors: SocketErrors,
    /// Responses that were not 2xx or 3xx.
    pub non_2xx: u64,
}

impl WrkResult {
    /// Whether this run counts as serving the load: requests completed, every response
    /// 2xx/3xx, and socket errors (connect, read, write, timeout) on at most 1% of requests.
    pub fn served(&self) -> bool {
        self.requests > 0 && self.non_2xx == 0 && self.socket_errors * 100 <= self.requests
    }
}

/// Parses one of wrk's times: `812.00us`, `1.23ms`, `2.00s`, `1.00m`.
pub fn parse_time(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        return None;
    };
    let v: f64 = num.parse().ok()?;
    (v.is_finite() && v >= 0.0).then(|| Duration::from_secs_f64(v * scale))
}

/// Parses wrk's report (run with `--latency`).
pub fn parse(out: &str) -> Result<WrkResult, String> {
    let mut requests = None;
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut errors = SocketErrors::default();
    let mut non_2xx = 0;
    for line in out.lines() {
        let t = line.trim();
        let words: Vec<&str> = t.split_whitespace().collect();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if words.len() >= 2 && words[1] == "requests" && words.get(2) == Some(&"in") {
            requests = words[0].parse::<u64>().ok();
        } else if words.len() == 2 && words[0] == "50%" {
            p50 = parse_time(words[1]);
        } else if words.len() == 2 && words[0] == "99%" {
            p99 = parse_time(words[1]);
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            // "connect 0, read 3, write 0, timeout 1"
            for kv in v.split(',') {
                let mut w = kv.split_whitespace();
                let (Some(kind), Some(n)) = (w.next(), w.next().and_then(|n| n.parse().ok()))
                else {
                    continue;
                };
                match kind {
                    "connect" => errors.connect = n,
                    "read" => errors.read = n,
                    "write" => errors.write = n,
                    "timeout" => errors.timeout = n,
                    _ => {}
                }
            }
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = v.trim().parse().unwrap_or(0);
        }
    }
    let missing = |what: &str| format!("wrk's report has no {what}");
    let requests = requests.ok_or_else(|| missing("request count"))?;
    Ok(WrkResult {
        requests,
        rps: rps.ok_or_else(|| missing("Requests/sec"))?,
        // With no completed request wrk prints no percentiles.
        p50: p50
            .or((requests == 0).then_some(Duration::ZERO))
            .ok_or_else(|| missing("50% latency"))?,
        p99: p99
            .or((requests == 0).then_some(Duration::ZERO))
            .ok_or_else(|| missing("99% latency"))?,
        socket_errors: errors.total(),
        errors,
        non_2xx,
    })
}

/// Runs wrk and parses its report. wrk first makes one blocking connection, which TCP may
/// retry for minutes when nothing answers: give up 30 s (plus the request timeout) after the
/// load should have ended.
pub fn run(wrk: &Path, load: &Load, url: &str) -> anyhow::Result<WrkResult> {
    let mut child = Command::new(wrk)
        .args(load.args(url))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not run {}", wrk.display()))?;
    let grace = u64::from(load.seconds) + 30 + u64::from(load.timeout_secs);
    let deadline = std::time::Instant::now() + Duration::from_secs(grace);
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            crate::qemu::kill_and_reap(&mut child);
            anyhow::bail!("wrk did not finish within {grace} s: {url} stopped answering");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        anyhow::bail!(
            "wrk failed ({}): {}{}",
            out.status,
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse(&text).map_err(|e| anyhow::anyhow!("{e}:\n{text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 10s test @ http://10.77.77.2:8080/
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.23ms  456.00us  10.00ms   80.00%
    Req/Sec     5.00k   300.00     6.00k    70.00%
  Latency Distribution
     50%  812.00us
     75%    1.50ms
     90%    2.00ms
     99%    3.25ms
  100000 requests in 10.00s, 12.00MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 5
Requests/sec:  10000.50
Transfer/sec:      1.20MB
";

    #[test]
    fn parses_a_report() {
        let r = parse(REPORT).unwrap();
        assert_eq!(r.requests, 100000);
        assert_eq!(r.rps, 10000.50);
        assert_eq!(r.p50, Duration::from_micros(812));
        assert_eq!(r.p99, Duration::from_micros(3250));
        assert_eq!(r.socket_errors, 5);
        assert_eq!(
            r.errors,
            SocketErrors {
                connect: 0,
                read: 3,
                write: 0,
                timeout: 2
            }
        );
        assert_eq!(r.non_2xx, 5);
        assert!(!r.served());
    }

    #[test]
    fn clean_report_serves() {
        let clean: String = REPORT
            .lines()
            .filter(|l| !l.contains("errors") && !l.contains("Non-2xx"))
            .map(|l| format!("{l}\n"))
            .collect();
        let r = parse(&clean).unwrap();
        assert_eq!((r.socket_errors, r.non_2xx), (0, 0));
        assert!(r.served());
        let few = WrkResult {
            socket_errors: 1000,
            ..r.clone()
        };
        assert!(few.served(), "1% of socket errors is tolerated");
        let many = WrkResult {
            socket_errors: 1001,
            ..r
        };
        assert!(!many.served());
    }

    #[test]
    fn nothing_completed() {
        let r = parse(
            "Running 3s test @ http://x/\n  0 requests in 3.00s, 0.00B read\n  \
             Socket errors: connect 16, read 0, write 0, timeout 0\nRequests/sec:      0.00\n",
        )
        .unwrap();
        assert_eq!(r.requests, 0);
        assert_eq!(r.socket_errors, 16);
        assert!(!r.served());
        assert!(parse("garbage").is_err());
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("2.00s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_time("1.50m"), Some(Duration::from_secs(90)));
        assert_eq!(parse_time("10.00ms"), Some(Duration::from_millis(10)));
        assert_eq!(parse_time("x"), None);
        assert_eq!(parse_time("-1ms"), None);
    }

    #[test]
    fn command_line() {
        let l = Load::default();
        assert_eq!(
            l.command("http://10.0.0.2:8080/"),
            "wrk -t2 -c16 -d10s --timeout 2s --latency http://10.0.0.2:8080/"
        );
        assert_eq!(l.label(), "16 connections, keep-alive");
        let c = Load {
            connections: 1,
            threads: 1,
            timeout_secs: 10,
            close: true,
            ..l
        };
        assert_eq!(
            c.args("http://x/"),
            [
                "-t1",
                "-c1",
                "-d10s",
                "--timeout",
                "10s",
                "--latency",
                "-H",
                "Connection: close",
                "http://x/"
            ]
        );
        assert_eq!(
            c.command("http://x/"),
            "wrk -t1 -c1 -d10s --timeout 10s --latency -H 'Connection: close' http://x/"
        );
        assert_eq!(c.label(), "1 connection, a new connection per request");
    }
}
