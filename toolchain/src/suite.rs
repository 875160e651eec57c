//! `cargo xtask test`: the whole suite, in order, stopping at the first failure.

use crate::Layout;
use anyhow::bail;
use std::os::unix::process::CommandExt;
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
/// target and flags; once more without the network stack, in the target directory of the
/// kernel built that way), a short run of every fuzz target (so they keep building), then
/// the end-to-end tests with two threads.
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
            what: "kernel unit tests without the network stack",
            dir: layout.kernel_dir(),
            args: vec![
                "test",
                "-p",
                "kiln-os",
                "--no-default-features",
                "--target-dir",
                "target/no-net",
            ],
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

/// Runs the suite: installs the Debian packages it uses ([`crate::deps::SUITE`]), settles
/// the accelerator once (so the first test does not pay for the KVM probe), then runs the
/// steps. Each step runs in a process group of its own; SIGINT, SIGTERM or SIGHUP to the
/// suite is passed to that whole group (the tests, their runners, QEMU, registries), so an
/// interrupted suite leaves nothing running.
pub fn run(layout: &Layout) -> anyhow::Result<()> {
    crate::deps::ensure(crate::deps::SUITE)?;
    crate::qemu::signals::install();
    let (_, accel) = crate::qemu::prepare_fresh(layout, crate::qemu::Machine::Microvm)?;
    crate::note!("accelerator: {}", accel.accel.name());
    for step in steps(layout) {
        crate::note!("{}: cargo {}", step.what, step.args.join(" "));
        let mut cmd = Command::new(crate::link::cargo());
        cmd.args(&step.args).current_dir(&step.dir).process_group(0);
        if step.dir == layout.kernel_dir() {
            cmd.env_remove("RUSTFLAGS")
                .env_remove("CARGO_ENCODED_RUSTFLAGS");
        }
        let mut child = cmd.spawn()?;
        let status = loop {
            if let Some(sig) = crate::qemu::signals::received() {
                stop_group(&mut child, sig);
                bail!(
                    "stopped by {}; the tests were stopped",
                    crate::qemu::outcome::signal_name(sig)
                );
            }
            match child.try_wait()? {
                Some(s) => break s,
                None => std::thread::sleep(std::time::Duration::from_millis(50)),
            }
        };
        if !status.success() {
            bail!("{} failed", step.what);
        }
    }
    Ok(())
}

/// Passes `sig` to the process group led by `child`, then, after a grace period for the
/// runners to stop their virtual machines, kills what is left of the group.
fn stop_group(child: &mut std::process::Child, sig: i32) {
    use rustix::process::{kill_process_group, Pid, Signal};
    let Some(pid) = Pid::from_raw(child.id() as i32) else {
        return;
    };
    let signal = Signal::from_named_raw(sig).unwrap_or(Signal::TERM);
    let _ = kill_process_group(pid, signal);
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(10) {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = kill_process_group(pid, Signal::KILL);
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suite_order() {
        let s = steps(&Layout::new("/r"));
        assert_eq!(s.len(), 5);
        assert_eq!(s[1].dir, PathBuf::from("/r/kernel"));
        assert_eq!(s[2].dir, PathBuf::from("/r/kernel"));
        assert!(s[2].args.contains(&"--no-default-features"));
        assert!(s[0].args.contains(&"--exclude"));
        assert_eq!(s[3].args[..3], ["xtask", "fuzz", "all"]);
        assert_eq!(
            s[4].args[..4],
            ["test", "--no-fail-fast", "-p", "kiln-tests"]
        );
        assert!(s[4].args.ends_with(&["--test-threads", "2"]));
    }
}
