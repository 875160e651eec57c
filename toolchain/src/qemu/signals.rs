//! Stopping on SIGINT, SIGTERM and SIGHUP: the runner owns its QEMU, so a signal to the
//! runner stops the virtual machine and removes its files before the runner exits.
//!
//! The handlers (signal-hook's, which only store a number) are installed the first time a
//! run or the suite asks, and stay for the life of the process; the loops that own child
//! processes poll [`received`].
//!
//! QEMU runs in a process group of its own ([`tie_to_runner`]): a terminal's Ctrl-C
//! signals the whole foreground group, and QEMU, taking SIGINT itself, quit on the spot
//! (`terminating on signal 2`) while the runner was pressing the power button, so the
//! program never saw its SIGTERM. `timeout` signals its group the same way.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// The signals that stop a run.
pub const STOP_SIGNALS: [i32; 3] = [
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGHUP,
];

fn last() -> &'static Arc<AtomicUsize> {
    static LAST: OnceLock<Arc<AtomicUsize>> = OnceLock::new();
    LAST.get_or_init(|| {
        let flag = Arc::new(AtomicUsize::new(0));
        for sig in STOP_SIGNALS {
            if let Err(e) = signal_hook::flag::register_usize(sig, flag.clone(), sig as usize) {
                crate::note!("warning: could not watch signal {sig}: {e}");
            }
        }
        flag
    })
}

/// Installs the handlers (once per process).
pub fn install() {
    last();
}

/// A signal [`take`] has handed out (so [`received`] still reports it).
static TAKEN: AtomicUsize = AtomicUsize::new(0);

/// The stop signal received since [`install`], if any.
pub fn received() -> Option<i32> {
    match last().load(Ordering::Acquire) {
        0 => match TAKEN.load(Ordering::Acquire) {
            0 => None,
            n => Some(n as i32),
        },
        n => Some(n as i32),
    }
}

/// The stop signal received since the last call (or since [`install`]), if any; unlike
/// [`received`], it forgets it, so that a second signal can be told from the first.
pub fn take() -> Option<i32> {
    match last().swap(0, Ordering::AcqRel) {
        0 => None,
        n => {
            TAKEN.store(n, Ordering::Release);
            Some(n as i32)
        }
    }
}

/// For commands that start processes of their own outside [`super::run`] (the
/// benchmarks): on a stop signal, stops every child process of this one (SIGTERM, then
/// SIGKILL after 3 s), runs `cleanup`, and exits with 128 + the signal, as a shell reports.
pub fn stop_children_on_signal(cleanup: fn()) {
    install();
    std::thread::spawn(move || loop {
        if let Some(sig) = received() {
            stop_children();
            cleanup();
            crate::note!(
                "stopped by {}; stopped what it had started",
                super::outcome::signal_name(sig)
            );
            std::process::exit(128 + sig);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    });
}

/// The parent process id in a `/proc/PID/stat` line (after the command name, which may
/// hold spaces and parentheses).
pub fn stat_ppid(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// This process's children.
fn children() -> Vec<rustix::process::Pid> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            (stat_ppid(&stat)? == me).then(|| rustix::process::Pid::from_raw(pid))?
        })
        .collect()
}

fn stop_children() {
    use rustix::process::{kill_process, Signal};
    for pid in children() {
        let _ = kill_process(pid, Signal::TERM);
    }
    let start = std::time::Instant::now();
    while !children().is_empty() && start.elapsed() < std::time::Duration::from_secs(3) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for pid in children() {
        let _ = kill_process(pid, Signal::KILL);
    }
}

/// Puts the QEMU that `cmd` starts in a process group of its own, so that signals to the
/// runner's group (a terminal's Ctrl-C, `timeout`) reach the runner only, which stops the
/// machine gently; and has the kernel kill QEMU (SIGKILL) when the thread that started it
/// ends, so a runner killed outright still takes its QEMU along (as `kill` of its group did
/// while they shared one). Call from a thread that lives as long as the run.
#[allow(unsafe_code)]
pub fn tie_to_runner(cmd: &mut Command) {
    use rustix::process::{getpid, getppid, set_parent_process_death_signal, Signal};
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    let runner = getpid();
    // SAFETY: the hook runs in the child between fork and exec, where only async-signal-safe
    // work is allowed: it makes two system calls (prctl, getppid) and builds an error from a
    // constant, touching nothing the parent's other threads may have held.
    unsafe {
        cmd.pre_exec(move || {
            set_parent_process_death_signal(Some(Signal::KILL))?;
            // The runner may have died before the prctl: then nothing would kill QEMU.
            if getppid() != Some(runner) {
                return Err(std::io::Error::from_raw_os_error(3)); // ESRCH
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_ids_from_stat_lines() {
        assert_eq!(stat_ppid("123 (qemu-system-x86) S 77 123 1 0"), Some(77));
        assert_eq!(stat_ppid("9 (a (b) c) R 1 9 9"), Some(1));
        assert_eq!(stat_ppid("garbage"), None);
    }
}
