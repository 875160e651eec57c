//! Signal handlers: frames on the user stack, `rt_sigreturn`, alternate stacks, masks,
//! SIGPIPE, SA_RESETHAND, and Rust's stack-overflow report through its SIGSEGV handler.

use kiln_tests::kiln;

/// `raise` is `tgkill`: the handler sees `SI_TKILL` (-6), as on Linux.
#[test]
fn handlers_run_and_return() {
    let r = kiln(&["run", "--example", "signals", "--timeout", "120"]);
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(
        r.out(),
        "raise: handler 10 code -6\nafter raise: 1\n\
         segv: recovered at 0x10 on the alternate stack\n\
         blocked: 0raise: handler 10 code -6\n then 1\n\
         sigpipe: handler ran, write gave EPIPE\nresethand: default restored\n",
        "{r:?}"
    );
}

#[test]
fn rust_reports_stack_overflow_and_aborts() {
    let r = kiln(&["run", "--example", "overflow", "--timeout", "120"]);
    assert_eq!(r.status, 134, "{r:?}");
    assert!(r.stderr.contains("has overflowed its stack"), "{r:?}");
}
