//! `run --profile`: the kernel samples where the program runs, unwinds and counts the
//! stacks, and the host writes folded stacks and a flame graph that name the hot code.

use kiln_tests::{build_image_to, gcc_static, kiln, run_image, scratch};

/// Samples per folded line whose stack holds `frame`, and all samples.
fn share(folded: &str, frame: &str) -> (u64, u64) {
    let mut hit = 0;
    let mut all = 0;
    for line in folded.lines() {
        let (stack, n) = line.rsplit_once(' ').expect("stack and count");
        let n: u64 = n.parse().expect("a count");
        all += n;
        if stack
            .split(';')
            .any(|f| f == frame || f.starts_with(&format!("{frame}+")))
        {
            hit += n;
        }
    }
    (hit, all)
}

/// Runs `cargo xtask run --elf ELF --profile-folded ... EXTRA... -- ARGS...` in the scratch
/// directory `name`; returns the run and the folded stacks.
fn profile_elf(name: &str, elf: &str, extra: &[&str], args: &[&str]) -> (kiln_tests::Run, String) {
    let folded = scratch(name).join("profile.folded");
    let mut argv = vec![
        "run",
        "--elf",
        elf,
        "--profile-folded",
        folded.to_str().unwrap(),
    ];
    argv.extend(extra);
    argv.push("--");
    argv.extend(args);
    let r = kiln(&argv);
    let text = std::fs::read_to_string(&folded).unwrap_or_default();
    (r, text)
}

#[test]
fn a_rust_programs_hot_function_dominates_the_profile() {
    let dir = scratch("profile-rust");
    let (folded, svg) = (dir.join("spin.folded"), dir.join("spin.svg"));
    let r = kiln(&[
        "run",
        "--example",
        "crashy",
        "--profile",
        svg.to_str().unwrap(),
        "--profile-folded",
        folded.to_str().unwrap(),
        "--",
        "spin",
    ]);
    assert_eq!(r.status, 0, "{r:?}");
    // The program's own output is untouched.
    assert_eq!(r.out(), "crashy: spin\ncrashy: still alive\n", "{r:?}");
    assert!(r.stderr.contains("samples"), "{r:?}");
    let text = std::fs::read_to_string(&folded).unwrap();
    let (hit, all) = share(&text, "crashy::spin");
    assert!(all >= 100, "too few samples ({all}):\n{text}");
    assert!(
        hit * 2 > all,
        "crashy::spin in {hit} of {all} samples:\n{text}"
    );
    // Root first: the program's entry, then main, then the hot function.
    let line = text.lines().find(|l| l.contains("crashy::spin")).unwrap();
    let (main, spin) = (
        line.find("crashy::main").unwrap(),
        line.find("crashy::spin").unwrap(),
    );
    assert!(line.starts_with("_start") && main < spin, "{line}");
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(
        svg.starts_with("<?xml") && svg.contains("crashy::spin"),
        "{svg:.300}"
    );
}

#[test]
fn a_c_loop_without_system_calls_is_sampled_in_user_mode() {
    // An ordinary C program built by Debian's gcc: a hot function that makes no system
    // call, so every one of its samples comes from a timer interrupt in user mode.
    let exe = gcc_static(
        "profile-c",
        r#"#include <stdio.h>
#include <stdlib.h>
__attribute__((noinline)) unsigned long burn(unsigned long n) {
    unsigned long x = 1;
    for (unsigned long i = 0; i < n; i++) x = x * 6364136223846793005UL + i;
    return x;
}
int main(int argc, char **argv) {
    unsigned long n = argc > 1 ? strtoul(argv[1], 0, 10) : 1;
    printf("%lu\n", burn(n) & 1);
    return 0;
}
"#,
    );
    let (r, text) = profile_elf(
        "profile-c-run",
        exe.to_str().unwrap(),
        &["--profile-hz", "499"],
        &["300000000"],
    );
    assert_eq!(r.status, 0, "{r:?}");
    let (hit, all) = share(&text, "burn");
    assert!(all >= 50, "too few samples ({all}):\n{text}");
    assert!(hit * 2 > all, "burn in {hit} of {all} samples:\n{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("main") && l.contains(";burn")),
        "burn's caller is main:\n{text}"
    );
}

