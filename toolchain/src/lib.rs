//! Kiln's host toolchain: everything between a Linux program and a booted unikernel.
//!
//! One program's path through this crate:
//!
//! 1. [`app`] builds the program (Rust via cargo, C via gcc) or takes a prebuilt ELF, and
//!    [`elf`] checks that it is a static x86_64 executable.
//! 2. [`rootfs`] packs `--rootfs`/`--file` and generated `/etc` files into a deterministic tar.
//! 3. [`link`] builds the kernel and writes one PVH ELF: the kernel's segments plus the
//!    payload ([`kiln_abi::payload`]) as one more segment ([`pvh`] writes and checks the ELF).
//! 4. [`qemu`] boots the image with machine settings from `targets/`, streams the program's
//!    stdout/stderr back and turns QEMU's exit code into the program's status.
//!
//! [`image`] strings steps 1-3 together; [`floor`] makes a do-nothing PVH image used by
//! [`bench`] and the KVM probe; [`suite`] runs the whole test suite; [`instance`] runs images
//! in the background under a supervisor (`run -d`, `ps`, `logs`, `stop`, `rm`).

#![warn(missing_docs)]
// One exception, `qemu::signals::tie_to_runner` (a `pre_exec` hook), allows it for itself.
#![deny(unsafe_code)]

pub mod app;
pub mod bench;
pub mod control;
pub mod debug;
pub mod deps;
pub mod disk;
pub mod dynamic;
pub mod efi;
pub mod elf;
pub mod floor;
pub mod fuzz;
pub mod image;
pub mod inspect;
pub mod instance;
pub mod layout;
pub mod link;
pub mod metadata;
pub mod oci;
pub mod options;
pub mod provenance;
pub mod pvh;
pub mod qemu;
pub mod rootfs;
pub mod sources;
pub mod suite;
pub mod trace;

pub use layout::Layout;

/// Prints one of Kiln's own messages on stderr, prefixed with `kiln: `.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {
        eprintln!("kiln: {}", format_args!($($arg)*))
    };
}
