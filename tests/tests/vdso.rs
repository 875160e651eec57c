//! The vDSO: programs find it through `AT_SYSINFO_EHDR` and read the clocks through it
//! without system calls (static glibc, glibc's dynamic loader, Go's runtime), with the
//! same values the system calls give, on every CPU.

use kiln_tests::{build_image, free_port, gcc, gcc_static, kiln, scratch, wait_for_http, Guest};
use std::path::Path;

/// Reads every clock the vDSO serves through glibc (the vDSO) and through the raw system
/// call, in turn, and checks each system-call value lies between the two vDSO readings
/// around it; then `gettimeofday`, `time`, `clock_getres`, and two calls the vDSO hands to
/// the kernel (a CPU-time clock, an invalid id). `threads N` instead has two threads take
/// turns reading the monotonic clock both ways under a lock, and counts steps back.
const CLOCKS: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int syscalls; /* clock_gettime system calls this program makes itself */

static long ns(struct timespec t) { return t.tv_sec * 1000000000L + t.tv_nsec; }
static long sys_ns(int id) {
    struct timespec t;
    syscalls++;
    return syscall(SYS_clock_gettime, id, &t) ? -1 : ns(t);
}
static long vdso_ns(int id) {
    struct timespec t;
    return clock_gettime(id, &t) ? -1 : ns(t);
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long last, backwards, reads;
static unsigned cpus;
static int rounds;

static void *worker(void *arg) {
    unsigned long x = (unsigned long)arg;
    for (int i = 0; i < rounds; i++) {
        for (int k = 0; k < 20000; k++) x = x * 6364136223846793005UL + k;
        pthread_mutex_lock(&lock);
        long t = (i + (int)(long)arg) & 1 ? vdso_ns(CLOCK_MONOTONIC) : sys_ns(CLOCK_MONOTONIC);
        if (t < last) backwards++;
        last = t;
        reads++;
        cpus |= 1u << sched_getcpu();
        pthread_mutex_unlock(&lock);
    }
    return (void *)x;
}

int main(int argc, char **argv) {
    if (argc > 2 && !strcmp(argv[1], "threads")) {
        rounds = atoi(argv[2]);
        pthread_t a, b;
        pthread_create(&a, 0, worker, (void *)0);
        pthread_create(&b, 0, worker, (void *)1);
        pthread_join(a, 0);
        pthread_join(b, 0);
        printf("reads: %ld\nbackwards: %ld\ncpus used: %d\n", reads, backwards,
               __builtin_popcount(cpus));
        return 0;
    }
    unsigned long e = getauxval(AT_SYSINFO_EHDR);
    printf("vdso: %s\n", e && !memcmp((void *)e, "\177ELF", 4) ? "ELF" : "missing");
    int ids[] = {CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_MONOTONIC_RAW, CLOCK_REALTIME_COARSE,
                 CLOCK_MONOTONIC_COARSE, CLOCK_BOOTTIME, CLOCK_TAI};
    int bad = 0;
    for (unsigned i = 0; i < sizeof ids / sizeof *ids; i++) {
        int id = ids[i];
        long prev = 0;
        for (int r = 0; r < 200; r++) {
            long a = vdso_ns(id), b = sys_ns(id), c = vdso_ns(id);
            int coarse = id == CLOCK_REALTIME_COARSE || id == CLOCK_MONOTONIC_COARSE;
            if (a < prev || !(a <= b && b <= c) || (coarse && a % 4000000)) {
                if (bad++ < 5) printf("clock %d: %ld %ld %ld (before %ld)\n", id, a, b, c, prev);
            }
            prev = c;
        }
    }
    struct timeval t1, t2;
    struct timezone tz = {60, 1};
    gettimeofday(&t1, &tz);
    long real = sys_ns(CLOCK_REALTIME) / 1000;
    gettimeofday(&t2, 0);
    if (!(t1.tv_sec * 1000000L + t1.tv_usec <= real && real <= t2.tv_sec * 1000000L + t2.tv_usec))
        printf("gettimeofday: %ld.%06ld %ld %ld.%06ld\n", t1.tv_sec, t1.tv_usec, real,
               t2.tv_sec, t2.tv_usec), bad++;
    if (tz.tz_minuteswest || tz.tz_dsttime) printf("timezone: %d %d\n", tz.tz_minuteswest, tz.tz_dsttime), bad++;
    time_t s1 = time(0), s2;
    long secs = sys_ns(CLOCK_REALTIME) / 1000000000L;
    time(&s2);
    if (!(s1 <= secs && secs <= s2)) printf("time: %ld %ld %ld\n", (long)s1, secs, (long)s2), bad++;
    struct timespec res;
    clock_getres(CLOCK_MONOTONIC_COARSE, &res);
    long coarse_res = ns(res);
    clock_getres(CLOCK_MONOTONIC, &res);
    printf("resolution: %ld %ld %d\n", coarse_res, ns(res), clock_getres(CLOCK_REALTIME, 0));
    /* Left to the kernel: CPU time, and an id no clock has. */
    int cpu = clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &res);
    int invalid = clock_gettime(99, &res);
    printf("cpu clock: %d, invalid clock: %d %s\n", cpu, invalid, errno == EINVAL ? "EINVAL" : "?");
    printf("mismatches: %d\nclock_gettime system calls: %d\n", bad, syscalls + 2);
    return 0;
}
"#;

