//! `bench boot`: how long the hello image takes from QEMU start to exit, against the floor
//! image (a PVH kernel that exits at once), on each machine.

use crate::app::AppSource;
use crate::image::{self, BuildRequest};
use crate::qemu::{self, Machine, ProgramOutput, RunOptions};
use crate::Layout;
use anyhow::Context;
use kiln_abi::record::{Boot, BootPhase, Record};
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
    /// The kernel's own boot timing (hello only): median microseconds from the kernel's
    /// entry to each phase, from the boot records of the runs.
    pub phases: Option<Phases>,
}

/// Median microseconds from the kernel's entry (TSC) to each [`BootPhase`] after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Phases {
    /// Indexed by [`BootPhase`]; `None` when no run recorded the phase.
    pub us: Vec<Option<f64>>,
}

impl Phases {
    /// Medians over the runs' boot records.
    pub fn from_records(boots: &[Boot]) -> Option<Phases> {
        if boots.is_empty() {
            return None;
        }
        let us = BootPhase::ALL
            .iter()
            .map(|&p| {
                let mut v: Vec<f64> = boots.iter().filter_map(|b| b.us_since_entry(p)).collect();
                v.sort_by(f64::total_cmp);
                let n = v.len();
                match n {
                    0 => None,
                    _ if n % 2 == 1 => Some(v[n / 2]),
                    _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
                }
            })
            .collect();
        Some(Phases { us })
    }

    /// Microseconds from the entry to `p`.
    pub fn at(&self, p: BootPhase) -> Option<f64> {
        self.us.get(p as usize).copied().flatten()
    }
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
    /// Size of the stripped kernel ELF that images of programs using the network get (with
    /// the network stack, without the profiler).
    pub kernel_size: Option<u64>,
    /// Size of the stripped kernel ELF built without the network stack (nor the profiler).
    pub kernel_size_without_net: Option<u64>,
    /// Size of the stripped kernel ELF with every optional part (the profiler and volumes
    /// too).
    pub kernel_size_full: Option<u64>,
    /// The least memory hello's image needs (MiB, what `build-image` prints: the image's end
    /// plus the kernel's 2 MiB) and whether hello exits 0 in exactly that (microvm).
    pub hello_min: Option<(u64, bool)>,
    /// Host CPUs.
    pub cpus: usize,
    /// The host's load average (1 minute) at the start and at the end, when readable.
    pub host_load: Option<(f64, f64)>,
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("failed".into(), |d| format!("{:.3} s", d.as_secs_f64()))
}

/// Formats the report as Markdown.
pub fn format_report(r: &Report) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "QEMU start to exit, median of {} runs (hello and floor taking turns), {} on {} cores{}.\n\n",
        r.runs,
        r.accel,
        r.cpus,
        match r.host_load {
            Some((a, b)) => format!(", host load average {a:.2} at the start and {b:.2} at the end"),
            None => String::new(),
        }
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
    let with_phases: Vec<&Row> = r.rows.iter().filter(|x| x.phases.is_some()).collect();
    if !with_phases.is_empty() {
        s.push_str(
            "Guest boot: from the kernel's first instruction to the program's first \
             instruction, by the kernel's own TSC (median of the same runs, microseconds; \
             each phase column is the time spent in that phase).\n\n",
        );
        s.push_str("| machine | image | guest boot |");
        for p in &BootPhase::ALL[1..] {
            s.push_str(&format!(" {} |", p.name()));
        }
        s.push_str("\n|---|---|---:|");
        for _ in &BootPhase::ALL[1..] {
            s.push_str("---:|");
        }
        s.push('\n');
        for row in with_phases {
            let ph = row.phases.as_ref().expect("filtered");
            let us = |v: Option<f64>| v.map_or("".into(), |v| format!("{v:.0} µs"));
            s.push_str(&format!(
                "| {} | {} | {} |",
                row.machine.name(),
                row.image,
                us(ph.at(BootPhase::Program))
            ));
            let mut last = Some(0.0);
            for p in &BootPhase::ALL[1..] {
                let at = ph.at(*p);
                let spent = match (at, last) {
                    (Some(a), Some(l)) => Some(a - l),
                    _ => None,
                };
                s.push_str(&format!(" {} |", us(spent)));
                if at.is_some() {
                    last = at;
                }
            }
            s.push('\n');
        }
        s.push('\n');
    }
    if let Some(k) = r.kernel_size {
        s.push_str(&format!(
            "Kernel size (stripped kernel ELF): {k} bytes ({} KiB) with the network stack",
            k / 1024
        ));
        if let Some(n) = r.kernel_size_without_net {
            s.push_str(&format!(", {n} bytes ({} KiB) without it", n / 1024));
        }
        if let Some(f) = r.kernel_size_full {
            s.push_str(&format!(
                "; with the program profiler and volumes too (`--with-profiler --with-volumes`) {f} bytes ({} KiB)",
                f / 1024
            ));
        }
        s.push_str(".\n");
    }
    match r.hello_min {
        Some((mib, true)) => s.push_str(&format!(
            "hello with `--memory {mib}M` (its image plus 2 MiB, the least it accepts): runs (exit 0).\n"
        )),
        Some((mib, false)) => s.push_str(&format!(
            "hello with `--memory {mib}M` (its image plus 2 MiB, the least it accepts): does not run.\n"
        )),
        None => {}
    }
    for row in &r.rows {
        if let Some(f) = &row.failure {
            s.push_str(&format!("\n{} on {}: {f}\n", row.image, row.machine.name()));
        }
    }
    s
}

