//! Debugging a running or finished image from the host: `run --gdb` ([`gdb`]) and
//! `run --pcap` (QEMU's `filter-dump`, set up in [`crate::qemu::args`]).

pub mod gdb;
