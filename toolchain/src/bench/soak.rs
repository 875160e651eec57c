//! `bench soak`: the HTTP example under constant load for minutes, through `run -p`'s user
//! networking. It reports every failed request (by kind: connect, write, read, timeout,
//! status; there must be none) and the kernel's memory use before and after the load, from
//! the `kiln: mem used=... heap=...` lines the kernel logs with `kiln.memlog` (it must not
//! grow beyond noise). The load comes from [`super::load`], which accounts for each request
//! (see there why not wrk).
//!
//! The order: boot, a warm-up load (so pools and buffers reach their working size), a
//! quiet pause, the memory reading "before", the load, a quiet pause (closed connections
//! finish), the memory reading "after".

use crate::qemu::args::{self, NetBackend, NetOptions, PortForward, StreamPaths};
use crate::qemu::{Accel, Machine, RunOptions};
use crate::Layout;
use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use super::http::vm::{self, Vm};
use super::load::{self, LoadResult, REQUEST_TIMEOUT};

/// The heading of this benchmark's section of `BENCHMARKS.md`.
pub const HEADING: &str = "## Soak: constant HTTP load";

/// The port the server listens on in the guest (its `PORT`).
const GUEST_PORT: u16 = 8080;
/// Seconds between the kernel's memory lines.
const MEMLOG_SECS: u32 = 2;
/// Quiet time before each memory reading: connections close, TIME-WAIT ends.
const SETTLE: Duration = Duration::from_secs(8);
/// Memory growth that still counts as flat: this many KiB, or this share of the start,
/// whichever is larger.
const FLAT_KIB: u64 = 1024;
const FLAT_SHARE: f64 = 0.05;

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoakOptions {
    /// The example that is the server.
    pub example: String,
    /// Minutes of load.
    pub minutes: u32,
    /// Open connections (one client thread each).
    pub connections: u32,
    /// Guest memory (MiB).
    pub memory_mib: u64,
    /// Seconds of warm-up load.
    pub warmup_secs: u32,
}

impl Default for SoakOptions {
    fn default() -> Self {
        SoakOptions {
            example: "http-hello".into(),
            minutes: 10,
            connections: 64,
            memory_mib: 256,
            warmup_secs: 10,
        }
    }
}

/// One memory line of the kernel log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemSample {
    /// All RAM handed out (KiB).
    pub used_kib: u64,
    /// Kernel heap in use (KiB).
    pub heap_kib: u64,
    /// Page tables (KiB); 0 from kernels that do not report them.
    pub tables_kib: u64,
    /// Network buffers, part of the heap (KiB); 0 from kernels that do not report them.
    pub net_kib: u64,
}

/// What a soak measured.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SoakReport {
    /// The load as a command line.
    pub load: String,
    /// Minutes of load.
    pub minutes: u32,
    /// Open connections.
    pub connections: u32,
    /// What the clients saw (latencies dropped).
    pub result: LoadResult,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// The slowest answer.
    pub max: Duration,
    /// Memory after the warm-up, quiet.
    pub mem_start: MemSample,
    /// Memory after the load, quiet.
    pub mem_end: MemSample,
    /// The highest readings during the load.
    pub mem_peak: MemSample,
    /// Readings taken during the load.
    pub samples: usize,
    /// The QEMU machine.
    pub machine: String,
    /// The accelerator (TCG or KVM).
    pub accel: String,
    /// Guest memory (MiB).
    pub memory_mib: u64,
    /// Host load average at the start.
    pub host_load: String,
    /// Why the soak could not finish, if it could not.
    pub failure: Option<String>,
}

impl SoakReport {
    /// Failed requests of any kind.
    pub fn failed(&self) -> u64 {
        self.result.failed()
    }

    /// Whether `end` is within noise of `start` (see [`FLAT_KIB`], [`FLAT_SHARE`]).
    pub fn flat(start: u64, end: u64) -> bool {
        let allowed = FLAT_KIB.max((start as f64 * FLAT_SHARE) as u64);
        end <= start + allowed
    }

    /// Whether memory stayed flat (both readings).
    pub fn memory_flat(&self) -> bool {
        Self::flat(self.mem_start.used_kib, self.mem_end.used_kib)
            && Self::flat(self.mem_start.heap_kib, self.mem_end.heap_kib)
    }

