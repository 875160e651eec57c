//! The one process a Kiln image runs: its memory, files and kernel-side state.

use alloc::collections::BTreeSet;
use alloc::string::String;

use crate::{fd::FdTable, fs::Vfs, syscall::signal::SignalState, vm::AddressSpace};

/// Everything the kernel keeps about the running program.
pub struct Process {
    /// The program's memory map.
    pub vm: AddressSpace,
    /// Open file descriptors.
    pub files: FdTable,
    /// The file-system tree (read-only root, `/tmp`, `/dev`, `/proc`).
    pub vfs: Vfs,
    /// Current working directory, absolute and normalised.
    pub cwd: String,
    /// Absolute path of the program (`/proc/self/exe`, `AT_EXECFN`).
    pub exe_path: String,
    /// Signal dispositions, mask and alternate stack.
    pub signals: SignalState,
    /// `set_tid_address` pointer.
    pub clear_child_tid: u64,
    /// FS segment base (TLS), set by `arch_prctl`; the kernel loads it on return to user mode.
    pub fs_base: u64,
    /// GS segment base, set by `arch_prctl`.
    pub gs_base: u64,
    /// Log every system call.
    pub trace: bool,
    /// Unsupported system calls already logged (each is logged once).
    pub unsupported_logged: BTreeSet<u64>,
}

/// Process and thread id of the program (Linux's first process).
pub const PID: i64 = 1;

/// What the kernel must do after a system call or fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Return this value to the program (negative values are `-errno`).
    Return(i64),
    /// The program exited with this status.
    Exit(u8),
    /// The program was killed by this signal; the kernel reports `128 + signal`.
    Killed(u8),
}
