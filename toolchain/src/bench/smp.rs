//! `bench smp`: the wall time of a CPU-bound two-thread program (`examples/threads-hash`)
//! with one virtual CPU and with more, in one run. Boots take turns (1 CPU, N CPUs, 1 CPU,
//! ...), so a change in the host's load hits both alike; each boot's threads must print
//! the same hashes, or the run is an error rather than a figure.

use std::time::Duration;

use crate::qemu::args::RunOptions;
use crate::qemu::target::Machine;
use crate::qemu::{self, ProgramOutput};
use crate::Layout;

/// What `bench smp` measures.
#[derive(Debug, Clone)]
pub struct SmpOptions {
    /// Boots per CPU count.
    pub runs: usize,
    /// Hashing threads.
    pub threads: u32,
    /// Rounds each thread hashes.
    pub rounds: u64,
    /// The CPU counts compared (the first is the baseline).
    pub cpus: Vec<u32>,
    /// The machine.
    pub machine: Machine,
}

impl Default for SmpOptions {
    fn default() -> Self {
        SmpOptions {
            runs: 3,
            threads: 2,
            rounds: 100_000_000,
            cpus: vec![1, 2],
            machine: Machine::Microvm,
        }
    }
}

/// One CPU count's results.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Virtual CPUs.
    pub cpus: u32,
    /// What the program measured around its threads (spawn to last join), per boot.
    pub program: Vec<Duration>,
    /// QEMU's start to exit, per boot.
    pub wall: Vec<Duration>,
    /// Host CPU time QEMU used, per boot (user and system, all its threads): against
    /// `wall`, how many host cores the guest really had.
    pub host_cpu: Vec<Duration>,
}

/// The benchmark's results.
#[derive(Debug, Clone)]
pub struct Report {
    /// What ran.
    pub opts: SmpOptions,
    /// One row per CPU count, in the order of `opts.cpus`.
    pub rows: Vec<Row>,
    /// TCG or KVM.
    pub accel: &'static str,
    /// The host's cores.
    pub host_cpus: usize,
    /// The host's load average at the start and at the end.
    pub host_load: Option<(f64, f64)>,
}

/// What one boot printed: the hash lines and the program's own time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// `thread I: HASH` lines, in order.
    pub hashes: Vec<String>,
    /// `cpus: N`.
    pub cpus: u32,
    /// `elapsed-ms: MS`.
    pub elapsed_ms: u64,
}

/// Parses `threads-hash`'s output; `None` when a line is missing.
pub fn parse_output(out: &str) -> Option<Output> {
    let mut hashes = Vec::new();
    let (mut cpus, mut elapsed) = (None, None);
    for line in out.lines() {
        if line.starts_with("thread ") {
            hashes.push(line.to_string());
        } else if let Some(v) = line.strip_prefix("cpus: ") {
            cpus = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("elapsed-ms: ") {
            elapsed = v.trim().parse().ok();
        }
    }
    Some(Output {
        hashes,
        cpus: cpus?,
        elapsed_ms: elapsed?,
    })
}

/// CPU time (user + system) of this process's children that have been waited for, from
/// `/proc/self/stat` (`cutime`, `cstime`, in 1/100 s).
fn children_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    children_cpu_of(&stat)
}

