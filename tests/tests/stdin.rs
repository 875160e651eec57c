//! `run` gives the program the runner's standard input, read only when the program asks:
//! a pipe's data arrives as written (waits, polls and end of input behave as on Linux),
//! Debian's filters work on piped input, and input a program never reads is left for the
//! next reader.

use kiln_tests::{build_image, gcc_static, root, run_command, xtask_bin};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A program that waits on its standard input in each way a program does.
const PROBE_C: &str = r#"
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(void) {
    struct pollfd p = { .fd = 0, .events = POLLIN };
    int r = poll(&p, 1, 300);
    printf("poll before input: %d\n", r);
    fflush(stdout);
    char buf[65536];
    /* The test writes a line only after seeing the line above. */
    ssize_t n = read(0, buf, sizeof buf);
    printf("read: %.*s", (int)n, buf);
    fflush(stdout);
    r = poll(&p, 1, 60000);
    int queued = -1;
    ioctl(0, FIONREAD, &queued);
    printf("poll with input: %d revents %#x queued>0 %d\n", r, p.revents, queued > 0);
    fflush(stdout);
    unsigned long long total = 0, sum = 1469598103934665603ULL;
    while ((n = read(0, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n; i++) sum = (sum ^ (unsigned char)buf[i]) * 1099511628211ULL;
        total += n;
    }
    printf("bytes %llu fnv %016llx last read %zd\n", total, sum, n);
    r = poll(&p, 1, 60000);
    printf("poll at end: %d revents %#x\n", r, p.revents);
    printf("read after end: %zd\n", read(0, buf, sizeof buf));
    return 7;
}
"#;

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(1469598103934665603u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(1099511628211)
    })
}

/// Boots `image` with `extra` run options, its standard input and output piped.
fn spawn_piped(image: &Path, extra: &[&str]) -> Child {
    run_command(image, extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

#[test]
fn a_program_waits_polls_and_reads_to_the_end_of_piped_input() {
    for machine in ["microvm", "q35"] {
        waits_polls_and_reads(machine);
    }
}

/// The probe on `machine`, its input on port 3 of the virtio console.
fn waits_polls_and_reads(machine: &str) {
    let exe = gcc_static("stdin-probe", PROBE_C);
    let img = build_image("stdin-probe", &["--elf", exe.to_str().unwrap()]);
    let mut child = run_command(&img, &["--verbose", "--machine", machine])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut s = String::new();
        BufReader::new(log).read_to_string(&mut s).map(|_| s)
    });
    let mut input = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "poll before input: 0\n", "nothing was written yet");
    input.write_all(b"ping\n").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "read: ping\n");
    // 8 MB, hundreds of chunks, then the end (40 s through the UART this came over
    // before; a second or two now).
    let data: Vec<u8> = (0..8_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    input.write_all(&data).unwrap();
    drop(input);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        rest,
        format!(
            "poll with input: 1 revents 0x1 queued>0 1\nbytes {} fnv {:016x} last read 0\n\
             poll at end: 1 revents 0x10\nread after end: 0\n",
            data.len(),
            fnv(&data)
        )
    );
    assert_eq!(status.code(), Some(7));
    // It came over the virtio console's port (the UART moved about 0.2 MB/s).
    let log = log.join().unwrap().unwrap();
    assert!(
        log.contains("stdin: from port 3 of the virtio console"),
        "{machine}: {log}"
    );
}

#[test]
fn debian_filters_read_piped_input_and_leave_what_they_do_not_read() {
    let img = build_image("stdin-sort", &["--elf", "/usr/bin/sort"]);
    let mut child = spawn_piped(&img, &["--", "-n"]);
    let mut input = child.stdin.take().unwrap();
    let numbers: String = (0..2000)
        .map(|i| format!("{}\n", (i * 7919) % 2000))
        .collect();
    let writer = std::thread::spawn(move || input.write_all(numbers.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let want: String = (0..2000).map(|i| format!("{i}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    assert_eq!(out.status.code(), Some(0));

    // `sort --version` reads nothing: the input is all there for `cat` after it.
    let file = kiln_tests::scratch("stdin-left").join("input");
    std::fs::write(&file, "left for the next reader\n").unwrap();
    let script = format!(
        "{} run --image {} --timeout 240 -- --version >/dev/null && cat",
        xtask_bin().display(),
        img.display()
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .stdin(std::fs::File::open(&file).unwrap())
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "left for the next reader\n"
    );

    // `dd bs=1 count=5` takes five bytes, one read each: the rest is `cat`'s.
    let dd = build_image("stdin-dd", &["--elf", "/usr/bin/dd"]);
    let script = format!(
        "printf 'banana\\napple\\n' | {{ {} run --image {} --timeout 240 -- bs=1 count=5 status=none; echo '|'; cat; }}",
        xtask_bin().display(),
        dd.display()
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "banan|\na\napple\n");
}

#[test]
fn docker_habits_minus_i_is_accepted_and_minus_t_refused_with_the_reason() {
    let img = build_image("stdin-sort", &["--elf", "/usr/bin/sort"]);
    let image = img.to_str().unwrap();
    let mut child = spawn_piped(&img, &["-i", "--", "-r"]);
    let mut input = child.stdin.take().unwrap();
    input.write_all(b"a\nc\nb\n").unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "c\nb\na\n");
    for (args, why) in [
        (vec!["run", "-it", image], "-t: the image has no terminal"),
        (vec!["run", "-d", "-i", image], "-i with -d"),
    ] {
        let r = kiln_tests::kiln(&args);
        assert_eq!(r.status, 125, "{r:?}");
        assert!(r.stderr.contains(why), "{r:?}");
        assert!(!r.stderr.contains("panicked"), "{r:?}");
    }
}
