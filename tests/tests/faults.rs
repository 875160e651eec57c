//! Programs that crash, abort, or ask for what Kiln lacks: clear reports and the statuses a
//! shell would show.

use kiln_tests::kiln;

#[test]
fn segfault_is_reported_and_ends_with_139() {
    let r = kiln(&["run", "--example", "crash"]);
    assert_eq!(r.status, 139, "{r:?}");
    assert!(r.out().contains("about to crash"), "{r:?}");
    assert!(r.stderr.contains("SIGSEGV"), "{r:?}");
    assert!(r.stderr.contains("address 0x0"), "{r:?}");
    assert!(r.stderr.contains("ip 0x"), "{r:?}");
}

#[test]
fn abort_ends_with_134() {
    let r = kiln(&["run", "--example", "abort"]);
    assert_eq!(r.status, 134, "{r:?}");
    assert!(r.stderr.contains("SIGABRT"), "{r:?}");
}

#[test]
fn unsupported_syscall_is_enosys_and_logged_once_by_name() {
    let r = kiln(&["run", "--example", "nosys", "--verbose"]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.out().contains("errno=38"), "{r:?}");
    let line = "unsupported syscall 425 (io_uring_setup)";
    assert_eq!(r.stderr.matches(line).count(), 1, "{r:?}");
    // Without --verbose the kernel log stays out of the way.
    let quiet = kiln(&["run", "--example", "nosys"]);
    assert!(!quiet.stderr.contains("unsupported syscall"), "{quiet:?}");
}

#[test]
fn timeout_ends_with_124() {
    let r = kiln(&[
        "run",
        "--elf",
        "/bin/busybox",
        "--timeout",
        "3",
        "--",
        "sleep",
        "60",
    ]);
    assert_eq!(r.status, 124, "{r:?}");
    assert!(
        r.stderr.to_lowercase().contains("timed out") || r.stderr.contains("timeout"),
        "{r:?}"
    );
}
