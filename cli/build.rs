//! Packs the kernel's sources (`kernel/`, `abi/`, and a workspace manifest for `abi`) into
//! a tar archive the binary carries, byte for byte the same for the same sources (sorted
//! entries, zero times and owners), and names it by its SHA-256.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

fn main() {
    let cli = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = cli
        .parent()
        .expect("cli/ sits in the repository")
        .to_path_buf();
    let mut tar = tar::Builder::new(Vec::new());
    tar.mode(tar::HeaderMode::Deterministic);
    for dir in ["abi", "kernel"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
        add_tree(&mut tar, &root, &root.join(dir));
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.toml").display()
    );
    let manifest = workspace_manifest(&std::fs::read_to_string(root.join("Cargo.toml")).unwrap());
    add_file(&mut tar, "Cargo.toml", manifest.as_bytes(), 0o644);
    let bytes = tar.into_inner().expect("an archive in memory");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    std::fs::write(out.join("kiln-sources.tar"), &bytes).expect("OUT_DIR is writable");
    let hash: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!("cargo:rustc-env=KILN_SOURCES_SHA256={hash}");
}

/// The repository's root manifest cut down to a workspace of `abi` alone (the kernel
/// workspace finds `abi` by path, and `abi` takes its version and edition from here).
fn workspace_manifest(root_manifest: &str) -> String {
    let package = root_manifest
        .split("\n[")
        .find(|s| s.starts_with("workspace.package]"))
        .map(|s| format!("[{}", s.trim_end()))
        .expect("the root Cargo.toml has [workspace.package]");
    format!(
        "[workspace]\nresolver = \"2\"\nmembers = [\"abi\"]\nexclude = [\"kernel\"]\n\n{package}\n"
    )
}

fn add_file(tar: &mut tar::Builder<Vec<u8>>, path: &str, body: &[u8], mode: u32) {
    let mut h = tar::Header::new_gnu();
    h.set_size(body.len() as u64);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, path, body)
        .expect("an archive in memory");
}

/// Adds the files under `dir` (sorted; build outputs left out) at their paths from `root`.
fn add_tree(tar: &mut tar::Builder<Vec<u8>>, root: &Path, dir: &Path) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap_or_default();
        if name == "target" || name == ".git" {
            continue;
        }
        if path.is_dir() {
            add_tree(tar, root, &path);
        } else if path.is_file() {
            use std::os::unix::fs::PermissionsExt;
            let exec = std::fs::metadata(&path)
                .map(|m| m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false);
            let body = std::fs::read(&path).expect("a readable source file");
            let rel = path.strip_prefix(root).expect("under the root");
            add_file(
                tar,
                &rel.to_string_lossy(),
                &body,
                if exec { 0o755 } else { 0o644 },
            );
        }
    }
}
