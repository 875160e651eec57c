//! Boot real images in real QEMU and check what the program did: output, arguments,
//! environment, files, exit status.

use kiln_tests::{build_image, kiln, run_image, scratch};
use std::path::PathBuf;
use std::sync::OnceLock;

/// The hello image with a baked-in file, argument and variable, built once.
fn hello() -> &'static PathBuf {
    static IMG: OnceLock<PathBuf> = OnceLock::new();
    IMG.get_or_init(|| {
        let data = scratch("hello-data").join("motd.txt");
        std::fs::write(&data, "baked into the rootfs\n").unwrap();
        let file = format!("{}:/data/motd.txt", data.display());
        build_image(
            "hello",
            &[
                "--example",
                "hello",
                "--file",
                &file,
                "--env",
                "GREETING=baked",
                "--arg",
                "--cat",
                "--arg",
                "/data/motd.txt",
            ],
        )
    })
}

#[test]
fn hello_prints_args_env_rootfs_file_and_tmp() {
    let r = run_image(hello(), &[]);
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(
        r.out(),
        "hello from kiln\narg[0]=/bin/hello\narg[1]=--cat\narg[2]=/data/motd.txt\n\
         GREETING=baked\nfile /data/motd.txt: baked into the rootfs\ntmp: ok\n"
    );
    // The program's stderr, and no kernel chatter.
    assert_eq!(r.stderr.trim_end(), "hello: done", "{r:?}");
}

#[test]
fn runtime_args_and_env_override_baked_ones() {
    let r = run_image(
        hello(),
        &[
            "-e",
            "GREETING=at run time",
            "--",
            "--cat",
            "/etc/hostname",
            "x y",
        ],
    );
    assert_eq!(r.status, 0, "{r:?}");
    let out = r.out();
    assert!(
        out.contains("arg[1]=--cat\narg[2]=/etc/hostname\narg[3]=x y\n"),
        "{r:?}"
    );
    assert!(out.contains("GREETING=at run time\n"), "{r:?}");
    assert!(out.contains("file /etc/hostname: hello\n"), "{r:?}");
}

#[test]
fn empty_arguments_reach_the_program() {
    // One empty argument once read back as no arguments at all (see abi::cmdline).
    for (args, want) in [
        (&[""][..], "arg[1]=\nGREETING"),
        (&["", ""][..], "arg[1]=\narg[2]=\nGREETING"),
    ] {
        let mut a = vec!["--"];
        a.extend_from_slice(args);
        let r = run_image(hello(), &a);
        assert_eq!(r.status, 0, "{r:?}");
        assert!(
            r.out().contains(&format!("arg[0]=/bin/hello\n{want}")),
            "{r:?}"
        );
    }
}

#[test]
fn exit_status_is_the_programs() {
    for status in ["0", "3", "42", "200", "255"] {
        let r = run_image(hello(), &["-e", &format!("EXIT_STATUS={status}")]);
        assert_eq!(r.status.to_string(), status, "{r:?}");
    }
}

#[test]
fn q35_runs_the_same_image() {
    let r = run_image(hello(), &["--machine", "q35", "-e", "EXIT_STATUS=7"]);
    assert_eq!(r.status, 7, "{r:?}");
    assert!(r.out().contains("GREETING=baked\n"), "{r:?}");
}

#[test]
fn hello_runs_in_16_mib() {
    let r = run_image(hello(), &["--memory", "16M"]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.out().contains("tmp: ok\n"), "{r:?}");
}

#[test]
fn hello_runs_with_2_mib_above_its_image() {
    // `build-image` prints the least memory: the image's end plus 2 MiB for the kernel and
    // the program. hello runs in exactly that, and a MiB less is refused with the figure.
    let out = scratch("images").join("hello-min.elf");
    let r = kiln(&[
        "build-image",
        "--example",
        "hello",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.status, 0, "{r:?}");
    let text = format!("{}{}", r.out(), r.stderr);
    let mib: u64 = text
        .split("memory: at least ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no minimum memory: {r:?}"));
    let image_end_mib = std::fs::metadata(&out).unwrap().len() / (1 << 20) + 1;
    assert!(
        mib <= image_end_mib + 3,
        "{mib} MiB for a {image_end_mib} MiB image"
    );
    let r = run_image(&out, &["--memory", &format!("{mib}M")]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.out().contains("tmp: ok\n"), "{r:?}");
    let r = run_image(&out, &["--memory", &format!("{}M", mib - 1)]);
    assert_eq!(r.status, 125, "{r:?}");
    assert!(
        r.stderr
            .contains(&format!("this image needs at least {mib} MiB of memory")),
        "{r:?}"
    );
}

