//! Several virtual CPUs (`--cpus N`): the program's threads run on all of them, the kernel
//! says how many there are, and waking, sleeping and changing mappings across CPUs neither
//! loses a wake-up nor leaves a stale TLB entry behind.

use kiln_tests::kiln;

/// What `threads-hash 2 2000000` prints for its two threads on any machine.
const HASHES: &str = "thread 0: 4e105e97a6c740b1\nthread 1: d38293d5fdced5c1\n";

fn hash(extra: &[&str]) -> kiln_tests::Run {
    let mut args = vec!["run", "--example", "threads-hash", "--timeout", "120"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "2", "2000000"]);
    kiln(&args)
}

#[test]
fn two_cpus_run_two_hashing_threads_at_once() {
    let r = hash(&["--cpus", "2", "--verbose"]);
    assert_eq!(r.status, 0, "{r:?}");
    let out = r.out();
    assert!(out.starts_with(HASHES), "{r:?}");
    // sched_getaffinity (available_parallelism) answers the real count, and getcpu saw
    // the hashing threads on both CPUs.
    assert!(out.contains("\ncpus: 2\ncpus used: 0,1\n"), "{r:?}");
    assert!(r.stderr.contains("kiln: 2 CPUs online"), "{r:?}");
}

#[test]
fn one_cpu_is_the_default() {
    let r = hash(&["--verbose"]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.out().starts_with(HASHES), "{r:?}");
    assert!(r.out().contains("\ncpus: 1\ncpus used: 0\n"), "{r:?}");
    assert!(!r.stderr.contains("CPUs online"), "{r:?}");
}

#[test]
fn four_cpus_on_q35() {
    let r = kiln(&[
        "run",
        "--example",
        "threads-hash",
        "--machine",
        "q35",
        "--cpus",
        "4",
        "--timeout",
        "120",
        "--",
        "4",
        // Long enough (about 0.3 s of hashing per thread) for every vCPU to take a thread:
        // on a 2-core host four vCPU threads take turns, and a vCPU whose host thread
        // waited out a whole short run would take none (`cpus used: 0,1,2`).
        "3000000",
    ]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.out().contains("\ncpus: 4\ncpus used: 0,1,2,3\n"), "{r:?}");
}

#[test]
fn wake_ups_sleeps_and_shootdowns_across_cpus() {
    let r = kiln(&[
        "run",
        "--example",
        "smp-stress",
        "--cpus",
        "2",
        "--timeout",
        "240",
    ]);
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(
        r.out(),
        "pingpong: 16000\nbarrier: 300\nsleep: 320\nchurn: ok\nprotect: ok\nspin-sync: ok\n",
        "{r:?}"
    );
}

#[test]
fn the_existing_threads_example_passes_on_two_cpus() {
    let r = kiln(&[
        "run",
        "--example",
        "threads",
        "--cpus",
        "2",
        "--timeout",
        "120",
    ]);
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(
        r.out(),
        "mutex: 8000\ncondvar: ready\nchannel: 4950\nsleep: ok\nbusy: ok\nscoped: 10\ntimeout: ok\n",
        "{r:?}"
    );
}

#[test]
fn a_c_program_is_told_the_cpu_count() {
    for (cpus, n) in [("1", "1"), ("2", "2")] {
        let r = kiln(&[
            "run",
            "--example",
            "nproc",
            "--cpus",
            cpus,
            "--timeout",
            "120",
        ]);
        assert_eq!(r.status, 0, "{r:?}");
        assert_eq!(
            r.out(),
            format!(
                "online: {n}\nconfigured: {n}\nget_nprocs: {n}\naffinity: {n}\nthis cpu is in range: yes\n"
            ),
            "{r:?}"
        );
    }
}
