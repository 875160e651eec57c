//! What `bench http` measured, the side-by-side table, and the smallest-memory search.

use super::wrk::WrkResult;
use std::time::Duration;

/// The memory sizes (MiB) tried when looking for the smallest that serves (Kiln's HTTP
/// example serves under load in 8 MiB since the kernel needs 2 MiB above its image).
pub const MEMORY_SIZES: [u64; 12] = [6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256];

/// The smallest of `sizes` (ascending) for which `serves` holds, assuming that a guest that
/// serves with some memory also serves with more. Binary search: about log2(n) + 1 boots.
/// Returns the answer and every size tried with its result, in the order tried.
pub fn smallest_passing(
    sizes: &[u64],
    mut serves: impl FnMut(u64) -> bool,
) -> (Option<u64>, Vec<(u64, bool)>) {
    let mut tried = Vec::new();
    // Invariant: every size below lo fails; sizes[hi] passes (hi == len: none known to).
    let (mut lo, mut hi) = (0, sizes.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let ok = serves(sizes[mid]);
        tried.push((sizes[mid], ok));
        if ok {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    (sizes.get(hi).copied(), tried)
}

/// One side of the comparison.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Side {
    /// `Kiln` or `Linux`.
    pub name: String,
    /// What wrk measured under each of [`HttpReport::loads`], in the same order; `None` (or
    /// missing at the end) where that load failed or was not run.
    pub loads: Vec<Option<WrkResult>>,
    /// QEMU start to first HTTP response, each boot.
    pub first_responses: Vec<Duration>,
    /// Bytes the guest boots from (what `-kernel`/`-initrd` load).
    pub image_size: Option<u64>,
    /// What the image is made of.
    pub image_detail: String,
    /// Smallest `--memory` (MiB) that served the load.
    pub min_memory: Option<u64>,
    /// Memory sizes tried, with whether each served.
    pub memory_tried: Vec<(u64, bool)>,
    /// What went wrong, if something did (one line per problem).
    pub failure: Option<String>,
}

impl Side {
    /// Median first-response time.
    pub fn first_response(&self) -> Option<Duration> {
        crate::bench::median(&self.first_responses)
    }

    /// The result of load `i`, if it was measured.
    pub fn load(&self, i: usize) -> Option<&WrkResult> {
        self.loads.get(i).and_then(Option::as_ref)
    }

    /// Records a problem (after any recorded before).
    pub fn fail(&mut self, why: impl Into<String>) {
        let why = why.into();
        self.failure = Some(match self.failure.take() {
            Some(f) => format!("{f}\n{why}"),
            None => why,
        });
    }
}

/// One measured load, as the report names it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoadSpec {
    /// For the table: `16 connections, keep-alive`.
    pub label: String,
    /// The exact wrk command line.
    pub command: String,
}

/// Everything `bench http` reports.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HttpReport {
    /// The unikernel.
    pub kiln: Side,
    /// The Linux guest.
    pub linux: Side,
    /// `TCG` or `KVM`.
    pub accel: String,
    /// Host CPUs.
    pub cpus: usize,
    /// The host's 1-minute load average when the benchmark started.
    pub host_load: String,
    /// QEMU machine.
    pub machine: String,
    /// Virtual CPUs of each guest.
    pub vcpus: u32,
    /// Memory of the throughput runs (MiB).
    pub memory_mib: u64,
    /// The measured loads, in the order they ran (on the first boot of each side).
    pub loads: Vec<LoadSpec>,
    /// The short load used to decide whether a memory size serves.
    pub probe_load: String,
    /// Boots per side for the first-response time.
    pub boots: usize,
    /// The Linux kernel package.
    pub linux_kernel: String,
    /// The server program: where it came from, its size and arguments.
    pub server: String,
}

pub(crate) fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1e3)
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

