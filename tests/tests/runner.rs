//! The runner owns its QEMU and never hangs on an accelerator: a stop signal to `run` stops
//! the virtual machine and removes its files; a KVM that cannot run the kernel is a quick,
//! clear failure (when forced) or a fallback to TCG; the accelerator probe's program really
//! passes on a working machine.

use kiln_tests::{build_image, root, scratch, xtask_bin};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Busybox sleeping for ten minutes: a program that runs until it is stopped.
fn sleeper() -> &'static Path {
    static IMG: OnceLock<std::path::PathBuf> = OnceLock::new();
    IMG.get_or_init(|| {
        build_image(
            "sleeper",
            &["--elf", "/bin/busybox", "--arg", "sleep", "--arg", "600"],
        )
    })
}

/// Processes whose command line mentions `needle`.
fn processes_with(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmd).contains(needle) {
                found.push(pid);
            }
        }
    }
    found
}

/// Waits for `child` at most `limit`; kills it and fails when it takes longer.
fn wait_at_most(child: &mut Child, limit: Duration, what: &str) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn stop_signals_stop_the_vm_and_leave_nothing_behind() {
    let image = sleeper();
    // Each presses the power button: the program (busybox sleep, no handler) dies of the
    // SIGTERM it gets, as under a cloud's stop.
    for (sig, name, status) in [
        ("TERM", "SIGTERM", 143),
        ("INT", "SIGINT", 143),
        ("HUP", "SIGHUP", 143),
    ] {
        // A copy of the image per signal, so its path finds exactly this run's QEMU.
        let dir = scratch(&format!("stop-{name}"));
        let tmp = dir.join("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        let img = dir.join("sleeper.elf");
        std::fs::copy(image, &img).unwrap();
        let img_s = img.to_str().unwrap().to_string();
        let mut run = Command::new(xtask_bin())
            .args(["run", "--image", &img_s])
            .env("TMPDIR", &tmp)
            .current_dir(root())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until QEMU runs the image.
        let start = Instant::now();
        while processes_with(&img_s).len() < 2 {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "QEMU never started"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_secs(1));
        let k = Command::new("kill")
            .args([&format!("-{sig}"), &run.id().to_string()])
            .status()
            .unwrap();
        assert!(k.success());
        let code = wait_at_most(&mut run, Duration::from_secs(10), "run after a signal");
        let mut err = String::new();
        std::io::Read::read_to_string(run.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert_eq!(code, status, "{name}: {err}");
        // The runner says it pressed the power button, unless QEMU ended before the
        // monitor's answer came (the program died at once of the SIGTERM; the runner then
        // lets QEMU's status stand): the kernel's report of that SIGTERM shows the press.
        assert!(
            err.contains(&format!(
                "{name}: pressed the virtual machine's power button"
            )) || err.contains("program killed by SIGTERM"),
            "{name}: {err}"
        );
        // No QEMU of this image remains, and the run's files are gone.
        let start = Instant::now();
        while !processes_with(&img_s).is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{name}: QEMU still running: {:?}",
                processes_with(&img_s)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().collect();
        assert!(left.is_empty(), "{name}: left behind {left:?}");
    }
}

/// With `KILN_ACCEL=kvm` the run either works (a host whose KVM runs Kiln) or fails at once
/// with status 125 and the reason; it never waits for a timeout.
#[test]
fn forced_kvm_works_or_fails_quickly_with_the_reason() {
    let img = build_image("accel-hello", &["--example", "hello"]);
    let start = Instant::now();
    let mut run = Command::new(xtask_bin())
        .args(["run", "--image", img.to_str().unwrap()])
        .env("KILN_ACCEL", "kvm")
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let code = wait_at_most(&mut run, Duration::from_secs(60), "a forced-KVM run");
    let out = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    match code {
        0 => assert!(String::from_utf8_lossy(&out.stdout).contains("hello from kiln")),
        125 => {
            assert!(stderr.contains("KVM") || stderr.contains("kvm"), "{stderr}");
            assert!(stderr.contains("KILN_ACCEL"), "{stderr}");
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{:?}",
                start.elapsed()
            );
        }
        other => panic!("status {other}: {stderr}"),
    }
}

/// The probe's program passes on a machine that runs the kernel correctly (TCG), so a
/// failing probe under KVM means KVM, not the probe.
#[test]
fn the_accelerator_probe_passes_under_tcg() {
    use kiln_toolchain::qemu::{self, kvm, probe, Accel, AccelChoice, ProgramOutput, RunOptions};
    let layout = kiln_toolchain::Layout::new(root());
    let kernel = kiln_toolchain::link::build_kernel(&layout).unwrap();
    let bytes = probe::image(&std::fs::read(kernel).unwrap()).unwrap();
    let img = scratch("probe").join("kvm-probe.elf");
    std::fs::write(&img, bytes).unwrap();
    let qemu_bin = qemu::install::ensure("qemu-system-x86_64").unwrap();
    let r = qemu::run(
        &qemu_bin,
        &AccelChoice::fixed(Accel::Tcg, true),
        &img,
        &RunOptions::default(),
        Some(Duration::from_secs(120)),
        ProgramOutput::Collect,
    )
    .unwrap();
    assert_eq!(
        kvm::judge(r.outcome.status, r.outcome.reason.as_deref(), &r.stdout),
        Ok(()),
        "{r:?}"
    );
}
