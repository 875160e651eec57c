//! `cargo xtask fuzz`: coverage-guided fuzzing of every parser that reads untrusted bytes.
//!
//! The targets live in `fuzz/` (its own cargo workspace, so normal builds never compile the
//! engine), with seed corpora in `fuzz/corpus/TARGET/`. The engine is libFuzzer, linked in by
//! the `libfuzzer-sys` crate (which compiles it with the installed C++ compiler). It runs on
//! stable Rust: coverage comes from LLVM's SanitizerCoverage pass, switched on with stable
//! `-C` flags ([`rustflags`]), and no sanitizer is used, so nothing needs nightly and no
//! extra cargo tool is installed. Overflow checks and debug assertions stay on in the fuzz
//! build, so an arithmetic overflow on bad input counts as a crash.
//!
//! New inputs that reach new code go to `fuzz/target/corpus/TARGET/` (kept between runs,
//! not committed); a crashing input is written to `fuzz/artifacts/TARGET/`.

use crate::Layout;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// One fuzz target: its binary name in `fuzz/` and what it feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Binary name (`fuzz/fuzz_targets/NAME.rs`, `fuzz/corpus/NAME/`).
    pub name: &'static str,
    /// The parsers it calls.
    pub what: &'static str,
    /// What fuzzing it found (and was fixed), with the regression tests; empty: nothing.
    pub found: &'static str,
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "toolchain_elf",
        what: "the toolchain's ELF checks (elf::validate, elf::headers, provenance::find_payload)",
        found: "",
    },
    Target {
        name: "kernel_elf",
        what: "the kernel's ELF loader (os::elf::parse, Program::load_bias)",
        found: "",
    },
    Target {
        name: "tar",
        what: "the kernel's root-filesystem reader (os::fs::tar::parse, normalise)",
        found: "",
    },
    Target {
        name: "payload",
        what: "the payload parser (abi::payload::parse)",
        found: "",
    },
    Target {
        name: "cmdline",
        what: "the kernel command line (abi::cmdline: Config::parse, to_cmdline round trips both ways, decode)",
        found: "(seen while writing the round trip of built configurations, which now checks it) one empty argument (`--arg \"\"`) was written as `kiln.argv=`, which reads back as no arguments; an empty argument is now written `\"\"` (`cmdline::tests::empty_arguments_survive_the_round_trip`, e2e `empty_arguments_reach_the_program`)",
    },
    Target {
        name: "oci_reference",
        what: "OCI references (oci::reference::ImageRef::parse, round trip)",
        found: "",
    },
    Target {
        name: "disk_image",
        what: "disk-image recognisers of run --image and inspect (disk::detect_bytes, inspect::detect, inspect::scan, provenance::read)",
        found: "",
    },
    Target {
        name: "netlink",
        what: "netlink answers (os::net::netlink::answer, datagrams): well-formed whatever the request",
        found: "",
    },
    Target {
        name: "shebang",
        what: "execve's `#!` lines (os::syscall::exec::shebang, resolve): an interpreter is one word, following them ends",
        found: "",
    },
    Target {
        name: "sigframe",
        what: "signal frames (os::sigframe::restore_regs, sanitise_fx, layout)",
        found: "an alternate stack whose base + size overflows, or an rsp just above 0, overflowed the frame arithmetic in `layout`; now EFAULT (`sigframe::tests::stacks_at_the_ends_of_the_address_space_are_efault`)",
    },
];

/// Looks a target up by name.
pub fn target(name: &str) -> anyhow::Result<Target> {
    TARGETS
        .iter()
        .copied()
        .find(|t| t.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
            anyhow::anyhow!(
                "no fuzz target {name:?}; the targets are: {} (or all)",
                names.join(", ")
            )
        })
}

/// The flags that make rustc instrument code for libFuzzer, all stable: SanitizerCoverage
/// with inline 8-bit counters, the PC table, comparison tracing and stack depth, and
/// `--cfg fuzzing`.
pub fn rustflags() -> Vec<&'static str> {
    vec![
        "-Cpasses=sancov-module",
        "-Cllvm-args=-sanitizer-coverage-level=4",
        "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
        "-Cllvm-args=-sanitizer-coverage-pc-table",
        "-Cllvm-args=-sanitizer-coverage-trace-compares",
        "-Cllvm-args=-sanitizer-coverage-stack-depth",
        "--cfg",
        "fuzzing",
    ]
}

/// The fuzz workspace.
pub fn fuzz_dir(layout: &Layout) -> PathBuf {
    layout.root.join("fuzz")
}