    /// Whether the soak passed: it ran, no request failed, memory stayed flat.
    pub fn passed(&self) -> bool {
        self.failure.is_none() && self.result.ok > 0 && self.failed() == 0 && self.memory_flat()
    }
}

/// Parses `kiln: mem used=N KiB heap=M KiB [tables=T KiB net=B KiB]`.
pub fn parse_mem_line(line: &str) -> Option<MemSample> {
    let rest = line.trim().strip_prefix("kiln: mem ")?;
    let mut fields = std::collections::HashMap::new();
    let words: Vec<&str> = rest.split(' ').collect();
    for pair in words.chunks(2) {
        let [kv, "KiB"] = pair else { return None };
        let (k, v) = kv.split_once('=')?;
        fields.insert(k, v.parse::<u64>().ok()?);
    }
    Some(MemSample {
        used_kib: *fields.get("used")?,
        heap_kib: *fields.get("heap")?,
        tables_kib: fields.get("tables").copied().unwrap_or(0),
        net_kib: fields.get("net").copied().unwrap_or(0),
    })
}

/// Every memory line in the kernel log `text`, in order.
pub fn mem_samples(text: &str) -> Vec<MemSample> {
    text.lines().filter_map(parse_mem_line).collect()
}

/// A free TCP port on the host.
fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The memory lines logged so far.
fn samples(console: &Path) -> Vec<MemSample> {
    mem_samples(&std::fs::read_to_string(console).unwrap_or_default())
}

/// Waits `SETTLE` plus time for a fresh memory line; the newest line.
fn settled_reading(console: &Path) -> Option<MemSample> {
    std::thread::sleep(SETTLE + Duration::from_secs(u64::from(MEMLOG_SECS) + 1));
    samples(console).last().copied()
}

/// Builds the image, boots it, runs the soak and returns the report (a failure under load
/// is reported, not an error; failing to build or start is an error).
pub fn soak(layout: &Layout, opts: &SoakOptions) -> anyhow::Result<SoakReport> {
    let machine = Machine::default();
    let (qemu_bin, accel) = crate::qemu::prepare(layout, machine)?;
    let dir = layout.kiln_dir().join("bench/soak");
    std::fs::create_dir_all(&dir)?;
    let image = super::build_example(layout, &opts.example, &dir)?;
    let host_port = free_port()?;
    let paths = StreamPaths {
        stdout: dir.join("stdout"),
        stderr: dir.join("stderr"),
        log: dir.join("console.log"),
        status: dir.join("status"),
        records: dir.join("records"),
        qmp: None,
        profiler_qmp: None,
        stdin: None,
    };
    let run = RunOptions {
        machine,
        memory_mib: Some(opts.memory_mib),
        env: vec![("PORT".into(), GUEST_PORT.to_string())],
        net: NetOptions {
            backend: NetBackend::User,
            forwards: vec![PortForward {
                host: host_port,
                guest: GUEST_PORT,
                udp: false,
            }],
            ..NetOptions::default()
        },
        ..RunOptions::default()
    };
    let target = machine.target();
    let accel = accel.accel;
    let mut qemu_args = args::qemu_args(&target, &run, accel, &image.path, &paths);
    with_memlog(&mut qemu_args, MEMLOG_SECS);
    let _ = std::fs::remove_file(&paths.log);
    let host_load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_default();
    let mut report = SoakReport {
        load: format!(
            "{} keep-alive clients (started at once) sending GET / for {} min",
            opts.connections, opts.minutes
        ),
        connections: opts.connections,
        minutes: opts.minutes,
        machine: machine.name().into(),
        accel: match accel {
            Accel::Tcg => "TCG",
            Accel::Kvm => "KVM",
        }
        .into(),
        memory_mib: opts.memory_mib,
        host_load,
        ..SoakReport::default()
    };

    let mut vm = Vm::start(&qemu_bin, &qemu_args, &dir.join("qemu.log"), &paths.log)?;
    // The forwarded port gets a real listen backlog, as under `run -p`.
    let _backlog = crate::qemu::widen_backlogs(vm.pid(), &run);
    let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, host_port));
    if let Err(e) = vm.first_response(addr, Duration::from_secs(180)) {
        report.failure = Some(e);
        return Ok(report);
    }
    crate::note!("soak: warm-up, {} s", opts.warmup_secs);
    let clients = opts.connections as usize;
    let warm = load::drive(
        addr,
        clients,
        Duration::from_secs(u64::from(opts.warmup_secs)),
        true,
    );
    crate::note!(
        "soak: warm-up: {} requests, {} failed",
        warm.ok,
        warm.failed()
    );
    let Some(start) = settled_reading(&paths.log) else {
        report.failure = Some(format!(
            "the kernel logged no memory line; its last lines:\n{}",
            vm.log_tail()
        ));
        return Ok(report);
    };
    report.mem_start = start;
    let before = samples(&paths.log).len();
    crate::note!(
        "soak: memory before: used {} KiB, heap {} KiB; load: {}",
        start.used_kib,
        start.heap_kib,
        report.load
    );
    let mut result = load::drive(
        addr,
        clients,
        Duration::from_secs(u64::from(opts.minutes) * 60),
        true,
    );
    report.p50 = result.percentile(0.5);
    report.p99 = result.percentile(0.99);
    report.max = result.percentile(1.0);
    result.latencies = Vec::new();
    report.result = result;
    crate::note!(
        "soak: {} requests, {} failed",
        report.result.ok,
        report.failed()
    );
    let during = samples(&paths.log);
    let during = &during[before.min(during.len())..];
    report.samples = during.len();
    report.mem_peak = MemSample {
        used_kib: during.iter().map(|s| s.used_kib).max().unwrap_or(0),
        heap_kib: during.iter().map(|s| s.heap_kib).max().unwrap_or(0),
        tables_kib: during.iter().map(|s| s.tables_kib).max().unwrap_or(0),
        net_kib: during.iter().map(|s| s.net_kib).max().unwrap_or(0),
    };
    if let Some(why) = vm.exited() {
        report.failure = Some(format!(
            "{why} under load; its last lines:\n{}",
            vm.log_tail()
        ));
        return Ok(report);
    }
    report.mem_end = settled_reading(&paths.log).unwrap_or_default();
    if !vm::get_ok(addr, Duration::from_secs(5)) {
        report.failure = Some("no answer after the load".into());
    }
    vm.stop();
    Ok(report)
}

