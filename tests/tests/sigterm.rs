//! A stop reaches a program blocked in a system call: SIGTERM to `run` presses the power
//! button, the kernel sends SIGTERM to a thread that does not block it and interrupts its
//! call, and the handler (or signalfd, sigtimedwait, tokio) lets the program end cleanly.
//! Signals to one thread (pthread_kill, tgkill) interrupt that thread's read.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kiln_tests::{build_image, kiln, Guest};

fn image() -> &'static std::path::Path {
    static IMG: OnceLock<std::path::PathBuf> = OnceLock::new();
    IMG.get_or_init(|| build_image("sigterm", &["--example", "sigterm"]))
}

/// Boots `image` with `extra`, waits for "ready", sends SIGTERM to the runner; returns the
/// status, the rest of stdout and how long the stop took.
fn stop(image: &std::path::Path, extra: &[&str]) -> (i32, String, Duration) {
    let guest = Guest::boot(image, extra, "ready");
    // The program reached its blocking call (or will in a moment).
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    guest.signal("TERM");
    let (status, out) = guest.wait();
    (status, out, start.elapsed())
}

/// [`stop`], expecting status 0 and `line` on stdout.
fn stops_cleanly(image: &std::path::Path, extra: &[&str], line: &str) {
    let (status, out, _) = stop(image, extra);
    assert_eq!(status, 0, "{out}");
    assert!(out.contains(line), "{out}");
}

#[test]
fn c_accept_gets_eintr_and_exits_0() {
    stops_cleanly(image(), &["--", "accept"], "got SIGTERM: accept gave EINTR");
}

/// A terminal's Ctrl-C signals the whole foreground process group: QEMU must not take it
/// and quit on the spot (the program would end without its SIGTERM), the runner presses the
/// power button as for a SIGTERM of its own.
#[test]
fn ctrl_c_to_the_whole_group_stops_the_program_gently() {
    let guest = Guest::boot(image(), &["--", "accept"], "ready");
    std::thread::sleep(Duration::from_millis(500));
    guest.signal_group("INT");
    let (status, out) = guest.wait();
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("got SIGTERM: accept gave EINTR"), "{out}");
}

#[test]
fn c_accept_gets_eintr_on_q35() {
    stops_cleanly(
        image(),
        &["--machine", "q35", "--", "accept"],
        "got SIGTERM: accept gave EINTR",
    );
}

#[test]
fn c_accept_restarts_with_sa_restart() {
    stops_cleanly(
        image(),
        &["--", "restart"],
        "got SIGTERM: accept restarted and took a connection",
    );
}

#[test]
fn signalfd_and_timerfd_in_epoll() {
    // "ready" comes once the program read, through the signalfd, the SIGUSR1 it sent
    // itself after three timer ticks.
    stops_cleanly(image(), &["--", "signalfd"], "got SIGTERM via signalfd");
}

#[test]
fn sigtimedwait_takes_sigterm() {
    stops_cleanly(
        image(),
        &["--", "sigwait"],
        "got SIGTERM via sigtimedwait (code 0, pid 0)",
    );
}

#[test]
fn a_program_ignoring_sigterm_is_stopped_hard() {
    let (status, out, took) = stop(image(), &["--stop-timeout", "2", "--", "ignore"]);
    assert_eq!(status, 137, "{out}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[test]
fn thread_signals_interrupt_one_thread() {
    let r = kiln(&[
        "run",
        "--image",
        image().to_str().unwrap(),
        "--timeout",
        "120",
        "--",
        "thread",
    ]);
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(
        r.out(),
        "thread: read gave EINTR after the handler of signal 10\n\
         thread: read restarted and got 1 byte 'x' after signal 12\n",
        "{r:?}"
    );
}

#[test]
fn tokio_select_ends_on_sigterm() {
    let image = build_image("tokio-sigterm", &["--example", "tokio-sigterm"]);
    stops_cleanly(&image, &[], "got SIGTERM");
}
