//! Booting an image in QEMU and behaving like the program ran locally.
//!
//! - [`target`]: machine definitions from `targets/*.toml`.
//! - [`args`]: QEMU's argument list and the kernel's run-time command line.
//! - [`streams`]: FIFOs carrying the program's stdout/stderr and the kernel log.
//! - [`outcome`]: QEMU's exit -> the program's status (124 timeout, 125 kernel/QEMU failure).
//! - [`kvm`]: the cached KVM probe, [`probe`]: the image it boots. [`install`]: finding or
//!   installing QEMU. [`signals`]: stopping QEMU when the runner is told to stop.
//! - [`backlog`]: a real listen backlog for `-p` TCP forwards (QEMU's is 1).
//! - [`qmp`]: QEMU's machine protocol; [`kprof`]: the kernel profiler that samples through it.

pub mod args;
pub mod backlog;
pub mod install;
pub mod kprof;
pub mod kvm;
pub mod outcome;
pub mod probe;
pub mod qmp;
pub mod signals;
pub mod stdin;
pub mod streams;
pub mod target;
pub mod volume;

pub use args::{Accel, RunOptions};
pub use kvm::AccelChoice;
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
    /// The kernel's binary records (`kiln_abi::record`), such as a crash's state.
    pub records: Vec<u8>,
    /// The kernel profiler's samples, with [`RunOptions::kernel_profile_hz`].
    pub kernel_profile: Option<kprof::Samples>,
}

/// [`prepare`] after building the kernel in `layout`, so the probe's answer is for the
/// kernel the next images will have (`cargo xtask accel`, the test suite).
pub fn prepare_fresh(
    layout: &Layout,
    machine: Machine,
) -> anyhow::Result<(std::path::PathBuf, AccelChoice)> {
    if kvm::forced_by_env().is_none() {
        crate::link::build_kernel(layout)?;
    }
    prepare(layout, machine)
}

/// Finds (or installs) QEMU and picks the accelerator, probing KVM with the kernel in
/// `layout` (built first when it is missing).
pub fn prepare(
    layout: &Layout,
    machine: Machine,
) -> anyhow::Result<(std::path::PathBuf, AccelChoice)> {
    let qemu = install::ensure(&machine.target().binary)?;
    if let Some(a) = kvm::forced_by_env() {
        return Ok((qemu, AccelChoice::fixed(a, true)));
    }
    let kernel = layout.kernel_elf();
    let kernel = if kernel.is_file() {
        kernel
    } else {
        crate::link::build_kernel(layout)?
    };
    let accel = kvm::choose(&qemu, &layout.kiln_dir(), &kernel);
    Ok((qemu, accel))
}

