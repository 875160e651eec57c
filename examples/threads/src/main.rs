//! Exercises threads the way ordinary programs use them; each line it prints is one check.
//!
//! - `mutex: 8000` — eight threads add to a counter under a mutex;
//! - `condvar: ready` — a thread waits on a condition variable until another signals;
//! - `channel: 4950` — a producer sends 0..100 through an mpsc channel;
//! - `sleep: ok` — four threads sleep 50 ms each, in parallel (well under 200 ms);
//! - `busy: ok` — a thread spins until told to stop, while the main thread sleeps and then
//!   stops it (a busy thread must not starve the others);
//! - `scoped: 10` — scoped threads borrow local data;
//! - `timeout: ok` — a condvar wait with a timeout returns after the timeout.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

fn main() {
    let counter = Arc::new(Mutex::new(0u64));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let c = Arc::clone(&counter);
            thread::spawn(move || {
                for _ in 0..1000 {
                    *c.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    println!("mutex: {}", *counter.lock().unwrap());

    let pair = Arc::new((Mutex::new(false), Condvar::new()));
    let p2 = Arc::clone(&pair);
    let waiter = thread::spawn(move || {
        let (lock, cv) = &*p2;
        let mut ready = lock.lock().unwrap();
        while !*ready {
            ready = cv.wait(ready).unwrap();
        }
        "ready"
    });
    thread::sleep(Duration::from_millis(20));
    {
        let (lock, cv) = &*pair;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }
    println!("condvar: {}", waiter.join().unwrap());

    let (tx, rx) = mpsc::channel();
    let producer = thread::spawn(move || {
        for i in 0..100u64 {
            tx.send(i).unwrap();
        }
    });
    let sum: u64 = rx.iter().sum();
    producer.join().unwrap();
    println!("channel: {sum}");

    let start = Instant::now();
    let sleepers: Vec<_> = (0..4)
        .map(|_| thread::spawn(|| thread::sleep(Duration::from_millis(50))))
        .collect();
    for s in sleepers {
        s.join().unwrap();
    }
    let took = start.elapsed();
    // In parallel: well under the 200 ms that sleeping one after another would take.
    let parallel = took >= Duration::from_millis(50) && took < Duration::from_millis(150);
    println!(
        "sleep: {}",
        if parallel {
            "ok".to_string()
        } else {
            format!("took {took:?}")
        }
    );

    let stop = Arc::new(AtomicBool::new(false));
    let spins = Arc::new(AtomicU64::new(0));
    let (s2, n2) = (Arc::clone(&stop), Arc::clone(&spins));
    let busy = thread::spawn(move || {
        while !s2.load(Ordering::Relaxed) {
            n2.fetch_add(1, Ordering::Relaxed);
        }
    });
    thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    busy.join().unwrap();
    println!(
        "busy: {}",
        if spins.load(Ordering::Relaxed) > 0 {
            "ok"
        } else {
            "never ran"
        }
    );

    let data = [1u64, 2, 3, 4];
    let total = thread::scope(|s| {
        let a = s.spawn(|| data[..2].iter().sum::<u64>());
        let b = s.spawn(|| data[2..].iter().sum::<u64>());
        a.join().unwrap() + b.join().unwrap()
    });
    println!("scoped: {total}");

    let pair = (Mutex::new(()), Condvar::new());
    let guard = pair.0.lock().unwrap();
    let start = Instant::now();
    let (_g, res) = pair
        .1
        .wait_timeout(guard, Duration::from_millis(30))
        .unwrap();
    println!(
        "timeout: {}",
        if res.timed_out() && start.elapsed() >= Duration::from_millis(30) {
            "ok"
        } else {
            "no"
        }
    );
}