/// The host's target triple (`rustc -vV`). The fuzz build names it explicitly so that the
/// instrumentation flags reach only the target code, not build scripts or proc-macros.
fn host_triple() -> anyhow::Result<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(&rustc)
        .arg("-vV")
        .output()
        .with_context(|| format!("could not run {rustc} -vV"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|s| s.trim().to_string())
        .ok_or_else(|| anyhow::anyhow!("{rustc} -vV names no host triple"))
}

/// Where the built target binaries are.
fn bin_dir(layout: &Layout, triple: &str) -> PathBuf {
    fuzz_dir(layout).join("target").join(triple).join("release")
}

/// Builds the fuzz binaries (all of them: one build serves every target).
pub fn build(layout: &Layout) -> anyhow::Result<PathBuf> {
    // libfuzzer-sys compiles libFuzzer (C++) in its build script.
    crate::qemu::install::ensure_tool("c++", "g++")?;
    let triple = host_triple()?;
    crate::note!("building the fuzz targets (libFuzzer, instrumented release build)");
    let status = Command::new(crate::link::cargo())
        .args(["build", "--release", "--bins", "--target", &triple])
        .current_dir(fuzz_dir(layout))
        .env_remove("RUSTFLAGS")
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags().join("\x1f"))
        .stdout(crate::app::stderr_stdio())
        .status()
        .context("could not run cargo")?;
    if !status.success() {
        bail!("building the fuzz targets failed");
    }
    Ok(bin_dir(layout, &triple))
}

/// How long to fuzz.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Stop after this many seconds.
    pub secs: u64,
    /// Stop after this many executions, if sooner.
    pub runs: Option<u64>,
}

/// The outcome of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The target.
    pub target: &'static str,
    /// Inputs executed.
    pub execs: u64,
    /// Wall-clock seconds.
    pub secs: f64,
    /// Inputs in the working corpus afterwards.
    pub corpus: usize,
}

/// Reads libFuzzer's final statistic `stat::number_of_executed_units: N`.
pub fn executed_units(stderr: &str) -> Option<u64> {
    stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|n| n.trim().parse().ok())
}

/// The libFuzzer command line for `target`.
pub fn fuzzer_args(layout: &Layout, target: &str, budget: Budget) -> Vec<String> {
    let dir = fuzz_dir(layout);
    let mut args = vec![
        format!("-max_total_time={}", budget.secs),
        // A single input running this long is a hang (an infinite loop on bad input).
        "-timeout=10".to_string(),
        // An input that makes a parser allocate this much is a finding too.
        "-rss_limit_mb=2048".to_string(),
        "-print_final_stats=1".to_string(),
        format!(
            "-artifact_prefix={}/",
            dir.join("artifacts").join(target).display()
        ),
    ];
    if let Some(n) = budget.runs {
        args.push(format!("-runs={n}"));
    }
    // The first directory receives new inputs; the committed seeds are only read.
    args.push(work_corpus(layout, target).display().to_string());
    args.push(dir.join("corpus").join(target).display().to_string());
    args
}

fn work_corpus(layout: &Layout, target: &str) -> PathBuf {
    fuzz_dir(layout).join("target/corpus").join(target)
}

/// Fuzzes one target with binaries from `bins`.
pub fn run_one(layout: &Layout, bins: &Path, t: Target, budget: Budget) -> anyhow::Result<Report> {
    let dir = fuzz_dir(layout);
    std::fs::create_dir_all(work_corpus(layout, t.name))?;
    std::fs::create_dir_all(dir.join("artifacts").join(t.name))?;
    crate::note!(
        "fuzzing {} for up to {} s{}: {}",
        t.name,
        budget.secs,
        budget
            .runs
            .map(|n| format!(" or {n} executions"))
            .unwrap_or_default(),
        t.what
    );
    let start = Instant::now();
    let out = Command::new(bins.join(t.name))
        .args(fuzzer_args(layout, t.name, budget))
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not run the fuzz target {}", t.name))?;
    let secs = start.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        // libFuzzer's own report: the panic, the stack and where it saved the input.
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        for l in tail.into_iter().rev() {
            eprintln!("{l}");
        }
        bail!(
            "fuzz target {} failed ({}); the input is in {}",
            t.name,
            out.status,
            layout.display(&dir.join("artifacts").join(t.name))
        );
    }
    let corpus = std::fs::read_dir(work_corpus(layout, t.name))
        .map(|d| d.count())
        .unwrap_or(0);
    let report = Report {
        target: t.name,
        execs: executed_units(&stderr).unwrap_or(0),
        secs,
        corpus,
    };
    crate::note!(
        "{}: {} executions in {:.0} s, no crash ({} inputs in the working corpus)",
        report.target,
        report.execs,
        report.secs,
        report.corpus
    );
    Ok(report)
}

