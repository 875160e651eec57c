//! The one process a Kiln image runs: its memory, files and kernel-side state.

use alloc::string::String;
use alloc::vec::Vec;

use crate::syscall::{proc::ProcState, signal::SignalState};
use crate::{fd::FdTable, fs::Vfs, vm::AddressSpace};

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
    /// Signal dispositions and the process's pending signals (each thread's mask and
    /// pending set are in its [`ThreadState`]).
    pub signals: SignalState,
    /// Armed timerfds, fired by the kernel's loop ([`crate::fd::timerfd::Timers`]).
    pub timers: crate::fd::timerfd::Timers,
    /// Ids, limits, names and what `sysinfo` reports ([`crate::syscall::proc`]).
    pub proc: ProcState,
    /// The thread id the next `clone` gets.
    pub next_tid: u32,
    /// Log every system call.
    pub trace: bool,
    /// Unsupported system calls already logged (each is logged once).
    pub unsupported_logged: crate::small::SmallSet<u64>,
    /// Trace and missing-file state ([`crate::trace`]).
    pub tracer: crate::trace::Tracer,
    /// The network stack and its sockets.
    pub net: crate::net::Net,
    /// The buffer system calls copy through between user memory and kernel objects.
    pub bounce: Bounce,
    /// `flock` locks held by the process's open files.
    pub flocks: crate::syscall::fs::flock::Flocks,
    /// `AF_UNIX` sockets bound to a name (gone when the socket is closed).
    pub unix_names:
        crate::small::SmallMap<crate::fd::UnixName, alloc::sync::Weak<crate::fd::UnixPort>>,
}

impl Process {
    /// A process running the program at `exe_path` in `vm`: standard input, output and
    /// error on the console, `/` as working directory, default signals, ids and limits.
    pub fn new(vm: AddressSpace, vfs: Vfs, exe_path: String) -> Process {
        Process {
            vm,
            files: FdTable::with_console(),
            vfs,
            cwd: String::from("/"),
            exe_path,
            signals: Default::default(),
            timers: Default::default(),
            proc: Default::default(),
            next_tid: 2,
            trace: false,
            unsupported_logged: Default::default(),
            tracer: Default::default(),
            net: Default::default(),
            bounce: Default::default(),
            unix_names: Default::default(),
            flocks: Default::default(),
        }
    }
}

/// A kernel buffer reused by system calls that copy between user memory and a kernel
/// object (reads, writes, socket calls). A fresh zeroed buffer per call cost a `memset`
/// of the whole user buffer (often 8 KiB or more for a few bytes read) on every call.
#[derive(Debug, Default)]
pub struct Bounce(Vec<u8>);

impl Bounce {
    /// Largest buffer kept between calls; larger ones are freed after use.
    const KEEP: usize = 256 * 1024;

    /// A buffer of at least `len` bytes, to use as `&mut buf[..len]`. Its contents are
    /// whatever an earlier call left: callers copy out only what they wrote. Give it back
    /// with [`Bounce::put`].
    pub fn take(&mut self, len: usize) -> Vec<u8> {
        let mut b = core::mem::take(&mut self.0);
        if b.len() < len {
            b.resize(len, 0);
        }
        b
    }

    /// Returns a buffer from [`Bounce::take`] for the next call.
    pub fn put(&mut self, b: Vec<u8>) {
        if b.len() <= Self::KEEP {
            self.0 = b;
        }
    }
}

/// Process id of the program (Linux's first process), also its main thread's id.
pub const PID: i64 = 1;

/// What the Linux personality keeps per thread; the kernel stores it beside the thread's
/// registers and hands the running thread's to system calls through
/// [`crate::machine::Machine::thread`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadState {
    /// Thread id (the main thread's is [`PID`]).
    pub tid: u32,
    /// `set_tid_address` / `CLONE_CHILD_CLEARTID`: zeroed and futex-woken at thread exit.
    pub clear_child_tid: u64,
    /// FS segment base (TLS), set by `arch_prctl` or `CLONE_SETTLS`; the kernel loads it
    /// whenever the thread runs.
    pub fs_base: u64,
    /// GS segment base, set by `arch_prctl`.
    pub gs_base: u64,
    /// `set_robust_list` head and length.
    pub robust_list: (u64, u64),
    /// Mask, pending signals and alternate stack.
    pub signals: crate::syscall::signal::ThreadSignals,
    /// What a blocking `write` or `send` to a pipe or stream socket has queued while it
    /// waits for room for the rest (see [`PartialWrite`]).
    pub partial_write: Option<PartialWrite>,
}

/// A blocking write that queued part of its bytes and waits to queue the rest: Linux's
/// `write` and `send` on a pipe or stream socket return only when every byte is queued
/// (earlier only for a signal or a send timeout, with the count so far). The call runs
/// again after each wake-up; this says how far it got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartialWrite {
    /// The call's number, descriptor, buffer and length: the call it belongs to.
    pub call: [u64; 4],
    /// Bytes queued so far.
    pub done: u64,
}

/// Something a blocked thread waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// A futex word; waiters and wakers match when the address is equal and their bitsets
    /// intersect.
    Futex {
        /// User address of the futex word.
        addr: u64,
        /// `FUTEX_BITSET_MATCH_ANY` for plain waits.
        bitset: u32,
    },
    /// A kernel object (pipe, socket, eventfd...) by id: woken when its state changes.
    Object(u64),
    /// Any change of I/O readiness (poll, select, epoll waiters).
    Io,
}

impl Channel {
    /// Whether a wake-up on `self` reaches a waiter on `waiter`.
    pub fn reaches(&self, waiter: &Channel) -> bool {
        match (self, waiter) {
            (
                Channel::Futex { addr: a, bitset: b },
                Channel::Futex {
                    addr: wa,
                    bitset: wb,
                },
            ) => a == wa && b & wb != 0,
            _ => self == waiter,
        }
    }
}

/// How a system call waits: the thread sleeps until one of `channels` is woken or the
/// deadline passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    /// What to wait for.
    pub channels: Vec<Channel>,
    /// Monotonic deadline in nanoseconds, if any.
    pub deadline: Option<u64>,
    /// The call's result when the deadline passes (e.g. `-ETIMEDOUT`, or 0 for poll).
    pub on_timeout: i64,
    /// The call's result when woken; `None` runs the same call again (a read retries).
    pub on_wake: Option<i64>,
}

/// What the kernel must do after a system call or fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Return this value to the program (negative values are `-errno`).
    Return(i64),
    /// The program exited with this status.
    Exit(u8),
    /// The program was killed by this signal; the kernel reports `128 + signal`.
    Killed(u8),
    /// The calling thread waits (see [`Wait`]).
    Block(Wait),
    /// The calling thread ended (`exit`); the program ends with this status when it was the
    /// last one.
    ThreadExit(u8),
    /// `execve` replaced the program: the calling thread, now the only one, starts it with
    /// fresh registers.
    Exec(Start),
}

/// Where a program that `execve` loaded starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    /// Its first instruction (the dynamic loader's, for a dynamically linked program).
    pub entry: u64,
    /// Its initial stack pointer (at `argc`).
    pub stack_pointer: u64,
    /// What was added to the program's link-time addresses.
    pub load_bias: u64,
}

/// What an `execve` waits on while threads on other CPUs end (see
/// [`crate::machine::Machine::end_other_threads`]). An object id no kernel object gets.
pub const EXEC_CHANNEL: Channel = Channel::Object(u64::MAX);
