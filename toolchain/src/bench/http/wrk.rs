//! The load generator: Debian's `wrk`, run with a fixed duration, connection count and
//! `--latency`, and its report parsed.

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
}

impl Load {
    /// wrk's arguments for this load against `url` (requests that take more than 2 s count
    /// as timeouts).
    pub fn args(&self, url: &str) -> Vec<String> {
        vec![
            format!("-t{}", self.threads),
            format!("-c{}", self.connections),
            format!("-d{}s", self.seconds),
            "--timeout".into(),
            "2s".into(),
            "--latency".into(),
            url.into(),
        ]
    }

    /// The command as a reader would type it.
    pub fn command(&self, url: &str) -> String {
        format!("wrk {}", self.args(url).join(" "))
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
    let mut socket_errors = 0;
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
            socket_errors = v
                .split(',')
                .filter_map(|kv| kv.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
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
        socket_errors,
        non_2xx,
    })
}

/// Runs wrk and parses its report. wrk first makes one blocking connection, which TCP may
/// retry for minutes when nothing answers: give up 30 s after the load should have ended.
pub fn run(wrk: &Path, load: &Load, url: &str) -> anyhow::Result<WrkResult> {
    let mut child = Command::new(wrk)
        .args(load.args(url))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not run {}", wrk.display()))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(u64::from(load.seconds) + 30);
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            crate::qemu::kill_and_reap(&mut child);
            anyhow::bail!(
                "wrk did not finish within {} s: {url} stopped answering",
                load.seconds + 30
            );
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
        let l = Load {
            threads: 2,
            connections: 16,
            seconds: 10,
        };
        assert_eq!(
            l.command("http://10.0.0.2:8080/"),
            "wrk -t2 -c16 -d10s --timeout 2s --latency http://10.0.0.2:8080/"
        );
    }
}
