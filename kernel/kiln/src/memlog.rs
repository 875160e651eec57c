//! `kiln.memlog=SECS`: a kernel log line with the memory in use every SECS seconds, for
//! watching a long-running program (`bench soak` reads them):
//!
//! ```text
//! kiln: mem used=5120 KiB heap=1894 KiB tables=68 KiB net=1152 KiB
//! ```
//!
//! `used` is all RAM handed out (kernel heap, page tables, the program's pages); `heap` is
//! the kernel heap's allocations still live; `tables` the page tables (kernel and program);
//! `net` the network's buffers (sockets' receive and send buffers and queued frames, all
//! inside `heap`). Off by default.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::console;
use crate::Kernel;

/// The interval in ns (0: off).
static INTERVAL_NS: AtomicU64 = AtomicU64::new(0);
/// When the next line is due (monotonic ns).
static NEXT_NS: AtomicU64 = AtomicU64::new(0);

/// Starts logging every `secs` seconds (none when `None`); the first line comes at the
/// kernel's first look ([`service`]), as the program starts.
pub fn start(secs: Option<u32>) {
    let Some(secs) = secs else { return };
    INTERVAL_NS.store(u64::from(secs) * 1_000_000_000, Ordering::Relaxed);
    NEXT_NS.store(kiln_hal::time::monotonic_ns(), Ordering::Relaxed);
}

fn log_now(k: &Kernel) {
    let now = kiln_hal::time::monotonic_ns();
    NEXT_NS.store(now + INTERVAL_NS.load(Ordering::Relaxed), Ordering::Relaxed);
    console::warn(format_args!(
        "mem used={} KiB heap={} KiB tables={} KiB net={} KiB",
        kiln_hal::frames::used_bytes() >> 10,
        kiln_hal::heap::in_use_bytes() >> 10,
        kiln_hal::paging::table_bytes() >> 10,
        k.process.net.buffer_bytes() >> 10
    ));
}

/// When the next line is due, if logging is on.
pub fn deadline() -> Option<u64> {
    (INTERVAL_NS.load(Ordering::Relaxed) != 0).then(|| NEXT_NS.load(Ordering::Relaxed))
}

/// Writes the line if it is due.
pub fn service(k: &Kernel) {
    if deadline().is_some_and(|d| d <= kiln_hal::time::monotonic_ns()) {
        log_now(k);
    }
}
