//! `bench redis`: Debian's own `/usr/bin/redis-server` (dynamically linked, unmodified) served
//! (a) as a Kiln image (`build-image --elf /usr/bin/redis-server`) and (b) as the only program
//! of the minimal Linux guest that `bench http` builds, its loader and libraries packed into
//! the initramfs at the paths the loader asks for ([`linux::library_entries`]). Both run on
//! the same QEMU machine, accelerator and memory, over a tap device of their own (not
//! `bench http`'s, so the two can run at once), with the same arguments
//! ([`SERVER_ARGS`]: no persistence, no protected mode, 0.0.0.0:6379).
//!
//! Debian's `redis-benchmark` loads each side from the host: `SET` and `GET`, without
//! pipelining and with `-P N` ([`Run::args`]). Then the smallest memory that serves, as in
//! `bench http`: a binary search over [`MEMORY_SIZES`] with a short `redis-benchmark` run as
//! the test ([`probe_run`]).
//!
//! Every wait has a deadline: the boot (`PING` answered with `+PONG`, probed every 10 ms),
//! each `redis-benchmark` (which waits for ever on a server that stopped answering, and even
//! on a refused connection), and QEMU's end.

use super::http::linux::{self, Extra};
use super::http::report::{ms, ratio, smallest_passing, MEMORY_SIZES};
use super::http::tap::{self, TapConfig};
use super::http::vm;
use super::http::{Boot, Guest};
use crate::app::AppSource;
use crate::qemu::{Accel, Machine};
use crate::Layout;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The heading of this benchmark's section of `BENCHMARKS.md`.
pub const HEADING: &str = "## Redis: Kiln vs a Linux guest";

/// The server, and the Debian package that installs it.
pub const SERVER: &str = "/usr/bin/redis-server";
/// Debian's package with [`SERVER`].
pub const SERVER_PACKAGE: &str = "redis-server";
/// The load generator, and its package.
pub const BENCHMARK: &str = "redis-benchmark";
/// Debian's package with [`BENCHMARK`].
pub const BENCHMARK_PACKAGE: &str = "redis-tools";

/// The port the server listens on.
pub const PORT: u16 = 6379;

/// The server's arguments on both sides: no RDB snapshots (a save forks), no append-only
/// file, reachable from the host.
pub const SERVER_ARGS: [&str; 10] = [
    "--save",
    "",
    "--appendonly",
    "no",
    "--protected-mode",
    "no",
    "--bind",
    "0.0.0.0",
    "--port",
    "6379",
];

/// Requests per command of the memory search's short run.
pub const PROBE_REQUESTS: u32 = 2000;

/// The tap device and addresses: not `bench http`'s (`kilnbench0`, 10.77.77.0/24), so both
/// benchmarks can run at the same time.
pub fn default_network() -> TapConfig {
    TapConfig {
        name: "kilnredis0".into(),
        host: [10, 77, 79, 1],
        guest: [10, 77, 79, 2],
        prefix: 24,
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// Requests per command (`redis-benchmark -n`).
    pub requests: u32,
    /// Parallel connections (`-c`).
    pub clients: u32,
    /// Commands per pipeline in the pipelined runs (`-P`); the others send one at a time.
    pub pipeline: u32,
    /// How many times each run is repeated on the boot of each side (the report gives the
    /// median rate): the two runs alternate.
    pub repeats: u32,
    /// Guest memory for the measured runs (MiB).
    pub memory_mib: u64,
    /// Whether to search for the smallest memory that serves.
    pub memory_search: bool,
    /// The QEMU machine (the same for both sides).
    pub machine: Machine,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            requests: 100_000,
            clients: 16,
            pipeline: 16,
            repeats: 3,
            memory_mib: 256,
            memory_search: true,
            machine: Machine::Q35,
        }
    }
}

impl RedisOptions {
    /// Refuses values redis-benchmark would misread or that cannot measure anything.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.requests == 0 || self.clients == 0 || self.repeats == 0 {
            bail!("bench redis: --requests, --clients and --runs must be at least 1");
        }
        if self.pipeline < 2 {
            bail!(
                "bench redis: --pipeline must be at least 2 (the runs without pipelining are \
                 always measured)"
            );
        }
        if self.memory_mib < 8 {
            bail!("bench redis: --memory must be at least 8 MiB");
        }
        Ok(())
    }

    /// The measured runs, in order: without pipelining, then with it.
    pub fn runs(&self) -> [Run; 2] {
        [
            Run {
                requests: self.requests,
                clients: self.clients,
                pipeline: 1,
            },
            Run {
                requests: self.requests,
                clients: self.clients,
                pipeline: self.pipeline,
            },
        ]
    }
}

/// One `redis-benchmark -t set,get` invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// `-n`.
    pub requests: u32,
    /// `-c`.
    pub clients: u32,
    /// `-P` (1: no pipelining, and no `-P`).
    pub pipeline: u32,
}

