//! Clocks: the TSC (calibrated at boot) for monotonic time, the CMOS RTC for the wall
//! clock at boot, and the local APIC timer to sleep.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::cpu::{inb, outb, rdtsc};

static TSC_HZ: AtomicU64 = AtomicU64::new(1_000_000_000);
static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);
static APIC_HZ: AtomicU64 = AtomicU64::new(1_000_000_000);
static EPOCH_AT_BOOT_NS: AtomicU64 = AtomicU64::new(0);

/// How the TSC frequency was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calibration {
    /// From CPUID leaf 0x15/0x16.
    Cpuid,
    /// Measured against the i8254 PIT.
    Pit,
    /// Nothing worked: 1 GHz assumed.
    Assumed,
}

const PIT_HZ: u64 = 1_193_182;

fn pit_read_ch0() -> u16 {
    // SAFETY: the i8254 PIT's command and channel-0 ports: latching and reading the count
    // only affects the PIT, which has no DMA.
    unsafe {
        outb(0x43, 0x00); // latch channel 0
        let lo = inb(0x40) as u16;
        let hi = inb(0x40) as u16;
        hi << 8 | lo
    }
}

/// Measures TSC ticks over `pit_ticks` PIT ticks; `None` when the PIT does not count.
fn calibrate_pit(pit_ticks: u16) -> Option<u64> {
    // SAFETY: programs PIT channel 0 (its interrupt line is masked at the PIC by
    // `apic::init`); the PIT has no DMA.
    unsafe {
        outb(0x43, 0x34); // channel 0, lo/hi, mode 2
        outb(0x40, 0xff);
        outb(0x40, 0xff);
    }
    let start = pit_read_ch0();
    let t0 = rdtsc();
    let mut spins = 0u64;
    loop {
        let now = pit_read_ch0();
        let elapsed = start.wrapping_sub(now);
        if elapsed >= pit_ticks && elapsed < 0x8000 {
            let t1 = rdtsc();
            return Some((t1 - t0) * PIT_HZ / elapsed as u64);
        }
        spins += 1;
        if spins > 50_000_000 {
            return None;
        }
    }
}

fn tsc_from_cpuid() -> Option<u64> {
    let max = crate::cpu::cpuid(0, 0).eax;
    if max >= 0x15 {
        let r = crate::cpu::cpuid(0x15, 0);
        if r.eax != 0 && r.ebx != 0 && r.ecx != 0 {
            return Some(r.ecx as u64 * r.ebx as u64 / r.eax as u64);
        }
    }
    None
}

/// Calibrates the TSC and the APIC timer and reads the RTC. Call once at boot.
pub fn init() -> Calibration {
    TSC_AT_BOOT.store(rdtsc(), Ordering::Relaxed);
    // The APIC timer counts down alongside whichever measurement runs, so both clocks are
    // calibrated in one wait.
    crate::apic::arm_timer(u32::MAX);
    crate::apic::write_lvt_masked();
    let c0 = crate::apic::timer_count();
    let t0 = rdtsc();
    let (hz, how) = if let Some(hz) = tsc_from_cpuid() {
        // Still wait ~1 ms of TSC time for the APIC measurement.
        while rdtsc() - t0 < hz / 1000 {
            core::hint::spin_loop();
        }
        (hz, Calibration::Cpuid)
    } else if let Some(hz) = calibrate_pit(1193) {
        // 1193 PIT ticks = 1 ms.
        (hz, Calibration::Pit)
    } else {
        (1_000_000_000, Calibration::Assumed)
    };
    let c1 = crate::apic::timer_count();
    let t1 = rdtsc();
    if hz > 0 {
        TSC_HZ.store(hz, Ordering::Relaxed);
    }
    let ticks = c0.wrapping_sub(c1) as u64;
    if ticks > 0 && t1 > t0 {
        APIC_HZ.store(ticks * hz / (t1 - t0), Ordering::Relaxed);
    }
    crate::apic::arm_timer(0);
    EPOCH_AT_BOOT_NS.store(rtc_epoch_seconds() * 1_000_000_000, Ordering::Relaxed);
    how
}

/// TSC frequency in Hz.
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Nanoseconds since boot.
pub fn monotonic_ns() -> u64 {
    let ticks = rdtsc().wrapping_sub(TSC_AT_BOOT.load(Ordering::Relaxed));
    (ticks as u128 * 1_000_000_000 / tsc_hz() as u128) as u64
}

