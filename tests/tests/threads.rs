//! Threads: mutexes, condition variables, channels, sleeps and a busy loop in one program.

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