/// The short run that decides whether a memory size serves.
pub fn probe_run(opts: &RedisOptions) -> Run {
    Run {
        requests: PROBE_REQUESTS.min(opts.requests),
        clients: opts.clients,
        pipeline: 1,
    }
}

impl Run {
    /// redis-benchmark's arguments against `host`.
    pub fn args(&self, host: &str) -> Vec<String> {
        let mut a: Vec<String> = [
            "-h",
            host,
            "-p",
            &PORT.to_string(),
            "-t",
            "set,get",
            "-n",
            &self.requests.to_string(),
            "-c",
            &self.clients.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if self.pipeline > 1 {
            a.push("-P".into());
            a.push(self.pipeline.to_string());
        }
        a.extend(["-q".into(), "--csv".into()]);
        a
    }

    /// The command line, as the report shows it.
    pub fn command(&self, host: &str) -> String {
        format!("{BENCHMARK} {}", self.args(host).join(" "))
    }

    /// For the table: `no pipelining` or `pipelining 16`.
    pub fn label(&self) -> String {
        if self.pipeline > 1 {
            format!("-P {}", self.pipeline)
        } else {
            "no pipelining".into()
        }
    }

    /// How long this run may take before it is stopped: 60 s, plus 10 ms per request
    /// (two commands: a guest that manages less than 200 requests/s is broken, not slow).
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(60) + Duration::from_millis(10) * self.requests
    }
}

/// One line of `redis-benchmark --csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `SET`, `GET`.
    pub test: String,
    /// Requests per second.
    pub rps: f64,
    /// Median latency (ms).
    pub p50_ms: f64,
    /// 99th percentile latency (ms).
    pub p99_ms: f64,
}

/// Parses `redis-benchmark --csv` output (7.x: a header line `"test","rps",
/// "avg_latency_ms",...`, then a line per command; 6.x: `"SET","12345.00"` with no header).
pub fn parse_csv(out: &str) -> anyhow::Result<Vec<Row>> {
    let fields = |line: &str| -> Vec<String> {
        line.split(',')
            .map(|f| f.trim().trim_matches('"').to_string())
            .collect()
    };
    let mut header: Option<Vec<String>> = None;
    let mut rows = Vec::new();
    for line in out.lines().map(str::trim).filter(|l| l.starts_with('"')) {
        let f = fields(line);
        if f.first().map(String::as_str) == Some("test") {
            header = Some(f);
            continue;
        }
        let col = |name: &str, default: usize| -> Option<f64> {
            let i = header
                .as_ref()
                .map_or(Some(default), |h| h.iter().position(|c| c == name))?;
            f.get(i)?.parse().ok()
        };
        let Some(rps) = col("rps", 1) else {
            bail!("redis-benchmark printed a line without a rate: {line}");
        };
        rows.push(Row {
            test: f[0].clone(),
            rps,
            p50_ms: col("p50_latency_ms", usize::MAX).unwrap_or(f64::NAN),
            p99_ms: col("p99_latency_ms", usize::MAX).unwrap_or(f64::NAN),
        });
    }
    if rows.is_empty() {
        bail!(
            "redis-benchmark printed no results: {}",
            out.trim().lines().last().unwrap_or("(nothing)")
        );
    }
    Ok(rows)
}

/// The rate of `test` (`SET`, `GET`) in `rows`.
pub fn rate(rows: &[Row], test: &str) -> Option<f64> {
    rows.iter().find(|r| r.test == test).map(|r| r.rps)
}

/// `program` when it is on this machine; otherwise an error naming the Debian package that
/// installs it (`found` is where it was looked for: a path, or `which` in `PATH`).
pub fn require(program: &str, package: &str, found: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    found.with_context(|| {
        format!(
            "{program} is not installed: bench redis needs Debian's {package} package \
             (apt-get install --no-install-recommends {package})"
        )
    })
}

/// Runs redis-benchmark with `args`, stopped after `timeout`; its parsed rows.
pub fn run_benchmark(
    bin: &Path,
    args: &[String],
    timeout: Duration,
    dir: &Path,
) -> anyhow::Result<Vec<Row>> {
    let out_path = dir.join("redis-benchmark.out");
    let err_path = dir.join("redis-benchmark.err");
    let out = std::fs::File::create(&out_path)?;
    let err = std::fs::File::create(&err_path)?;
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("could not start {}", bin.display()))?;
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if start.elapsed() > timeout {
            crate::qemu::kill_and_reap(&mut child);
            let err = std::fs::read_to_string(&err_path).unwrap_or_default();
            bail!(
                "redis-benchmark did not finish within {} s (stopped){}",
                timeout.as_secs(),
                last_line(&err).map_or(String::new(), |l| format!("; it said: {l}"))
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    if !status.success() {
        bail!(
            "redis-benchmark failed ({status}){}",
            last_line(&stderr).map_or(String::new(), |l| format!(": {l}"))
        );
    }
    parse_csv(&stdout)
}

fn last_line(s: &str) -> Option<&str> {
    s.lines().map(str::trim).rfind(|l| !l.is_empty())
}

/// One measured `redis-benchmark` run of one side.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// Which run (see [`RedisOptions::runs`]).
    pub run: Run,
    /// Its rows; `None` when it failed.
    pub rows: Option<Vec<Row>>,
}