#[test]
fn c_program_runs() {
    let r = kiln(&[
        "run",
        "--example",
        "c-hello",
        "-e",
        "GREETING=from C",
        "--",
        "one",
        "two",
        "--exit",
        "5",
    ]);
    assert_eq!(r.status, 5, "{r:?}");
    let out = r.out();
    assert!(out.contains("argv[1]=one\nargv[2]=two\n"), "{r:?}");
    assert!(out.contains("GREETING=from C\n"), "{r:?}");
}

#[test]
fn builds_are_reproducible() {
    let a = build_image("repro-a", &["--example", "c-hello", "--env", "A=1"]);
    let b = build_image("repro-b", &["--example", "c-hello", "--env", "A=1"]);
    assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
}

#[test]
fn build_image_reports_path_size_and_digest() {
    let out = scratch("images").join("report.elf");
    let r = kiln(&[
        "build-image",
        "--example",
        "c-hello",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.status, 0, "{r:?}");
    let text = format!("{}{}", r.out(), r.stderr);
    assert!(text.contains("report.elf"), "{r:?}");
    let size = std::fs::metadata(&out).unwrap().len().to_string();
    assert!(text.contains(&size), "size missing: {r:?}");
    assert!(text.contains("sha256"), "{r:?}");
}

/// The kernel variant `build-image` chose, from its note.
fn kernel_note(r: &kiln_tests::Run) -> String {
    r.stderr
        .lines()
        .find(|l| l.starts_with("kiln: kernel: "))
        .unwrap_or_else(|| panic!("no kernel note: {r:?}"))
        .to_string()
}

#[test]
fn no_net_leaves_the_network_stack_out_and_hello_still_runs() {
    let out = scratch("images").join("hello-no-net.elf");
    let r = kiln(&[
        "build-image",
        "--example",
        "hello",
        "--no-net",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(
        kernel_note(&r),
        "kiln: kernel: without the network stack (--no-net)"
    );
    // The image is smaller than the one with the network stack.
    let with = std::fs::metadata(build_image("hello-net", &["--example", "hello"]))
        .unwrap()
        .len();
    let without = std::fs::metadata(&out).unwrap().len();
    assert!(without + 40_000 < with, "{without} vs {with}");
    let r = run_image(&out, &["-e", "EXIT_STATUS=4"]);
    assert_eq!(r.status, 4, "{r:?}");
    assert!(r.out().contains("tmp: ok\n"), "{r:?}");
    let r = run_image(&out, &["--machine", "q35"]);
    assert_eq!(r.status, 0, "{r:?}");
    // A port forward to it is allowed, with a note that it reaches nothing.
    let fwd = format!("{}:8080", kiln_tests::free_port());
    let r = run_image(&out, &["-p", &fwd]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(
        r.stderr
            .contains("this image's kernel has no network stack"),
        "{r:?}"
    );
}

#[test]
fn build_image_chooses_the_kernel_by_the_programs_symbols_and_says_so() {
    // c-hello keeps its symbol table and calls no socket function.
    let r = kiln(&["build-image", "--example", "c-hello"]);
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(
        kernel_note(&r),
        "kiln: kernel: without the network stack (the program's symbol table has no socket functions)"
    );
    // The Rust examples are stripped: nothing to tell by, so the stack stays.
    let r = kiln(&["build-image", "--example", "udp-echo"]);
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(
        kernel_note(&r),
        "kiln: kernel: with the network stack (the program has no symbol table to tell; --no-net leaves it out)"
    );
}

#[test]
fn an_internet_socket_without_the_network_stack_is_eafnosupport() {
    let img = build_image("udp-echo-no-net", &["--example", "udp-echo", "--no-net"]);
    let r = run_image(&img, &[]);
    // std's `?` on the bind error: the program ends with status 1 and the error.
    assert_eq!(r.status, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("Address family not supported by protocol"),
        "{r:?}"
    );
}
