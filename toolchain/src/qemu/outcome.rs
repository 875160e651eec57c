//! Turning how QEMU ended into the program's exit status and, on failure, one line of reason.

use kiln_abi::exit;

/// How the QEMU process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// QEMU exited with this code.
    Exited(i32),
    /// QEMU was killed by this signal (not by us).
    Signaled(i32),
    /// We stopped QEMU after this many seconds.
    TimedOut(u64),
    /// We stopped QEMU because the runner received this signal (SIGINT, SIGTERM, SIGHUP).
    Interrupted(i32),
    /// The power button was pressed and the guest had not stopped this many seconds later:
    /// we stopped QEMU (as `docker stop` ends with SIGKILL).
    StopTimedOut(u64),
}

/// The name of a signal the runner stops on.
pub fn signal_name(sig: i32) -> String {
    u32::try_from(sig)
        .ok()
        .and_then(kiln_abi::exit::signal_name)
        .map_or_else(|| format!("signal {sig}"), str::to_string)
}

/// What QEMU printed when the accelerator (not the guest) failed: KVM's internal errors, its
/// emulator giving up, or QEMU refusing the host CPU's model.
pub fn accel_failure(qemu_stderr: &str) -> Option<String> {
    const SIGNS: [&str; 3] = ["emulation failure", "failed to set MSR", "kvm"];
    let lines: Vec<&str> = qemu_stderr.lines().map(str::trim).collect();
    let hit = lines.iter().find(|l| {
        let l = l.to_ascii_lowercase();
        SIGNS.iter().any(|s| l.contains(&s.to_ascii_lowercase()))
    })?;
    let mut what = hit
        .strip_prefix("qemu-system-x86_64: ")
        .unwrap_or(hit)
        .to_string();
    if what.starts_with("KVM internal error") && lines.contains(&"emulation failure") {
        what.push_str(", emulation failure");
    }
    Some(what)
}

/// The status to exit with, and a reason to print when Kiln or the kernel failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The exit status (the program's, or 124/125).
    pub status: u8,
    /// A one-line explanation for 124/125.
    pub reason: Option<String>,
}

/// Prefix of the kernel's panic line in its log.
pub const PANIC_PREFIX: &str = "kiln: kernel panic:";

/// Prefix of the kernel's line for a failure that is the user's to fix (such as too little
/// memory), not a kernel bug.
pub const FATAL_PREFIX: &str = "kiln: fatal: ";

/// The first `kiln: kernel panic:` line of the kernel log, or a `kiln: fatal:` line's
/// message as `kiln: MESSAGE`.
pub fn panic_line(log: &str) -> Option<String> {
    log.lines().map(|l| l.trim_end_matches('\r')).find_map(|l| {
        if l.starts_with(PANIC_PREFIX) {
            Some(l.to_string())
        } else {
            l.strip_prefix(FATAL_PREFIX).map(|m| format!("kiln: {m}"))
        }
    })
}

/// The last error QEMU printed (lines that are not warnings), without QEMU's own prefix.
pub fn qemu_error(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.contains("warning:"))
        .map(|l| {
            l.strip_prefix("qemu-system-x86_64: ")
                .unwrap_or(l)
                .to_string()
        })
}

/// The signal that made QEMU stop of its own accord, and who sent it, from QEMU's
/// `terminating on signal 15 from pid 1997 (timeout)`: something outside Kiln stopped it.
pub fn qemu_terminated_by(stderr: &str) -> Option<(i32, String)> {
    let rest = stderr.lines().find_map(|l| {
        l.split_once("terminating on signal ")
            .map(|(_, r)| r.trim())
    })?;
    let (sig, from) = rest.split_once(' ').unwrap_or((rest, ""));
    let from = from.strip_prefix("from ").unwrap_or(from);
    Some((sig.parse().ok()?, from.to_string()))
}

/// The exact status: QEMU's exit code keeps only the low 7 bits (`low`), the status port
/// (`kiln.status`) has the whole byte when the kernel wrote it.
pub fn full_status(low: u8, status_byte: Option<u8>) -> u8 {
    match status_byte {
        Some(b) if b & 0x7f == low => b,
        _ => low,
    }
}