/// `cargo xtask fuzz TARGET|all`: builds the targets, then fuzzes the one named (or each in
/// turn), stopping at the first crash. With `record`, writes the results as the fuzzing
/// section of `BENCHMARKS.md`.
pub fn run(
    layout: &Layout,
    name: &str,
    budget: Budget,
    record: bool,
) -> anyhow::Result<Vec<Report>> {
    let targets = if name == "all" {
        TARGETS.to_vec()
    } else {
        vec![target(name)?]
    };
    let bins = build(layout)?;
    let reports = targets
        .into_iter()
        .map(|t| run_one(layout, &bins, t, budget))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if record {
        let runs = budget
            .runs
            .map(|n| format!(" --runs {n}"))
            .unwrap_or_default();
        let command = format!("cargo xtask fuzz {name} --time {}{runs}", budget.secs);
        crate::bench::markdown::write_section(layout, HEADING, &markdown(&reports, &command))?;
        crate::note!("wrote the fuzzing section of BENCHMARKS.md");
    }
    Ok(reports)
}

/// The heading of the fuzzing section of `BENCHMARKS.md`.
pub const HEADING: &str = "## Fuzzing";

/// The fuzzing section of `BENCHMARKS.md` for `reports`, run as `command`.
pub fn markdown(reports: &[Report], command: &str) -> String {
    let mut s = format!(
        "Coverage-guided fuzzing with libFuzzer (stable Rust, no sanitizer; overflow checks on), \
         measured with `{command}` on 2 shared cores at the lowest CPU priority. Each run \
         starts from the seeds in `fuzz/corpus/TARGET/` plus the working corpus of earlier \
         runs. Findings were fixed in the parser and each has a regression test.\n\n\
         | target | executions | time | findings |\n|---|---:|---:|---|\n"
    );
    for r in reports {
        let found = target(r.target).map(|t| t.found).unwrap_or("");
        let found = if found.is_empty() { "none" } else { found };
        s.push_str(&format!(
            "| {} | {} | {:.0} s | {found} |\n",
            r.target, r.execs, r.secs
        ));
    }
    s
}

/// `cargo xtask fuzz --list`.
pub fn list() -> String {
    TARGETS
        .iter()
        .map(|t| format!("{:<14} {}\n", t.name, t.what))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_has_a_source_and_seeds() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let manifest = std::fs::read_to_string(root.join("fuzz/Cargo.toml")).unwrap();
        for t in TARGETS {
            assert!(
                root.join(format!("fuzz/fuzz_targets/{}.rs", t.name))
                    .is_file(),
                "{}",
                t.name
            );
            assert!(manifest.contains(&format!("name = \"{}\"", t.name)));
            let seeds = std::fs::read_dir(root.join("fuzz/corpus").join(t.name)).unwrap();
            assert!(seeds.count() > 0, "{} has no seeds", t.name);
        }
        let bins = manifest.matches("[[bin]]").count();
        assert_eq!(
            bins,
            TARGETS.len(),
            "a [[bin]] in fuzz/ without a TARGETS entry"
        );
    }

    #[test]
    fn names_and_arguments() {
        assert_eq!(target("tar").unwrap().name, "tar");
        assert!(target("nope")
            .unwrap_err()
            .to_string()
            .contains("kernel_elf"));
        let l = Layout::new("/r");
        let a = fuzzer_args(
            &l,
            "tar",
            Budget {
                secs: 5,
                runs: Some(10),
            },
        );
        assert_eq!(a[0], "-max_total_time=5");
        assert!(a.contains(&"-runs=10".to_string()));
        assert!(a.contains(&"-artifact_prefix=/r/fuzz/artifacts/tar/".to_string()));
        assert_eq!(
            a[a.len() - 2..],
            ["/r/fuzz/target/corpus/tar", "/r/fuzz/corpus/tar"]
        );
        assert!(list().lines().count() == TARGETS.len());
    }

    #[test]
    fn markdown_lists_counts_and_findings() {
        let r = Report {
            target: "sigframe",
            execs: 1_000_000,
            secs: 61.4,
            corpus: 9,
        };
        let md = markdown(&[r], "cargo xtask fuzz all --time 900 --runs 1000000");
        assert!(md.contains("`cargo xtask fuzz all --time 900 --runs 1000000`"));
        assert!(md.contains("| sigframe | 1000000 | 61 s | an alternate stack"));
        assert!(
            TARGETS.iter().all(|t| !t.found.contains('|')),
            "breaks the table"
        );
    }

    #[test]
    fn reads_libfuzzer_stats() {
        let err = "Done 1000 runs in 2 second(s)\nstat::number_of_executed_units: 1003\nstat::average_exec_per_sec:     501\n";
        assert_eq!(executed_units(err), Some(1003));
        assert_eq!(executed_units("crash"), None);
    }
}
