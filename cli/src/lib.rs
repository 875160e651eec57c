//! The installable command line: `cargo install --path cli` gives `kiln` and `cargo kiln`,
//! the same commands as this repository's `cargo xtask`, usable from any project. The
//! kernel's sources come inside (packed by `build.rs`), so no clone of the repository is
//! needed: the first build unpacks them into the user's cache and builds the kernel there.
#![forbid(unsafe_code)]

use std::process::ExitCode;

/// The kernel's and the ABI crate's sources, as `build.rs` packed them.
const SOURCES: kiln_toolchain::sources::Embedded = kiln_toolchain::sources::Embedded {
    tar: include_bytes!(concat!(env!("OUT_DIR"), "/kiln-sources.tar")),
    sha256: env!("KILN_SOURCES_SHA256"),
};

/// Runs the command line with the sources this binary carries.
pub fn main() -> ExitCode {
    xtask::run_cli(Some(&SOURCES))
}
