//! `cargo xtask test`: the whole suite, in order, stopping at the first failure.

use crate::Layout;
use anyhow::bail;
use std::path::PathBuf;
use std::process::Command;

/// One step of the suite: a description, the directory and the cargo arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What the step checks.
    pub what: &'static str,
    /// Working directory.
    pub dir: PathBuf,
    /// Arguments to cargo.
    pub args: Vec<&'static str>,
}

/// The steps: host crates, the kernel's host unit tests (in `kernel/`, whose config sets the
/// target and flags), a short run of every fuzz target (so they keep building), then the
/// end-to-end tests with two threads.
pub fn steps(layout: &Layout) -> Vec<Step> {
    vec![
        Step {
            what: "host workspace unit tests",
            dir: layout.root.clone(),
            args: vec!["test", "--workspace", "--exclude", "kiln-tests"],
        },
        Step {
            what: "kernel unit tests",
            dir: layout.kernel_dir(),
            args: vec!["test"],
        },
        Step {
            what: "fuzz targets (each built and run for a few seconds)",
            dir: layout.root.clone(),
            args: vec!["xtask", "fuzz", "all", "--time", "5"],
        },
        Step {
            what: "end-to-end tests",
            dir: layout.root.clone(),
            // Every test binary runs even after a failure, so one report shows all of them.
            args: vec![
                "test",
                "--no-fail-fast",
                "-p",
                "kiln-tests",
                "--",
                "--test-threads",
                "2",
            ],
        },
    ]
}

/// Runs the suite (installing QEMU first when it is missing).
pub fn run(layout: &Layout) -> anyhow::Result<()> {
    crate::qemu::install::ensure(&crate::qemu::Machine::Microvm.target().binary)?;
    for step in steps(layout) {
        crate::note!("{}: cargo {}", step.what, step.args.join(" "));
        let mut cmd = Command::new(crate::link::cargo());
        cmd.args(&step.args).current_dir(&step.dir);
        if step.dir == layout.kernel_dir() {
            cmd.env_remove("RUSTFLAGS")
                .env_remove("CARGO_ENCODED_RUSTFLAGS");
        }
        if !cmd.status()?.success() {
            bail!("{} failed", step.what);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suite_order() {
        let s = steps(&Layout::new("/r"));
        assert_eq!(s.len(), 4);
        assert_eq!(s[1].dir, PathBuf::from("/r/kernel"));
        assert!(s[0].args.contains(&"--exclude"));
        assert_eq!(s[2].args[..3], ["xtask", "fuzz", "all"]);
        assert_eq!(
            s[3].args[..4],
            ["test", "--no-fail-fast", "-p", "kiln-tests"]
        );
        assert!(s[3].args.ends_with(&["--test-threads", "2"]));
    }
}
