//! Dies in a function with a known name and line, so crash reports can be checked:
//!
//! - `crashy segv`: writes through a null pointer in `crashy::store` (SIGSEGV, status 139);
//! - `crashy abort`: calls `std::process::abort` from `crashy::give_up` (SIGABRT, 134);
//! - `crashy thread`: a second thread named `worker` does the `segv` while the main thread
//!   waits for it; `crashy spin` computes in `crashy::spin` for a second (for the profiler).
//!
//! Built with line tables and symbols (see `examples/Cargo.toml`) and without frame pointers,
//! so the report must come from the program's call-frame information.

use std::hint::black_box;

#[inline(never)]
fn store(slot: *mut u64, value: u64) {
    // SAFETY: none; this is the crash the program exists for.
    unsafe { std::ptr::write_volatile(slot, value) }
}

#[inline(never)]
fn fill(depth: u32) {
    if depth == 0 {
        store(black_box(std::ptr::null_mut()), 42);
    } else {
        fill(black_box(depth - 1));
    }
    black_box(depth);
}

/// Busy for about `ms` milliseconds of wall-clock time.
#[inline(never)]
fn spin(ms: u64) -> u64 {
    let start = std::time::Instant::now();
    let mut x = 1u64;
    while start.elapsed().as_millis() < u128::from(ms) {
        for i in 0..10_000u64 {
            x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
    }
    x
}

#[inline(never)]
fn give_up() {
    std::process::abort();
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "segv".into());
    println!("crashy: {mode}");
    match mode.as_str() {
        "segv" => fill(black_box(3)),
        "abort" => give_up(),
        "spin" => {
            black_box(spin(1000));
        }
        "thread" => {
            let t = std::thread::Builder::new()
                .name("worker".into())
                .spawn(|| fill(black_box(2)))
                .expect("spawn");
            let _ = t.join();
        }
        other => {
            eprintln!("crashy: unknown mode {other} (segv, abort, thread, spin)");
            std::process::exit(2);
        }
    }
    println!("crashy: still alive");
}
