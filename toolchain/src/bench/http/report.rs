//! What `bench http` measured, the side-by-side table, and the smallest-memory search.

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
    /// Requests per second under the main load.
    pub rps: Option<f64>,
    /// Median latency under the main load.
    pub p50: Option<Duration>,
    /// 99th percentile latency under the main load.
    pub p99: Option<Duration>,
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
    /// Errors during the main load (socket errors + non-2xx).
    pub load_errors: u64,
    /// What went wrong, if something did.
    pub failure: Option<String>,
}

impl Side {
    /// Median first-response time.
    pub fn first_response(&self) -> Option<Duration> {
        crate::bench::median(&self.first_responses)
    }
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
    /// Memory of the throughput runs (MiB).
    pub memory_mib: u64,
    /// The main load's command line.
    pub load: String,
    /// The short load used to decide whether a memory size serves.
    pub probe_load: String,
    /// Boots per side for the first-response time.
    pub boots: usize,
    /// The Linux kernel package.
    pub linux_kernel: String,
    /// The server program and its size.
    pub server: String,
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1e3)
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

fn ratio(k: Option<f64>, l: Option<f64>) -> String {
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

/// Whether a target was met, for the summary.
fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "missed",
        None => "not measured",
    }
}

/// The side-by-side table (Markdown) with ratios Kiln/Linux, then the targets.
pub fn format_report(r: &HttpReport) -> String {
    let (k, l) = (&r.kiln, &r.linux);
    let mut s = String::new();
    let busy = if r.host_load.is_empty() {
        String::new()
    } else {
        format!(", host load average {} at the start", r.host_load)
    };
    s.push_str(&format!(
        "The same static server on QEMU {} ({}, {} host cores{busy}), tap networking. \
         Load: `{}` at {} MiB; first response: median of {} boots.\n\n",
        r.machine, r.accel, r.cpus, r.load, r.memory_mib, r.boots
    ));
    s.push_str("| | Kiln | Linux guest | Kiln / Linux |\n|---|---:|---:|---:|\n");
    let row = |s: &mut String, what: &str, kv: String, lv: String, rt: String| {
        s.push_str(&format!("| {what} | {kv} | {lv} | {rt} |\n"));
    };
    row(
        &mut s,
        "requests per second",
        opt(k.rps, |v| format!("{v:.0}")),
        opt(l.rps, |v| format!("{v:.0}")),
        ratio(k.rps, l.rps),
    );
    for (what, kv, lv) in [("p50 latency", k.p50, l.p50), ("p99 latency", k.p99, l.p99)] {
        row(
            &mut s,
            what,
            opt(kv, ms),
            opt(lv, ms),
            ratio(kv.map(secs), lv.map(secs)),
        );
    }
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
    let throughput = k.rps.zip(l.rps).map(|(k, l)| k >= l);
    let start = kf.zip(lf).map(|(k, l)| k * 10 <= l);
    let mem32 = k.min_memory.map(|m| m <= 32).or(
        // No answer but sizes were tried: nothing served.
        (!k.memory_tried.is_empty()).then_some(false),
    );
    s.push_str(&format!(
        "Targets: throughput at least 1.0x Linux's (aim 1.5x): {}; first response within 1/10 \
         of Linux's: {}; serves in 32 MiB: {}.\n\n",
        verdict(throughput),
        verdict(start),
        verdict(mem32)
    ));
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
    for side in [k, l] {
        if side.load_errors > 0 {
            s.push_str(&format!(
                "- {} had {} failed requests under the main load.\n",
                side.name, side.load_errors
            ));
        }
    }
    if !r.server.is_empty() {
        s.push_str(&format!("- Server: {}.\n", r.server));
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

    fn side(name: &str, rps: f64, lat_ms: u64, first_ms: u64, size: u64, mem: u64) -> Side {
        Side {
            name: name.into(),
            rps: Some(rps),
            p50: Some(Duration::from_millis(lat_ms)),
            p99: Some(Duration::from_millis(lat_ms * 4)),
            first_responses: vec![Duration::from_millis(first_ms)],
            image_size: Some(size),
            image_detail: String::new(),
            min_memory: Some(mem),
            memory_tried: vec![(mem, true)],
            load_errors: 0,
            failure: None,
        }
    }

    #[test]
    fn table_with_ratios() {
        let r = HttpReport {
            kiln: side("Kiln", 3000.0, 2, 300, 1_500_000, 16),
            linux: side("Linux", 2000.0, 4, 6000, 9_000_000, 96),
            accel: "TCG".into(),
            cpus: 2,
            machine: "q35".into(),
            memory_mib: 256,
            load: "wrk -t2 -c16 -d10s".into(),
            boots: 3,
            ..HttpReport::default()
        };
        let s = format_report(&r);
        assert!(
            s.contains("| requests per second | 3000 | 2000 | 1.50x |"),
            "{s}"
        );
        assert!(
            s.contains("| p50 latency | 2.00 ms | 4.00 ms | 0.50x |"),
            "{s}"
        );
        assert!(
            s.contains("| p99 latency | 8.00 ms | 16.0 ms | 0.50x |"),
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
        assert!(s.contains("1.0x Linux's (aim 1.5x): met; first response within 1/10 of Linux's: met; serves in 32 MiB: met"), "{s}");
    }

    #[test]
    fn failures_show() {
        let r = HttpReport {
            kiln: Side {
                name: "Kiln".into(),
                failure: Some("no network".into()),
                memory_tried: vec![(256, false)],
                ..Side::default()
            },
            linux: side("Linux", 2000.0, 4, 6000, 9_000_000, 96),
            ..HttpReport::default()
        };
        let s = format_report(&r);
        assert!(
            s.contains("| requests per second | failed | 2000 |  |"),
            "{s}"
        );
        assert!(
            s.contains("| smallest --memory that serves | over 256 MiB | 96 MiB |  |"),
            "{s}"
        );
        assert!(
            s.contains("throughput at least 1.0x Linux's (aim 1.5x): not measured"),
            "{s}"
        );
        assert!(s.contains("serves in 32 MiB: missed"), "{s}");
        assert!(s.contains("Kiln failed: no network"), "{s}");
    }
}
