//! A graceful stop: a stop signal to `run` presses the virtual machine's power button, the
//! kernel gives the program SIGTERM, and the run ends with the program's status; a program
//! that does not stop is stopped hard after `--stop-timeout` (137), and a second signal
//! stops it at once.

use kiln_tests::{build_image, root, xtask_bin};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A run in the background, its stdout read up to a line holding `ready`.
struct Running {
    child: Child,
    started: Instant,
}

fn start(image: &std::path::Path, extra: &[&str], args: &[&str]) -> Running {
    let mut child = Command::new(xtask_bin())
        .args([
            "run",
            "--image",
            image.to_str().unwrap(),
            "--timeout",
            "300",
        ])
        .args(extra)
        .arg("--")
        .args(args)
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("xtask runs");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("ready") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "ended before `ready`"
        );
    }
    // Keep draining stdout so the runner never blocks on it.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Running {
        child,
        started: Instant::now(),
    }
}

impl Running {
    fn signal(&self, sig: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-s", sig, &pid])
            .status()
            .unwrap()
            .success());
    }

    /// Waits for the end: the status, the runner's stderr, and how long after the start.
    fn wait(mut self) -> (i32, String, Duration) {
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = self.child.wait().unwrap().code().unwrap_or(-1);
        (status, err, self.started.elapsed())
    }
}

const BUSY: &str = "echo ready; while :; do :; done";
const IGNORING: &str = "trap '' TERM; echo ready; while :; do :; done";

/// Debian's busybox as an image, built once for all the tests here.
fn busybox() -> &'static std::path::Path {
    static IMAGE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    IMAGE.get_or_init(|| build_image("stop-busybox", &["--elf", "/bin/busybox"]))
}

#[test]
fn ctrl_c_gives_the_program_sigterm_on_microvm() {
    let run = start(busybox(), &[], &["sh", "-c", BUSY]);
    run.signal("INT");
    let (status, err, _) = run.wait();
    assert_eq!(status, 143, "{err}");
    assert!(
        err.contains("SIGINT: pressed the virtual machine's power button"),
        "{err}"
    );
    assert!(err.contains("program killed by SIGTERM"), "{err}");
}

#[test]
fn sigterm_gives_the_program_sigterm_on_q35() {
    let run = start(busybox(), &["--machine", "q35"], &["sh", "-c", BUSY]);
    run.signal("TERM");
    let (status, err, _) = run.wait();
    assert_eq!(status, 143, "{err}");
    assert!(err.contains("program killed by SIGTERM"), "{err}");
}

#[test]
fn a_program_that_ignores_sigterm_is_stopped_after_the_stop_timeout() {
    let run = start(busybox(), &["--stop-timeout", "2"], &["sh", "-c", IGNORING]);
    run.signal("TERM");
    let (status, err, _) = run.wait();
    assert_eq!(status, 137, "{err}");
    assert!(err.contains("raise --stop-timeout"), "{err}");
}

#[test]
fn a_second_signal_stops_at_once() {
    let run = start(
        busybox(),
        &["--stop-timeout", "120"],
        &["sh", "-c", IGNORING],
    );
    run.signal("TERM");
    std::thread::sleep(Duration::from_secs(1));
    run.signal("TERM");
    let (status, err, took) = run.wait();
    assert_eq!(status, 143, "{err}");
    assert!(took < Duration::from_secs(60), "took {took:?}: {err}");
}

#[test]
fn a_uefi_disk_gets_the_power_button_under_ovmf() {
    let disk = build_image(
        "stop-busybox-raw",
        &["--elf", "/bin/busybox", "--format", "raw"],
    );
    let run = start(&disk, &[], &["sh", "-c", BUSY]);
    run.signal("TERM");
    let (status, err, _) = run.wait();
    assert_eq!(status, 143, "{err}");
    assert!(err.contains("program killed by SIGTERM"), "{err}");
}

/// The QEMUs whose parent is `pid` (from `/proc`).
fn qemu_children(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            // "PID (COMM) STATE PPID ...": COMM may hold spaces, so split after its ')'.
            let (comm, rest) = stat.rsplit_once(')').unwrap_or(("", ""));
            comm.contains("qemu-system")
                && rest.split_whitespace().nth(1) == Some(pid.to_string().as_str())
        })
        .collect()
}

/// QEMU runs in a process group of its own (so a terminal's Ctrl-C reaches only the
/// runner), and still does not outlive a runner killed outright: the kernel kills it with
/// the runner (`PR_SET_PDEATHSIG`).
#[test]
fn a_runner_killed_with_sigkill_takes_its_qemu_along() {
    let mut run = start(busybox(), &[], &["sh", "-c", BUSY]);
    let runner = run.child.id();
    let qemus = qemu_children(runner);
    assert_eq!(qemus.len(), 1, "the runner's QEMU: {qemus:?}");
    run.signal("KILL");
    let _ = run.child.wait();
    let gone = |p: u32| {
        std::fs::read_to_string(format!("/proc/{p}/stat")).map_or(true, |s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
    };
    let end = Instant::now() + Duration::from_secs(10);
    while !gone(qemus[0]) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(gone(qemus[0]), "QEMU {} outlived its runner", qemus[0]);
}
