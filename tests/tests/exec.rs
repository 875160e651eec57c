//! `execve`: the program replaces itself with another of the image, as container entry
//! points do (`exec "$@"` at the end of a shell script, `env VAR=x program`), and as
//! programs that re-execute themselves through `/proc/self/exe` do.

use kiln_tests::{build_image, gcc_static, run_image, scratch};

const ENTRY: &str = "#!/bin/busybox sh\n\
echo \"entry: $0 $*\"\n\
export FROM_ENTRY=yes\n\
exec \"$@\"\n";

#[test]
fn a_shell_entry_point_execs_the_program_through_env() {
    // Debian's `env` (dynamically linked) is the image's program; it runs a `#!` script
    // with busybox's shell, whose `exec` starts `env` again, which prints the environment.
    let dir = scratch("exec-entry");
    let entry = dir.join("entry.sh");
    std::fs::write(&entry, ENTRY).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let img = build_image(
        "exec-entry",
        &[
            "--elf",
            "/usr/bin/env",
            "--file",
            "/bin/busybox:/bin/busybox",
            "--file",
            &format!("{}:/entry.sh", entry.display()),
            "--env",
            "FROM_IMAGE=1",
        ],
    );
    let r = run_image(
        &img,
        &[
            "--",
            "STAGE=one",
            "/entry.sh",
            "/bin/env",
            "-u",
            "HOME",
            "LAST=x",
        ],
    );
    assert_eq!(r.status, 0, "{r:?}");
    let out = r.out();
    assert!(
        out.starts_with("entry: /entry.sh /bin/env -u HOME LAST=x\n"),
        "{r:?}"
    );
    for var in ["FROM_IMAGE=1", "STAGE=one", "FROM_ENTRY=yes", "LAST=x"] {
        assert!(out.lines().any(|l| l == var), "{var} missing: {r:?}");
    }
    assert!(!out.lines().any(|l| l.starts_with("HOME=")), "{r:?}");

    // The exit status is the last program's; a missing program is the shell's 127 with
    // the missing file named.
    let r = run_image(
        &img,
        &["--", "/entry.sh", "/bin/busybox", "sh", "-c", "exit 7"],
    );
    assert_eq!(r.status, 7, "{r:?}");
    // Traced as strace shows it: the path, and 0 returned into the new program.
    let r = run_image(
        &img,
        &["--trace=execve", "--", "/entry.sh", "/bin/busybox", "true"],
    );
    assert_eq!(r.status, 0, "{r:?}");
    assert!(
        r.stderr
            .contains("execve(\"/entry.sh\", [\"/entry.sh\", \"/bin/busybox\", \"true\"], 0x"),
        "{r:?}"
    );
    assert!(
        r.stderr
            .contains("execve(\"/bin/busybox\", [\"/bin/busybox\", \"true\"], 0x"),
        "{r:?}"
    );
    assert!(r.stderr.contains(" vars */) = 0\n"), "{r:?}");
    let r = run_image(&img, &["--", "/entry.sh", "/usr/bin/nothere"]);
    assert_eq!(r.status, 127, "{r:?}");
    assert!(r.stderr.contains("/usr/bin/nothere"), "{r:?}");
}

const REEXEC: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <time.h>

static char **args;
static volatile int spin = 1;

static void on_usr1(int s) { (void)s; }

static void *spinner(void *p) { (void)p; while (spin) {} return 0; }
static void *sleeper(void *p) { (void)p; for (;;) pause(); return 0; }

static void *execer(void *p) {
    (void)p;
    char *argv[] = {args[0], "child", 0};
    char *envp[] = {"STAGE=child", 0};
    execve("/proc/self/exe", argv, envp);
    printf("execve: %s\n", strerror(errno));
    exit(1);
}

