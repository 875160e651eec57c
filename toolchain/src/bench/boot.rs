//! `bench boot`: how long the hello image takes from QEMU start to exit, against the floor
//! image (a PVH kernel that exits at once), on each machine.

use crate::app::AppSource;
use crate::image::{self, BuildRequest};
use crate::qemu::{self, Machine, ProgramOutput, RunOptions};
use crate::Layout;
use anyhow::Context;
use std::time::Duration;

/// Timings of one image on one machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The machine.
    pub machine: Machine,
    /// `hello` or `floor`.
    pub image: &'static str,
    /// Image size in bytes.
    pub size: u64,
    /// Median QEMU-start-to-exit time, or `None` when a run failed.
    pub median: Option<Duration>,
    /// Why it failed, if it did.
    pub failure: Option<String>,
}

/// Median of `d` (mean of the middle two for an even count); `None` when empty.
pub fn median(d: &[Duration]) -> Option<Duration> {
    let mut v = d.to_vec();
    v.sort();
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2),
    }
}

/// Everything the report shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Runs per image and machine.
    pub runs: usize,
    /// Accelerator name (`TCG` or `KVM`).
    pub accel: &'static str,
    /// Rows, per machine hello then floor.
    pub rows: Vec<Row>,
    /// Size of the stripped kernel ELF.
    pub kernel_size: Option<u64>,
    /// Whether hello exits 0 with `--memory 16M` (microvm).
    pub hello_16m: Option<bool>,
    /// Host CPUs.
    pub cpus: usize,
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("failed".into(), |d| format!("{:.3} s", d.as_secs_f64()))
}

/// Formats the report as Markdown.
pub fn format_report(r: &Report) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "QEMU start to exit, median of {} runs, {} on {} cores.\n\n",
        r.runs, r.accel, r.cpus
    ));
    s.push_str("| machine | image | image size | median | hello/floor |\n");
    s.push_str("|---|---|---:|---:|---:|\n");
    for m in Machine::ALL {
        let get = |name| r.rows.iter().find(|x| x.machine == m && x.image == name);
        let floor = get("floor").and_then(|f| f.median);
        for name in ["hello", "floor"] {
            let Some(row) = get(name) else { continue };
            let ratio = match (name, row.median, floor) {
                ("hello", Some(h), Some(f)) if !f.is_zero() => {
                    format!("{:.1}x", h.as_secs_f64() / f.as_secs_f64())
                }
                _ => "".into(),
            };
            s.push_str(&format!(
                "| {} | {} | {} bytes | {} | {} |\n",
                m.name(),
                name,
                row.size,
                secs(row.median),
                ratio
            ));
        }
    }
    s.push('\n');
    if let Some(k) = r.kernel_size {
        s.push_str(&format!("Kernel size (stripped kernel ELF): {k} bytes.\n"));
    }
    match r.hello_16m {
        Some(true) => s.push_str("hello with `--memory 16M`: runs (exit 0).\n"),
        Some(false) => s.push_str("hello with `--memory 16M`: does not run.\n"),
        None => {}
    }
    for row in &r.rows {
        if let Some(f) = &row.failure {
            s.push_str(&format!("\n{} on {}: {f}\n", row.image, row.machine.name()));
        }
    }
    s
}

fn time_runs(
    qemu: &std::path::Path,
    accel: &qemu::AccelChoice,
    image: &std::path::Path,
    machine: Machine,
    runs: usize,
) -> (Option<Duration>, Option<String>) {
    let opts = RunOptions {
        machine,
        ..RunOptions::default()
    };
    let mut times = Vec::new();
    for _ in 0..runs {
        match qemu::run(
            qemu,
            accel,
            image,
            &opts,
            Some(Duration::from_secs(60)),
            ProgramOutput::Discard,
        ) {
            Ok(r) if r.outcome.status == 0 => times.push(r.elapsed),
            Ok(r) => {
                let why = r
                    .outcome
                    .reason
                    .unwrap_or(format!("exit status {}", r.outcome.status));
                return (None, Some(why));
            }
            Err(e) => return (None, Some(format!("{e:#}"))),
        }
    }
    (median(&times), None)
}

fn stripped_size(elf: &std::path::Path) -> Option<u64> {
    let dir = tempfile::tempdir().ok()?;
    let out = dir.path().join("k");
    let ok = std::process::Command::new("strip")
        .arg("-o")
        .arg(&out)
        .arg(elf)
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?
        .success();
    ok.then(|| std::fs::metadata(&out).ok().map(|m| m.len()))?
}

