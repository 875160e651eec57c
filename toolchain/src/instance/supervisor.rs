//! The supervisor: one small process per instance (`xtask __supervise DIR`), in a session of
//! its own so closing the terminal does not reach it. It runs the ordinary foreground runner
//! (`xtask run --image IMG OPTIONS`) as a child in its own process group (so a hard stop
//! reaches QEMU too), keeps the program's output in the log and Kiln's lines in
//! `supervisor.log`, records the state, restarts by the policy, and passes SIGTERM and
//! SIGINT to the runner, which stops its virtual machine.

use super::logs::{Stream, Utf8Joiner, Writer};
use super::procs::Proc;
use super::split::{Dest, Splitter};
use super::state::{now_ms, Status};
use super::{Instance, Store};
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The runner's note when KVM failed and it ran the image under TCG instead.
const TCG_FALLBACK: &str = "running it under TCG instead";

/// What the runner's stderr told the supervisor about Kiln.
#[derive(Default)]
struct KilnLines {
    line: Vec<u8>,
    last: String,
    fell_back: bool,
}

impl KilnLines {
    fn add(&mut self, bytes: &[u8]) {
        self.line.extend_from_slice(bytes);
        if self.line.ends_with(b"\n") {
            let line = String::from_utf8_lossy(&self.line).trim_end().to_string();
            self.fell_back |= line.contains(TCG_FALLBACK);
            self.last = line;
            self.line.clear();
        }
    }
}

/// Reads what is there (0 at the end or on an error), retrying when a signal interrupts.
fn read_some(from: &mut impl Read, buf: &mut [u8]) -> usize {
    loop {
        match from.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r.unwrap_or(0),
        }
    }
}

/// Copies the runner's stdout into the log.
fn pump_stdout(
    mut from: impl Read + Send + 'static,
    log: Arc<Writer>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut joiner = Utf8Joiner::default();
        let mut buf = [0u8; 16 * 1024];
        while let n @ 1.. = read_some(&mut from, &mut buf) {
            let _ = log.write(Stream::Stdout, &joiner.push(&buf[..n]));
        }
        let _ = log.write(Stream::Stdout, &joiner.finish());
    })
}

/// Splits the runner's stderr: the program's part into the log, Kiln's into `kiln_log`.
fn pump_stderr(
    mut from: impl Read + Send + 'static,
    log: Arc<Writer>,
    mut kiln_log: std::fs::File,
    lines: Arc<Mutex<KilnLines>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut joiner = Utf8Joiner::default();
        let mut splitter = Splitter::default();
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = read_some(&mut from, &mut buf);
            // The program's part of each read is written as one record.
            let mut program = Vec::new();
            let mut emit = |d: Dest, b: &[u8]| match d {
                Dest::Program => program.extend_from_slice(b),
                Dest::Kiln => {
                    let _ = kiln_log.write_all(b);
                    if let Ok(mut l) = lines.lock() {
                        l.add(b);
                    }
                }
            };
            match n {
                0 => splitter.finish(&mut emit),
                n => splitter.feed(&buf[..n], &mut emit),
            }
            let _ = log.write(Stream::Stderr, &joiner.push(&program));
            if n == 0 {
                break;
            }
        }
        let _ = log.write(Stream::Stderr, &joiner.finish());
    })
}

/// Waits for `t` to finish, at most `limit` (a QEMU that will not die may hold the pipes).
fn join_within(t: std::thread::JoinHandle<()>, limit: Duration) {
    let start = Instant::now();
    while !t.is_finished() && start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(10));
    }
    if t.is_finished() {
        let _ = t.join();
    }
}

/// The stop signal received, if any (SIGTERM or SIGINT; SIGHUP is ignored).
fn stop_flag() -> Arc<AtomicUsize> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let flag = Arc::new(AtomicUsize::new(0));
    for sig in [SIGTERM, SIGINT] {
        let _ = signal_hook::flag::register_usize(sig, flag.clone(), sig as usize);
    }
    let _ = signal_hook::flag::register(SIGHUP, Arc::new(AtomicBool::new(false)));
    flag
}

