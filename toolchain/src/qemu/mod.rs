//! Booting an image in QEMU and behaving like the program ran locally.
//!
//! - [`target`]: machine definitions from `targets/*.toml`.
//! - [`args`]: QEMU's argument list and the kernel's run-time command line.
//! - [`streams`]: FIFOs carrying the program's stdout/stderr and the kernel log.
//! - [`outcome`]: QEMU's exit -> the program's status (124 timeout, 125 kernel/QEMU failure).
//! - [`kvm`]: the cached KVM probe. [`install`]: finding or installing QEMU.

pub mod args;
pub mod install;
pub mod kvm;
pub mod outcome;
pub mod streams;
pub mod target;

pub use args::{Accel, RunOptions};
pub use outcome::{Ended, Outcome};
pub use target::{Machine, Target};

use crate::Layout;
use anyhow::Context;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most kernel-log bytes kept in memory for the panic line.
const LOG_CAP: usize = 8 << 20;

/// Where the program's stdout goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramOutput {
    /// To our stdout, byte for byte.
    Inherit,
    /// Dropped, with the program's stderr (benchmarks).
    Discard,
    /// Collected into [`RunResult::stdout`] (tests).
    Collect,
}

/// The result of one boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunResult {
    /// Status and reason.
    pub outcome: Outcome,
    /// From starting QEMU to its exit.
    pub elapsed: Duration,
    /// The program's stdout, with [`ProgramOutput::Collect`].
    pub stdout: Vec<u8>,
}

/// Finds (or installs) QEMU and picks the accelerator.
pub fn prepare(layout: &Layout, machine: Machine) -> anyhow::Result<(std::path::PathBuf, Accel)> {
    let qemu = install::ensure(&machine.target().binary)?;
    let accel = kvm::choose(&qemu, &layout.kiln_dir());
    Ok((qemu, accel))
}