/// Runs the benchmark and returns the report (hello failures are reported, not fatal).
pub fn boot(layout: &Layout, runs: usize) -> anyhow::Result<Report> {
    let runs = runs.max(1);
    let (qemu_bin, accel) = qemu::prepare(layout, Machine::Microvm)?;
    let dir = layout.kiln_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let floor = dir.join("floor.elf");
    let floor_bytes = crate::floor::bytes();
    std::fs::write(&floor, &floor_bytes).context("could not write the floor image")?;

    crate::note!("building the hello image");
    let hello = image::build_image(
        layout,
        &BuildRequest {
            source: AppSource::Example("hello".into()),
            rootfs_dir: None,
            files: vec![],
            libs: vec![],
            dynamic: false,
            env: vec![],
            args: vec![],
            output: Some(dir.join("hello.elf")),
        },
    );
    let hello_err = hello.as_ref().err().map(|e| format!("{e:#}"));
    let mut rows = Vec::new();
    for m in Machine::ALL {
        crate::note!("timing {runs} boots of each image on {}", m.name());
        match &hello {
            Ok(h) => {
                let (median, failure) = time_runs(&qemu_bin, &accel, &h.path, m, runs);
                rows.push(Row {
                    machine: m,
                    image: "hello",
                    size: h.size,
                    median,
                    failure,
                });
            }
            Err(_) => rows.push(Row {
                machine: m,
                image: "hello",
                size: 0,
                median: None,
                failure: Some(format!(
                    "could not build: {}",
                    hello_err.clone().unwrap_or_default()
                )),
            }),
        }
        let (median, failure) = time_runs(&qemu_bin, &accel, &floor, m, runs);
        rows.push(Row {
            machine: m,
            image: "floor",
            size: floor_bytes.len() as u64,
            median,
            failure,
        });
    }
    let hello_16m = hello.as_ref().ok().map(|h| {
        let opts = RunOptions {
            memory_mib: Some(16),
            ..RunOptions::default()
        };
        matches!(
            qemu::run(&qemu_bin, &accel, &h.path, &opts, Some(Duration::from_secs(60)), ProgramOutput::Discard),
            Ok(r) if r.outcome.status == 0
        )
    });
    Ok(Report {
        runs,
        accel: match accel.accel {
            qemu::Accel::Tcg => "TCG",
            qemu::Accel::Kvm => "KVM",
        },
        rows,
        kernel_size: stripped_size(&layout.kernel_elf()),
        hello_16m,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
    })
}

/// The heading of `bench boot`'s section of `BENCHMARKS.md`.
pub const HEADING: &str = "## Boot time";

/// Rewrites the boot section of `BENCHMARKS.md` (the other sections stay as they are).
pub fn write_markdown(layout: &Layout, report: &Report, command: &str) -> anyhow::Result<()> {
    let body = format!(
        "Measured with `{command}` (QEMU 7.2; results are {} on {} cores: \
         software emulation, so compare ratios more than absolute times). The floor image is a do-nothing PVH kernel \
         that exits at once: it measures QEMU's own start and exit cost.\n\n{}",
        report.accel,
        report.cpus,
        format_report(report)
    );
    super::markdown::write_section(layout, HEADING, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[ms(5)]), Some(ms(5)));
        assert_eq!(median(&[ms(9), ms(1), ms(5)]), Some(ms(5)));
        assert_eq!(median(&[ms(4), ms(1), ms(2), ms(100)]), Some(ms(3)));
    }

    #[test]
    fn report_table() {
        let row = |machine, image, median: Option<u64>| Row {
            machine,
            image,
            size: 100,
            median: median.map(ms),
            failure: median.is_none().then(|| "boom".to_string()),
        };
        let r = Report {
            runs: 10,
            accel: "TCG",
            rows: vec![
                row(Machine::Microvm, "hello", Some(300)),
                row(Machine::Microvm, "floor", Some(100)),
                row(Machine::Q35, "hello", None),
                row(Machine::Q35, "floor", Some(200)),
            ],
            kernel_size: Some(12345),
            hello_16m: Some(true),
            cpus: 2,
        };
        let s = format_report(&r);
        assert!(
            s.contains("| microvm | hello | 100 bytes | 0.300 s | 3.0x |"),
            "{s}"
        );
        assert!(s.contains("| q35 | hello | 100 bytes | failed |  |"), "{s}");
        assert!(s.contains("TCG on 2 cores"));
        assert!(s.contains("12345 bytes"));
        assert!(s.contains("hello on q35: boom"));
    }
}
