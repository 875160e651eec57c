//! The installable command line: `cargo install --path cli` from a copy of the repository
//! gives `kiln` and `cargo kiln`; with the copy gone, `cargo kiln run` builds and boots a new
//! crate outside the repository, taking its defaults from `[package.metadata.kiln]`, and
//! builds the kernel from the sources the binary carries.

use kiln_tests::{root, scratch};
use std::path::Path;
use std::process::Command;

/// Copies the repository's files (tracked and new, not ignored: no build outputs) to `to`.
fn copy_repository(to: &Path) {
    let list = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(root())
        .output()
        .expect("git runs");
    assert!(list.status.success(), "git ls-files failed");
    for name in list.stdout.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let rel = Path::new(std::str::from_utf8(name).unwrap());
        let src = root().join(rel);
        if !src.is_file() {
            continue; // deleted in the working tree
        }
        let dest = to.join(rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&src, &dest).unwrap();
    }
}

#[test]
fn cargo_kiln_runs_a_new_crate_installed_from_a_copy_that_is_gone() {
    // Outside the repository: `cargo new` inside it would join its workspace.
    let tmp = tempfile::Builder::new()
        .prefix("kiln-install-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    let (copy, prefix) = (dir.join("copy"), dir.join("prefix"));
    // The unpacked sources and the kernel built from them outlive the test (quick reruns).
    let cache = scratch("install-cache");
    copy_repository(&copy);
    // A target directory of its own that outlives the test, so a second run is quick.
    let target = root().join("target/kiln/install-target");
    let install = Command::new("cargo")
        .args(["install", "--quiet", "--debug", "--path"])
        .arg(copy.join("cli"))
        .arg("--root")
        .arg(&prefix)
        .arg("--target-dir")
        .arg(&target)
        // Line tables are enough for a test's backtraces, and build quicker than full debug info.
        .env("CARGO_PROFILE_DEV_DEBUG", "line-tables-only")
        .output()
        .expect("cargo runs");
    assert!(
        install.status.success(),
        "cargo install failed:\n{}",
        String::from_utf8_lossy(&install.stderr)
    );
    std::fs::remove_dir_all(&copy).unwrap();
    for bin in ["kiln", "cargo-kiln"] {
        assert!(
            prefix.join("bin").join(bin).is_file(),
            "{bin} not installed"
        );
    }

    // A new crate, outside the repository, with defaults in its Cargo.toml.
    let krate = dir.join("greeter");
    let new = Command::new("cargo")
        .args(["new", "--quiet", "--vcs", "none"])
        .arg(&krate)
        .output()
        .unwrap();
    assert!(new.status.success());
    std::fs::write(
        krate.join("src/main.rs"),
        r#"fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let who = std::env::var("GREETING").unwrap_or_default();
    println!("{who}, {}!", args.join(" "));
    std::process::exit(3);
}
"#,
    )
    .unwrap();
    let mut manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
    manifest.push_str(
        "\n[package.metadata.kiln]\nargs = [\"from\", \"metadata\"]\nenv = { GREETING = \"Hello\" }\nmemory = \"64M\"\n",
    );
    std::fs::write(krate.join("Cargo.toml"), manifest).unwrap();

    let path = format!(
        "{}:{}",
        prefix.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let kiln = |args: &[&str]| {
        Command::new("cargo")
            .args(args)
            .current_dir(&krate)
            .env("PATH", &path)
            .env("KILN_CACHE_DIR", &cache)
            .output()
            .expect("cargo runs")
    };
    let out = kiln(&["kiln", "run"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Hello, from metadata!\n",
        "{err}"
    );
    assert_eq!(out.status.code(), Some(3), "{err}");
    // The image is the project's, in its own target directory.
    assert!(
        krate.join("target/kiln/images/greeter.elf").is_file(),
        "{err}"
    );
    // The kernel came from the sources the binary carries, unpacked into the cache.
    let sources = cache.join("sources");
    assert!(std::fs::read_dir(&sources).unwrap().any(|e| e
        .unwrap()
        .path()
        .join("kernel/target/x86_64-unknown-linux-gnu/release/kiln-kernel")
        .is_file()));

    // Flags override the metadata; `kiln` is the same command line.
    let out = Command::new(prefix.join("bin/kiln"))
        .args(["run", "-e", "GREETING=Bye", "--", "flags"])
        .current_dir(&krate)
        .env("KILN_CACHE_DIR", &cache)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Bye, flags!\n");
    assert_eq!(out.status.code(), Some(3));
}