/// Adds `kiln.memlog=SECS` to the kernel command line in QEMU's arguments.
fn with_memlog(args: &mut [OsString], secs: u32) {
    if let Some(i) = args.iter().position(|a| a == "-append") {
        if let Some(cmdline) = args.get_mut(i + 1) {
            cmdline.push(format!(" kiln.memlog={secs}"));
        }
    }
}

/// The report as Markdown.
pub fn format_report(r: &SoakReport) -> String {
    let mut s = String::new();
    let verdict = |ok: bool| if ok { "met" } else { "missed" };
    s.push_str(&format!(
        "Load: {} against examples/http-hello, QEMU {} ({}, host load average {} at the \
         start), {} MiB, user networking with a port forward (`run -p`).\n\n",
        r.load, r.machine, r.accel, r.host_load, r.memory_mib
    ));
    if let Some(f) = &r.failure {
        s.push_str(&format!("The soak did not finish: {f}\n\n"));
    }
    s.push_str("| | |\n|---|---:|\n");
    s.push_str(&format!("| requests | {} |\n", r.result.ok));
    s.push_str(&format!(
        "| requests per second | {:.0} |\n",
        r.result.rps()
    ));
    s.push_str(&format!(
        "| p50 / p99 / slowest answer | {:.1} ms / {:.1} ms / {:.2} s |\n",
        r.p50.as_secs_f64() * 1e3,
        r.p99.as_secs_f64() * 1e3,
        r.max.as_secs_f64()
    ));
    s.push_str(&format!(
        "| failed requests | {} (connect {}, write {}, read {}, timeout {}, status {}) |\n",
        r.failed(),
        r.result.connect,
        r.result.write,
        r.result.read,
        r.result.timeout,
        r.result.status
    ));
    s.push_str(&format!(
        "| slowest connection set-up | {:.2} s |\n",
        r.result.slowest_connect.as_secs_f64()
    ));
    s.push_str(&format!(
        "| RAM in use, quiet, before / after | {} KiB / {} KiB |\n",
        r.mem_start.used_kib, r.mem_end.used_kib
    ));
    s.push_str(&format!(
        "| kernel heap, quiet, before / after | {} KiB / {} KiB |\n",
        r.mem_start.heap_kib, r.mem_end.heap_kib
    ));
    s.push_str(&format!(
        "| page tables, quiet, before / after | {} KiB / {} KiB |\n",
        r.mem_start.tables_kib, r.mem_end.tables_kib
    ));
    s.push_str(&format!(
        "| network buffers (in the heap), quiet, before / after | {} KiB / {} KiB |\n",
        r.mem_start.net_kib, r.mem_end.net_kib
    ));
    s.push_str(&format!(
        "| highest during the load (RAM / heap / page tables / network buffers) | {} KiB / {} KiB / {} KiB / {} KiB ({} readings) |\n",
        r.mem_peak.used_kib, r.mem_peak.heap_kib, r.mem_peak.tables_kib, r.mem_peak.net_kib, r.samples
    ));
    s.push_str(&format!(
        "\nTargets: no failed request: {}; memory flat (after within {} KiB or {:.0}% of \
         before): {}.\n",
        verdict(r.failure.is_none() && r.result.ok > 0 && r.failed() == 0),
        FLAT_KIB,
        FLAT_SHARE * 100.0,
        verdict(r.failure.is_none() && r.memory_flat())
    ));
    s.push_str(&format!(
        "\nA request fails when its connection cannot be made, its write fails, its connection \
         is reset or closed before the whole answer, no answer comes within {} s, or the \
         answer is not a 200 with its body. Memory readings are the kernel's `kiln.memlog` lines (RAM handed out, kernel heap in use), \
         taken after a {} s warm-up at the same load and again after the load, each after \
         {} s without connections.\n",
        REQUEST_TIMEOUT.as_secs(),
        SoakOptions::default().warmup_secs,
        SETTLE.as_secs()
    ));
    s
}