/// One side of the comparison.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Side {
    /// `Kiln` or `Linux`.
    pub name: String,
    /// The measured runs, in order.
    pub runs: Vec<Measured>,
    /// QEMU start to the first `+PONG`.
    pub first_response: Option<Duration>,
    /// Bytes the guest boots from.
    pub image_size: Option<u64>,
    /// What the image is made of.
    pub image_detail: String,
    /// Smallest `--memory` (MiB) that served the short run.
    pub min_memory: Option<u64>,
    /// Memory sizes tried, with whether each served.
    pub memory_tried: Vec<(u64, bool)>,
    /// Why each size that did not serve failed.
    pub memory_failures: Vec<(u64, String)>,
    /// What went wrong, one line per problem.
    pub failure: Option<String>,
}

impl Side {
    /// Records a problem (after any recorded before).
    pub fn fail(&mut self, why: impl Into<String>) {
        let why = why.into();
        self.failure = Some(match self.failure.take() {
            Some(f) => format!("{f}\n{why}"),
            None => why,
        });
    }

    /// The rows of `test` in every repetition of the run with `pipeline` that completed.
    pub fn rows(&self, pipeline: u32, test: &str) -> Vec<&Row> {
        self.runs
            .iter()
            .filter(|m| m.run.pipeline == pipeline)
            .filter_map(|m| m.rows.as_ref()?.iter().find(|r| r.test == test))
            .collect()
    }

    /// The median rate of `test` over the repetitions of the run with `pipeline`.
    pub fn rate(&self, pipeline: u32, test: &str) -> Option<f64> {
        median(self.rows(pipeline, test).iter().map(|r| r.rps).collect())
    }
}

/// The median of `v` (the mean of the middle two for an even count); `None` when empty.
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| !x.is_nan());
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Everything `bench redis` reports.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RedisReport {
    /// The unikernel.
    pub kiln: Side,
    /// The Linux guest.
    pub linux: Side,
    /// The measured runs, in order.
    pub runs: Vec<Run>,
    /// How many times each ran on each side.
    pub repeats: u32,
    /// The host the load targets (the guest's address).
    pub host: String,
    /// `TCG` or `KVM`.
    pub accel: String,
    /// Host CPUs.
    pub cpus: usize,
    /// The host's 1-minute load average when the benchmark started.
    pub host_load: String,
    /// QEMU machine.
    pub machine: String,
    /// Memory of the measured runs (MiB).
    pub memory_mib: u64,
    /// The memory search's short run, if it ran.
    pub probe: Option<Run>,
    /// The Linux kernel package.
    pub linux_kernel: String,
    /// The server: path, size, digest, libraries.
    pub server: String,
    /// redis-benchmark's version line.
    pub benchmark_version: String,
}

