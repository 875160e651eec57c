//! Stopping on SIGINT, SIGTERM and SIGHUP: the runner owns its QEMU, so a signal to the
//! runner stops the virtual machine and removes its files before the runner exits.
//!
//! The handlers (signal-hook's, which only store a number) are installed the first time a
//! run or the suite asks, and stay for the life of the process; the loops that own child
//! processes poll [`received`].

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

/// The stop signal received since [`install`], if any.
pub fn received() -> Option<i32> {
    match last().load(Ordering::Acquire) {
        0 => None,
        n => Some(n as i32),
    }
}