#[test]
fn an_unwritable_profile_path_is_a_clear_error_before_the_run() {
    let r = kiln(&[
        "run",
        "--example",
        "hello",
        "--profile",
        "/nonexistent-dir/out.svg",
    ]);
    assert_eq!(r.status, 125, "{r:?}");
    assert!(
        r.stderr
            .contains("cannot write --profile /nonexistent-dir/out.svg"),
        "{r:?}"
    );
    assert!(
        !r.out().contains("Hello"),
        "the program must not run: {r:?}"
    );
}

#[test]
fn a_stripped_third_party_program_is_profiled_by_address() {
    // Debian's busybox: stripped, and CFI only for its C library. The profile still counts
    // where it ran, by address.
    let script = "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; echo done";
    let (r, text) = profile_elf(
        "profile-busybox",
        "/bin/busybox",
        &[],
        &["sh", "-c", script],
    );
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(r.out(), "done\n", "{r:?}");
    let (_, all) = share(&text, "");
    assert!(all >= 20, "too few samples ({all}):\n{text}");
    assert!(
        text.lines().any(|l| l.starts_with("0x")),
        "addresses for a stripped program:\n{text}"
    );
}

#[test]
fn the_kernel_profile_shows_the_kernels_own_stacks_of_system_calls() {
    // A program that spends its time in system calls: the kernel profiler, sampling from
    // the host through QEMU's monitor, sees the kernel's frames below the dispatcher.
    let exe = gcc_static(
        "kprof-syscalls",
        r#"#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1, sum = 0;
    struct timespec t;
    struct utsname u;
    for (long i = 0; i < n; i++) {
        // Calls with work in the dispatcher (a 390-byte copy out): the entry and exit
        // alone, which got cheaper than they were, are not what the profile is about.
        sum += syscall(SYS_uname, &u) == 0;
        // The system call itself, not the vDSO: the kernel's stacks are what is profiled.
        syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &t);
        sum += t.tv_nsec & 1;
    }
    printf("calls done %d\n", sum > 0);
    return 0;
}
"#,
    );
    let dir = scratch("kprof-run");
    let (folded, svg) = (dir.join("kernel.folded"), dir.join("kernel.svg"));
    let _ = std::fs::remove_file(&folded);
    let r = kiln(&[
        "run",
        "--elf",
        exe.to_str().unwrap(),
        "--profile-kernel-folded",
        folded.to_str().unwrap(),
        "--profile-kernel",
        svg.to_str().unwrap(),
        "--",
        "150000",
    ]);
    assert_eq!(r.status, 0, "{r:?}");
    // The program's own output is untouched.
    assert_eq!(r.out(), "calls done 1\n", "{r:?}");
    assert!(r.stderr.contains("kernel profile"), "{r:?}");
    assert!(!r.stderr.contains("stopped sampling early"), "{r:?}");
    let text = std::fs::read_to_string(&folded).unwrap();
    let (_, all) = share(&text, "");
    let (on_syscall, _) = share(&text, "kiln_kernel::run::on_syscall");
    let (dispatch, _) = share(&text, "kiln_os::syscall::dispatch");
    let (user, _) = share(&text, "[user]");
    assert!(all >= 40, "too few samples ({all}):\n{text}");
    assert!(
        on_syscall * 3 > all && dispatch * 5 > all,
        "on_syscall in {on_syscall}, dispatch in {dispatch} of {all} samples:\n{text}"
    );
    assert!(user > 0, "the loop's own code runs in user mode:\n{text}");
    // Root first: the system-call entry, the kernel's handler, then the dispatcher.
    let line = text
        .lines()
        .find(|l| l.contains("kiln_os::syscall::dispatch"))
        .unwrap();
    let (entry, handler, dispatcher) = (
        line.find("kiln_syscall_entry").unwrap_or(usize::MAX),
        line.find("kiln_kernel::run::on_syscall").unwrap(),
        line.find("kiln_os::syscall::dispatch").unwrap(),
    );
    assert!(entry < handler && handler < dispatcher, "{line}");
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(
        svg.starts_with("<?xml") && svg.contains("kiln_os::syscall::dispatch"),
        "{svg:.300}"
    );
}