/// Timings of one image's runs.
struct Timed {
    median: Option<Duration>,
    failure: Option<String>,
    phases: Option<Phases>,
}

/// Boots each of `images` `runs` times on `machine`, taking turns (hello, floor, hello,
/// floor...), so that a change in the host's load hits every image alike and their ratio
/// stays meaningful on a shared machine. An image whose run fails is not run again.
fn time_interleaved(
    qemu: &std::path::Path,
    accel: &qemu::AccelChoice,
    images: &[&std::path::Path],
    machine: Machine,
    runs: usize,
) -> Vec<Timed> {
    let opts = RunOptions {
        machine,
        ..RunOptions::default()
    };
    let mut times = vec![Vec::new(); images.len()];
    let mut boots: Vec<Vec<Boot>> = vec![Vec::new(); images.len()];
    let mut failures: Vec<Option<String>> = vec![None; images.len()];
    for _ in 0..runs {
        for (i, image) in images.iter().enumerate() {
            if failures[i].is_some() {
                continue;
            }
            match qemu::run(
                qemu,
                accel,
                image,
                &opts,
                Some(Duration::from_secs(60)),
                ProgramOutput::Discard,
            ) {
                Ok(r) if r.outcome.status == 0 => {
                    times[i].push(r.elapsed);
                    boots[i].extend(
                        kiln_abi::record::parse_all(&r.records)
                            .into_iter()
                            .filter_map(|x| match x {
                                Record::Boot(b) => Some(b),
                                _ => None,
                            }),
                    );
                }
                Ok(r) => {
                    failures[i] = Some(
                        r.outcome
                            .reason
                            .unwrap_or(format!("exit status {}", r.outcome.status)),
                    );
                }
                Err(e) => failures[i] = Some(format!("{e:#}")),
            }
        }
    }
    (0..images.len())
        .map(|i| match failures[i].take() {
            Some(why) => Timed {
                median: None,
                failure: Some(why),
                phases: None,
            },
            None => Timed {
                median: median(&times[i]),
                failure: None,
                phases: Phases::from_records(&boots[i]),
            },
        })
        .collect()
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

/// The host's 1-minute load average.
pub(crate) fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs the benchmark and returns the report (hello failures are reported, not fatal).
pub fn boot(layout: &Layout, runs: usize) -> anyhow::Result<Report> {
    let runs = runs.max(1);
    let load_at_start = load_average();
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
            net: image::NetChoice::Auto,
            profiler: false,
            volumes: false,
        },
    );
    let hello_err = hello.as_ref().err().map(|e| format!("{e:#}"));
    let mut rows = Vec::new();
    for m in Machine::ALL {
        crate::note!(
            "timing {runs} boots of each image on {}, taking turns",
            m.name()
        );
        let mut images: Vec<&std::path::Path> = Vec::new();
        if let Ok(h) = &hello {
            images.push(&h.path);
        }
        images.push(&floor);
        let mut timed = time_interleaved(&qemu_bin, &accel, &images, m, runs).into_iter();
        match &hello {
            Ok(h) => {
                let t = timed.next().expect("one result per image");
                rows.push(Row {
                    machine: m,
                    image: "hello",
                    size: h.size,
                    median: t.median,
                    failure: t.failure,
                    phases: t.phases,
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
                phases: None,
            }),
        }
        let t = timed.next().expect("one result per image");
        rows.push(Row {
            machine: m,
            image: "floor",
            size: floor_bytes.len() as u64,
            median: t.median,
            failure: t.failure,
            phases: None,
        });
    }
    let hello_min = hello.as_ref().ok().and_then(|h| {
        let mib = std::fs::read(&h.path)
            .ok()
            .and_then(|b| image::min_memory_mib(&b))?;
        let opts = RunOptions {
            memory_mib: Some(mib),
            ..RunOptions::default()
        };
        let ran = matches!(
            qemu::run(&qemu_bin, &accel, &h.path, &opts, Some(Duration::from_secs(60)), ProgramOutput::Discard),
            Ok(r) if r.outcome.status == 0
        );
        Some((mib, ran))
    });
    let variant_size = |net| {
        let v = crate::link::KernelVariant {
            net,
            profile: false,
            volumes: false,
        };
        crate::link::build_kernel_variant(layout, v)
            .ok()
            .and_then(|k| stripped_size(&k))
    };
    Ok(Report {
        runs,
        accel: match accel.accel {
            qemu::Accel::Tcg => "TCG",
            qemu::Accel::Kvm => "KVM",
        },
        rows,
        kernel_size: variant_size(true),
        kernel_size_without_net: variant_size(false),
        kernel_size_full: crate::link::build_kernel(layout)
            .ok()
            .and_then(|k| stripped_size(&k)),
        hello_min,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        host_load: load_at_start.zip(load_average()),
    })
}

