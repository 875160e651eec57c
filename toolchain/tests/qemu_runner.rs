//! Boots hand-assembled PVH images (no kernel needed) through the real runner and QEMU.
//! Skipped when `qemu-system-x86_64` is not installed.

use kiln_toolchain::floor;
use kiln_toolchain::qemu::{self, install, Accel, AccelChoice, Machine, ProgramOutput, RunOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn qemu_bin() -> Option<PathBuf> {
    install::which("qemu-system-x86_64")
}

fn write_image(dir: &Path, code: Vec<u8>) -> PathBuf {
    let p = dir.join("img.elf");
    std::fs::write(&p, floor::image_with_code(code).write()).unwrap();
    p
}

fn boot(code: Vec<u8>, machine: Machine, timeout: u64) -> qemu::RunResult {
    let dir = tempfile::tempdir().unwrap();
    let img = write_image(dir.path(), code);
    let opts = RunOptions {
        machine,
        ..RunOptions::default()
    };
    qemu::run(
        &qemu_bin().unwrap(),
        &AccelChoice::fixed(Accel::Tcg, true),
        &img,
        &opts,
        Some(Duration::from_secs(timeout)),
        ProgramOutput::Collect,
    )
    .unwrap()
}

#[test]
fn floor_exits_zero_on_both_machines() {
    if qemu_bin().is_none() {
        eprintln!("skipped: no QEMU");
        return;
    }
    for m in Machine::ALL {
        let r = boot(floor::CODE.to_vec(), m, 30);
        assert_eq!(
            r.outcome,
            qemu::Outcome {
                status: 0,
                reason: None
            },
            "{m:?}"
        );
    }
}

#[test]
fn statuses_panics_and_timeouts() {
    if qemu_bin().is_none() {
        eprintln!("skipped: no QEMU");
        return;
    }
    let all: Vec<u8> = (0..=255u8).collect();
    let r = boot(
        floor::scripted_code(
            &[(0x402, b"out\n"), (0x403, b"err\n"), (0x402, &all)],
            Some(42),
        ),
        Machine::Microvm,
        30,
    );
    assert_eq!(r.outcome.status, 42);
    let mut want = b"out\n".to_vec();
    want.extend(&all);
    assert_eq!(r.stdout, want, "stdout byte for byte");
    for m in Machine::ALL {
        let port = m.target().status_port;
        let r = boot(floor::scripted_code(&[(port, &[200])], Some(200)), m, 30);
        assert_eq!(r.outcome.status, 200, "full status byte on {m:?}");
    }
    let log = b"kiln: booting\nkiln: kernel panic: test panic at x.rs:1\n";
    let r = boot(
        floor::scripted_code(&[(0x3f8, log)], Some(125)),
        Machine::Microvm,
        30,
    );
    assert_eq!(r.outcome.status, 125);
    assert_eq!(
        r.outcome.reason.as_deref(),
        Some("kiln: kernel panic: test panic at x.rs:1")
    );
    let r = boot(floor::scripted_code(&[], None), Machine::Microvm, 1);
    assert_eq!(r.outcome.status, 124);
    assert!(r.elapsed < Duration::from_secs(5));
}

#[test]
fn qemu_failure_is_125() {
    if qemu_bin().is_none() {
        eprintln!("skipped: no QEMU");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("junk.elf");
    std::fs::write(&img, vec![0x55u8; 4096]).unwrap();
    let opts = RunOptions::default();
    let r = qemu::run(
        &qemu_bin().unwrap(),
        &AccelChoice::fixed(Accel::Tcg, true),
        &img,
        &opts,
        Some(Duration::from_secs(20)),
        ProgramOutput::Discard,
    )
    .unwrap();
    assert_eq!(r.outcome.status, 125, "{:?}", r.outcome);
    assert!(r.outcome.reason.unwrap().starts_with("QEMU failed"));
}
