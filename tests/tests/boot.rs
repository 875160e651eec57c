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
