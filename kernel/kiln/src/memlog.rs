//! `kiln.memlog=SECS`: a kernel log line with the memory in use every SECS seconds, for
//! watching a long-running program (`bench soak` reads them):
//!
//! ```text
//! kiln: mem used=5120 KiB heap=1894 KiB
//! ```
//!
//! `used` is all RAM handed out (kernel heap, page tables, the program's pages); `heap` is
//! the kernel heap's allocations still live. Off by default.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::console;

/// The interval in ns (0: off).
static INTERVAL_NS: AtomicU64 = AtomicU64::new(0);
/// When the next line is due (monotonic ns).
static NEXT_NS: AtomicU64 = AtomicU64::new(0);

/// Starts logging every `secs` seconds (none when `None`), with a first line now.
pub fn start(secs: Option<u32>) {
    let Some(secs) = secs else { return };
    INTERVAL_NS.store(u64::from(secs) * 1_000_000_000, Ordering::Relaxed);
    log_now();
}

fn log_now() {
    let now = kiln_hal::time::monotonic_ns();
    NEXT_NS.store(now + INTERVAL_NS.load(Ordering::Relaxed), Ordering::Relaxed);
    console::warn(format_args!(
        "mem used={} KiB heap={} KiB",
        kiln_hal::frames::used_bytes() >> 10,
        kiln_hal::heap::in_use_bytes() >> 10
    ));
}

/// When the next line is due, if logging is on.
pub fn deadline() -> Option<u64> {
    (INTERVAL_NS.load(Ordering::Relaxed) != 0).then(|| NEXT_NS.load(Ordering::Relaxed))
}

/// Writes the line if it is due.
pub fn service() {
    if deadline().is_some_and(|d| d <= kiln_hal::time::monotonic_ns()) {
        log_now();
    }
}
