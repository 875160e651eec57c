//! Unmodified third-party static programs: Debian's busybox-static, bash-static, zsh-static.

use kiln_tests::{build_image, run_image};
use std::path::PathBuf;
use std::sync::OnceLock;

fn busybox() -> &'static PathBuf {
    static IMG: OnceLock<PathBuf> = OnceLock::new();
    IMG.get_or_init(|| build_image("busybox", &["--elf", "/bin/busybox"]))
}

#[test]
fn busybox_applets() {
    let r = run_image(busybox(), &["--", "echo", "hi", "there"]);
    assert_eq!((r.status, r.out().as_str()), (0, "hi there\n"), "{r:?}");
    let r = run_image(busybox(), &["--", "cat", "/etc/passwd"]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.out().starts_with("root:x:0:0:"), "{r:?}");
    let r = run_image(busybox(), &["--", "uname", "-sm"]);
    assert_eq!(r.out(), "Linux x86_64\n", "{r:?}");
}

#[test]
fn busybox_shell_uses_tmp_and_exit_status() {
    // Shell builtins only: a unikernel runs one process, so there is no fork.
    let script = "echo one > /tmp/f; echo two >> /tmp/f; \
                  while read l; do echo \"got $l\"; done < /tmp/f; \
                  cd /tmp; pwd; echo $GREETING; exit 9";
    let r = run_image(
        busybox(),
        &["-e", "GREETING=shell", "--", "sh", "-c", script],
    );
    assert_eq!(r.status, 9, "{r:?}");
    assert_eq!(r.out(), "got one\ngot two\n/tmp\nshell\n", "{r:?}");
}

#[test]
fn megabytes_of_output_reach_a_slow_reader_whole_on_both_machines() {
    // stdout and stderr leave through virtio console ports: QEMU holds the kernel's buffer while the
    // runner's FIFO is full, so a reader that starts late loses nothing (port 0, the legacy
    // console, would drop what did not fit).
    use std::io::Read;
    let image = std::fs::read(busybox()).unwrap();
    let caps: Vec<&str> = kiln_abi::caps::find(&image).collect();
    assert!(caps.contains(&kiln_abi::caps::VIRTIO_PORTS), "{caps:?}");
    let expected: String = (1..=200_000).map(|i| format!("{i}\n")).collect();
    for machine in ["microvm", "q35"] {
        let mut child = std::process::Command::new(kiln_tests::xtask_bin())
            .args(["run", "--verbose", "--machine", machine, "--image"])
            .arg(busybox())
            .args(["--", "seq", "1", "200000"])
            .current_dir(kiln_tests::root())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The pipe and the FIFO fill long before the program is done.
        std::thread::sleep(std::time::Duration::from_secs(3));
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(child.wait().unwrap().success(), "{machine}: {err}");
        assert!(!err.contains("no virtio console"), "{machine}: {err}");
        assert_eq!(out.len(), expected.len(), "{machine}");
        assert!(out == expected, "{machine}: the output differs");
    }
    // Standard error takes the same path (its own port): 5 MiB of zeros through /dev/stderr,
    // read late.
    let mut child = std::process::Command::new(kiln_tests::xtask_bin())
        .args(["run", "--image"])
        .arg(busybox())
        .args([
            "--",
            "dd",
            "if=/dev/zero",
            "bs=65536",
            "count=80",
            "of=/dev/stderr",
        ])
        .current_dir(kiln_tests::root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let mut err = Vec::new();
    child.stderr.take().unwrap().read_to_end(&mut err).unwrap();
    assert!(child.wait().unwrap().success());
    let zeros = err.iter().filter(|&&b| b == 0).count();
    assert_eq!(
        zeros,
        80 * 65536,
        "{}",
        String::from_utf8_lossy(&err[err.len().saturating_sub(300)..])
    );
}

#[test]
fn busybox_reports_read_only_root() {
    let r = run_image(busybox(), &["--", "touch", "/etc/new"]);
    assert_ne!(r.status, 0, "{r:?}");
    assert!(r.stderr.contains("Read-only file system"), "{r:?}");
}

#[test]
fn busybox_sleep_and_date() {
    let r = run_image(busybox(), &["--", "sleep", "1"]);
    assert_eq!(r.status, 0, "{r:?}");
    let r = run_image(busybox(), &["--", "date", "+%Y"]);
    let year: u32 = r.out().trim().parse().unwrap_or(0);
    assert!(year >= 2024, "{r:?}");
}

#[test]
fn bash_static_runs_scripts() {
    let img = build_image("bash-static", &["--elf", "/bin/bash-static"]);
    let script = "echo \"x=$X $((6*7))\"; read -r h < /etc/hostname; echo \"host=$h\"; \
                  echo data > /tmp/f; cat_it() { while read -r l; do echo \"[$l]\"; done < \"$1\"; }; \
                  cat_it /tmp/f; exit 3";
    let r = run_image(&img, &["-e", "X=42", "--", "-c", script]);
    assert_eq!(r.status, 3, "{r:?}");
    assert_eq!(r.out(), "x=42 42\nhost=bash-static\n[data]\n", "{r:?}");
}

#[test]
fn zsh_static_runs_scripts() {
    let img = build_image("zsh-static", &["--elf", "/bin/zsh-static"]);
    let r = run_image(&img, &["--", "-c", "print -l ${(s:,:)${:-a,b}}; exit 7"]);
    assert_eq!(r.status, 7, "{r:?}");
    assert_eq!(r.out(), "a\nb\n", "{r:?}");
}

/// A program from crates.io, built with Cargo as its author publishes it (only made static),
/// then booted as an ELF: `hexyl` dumps a file from the root filesystem.
#[test]
fn crates_io_program_runs() {
    let root = kiln_tests::scratch("crates");
    let bin = root.join("bin").join("hexyl");
    if !bin.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args([
                "install",
                "--quiet",
                "--locked",
                "--version",
                "0.17.0",
                "--root",
            ])
            .arg(&root)
            .args(["--target", "x86_64-unknown-linux-gnu", "--config"])
            .arg(r#"target.x86_64-unknown-linux-gnu.rustflags=["-C","target-feature=+crt-static"]"#)
            .arg("hexyl")
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cargo install hexyl failed");
    }
    let data = kiln_tests::scratch("crates").join("data.bin");
    std::fs::write(&data, b"Kiln\x00\x01\x02").unwrap();
    let file = format!("{}:/data.bin", data.display());
    let img = build_image("hexyl", &["--elf", bin.to_str().unwrap(), "--file", &file]);
    let r = run_image(&img, &["--", "--plain", "/data.bin"]);
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(r.out().trim(), "4b 69 6c 6e 00 01 02", "{r:?}");
}