fn children_cpu_of(stat: &str) -> Option<Duration> {
    // Fields after the command name (which may hold spaces) start with the state, field 3;
    // cutime and cstime are fields 16 and 17.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(13)?.parse::<u64>().ok()? + f.get(14)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Runs the benchmark.
pub fn smp(layout: &Layout, opts: &SmpOptions) -> anyhow::Result<Report> {
    anyhow::ensure!(opts.runs > 0 && !opts.cpus.is_empty(), "nothing to run");
    let load_at_start = super::boot::load_average();
    let (qemu_bin, accel) = qemu::prepare(layout, opts.machine)?;
    let dir = layout.kiln_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let image = super::build_example(layout, "threads-hash", &dir)?;
    let mut rows: Vec<Row> = opts
        .cpus
        .iter()
        .map(|&cpus| Row {
            cpus,
            program: Vec::new(),
            wall: Vec::new(),
            host_cpu: Vec::new(),
        })
        .collect();
    let mut expected: Option<Vec<String>> = None;
    for run in 0..opts.runs {
        for row in rows.iter_mut() {
            crate::note!(
                "run {} of {}: {} CPU(s), {} threads x {} rounds",
                run + 1,
                opts.runs,
                row.cpus,
                opts.threads,
                opts.rounds
            );
            let ro = RunOptions {
                machine: opts.machine,
                cpus: Some(row.cpus),
                argv: Some(vec![opts.threads.to_string(), opts.rounds.to_string()]),
                ..RunOptions::default()
            };
            let cpu_before = children_cpu();
            let r = qemu::run(
                &qemu_bin,
                &accel,
                &image.path,
                &ro,
                Some(Duration::from_secs(600)),
                ProgramOutput::Collect,
            )?;
            let text = String::from_utf8_lossy(&r.stdout).into_owned();
            anyhow::ensure!(
                r.outcome.status == 0,
                "threads-hash with {} CPU(s) failed: {}\n{text}",
                row.cpus,
                r.outcome
                    .reason
                    .clone()
                    .unwrap_or(format!("exit status {}", r.outcome.status))
            );
            let out = parse_output(&text).ok_or_else(|| {
                anyhow::anyhow!(
                    "threads-hash printed no timing with {} CPU(s):\n{text}",
                    row.cpus
                )
            })?;
            anyhow::ensure!(
                out.cpus == row.cpus,
                "the kernel reported {} CPU(s) to the program, not {}",
                out.cpus,
                row.cpus
            );
            match &expected {
                None => expected = Some(out.hashes.clone()),
                Some(e) => anyhow::ensure!(
                    *e == out.hashes,
                    "different hashes with {} CPU(s): {:?} against {e:?}",
                    row.cpus,
                    out.hashes
                ),
            }
            row.program.push(Duration::from_millis(out.elapsed_ms));
            row.wall.push(r.elapsed);
            if let (Some(a), Some(b)) = (cpu_before, children_cpu()) {
                row.host_cpu.push(b.saturating_sub(a));
            }
        }
    }
    Ok(Report {
        opts: opts.clone(),
        rows,
        accel: match accel.accel {
            qemu::Accel::Tcg => "TCG",
            qemu::Accel::Kvm => "KVM",
        },
        host_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        host_load: load_at_start.zip(super::boot::load_average()),
    })
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| {
        format!("{:.0} ms", d.as_secs_f64() * 1000.0)
    })
}

/// The report as a Markdown table: median times per CPU count and the speed-up against the
/// first row.
pub fn format_report(r: &Report) -> String {
    let base = r.rows.first().and_then(|b| super::median(&b.program));
    let mut s = String::from(
        "| vCPUs | hashing (median) | speed-up | QEMU start to exit (median) | host cores QEMU used (median) | hashing, each boot |\n\
         |---|---|---|---|---|---|\n",
    );
    for row in &r.rows {
        let m = super::median(&row.program);
        let speedup = match (base, m) {
            (Some(b), Some(m)) if m.as_nanos() > 0 => {
                format!("{:.2}x", b.as_secs_f64() / m.as_secs_f64())
            }
            _ => "-".into(),
        };
        let each: Vec<String> = row
            .program
            .iter()
            .map(|d| format!("{}", d.as_millis()))
            .collect();
        let mut cores: Vec<f64> = row
            .host_cpu
            .iter()
            .zip(&row.wall)
            .filter(|(_, w)| !w.is_zero())
            .map(|(c, w)| c.as_secs_f64() / w.as_secs_f64())
            .collect();
        cores.sort_by(f64::total_cmp);
        let cores = cores
            .get(cores.len() / 2)
            .map_or("-".to_string(), |c| format!("{c:.2}"));
        s.push_str(&format!(
            "| {} | {} | {speedup} | {} | {cores} | {} ms |\n",
            row.cpus,
            ms(m),
            ms(super::median(&row.wall)),
            each.join(", ")
        ));
    }
    s
}

