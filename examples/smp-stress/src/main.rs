//! Many threads waking each other, sleeping and changing mappings at once: what goes wrong
//! first when a kernel runs threads on several CPUs (a lost wake-up hangs, a stale TLB
//! entry lets a write through). Each line it prints is one check:
//!
//! - `pingpong: 16000` — 8 pairs of threads pass a token back and forth (mutex and condvar:
//!   futex waits and wakes) 1,000 times each way;
//! - `barrier: 300` — 16 threads meet at a barrier 300 times (a wake-up of 15 at once);
//! - `sleep: 320` — 16 threads sleep 1 ms 20 times each while others work;
//! - `churn: ok` — 8 threads map, fill, check and unmap 1 MiB buffers 100 times each;
//! - `protect: ok` — one thread writes a page in a loop while another makes it read-only:
//!   every round the writer's next write must fault (its CPU's TLB was flushed);
//! - `spin-sync: ok` — with two CPUs or more, two threads hand a counter back and forth
//!   2,000 times through a shared atomic only (no system calls): quick only when both run
//!   at the same time (on one CPU every hand-off waits for a preemption).

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::thread;
use std::time::Duration;

fn pingpong() -> u64 {
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let state = Arc::new((Mutex::new(0u64), Condvar::new()));
            let s2 = Arc::clone(&state);
            let pong = thread::spawn(move || {
                let (m, cv) = &*s2;
                for i in 0..1000u64 {
                    let mut v = m.lock().unwrap();
                    while *v != 2 * i + 1 {
                        v = cv.wait(v).unwrap();
                    }
                    *v += 1;
                    cv.notify_one();
                }
            });
            thread::spawn(move || {
                let (m, cv) = &*state;
                for i in 0..1000u64 {
                    let mut v = m.lock().unwrap();
                    *v += 1;
                    cv.notify_one();
                    while *v != 2 * i + 2 {
                        v = cv.wait(v).unwrap();
                    }
                }
                pong.join().unwrap();
                *m.lock().unwrap()
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).sum()
}

fn barrier() -> usize {
    let b = Arc::new(Barrier::new(16));
    let rounds = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..16)
        .map(|_| {
            let b = Arc::clone(&b);
            let rounds = Arc::clone(&rounds);
            thread::spawn(move || {
                for _ in 0..300 {
                    if b.wait().is_leader() {
                        rounds.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    rounds.load(Ordering::SeqCst)
}

fn sleep() -> u64 {
    let n = Arc::new(AtomicU64::new(0));
    let hs: Vec<_> = (0..16)
        .map(|i| {
            let n = Arc::clone(&n);
            thread::spawn(move || {
                for _ in 0..20 {
                    thread::sleep(Duration::from_millis(1));
                    n.fetch_add(1, Ordering::SeqCst);
                    // Some work between sleeps, so sleepers and workers share the CPUs.
                    let mut x = i as u64 + 1;
                    for _ in 0..20_000 {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    }
                    std::hint::black_box(x);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    n.load(Ordering::SeqCst)
}

fn churn() -> bool {
    let hs: Vec<_> = (0..8u8)
        .map(|t| {
            thread::spawn(move || {
                for round in 0..100u32 {
                    // Over glibc's mmap threshold: each buffer is its own mmap and munmap.
                    let fill = t.wrapping_mul(31).wrapping_add(round as u8);
                    let v = vec![fill; 1 << 20];
                    if v.iter().step_by(4096).any(|&b| b != fill) {
                        return false;
                    }
                }
                true
            })
        })
        .collect();
    hs.into_iter().all(|h| h.join().unwrap())
}

static PAGE: AtomicUsize = AtomicUsize::new(0);
static FAULTS: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_segv(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let page = PAGE.load(Ordering::SeqCst);
    // SAFETY: the kernel passes a valid siginfo; mprotect is async-signal-safe.
    let addr = unsafe { (*info).si_addr() } as usize;
    if addr & !4095 != page {
        // SAFETY: abort is async-signal-safe.
        unsafe { libc::abort() };
    }
    FAULTS.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the page is this program's own mapping.
    unsafe { libc::mprotect(page as *mut _, 4096, libc::PROT_READ | libc::PROT_WRITE) };
}

/// One thread writes a page in a loop; the other makes it read-only and then tells the
/// writer, whose next write must fault: with a stale TLB entry on its CPU it would not.
fn protect() -> bool {
    const ROUNDS: u64 = 100;
    // SAFETY: an anonymous private mapping of one page; the handler is installed before
    // any write can fault.
    let page = unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_segv as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigaction(libc::SIGSEGV, &sa, std::ptr::null_mut());
        p as usize
    };
    PAGE.store(page, Ordering::SeqCst);
    let told = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let (t2, d2) = (Arc::clone(&told), Arc::clone(&done));
    let writer = thread::spawn(move || {
        let p = page as *mut u64;
        let mut missed = 0;
        for round in 1..=ROUNDS {
            let before = FAULTS.load(Ordering::SeqCst);
            while t2.load(Ordering::SeqCst) < round {
                // SAFETY: the page is mapped; a write while it is read-only faults and
                // the handler makes it writable again.
                unsafe { p.write_volatile(round) };
            }
            // SAFETY: as above.
            unsafe { p.write_volatile(round) };
            if FAULTS.load(Ordering::SeqCst) == before {
                missed += 1;
            }
            d2.store(round, Ordering::SeqCst);
        }
        missed
    });
    for round in 1..=ROUNDS {
        // Let the writer write for a while (its TLB holds the writable entry).
        thread::sleep(Duration::from_micros(200));
        // SAFETY: the page is this program's own mapping.
        unsafe { libc::mprotect(page as *mut _, 4096, libc::PROT_READ) };
        told.store(round, Ordering::SeqCst);
        while done.load(Ordering::SeqCst) < round {
            spin_loop();
            thread::yield_now();
        }
    }
    let missed = writer.join().unwrap();
    if missed != 0 {
        println!("protect: {missed} of {ROUNDS} writes to a read-only page went through");
    }
    missed == 0
}

/// Two threads pass a counter through one atomic, each spinning until it is its turn.
fn spin_sync() -> bool {
    let turn = Arc::new(AtomicU64::new(0));
    let t2 = Arc::clone(&turn);
    let other = thread::spawn(move || {
        for i in 0..2000u64 {
            while t2.load(Ordering::SeqCst) != 2 * i + 1 {
                spin_loop();
            }
            t2.store(2 * i + 2, Ordering::SeqCst);
        }
    });
    for i in 0..2000u64 {
        while turn.load(Ordering::SeqCst) != 2 * i {
            spin_loop();
        }
        turn.store(2 * i + 1, Ordering::SeqCst);
    }
    other.join().unwrap();
    turn.load(Ordering::SeqCst) == 4000
}

fn main() {
    let only: Option<String> = std::env::args().nth(1);
    let run = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if run("pingpong") {
        println!("pingpong: {}", pingpong());
    }
    if run("barrier") {
        println!("barrier: {}", barrier());
    }
    if run("sleep") {
        println!("sleep: {}", sleep());
    }
    if run("churn") {
        println!("churn: {}", if churn() { "ok" } else { "corrupt" });
    }
    if run("protect") {
        println!("protect: {}", if protect() { "ok" } else { "missed" });
    }
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    if run("spin-sync") && cpus >= 2 {
        println!("spin-sync: {}", if spin_sync() { "ok" } else { "wrong" });
    }
}
