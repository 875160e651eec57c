//! Crash reports name the code: the kernel sends the crashed program's registers and stack,
//! and `run` unwinds them with the program's call-frame information and symbolizes them from
//! its DWARF or symbol table.

use kiln_tests::kiln;

#[test]
fn a_rust_segfault_shows_functions_files_and_lines() {
    let r = kiln(&["run", "--example", "crashy", "--", "segv"]);
    assert_eq!(r.status, 139, "{r:?}");
    let e = &r.stderr;
    assert!(
        e.contains("backtrace of thread 1 (SIGSEGV at address 0x0)"),
        "{r:?}"
    );
    // The crashing function first, with its line; its callers after it, without frame
    // pointers (release build).
    let store = e
        .find("in crashy::store at examples/crashy/src/main.rs:16")
        .expect(e);
    let fill = e
        .find("in crashy::fill at examples/crashy/src/main.rs:2")
        .expect(e);
    let main = e
        .find("in crashy::main at examples/crashy/src/main.rs:")
        .expect(e);
    assert!(store < fill && fill < main, "{e}");
    assert!(e.contains("frames of the Rust runtime left out"), "{e}");
    assert!(e.contains("thread 1: rip 0x"), "{e}");
}

#[test]
fn an_abort_shows_where_it_was_called() {
    let r = kiln(&["run", "--example", "crashy", "--", "abort"]);
    assert_eq!(r.status, 134, "{r:?}");
    assert!(
        r.stderr.contains("backtrace of thread 1 (SIGABRT)"),
        "{r:?}"
    );
    assert!(r.stderr.contains("in std::process::abort"), "{r:?}");
    assert!(r.stderr.contains("crashy::give_up"), "{r:?}");
}

#[test]
fn a_crash_in_another_thread_shows_that_thread_and_the_others() {
    let r = kiln(&["run", "--example", "crashy", "--", "thread"]);
    assert_eq!(r.status, 139, "{r:?}");
    assert!(r.stderr.contains("backtrace of thread 2 (SIGSEGV"), "{r:?}");
    assert!(r.stderr.contains("in crashy::store at"), "{r:?}");
    // The main thread, waiting for the worker, is listed with its registers.
    assert!(r.stderr.contains("thread 1: rip 0x"), "{r:?}");
    assert!(r.stderr.contains("thread 2: rip 0x"), "{r:?}");
}

#[test]
fn a_c_program_without_debug_info_gets_symbol_names() {
    let r = kiln(&["run", "--example", "crash"]);
    assert_eq!(r.status, 139, "{r:?}");
    assert!(r.stderr.contains("  #0  0x"), "{r:?}");
    assert!(r.stderr.contains(" in main+0x"), "{r:?}");
    assert!(r.stderr.contains("in __libc_start_main"), "{r:?}");
}

#[test]
fn a_stripped_third_party_program_gets_addresses() {
    // Debian's busybox is stripped: the report has addresses and registers.
    let r = kiln(&[
        "run",
        "--elf",
        "/bin/busybox",
        "--",
        "sh",
        "-c",
        "kill -SEGV $$",
    ]);
    assert_eq!(r.status, 139, "{r:?}");
    assert!(
        r.stderr.contains("backtrace of thread 1 (SIGSEGV)"),
        "{r:?}"
    );
    assert!(r.stderr.contains("  #0  0x"), "{r:?}");
    assert!(r.stderr.contains("thread 1: rip 0x"), "{r:?}");
}

/// `--core FILE` writes an ELF core file that Debian's gdb opens: the crashing function in
/// `bt`, every thread in `info threads`.
#[test]
fn core_files_open_in_stock_gdb() {
    let dir = kiln_tests::scratch("core");
    let core = dir.join("core.crashy");
    let _ = std::fs::remove_file(&core);
    let r = kiln(&[
        "run",
        "--example",
        "crashy",
        "--core",
        core.to_str().unwrap(),
        "--",
        "thread",
    ]);
    assert_eq!(r.status, 139, "{r:?}");
    let exe = dir.join("core.crashy.elf");
    assert!(
        r.stderr.contains(&format!(
            "open it with: gdb {} {}",
            exe.display(),
            core.display()
        )),
        "{r:?}"
    );
    let gdb = std::process::Command::new("gdb")
        .args([
            "-batch",
            "-nx",
            exe.to_str().unwrap(),
            core.to_str().unwrap(),
        ])
        .args(["-ex", "bt", "-ex", "info threads"])
        .output()
        .expect("gdb runs");
    let text = String::from_utf8_lossy(&gdb.stdout);
    // Line tables name functions without their module, and gdb shows them so.
    assert!(text.contains("store () at crashy/src/main.rs:16"), "{text}");
    assert!(
        text.contains("in fill () at crashy/src/main.rs:2"),
        "{text}"
    );
    assert!(text.contains("LWP 1") && text.contains("LWP 2"), "{text}");
    // A size limit, like `ulimit -c`.
    let small = dir.join("core.small");
    let r = kiln(&[
        "run",
        "--example",
        "crashy",
        "--core",
        small.to_str().unwrap(),
        "--core-limit",
        "1M",
    ]);
    assert_eq!(r.status, 139, "{r:?}");
    let len = std::fs::metadata(&small).unwrap().len();
    assert!(len <= (1 << 20) + 64 * 1024, "{len}");
}

/// A kernel panic's backtrace (return addresses the kernel finds by its frame pointers) is
/// symbolized from the kernel ELF the image was linked with.
#[test]
fn kernel_backtraces_are_symbolized_from_the_kernel() {
    use kiln_abi::record::KernelPanic;
    let image = kiln_tests::build_image("kpanic-hello", &["--example", "hello"]);
    let kernel =
        kiln_tests::root().join("kernel/target/x86_64-unknown-linux-gnu/release/kiln-kernel");
    // The image's kernel is a variant (without the profiler and volumes), found next to the
    // full build's.
    let linked = kiln_toolchain::debug::kernel_of_image(&std::fs::read(&image).unwrap(), &kernel)
        .expect("the image's kernel is in the build tree");
    assert_ne!(linked, kernel, "hello's image has the lean kernel");
    let bytes = std::fs::read(&linked).unwrap();
    let elf = object::File::parse(&*bytes).unwrap();
    use object::{Object, ObjectSymbol};
    let dispatch = elf
        .symbols()
        .find(|s| s.name().is_ok_and(|n| n.contains("syscall8dispatch")))
        .expect("the kernel has kiln_os::syscall::dispatch")
        .address();
    // A return address inside dispatch, as the walk would find it.
    let record = KernelPanic {
        frames: vec![dispatch + 0x10],
    }
    .encode();
    let lines = kiln_toolchain::debug::explain_records(&image, &kernel, &record);
    assert_eq!(lines[0], "kernel backtrace:", "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("kiln_os::syscall::dispatch at ")
                && l.contains("os/src/syscall/mod.rs:")),
        "{lines:?}"
    );
    // An image linked with another kernel gets addresses only, and says so.
    let other = kiln_tests::scratch("kpanic").join("not-the-kernel");
    std::fs::write(&other, b"not an ELF").unwrap();
    let lines = kiln_toolchain::debug::explain_records(&image, &other, &record);
    assert!(
        lines.last().unwrap().contains("addresses only"),
        "{lines:?}"
    );
}