#[test]
fn an_unwritable_kernel_profile_path_is_a_clear_error_before_the_run() {
    for flag in ["--profile-kernel", "--profile-kernel-folded"] {
        let r = kiln(&[
            "run",
            "--example",
            "hello",
            flag,
            "/nonexistent-dir/kernel.out",
        ]);
        assert_eq!(r.status, 125, "{r:?}");
        assert!(
            r.stderr
                .contains(&format!("cannot write {flag} /nonexistent-dir/kernel.out")),
            "{r:?}"
        );
        assert!(r.out().is_empty(), "the program must not run: {r:?}");
    }
    // The kernel profiler continues the guest after each sample: it cannot share it with a
    // debugger that holds it.
    let r = kiln(&[
        "run",
        "--example",
        "hello",
        "--gdb",
        "--profile-kernel-folded",
        "/tmp/kernel.folded",
    ]);
    assert_ne!(r.status, 0, "{r:?}");
    assert!(r.stderr.contains("cannot be used with"), "{r:?}");
}

#[test]
fn the_profiler_is_in_the_kernel_only_when_asked_for() {
    let dir = scratch("profile-choice");
    let (lean, full, folded) = (
        dir.join("lean.elf"),
        dir.join("full.elf"),
        dir.join("spin.folded"),
    );
    let crashy = ["--example", "crashy"];
    let r = build_image_to(&lean, &crashy);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(
        r.stderr.contains(
            "kiln: kernel: without the program profiler (--with-profiler, or run --profile, puts it in)"
        ),
        "{r:?}"
    );
    // An image without it refuses --profile at boot, saying how to get one with it.
    let profile = |image: &std::path::Path| {
        run_image(
            image,
            &["--profile-folded", folded.to_str().unwrap(), "--", "spin"],
        )
    };
    let r = profile(&lean);
    assert_ne!(r.status, 0, "{r:?}");
    assert!(
        r.stderr
            .contains("this kernel was built without the profiler")
            && r.stderr.contains("--with-profiler"),
        "{r:?}"
    );
    assert!(
        !r.stderr.contains("the profile has no samples"),
        "no noise after it: {r:?}"
    );
    let r = build_image_to(&full, &[&crashy[..], &["--with-profiler"]].concat());
    assert_eq!(r.status, 0, "{r:?}");
    assert!(
        r.stderr
            .contains("kiln: kernel: with the program profiler (asked for)"),
        "{r:?}"
    );
    let size = |p: &std::path::Path| std::fs::metadata(p).unwrap().len();
    assert!(
        size(&full) > size(&lean) + 10_000,
        "{} vs {}",
        size(&full),
        size(&lean)
    );
    let r = profile(&full);
    assert_eq!(r.status, 0, "{r:?}");
    let text = std::fs::read_to_string(&folded).unwrap();
    let (hit, all) = share(&text, "crashy::spin");
    assert!(
        all > 0 && hit * 2 > all,
        "crashy::spin in {hit} of {all} samples:\n{text}"
    );
}

const BURN: &str = r#"
#include <stdio.h>
__attribute__((noinline)) unsigned long burn_cycles(unsigned long n) {
    unsigned long x = 1;
    for (unsigned long i = 0; i < n; i++) x = x * 6364136223846793005UL + i;
    return x;
}
int main(void) { printf("%lu\n", burn_cycles(60000000UL)); return 0; }
"#;