/// Runs the runner once; returns its exit status.
fn run_once(
    exe: &Path,
    inst: &Instance,
    state: &mut super::state::State,
    stop: &AtomicUsize,
) -> anyhow::Result<i32> {
    let own_control = inst
        .config
        .spec
        .runner_args
        .iter()
        .any(|a| a.starts_with("--control-socket"));
    let control = inst.control_socket();
    let _ = std::fs::remove_file(&control);
    let mut child: Child = Command::new(exe)
        .arg("run")
        .arg("--image")
        .arg(inst.image_path())
        .args(
            (!own_control)
                .then(|| {
                    [
                        std::ffi::OsStr::new("--control-socket"),
                        control.as_os_str(),
                    ]
                })
                .into_iter()
                .flatten(),
        )
        .args(&inst.config.spec.runner_args)
        .current_dir(&inst.config.workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| anyhow::anyhow!("could not start the runner {}: {e}", exe.display()))?;
    state.status = Status::Running;
    state.runner = Proc::of(child.id());
    state.started_ms = Some(now_ms());
    inst.write_state(state)?;
    let log = Arc::new(Writer::open(&inst.log_path())?);
    let lines = Arc::new(Mutex::new(KilnLines::default()));
    let kiln_log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(inst.supervisor_log_path())?;
    let pumps = [
        child.stdout.take().map(|o| pump_stdout(o, log.clone())),
        child
            .stderr
            .take()
            .map(|e| pump_stderr(e, log.clone(), kiln_log, lines.clone())),
    ];
    let mut forwarded = false;
    let status = loop {
        if stop.load(Ordering::Acquire) != 0 && !forwarded {
            // The runner stops its virtual machine on SIGTERM; `stop` escalates if it must.
            if let Some(r) = &state.runner {
                r.signal(rustix::process::Signal::TERM);
            }
            forwarded = true;
        }
        if let Some(s) = child.try_wait()? {
            break s;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for p in pumps.into_iter().flatten() {
        join_within(p, Duration::from_secs(2));
    }
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    let lines = lines.lock().map(|l| (l.fell_back, l.last.clone()));
    if let Ok((fell_back, last)) = lines {
        if fell_back {
            state.accel = "tcg".into();
        }
        state.error = match code {
            125 => last
                .trim_start_matches("kiln: ")
                .trim_start_matches("error: ")
                .into(),
            _ => String::new(),
        };
    }
    Ok(code)
}

/// Sleeps `d` unless a stop signal comes first; returns whether one did.
fn sleep_unless_stopped(d: Duration, stop: &AtomicUsize) -> bool {
    let start = Instant::now();
    while start.elapsed() < d {
        if stop.load(Ordering::Acquire) != 0 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.load(Ordering::Acquire) != 0
}

/// The supervisor's life: runs the instance in `dir` with the runner `exe` until it has
/// exited for good, then releases its ports (and removes it, with `--rm`).
pub fn supervise(store: &Store, dir: &Path, exe: &Path) -> anyhow::Result<()> {
    // A session of our own: no terminal, no SIGHUP when it closes; and unlike the command
    // that started us, we outlive our parent.
    let _ = rustix::process::setsid();
    let _ = rustix::process::set_parent_process_death_signal(None);
    let stop = stop_flag();
    let inst = store.open_dir(dir)?;
    let mut state = inst.state()?;
    state.supervisor = Proc::current();
    state.accel = inst.config.spec.accel.clone();
    let mut delay = Duration::from_millis(100);
    loop {
        let started = Instant::now();
        let code = match run_once(exe, &inst, &mut state, &stop) {
            Ok(code) => code,
            Err(e) => {
                crate::note!("error: {e:#}");
                state.error = format!("{e:#}");
                125
            }
        };
        state.runner = None;
        state.exit_code = Some(code);
        state.finished_ms = Some(now_ms());
        let stopped = stop.load(Ordering::Acquire) != 0;
        state.stopped = stopped;
        if stopped
            || !inst
                .config
                .spec
                .restart
                .restarts_after(code, state.restart_count)
        {
            break;
        }
        // Docker's back-off: 100 ms, doubling, at most a minute; a run of 10 s resets it.
        if started.elapsed() >= Duration::from_secs(10) {
            delay = Duration::from_millis(100);
        }
        state.status = Status::Restarting;
        inst.write_state(&state)?;
        crate::note!(
            "exited with status {code}; restarting in {} ms (restart policy {})",
            delay.as_millis(),
            inst.config.spec.restart
        );
        if sleep_unless_stopped(delay, &stop) {
            state.stopped = true;
            break;
        }
        delay = (delay * 2).min(Duration::from_secs(60));
        state.restart_count += 1;
    }
    state.status = Status::Exited;
    inst.write_state(&state)?;
    super::ports::release(&store.ports_dir(), &inst.config.id);
    if inst.config.spec.auto_remove {
        store.remove(&inst)?;
    }
    Ok(())
}