/// Kills our QEMU child and reaps it, giving up after 5 s (a QEMU stuck in the host
/// kernel may not die at once; we never hang on it).
pub fn kill_and_reap(child: &mut std::process::Child) {
    let _ = child.kill();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Prepares a UEFI boot of a disk image (or of an EFI application, put on a raw disk for
/// the run) on the [`target::uefi_target`]: firmware (installed when missing), a fresh
/// variable store and the run-time command line in `dir`.
fn uefi_boot(
    kind: crate::disk::ImageKind,
    image: &Path,
    dir: &Path,
    opts: &RunOptions,
    accel: Accel,
    paths: &args::StreamPaths,
) -> anyhow::Result<Vec<std::ffi::OsString>> {
    use crate::disk::ImageKind;
    let target = target::uefi_target();
    let (disk, format) = match kind {
        ImageKind::Disk(f) => (image.to_path_buf(), f),
        ImageKind::Efi => {
            let efi = std::fs::read(image)
                .with_context(|| format!("could not read {}", image.display()))?;
            let raw = dir.join("disk.raw");
            crate::disk::esp::write_raw_disk(&efi, None, &raw)?;
            (raw, "raw")
        }
        ImageKind::GceArchive => anyhow::bail!(
            "{} is a GCE archive; unpack its disk first (tar -xzSf {} disk.raw) and run --image disk.raw",
            image.display(),
            image.display()
        ),
        ImageKind::Pvh => anyhow::bail!("internal: a PVH image does not boot through UEFI"),
    };
    let package = target.firmware_package.clone().unwrap_or_default();
    let code = Path::new(target.firmware_code.as_deref().unwrap_or_default());
    let vars_template = Path::new(target.firmware_vars.as_deref().unwrap_or_default());
    install::ensure_file(code, &package)?;
    install::ensure_file(vars_template, &package)?;
    let vars = dir.join("vars.fd");
    std::fs::copy(vars_template, &vars)
        .with_context(|| format!("could not copy {}", vars_template.display()))?;
    let cmdline_file = dir.join("cmdline");
    std::fs::write(
        &cmdline_file,
        args::runtime_config(&target, opts).to_cmdline(),
    )?;
    let boot = args::UefiBoot {
        disk,
        format: format.into(),
        vars,
        cmdline_file,
    };
    Ok(args::uefi_args(&target, opts, accel, &boot, paths))
}

/// Boots `image` once: a PVH ELF with `-kernel` on `opts.machine`; a disk image (raw,
/// qcow2, vmdk, vhd) or EFI application under UEFI firmware on q35. Kiln's failures to even start QEMU are errors; everything after
/// that (including timeouts and kernel panics) is in the [`RunResult`].
pub fn run(
    qemu: &Path,
    accel: Accel,
    image: &Path,
    opts: &RunOptions,
    timeout: Duration,
    output: ProgramOutput,
) -> anyhow::Result<RunResult> {
    if !image.is_file() {
        anyhow::bail!(
            "image {} does not exist; build it with `cargo xtask build-image`",
            image.display()
        );
    }
    let dir = tempfile::Builder::new()
        .prefix("kiln-run-")
        .tempdir()
        .context("could not create a temporary directory")?;
    let paths = args::StreamPaths {
        stdout: dir.path().join("stdout"),
        stderr: dir.path().join("stderr"),
        log: dir.path().join("log"),
        status: dir.path().join("status"),
    };
    let done = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Vec::new()));
    let collected = Arc::new(Mutex::new(Vec::new()));
    let mut copiers = Vec::new();
    for (path, out) in [
        (
            &paths.stdout,
            match output {
                ProgramOutput::Inherit => Box::new(std::io::stdout()) as Box<dyn Write + Send>,
                ProgramOutput::Discard => Box::new(std::io::sink()),
                ProgramOutput::Collect => Box::new(streams::Tee {
                    buf: collected.clone(),
                    echo: None,
                    cap: usize::MAX,
                }),
            },
        ),
        (
            &paths.stderr,
            match output {
                ProgramOutput::Discard => Box::new(std::io::sink()) as Box<dyn Write + Send>,
                _ => Box::new(std::io::stderr()),
            },
        ),
        (
            &paths.log,
            Box::new(streams::Tee {
                buf: log.clone(),
                echo: opts
                    .verbose
                    .then(|| Box::new(std::io::stderr()) as Box<dyn Write + Send>),
                cap: LOG_CAP,
            }),
        ),
    ] {
        streams::mkfifo(path).with_context(|| format!("mkfifo {}", path.display()))?;
        let reader = streams::open_reader(path)?;
        copiers.push(streams::spawn_copier(reader, out, done.clone()));
    }

    // Anything that is not recognisably a disk or EFI application goes to `-kernel`, and
    // QEMU says what is wrong with it.
    let qemu_args = match crate::disk::detect(image) {
        Ok(crate::disk::ImageKind::Pvh) | Err(_) => {
            args::qemu_args(&opts.machine.target(), opts, accel, image, &paths)
        }
        Ok(kind) => uefi_boot(kind, image, dir.path(), opts, accel, &paths)?,
    };
    let start = Instant::now();
    let mut child = Command::new(qemu)
        .args(&qemu_args)
        .stdin(Stdio::null())
        .stdout(crate::app::stderr_stdio())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start {}", qemu.display()))?;
    let qemu_err = Arc::new(Mutex::new(Vec::new()));
    let err_thread = child.stderr.take().map(|mut e| {
        let buf = qemu_err.clone();
        let verbose = opts.verbose;
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = e.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                if verbose {
                    let _ = std::io::stderr().write_all(&chunk[..n]);
                }
                if let Ok(mut b) = buf.lock() {
                    if b.len() < 1 << 20 {
                        b.extend_from_slice(&chunk[..n]);
                    }
                }
            }
        })
    });

    let ended = loop {
        match child.try_wait()? {
            Some(status) => {
                use std::os::unix::process::ExitStatusExt;
                break match (status.code(), status.signal()) {
                    (Some(c), _) => Ended::Exited(c),
                    (None, Some(s)) => Ended::Signaled(s),
                    (None, None) => Ended::Signaled(0),
                };
            }
            None if start.elapsed() >= timeout => {
                kill_and_reap(&mut child);
                break Ended::TimedOut(timeout.as_secs());
            }
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    };
    let elapsed = start.elapsed();
    done.store(true, Ordering::Release);
    for c in copiers {
        let _ = c.join();
    }
    if let Some(t) = err_thread {
        // QEMU's stderr closes when it exits; a QEMU that would not die keeps it open, and
        // then we stop waiting for the rest of its messages.
        let start = Instant::now();
        while !t.is_finished() && start.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(5));
        }
        if t.is_finished() {
            let _ = t.join();
        }
    }
    let log =
        String::from_utf8_lossy(&log.lock().map(|b| b.clone()).unwrap_or_default()).into_owned();
    let qemu_err = String::from_utf8_lossy(&qemu_err.lock().map(|b| b.clone()).unwrap_or_default())
        .into_owned();
    let status_byte = std::fs::read(&paths.status)
        .ok()
        .and_then(|b| b.last().copied());
    Ok(RunResult {
        outcome: outcome::decide(ended, &log, &qemu_err, status_byte),
        elapsed,
        stdout: collected.lock().map(|b| b.clone()).unwrap_or_default(),
    })
}
