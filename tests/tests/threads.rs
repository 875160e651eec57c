//! Threads: mutexes, condition variables, channels, sleeps and a busy loop in one program;
//! each thread's floating-point state kept apart.

use kiln_tests::kiln;

#[test]
fn threads_cooperate_and_a_busy_thread_cannot_starve_others() {
    let r = kiln(&["run", "--example", "threads", "--timeout", "120"]);
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(
        r.out(),
        "mutex: 8000\ncondvar: ready\nchannel: 4950\nsleep: ok\nbusy: ok\nscoped: 10\ntimeout: ok\n",
        "{r:?}"
    );
}

#[test]
fn threads_run_on_q35_too() {
    let r = kiln(&[
        "run",
        "--example",
        "threads",
        "--machine",
        "q35",
        "--timeout",
        "120",
    ]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.out().contains("busy: ok\n"), "{r:?}");
}

/// The kernel saves only the SSE registers on a system call and leaves the x87 ones in
/// the FPU: each of two threads keeps its own SSE, MXCSR, x87 control word and x87 stack
/// across system calls, switches to the other thread and signal handlers that change them.
#[test]
fn floating_point_state_survives_system_calls_switches_and_handlers() {
    for cpus in ["1", "2"] {
        let r = kiln(&[
            "run",
            "--example",
            "fpu-state",
            "--machine",
            "q35",
            "--cpus",
            cpus,
            "--timeout",
            "120",
        ]);
        assert_eq!(r.status, 0, "--cpus {cpus}: {r:?}");
        assert_eq!(
            r.out(),
            "fpu: 2400 checks, all intact\n",
            "--cpus {cpus}: {r:?}"
        );
    }
}

const TASKS_C: &str = r#"
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
static pthread_barrier_t b;
static void *run(void *a) { pthread_barrier_wait(&b); pthread_barrier_wait(&b); return 0; }
int main(void) {
    pthread_t t[3];
    pthread_barrier_init(&b, 0, 4);
    for (int i = 0; i < 3; i++) pthread_create(&t[i], 0, run, 0);
    pthread_barrier_wait(&b);
    DIR *d = opendir("/proc/self/task"); struct dirent *e; int n = 0, own = 0, sleeping = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        n++;
        /* Each entry's stat is that thread's: its id first, then its state. */
        char path[64], state = '?'; int id = 0;
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (f && fscanf(f, "%d (%*[^)]) %c", &id, &state) == 2) {
            int want = 0;
            sscanf(e->d_name, "%d", &want);
            if (id == want) own++;
            if (state == 'S') sleeping++;
        }
        if (f) fclose(f);
    }
    closedir(d);
    printf("tasks %d, own stat %d, sleeping %d\n", n, own, sleeping);
    /* pthread_setname_np names another thread through its comm file; the process keeps
       its name. */
    int named = 0;
    for (int i = 0; i < 3; i++) {
        char want[16], got[16] = "";
        snprintf(want, sizeof want, "worker-%d", i);
        if (pthread_setname_np(t[i], want) == 0 && pthread_getname_np(t[i], got, sizeof got) == 0
            && strcmp(want, got) == 0) named++;
    }
    char own_name[32] = "";
    FILE *c = fopen("/proc/self/comm", "r");
    if (c) { fscanf(c, "%31s", own_name); fclose(c); }
    printf("named %d, process %s\n", named, own_name);
    pthread_barrier_wait(&b);
    for (int i = 0; i < 3; i++) pthread_join(t[i], 0);
    return 0;
}
"#;

#[test]
fn proc_self_task_lists_every_thread() {
    // Each thread has a directory in /proc/self/task with its own `stat`, as `ps -L` and
    // the num_threads crate expect, and its own name.
    let dir = kiln_tests::scratch("tasks");
    let exe = kiln_tests::gcc(&dir, "tasks", TASKS_C, &["-static", "-O1", "-pthread"]);
    let r = kiln_tests::kiln(&["run", "--elf", exe.to_str().unwrap()]);
    // The three waiting threads show as sleeping; the reader runs.
    assert_eq!(
        (r.status, r.out().as_str()),
        (
            0,
            "tasks 4, own stat 4, sleeping 3\nnamed 3, process tasks\n"
        ),
        "{r:?}"
    );
}