#[test]
fn samples_after_execve_are_named_from_the_new_program() {
    // busybox's shell (stripped) `exec`s a C program with symbols: its hot function is
    // named, so the samples after the exec were symbolized from the new program's file.
    let burn = gcc_static("profile-burn", BURN);
    let file = format!("{}:/usr/local/bin/burn", burn.display());
    let (r, folded) = profile_elf(
        "profile-exec",
        "/bin/busybox",
        &["--file", &file],
        &["sh", "-c", "exec /usr/local/bin/burn"],
    );
    assert_eq!(r.status, 0, "{r:?}");
    let (hit, all) = share(&folded, "burn_cycles");
    assert!(all > 0 && hit * 2 > all, "{hit} of {all}: {folded}");
}

/// A Go program that profiles itself with `runtime/pprof`, as Go services do: Go arms
/// `setitimer(ITIMER_PROF)` (its per-thread `timer_create` on a CPU clock is refused) and
/// counts the `SIGPROF`s. The profile it writes, read by the host's `go tool pprof`, must
/// show the second of spinning in the spinning function.
const GO_PPROF: &str = r#"package main

import (
	"os"
	"runtime/pprof"
	"time"
)

var sink uint64

func spin(d time.Duration) {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		for i := 0; i < 10000; i++ {
			sink += uint64(i % 7)
		}
	}
}

func main() {
	f, err := os.Create("/tmp/cpu.prof")
	if err != nil {
		panic(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		panic(err)
	}
	spin(time.Second)
	pprof.StopCPUProfile()
	f.Close()
	b, err := os.ReadFile("/tmp/cpu.prof")
	if err != nil {
		panic(err)
	}
	os.Stdout.Write(b)
}
"#;

#[test]
fn a_go_programs_own_pprof_profile_has_its_samples() {
    let dir = scratch("profile/go-pprof");
    std::fs::write(dir.join("main.go"), GO_PPROF).unwrap();
    std::fs::write(dir.join("go.mod"), "module gopprof\n\ngo 1.19\n").unwrap();
    let go = |args: &[&str]| {
        std::process::Command::new("go")
            .args(args)
            .current_dir(&dir)
            .env("CGO_ENABLED", "0")
            .env("GOCACHE", dir.join("gocache"))
            .env("GOPATH", dir.join("gopath"))
            .env("GOFLAGS", "-mod=mod")
            .output()
            .expect("go runs")
    };
    let built = go(&["build", "-o", "gopprof", "."]);
    assert!(built.status.success(), "{built:?}");
    let elf = dir.join("gopprof");
    let image = scratch("profile/go-pprof").join("gopprof.elf");
    let b = build_image_to(&image, &["--elf", elf.to_str().unwrap()]);
    assert_eq!(b.status, 0, "{b:?}");
    let r = run_image(&image, &[]);
    assert_eq!(r.status, 0, "{r:?}");
    let prof = dir.join("kiln.prof");
    std::fs::write(&prof, &r.stdout).unwrap();
    let top = go(&[
        "tool",
        "pprof",
        "-top",
        "-nodecount=3",
        prof.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&top.stdout);
    assert!(top.status.success(), "{top:?}");
    // "Total samples = 980ms": most of the second; and main.spin first of all.
    let total_ms: f64 = text
        .lines()
        .find_map(|l| l.split("Total samples = ").nth(1))
        .and_then(|t| t.split_whitespace().next())
        .and_then(|t| {
            t.strip_suffix("ms")
                .map(|ms| ms.parse().ok())
                .unwrap_or_else(|| t.strip_suffix('s')?.parse::<f64>().ok().map(|s| s * 1000.0))
        })
        .unwrap_or_else(|| panic!("no total in:\n{text}"));
    assert!(total_ms >= 500.0, "{text}");
    let first = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .nth(1)
        .unwrap_or_default();
    assert!(first.ends_with("main.spin"), "{text}");
}
