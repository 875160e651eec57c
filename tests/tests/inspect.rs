//! Provenance and reproducibility: every image carries its provenance, `inspect` prints it
//! from the image and from disks that hold it, and building twice gives the same bytes.

use kiln_tests::{build_image, kiln, scratch};
use std::path::PathBuf;
use std::process::Command;

#[test]
fn provenance_is_in_the_image_and_builds_are_reproducible() {
    let a = build_image("inspect-a", &["--example", "hello", "--env", "GREETING=hi"]);
    let b = build_image("inspect-b", &["--example", "hello", "--env", "GREETING=hi"]);
    let bytes = std::fs::read(&a).unwrap();
    assert_eq!(
        bytes,
        std::fs::read(&b).unwrap(),
        "two builds of the same inputs differ"
    );

    let r = kiln(&["inspect", a.to_str().unwrap()]);
    assert_eq!(r.status, 0, "{r:?}");
    let out = r.out();
    for want in [
        "(pvh)",
        "hello 0.1.0 (example:hello)",
        "Cargo.lock",
        "rustc 1.",
        "kiln.env=GREETING=hi",
        "CycloneDX 1.5",
        "verified",
        "relocation-model=static",
        "+crt-static",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    // The git line names a commit (this repository is a git checkout).
    let git = out.lines().find(|l| l.starts_with("git ")).unwrap();
    assert!(git.split_whitespace().nth(1).unwrap().len() == 40, "{git}");

    let r = kiln(&["inspect", "--json", a.to_str().unwrap()]);
    assert_eq!(r.status, 0, "{r:?}");
    let json = r.out();
    assert!(
        json.contains("\"schema\": \"dev.kiln.provenance/v1\""),
        "{json}"
    );
    assert!(json.contains("\"bomFormat\": \"CycloneDX\""), "{json}");
    assert!(
        json.contains("\"purl\": \"pkg:cargo/hello@0.1.0\""),
        "{json}"
    );
    assert!(json.contains("\"image_sha256_covers\""), "{json}");

    // Any changed byte outside the provenance is caught.
    let tampered = scratch("inspect").join("tampered.elf");
    let mut t = bytes.clone();
    let at = t.len() / 2;
    t[at] ^= 0xff;
    std::fs::write(&tampered, &t).unwrap();
    let r = kiln(&["inspect", tampered.to_str().unwrap()]);
    assert_eq!(r.status, 1, "{r:?}");
    assert!(
        r.out().contains("MISMATCH") || r.stderr.contains("provenance"),
        "{r:?}"
    );
}

#[test]
fn inspect_finds_the_image_inside_raw_and_qcow2_disks() {
    let image = build_image("inspect-disk", &["--elf", "/bin/busybox"]);
    let bytes = std::fs::read(&image).unwrap();
    let dir = scratch("inspect");
    // A raw disk: the image at a sector boundary after other data.
    let raw = dir.join("disk.raw");
    let mut disk = vec![0u8; 1 << 20];
    disk.extend_from_slice(&bytes);
    disk.resize(disk.len().div_ceil(1 << 20) * (1 << 20) + (1 << 20), 0);
    std::fs::write(&raw, &disk).unwrap();
    let r = kiln(&["inspect", raw.to_str().unwrap()]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(
        r.out().contains("(raw)") && r.out().contains("busybox") && r.out().contains("verified"),
        "{r:?}"
    );
    assert!(r.out().contains("elf:busybox"), "{r:?}");

    let qcow2 = dir.join("disk.qcow2");
    let st = Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(&qcow2)
        .status()
        .expect("qemu-img runs: install it with `apt-get install qemu-utils` (.ci/run does)");
    assert!(st.success());
    let r = kiln(&["inspect", qcow2.to_str().unwrap()]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(
        r.out().contains("(qcow2)") && r.out().contains("verified"),
        "{r:?}"
    );

    let nothing = dir.join("nothing.raw");
    std::fs::write(&nothing, vec![0u8; 8192]).unwrap();
    let r = kiln(&["inspect", nothing.to_str().unwrap()]);
    assert_eq!(r.status, 1, "{r:?}");
    assert!(r.stderr.contains("holds no Kiln image"), "{r:?}");
    let _: PathBuf = image;
}
