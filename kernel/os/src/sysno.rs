//! The x86_64 Linux system-call table, shared with the host's trace decoder: see
//! [`kiln_abi::sysno`].

pub use kiln_abi::sysno::*;