/// Nanoseconds since the Unix epoch.
pub fn realtime_ns() -> u64 {
    EPOCH_AT_BOOT_NS.load(Ordering::Relaxed) + monotonic_ns()
}

/// Halts until `monotonic_ns()` reaches `deadline`, waking on the APIC timer.
pub fn sleep_until(deadline: u64) {
    loop {
        let now = monotonic_ns();
        if now >= deadline {
            return;
        }
        fire_by(deadline.min(now + 1_000_000_000));
        crate::cpu::wait_for_interrupt();
    }
}

fn cmos(reg: u8) -> u8 {
    // SAFETY: the CMOS index and data ports; selecting and reading a register only reads
    // the clock (bit 7 of the index, the NMI mask, stays clear for the registers read here).
    unsafe {
        outb(0x70, reg);
        inb(0x71)
    }
}

/// Reads the CMOS real-time clock as seconds since the Unix epoch (0 if it looks absent).
fn rtc_epoch_seconds() -> u64 {
    // Wait for no update in progress, then read until two reads agree.
    let read = || {
        let mut spins = 0;
        while cmos(0x0A) & 0x80 != 0 && spins < 1_000_000 {
            spins += 1;
        }
        [
            cmos(0x00),
            cmos(0x02),
            cmos(0x04),
            cmos(0x07),
            cmos(0x08),
            cmos(0x09),
            cmos(0x32),
        ]
    };
    let mut r = read();
    for _ in 0..5 {
        let again = read();
        if again == r {
            break;
        }
        r = again;
    }
    let status_b = cmos(0x0B);
    let bcd = status_b & 0x04 == 0;
    let conv = |v: u8| if bcd { (v & 0x0f) + (v >> 4) * 10 } else { v };
    let (sec, min) = (conv(r[0]) as u64, conv(r[1]) as u64);
    let hour_raw = r[2];
    let mut hour = conv(hour_raw & 0x7f) as u64;
    if status_b & 0x02 == 0 && hour_raw & 0x80 != 0 {
        hour = (hour % 12) + 12; // 12-hour mode, PM
    }
    let (day, month, year2) = (conv(r[3]) as u64, conv(r[4]) as u64, conv(r[5]) as u64);
    let century = match conv(r[6]) as u64 {
        c @ 19..=21 => c,
        _ => 20,
    };
    let year = century * 100 + year2;
    if !(1..=12).contains(&month) || day == 0 {
        return 0;
    }
    days_from_civil(year as i64, month as i64, day as i64) as u64 * 86400
        + hour * 3600
        + min * 60
        + sec
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// When the APIC timer is armed to fire (monotonic ns; 0 when not armed).
static ARMED_AT: AtomicU64 = AtomicU64::new(0);

/// Makes sure the timer fires no later than `deadline` (monotonic ns). Keeps the current
/// arming when it already fires in time, so the common case costs no register writes
/// (each is a trap to the hypervisor). Firing early is harmless: the handler re-arms.
pub fn fire_by(deadline: u64) {
    let now = monotonic_ns();
    let armed = ARMED_AT.load(Ordering::Relaxed);
    if armed != 0 && armed > now && armed <= deadline {
        return;
    }
    let ns = deadline.saturating_sub(now).max(1);
    let ticks = (ns as u128 * APIC_HZ.load(Ordering::Relaxed) as u128 / 1_000_000_000) as u64;
    crate::apic::arm_timer(ticks.clamp(1, u32::MAX as u64) as u32);
    ARMED_AT.store(now + ns, Ordering::Relaxed);
}

/// Records that the timer fired (called by the interrupt entry).
pub fn timer_fired() {
    ARMED_AT.store(0, Ordering::Relaxed);
}

/// Arms the APIC timer to fire `ns` nanoseconds from now (0 disarms it).
pub fn arm_timer_in(ns: u64) {
    if ns == 0 {
        crate::apic::arm_timer(0);
        ARMED_AT.store(0, Ordering::Relaxed);
        return;
    }
    ARMED_AT.store(monotonic_ns() + ns, Ordering::Relaxed);
    let ticks = (ns as u128 * APIC_HZ.load(Ordering::Relaxed) as u128 / 1_000_000_000) as u64;
    crate::apic::arm_timer(ticks.clamp(1, u32::MAX as u64) as u32);
}