int main(int argc, char **argv) {
    args = argv;
    if (argc > 1 && strcmp(argv[1], "child") == 0) {
        /* Before anything opens a file (which would take the lowest free descriptor). */
        printf("fd 5: %s, fd 6: %s\n", fcntl_ok(5), fcntl_ok(6));
        struct sigaction sa;
        sigaction(SIGUSR1, 0, &sa);
        /* Through the vDSO, whose clock page execve fills in again for the new program. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        char line[256];
        int threads = -1;
        FILE *f = fopen("/proc/self/status", "r");
        while (f && fgets(line, sizeof line, f))
            sscanf(line, "Threads: %d", &threads);
        printf("child: pid %d tid %ld threads %d env %s usr1 %s\n", getpid(),
               (long)syscall(SYS_gettid), threads, getenv("STAGE"),
               sa.sa_handler == SIG_DFL ? "default" : "handled");
        return 3;
    }
    signal(SIGUSR1, on_usr1);
    pthread_t t;
    pthread_create(&t, 0, spinner, 0);
    pthread_create(&t, 0, sleeper, 0);
    /* execve from a thread other than the main one, while one thread spins on a CPU
       and another sleeps. */
    pthread_create(&t, 0, execer, 0);
    for (;;) pause();
}
"#;

#[test]
fn a_threaded_program_re_executes_itself_from_a_second_thread() {
    let src = REEXEC.replace(
        "static char **args;",
        "#include <fcntl.h>\n\
         static const char *fcntl_ok(int fd) { return fcntl(fd, F_GETFD) == -1 ? \"closed\" : \"open\"; }\n\
         static char **args;",
    );
    // The parent opens fd 5 plainly and fd 6 close-on-exec before its threads start.
    let src = src.replace(
        "    signal(SIGUSR1, on_usr1);",
        "    dup2(open(\"/proc/self/exe\", O_RDONLY), 5);\n\
         fcntl(dup2(open(\"/proc/self/exe\", O_RDONLY), 6), F_SETFD, FD_CLOEXEC);\n\
         signal(SIGUSR1, on_usr1);",
    );
    let prog = gcc_static("reexec", &src);
    let img = build_image("reexec", &["--elf", prog.to_str().unwrap()]);
    for cpus in ["1", "2"] {
        let r = run_image(&img, &["--cpus", cpus]);
        assert_eq!(r.status, 3, "--cpus {cpus}: {r:?}");
        let out = r.out();
        assert!(
            out.contains("child: pid 1 tid 1 threads 1 env child usr1 default\n"),
            "--cpus {cpus}: {r:?}"
        );
        // The descriptor opened without close-on-exec survived; the other did not.
        assert!(out.starts_with("fd 5: open, fd 6: closed\n"), "{r:?}");
    }
    // The new program reads the clock in the vDSO: no clock_gettime reaches the kernel
    // (with an empty clock page every read would fall back to the system call).
    let r = run_image(&img, &["--trace=clock_gettime,execve"]);
    assert_eq!(r.status, 3, "{r:?}");
    assert!(r.stderr.contains("execve(\"/proc/self/exe\""), "{r:?}");
    assert!(!r.stderr.contains("clock_gettime("), "{r:?}");
}

const CRASHER: &str = r#"
#include <stdio.h>
__attribute__((noinline)) void crash_here(volatile int *p) { *p = 1; }
int main(void) {
    puts("crasher runs");
    fflush(stdout);
    crash_here((volatile int *)0);
    return 0;
}
"#;

#[test]
fn a_crash_after_execve_is_symbolized_from_the_new_program() {
    let crasher = gcc_static("exec-crasher", CRASHER);
    let img = build_image(
        "exec-crash",
        &[
            "--elf",
            "/bin/busybox",
            "--file",
            &format!("{}:/usr/local/bin/crasher", crasher.display()),
        ],
    );
    let r = run_image(&img, &["--", "sh", "-c", "exec /usr/local/bin/crasher"]);
    assert_eq!(r.status, 139, "{r:?}");
    assert_eq!(r.out(), "crasher runs\n", "{r:?}");
    assert!(r.stderr.contains(" in crash_here"), "{r:?}");
    assert!(r.stderr.contains(" in main"), "{r:?}");
}

const EXEC_LOOP: &str = r#"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/sysinfo.h>
#include <unistd.h>
static void *idle(void *p) { (void)p; for (;;) pause(); }
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 0;
    /* Each round has a second thread and a megabyte of touched heap for execve to free. */
    pthread_t t;
    pthread_create(&t, 0, idle, 0);
    char *buf = malloc(1 << 20);
    for (int i = 0; i < (1 << 20); i += 4096) buf[i] = 1;
    struct sysinfo si;
    sysinfo(&si);
    if (n == 1 || n == 100) {
        printf("round %d free %lu\n", n, si.freeram / 1024);
        fflush(stdout);
    }
    if (n >= 100) return 0;
    char next[16];
    snprintf(next, sizeof next, "%d", n + 1);
    char *args[] = {argv[0], next, 0};
    execv("/proc/self/exe", args);
    perror("execv");
    return 1;
}
"#;

#[test]
fn a_hundred_execs_in_a_row_leak_no_memory() {
    let prog = gcc_static("exec-loop", EXEC_LOOP);
    let img = build_image("exec-loop", &["--elf", prog.to_str().unwrap()]);
    let r = run_image(&img, &["--memory", "32M"]);
    assert_eq!(r.status, 0, "{r:?}");
    let out = r.out();
    let free: Vec<&str> = out
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap_or(""))
        .collect();
    assert_eq!(free.len(), 2, "{r:?}");
    assert_eq!(
        free[0], free[1],
        "memory went missing over 100 execs: {r:?}"
    );
}
