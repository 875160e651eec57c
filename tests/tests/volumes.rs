//! Host directories as volumes (`-v HOSTDIR:/GUEST[:ro]`, virtio-9p): files written,
//! renamed and listed in the guest are the host's; `:ro` refuses writes; nothing outside
//! the directory is reachable; large files and a SQLite database survive intact; shared
//! mappings of a volume's files write back to the host.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_tests::{build_image_to, kiln, run_image, scratch, Run};

/// A fresh, empty host directory for one test.
fn fresh(name: &str) -> PathBuf {
    let d = scratch("volumes").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs one busybox applet on `machine` with `volume` mounted.
fn busybox(machine: &str, volume: &str, args: &[&str]) -> Run {
    let mut full = vec![
        "run",
        "--machine",
        machine,
        "--elf",
        "/bin/busybox",
        "--timeout",
        "300",
        "-v",
        volume,
        "--",
    ];
    full.extend_from_slice(args);
    kiln(&full)
}

fn spec(dir: &Path, guest: &str) -> String {
    format!("{}:{guest}", dir.display())
}

fn files_round_trip(machine: &str) {
    let dir = fresh(&format!("files-{machine}"));
    std::fs::write(dir.join("a.txt"), "from the host\n").unwrap();
    let v = spec(&dir, "/data");
    for args in [
        &["cp", "/data/a.txt", "/data/b.txt"][..],
        &["mkdir", "/data/sub"],
        &["mv", "/data/b.txt", "/data/sub/c.txt"],
        &["rm", "/data/a.txt"],
    ] {
        let r = busybox(machine, &v, args);
        assert_eq!(r.status, 0, "{args:?}: {r:?}");
    }
    assert!(!dir.join("a.txt").exists());
    assert_eq!(
        std::fs::read_to_string(dir.join("sub/c.txt")).unwrap(),
        "from the host\n"
    );
    std::fs::write(dir.join("new"), "x").unwrap();
    let r = busybox(machine, &v, &["ls", "-l", "/data", "/data/sub"]);
    assert_eq!(r.status, 0, "{r:?}");
    let out = r.out();
    assert!(out.contains("c.txt") && out.contains("new"), "{r:?}");
    // Permissions as the host has them.
    assert!(out.contains("-rw-r--r--"), "{r:?}");
    assert!(out.contains("drwxr-xr-x"), "{r:?}");
}

#[test]
fn files_round_trip_microvm() {
    files_round_trip("microvm");
}

#[test]
fn files_round_trip_q35() {
    files_round_trip("q35");
}

#[test]
fn read_only_volume_refuses_writes() {
    let dir = fresh("ro");
    std::fs::write(dir.join("keep"), "kept").unwrap();
    let v = format!("{}:/data:ro", dir.display());
    for args in [
        &["touch", "/data/x"][..],
        &["rm", "/data/keep"],
        &["mkdir", "/data/d"],
        &["mv", "/data/keep", "/data/moved"],
    ] {
        let r = busybox("microvm", &v, args);
        assert_ne!(r.status, 0, "{args:?}: {r:?}");
        assert!(
            r.stderr.contains("Read-only file system"),
            "{args:?}: {r:?}"
        );
    }
    let r = busybox("microvm", &v, &["cat", "/data/keep"]);
    assert_eq!(r.out(), "kept", "{r:?}");
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn nothing_outside_the_volume_is_reachable() {
    let top = fresh("confine");
    let vol = top.join("vol");
    std::fs::create_dir(&vol).unwrap();
    let secret = top.join("secret.txt");
    std::fs::write(&secret, "SECRET").unwrap();
    std::os::unix::fs::symlink("../secret.txt", vol.join("rel")).unwrap();
    std::os::unix::fs::symlink(&secret, vol.join("abs")).unwrap();
    let v = spec(&vol, "/data");
    for path in ["/data/../secret.txt", "/data/rel", "/data/abs"] {
        let r = busybox("microvm", &v, &["cat", path]);
        assert_ne!(r.status, 0, "{path}: {r:?}");
        assert!(!r.out().contains("SECRET"), "{path}: {r:?}");
    }
    // The links are there, as links, with their targets.
    let r = busybox("microvm", &v, &["readlink", "/data/rel"]);
    assert_eq!(r.out(), "../secret.txt\n", "{r:?}");
}

#[test]
fn large_file_round_trips() {
    let dir = fresh("large");
    let data: Vec<u8> = (0..20u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.join("big"), &data).unwrap();
    let v = spec(&dir, "/data");
    let r = busybox("microvm", &v, &["cp", "/data/big", "/data/copy"]);
    assert_eq!(r.status, 0, "{r:?}");
    let sum = |p: &Path| {
        let out = Command::new("sha256sum").arg(p).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(sum(&dir.join("copy")), sum(&dir.join("big")));
    let r = busybox("microvm", &v, &["sha256sum", "/data/copy"]);
    assert!(r.out().starts_with(&sum(&dir.join("big"))), "{r:?}");
}

fn sqlite(machine: &str) {
    let dir = fresh(&format!("sqlite-{machine}"));
    let v = spec(&dir, "/db");
    let run = |rows: &[&str]| {
        let mut full = vec![
            "run",
            "--machine",
            machine,
            "--example",
            "sqlite-rows",
            "--timeout",
            "300",
            "-v",
            &v,
            "--",
            "/db/rows.db",
        ];
        full.extend_from_slice(rows);
        kiln(&full)
    };
    let r = run(&["one", "two", "three"]);
    assert_eq!(r.out(), "rows: 3\n", "{r:?}");
    let r = run(&["four"]);
    assert_eq!(r.out(), "rows: 4\n", "{r:?}");
    let out = Command::new("sqlite3")
        .arg(dir.join("rows.db"))
        .arg("PRAGMA integrity_check; SELECT group_concat(text) FROM rows;")
        .output()
        .expect("sqlite3 runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok\none,two,three,four\n",
        "{out:?}"
    );
}

#[test]
fn sqlite_database_survives_runs_microvm() {
    sqlite("microvm");
}

#[test]
fn sqlite_database_survives_runs_q35() {
    sqlite("q35");
}

const SHARED_C: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int fd = open("/data/f", O_RDWR);
    char *p = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (fd < 0 || p == MAP_FAILED) { perror("map"); return 1; }
    if (argc > 1) {
        /* What was written before a crash reaches the file too, as Linux's page cache
           keeps it. */
        memcpy(p + 200, "crash", 5);
        *(volatile int *)16 = 1;
    }
    memcpy(p, "hello", 5);
    memcpy(p + 4096, "world", 5);
    /* The file and the mapping are one: a write through the descriptor shows in the
       mapping, one through the mapping in a read. */
    pwrite(fd, "X", 1, 100);
    char b[5] = {0};
    pread(fd, b, 5, 4096);
    printf("%c %.5s\n", p[100], b);
    return 0; /* no msync, no munmap: the end of the program writes the pages back */
}
"#;

#[test]
fn shared_mappings_of_volume_files_reach_the_host() {
    let dir = fresh("shared-map");
    std::fs::write(dir.join("f"), vec![b'a'; 8192]).unwrap();
    let exe = kiln_tests::gcc(&dir, "shared", SHARED_C, &["-static", "-O1"]);
    let v = spec(&dir, "/data");
    let r = kiln(&["run", "--elf", exe.to_str().unwrap(), "-v", &v]);
    assert_eq!((r.status, r.out().as_str()), (0, "X world\n"), "{r:?}");
    let f = std::fs::read(dir.join("f")).unwrap();
    assert_eq!(f.len(), 8192);
    assert_eq!(&f[..5], b"hello");
    assert_eq!(f[100], b'X');
    assert_eq!(&f[4096..4101], b"world");
    assert!(f[5..100].iter().all(|&c| c == b'a'));
    let r = kiln(&[
        "run",
        "--elf",
        exe.to_str().unwrap(),
        "-v",
        &v,
        "--",
        "crash",
    ]);
    assert_eq!(r.status, 139, "{r:?}");
    let f = std::fs::read(dir.join("f")).unwrap();
    assert_eq!(&f[200..205], b"crash");

    // Debian's sqlite3 in WAL mode, whose index (`-shm`) is such a mapping: the database
    // stays readable, in the guest and on the host.
    let db = dir.join("wal.db");
    let out = Command::new("sqlite3")
        .arg(&db)
        .arg("CREATE TABLE t(v); INSERT INTO t VALUES ('host');")
        .output()
        .expect("sqlite3 runs");
    assert!(out.status.success(), "{out:?}");
    let sqlite = |sql: &str| {
        kiln(&[
            "run",
            "--elf",
            "/usr/bin/sqlite3",
            "-v",
            &v,
            "--",
            "/data/wal.db",
            sql,
        ])
    };
    let r = sqlite(
        "PRAGMA journal_mode=WAL; INSERT INTO t VALUES ('guest'); SELECT group_concat(v) FROM t;",
    );
    assert_eq!(
        (r.status, r.out().as_str()),
        (0, "wal\nhost,guest\n"),
        "{r:?}"
    );
    let r = sqlite("SELECT count(*) FROM t;");
    assert_eq!((r.status, r.out().as_str()), (0, "2\n"), "{r:?}");
    let out = Command::new("sqlite3")
        .arg(&db)
        .arg("PRAGMA integrity_check; SELECT group_concat(v) FROM t;")
        .output()
        .expect("sqlite3 runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok\nhost,guest\n",
        "{out:?}"
    );
}

#[test]
fn statfs_on_a_volume_gives_the_hosts_figures() {
    // `df` and programs checking for free space before they write read these. QEMU's 9p
    // server reports the host's size in blocks of its own size: compare bytes.
    let dir = fresh("statfs");
    let bytes = |text: &str| -> u64 {
        let v: Vec<u64> = text
            .split_whitespace()
            .map(|w| w.parse().unwrap())
            .collect();
        v[0] * v[1]
    };
    let host = Command::new("stat")
        .args(["-f", "-c", "%b %S"])
        .arg(&dir)
        .output()
        .expect("stat runs");
    let host = bytes(&String::from_utf8_lossy(&host.stdout));
    let r = busybox(
        "microvm",
        &spec(&dir, "/data"),
        &["stat", "-f", "-c", "%b %S", "/data"],
    );
    assert_eq!(r.status, 0, "{r:?}");
    let guest = bytes(&r.out());
    assert!(
        guest.abs_diff(host) < host / 100,
        "guest {guest} bytes, host {host}: {r:?}"
    );
}

#[test]
fn bad_volumes_are_refused_with_125() {
    let dir = fresh("bad");
    for (v, want) in [
        (
            "/nonexistent/kiln:/data".to_string(),
            "bind source path does not exist",
        ),
        (format!("{}:data", dir.display()), "must be absolute"),
        (format!("{}:/", dir.display()), "destination can't be '/'"),
        (format!("{}:/d:rx", dir.display()), "invalid mode: rx"),
    ] {
        let r = kiln(&["run", "--elf", "/bin/busybox", "-v", &v, "--", "true"]);
        assert_eq!(r.status, 125, "{v}: {r:?}");
        assert!(r.stderr.contains(want), "{v}: {r:?}");
    }
}

#[test]
fn volumes_are_in_the_kernel_only_when_asked_for() {
    let dir = fresh("choice");
    std::fs::write(dir.join("a.txt"), "from the host\n").unwrap();
    let images = scratch("volumes");
    let (lean, with) = (images.join("lean.elf"), images.join("with.elf"));
    let busybox = ["--elf", "/bin/busybox"];
    let r = build_image_to(&lean, &busybox);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(
        r.stderr
            .contains("without host volumes (--with-volumes, or run -v, puts them in)"),
        "{r:?}"
    );
    let v = spec(&dir, "/data");
    let cat = |image: &Path| run_image(image, &["-v", &v, "--", "cat", "/data/a.txt"]);
    // Without them, the kernel refuses the volume at boot and says how to get one with them.
    let r = cat(&lean);
    assert_ne!(r.status, 0, "{r:?}");
    assert!(
        r.stderr.contains("this kernel was built without volumes")
            && r.stderr.contains("--with-volumes"),
        "{r:?}"
    );
    let r = build_image_to(&with, &[&busybox[..], &["--with-volumes"]].concat());
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.stderr.contains("with host volumes (asked for)"), "{r:?}");
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert!(
        size(&with) > size(&lean) + 16_000,
        "{} vs {}",
        size(&with),
        size(&lean)
    );
    let r = cat(&with);
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(r.out(), "from the host\n", "{r:?}");
}