pub(crate) fn ratio(k: Option<f64>, l: Option<f64>) -> String {
    match (k, l) {
        (Some(k), Some(l)) if l > 0.0 && k > 0.0 => {
            let r = k / l;
            if r < 0.5 {
                format!("{r:.2}x (1/{:.0})", 1.0 / r)
            } else {
                format!("{r:.2}x")
            }
        }
        _ => String::new(),
    }
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "failed".to_string(), f)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Failed requests of one run: the total, then the kinds that were not zero
/// (`0`, `12 (timeout 12)`, `7 (read 5, non-2xx 2)`).
pub fn failed_requests(r: &WrkResult) -> String {
    let e = &r.errors;
    let total = e.total() + r.non_2xx;
    let kinds: Vec<String> = [
        ("connect", e.connect),
        ("read", e.read),
        ("write", e.write),
        ("timeout", e.timeout),
        ("non-2xx", r.non_2xx),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(k, n)| format!("{k} {n}"))
    .collect();
    if kinds.is_empty() {
        total.to_string()
    } else {
        format!("{total} ({})", kinds.join(", "))
    }
}

/// Whether a target was met, for the summary.
fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "missed",
        None => "not measured",
    }
}

/// The table of the measured loads (a row each: requests/s, p50, p99 and failed requests of
/// both sides, with ratios Kiln/Linux), then the table of boots, sizes and memory, then the
/// targets and notes (Markdown).
pub fn format_report(r: &HttpReport) -> String {
    let (k, l) = (&r.kiln, &r.linux);
    let mut s = String::new();
    let busy = if r.host_load.is_empty() {
        String::new()
    } else {
        format!(", host load average {} at the start", r.host_load)
    };
    s.push_str(&format!(
        "The same server on QEMU {} ({}, {} host cores{busy}), tap networking, {} MiB{}. \
         The loads run one after the other on the first boot of each side, after a 2 s \
         warm-up; first response: {}.\n\n",
        r.machine,
        r.accel,
        r.cpus,
        r.memory_mib,
        if r.vcpus > 1 {
            format!(", {} vCPUs each", r.vcpus)
        } else {
            String::new()
        },
        if r.boots == 1 {
            "one boot".to_string()
        } else {
            format!("median of {} boots", r.boots)
        }
    ));
    s.push_str(
        "| load | Kiln requests/s | Linux requests/s | Kiln / Linux | Kiln p50 | Linux p50 \
         | Kiln / Linux | Kiln p99 | Linux p99 | Kiln / Linux | Kiln failed | Linux failed |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (i, spec) in r.loads.iter().enumerate() {
        let (kr, lr) = (k.load(i), l.load(i));
        let rps = |w: Option<&WrkResult>| opt(w, |w| format!("{:.0}", w.rps));
        let lat = |w: Option<&WrkResult>, f: fn(&WrkResult) -> Duration| opt(w.map(f), ms);
        let p50 = |w: &WrkResult| w.p50;
        let p99 = |w: &WrkResult| w.p99;
        let lat_ratio =
            |f: fn(&WrkResult) -> Duration| ratio(kr.map(|w| secs(f(w))), lr.map(|w| secs(f(w))));
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            spec.label,
            rps(kr),
            rps(lr),
            ratio(kr.map(|w| w.rps), lr.map(|w| w.rps)),
            lat(kr, p50),
            lat(lr, p50),
            lat_ratio(p50),
            lat(kr, p99),
            lat(lr, p99),
            lat_ratio(p99),
            opt(kr, failed_requests),
            opt(lr, failed_requests),
        ));
    }
    s.push('\n');
    for spec in &r.loads {
        s.push_str(&format!("- {}: `{}`\n", spec.label, spec.command));
    }
    s.push_str(
        "- Failed requests are wrk's socket errors (connect, read, write, timeout) plus \
         responses that were not 2xx or 3xx.\n\n",
    );

    s.push_str("| | Kiln | Linux guest | Kiln / Linux |\n|---|---:|---:|---:|\n");
    let row = |s: &mut String, what: &str, kv: String, lv: String, rt: String| {
        s.push_str(&format!("| {what} | {kv} | {lv} | {rt} |\n"));
    };
    let (kf, lf) = (k.first_response(), l.first_response());
    row(
        &mut s,
        "QEMU start to first response",
        opt(kf, ms),
        opt(lf, ms),
        ratio(kf.map(secs), lf.map(secs)),
    );
    let bytes = |b: u64| format!("{b} bytes");
    row(
        &mut s,
        "image size",
        opt(k.image_size, bytes),
        opt(l.image_size, bytes),
        ratio(
            k.image_size.map(|v| v as f64),
            l.image_size.map(|v| v as f64),
        ),
    );
    let mib = |m: u64| format!("{m} MiB");
    let min_mem = |side: &Side| match side.min_memory {
        Some(m) => mib(m),
        None if side.memory_tried.is_empty() => "not measured".into(),
        None => format!(
            "over {} MiB",
            side.memory_tried.iter().map(|t| t.0).max().unwrap_or(0)
        ),
    };
    row(
        &mut s,
        "smallest --memory that serves",
        min_mem(k),
        min_mem(l),
        ratio(
            k.min_memory.map(|v| v as f64),
            l.min_memory.map(|v| v as f64),
        ),
    );
    s.push('\n');
    // Throughput: Kiln's rate against Linux's in every load both sides measured.
    let rates: Vec<f64> = (0..r.loads.len())
        .filter_map(|i| Some(k.load(i)?.rps / l.load(i)?.rps))
        .filter(|x| x.is_finite())
        .collect();
    let throughput = (!rates.is_empty()).then(|| rates.iter().all(|&x| x >= 1.0));
    let worst = rates
        .iter()
        .copied()
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.min(x))));
    let worst = worst.map_or(String::new(), |w| format!(" (lowest {w:.2}x)"));
    let start = kf.zip(lf).map(|(k, l)| k * 10 <= l);
    let mem32 = k.min_memory.map(|m| m <= 32).or(
        // No answer but sizes were tried: nothing served.
        (!k.memory_tried.is_empty()).then_some(false),
    );
    s.push_str(&format!(
        "Targets: throughput at least 1.0x Linux's (aim 1.5x) in every load: {}{worst}; first \
         response within 1/10 of Linux's: {}; serves in 32 MiB: {}.\n\n",
        verdict(throughput),
        verdict(start),
        verdict(mem32)
    ));
    if !r.server.is_empty() {
        s.push_str(&format!("- Server: {}.\n", r.server));
    }
    for side in [k, l] {
        if !side.image_detail.is_empty() {
            s.push_str(&format!("- {} image: {}.\n", side.name, side.image_detail));
        }
    }
    for side in [k, l] {
        if side.first_responses.len() > 1 {
            let all: Vec<String> = side.first_responses.iter().map(|d| ms(*d)).collect();
            s.push_str(&format!(
                "- {} first responses: {}.\n",
                side.name,
                all.join(", ")
            ));
        }
    }
    for side in [k, l] {
        if !side.memory_tried.is_empty() {
            let t: Vec<String> = side
                .memory_tried
                .iter()
                .map(|(m, ok)| format!("{m} MiB {}", if *ok { "serves" } else { "fails" }))
                .collect();
            s.push_str(&format!(
                "- {} memory search: {}.\n",
                side.name,
                t.join(", ")
            ));
        }
    }
    if !r.linux_kernel.is_empty() {
        s.push_str(&format!("- Linux: Debian's {}.\n", r.linux_kernel));
    }
    if !r.probe_load.is_empty() {
        s.push_str(&format!(
            "- A memory size serves when, in one of two tries, the guest answers within the boot \
             timeout, then `{}` completes requests with every response 2xx and socket errors \
             on at most 1% of them, and the guest still answers afterwards.\n",
            r.probe_load
        ));
    }
    for side in [k, l] {
        if let Some(f) = &side.failure {
            s.push_str(&format!("\n{} failed: {}\n", side.name, f.trim()));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::wrk::SocketErrors;
    use super::*;

    #[test]
    fn bisection_finds_the_smallest() {
        for threshold in [0, 7, 8, 16, 20, 24, 32, 100, 256] {
            let mut calls = 0;
            let (got, tried) = smallest_passing(&MEMORY_SIZES, |m| {
                calls += 1;
                m >= threshold
            });
            let want = MEMORY_SIZES.iter().copied().find(|&m| m >= threshold);
            assert_eq!(got, want, "threshold {threshold}");
            assert!(calls <= 4, "{calls} boots for threshold {threshold}");
            assert_eq!(tried.len(), calls);
        }
        let (none, tried) = smallest_passing(&MEMORY_SIZES, |_| false);
        assert_eq!(none, None);
        assert!(tried.iter().all(|t| !t.1));
        assert!(tried.iter().any(|t| t.0 == 256), "the largest is tried");
        assert_eq!(smallest_passing(&[], |_| true).0, None);
    }

    fn run(rps: f64, lat_ms: u64) -> WrkResult {
        WrkResult {
            requests: (rps * 10.0) as u64,
            rps,
            p50: Duration::from_millis(lat_ms),
            p99: Duration::from_millis(lat_ms * 4),
            socket_errors: 0,
            errors: SocketErrors::default(),
            non_2xx: 0,
        }
    }

    fn side(name: &str, rps: f64, lat_ms: u64, first_ms: u64, size: u64, mem: u64) -> Side {
        Side {
            name: name.into(),
            loads: vec![
                Some(run(rps, lat_ms)),
                Some(run(rps / 2.0, lat_ms * 8)),
                Some(run(rps / 4.0, lat_ms * 2)),
            ],
            first_responses: vec![Duration::from_millis(first_ms)],
            image_size: Some(size),
            image_detail: String::new(),
            min_memory: Some(mem),
            memory_tried: vec![(mem, true)],
            failure: None,
        }
    }

    fn loads() -> Vec<LoadSpec> {
        [
            ("16 connections, keep-alive", "wrk -t2 -c16 -d10s"),
            ("256 connections, keep-alive", "wrk -t2 -c256 -d10s"),
            (
                "16 connections, a new connection per request",
                "wrk -t2 -c16 -d10s -H 'Connection: close'",
            ),
        ]
        .iter()
        .map(|(l, c)| LoadSpec {
            label: l.to_string(),
            command: c.to_string(),
        })
        .collect()
    }

    #[test]
    fn table_with_ratios() {
        let mut linux = side("Linux", 2000.0, 4, 6000, 9_000_000, 96);
        linux.loads[1] = Some(WrkResult {
            socket_errors: 12,
            errors: SocketErrors {
                timeout: 10,
                read: 2,
                ..SocketErrors::default()
            },
            non_2xx: 1,
            ..run(1000.0, 40)
        });
        let r = HttpReport {
            kiln: side("Kiln", 3000.0, 2, 300, 1_500_000, 16),
            linux,
            accel: "TCG".into(),
            cpus: 2,
            machine: "q35".into(),
            memory_mib: 256,
            loads: loads(),
            boots: 3,
            server: "examples/http-hello (static, 10 bytes, sha256 0123…), no arguments".into(),
            ..HttpReport::default()
        };
        let s = format_report(&r);
        assert!(
            s.contains(
                "| load | Kiln requests/s | Linux requests/s | Kiln / Linux | Kiln p50 | \
                 Linux p50 | Kiln / Linux | Kiln p99 | Linux p99 | Kiln / Linux | Kiln failed \
                 | Linux failed |\n|---|---:|"
            ),
            "{s}"
        );
        assert!(
            s.contains(
                "| 16 connections, keep-alive | 3000 | 2000 | 1.50x | 2.00 ms | 4.00 ms | 0.50x \
                 | 8.00 ms | 16.0 ms | 0.50x | 0 | 0 |"
            ),
            "{s}"
        );
        assert!(
            s.contains(
                "| 256 connections, keep-alive | 1500 | 1000 | 1.50x | 16.0 ms | 40.0 ms | 0.40x \
                 (1/2) | 64.0 ms | 160.0 ms | 0.40x (1/2) | 0 | 13 (read 2, timeout 10, \
                 non-2xx 1) |"
            ),
            "{s}"
        );
        assert!(
            s.contains("| 16 connections, a new connection per request | 750 | 500 | 1.50x |"),
            "{s}"
        );
        assert!(
            s.contains("- 16 connections, a new connection per request: `wrk -t2 -c16 -d10s -H 'Connection: close'`"),
            "{s}"
        );
        assert!(
            s.contains("| QEMU start to first response | 300.0 ms | 6.00 s | 0.05x (1/20) |"),
            "{s}"
        );
        assert!(
            s.contains("| image size | 1500000 bytes | 9000000 bytes | 0.17x (1/6) |"),
            "{s}"
        );
        assert!(
            s.contains("| smallest --memory that serves | 16 MiB | 96 MiB | 0.17x (1/6) |"),
            "{s}"
        );
        assert!(s.contains("1.0x Linux's (aim 1.5x) in every load: met (lowest 1.50x); first response within 1/10 of Linux's: met; serves in 32 MiB: met"), "{s}");
        assert!(
            s.contains(
                "- Server: examples/http-hello (static, 10 bytes, sha256 0123…), no arguments.\n"
            ),
            "{s}"
        );
        // One row per load, nothing else in the first table.
        let first_table = s.split("\n\n").nth(1).unwrap();
        assert_eq!(first_table.lines().count(), 2 + 3, "{first_table}");
        assert!(s.contains("first response: median of 3 boots."), "{s}");
    }

    #[test]
    fn throughput_target_needs_every_load() {
        let mut kiln = side("Kiln", 3000.0, 2, 300, 1_500_000, 16);
        kiln.loads[1] = Some(run(900.0, 20));
        let r = HttpReport {
            kiln,
            linux: side("Linux", 2000.0, 4, 6000, 9_000_000, 96),
            loads: loads(),
            ..HttpReport::default()
        };
        let s = format_report(&r);
        assert!(s.contains("in every load: missed (lowest 0.90x)"), "{s}");
    }

    #[test]
    fn failed_request_counts() {
        let mut w = run(100.0, 1);
        assert_eq!(failed_requests(&w), "0");
        w.errors = SocketErrors {
            connect: 1,
            read: 0,
            write: 3,
            timeout: 0,
        };
        assert_eq!(failed_requests(&w), "4 (connect 1, write 3)");
        w.non_2xx = 2;
        assert_eq!(failed_requests(&w), "6 (connect 1, write 3, non-2xx 2)");
    }

    #[test]
    fn failures_show() {
        let mut linux = side("Linux", 2000.0, 4, 6000, 9_000_000, 96);
        linux.loads.truncate(2);
        let mut kiln = Side {
            name: "Kiln".into(),
            memory_tried: vec![(256, false)],
            ..Side::default()
        };
        kiln.fail("no network");
        kiln.fail("and then some");
        let r = HttpReport {
            kiln,
            linux,
            loads: loads(),
            ..HttpReport::default()
        };
        let s = format_report(&r);
        assert!(
            s.contains(
                "| 16 connections, keep-alive | failed | 2000 |  | failed | 4.00 ms |  | failed \
                 | 16.0 ms |  | failed | 0 |"
            ),
            "{s}"
        );
        assert!(
            s.contains(
                "| 16 connections, a new connection per request | failed | failed |  | failed \
                 | failed |  | failed | failed |  | failed | failed |"
            ),
            "{s}"
        );
        assert!(
            s.contains("| smallest --memory that serves | over 256 MiB | 96 MiB |  |"),
            "{s}"
        );
        assert!(
            s.contains("throughput at least 1.0x Linux's (aim 1.5x) in every load: not measured"),
            "{s}"
        );
        assert!(s.contains("serves in 32 MiB: missed"), "{s}");
        assert!(s.contains("Kiln failed: no network\nand then some"), "{s}");
    }
}