/// The trace lines in `file` that name the system call `name` (after the `[pid N] ` of
/// a program with threads).
fn calls(file: &Path, name: &str) -> usize {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .map(|l| match l.strip_prefix("[pid") {
            Some(rest) => rest.split_once("] ").map_or(l, |(_, call)| call),
            None => l,
        })
        .filter(|call| call.starts_with(&format!("{name}(")))
        .count()
}

/// The number after `key` on a line of `out` (`key: N`).
fn number(out: &str, key: &str) -> usize {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no `{key}` in {out}"));
    line.trim().parse().unwrap()
}

#[test]
fn static_glibc_reads_the_clocks_without_system_calls_and_agrees_with_them() {
    let exe = gcc_static("vdso-clocks", CLOCKS);
    let trace = scratch("vdso-clocks").join("clocks.trace");
    let r = kiln(&[
        "run",
        "--elf",
        exe.to_str().unwrap(),
        "--trace=clock_gettime,gettimeofday,time,clock_getres",
        "--trace-file",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(r.status, 0, "{r:?}");
    let out = r.out();
    assert!(out.starts_with("vdso: ELF\n"), "{r:?}");
    assert_eq!(number(&out, "mismatches"), 0, "{r:?}");
    assert!(out.contains("resolution: 4000000 1 0\n"), "{r:?}");
    assert!(
        out.contains("cpu clock: 0, invalid clock: -1 EINVAL\n"),
        "{r:?}"
    );
    // The only clock system calls are the program's own `syscall(SYS_clock_gettime)`s and
    // the two the vDSO hands on; gettimeofday, time and clock_getres never reach the kernel.
    let own = number(&out, "clock_gettime system calls");
    assert!(own > 1400, "{out}");
    assert_eq!(calls(&trace, "clock_gettime"), own, "{r:?}");
    for name in ["gettimeofday", "time", "clock_getres"] {
        assert_eq!(calls(&trace, name), 0, "{name} in the trace");
    }
}

#[test]
fn every_cpu_reads_the_same_clock_through_the_vdso_and_the_kernel() {
    let exe = gcc_static("vdso-clocks", CLOCKS);
    let r = kiln(&[
        "run",
        "--elf",
        exe.to_str().unwrap(),
        "--cpus",
        "2",
        "--timeout",
        "120",
        "--",
        "threads",
        "400",
    ]);
    assert_eq!(r.status, 0, "{r:?}");
    let out = r.out();
    assert_eq!(number(&out, "reads"), 800, "{r:?}");
    // Reads taken in turn under a lock, half through the vDSO and half through the
    // kernel, on both CPUs: the clock never went back.
    assert_eq!(number(&out, "backwards"), 0, "{r:?}");
    assert_eq!(number(&out, "cpus used"), 2, "{r:?}");
}

/// A dynamically linked program: glibc's dynamic loader sets the vDSO up (`setup_vdso`)
/// and the library's `clock_gettime` calls it.
#[test]
fn glibcs_dynamic_loader_finds_the_vdso() {
    let dir = scratch("vdso-dynamic");
    let exe = gcc(
        &dir,
        "dynclock",
        r#"#include <stdio.h>
#include <time.h>
#include <sys/time.h>
int main(void) {
    struct timespec a, b;
    struct timeval tv;
    clock_gettime(CLOCK_MONOTONIC, &a);
    gettimeofday(&tv, 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("monotonic %s, wall clock %s\n",
           b.tv_sec > a.tv_sec || (b.tv_sec == a.tv_sec && b.tv_nsec >= a.tv_nsec) ? "ok" : "back",
           tv.tv_sec > 1600000000 ? "set" : "unset");
    return 0;
}
"#,
        &[],
    );
    let img = build_image("vdso-dynamic", &["--elf", exe.to_str().unwrap()]);
    let trace = dir.join("dyn.trace");
    let r = kiln(&[
        "run",
        "--image",
        img.to_str().unwrap(),
        "--trace=clock_gettime,gettimeofday,write",
        "--trace-file",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(r.out(), "monotonic ok, wall clock set\n", "{r:?}");
    assert_eq!(calls(&trace, "write"), 1, "the trace works");
    assert_eq!(calls(&trace, "clock_gettime"), 0);
    assert_eq!(calls(&trace, "gettimeofday"), 0);
}

/// Go's runtime reads its clocks (`nanotime`, `walltime`) through the vDSO: a server
/// answering requests makes no clock system call.
#[test]
fn go_reads_its_clocks_through_the_vdso() {
    let image = build_image("go-http", &["--example", "go-http"]);
    let trace = scratch("vdso-go").join("go.trace");
    let port = free_port();
    let fwd = format!("{port}:8080");
    let g = Guest::boot(
        &image,
        &[
            "-p",
            &fwd,
            "--trace=clock_gettime,accept4",
            "--trace-file",
            trace.to_str().unwrap(),
        ],
        "listening on",
    );
    for _ in 0..5 {
        let body = wait_for_http(&format!("http://127.0.0.1:{port}/"));
        assert_eq!(body, "hello from go\n");
    }
    drop(g);
    assert!(calls(&trace, "accept4") >= 1, "the trace works");
    assert_eq!(calls(&trace, "clock_gettime"), 0);
}
