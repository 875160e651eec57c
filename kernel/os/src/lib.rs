//! Kiln's Linux personality: everything between a Linux system call and the machine.
//!
//! This crate holds no `unsafe` code and touches no hardware: what it needs from the
//! machine (page tables, clocks, consoles, entropy) comes through the traits in [`machine`],
//! which the kernel implements and host tests replace with plain memory.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod acpi;
pub mod elf;
pub mod errno;
pub mod fd;
pub mod fs;
pub mod loader;
pub mod lock_pressure;
pub mod machine;
#[cfg(feature = "net")]
pub mod net;
#[cfg(not(feature = "net"))]
#[path = "no_net.rs"]
pub mod net;
pub mod process;
pub mod procfs;
pub mod sched;
pub mod sigframe;
pub mod small;
pub mod stack;
pub mod syscall;
pub mod sysno;
#[cfg(test)]
pub mod testing;
pub mod trace;
pub mod vdso;
pub mod vm;
