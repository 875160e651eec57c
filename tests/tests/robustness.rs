//! No program can crash the kernel: whatever a program provokes ends as an errno or a
//! signal to that program, as on Linux, never as a kernel panic (status 125) or a hang.

use kiln_tests::{build_image, gcc_static, run_image};

/// Forged `rt_sigreturn` frames and handler addresses (see `examples/sigforge`): each case
/// ends the way it does on Linux.
#[test]
fn forged_signal_frames_end_as_sigsegv_or_are_sanitised() {
    let image = build_image("sigforge", &["--example", "sigforge"]);
    let killed: &[(&str, &[i32])] = &[
        ("rip-noncanonical", &[139]),
        ("rip-kernel", &[139]),
        ("rip-top", &[139]),
        ("rip-rcx-noncanonical", &[139]),
        // Linux raises SIGBUS for the stack fault a non-canonical stack pointer causes on
        // hardware; QEMU's emulation reports a general protection fault instead (SIGSEGV).
        ("rsp-noncanonical", &[135, 139]),
        ("rsp-kernel", &[139]),
        ("cs-null", &[139]),
        ("cs-kernel", &[139]),
        ("cs-kiln-kernel", &[139]),
        ("ss-null", &[139]),
        ("handler-noncanonical", &[139]),
        ("handler-kernel", &[139]),
        ("tf-syscall", &[133]),
    ];
    for (case, statuses) in killed {
        let r = run_image(&image, &["--", case]);
        assert!(statuses.contains(&r.status), "{case}: {r:?}");
        assert!(r.out().contains(&format!("case {case}")), "{case}: {r:?}");
        assert!(!r.out().contains("resumed"), "{case}: {r:?}");
        assert!(!r.stderr.contains("kernel panic"), "{case}: {r:?}");
    }
    let r = run_image(&image, &["--", "rflags"]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.out().contains("rflags: sanitised"), "{r:?}");
    let r = run_image(&image, &["--", "nt"]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.out().contains("nt: survived"), "{r:?}");
}

/// Memory exhausted in every way a program can (see `examples/memhog`): each way ends as an
/// errno the program sees, and the program goes on once it gives memory back; on a small
/// machine too, where the kernel's reserve is smallest.
#[test]
fn exhausting_memory_gives_errnos_and_the_program_decides() {
    for memory in ["64M", "16M"] {
        exhaust(memory);
    }
}

fn exhaust(memory: &str) {
    let r = kiln_tests::kiln(&[
        "run",
        "--example",
        "memhog",
        "--memory",
        memory,
        "--timeout",
        "300",
    ]);
    assert_eq!(r.status, 0, "{r:?}");
    let out = r.out();
    for line in [
        "split: ENOMEM after",
        "populate: ENOMEM after",
        "low mmap: ENOMEM",
        "low mprotect: ENOMEM",
        "low tmpfs: ",
        "freed: populate works again",
        "threads: EAGAIN after",
        "done",
    ] {
        assert!(out.contains(line), "missing {line:?}: {r:?}");
    }
    let any = |prefix: &str, ok: &[&str]| {
        let line = out.lines().find(|l| l.starts_with(prefix)).unwrap_or("");
        assert!(ok.iter().any(|o| line.contains(o)), "{line:?}: {r:?}");
    };
    any("low mremap:", &["ENOMEM", "moved"]);
    any("low read:", &["EFAULT", "bytes"]);
    any("low tmpfs:", &["ENOSPC", "ENOMEM"]);
    any("low thread:", &["EAGAIN", "ENOMEM"]);
    any("low pipe:", &["ENOMEM"]);
    any("low create:", &["ENOSPC"]);
    // A listener's buffers come from what the kernel heap holds free when it holds enough
    // (taking nothing more from the program); else ENOMEM.
    any("low listen:", &["ENOMEM", "listening"]);
}

/// Socket buffers are kernel memory the program asks for: after a burst of listeners took
/// most of the machine and closed, the kernel heap gives that memory back, and the program
/// can have nearly all of it again (before, the heap kept it: 0 MiB after).
#[test]
fn memory_a_burst_of_sockets_took_goes_back_to_the_program() {
    let r = kiln_tests::kiln(&[
        "run",
        "--example",
        "memhog",
        "--memory",
        "32M",
        "--timeout",
        "300",
        "--",
        "sockets",
    ]);
    assert_eq!(r.status, 0, "{r:?}");
    let out = r.out();
    let line = out
        .lines()
        .find(|l| l.starts_with("sockets:"))
        .unwrap_or_else(|| panic!("{r:?}"));
    let n: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let [before, listeners, after] = n[..] else {
        panic!("{line:?}")
    };
    assert!(listeners >= 10, "the burst was too small to tell: {line:?}");
    // The burst took nearly all of it (listeners were made until memory ran out); at most
    // 2 MiB may stay with the kernel: the heap's half MiB for the next burst and a few
    // spare sockets. Socket buffers are runs of frames of their own, given back whole when
    // freed; inside the heap's chunks they left holes it could not give back (23 MiB after
    // of 27). The kernel's reserve is a count of free frames, so all of it counts against
    // the program.
    assert!(after + 2 >= before, "{line:?}: {r:?}");
    assert!(!r.stderr.contains("kernel panic"), "{r:?}");
}