/// The heading of `bench smp`'s section of `BENCHMARKS.md`.
pub const HEADING: &str = "## Two vCPUs: a CPU-bound two-thread program";

/// Rewrites `bench smp`'s section of `BENCHMARKS.md`.
pub fn write_markdown(layout: &Layout, r: &Report, command: &str) -> anyhow::Result<()> {
    let load = r.host_load.map_or(String::new(), |(a, b)| {
        format!(", host load {a:.2} at the start and {b:.2} at the end")
    });
    let body = format!(
        "Measured with `{command}` ({}, QEMU 7.2 {}, {} host cores{load}). `examples/threads-hash` \
         runs {} threads that each hash {} rounds of their own byte stream, with no shared \
         data and no system calls while they work; \"hashing\" is the program's own clock from \
         the first spawn to the last join, so the boot is left out. Boots alternate between \
         the CPU counts; every boot's hashes were the same. With more than one vCPU the runner \
         gives QEMU `-smp N` and, under TCG, `-accel tcg,thread=multi` (a host thread per \
         vCPU), so the speed-up is bounded by the host's free cores: \"host cores QEMU used\" \
         is QEMU's CPU time over its wall time, which falls short of the vCPU count when other \
         work on the host takes cores.\n\n{}",
        r.opts.machine.name(),
        r.accel,
        r.host_cpus,
        r.opts.threads,
        r.opts.rounds,
        format_report(r)
    );
    super::markdown::write_section(layout, HEADING, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_parsed_and_incomplete_output_refused() {
        let out = "thread 0: 4e10\nthread 1: d382\ncpus: 2\ncpus used: 0,1\nelapsed-ms: 445\n";
        assert_eq!(
            parse_output(out),
            Some(Output {
                hashes: vec!["thread 0: 4e10".into(), "thread 1: d382".into()],
                cpus: 2,
                elapsed_ms: 445,
            })
        );
        assert_eq!(parse_output("thread 0: 1\ncpus: 2\n"), None);
        assert_eq!(parse_output("elapsed-ms: x\ncpus: 1\n"), None);
    }

    #[test]
    fn the_report_gives_the_speed_up_against_the_first_row() {
        let d = Duration::from_millis;
        let r = Report {
            opts: SmpOptions::default(),
            rows: vec![
                Row {
                    cpus: 1,
                    program: vec![d(900), d(880), d(1000)],
                    wall: vec![d(1200); 3],
                    host_cpu: vec![d(1200), d(1100), d(1210)],
                },
                Row {
                    cpus: 2,
                    program: vec![d(450), d(440), d(500)],
                    wall: vec![d(700); 3],
                    host_cpu: vec![d(1300), d(1330), d(1000)],
                },
            ],
            accel: "TCG",
            host_cpus: 2,
            host_load: None,
        };
        let t = format_report(&r);
        assert!(
            t.contains("| 1 | 900 ms | 1.00x | 1200 ms | 1.00 | 900, 880, 1000 ms |"),
            "{t}"
        );
        assert!(
            t.contains("| 2 | 450 ms | 2.00x | 700 ms | 1.86 | 450, 440, 500 ms |"),
            "{t}"
        );
    }

    #[test]
    fn childrens_cpu_time_is_read_past_a_command_with_spaces() {
        let stat = "4242 (x task) S 1 4242 4242 0 -1 4194560 100 200 0 0 50 10 150 25 20 0 1";
        assert_eq!(children_cpu_of(stat), Some(Duration::from_millis(1750)));
        assert_eq!(children_cpu_of("4242 (x) S 1"), None);
    }
}
