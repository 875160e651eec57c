//! `build-image --format`: every format builds reproducibly, qemu-img agrees on format and
//! size, the GCE archive holds exactly `disk.raw`, and raw, qcow2 and vhd disks boot under
//! OVMF (TCG) to the program's output and exit status, with the run-time command line from
//! the ESP's `\KILN\CMDLINE` and from `run` (fw_cfg), in that order.

use kiln_tests::{kiln, run_image, scratch};
use std::path::{Path, PathBuf};
use std::process::Command;

const GIB: u64 = 1 << 30;

/// `build-image --example hello --format FORMAT -o <scratch>/formats/NAME`.
fn build(format: &str, name: &str) -> PathBuf {
    let out = scratch("formats").join(name);
    let r = kiln(&[
        "build-image",
        "--example",
        "hello",
        "--format",
        format,
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.status, 0, "build-image --format {format} failed: {r:?}");
    assert!(r.out().contains("sha256: "), "{r:?}");
    out
}

fn qemu_img(args: &[&str]) -> (i32, String) {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img runs (build-image installs qemu-utils when missing)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// `qemu-img info` of `path` opened as `fmt`: (format, virtual size).
fn info(path: &Path, fmt: &str) -> (String, u64) {
    let (code, text) = qemu_img(&["info", "--output=json", "-f", fmt, path.to_str().unwrap()]);
    assert_eq!(code, 0, "qemu-img info {}: {text}", path.display());
    let field = |key: &str| {
        let at = text
            .find(&format!("\"{key}\":"))
            .unwrap_or_else(|| panic!("{key} in {text}"));
        text[at + key.len() + 3..]
            .trim_start()
            .split([',', '\n'])
            .next()
            .unwrap()
            .trim()
            .trim_matches('"')
            .to_string()
    };
    (field("format"), field("virtual-size").parse().unwrap())
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

#[test]
fn every_format_is_reproducible_and_well_formed() {
    // Two full builds of each format give identical bytes.
    let mut first = Vec::new();
    for (format, ext) in [
        ("efi", "efi"),
        ("raw", "raw"),
        ("qcow2", "qcow2"),
        ("vmdk", "vmdk"),
        ("vhd", "vhd"),
        ("gce", "tar.gz"),
    ] {
        let a = build(format, &format!("repro-a.{ext}"));
        let b = build(format, &format!("repro-b.{ext}"));
        assert!(
            std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
            "two builds of --format {format} differ: {} {}",
            a.display(),
            b.display()
        );
        first.push((format, a));
    }
    let path = |f: &str| first.iter().find(|(n, _)| *n == f).unwrap().1.clone();

    // The EFI application is a PE32+ (MZ ... PE\0\0, optional header magic 0x20b,
    // subsystem 10).
    let efi = std::fs::read(path("efi")).unwrap();
    assert_eq!(&efi[..2], b"MZ");
    let pe = u32::from_le_bytes(efi[0x3c..0x40].try_into().unwrap()) as usize;
    assert_eq!(&efi[pe..pe + 4], b"PE\0\0");
    assert_eq!(u16::from_le_bytes([efi[pe + 24], efi[pe + 25]]), 0x20b);
    assert_eq!(
        u16::from_le_bytes([efi[pe + 24 + 68], efi[pe + 24 + 69]]),
        10
    );

    // Raw: a GPT disk of whole MiB; qemu-img sees the same size.
    let raw = path("raw");
    let raw_size = size(&raw);
    assert_eq!(raw_size % (1 << 20), 0);
    let bytes = std::fs::read(&raw).unwrap();
    assert_eq!(&bytes[510..512], b"\x55\xaa");
    assert_eq!(&bytes[512..520], b"EFI PART");
    // The ESP's type GUID (C12A7328-F81F-11D2-BA4B-00A0C93EC93B, mixed-endian) at LBA 2.
    assert_eq!(
        &bytes[1024..1040],
        &[
            0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e,
            0xc9, 0x3b
        ]
    );
    // At least 33 MiB of ESP (first and last LBA of entry 1).
    let lba = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    assert!((lba(1024 + 40) - lba(1024 + 32) + 1) * 512 >= 33 << 20);
    assert_eq!(info(&raw, "raw"), ("raw".into(), raw_size));

    // qcow2 and VMDK (streamOptimized): same virtual size, and qemu-img check is clean.
    for (fmt, p) in [("qcow2", path("qcow2")), ("vmdk", path("vmdk"))] {
        assert_eq!(info(&p, fmt), (fmt.to_string(), raw_size), "{fmt}");
        let (code, text) = qemu_img(&["check", "-f", fmt, p.to_str().unwrap()]);
        assert_eq!(code, 0, "qemu-img check {fmt}: {text}");
    }
    let vmdk = std::fs::read(path("vmdk")).unwrap();
    let desc = String::from_utf8_lossy(&vmdk[..vmdk.len().min(64 << 10)]).into_owned();
    assert!(desc.contains("createType=\"streamOptimized\""), "{desc}");

    // Fixed VHD: N MiB + 512 bytes, a "conectix" footer, qemu-img reads the size from it.
    let vhd = path("vhd");
    let vhd_size = size(&vhd);
    assert_eq!(vhd_size % (1 << 20), 512);
    assert_eq!(info(&vhd, "vpc"), ("vpc".into(), vhd_size - 512));
    let v = std::fs::read(&vhd).unwrap();
    assert_eq!(&v[v.len() - 512..][..8], b"conectix");

    // GCE: the archive holds exactly disk.raw, a whole number of GiB, in oldgnu format.
    let gce = path("gce");
    let list = Command::new("tar")
        .args(["-tvzf", gce.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(list.status.success());
    let listing = String::from_utf8_lossy(&list.stdout).into_owned();
    assert_eq!(listing.lines().count(), 1, "{listing}");
    assert!(listing.trim_end().ends_with(" disk.raw"), "{listing}");
    let gz = std::fs::read(&gce).unwrap();
    let mut tarball = Vec::new();
    let ok = Command::new("sh")
        .args(["-c", &format!("gzip -dc {} | head -c 512", gce.display())])
        .output()
        .unwrap();
    tarball.extend_from_slice(&ok.stdout);
    assert!(gz.len() > 100 && tarball.len() == 512);
    assert_eq!(&tarball[257..265], b"ustar  \0", "oldgnu magic");
    assert_eq!(tarball[156], b'S', "a GNU sparse entry");
    let dir = scratch("formats").join("gce-unpacked");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let x = Command::new("tar")
        .args(["-xzSf", gce.to_str().unwrap(), "-C", dir.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(x.success());
    let entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("disk.raw")]);
    let disk = dir.join("disk.raw");
    let disk_size = size(&disk);
    assert!(
        disk_size >= GIB && disk_size.is_multiple_of(GIB),
        "{disk_size}"
    );
    let d = std::fs::read(&disk).unwrap();
    assert_eq!(&d[512..520], b"EFI PART");
    assert_eq!(
        &d[d.len() - 512..][..8],
        b"EFI PART",
        "backup GPT at the end"
    );
    // The ESP is the same as in the raw disk.
    assert_eq!(
        d[1 << 20..(raw_size - (1 << 20)) as usize],
        bytes[1 << 20..(raw_size - (1 << 20)) as usize]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn converting_an_existing_image_matches_building_it() {
    let elf = build("pvh", "conv.elf");
    let direct = build("raw", "conv-direct.raw");
    let converted = scratch("formats").join("conv-converted.raw");
    let r = kiln(&[
        "build-image",
        "--image",
        elf.to_str().unwrap(),
        "--format",
        "raw",
        "-o",
        converted.to_str().unwrap(),
    ]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(std::fs::read(&direct).unwrap() == std::fs::read(&converted).unwrap());
    // A disk is not an input for conversion, and the option clashes with build options.
    let r = kiln(&[
        "build-image",
        "--image",
        direct.to_str().unwrap(),
        "--format",
        "qcow2",
    ]);
    assert_eq!(r.status, 1, "{r:?}");
    assert!(r.stderr.contains("already a disk image"), "{r:?}");
    let r = kiln(&["build-image", "--image", "x.elf", "--env", "A=1"]);
    assert_eq!(r.status, 2, "{r:?}");
    let r = kiln(&["build-image", "--example", "hello", "--format", "iso"]);
    assert_eq!(r.status, 2, "{r:?}");
    assert!(r.stderr.contains("qcow2"), "{r:?}");
}

/// Replaces the example comment line of the ESP's `\KILN\CMDLINE` (in place, same length)
/// with `tokens`, as a cloud user editing the file would.
fn edit_esp_cmdline(disk: &Path, tokens: &str) {
    let mut bytes = std::fs::read(disk).unwrap();
    let line = b"#   kiln.argv=--port,8080 kiln.env=RUST_LOG=info";
    let at = bytes
        .windows(line.len())
        .position(|w| w == line)
        .expect("the CMDLINE template is on the ESP");
    assert!(tokens.len() <= line.len());
    let mut new = tokens.as_bytes().to_vec();
    new.resize(line.len(), b' ');
    bytes[at..at + line.len()].copy_from_slice(&new);
    std::fs::write(disk, bytes).unwrap();
}

#[test]
fn disks_boot_under_ovmf() {
    // Raw, with tokens in \KILN\CMDLINE: its environment applies, and `run`'s arguments
    // (fw_cfg) override its arguments.
    let raw = build("raw", "boot.raw");
    edit_esp_cmdline(&raw, "kiln.env=GREETING=from-esp kiln.argv=--exit,9");
    let r = run_image(&raw, &["--", "--exit", "3"]);
    assert_eq!(r.status, 3, "{r:?}");
    let out = r.out();
    assert!(out.starts_with("hello from kiln\n"), "{r:?}");
    assert!(out.contains("arg[1]=--exit\narg[2]=3\n"), "{r:?}");
    assert!(out.contains("GREETING=from-esp\n"), "{r:?}");
    assert!(
        !r.stderr.contains("BdsDxe"),
        "firmware output leaked: {r:?}"
    );

    // qcow2, with run-time environment.
    let qcow2 = build("qcow2", "boot.qcow2");
    let r = run_image(&qcow2, &["-e", "GREETING=hi", "--", "--exit", "42"]);
    assert_eq!(r.status, 42, "{r:?}");
    assert!(r.out().contains("GREETING=hi\n"), "{r:?}");
    assert!(r.out().starts_with("hello from kiln\n"), "{r:?}");

    // Fixed VHD, the baked-in configuration only.
    let vhd = build("vhd", "boot.vhd");
    let r = run_image(&vhd, &[]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.out().contains("GREETING is not set\n"), "{r:?}");
    assert!(r.stderr.contains("hello: done"), "{r:?}");
}
