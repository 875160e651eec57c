//! Bad input to `build-image --elf`: a clear error naming the problem and the fix, never a
//! panic.

use kiln_tests::{kiln, scratch};
use std::path::{Path, PathBuf};

fn file(name: &str, bytes: &[u8]) -> PathBuf {
    let p = scratch("bad-input").join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn refuse(path: &Path, expect: &[&str]) {
    let r = kiln(&["build-image", "--elf", path.to_str().unwrap()]);
    assert_ne!(r.status, 0, "{r:?}");
    assert!(!r.stderr.contains("panicked"), "{r:?}");
    let lower = r.stderr.to_lowercase();
    for e in expect {
        assert!(lower.contains(&e.to_lowercase()), "missing {e:?}: {r:?}");
    }
}

fn elf_header(class: u8, data: u8, machine: u16, kind: u16) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = class;
    h[5] = data;
    h[6] = 1;
    h[16..18].copy_from_slice(&kind.to_le_bytes());
    h[18..20].copy_from_slice(&machine.to_le_bytes());
    h
}

#[test]
fn not_an_elf() {
    refuse(
        &file("data.bin", b"hello, not a program\n"),
        &["not an ELF"],
    );
    // A script: the error says how to run it.
    refuse(
        &file("script.sh", b"#!/bin/sh\necho hi\n"),
        &[
            "a script for `/bin/sh`",
            "--file",
            ":/script.sh -- sh /script.sh",
        ],
    );
}

#[test]
fn missing_file() {
    let r = kiln(&["build-image", "--elf", "/nonexistent/prog"]);
    assert_ne!(r.status, 0);
    assert!(r.stderr.contains("/nonexistent/prog"), "{r:?}");
}

#[test]
fn thirty_two_bit() {
    refuse(&file("elf32", &elf_header(1, 1, 3, 2)), &["32-bit"]);
}

#[test]
fn wrong_machine() {
    refuse(&file("aarch64", &elf_header(2, 1, 183, 2)), &["x86_64"]);
}

#[test]
fn truncated() {
    let hello = std::fs::read("/bin/busybox").unwrap();
    refuse(&file("truncated", &hello[..40]), &["truncated"]);
}

#[test]
fn object_file_is_not_a_program() {
    let dir = scratch("bad-input");
    let src = dir.join("obj.c");
    std::fs::write(&src, "int f(void){return 0;}\n").unwrap();
    let out = dir.join("obj.o");
    let ok = std::process::Command::new("gcc")
        .arg("-c")
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .unwrap();
    assert!(ok.success());
    refuse(&out, &["executable"]);
}

#[test]
fn bad_file_option() {
    let r = kiln(&[
        "build-image",
        "--example",
        "c-hello",
        "--file",
        "/nonexistent:/x",
    ]);
    assert_ne!(r.status, 0);
    assert!(r.stderr.contains("/nonexistent"), "{r:?}");
    let r = kiln(&[
        "build-image",
        "--example",
        "c-hello",
        "--file",
        "Cargo.toml:relative/dest",
    ]);
    assert_ne!(r.status, 0);
    assert!(r.stderr.to_lowercase().contains("absolute"), "{r:?}");
}
