//! No program can crash the kernel: whatever a program provokes ends as an errno or a
//! signal to that program, as on Linux, never as a kernel panic (status 125) or a hang.

use kiln_tests::{build_image, run_image};

/// Forged `rt_sigreturn` frames and handler addresses (see `examples/sigforge`): each case
/// ends the way it does on Linux.
#[test]
fn forged_signal_frames_end_as_sigsegv_or_are_sanitised() {
    let image = build_image("sigforge", &["--example", "sigforge"]);
    let killed: &[(&str, &[i32])] = &[
        ("rip-noncanonical", &[139]),
        ("rip-kernel", &[139]),
        ("rip-top", &[139]),
        ("rip-rcx-noncanonical", &[139]),
        // Linux raises SIGBUS for the stack fault a non-canonical stack pointer causes on
        // hardware; QEMU's emulation reports a general protection fault instead (SIGSEGV).
        ("rsp-noncanonical", &[135, 139]),
        ("rsp-kernel", &[139]),
        ("cs-null", &[139]),
        ("cs-kernel", &[139]),
        ("cs-kiln-kernel", &[139]),
        ("ss-null", &[139]),
        ("handler-noncanonical", &[139]),
        ("handler-kernel", &[139]),
    ];
    for (case, statuses) in killed {
        let r = run_image(&image, &["--", case]);
        assert!(statuses.contains(&r.status), "{case}: {r:?}");
        assert!(r.out().contains(&format!("case {case}")), "{case}: {r:?}");
        assert!(!r.out().contains("resumed"), "{case}: {r:?}");
        assert!(!r.stderr.contains("kernel panic"), "{case}: {r:?}");
    }
    let r = run_image(&image, &["--", "rflags"]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.out().contains("rflags: sanitised"), "{r:?}");
    let r = run_image(&image, &["--", "nt"]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.out().contains("nt: survived"), "{r:?}");
}