/// Rewrites the soak section of `BENCHMARKS.md`.
pub fn write_markdown(layout: &Layout, report: &SoakReport, command: &str) -> anyhow::Result<()> {
    let body = format!(
        "Measured with `{command}`. Under TCG (software emulation) the rate is low; what \
         counts here is that nothing fails and nothing grows.\n\n{}",
        format_report(report)
    );
    super::markdown::write_section(layout, HEADING, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_lines() {
        let log = "kiln: kernel booted\nkiln: mem used=5120 KiB heap=1894 KiB\nnoise\n\
                   kiln: mem used=6000 KiB heap=2000 KiB tables=68 KiB net=1152 KiB\n\
                   kiln: mem used=x KiB heap=1 KiB\nkiln: mem used=1 KiB\n";
        assert_eq!(
            mem_samples(log),
            vec![
                MemSample {
                    used_kib: 5120,
                    heap_kib: 1894,
                    ..MemSample::default()
                },
                MemSample {
                    used_kib: 6000,
                    heap_kib: 2000,
                    tables_kib: 68,
                    net_kib: 1152
                }
            ]
        );
    }

    #[test]
    fn flatness() {
        assert!(SoakReport::flat(10_000, 10_900));
        assert!(!SoakReport::flat(10_000, 11_100));
        assert!(SoakReport::flat(100_000, 104_000));
        assert!(!SoakReport::flat(100_000, 106_000));
        assert!(SoakReport::flat(10_000, 8_000));
    }

    #[test]
    fn memlog_goes_on_the_kernel_command_line() {
        let mut a: Vec<OsString> = vec!["-m".into(), "-append".into(), "kiln.verbose".into()];
        with_memlog(&mut a, 2);
        assert_eq!(a[2], "kiln.verbose kiln.memlog=2");
    }

    #[test]
    fn report_shows_failures_and_memory() {
        let r = SoakReport {
            load: "64 clients".into(),
            minutes: 10,
            result: LoadResult {
                ok: 1000,
                read: 2,
                ..LoadResult::default()
            },
            mem_start: MemSample {
                used_kib: 10_000,
                heap_kib: 5_000,
                ..MemSample::default()
            },
            mem_end: MemSample {
                used_kib: 10_100,
                heap_kib: 5_050,
                ..MemSample::default()
            },
            ..SoakReport::default()
        };
        assert_eq!(r.failed(), 2);
        assert!(r.memory_flat());
        assert!(!r.passed());
        let md = format_report(&r);
        assert!(md.contains("| failed requests | 2 (connect 0, write 0, read 2"));
        assert!(md.contains("no failed request: missed"));
        assert!(md.contains("memory flat (after within 1024 KiB or 5% of before): met"));
    }
}
