//! `run --profile`: the kernel samples where the program runs, unwinds and counts the
//! stacks, and the host writes folded stacks and a flame graph that name the hot code.

use kiln_tests::{kiln, scratch};
use std::process::Command;

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
    let dir = scratch("profile-c");
    let src = dir.join("burn.c");
    std::fs::write(
        &src,
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
    )
    .unwrap();
    let exe = dir.join("burn");
    let cc = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .expect("gcc runs");
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let folded = dir.join("burn.folded");
    let r = kiln(&[
        "run",
        "--elf",
        exe.to_str().unwrap(),
        "--profile-folded",
        folded.to_str().unwrap(),
        "--profile-hz",
        "499",
        "--",
        "300000000",
    ]);
    assert_eq!(r.status, 0, "{r:?}");
    let text = std::fs::read_to_string(&folded).unwrap();
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
    let dir = scratch("profile-busybox");
    let folded = dir.join("busybox.folded");
    let r = kiln(&[
        "run",
        "--elf",
        "/bin/busybox",
        "--profile-folded",
        folded.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; echo done",
    ]);
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(r.out(), "done\n", "{r:?}");
    let text = std::fs::read_to_string(&folded).unwrap();
    let (_, all) = share(&text, "");
    assert!(all >= 20, "too few samples ({all}):\n{text}");
    assert!(
        text.lines().any(|l| l.starts_with("0x")),
        "addresses for a stripped program:\n{text}"
    );
}
