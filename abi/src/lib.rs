//! What the Kiln kernel and the host toolchain must agree on, written and tested once.
//!
//! - [`payload`]: the blob the toolchain appends to the kernel image (program, root
//!   filesystem, baked-in configuration) and how the kernel finds it.
//! - [`cmdline`]: how arguments, environment and console routing travel on the kernel
//!   command line.
//! - [`control`]: the control channel `stats` reads a running kernel through.
//! - [`record`]: binary records (crash state) the kernel sends the host on their own channel.
//! - [`regs`]: the general registers of a user thread, shared by the kernel's layers.
//! - [`sysno`]: the x86_64 system-call table; [`trace`]: what a syscall trace record carries
//!   of each call's memory.
//! - [`caps`]: what an image's kernel can do, found in its bytes by the runner.
//! - [`console_control`]: the control messages of a multiport virtio console.
//! - [`exit`]: the exit-status contract between the kernel, QEMU's isa-debug-exit device and
//!   the runner.
//! - [`memory`]: how much guest memory an image needs; [`frame_map`]: the kernel's
//!   free-frame bitmap, kept here where host tests reach it.
//! - [`path`]: path normalisation both sides share.
//! - [`bytes`]: little-endian reads for the parsers on both sides.
//! - [`unwind`]: the stack walker (call-frame information, frame pointers) both sides use.
//! - [`rate`]: converting counts between clocks by a fixed-point factor (the kernel's
//!   clocks), kept here where host tests reach it.
//! - [`vdso`]: the vDSO image the kernel maps into the program (clock reads without system
//!   calls) and the clock page its code reads.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod bytes;
pub mod caps;
pub mod cmdline;
pub mod console_control;
pub mod control;
pub mod exit;
pub mod frame_map;
pub mod memory;
pub mod path;
pub mod payload;
pub mod rate;
pub mod record;
pub mod regs;
pub mod stdin;
pub mod sysno;
pub mod trace;
pub mod unwind;
pub mod vdso;

/// Most virtual CPUs the kernel runs on (`--cpus`); CPUs the firmware lists beyond this
/// stay parked.
pub const MAX_CPUS: usize = 8;