/// The side-by-side table (requests/s of SET and GET without and with pipelining, the time
/// to the first answer, image size, smallest memory; Kiln/Linux ratios), then notes.
pub fn format_report(r: &RedisReport) -> String {
    let (k, l) = (&r.kiln, &r.linux);
    let mut s = String::new();
    let busy = if r.host_load.is_empty() {
        String::new()
    } else {
        format!(", host load average {} at the start", r.host_load)
    };
    s.push_str(&format!(
        "Debian's redis-server on QEMU {} ({}, {} host cores{busy}), tap networking, {} MiB; \
         the runs one after the other on one boot of each side{}.\n\n",
        r.machine,
        r.accel,
        r.cpus,
        r.memory_mib,
        if r.repeats > 1 {
            format!(
                ", each {} times (alternating), requests/s the median",
                r.repeats
            )
        } else {
            String::new()
        }
    ));
    s.push_str("| | Kiln | Linux guest | Kiln / Linux |\n|---|---:|---:|---:|\n");
    let row = |s: &mut String, what: &str, kv: String, lv: String, rt: String| {
        s.push_str(&format!("| {what} | {kv} | {lv} | {rt} |\n"));
    };
    let fmt_rate = |v: Option<f64>| v.map_or("failed".to_string(), |v| format!("{v:.0}"));
    for run in &r.runs {
        for test in ["SET", "GET"] {
            let (kv, lv) = (k.rate(run.pipeline, test), l.rate(run.pipeline, test));
            row(
                &mut s,
                &format!("{test} requests/s, {}", run.label()),
                fmt_rate(kv),
                fmt_rate(lv),
                ratio(kv, lv),
            );
        }
    }
    let secs = |d: Duration| d.as_secs_f64();
    row(
        &mut s,
        "QEMU start to first PONG",
        k.first_response.map_or("failed".into(), ms),
        l.first_response.map_or("failed".into(), ms),
        ratio(k.first_response.map(secs), l.first_response.map(secs)),
    );
    let bytes = |b: Option<u64>| b.map_or("failed".into(), |b| format!("{b} bytes"));
    row(
        &mut s,
        "image size",
        bytes(k.image_size),
        bytes(l.image_size),
        ratio(
            k.image_size.map(|v| v as f64),
            l.image_size.map(|v| v as f64),
        ),
    );
    let min_mem = |side: &Side| match side.min_memory {
        Some(m) => format!("{m} MiB"),
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
    for run in &r.runs {
        s.push_str(&format!("- {}: `{}`\n", run.label(), run.command(&r.host)));
    }
    if !r.benchmark_version.is_empty() {
        s.push_str(&format!("- Load generator: {}.\n", r.benchmark_version));
    }
    for side in [k, l] {
        let mut every = Vec::new();
        let mut lat = Vec::new();
        for run in &r.runs {
            for test in ["SET", "GET"] {
                let rows = side.rows(run.pipeline, test);
                if rows.is_empty() {
                    continue;
                }
                let rates: Vec<String> = rows.iter().map(|r| format!("{:.0}", r.rps)).collect();
                every.push(format!("{test} {} {}", run.label(), rates.join(", ")));
                let med = |f: fn(&Row) -> f64| {
                    median(rows.iter().map(|r| f(r)).collect()).unwrap_or(f64::NAN)
                };
                lat.push(format!(
                    "{test} {} p50 {:.2} ms, p99 {:.2} ms",
                    run.label(),
                    med(|r| r.p50_ms),
                    med(|r| r.p99_ms)
                ));
            }
        }
        if r.repeats > 1 && !every.is_empty() {
            s.push_str(&format!(
                "- {} requests/s of each repetition: {}.\n",
                side.name,
                every.join("; ")
            ));
        }
        if !lat.is_empty() {
            s.push_str(&format!(
                "- {} latencies (redis-benchmark's{}): {}.\n",
                side.name,
                if r.repeats > 1 { ", medians" } else { "" },
                lat.join("; ")
            ));
        }
    }
    if !r.server.is_empty() {
        s.push_str(&format!("- Server: {}.\n", r.server));
    }
    for side in [k, l] {
        if !side.image_detail.is_empty() {
            s.push_str(&format!("- {} image: {}.\n", side.name, side.image_detail));
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
        for (m, why) in &side.memory_failures {
            s.push_str(&format!(
                "- {} at {m} MiB: {}.\n",
                side.name,
                why.trim_end_matches('.')
            ));
        }
    }
    if !r.linux_kernel.is_empty() {
        s.push_str(&format!("- Linux: Debian's {}.\n", r.linux_kernel));
    }
    if let Some(p) = &r.probe {
        s.push_str(&format!(
            "- A memory size serves when, in one of two tries, the guest answers PING within \
             the boot timeout, then `{}` completes (SET and GET both report a rate), and the \
             guest still answers PING afterwards.\n",
            p.command(&r.host)
        ));
    }
    for side in [k, l] {
        if let Some(f) = &side.failure {
            s.push_str(&format!("\n{} failed: {}\n", side.name, f.trim()));
        }
    }
    s
}

/// Boot, measured runs and the memory search for one side.
fn measure(guest: &Guest, bench: &Path, opts: &RedisOptions, side: &mut Side) {
    let boot_timeout = Duration::from_secs(180);
    let host = tap::quad(guest.net.guest);
    crate::note!("{}: boot ({} MiB)", guest.name, opts.memory_mib);
    match guest.start(opts.memory_mib) {
        Err(e) => side.fail(format!("{e:#}")),
        Ok(mut vm) => match vm.first_answer(guest.addr(), boot_timeout, vm::ping_ok) {
            Err(e) => side.fail(e),
            Ok(t) => {
                crate::note!("{}: first PONG after {:.3} s", guest.name, t.as_secs_f64());
                side.first_response = Some(t);
                let runs = opts.runs();
                let all = (0..opts.repeats).flat_map(|_| runs.iter().copied());
                for run in all {
                    crate::note!("{}: {}", guest.name, run.command(&host));
                    let rows =
                        match run_benchmark(bench, &run.args(&host), run.timeout(), &guest.dir) {
                            Ok(rows) => {
                                for r in &rows {
                                    crate::note!(
                                        "{}: {} {}: {:.0} requests/s",
                                        guest.name,
                                        r.test,
                                        run.label(),
                                        r.rps
                                    );
                                }
                                Some(rows)
                            }
                            Err(e) => {
                                side.fail(format!("{}: {e:#}", run.label()));
                                None
                            }
                        };
                    side.runs.push(Measured { run, rows });
                    if let Some(why) = vm.exited() {
                        side.fail(format!(
                            "{why} under load ({}); its last lines:\n{}",
                            run.label(),
                            vm.log_tail()
                        ));
                        break;
                    }
                }
                vm.stop();
            }
        },
    }
    if !opts.memory_search {
        return;
    }
    let timeout = side
        .first_response
        .map_or(boot_timeout, |t| (t * 5).max(Duration::from_secs(20)));
    let probe = probe_run(opts);
    let mut failures = Vec::new();
    let (min, tried) = smallest_passing(&MEMORY_SIZES, |m| {
        let attempt = || {
            serves(guest, bench, &probe, m, timeout).map_err(|why| match server_tail(guest) {
                Some((what, line)) => format!("{why}; {what}'s last line: `{line}`"),
                None => why,
            })
        };
        let verdict = attempt().or_else(|why| {
            crate::note!(
                "{}: --memory {m}M: failed once ({why}); trying again",
                guest.name
            );
            attempt()
        });
        match &verdict {
            Ok(()) => crate::note!("{}: --memory {m}M: serves", guest.name),
            Err(why) => {
                crate::note!("{}: --memory {m}M: does not serve: {why}", guest.name);
                failures.push((m, why.clone()));
            }
        }
        verdict.is_ok()
    });
    side.memory_failures = failures;
    side.min_memory = min;
    side.memory_tried = tried;
}

/// The last line the server (on Kiln: its stdout) or the console (on Linux: the kernel's
/// and the server's) wrote in the guest's last boot, if any, with which of the two it is.
fn server_tail(guest: &Guest) -> Option<(&'static str, String)> {
    use std::io::{Read, Seek, SeekFrom};
    let (what, file) = match guest.boot {
        Boot::Kiln { .. } => ("the server", guest.dir.join("kiln-stdout")),
        Boot::Linux { .. } => ("the console", guest.dir.join("linux-console.log")),
    };
    let mut f = std::fs::File::open(file).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).ok()?;
    let text = strip_escapes(&String::from_utf8_lossy(&tail));
    // A line QEMU was stopped in the middle of is not the last one.
    let complete = match text.rfind('\n') {
        Some(i) => &text[..i],
        None => text.as_str(),
    };
    let line = last_line(complete)?
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect::<String>();
    Some((what, line.replace('`', "'")))
}

/// `text` without terminal escape sequences (`ESC [ ... letter`, `ESC c`: the firmware's
/// screen handling on the serial console).
fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        if chars.next_if_eq(&'[').is_some() {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    out
}

/// Whether `guest` with `memory_mib` answers PING, completes `probe` and still answers;
/// why not, otherwise.
fn serves(
    guest: &Guest,
    bench: &Path,
    probe: &Run,
    memory_mib: u64,
    timeout: Duration,
) -> Result<(), String> {
    let mut vm = guest.start(memory_mib).map_err(|e| format!("{e:#}"))?;
    vm.first_answer(guest.addr(), timeout, vm::ping_ok)
        .map_err(|e| {
            let first = e.lines().next().unwrap_or_default();
            first
                .split("; its last lines")
                .next()
                .unwrap_or(first)
                .to_string()
        })?;
    let host = tap::quad(guest.net.guest);
    let rows = run_benchmark(bench, &probe.args(&host), probe.timeout(), &guest.dir)
        .map_err(|e| format!("{e:#}"))?;
    for test in ["SET", "GET"] {
        if !rate(&rows, test).is_some_and(|r| r > 0.0) {
            return Err(format!("redis-benchmark reported no {test} rate"));
        }
    }
    if let Some(why) = vm.exited() {
        return Err(format!("{why} under load"));
    }
    if !vm::ping_ok(guest.addr(), Duration::from_secs(2)) {
        return Err("no PONG after the load".into());
    }
    vm.stop();
    Ok(())
}

/// `redis-benchmark --version`'s line, or nothing.
fn benchmark_version(bin: &Path) -> String {
    let out = Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    out.ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Builds both guests, runs everything, and returns the report (a side that fails is
/// reported, not fatal; failing to build or set up is).
pub fn redis(layout: &Layout, opts: &RedisOptions) -> anyhow::Result<RedisReport> {
    opts.check()?;
    // The programs first: a missing one is a clear error before anything is set up.
    let server_path = require(
        SERVER,
        SERVER_PACKAGE,
        Path::new(SERVER).is_file().then(|| PathBuf::from(SERVER)),
    )?;
    let bench = require(
        BENCHMARK,
        BENCHMARK_PACKAGE,
        crate::qemu::install::which(BENCHMARK),
    )?;
    let dir = layout.kiln_dir().join("bench/redis");
    std::fs::create_dir_all(&dir)?;
    let args: Vec<String> = SERVER_ARGS.iter().map(|s| s.to_string()).collect();

    crate::note!("building the Kiln image of {SERVER}");
    let kiln_image = crate::image::build_image(
        layout,
        &crate::image::BuildRequest {
            source: AppSource::Elf(server_path.clone()),
            rootfs_dir: None,
            files: vec![],
            libs: vec![],
            dynamic: false,
            env: vec![],
            args: args.clone(),
            output: Some(dir.join("redis-server.elf")),
            net: crate::image::NetChoice::Auto,
            profiler: false,
            volumes: false,
        },
    )?;
    let server = std::fs::read(&server_path)
        .with_context(|| format!("could not read {}", server_path.display()))?;
    // In the Linux guest /init execs /server; the loader and libraries go at their paths.
    let origin = std::fs::canonicalize(&server_path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("/usr/bin"));
    let libs = crate::dynamic::Resolver::host(vec![])
        .resolve(&server, "/server", &origin)
        .map_err(|e| anyhow::anyhow!("{SERVER}: {e}"))?
        .libraries;
    let extras = linux::library_entries(&libs)?;
    let lib_bytes: usize = extras
        .iter()
        .map(|e| match e {
            Extra::File(_, d) => d.len(),
            Extra::Symlink(..) => 0,
        })
        .sum();
    let sha = crate::image::sha256_hex(&server);
    let server_detail = format!(
        "`{SERVER}` ({} bytes, sha256 {}…; dynamically linked: its loader and {} libraries, \
         {lib_bytes} bytes, packed on both sides), arguments `{}`",
        server.len(),
        &sha[..12],
        libs.len().saturating_sub(1),
        super::http::shell_words(&args)
    );
    crate::note!("server: {server_detail}");

    let (qemu_bin, accel) = crate::qemu::prepare(layout, opts.machine)?;
    let accel = accel.accel;
    let linux_dir = layout.kiln_dir().join("linux");
    let kernel = linux::ensure_kernel(&linux_dir)?;
    let modules = linux::network_modules(&kernel)?;
    let init = std::fs::read(linux::build_init(&linux_dir)?)?;
    let module_bytes = modules
        .iter()
        .map(|(n, p)| Ok((n.clone(), std::fs::read(p)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let initrd_bytes = linux::initramfs(&init, &server, &args, &module_bytes, &extras)?;
    let initrd = dir.join("initramfs.cpio.gz");
    std::fs::write(&initrd, &initrd_bytes)?;
    let vmlinuz_size = std::fs::metadata(&kernel.vmlinuz)?.len();
    crate::note!(
        "Linux guest: {} ({vmlinuz_size} bytes) + initramfs {} ({} bytes)",
        layout.display(&kernel.vmlinuz),
        layout.display(&initrd),
        initrd_bytes.len()
    );

    let net = default_network();
    let _tap = tap::setup(net.clone())?;
    let host_load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_default();
    let guest = |name, boot| Guest {
        name,
        boot,
        qemu: qemu_bin.clone(),
        accel,
        machine: opts.machine,
        cpus: 1,
        net: net.clone(),
        port: PORT,
        dir: dir.clone(),
    };
    let kiln = guest(
        "Kiln",
        Boot::Kiln {
            image: kiln_image.path.clone(),
        },
    );
    let linux_guest = guest(
        "Linux",
        Boot::Linux {
            vmlinuz: kernel.vmlinuz.clone(),
            initrd: initrd.clone(),
            cmdline: linux::cmdline(net.guest, net.prefix, net.host, PORT),
        },
    );
    let mut k = Side {
        name: "Kiln".into(),
        image_size: Some(kiln_image.size),
        image_detail: format!(
            "{} bytes, one PVH ELF (Kiln kernel + redis-server, its loader and libraries in \
             the root filesystem, uncompressed: ELF files are mapped in place)",
            kiln_image.size
        ),
        ..Side::default()
    };
    measure(&kiln, &bench, opts, &mut k);
    let mut l = Side {
        name: "Linux".into(),
        image_size: Some(vmlinuz_size + initrd_bytes.len() as u64),
        image_detail: format!(
            "vmlinuz {vmlinuz_size} bytes + initramfs {} bytes (gzip'd cpio: /init {} bytes, \
             redis-server, its loader and libraries, modules {})",
            initrd_bytes.len(),
            init.len(),
            modules
                .iter()
                .map(|m| m.0.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ..Side::default()
    };
    measure(&linux_guest, &bench, opts, &mut l);

    Ok(RedisReport {
        kiln: k,
        linux: l,
        runs: opts.runs().to_vec(),
        repeats: opts.repeats,
        host: tap::quad(net.guest),
        accel: match accel {
            Accel::Tcg => "TCG",
            Accel::Kvm => "KVM",
        }
        .into(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        host_load,
        machine: opts.machine.name().into(),
        memory_mib: opts.memory_mib,
        probe: opts.memory_search.then(|| probe_run(opts)),
        linux_kernel: kernel.package.clone(),
        server: server_detail,
        benchmark_version: benchmark_version(&bench),
    })
}

/// Rewrites the Redis section of `BENCHMARKS.md`.
pub fn write_markdown(layout: &Layout, report: &RedisReport, command: &str) -> anyhow::Result<()> {
    let body = format!(
        "Measured with `{command}` (as root: it creates the tap device `{}`). Under TCG \
         (software emulation, no KVM on these machines) compare ratios more than absolute \
         numbers.\n\n{}",
        default_network().name,
        format_report(report)
    );
    super::markdown::write_section(layout, HEADING, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn benchmark_command_lines() {
        let o = RedisOptions {
            requests: 20_000,
            ..RedisOptions::default()
        };
        o.check().unwrap();
        let [plain, piped] = o.runs();
        assert_eq!(
            plain.command("10.77.79.2"),
            "redis-benchmark -h 10.77.79.2 -p 6379 -t set,get -n 20000 -c 16 -q --csv"
        );
        assert_eq!(
            piped.command("10.77.79.2"),
            "redis-benchmark -h 10.77.79.2 -p 6379 -t set,get -n 20000 -c 16 -P 16 -q --csv"
        );
        assert_eq!(
            (plain.label(), piped.label()),
            ("no pipelining".into(), "-P 16".into())
        );
        assert_eq!(plain.timeout(), Duration::from_secs(260));
        let p = probe_run(&o);
        assert_eq!((p.requests, p.clients, p.pipeline), (2000, 16, 1));
        assert_eq!(
            probe_run(&RedisOptions {
                requests: 500,
                ..o.clone()
            })
            .requests,
            500
        );
        for bad in [
            RedisOptions {
                requests: 0,
                ..o.clone()
            },
            RedisOptions {
                repeats: 0,
                ..o.clone()
            },
            RedisOptions {
                clients: 0,
                ..o.clone()
            },
            RedisOptions {
                pipeline: 1,
                ..o.clone()
            },
            RedisOptions {
                memory_mib: 4,
                ..o.clone()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_network_is_not_bench_https() {
        let (r, h) = (default_network(), super::super::http::default_network());
        assert_ne!(r.name, h.name);
        assert_ne!(r.host[..3], h.host[..3]);
        assert!(r.name.len() <= 15);
    }

    #[test]
    fn parses_csv() {
        let out = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\
                   \"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                   \"SET\",\"51282.05\",\"0.205\",\"0.032\",\"0.199\",\"0.327\",\"0.455\",\"5.015\"\n\
                   \"GET\",\"59880.24\",\"0.176\",\"0.056\",\"0.175\",\"0.255\",\"0.271\",\"0.479\"\n";
        let rows = parse_csv(out).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            Row {
                test: "SET".into(),
                rps: 51282.05,
                p50_ms: 0.199,
                p99_ms: 0.455
            }
        );
        assert_eq!(rate(&rows, "GET"), Some(59880.24));
        assert_eq!(rate(&rows, "INCR"), None);
        // redis 6's shape: no header, no latencies.
        let rows = parse_csv("\"SET\",\"1000.00\"\n\"GET\",\"2000.00\"\n").unwrap();
        assert_eq!(rate(&rows, "GET"), Some(2000.0));
        assert!(rows[0].p50_ms.is_nan());
        let e = parse_csv("Could not connect to Redis at 10.77.79.2:6379: Connection refused\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no results") && e.contains("Connection refused"),
            "{e}"
        );
        assert!(parse_csv("\"SET\",\"fast\"\n").is_err());
    }

    #[test]
    fn missing_programs_name_their_package() {
        let e = require(BENCHMARK, BENCHMARK_PACKAGE, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("redis-benchmark is not installed"), "{e}");
        assert!(e.contains("redis-tools"), "{e}");
        let e = require(SERVER, SERVER_PACKAGE, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/usr/bin/redis-server") && e.contains("package redis-server")
                || e.contains("redis-server package"),
            "{e}"
        );
        assert_eq!(
            require("sh", "dash", Some("/bin/sh".into())).unwrap(),
            PathBuf::from("/bin/sh")
        );
    }

    #[test]
    fn a_benchmark_that_hangs_is_stopped() {
        let tmp = tempfile::tempdir().unwrap();
        let start = Instant::now();
        let e = run_benchmark(
            Path::new("/bin/sh"),
            &["-c".into(), "echo waiting >&2; sleep 30".into()],
            Duration::from_millis(300),
            tmp.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(start.elapsed() < Duration::from_secs(10));
        assert!(e.contains("did not finish") && e.contains("waiting"), "{e}");
        let e = run_benchmark(
            Path::new("/bin/sh"),
            &["-c".into(), "echo refused >&2; exit 1".into()],
            Duration::from_secs(10),
            tmp.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("failed") && e.contains("refused"), "{e}");
        let rows = run_benchmark(
            Path::new("/bin/sh"),
            &[
                "-c".into(),
                "echo '\"SET\",\"5.0\"'; echo '\"GET\",\"6.0\"'".into(),
            ],
            Duration::from_secs(10),
            tmp.path(),
        )
        .unwrap();
        assert_eq!(rate(&rows, "GET"), Some(6.0));
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0]), Some(3.0));
        assert_eq!(median(vec![5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(vec![f64::NAN, 2.0]), Some(2.0));
    }

    #[test]
    fn escapes_are_stripped() {
        assert_eq!(
            strip_escapes("Booting from ROM..\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS\n"),
            "Booting from ROM..SeaBIOS\n"
        );
        assert_eq!(strip_escapes("plain"), "plain");
    }

    fn rows(set: f64, get: f64) -> Option<Vec<Row>> {
        Some(vec![
            Row {
                test: "SET".into(),
                rps: set,
                p50_ms: 1.0,
                p99_ms: 2.5,
            },
            Row {
                test: "GET".into(),
                rps: get,
                p50_ms: 0.5,
                p99_ms: 1.0,
            },
        ])
    }

    #[test]
    fn report_table() {
        let o = RedisOptions {
            requests: 20_000,
            ..RedisOptions::default()
        };
        let [plain, piped] = o.runs();
        let r = RedisReport {
            kiln: Side {
                name: "Kiln".into(),
                runs: vec![
                    Measured {
                        run: plain,
                        rows: rows(3000.0, 4000.0),
                    },
                    Measured {
                        run: piped,
                        rows: rows(30000.0, 40000.0),
                    },
                    Measured {
                        run: plain,
                        rows: rows(1000.0, 9000.0),
                    },
                    Measured {
                        run: piped,
                        rows: rows(30000.0, 40000.0),
                    },
                    Measured {
                        run: plain,
                        rows: rows(5000.0, 2000.0),
                    },
                    Measured {
                        run: piped,
                        rows: None,
                    },
                ],
                first_response: Some(Duration::from_millis(250)),
                image_size: Some(6_000_000),
                image_detail: "6000000 bytes".into(),
                min_memory: Some(16),
                memory_tried: vec![(64, true), (24, true), (16, true)],
                memory_failures: vec![],
                failure: None,
            },
            linux: Side {
                name: "Linux".into(),
                runs: vec![
                    Measured {
                        run: plain,
                        rows: rows(6000.0, 4000.0),
                    },
                    Measured {
                        run: piped,
                        rows: None,
                    },
                ],
                first_response: Some(Duration::from_millis(2500)),
                image_size: Some(20_000_000),
                image_detail: String::new(),
                min_memory: None,
                memory_tried: vec![(64, false), (128, false), (192, false), (256, false)],
                memory_failures: vec![(64, "QEMU exited (exit status: 0) before answering".into())],
                failure: Some(
                    "-P 16: redis-benchmark did not finish within 260 s (stopped)".into(),
                ),
            },
            runs: vec![plain, piped],
            repeats: 3,
            host: "10.77.79.2".into(),
            accel: "TCG".into(),
            cpus: 2,
            host_load: "1.50".into(),
            machine: "q35".into(),
            memory_mib: 256,
            probe: Some(probe_run(&o)),
            linux_kernel: "linux-image-6.1.0-57-cloud-amd64".into(),
            server: "`/usr/bin/redis-server`".into(),
            benchmark_version: "redis-benchmark 7.0.15".into(),
        };
        let s = format_report(&r);
        for want in [
            "(TCG, 2 host cores, host load average 1.50 at the start), tap networking, 256 MiB",
            "| SET requests/s, no pipelining | 3000 | 6000 | 0.50x |",
            "| GET requests/s, no pipelining | 4000 | 4000 | 1.00x |",
            "| SET requests/s, -P 16 | 30000 | failed |  |",
            "| QEMU start to first PONG | 250.0 ms | 2.50 s | 0.10x (1/10) |",
            "| image size | 6000000 bytes | 20000000 bytes | 0.30x (1/3) |",
            "| smallest --memory that serves | 16 MiB | over 256 MiB |  |",
            "- -P 16: `redis-benchmark -h 10.77.79.2 -p 6379 -t set,get -n 20000 -c 16 -P 16 -q --csv`",
            "- Kiln memory search: 64 MiB serves, 24 MiB serves, 16 MiB serves.",
            "- Load generator: redis-benchmark 7.0.15.",
            "-n 2000 -c 16 -q --csv` completes",
            "Linux failed: -P 16: redis-benchmark did not finish",
            "one boot of each side, each 3 times (alternating), requests/s the median.",
            "- Kiln requests/s of each repetition: SET no pipelining 3000, 1000, 5000; GET no \
             pipelining 4000, 9000, 2000; SET -P 16 30000, 30000; GET -P 16 40000, 40000.\n",
            "- Linux requests/s of each repetition: SET no pipelining 6000; GET no pipelining 4000.\n",
            "- Kiln latencies (redis-benchmark's, medians): SET no pipelining p50 1.00 ms,",
            "- Linux at 64 MiB: QEMU exited (exit status: 0) before answering.\n",
        ] {
            assert!(s.contains(want), "missing {want:?} in:\n{s}");
        }
        assert!(!s.contains("Kiln failed"));
    }
}