/// Whether `child` exits within `limit` (polling).
fn exits_within(child: &mut std::process::Child, limit: Duration) -> std::io::Result<bool> {
    let end = Instant::now() + limit;
    loop {
        if child.try_wait()?.is_some() {
            return Ok(true);
        }
        if Instant::now() >= end {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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

/// How long a KVM run may go without any sign of the kernel (a byte on any of its ports)
/// before the runner decides KVM cannot run it. KVM boots Kiln in milliseconds; under UEFI
/// the firmware comes first.
pub const KVM_START_DEADLINE: Duration = Duration::from_secs(5);
/// [`KVM_START_DEADLINE`] for UEFI boots.
pub const KVM_UEFI_START_DEADLINE: Duration = Duration::from_secs(10);

/// One attempt at a run.
enum Attempt {
    /// QEMU ran the image to its end (or was stopped).
    Done(RunResult),
    /// KVM failed: QEMU reported an internal error, or the kernel never showed itself.
    AccelFailed {
        reason: String,
        /// Whether the program had already written output (a rerun would repeat it).
        program_output: bool,
        elapsed: Duration,
    },
}

/// A `Write` that notes that anything was written.
struct Watched<W> {
    inner: W,
    seen: Arc<AtomicBool>,
}

impl<W: Write> Write for Watched<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if !data.is_empty() {
            self.seen.store(true, Ordering::Release);
        }
        self.inner.write(data)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Boots `image`: a PVH ELF with `-kernel` on `opts.machine`; a disk image (raw, qcow2,
/// vmdk, vhd) or EFI application under UEFI firmware on q35. Kiln's failures to even start
/// QEMU are errors; everything after that (timeouts, kernel panics, a stop signal) is in the
/// [`RunResult`]. Without `timeout` the program runs until it exits or is stopped.
///
/// Under KVM the run is watched: when QEMU reports a KVM internal error, or the kernel shows
/// no sign of life within [`KVM_START_DEADLINE`], QEMU is stopped at once. Unless the user
/// forced KVM, the failure is recorded in the probe cache and the image runs again under TCG.
pub fn run(
    qemu: &Path,
    accel: &kvm::AccelChoice,
    image: &Path,
    opts: &RunOptions,
    timeout: Option<Duration>,
    output: ProgramOutput,
) -> anyhow::Result<RunResult> {
    if !image.is_file() {
        anyhow::bail!(
            "image {} does not exist; build it with `cargo xtask build-image`",
            image.display()
        );
    }
    signals::install();
    match run_once(qemu, accel.accel, image, opts, timeout, output)? {
        Attempt::Done(r) => Ok(r),
        Attempt::AccelFailed {
            reason,
            program_output,
            elapsed,
        } => {
            let fail = |why: String| RunResult {
                outcome: Outcome {
                    status: kiln_abi::exit::KERNEL_FAILURE,
                    reason: Some(why),
                },
                elapsed,
                stdout: Vec::new(),
                records: Vec::new(),
                kernel_profile: None,
            };
            if accel.forced {
                return Ok(fail(format!(
                    "KVM cannot run this image ({reason}); KILN_ACCEL=kvm forbids falling back: unset it, or set KILN_ACCEL=tcg"
                )));
            }
            accel.mark_kvm_unusable();
            if program_output {
                return Ok(fail(format!(
                    "KVM failed during the run ({reason}); Kiln uses TCG from now on: run it again"
                )));
            }
            crate::note!(
                "KVM cannot run this image ({reason}); running it under TCG instead (KILN_ACCEL=tcg skips the KVM probe)"
            );
            match run_once(qemu, Accel::Tcg, image, opts, timeout, output)? {
                Attempt::Done(r) => Ok(r),
                Attempt::AccelFailed { reason, .. } => Ok(fail(reason)),
            }
        }
    }
}

/// Starts giving QEMU's `-p` TCP listeners a real backlog ([`backlog`]), on a thread that
/// ends once they have it (or QEMU is gone); `None` without TCP forwards.
pub fn widen_backlogs(pid: u32, opts: &RunOptions) -> Option<std::thread::JoinHandle<()>> {
    if opts.net.backend != args::NetBackend::User {
        return None;
    }
    let ports: std::collections::BTreeSet<u16> = opts
        .net
        .forwards
        .iter()
        .filter(|f| !f.udp)
        .map(|f| f.host)
        .collect();
    if ports.is_empty() {
        return None;
    }
    let verbose = opts.verbose;
    Some(std::thread::spawn(move || {
        backlog::widen_when_listening(pid, ports, verbose)
    }))
}

/// Whether the kernel in `image` declares capability `cap` ([`kiln_abi::caps`]). Only PVH
/// images are looked at (the UEFI target has no use for any yet).
fn kernel_can(image: &Path, cap: &str) -> bool {
    matches!(crate::disk::detect(image), Ok(crate::disk::ImageKind::Pvh))
        && std::fs::read(image).is_ok_and(|bytes| kiln_abi::caps::find(&bytes).any(|c| c == cap))
}

fn run_once(
    qemu: &Path,
    accel: Accel,
    image: &Path,
    opts: &RunOptions,
    timeout: Option<Duration>,
    output: ProgramOutput,
) -> anyhow::Result<Attempt> {
    // Standard input goes to the program when there is some to give (see `stdin`).
    let input = opts.stdin.then(stdin::host_input).flatten();
    let opts = &RunOptions {
        stdin: input.is_some(),
        console_virtio: kernel_can(image, kiln_abi::caps::VIRTIO_PORTS),
        stdin_virtio: kernel_can(image, kiln_abi::caps::VIRTIO_STDIN),
        ..opts.clone()
    };
    // Before the temporary directory exists: a stop signal from here on removes it.
    signals::install();
    let dir = tempfile::Builder::new()
        .prefix("kiln-run-")
        .tempdir()
        .context("could not create a temporary directory")?;
    let paths = args::StreamPaths {
        stdout: dir.path().join("stdout"),
        stderr: dir.path().join("stderr"),
        log: dir.path().join("log"),
        status: dir.path().join("status"),
        records: opts
            .records_file
            .clone()
            .unwrap_or_else(|| dir.path().join("records")),
        qmp: Some(dir.path().join("qmp")),
        profiler_qmp: opts
            .kernel_profile_hz
            .map(|_| dir.path().join("qmp-profiler")),
        stdin: opts.stdin.then(|| dir.path().join("stdin")),
    };
    // The kernel profiler needs to know the kernel's code (from the image's executable
    // segments) to tell kernel samples from the rest and to end its stack walks.
    let kernel_code = match opts.kernel_profile_hz {
        Some(_) => crate::debug::pvh_image(image)
            .map(|b| kprof::KernelCode::from_image(&b))
            .unwrap_or_default(),
        None => kprof::KernelCode::default(),
    };
    let done = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Vec::new()));
    let collected = Arc::new(Mutex::new(Vec::new()));
    // Signs of life: the kernel (its log) and the program (stdout/stderr).
    let kernel_seen = Arc::new(AtomicBool::new(false));
    let program_seen = Arc::new(AtomicBool::new(false));
    let mut copiers = Vec::new();
    for (path, out, seen) in [
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
            &program_seen,
        ),
        (
            &paths.stderr,
            match output {
                ProgramOutput::Discard => Box::new(std::io::sink()) as Box<dyn Write + Send>,
                _ => Box::new(std::io::stderr()),
            },
            &program_seen,
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
            &kernel_seen,
        ),
    ] {
        streams::mkfifo(path).with_context(|| format!("mkfifo {}", path.display()))?;
        let reader = streams::open_reader(path)?;
        let out = Box::new(Watched {
            inner: out,
            seen: seen.clone(),
        });
        copiers.push(streams::spawn_copier(reader, out, done.clone()));
    }
    // Not joined: it may be blocked reading the runner's standard input, which only the
    // user can end; it stops when QEMU has gone and it reads again.
    if let (Some(sock), Some(input)) = (&paths.stdin, input) {
        stdin::start(sock, input, done.clone())
            .with_context(|| format!("could not listen at {}", sock.display()))?;
    }

    // Anything that is not recognisably a disk or EFI application goes to `-kernel`, and
    // QEMU says what is wrong with it.
    let (qemu_args, start_deadline) = match crate::disk::detect(image) {
        Ok(crate::disk::ImageKind::Pvh) | Err(_) => (
            args::qemu_args(&opts.machine.target(), opts, accel, image, &paths),
            KVM_START_DEADLINE,
        ),
        Ok(kind) => (
            uefi_boot(kind, image, dir.path(), opts, accel, &paths)?,
            KVM_UEFI_START_DEADLINE,
        ),
    };
    let start = Instant::now();
    let mut cmd = Command::new(qemu);
    cmd.args(&qemu_args)
        .stdin(Stdio::null())
        .stdout(crate::app::stderr_stdio())
        .stderr(Stdio::piped());
    signals::tie_to_runner(&mut cmd);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start {}", qemu.display()))?;
    let _backlog = widen_backlogs(child.id(), opts);
    let sampler = match (opts.kernel_profile_hz, &paths.profiler_qmp) {
        (Some(hz), Some(sock)) if !kernel_code.is_empty() => {
            Some(kprof::Sampler::start(sock.clone(), hz, kernel_code))
        }
        _ => None,
    };
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
    let qemu_stderr = || {
        String::from_utf8_lossy(&qemu_err.lock().map(|b| b.clone()).unwrap_or_default())
            .into_owned()
    };

    let mut accel_failed = None;
    let mut checked_len = 0;
    // A stop signal presses the power button; the guest then has `stop_timeout` to end.
    let mut stopping: Option<(i32, Instant)> = None;
    let ended = loop {
        if let Some(sig) = signals::take() {
            match (&stopping, &paths.qmp) {
                (None, Some(qmp)) if !opts.stop_timeout.is_zero() => {
                    match qmp::system_powerdown(qmp) {
                        Ok(()) => {
                            crate::note!(
                                "{}: pressed the virtual machine's power button; it has {} s to stop (again to stop it at once)",
                                outcome::signal_name(sig),
                                opts.stop_timeout.as_secs()
                            );
                            stopping = Some((sig, Instant::now()));
                        }
                        // QEMU may have ended first (the program exited as the signal
                        // came), or be ending: the monitor's connection breaks before the
                        // process is gone (seen as "Connection reset by peer" on a busy
                        // host, the guest having printed what it does on SIGTERM). Then its
                        // own status stands.
                        Err(_) if exits_within(&mut child, Duration::from_secs(2))? => {}
                        Err(e) => {
                            crate::note!("could not press the power button ({e}); stopping the virtual machine");
                            kill_and_reap(&mut child);
                            break Ended::Interrupted(sig);
                        }
                    }
                }
                _ => {
                    kill_and_reap(&mut child);
                    break Ended::Interrupted(sig);
                }
            }
        }
        if let Some((_, since)) = stopping {
            if since.elapsed() >= opts.stop_timeout && child.try_wait()?.is_none() {
                kill_and_reap(&mut child);
                break Ended::StopTimedOut(opts.stop_timeout.as_secs());
            }
        }
        let exited = child.try_wait()?;
        if accel == Accel::Kvm {
            let alive = kernel_seen.load(Ordering::Acquire) || program_seen.load(Ordering::Acquire);
            // KVM's internal errors pause the guest and QEMU waits forever: look for them
            // while QEMU runs, and for QEMU refusing KVM when it has already gone.
            if exited.is_some() && !alive {
                // QEMU ended before the kernel showed itself: read all it said first.
                let t0 = Instant::now();
                while err_thread.as_ref().is_some_and(|t| !t.is_finished())
                    && t0.elapsed() < Duration::from_secs(2)
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            // QEMU's stderr is read again only when it has grown.
            let err_len = qemu_err.lock().map(|b| b.len()).unwrap_or_default();
            let seen_error = if err_len != checked_len {
                checked_len = err_len;
                outcome::accel_failure(&qemu_stderr())
            } else {
                None
            };
            let why = seen_error
                .filter(|_| exited.is_none() || !alive)
                .or_else(|| {
                    // A guest held for a debugger (`--gdb-wait`) shows nothing until it is
                    // continued.
                    let held = opts.gdb.is_some_and(|g| g.wait);
                    (exited.is_none() && !alive && !held && start.elapsed() >= start_deadline).then(
                        || format!("no sign of the kernel after {} s", start_deadline.as_secs()),
                    )
                });
            if let Some(why) = why {
                if exited.is_none() {
                    kill_and_reap(&mut child);
                }
                accel_failed = Some(why);
                break Ended::Signaled(0);
            }
        }
        match exited {
            Some(status) => {
                use std::os::unix::process::ExitStatusExt;
                break match (status.code(), status.signal()) {
                    (Some(c), _) => Ended::Exited(c),
                    (None, Some(s)) => Ended::Signaled(s),
                    (None, None) => Ended::Signaled(0),
                };
            }
            None if timeout.is_some_and(|t| start.elapsed() >= t) => {
                kill_and_reap(&mut child);
                break Ended::TimedOut(timeout.map(|t| t.as_secs()).unwrap_or_default());
            }
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    };
    let elapsed = start.elapsed();
    let kernel_profile = sampler.map(kprof::Sampler::finish).or_else(|| {
        opts.kernel_profile_hz.map(|_| kprof::Samples {
            ended: Some("the image's kernel code could not be found, so it was not sampled".into()),
            ..kprof::Samples::default()
        })
    });
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
    if let Some(reason) = accel_failed {
        return Ok(Attempt::AccelFailed {
            reason,
            program_output: program_seen.load(Ordering::Acquire),
            elapsed,
        });
    }
    let log =
        String::from_utf8_lossy(&log.lock().map(|b| b.clone()).unwrap_or_default()).into_owned();
    let status_byte = std::fs::read(&paths.status)
        .ok()
        .and_then(|b| b.last().copied());
    Ok(Attempt::Done(RunResult {
        outcome: outcome::decide(ended, &log, &qemu_stderr(), status_byte),
        elapsed,
        stdout: collected.lock().map(|b| b.clone()).unwrap_or_default(),
        records: std::fs::read(&paths.records).unwrap_or_default(),
        kernel_profile,
    }))
}