/// `/tmp` files live in pages taken as they are written: a 64 MB file written by appending,
/// deleted and written again many times on a small machine never runs out of room (one
/// growing block used to need twice the file in one piece), a file truncated far beyond
/// memory takes none (sparse, as Linux's tmpfs), and `SEEK_DATA`/`SEEK_HOLE` find its data;
/// a mapping far longer than its file takes only the file's pages, and a read-only shared
/// mapping sees what `pwrite` writes (bbolt, inside etcd, relies on both).
#[test]
fn tmp_files_grow_by_pages_and_may_be_sparse() {
    const SRC: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
static char buf[65536];
int main(void) {
    memset(buf, 'k', sizeof buf);
    for (int round = 0; round < 8; round++) {
        int fd = open("/tmp/big", O_CREAT | O_WRONLY | O_APPEND | O_TRUNC, 0600);
        for (int i = 0; i < 1024; i++)
            if (write(fd, buf, sizeof buf) != sizeof buf) {
                printf("round %d: write failed at %d KiB\n", round, i * 64);
                return 1;
            }
        close(fd);
        unlink("/tmp/big");
    }
    printf("8 rounds of 64 MiB\n");
    int fd = open("/tmp/sparse", O_CREAT | O_RDWR, 0600);
    if (ftruncate(fd, 4LL << 30) != 0) { perror("ftruncate"); return 1; }
    if (pwrite(fd, "x", 1, 3LL << 30) != 1) { perror("pwrite"); return 1; }
    struct stat st;
    fstat(fd, &st);
    printf("size %lld blocks %lld\n", (long long)st.st_size, (long long)st.st_blocks);
    printf("data %lld hole %lld\n", (long long)lseek(fd, 0, SEEK_DATA),
           (long long)lseek(fd, 3LL << 30, SEEK_HOLE));
    char c = 1;
    pread(fd, &c, 1, 1LL << 30);
    printf("hole reads %d\n", c);
    /* bbolt (etcd's database) maps 10 GiB over a 16 KiB file, populated. */
    int db = open("/tmp/db", O_CREAT | O_RDWR, 0600);
    pwrite(db, "bolt", 4, 0);
    ftruncate(db, 16384);
    char *m = mmap(NULL, 10LL << 30, PROT_READ, MAP_SHARED | MAP_POPULATE, db, 0);
    printf("map %s %.4s\n", m == MAP_FAILED ? "failed" : "ok", m == MAP_FAILED ? "" : m);
    /* It writes the file with pwrite and reads the change through the mapping. */
    pwrite(db, "BOLT", 4, 0);
    pwrite(db, "page", 4, 8192);
    printf("then %.4s %.4s\n", m, m + 8192);
    return 0;
}
"#;
    let prog = gcc_static("tmp-pages", SRC);
    let r = kiln_tests::kiln(&[
        "run",
        "--elf",
        prog.to_str().unwrap(),
        "--memory",
        "160M",
        "--timeout",
        "300",
    ]);
    assert_eq!(r.status, 0, "{r:?}");
    let out = r.out();
    assert!(out.contains("8 rounds of 64 MiB"), "{r:?}");
    assert!(out.contains("size 4294967296 blocks 8\n"), "{r:?}");
    assert!(out.contains("data 3221225472 hole 3221229568\n"), "{r:?}");
    assert!(out.contains("hole reads 0\n"), "{r:?}");
    assert!(out.contains("map ok bolt\n"), "{r:?}");
    assert!(out.contains("then BOLT page\n"), "{r:?}");
}

/// Touching memory the program was granted, until none is left: the OOM kill (SIGKILL,
/// status 137), reported, never a kernel panic.
#[test]
fn touching_memory_until_none_is_left_is_an_oom_kill() {
    let r = kiln_tests::kiln(&[
        "run",
        "--example",
        "memhog",
        "--memory",
        "64M",
        "--timeout",
        "300",
        "--",
        "touch",
    ]);
    assert_eq!(r.status, 137, "{r:?}");
    assert!(r.out().contains("touched 16 MiB"), "{r:?}");
    assert!(r.stderr.contains("SIGKILL"), "{r:?}");
    assert!(!r.stderr.contains("kernel panic"), "{r:?}");
}

/// Too little guest memory for the image: one clear line saying how much it needs and how to
/// give it, status 125; `build-image` prints the same minimum, and it suffices.
#[test]
fn too_little_memory_says_how_much_to_give() {
    let out = kiln_tests::scratch("images").join("hello-memory.elf");
    let built = kiln_tests::kiln(&[
        "build-image",
        "--example",
        "hello",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(built.status, 0, "{built:?}");
    let need: u64 = built
        .out()
        .lines()
        .find_map(|l| l.strip_prefix("memory: at least "))
        .and_then(|l| l.strip_suffix(" MiB"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no memory line: {built:?}"));
    assert!((4..64).contains(&need), "{need}");
    let r = run_image(&out, &["--memory", "3M"]);
    assert_eq!(r.status, 125, "{r:?}");
    let line = format!(
        "this image needs at least {need} MiB of memory; the machine has 3 MiB: run with --memory {}M",
        need.next_power_of_two()
    );
    assert!(r.stderr.contains(&line), "{r:?}");
    assert!(!r.stderr.contains("memory allocation"), "{r:?}");
    assert!(
        !r.stderr.contains("kernel panic"),
        "a user error, not a kernel bug: {r:?}"
    );
    let r = run_image(&out, &["--memory", &format!("{need}M")]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.out().contains("hello from kiln"), "{r:?}");
}