/// The heading of `bench boot`'s section of `BENCHMARKS.md`.
pub const HEADING: &str = "## Boot time";

/// Rewrites the boot section of `BENCHMARKS.md` (the other sections stay as they are).
pub fn write_markdown(layout: &Layout, report: &Report, command: &str) -> anyhow::Result<()> {
    let body = format!(
        "Measured with `{command}` (QEMU 7.2; results are {} on {} cores: \
         software emulation, so compare ratios more than absolute times). The floor image is a do-nothing PVH kernel \
         that exits at once: it measures QEMU's own start and exit cost. The load average counts \
         the benchmark's own QEMU (about 1); other work on the host makes the times, and less \
         so the ratios, vary from run to run.\n\n{}",
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
            phases: None,
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
            kernel_size_without_net: Some(10240),
            kernel_size_full: Some(13000),
            hello_min: Some((5, true)),
            cpus: 2,
            host_load: Some((1.5, 2.25)),
        };
        let s = format_report(&r);
        assert!(
            s.contains("| microvm | hello | 100 bytes | 0.300 s | 3.0x |"),
            "{s}"
        );
        assert!(s.contains("| q35 | hello | 100 bytes | failed |  |"), "{s}");
        assert!(
            s.contains("TCG on 2 cores, host load average 1.50 at the start and 2.25 at the end.")
        );
        assert!(s.contains(
            "12345 bytes (12 KiB) with the network stack, 10240 bytes (10 KiB) without it; with the program profiler and volumes too (`--with-profiler --with-volumes`) 13000 bytes (12 KiB)."
        ), "{s}");
        assert!(s.contains("hello on q35: boom"));
        assert!(!s.contains("Guest boot"));
        assert!(
            s.contains(
                "hello with `--memory 5M` (its image plus 2 MiB, the least it accepts): runs"
            ),
            "{s}"
        );
    }

    #[test]
    fn phase_table_from_boot_records() {
        let boot = |program: u64| Boot {
            tsc_hz: 1_000_000_000,
            // entry, memory, cpu, rootfs, loaded, devices, first instruction (ns = ticks)
            stamps: vec![
                1_000,
                101_000,
                301_000,
                0,
                401_000,
                451_000,
                1_000 + program,
            ],
        };
        let ph = Phases::from_records(&[boot(600_000), boot(500_000), boot(700_000)]).unwrap();
        assert_eq!(ph.at(BootPhase::Program), Some(600.0));
        assert_eq!(ph.at(BootPhase::Rootfs), None);
        let r = Report {
            runs: 3,
            accel: "TCG",
            rows: vec![Row {
                machine: Machine::Microvm,
                image: "hello",
                size: 1,
                median: Some(ms(30)),
                failure: None,
                phases: Some(ph),
            }],
            kernel_size: None,
            kernel_size_without_net: None,
            kernel_size_full: None,
            hello_min: None,
            cpus: 2,
            host_load: None,
        };
        let s = format_report(&r);
        // Each phase's own time; a phase not recorded leaves its cell empty and the next
        // one counts from the last recorded phase.
        assert!(
            s.contains(
                "| microvm | hello | 600 µs | 100 µs | 200 µs |  | 100 µs | 50 µs | 150 µs |"
            ),
            "{s}"
        );
    }
}