/// Decides the outcome of a run from how QEMU ended, the kernel log, QEMU's stderr and the
/// last byte written to the status port.
pub fn decide(ended: Ended, log: &str, qemu_stderr: &str, status_byte: Option<u8>) -> Outcome {
    let fail = |reason: String| Outcome {
        status: exit::KERNEL_FAILURE,
        reason: Some(reason),
    };
    match ended {
        Ended::TimedOut(secs) => Outcome {
            status: exit::TIMEOUT,
            reason: Some(format!(
                "timed out after {secs} s and stopped QEMU; raise --timeout if the program needs longer"
            )),
        },
        Ended::Signaled(sig) => fail(format!("QEMU was killed by signal {sig}")),
        Ended::StopTimedOut(secs) => Outcome {
            status: 137,
            reason: Some(format!(
                "the program had not stopped {secs} s after the power button; stopped the virtual machine (raise --stop-timeout to give it longer)"
            )),
        },
        Ended::Interrupted(sig) => Outcome {
            status: 128u8.saturating_add(sig.clamp(0, 127) as u8),
            reason: Some(format!(
                "stopped by {}: the virtual machine was stopped",
                signal_name(sig)
            )),
        },
        Ended::Exited(code) => {
            // isa-debug-exit with value 0 gives code 1, which is also QEMU's code for its own
            // errors: an error message on QEMU's stderr tells them apart.
            let qemu_err = qemu_error(qemu_stderr);
            match exit::from_qemu_exit(code).map(|low| full_status(low, status_byte)) {
                Some(0) if code == 1 && qemu_err.is_some() => fail(format!(
                    "QEMU failed: {}",
                    qemu_err.unwrap_or_default()
                )),
                Some(status) if status == exit::KERNEL_FAILURE => Outcome {
                    status,
                    reason: panic_line(log),
                },
                Some(status) => Outcome {
                    status,
                    reason: None,
                },
                None if code == 0 && qemu_terminated_by(qemu_stderr).is_some() => {
                    let (sig, from) = qemu_terminated_by(qemu_stderr).unwrap_or_default();
                    let from = if from.is_empty() {
                        String::new()
                    } else {
                        format!(" (sent by {from})")
                    };
                    Outcome {
                        status: 128u8.saturating_add(sig.clamp(0, 127) as u8),
                        reason: Some(format!(
                            "QEMU was stopped by {}{from}, not by Kiln: the program did not finish; to stop a run, signal Kiln's own process (`cargo xtask run`), which stops the program first",
                            signal_name(sig)
                        )),
                    }
                }
                None if code == 0 => fail(
                    "the guest stopped without reporting an exit status (triple fault or reset); run with --verbose to see the kernel log"
                        .into(),
                ),
                None => fail(match qemu_err {
                    Some(e) => format!("QEMU failed (exit code {code}): {e}"),
                    None => format!("QEMU failed with exit code {code}"),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_statuses_pass_through() {
        for s in [0u8, 1, 3, 42, 124, 127, 128, 134, 139, 255] {
            // QEMU's exit code is 8 bits: (s << 1 | 1) & 0xff.
            let code = (((s as i32) << 1) | 1) & 0xff;
            let o = decide(Ended::Exited(code), "", "", Some(s));
            assert_eq!(
                o,
                Outcome {
                    status: s,
                    reason: None
                }
            );
            // Without the status byte only 7 bits survive.
            let o = decide(Ended::Exited(code), "", "", None);
            assert_eq!(o.status, s & 0x7f);
        }
        assert_eq!(full_status(11, Some(139)), 139);
        assert_eq!(full_status(11, Some(12)), 11, "a stale byte is ignored");
    }

    #[test]
    fn qemu_stopped_from_outside_says_so() {
        let err = "qemu-system-x86_64: terminating on signal 15 from pid 1997 (timeout)\n";
        assert_eq!(
            qemu_terminated_by(err),
            Some((15, "pid 1997 (timeout)".to_string()))
        );
        let o = decide(Ended::Exited(0), "", err, None);
        assert_eq!(o.status, 143);
        let reason = o.reason.unwrap_or_default();
        assert!(
            reason.contains("SIGTERM (sent by pid 1997 (timeout))"),
            "{reason}"
        );
        assert!(!reason.contains("triple fault"), "{reason}");
        assert_eq!(
            qemu_terminated_by("qemu-system-x86_64: terminating on signal 2\n"),
            Some((2, String::new()))
        );
        // Without that line a silent stop is still the guest's.
        let o = decide(Ended::Exited(0), "", "", None);
        assert!(o.reason.unwrap_or_default().contains("triple fault"));
    }

    #[test]
    fn kernel_panic_reports_its_line() {
        let log = "kiln: booting\r\nkiln: kernel panic: out of memory at mm.rs:10\r\nmore\n";
        let o = decide(Ended::Exited(251), log, "", None);
        assert_eq!(o.status, 125);
        assert_eq!(
            o.reason.as_deref(),
            Some("kiln: kernel panic: out of memory at mm.rs:10")
        );
    }

    #[test]
    fn fatal_lines_are_the_users_to_fix() {
        let log = "kiln: fatal: this image needs at least 5 MiB of memory; the machine has 3 MiB: run with --memory 8M\r\n";
        let o = decide(Ended::Exited(251), log, "", None);
        assert_eq!(o.status, 125);
        assert_eq!(
            o.reason.as_deref(),
            Some("kiln: this image needs at least 5 MiB of memory; the machine has 3 MiB: run with --memory 8M")
        );
    }

    #[test]
    fn qemu_failures() {
        let o = decide(
            Ended::Exited(1),
            "",
            "qemu-system-x86_64: warning: x\nqemu-system-x86_64: -m 0: Bad ram size\n",
            None,
        );
        assert_eq!(o.status, 125);
        assert_eq!(o.reason.unwrap(), "QEMU failed: -m 0: Bad ram size");
        // A warning alone does not turn a clean exit into a failure.
        let o = decide(
            Ended::Exited(1),
            "",
            "qemu-system-x86_64: warning: x\n",
            None,
        );
        assert_eq!(
            o,
            Outcome {
                status: 0,
                reason: None
            }
        );
        let o = decide(Ended::Exited(2), "", "", None);
        assert_eq!(
            (o.status, o.reason.unwrap()),
            (125, "QEMU failed with exit code 2".into())
        );
        let o = decide(Ended::Exited(0), "", "", None);
        assert!(o.reason.unwrap().contains("without reporting"));
        let o = decide(Ended::Signaled(9), "", "", None);
        assert_eq!(
            (o.status, o.reason.unwrap()),
            (125, "QEMU was killed by signal 9".into())
        );
    }

    #[test]
    fn interrupted_runs_exit_as_a_shell_would() {
        for (sig, status) in [(2, 130u8), (15, 143), (1, 129)] {
            let o = decide(Ended::Interrupted(sig), "", "", None);
            assert_eq!(o.status, status);
            assert!(o.reason.unwrap().contains(&signal_name(sig)));
        }
    }

    #[test]
    fn accelerator_failures_are_recognised() {
        let pvm = "KVM internal error. Suberror: 1\nextra data[0]: 0x1\nemulation failure\nRAX=0\n";
        assert_eq!(
            accel_failure(pvm).unwrap(),
            "KVM internal error. Suberror: 1, emulation failure"
        );
        let msr = "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\nqemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion failed.\n";
        assert_eq!(
            accel_failure(msr).unwrap(),
            "error: failed to set MSR 0x10a to 0x69"
        );
        assert_eq!(
            accel_failure("qemu-system-x86_64: -m 0: Bad ram size\n"),
            None
        );
        assert_eq!(accel_failure(""), None);
        // No /dev/kvm at all, with KVM forced.
        let none = "qemu-system-x86_64: -accel kvm: Could not access KVM kernel module: No such file or directory\nqemu-system-x86_64: -accel kvm: failed to initialize kvm: No such file or directory\n";
        assert_eq!(
            accel_failure(none).unwrap(),
            "-accel kvm: Could not access KVM kernel module: No such file or directory"
        );
    }

    #[test]
    fn timeouts() {
        let o = decide(Ended::StopTimedOut(10), "", "", None);
        assert_eq!(o.status, 137);
        assert!(o.reason.unwrap().contains("--stop-timeout"));
        let o = decide(Ended::TimedOut(5), "", "", None);
        assert_eq!(o.status, 124);
        assert!(o.reason.unwrap().contains("after 5 s"));
    }
}
