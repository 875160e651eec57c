//! The vDSO: a small shared object the kernel maps into the program, as Linux does, so that
//! reading the clock is not a system call. Its address reaches the program as
//! `AT_SYSINFO_EHDR`; glibc (static or through its dynamic loader), musl and Go's runtime
//! find `__vdso_clock_gettime`, `__vdso_gettimeofday`, `__vdso_time` and
//! `__vdso_clock_getres` (and the weak aliases without the prefix) in it, version
//! `LINUX_2.6`, and call them instead of making the system call.
//!
//! The functions read the TSC and convert it with the kernel's own numbers, which the
//! kernel writes into a read-only *clock page* (Linux's `[vvar]`) mapped just below the
//! image: [`ClockPage`]. They compute exactly what the kernel's `clock_gettime` computes
//! ([`ClockPage::monotonic_ns`], [`ClockPage::realtime_ns`], which the kernel's clock uses
//! too), for the clocks [`served`] lists; any other clock id, and every call while the page
//! holds a zero rate, becomes the real system call.
//!
//! The image is generated here rather than assembled and linked: [`image`] writes the ELF
//! file ([`elf`]) around machine code produced by a few lines of Rust ([`code`]), so it
//! builds on stable Rust alone, and the host tests read it back with ELF parsers. The
//! kernel's build script calls [`image`] and embeds the bytes.

use alloc::vec::Vec;

use crate::rate;

pub mod asm;
pub mod code;
pub mod elf;

#[cfg(test)]
mod tests;

/// Size of a page, and of the clock page.
pub const PAGE_SIZE: u64 = 4096;

/// `CLOCK_REALTIME`.
pub const CLOCK_REALTIME: i32 = 0;
/// `CLOCK_MONOTONIC`.
pub const CLOCK_MONOTONIC: i32 = 1;
/// `CLOCK_MONOTONIC_RAW`.
pub const CLOCK_MONOTONIC_RAW: i32 = 4;
/// `CLOCK_REALTIME_COARSE`.
pub const CLOCK_REALTIME_COARSE: i32 = 5;
/// `CLOCK_MONOTONIC_COARSE`.
pub const CLOCK_MONOTONIC_COARSE: i32 = 6;
/// `CLOCK_BOOTTIME`.
pub const CLOCK_BOOTTIME: i32 = 7;
/// `CLOCK_TAI`.
pub const CLOCK_TAI: i32 = 11;

/// Clock ids from 0 up to this (exclusive) are classified by a bit mask in the code.
pub const CLOCK_ID_LIMIT: u32 = 32;

/// Tick of the coarse clocks (Linux with `HZ=250`): they read the clock rounded down to it.
pub const COARSE_TICK_NS: u64 = 4_000_000;

/// What a clock served in user space counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// The Unix epoch: the wall clock.
    Realtime,
    /// The boot.
    Monotonic,
}

/// How the vDSO reads a clock it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    /// Where the clock counts from.
    pub base: Base,
    /// Rounded down to [`COARSE_TICK_NS`].
    pub coarse: bool,
}

/// How the vDSO reads clock `id`, or `None` when it leaves the clock to the system call
/// (the CPU-time clocks, whose ids are negative or 2 and 3, and unknown ids). `BOOTTIME`
/// is the monotonic clock (the machine never suspends), `TAI` the wall clock (Linux's TAI
/// offset is 0 until NTP sets it), as in the kernel's `clock_gettime`.
pub fn served(id: i32) -> Option<Served> {
    let (base, coarse) = match id {
        CLOCK_REALTIME | CLOCK_TAI => (Base::Realtime, false),
        CLOCK_REALTIME_COARSE => (Base::Realtime, true),
        CLOCK_MONOTONIC | CLOCK_MONOTONIC_RAW | CLOCK_BOOTTIME => (Base::Monotonic, false),
        CLOCK_MONOTONIC_COARSE => (Base::Monotonic, true),
        _ => return None,
    };
    Some(Served { base, coarse })
}

/// What the monotonic clocks (`CLOCK_MONOTONIC`, `_RAW`, `_COARSE`, `CLOCK_BOOTTIME`) read
/// at boot. Not 0: Kiln starts programs within milliseconds of boot, where a Linux system
/// has been up for seconds, and programs take a zero `tv_sec` for "not set yet" (Debian's
/// `ping` paced nothing, sending each probe as soon as the last reply came). POSIX leaves
/// the clock's origin open; `/proc/uptime` and `sysinfo` agree with these clocks.
pub const MONOTONIC_AT_BOOT_NS: u64 = 1_000_000_000;

/// The kernel's clock, as the vDSO reads it from the clock page (little-endian `u64`s at
/// the offsets below). Every field is set before the program's first instruction and never
/// changes afterwards (the TSC is calibrated once, over the boot, and the wall clock cannot
/// be set), so readers need no sequence counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClockPage {
    /// Nanoseconds per TSC tick, 32.32 fixed point ([`rate::factor`]); 0 while not filled
    /// in, which sends every call to the system call.
    pub ns_per_tick: u64,
    /// The TSC at boot: monotonic time 0.
    pub tsc_at_boot: u64,
    /// The wall clock at boot, nanoseconds since the epoch.
    pub epoch_at_boot_ns: u64,
}

impl ClockPage {
    /// Offset of [`ClockPage::ns_per_tick`].
    pub const NS_PER_TICK: usize = 0;
    /// Offset of [`ClockPage::tsc_at_boot`].
    pub const TSC_AT_BOOT: usize = 8;
    /// Offset of [`ClockPage::epoch_at_boot_ns`].
    pub const EPOCH_AT_BOOT_NS: usize = 16;
    /// Bytes used at the start of the page.
    pub const SIZE: usize = 24;

    /// Nanoseconds since boot when the TSC reads `tsc`.
    pub fn since_boot_ns(&self, tsc: u64) -> u64 {
        rate::convert(tsc.wrapping_sub(self.tsc_at_boot), self.ns_per_tick)
    }

    /// The monotonic clocks when the TSC reads `tsc`: [`MONOTONIC_AT_BOOT_NS`] plus the
    /// time since boot.
    pub fn monotonic_ns(&self, tsc: u64) -> u64 {
        self.since_boot_ns(tsc).saturating_add(MONOTONIC_AT_BOOT_NS)
    }

    /// Nanoseconds since the epoch when the TSC reads `tsc`.
    pub fn realtime_ns(&self, tsc: u64) -> u64 {
        self.epoch_at_boot_ns.wrapping_add(self.since_boot_ns(tsc))
    }

    /// The bytes at the start of the page.
    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut b = [0; Self::SIZE];
        b[Self::NS_PER_TICK..][..8].copy_from_slice(&self.ns_per_tick.to_le_bytes());
        b[Self::TSC_AT_BOOT..][..8].copy_from_slice(&self.tsc_at_boot.to_le_bytes());
        b[Self::EPOCH_AT_BOOT_NS..][..8].copy_from_slice(&self.epoch_at_boot_ns.to_le_bytes());
        b
    }
}

/// The vDSO's ELF image, for a mapping with the clock page in the page right below it
/// (the code addresses it relative to itself).
pub fn image() -> Vec<u8> {
    let clock_page = 0u64.wrapping_sub(PAGE_SIZE);
    elf::build(|base| code::assemble(base, clock_page))
}
