//! A CPU-bound multi-threaded program: N threads (default 2) each hash their own stream of
//! bytes, with no shared data and no system calls while they work, so with N CPUs they run
//! at once and the program takes about 1/N of the time.
//!
//! Arguments: `[THREADS [ROUNDS]]` (defaults 2 and 4,000,000). Prints one line per thread,
//! `thread I: HASH` (FNV-1a over `ROUNDS` rounds of a xorshift stream seeded with I: the
//! same on every machine), then `cpus: N` (what `available_parallelism` says, from
//! `sched_getaffinity`), `cpus used: 0,1` (the CPUs `sched_getcpu` saw the hashing threads
//! on, asked every 65,536 rounds) and `elapsed-ms: MS`.

use std::time::Instant;

/// The thread's result: FNV-1a of a xorshift64 stream seeded by `seed`; and the CPUs it
/// ran on, one bit each.
fn work(seed: u64, rounds: u64) -> (u64, u64) {
    let mut seen = 0u64;
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for r in 0..rounds {
        if r % 65_536 == 0 {
            // SAFETY: sched_getcpu has no preconditions.
            let cpu = unsafe { libc::sched_getcpu() };
            if (0..64).contains(&cpu) {
                seen |= 1 << cpu;
            }
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        for b in x.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    (h, seen)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let rounds: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(4_000_000);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|i| std::thread::spawn(move || work(i, rounds)))
        .collect();
    let mut used = 0u64;
    for (i, h) in handles.into_iter().enumerate() {
        let (hash, seen) = h.join().unwrap();
        used |= seen;
        println!("thread {i}: {hash:016x}");
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("cpus: {cpus}");
    let used: Vec<String> = (0..64)
        .filter(|c| used & (1 << c) != 0)
        .map(|c: u32| c.to_string())
        .collect();
    println!("cpus used: {}", used.join(","));
    println!("elapsed-ms: {}", start.elapsed().as_millis());
}
