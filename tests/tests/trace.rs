//! `run --trace`: one strace-style line per system call of an unmodified program, on stderr
//! or a file of its own, filtered like strace's `-e trace=`, or strace -c's table; and the
//! missing-files hint.

use kiln_tests::{build_image, curl, free_port, kiln, scratch, wait_for_http, Guest};

#[test]
fn every_call_of_hello_in_strace_format_and_stdout_untouched() {
    let r = kiln(&["run", "--example", "hello", "--trace"]);
    assert_eq!(r.status, 0, "{r:?}");
    let e = &r.stderr;
    for line in [
        "openat(AT_FDCWD, \"/etc/hostname\", O_RDONLY|O_CLOEXEC) = 3\n",
        "write(1, \"hello from kiln\\n\", 16) = 16\n",
        "readlink(\"/proc/self/exe\", \"/bin/hello\", 4096) = 10\n",
        "openat(AT_FDCWD, \"/tmp/hello.txt\", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0666) = 3\n",
        "rseq(",
        ") = -1 ENOSYS (Function not implemented)\n",
        "exit_group(0) = ?\n",
    ] {
        assert!(e.contains(line), "missing {line:?} in\n{e}");
    }
    // The program's stdout is exactly what it wrote.
    assert!(
        r.out().starts_with("hello from kiln\narg[0]=/bin/hello\n"),
        "{r:?}"
    );
    assert!(!r.out().contains("write("), "{r:?}");
}

#[test]
fn filters_files_and_summaries() {
    let file = scratch("trace").join("hello.trace");
    let r = kiln(&[
        "run",
        "--example",
        "hello",
        "--trace=file,exit_group",
        "--trace-time",
        "--trace-file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(r.status, 0, "{r:?}");
    let t = std::fs::read_to_string(&file).unwrap();
    assert!(t.contains("openat(AT_FDCWD, \"/etc/hostname\""), "{t}");
    assert!(t.contains("exit_group(0) = ?"), "{t}");
    assert!(!t.contains("write("), "{t}");
    assert!(
        !r.stderr.contains("openat("),
        "the trace went to the file: {r:?}"
    );
    // --trace-time: seconds since boot before, the call's duration after.
    let timed = t.lines().find(|l| l.contains("openat(")).unwrap();
    let (secs, rest) = timed.split_once(' ').unwrap();
    assert!(
        secs.split_once('.').is_some_and(|(_, us)| us.len() == 6),
        "{timed}"
    );
    assert!(rest.ends_with('>') && rest.contains(" <0."), "{timed}");

    let r = kiln(&["run", "--example", "hello", "--trace=summary"]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(
        r.stderr
            .contains("% time     seconds  usecs/call     calls    errors syscall"),
        "{r:?}"
    );
    assert!(r.stderr.lines().any(|l| l.ends_with(" write")), "{r:?}");
    assert!(r.stderr.lines().any(|l| l.ends_with(" total")), "{r:?}");

    let r = kiln(&["run", "--example", "hello", "--trace=opnat"]);
    assert_eq!(r.status, 2, "{r:?}");
    assert!(r.stderr.contains("`opnat`"), "{r:?}");
}

#[test]
fn a_third_party_program_and_the_missing_files_hint() {
    // Debian's busybox looking for a file the image does not have.
    let r = kiln(&[
        "run",
        "--elf",
        "/bin/busybox",
        "--trace=file",
        "--",
        "cat",
        "/etc/ssl/certs/ca-certificates.crt",
    ]);
    assert_eq!(r.status, 1, "{r:?}");
    assert!(
        r.stderr.contains(
            "\"/etc/ssl/certs/ca-certificates.crt\", O_RDONLY) = -1 ENOENT (No such file or directory)"
        ),
        "{r:?}"
    );
    assert!(
        r.stderr.contains("the program looked for /etc/ssl/certs/ca-certificates.crt, which the image lacks: add it with --file"),
        "{r:?}"
    );
    // Without --trace the hint still comes when the program fails.
    let r = kiln(&[
        "run",
        "--elf",
        "/bin/busybox",
        "--",
        "cat",
        "/etc/missing.conf",
    ]);
    assert_eq!(r.status, 1, "{r:?}");
    assert!(r.stderr.contains("looked for /etc/missing.conf"), "{r:?}");
}

#[test]
fn a_server_shows_socket_addresses_and_blocking_accepts() {
    let image = build_image("trace-http", &["--example", "http-hello"]);
    let port = free_port();
    let file = scratch("trace").join("http.trace");
    let fwd = format!("{port}:8080");
    let g = Guest::boot(
        &image,
        &[
            "-p",
            &fwd,
            "--trace=network",
            "--trace-file",
            file.to_str().unwrap(),
        ],
        "listening",
    );
    let url = format!("http://127.0.0.1:{port}/");
    wait_for_http(&url);
    let _ = curl(&format!("{url}quit"));
    assert_eq!(g.wait().0, 0);
    let t = std::fs::read_to_string(&file).unwrap();
    assert!(
        t.contains("bind(3, {sa_family=AF_INET, sin_port=htons(8080), sin_addr=inet_addr(\"0.0.0.0\")}, 16) = 0"),
        "{t}"
    );
    assert!(
        t.contains("socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_IP) = 3"),
        "{t}"
    );
    assert!(t.contains("accept4(3,  <unfinished ...>"), "{t}");
    assert!(
        t.contains("<... accept4 resumed>{sa_family=AF_INET, sin_port=htons("),
        "{t}"
    );
}
