//! What the Linux personality needs from the machine.
//!
//! The kernel implements these traits on real hardware; host tests implement them on plain
//! memory. Addresses here are user virtual addresses; pages are 4 KiB.

use crate::errno::KResult;
use crate::process::{Channel, ThreadState};

/// Size of a page.
pub const PAGE_SIZE: u64 = 4096;

/// Access rights of a user mapping (the `PROT_*` bits of `mmap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Prot {
    /// `PROT_READ`.
    pub read: bool,
    /// `PROT_WRITE`.
    pub write: bool,
    /// `PROT_EXEC`.
    pub exec: bool,
}

impl Prot {
    /// No access (`PROT_NONE`).
    pub const NONE: Prot = Prot {
        read: false,
        write: false,
        exec: false,
    };
    /// Read and write.
    pub const RW: Prot = Prot {
        read: true,
        write: true,
        exec: false,
    };

    /// Decodes Linux `PROT_*` bits (`PROT_READ` 1, `PROT_WRITE` 2, `PROT_EXEC` 4).
    pub fn from_bits(bits: u64) -> Prot {
        Prot {
            read: bits & 1 != 0,
            write: bits & 2 != 0,
            exec: bits & 4 != 0,
        }
    }
}

/// The user half of the page tables. Every page handed out is backed by a physical frame
/// that the implementation owns and frees on unmap.
pub trait PageTable {
    /// Maps the page at `page` (page-aligned) to a new zeroed frame with `prot`.
    /// Fails with `ENOMEM` when no frame is left. Replaces nothing: the page must be unmapped.
    fn map_zeroed(&mut self, page: u64, prot: Prot) -> KResult<()>;
    /// Maps the page at `page` to the page-aligned, page-sized `bytes` in place (no copy;
    /// the frame is never freed). Returns `Ok(false)` when `bytes` cannot be mapped in place
    /// (the caller then copies). Making such a page writable later gives it a private copy.
    fn map_borrowed(&mut self, page: u64, bytes: &'static [u8], prot: Prot) -> KResult<bool>;
    /// The rights of the page containing `addr`, or `None` when it is not mapped.
    fn query(&self, addr: u64) -> Option<Prot>;
    /// Unmaps every mapped page in `[start, end)` and frees their frames.
    fn unmap_range(&mut self, start: u64, end: u64);
    /// Changes the rights of every mapped page in `[start, end)`. Fails with `ENOMEM` when a
    /// page made writable needs a private copy and no frame is left; the pages before it
    /// may have changed already (they then agree with the new rights).
    fn protect_range(&mut self, start: u64, end: u64, prot: Prot) -> KResult<()>;
    /// Moves the mapped pages of `[from, from + len)` to `[to, to + len)` (both page-aligned,
    /// the target unmapped), keeping their frames and rights. Fails with `ENOMEM` when no
    /// frame is left for the target's page tables; then nothing has moved.
    fn move_range(&mut self, from: u64, to: u64, len: u64) -> KResult<()>;
    /// Whether free memory is down to what the kernel keeps for itself: the program then
    /// gets `ENOMEM` for anything that would grow the kernel's bookkeeping (new regions).
    fn memory_low(&self) -> bool {
        false
    }
    /// Copies from mapped pages, ignoring their rights (the kernel's view).
    /// Panics if a page in the range is not mapped: callers map first.
    fn read(&self, addr: u64, buf: &mut [u8]);
    /// Copies into mapped pages, ignoring their rights (the kernel's view).
    /// Panics if a page in the range is not mapped: callers map first.
    fn write(&mut self, addr: u64, data: &[u8]);
    /// Copies from pages the program may read, looking at each once; `false` at the first
    /// one it may not (not mapped, or not readable), some bytes before it maybe copied.
    fn read_if_readable(&self, addr: u64, buf: &mut [u8]) -> bool;
    /// Copies into pages the program may write (and owns: not shared with the image),
    /// looking at each once; `false` at the first other one, some bytes before it maybe
    /// written.
    fn write_if_writable(&mut self, addr: u64, data: &[u8]) -> bool;
}

/// Clocks, consoles and entropy.
pub trait Machine {
    /// The user page tables.
    fn pages(&mut self) -> &mut dyn PageTable;
    /// Nanoseconds since boot, never going backwards.
    fn monotonic_ns(&self) -> u64;
    /// Nanoseconds since boot: the monotonic clock less what it read at boot
    /// ([`kiln_abi::vdso::MONOTONIC_AT_BOOT_NS`]), for uptime and CPU-time figures.
    fn since_boot_ns(&self) -> u64 {
        self.monotonic_ns()
            .saturating_sub(kiln_abi::vdso::MONOTONIC_AT_BOOT_NS)
    }
    /// Nanoseconds since the Unix epoch (wall clock).
    fn realtime_ns(&self) -> u64;
    /// Waits until `monotonic_ns()` reaches `deadline` (halting the CPU meanwhile).
    fn sleep_until(&mut self, deadline: u64);
    /// Fills `buf` with cryptographically strong random bytes.
    fn fill_random(&mut self, buf: &mut [u8]);
    /// Writes to the program's standard output stream (the console device behind fd 1).
    fn write_stdout(&mut self, data: &[u8]);
    /// Writes to the program's standard error stream (the console device behind fd 2).
    fn write_stderr(&mut self, data: &[u8]);
    /// Writes one line to the kernel log.
    fn log(&mut self, line: core::fmt::Arguments<'_>);
    /// The calling thread's state.
    fn thread(&mut self) -> &mut ThreadState;
    /// How many threads the program has.
    fn thread_count(&self) -> usize;
    /// The running thread's id; `None` while the kernel idles between threads.
    fn running(&self) -> Option<u32>;
    /// The RAM the kernel manages and how much of it is free, in bytes.
    fn ram(&self) -> (u64, u64);
    /// Whether [`Machine::fill_random`]'s bytes come from a hardware source (RDRAND), not a
    /// fallback that only mixes the clock.
    fn random_is_seeded(&self) -> bool;
    /// Runs `f` with at least `bytes` of stack: the kernel's own stack is 64 KiB, and a few
    /// constructors return more than that by value (smoltcp's `Interface`).
    fn with_stack(&mut self, bytes: usize, f: &mut dyn FnMut()) {
        let _ = bytes;
        f()
    }
    /// How long the CPUs have been idle since boot, all of them together (ns).
    fn idle_ns(&self) -> u64 {
        0
    }
    /// The CPU time thread `tid` has used (its user and system time), or with `None` the
    /// whole process's, the ended threads' included; `None` for a thread that does not
    /// exist.
    fn cpu_time(&self, tid: Option<u32>) -> Option<crate::sched::CpuTime>;
    /// The network card's counters: frames and bytes received, frames and bytes sent.
    fn net_counters(&self) -> ((u64, u64), (u64, u64)) {
        ((0, 0), (0, 0))
    }
    /// How many CPUs run the program's threads.
    fn cpus(&self) -> usize {
        1
    }
    /// The CPU running the calling thread (0 to `cpus() - 1`).
    fn cpu(&self) -> usize {
        0
    }
    /// Every thread's id, lowest first.
    fn tids(&self) -> alloc::vec::Vec<u32>;
    /// The state of thread `tid`, running or not.
    fn thread_of(&mut self, tid: u32) -> Option<&mut ThreadState>;
    /// Ends the wait of thread `tid`, if it is blocked in a system call, because a signal
    /// handler must run: the call fails with `EINTR` or starts again
    /// ([`crate::syscall::signal::restart`]). Does nothing to a thread that is not blocked.
    fn interrupt(&mut self, tid: u32);
    /// Starts a thread with `state`, whose registers are the calling thread's at this system
    /// call except `rax = 0` and, when `stack` is not 0, `rsp = stack`. It runs when the
    /// scheduler picks it. `EAGAIN` when no more threads can be made.
    fn spawn_thread(&mut self, state: ThreadState, stack: u64) -> KResult<()>;
    /// Wakes up to `max` threads waiting on a channel that `channel` reaches; returns how
    /// many woke.
    fn wake(&mut self, channel: Channel, max: usize) -> usize;
    /// Wakes up to `wake` waiters of `from` and moves up to `requeue` more to wait on `to`
    /// instead (`FUTEX_CMP_REQUEUE`); returns how many were woken and moved.
    fn requeue(&mut self, from: Channel, to: Channel, wake: usize, requeue: usize) -> usize;
    /// When this system call is being run again after a wake-up, the deadline its first
    /// run asked for (so waits keep their original timeout).
    fn restart_deadline(&self) -> Option<u64>;
    /// The network card, if the machine has one (the stack then runs loopback only).
    fn net_device(&mut self) -> Option<&mut dyn crate::net::NetDevice> {
        None
    }
    /// Sends a binary record ([`kiln_abi::record`]) to the host, when it listens.
    fn record(&mut self, _bytes: &[u8]) {}
    /// Ends every thread but the calling one, which becomes the main thread (its id the
    /// process's), as `execve` does. `false` while some still run on other CPUs: they are
    /// told to end, and each wakes [`crate::process::EXEC_CHANNEL`] when it has.
    fn end_other_threads(&mut self) -> bool;
    /// `execve` replaced the program with `program`, loaded at `load_bias` (crash reports
    /// and the profiler follow it).
    fn program_replaced(&mut self, _program: &'static [u8], _load_bias: u64) {}
    /// `AT_HWCAP` for a program started now (CPUID leaf 1's EDX).
    fn hwcap(&self) -> u64 {
        0
    }
    /// The clock's numbers for the vDSO's clock page; `None` leaves the page empty (every
    /// clock read is then a system call).
    fn clock_page(&self) -> Option<kiln_abi::vdso::ClockPage> {
        None
    }
}
