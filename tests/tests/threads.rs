//! Threads: mutexes, condition variables, channels, sleeps and a busy loop in one program;
//! each thread's floating-point state kept apart.

use kiln_tests::kiln;

#[test]
fn threads_cooperate_and_a_busy_thread_cannot_starve_others() {
    let r = kiln(&["run", "--example", "threads", "--timeout", "120"]);
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(
        r.out(),
        "mutex: 8000\ncondvar: ready\nchannel: 4950\nsleep: ok\nbusy: ok\nscoped: 10\ntimeout: ok\n",
        "{r:?}"
    );
}

#[test]
fn threads_run_on_q35_too() {
    let r = kiln(&[
        "run",
        "--example",
        "threads",
        "--machine",
        "q35",
        "--timeout",
        "120",
    ]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.out().contains("busy: ok\n"), "{r:?}");
}

/// The kernel saves only the SSE registers on a system call and leaves the x87 ones in
/// the FPU: each of two threads keeps its own SSE, MXCSR, x87 control word and x87 stack
/// across system calls, switches to the other thread and signal handlers that change them.
#[test]
fn floating_point_state_survives_system_calls_switches_and_handlers() {
    for cpus in ["1", "2"] {
        let r = kiln(&[
            "run",
            "--example",
            "fpu-state",
            "--machine",
            "q35",
            "--cpus",
            cpus,
            "--timeout",
            "120",
        ]);
        assert_eq!(r.status, 0, "--cpus {cpus}: {r:?}");
        assert_eq!(
            r.out(),
            "fpu: 2400 checks, all intact\n",
            "--cpus {cpus}: {r:?}"
        );
    }
}
