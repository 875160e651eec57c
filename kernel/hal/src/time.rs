//! Clocks: the TSC (calibrated at boot) for monotonic time, the CMOS RTC for the wall
//! clock at boot, and the local APIC timer to sleep.

use core::sync::atomic::{AtomicU64, Ordering};

use kiln_abi::rate;
use kiln_abi::vdso::ClockPage;

use crate::cpu::{inb, outb, rdtsc};

static TSC_HZ: AtomicU64 = AtomicU64::new(1_000_000_000);
/// Nanoseconds per TSC tick in 32.32 fixed point, kept with [`TSC_HZ`] by [`set_tsc_hz`]:
/// [`monotonic_ns`] runs on every system call, and a multiplication costs far less than
/// the 128-bit division (a software routine) it replaces.
static NS_PER_TICK: AtomicU64 = AtomicU64::new(1 << 32);
static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);
/// APIC timer ticks per nanosecond in 32.32 fixed point (1 GHz until calibrated; see
/// [`NS_PER_TICK`]): the timer is armed on the way out of most system calls.
static APIC_TICKS_PER_NS: AtomicU64 = AtomicU64::new(1 << 32);
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

/// A calibration started by [`init`] and finished by [`finish_calibration`]: the TSC,
/// the PIT's count and the APIC timer's count at its start.
struct Window {
    tsc: u64,
    pit: u16,
    apic: u32,
    /// TSC ticks per second from CPUID, when it says.
    cpuid_hz: Option<u64>,
}

static WINDOW: spin::Mutex<Option<Window>> = spin::Mutex::new(None);

/// How long [`init`] measures for a first estimate (PIT ticks: about 100 µs).
const PROVISIONAL_PIT_TICKS: u16 = 120;
/// Longest calibration window [`finish_calibration`] trusts: the PIT wraps every 55 ms,
/// and the provisional rate (measured 9% off under TCG) must place the end within the
/// right wrap: 100 ms tolerates a provisional rate 27% off.
const MAX_WINDOW_NS: u64 = 100_000_000;

/// Starts calibrating the TSC and the APIC timer, reads the RTC. Call once at boot.
///
/// Waiting for a precise measurement here would cost the boot its length (1 ms against the
/// PIT). Instead the PIT (programmed to count through all 65,536 values) and the APIC timer
/// keep counting while the kernel boots, and [`finish_calibration`], just before the
/// program starts, measures the TSC and the APIC timer over the whole boot: no waiting,
/// and a window ten times longer. Until then `monotonic_ns` runs on a 100 µs estimate.
pub fn init() -> Calibration {
    TSC_AT_BOOT.store(rdtsc(), Ordering::Relaxed);
    // The APIC timer counts down alongside, so both clocks are calibrated in one window.
    crate::apic::arm_timer(u32::MAX);
    crate::apic::write_lvt_masked();
    let cpuid_hz = tsc_from_cpuid();
    // SAFETY: programs PIT channel 0 (its interrupt line is masked at the PIC by
    // `apic::init`); the PIT has no DMA. A reload value of 0 counts 65,536 ticks.
    unsafe {
        outb(0x43, 0x34); // channel 0, lo/hi, mode 2
        outb(0x40, 0x00);
        outb(0x40, 0x00);
    }
    let window = Window {
        apic: crate::apic::timer_count(),
        pit: pit_read_ch0(),
        tsc: rdtsc(),
        cpuid_hz,
    };
    let how = match cpuid_hz {
        Some(hz) => {
            set_tsc_hz(hz);
            Calibration::Cpuid
        }
        None => match pit_estimate(&window, PROVISIONAL_PIT_TICKS) {
            Some(hz) => {
                set_tsc_hz(hz);
                Calibration::Pit
            }
            None => Calibration::Assumed,
        },
    };
    *WINDOW.lock() = Some(window);
    EPOCH_AT_BOOT_NS.store(rtc_epoch_seconds() * 1_000_000_000, Ordering::Relaxed);
    how
}

/// TSC ticks per second measured from `w`'s start until `ticks` PIT ticks have passed;
/// `None` when the PIT does not count.
fn pit_estimate(w: &Window, ticks: u16) -> Option<u64> {
    let mut spins = 0u64;
    loop {
        let elapsed = w.pit.wrapping_sub(pit_read_ch0());
        if elapsed >= ticks && elapsed < 0x8000 {
            let t = rdtsc();
            return Some((t - w.tsc) * PIT_HZ / elapsed as u64);
        }
        spins += 1;
        if spins > 50_000_000 {
            return None;
        }
    }
}

/// Finishes the calibration [`init`] started: the TSC's rate over the boot so far against
/// the PIT (the provisional rate tells how many times the PIT's 55 ms count wrapped), and
/// the APIC timer's against the TSC. Call once, before the program starts (nothing may
/// arm the APIC timer in between). A window too long to place among the PIT's wraps
/// (over 100 ms: a very slow boot) is measured again for 1 ms instead.
pub fn finish_calibration() {
    let Some(mut w) = WINDOW.lock().take() else {
        return;
    };
    let pit = pit_read_ch0();
    let t = rdtsc();
    let apic = crate::apic::timer_count();
    let (start_tsc, start_apic) = (w.tsc, w.apic);
    let provisional = TSC_HZ.load(Ordering::Relaxed).max(1);
    let elapsed_tsc = t.saturating_sub(start_tsc);
    let elapsed_ns = elapsed_tsc as u128 * 1_000_000_000 / provisional as u128;
    let hz = match w.cpuid_hz {
        Some(hz) => Some(hz),
        None if elapsed_ns <= MAX_WINDOW_NS as u128 => {
            // Whole PIT periods (65,536 ticks) that passed, from the provisional rate.
            let estimate = elapsed_tsc as u128 * PIT_HZ as u128 / provisional as u128;
            let within = w.pit.wrapping_sub(pit) as u128;
            let wraps = (estimate.saturating_sub(within) + 32_768) / 65_536;
            let ticks = within + wraps * 65_536;
            (ticks > 0).then(|| (elapsed_tsc as u128 * PIT_HZ as u128 / ticks) as u64)
        }
        None => {
            w.pit = pit;
            w.tsc = t;
            pit_estimate(&w, 1193)
        }
    };
    if let Some(hz) = hz.filter(|&h| h > 0) {
        set_tsc_hz(hz);
        // The APIC timer over the same window, against the TSC.
        let apic_ticks = start_apic.wrapping_sub(apic) as u128;
        if apic_ticks > 0 && elapsed_tsc > 0 {
            let apic_hz = (apic_ticks * hz as u128 / elapsed_tsc as u128) as u64;
            APIC_TICKS_PER_NS.store(rate::factor(1_000_000_000, apic_hz), Ordering::Relaxed);
        }
    }
    arm_timer_in(0);
}

/// Sets the TSC frequency, and the factor [`monotonic_ns`] multiplies ticks by.
fn set_tsc_hz(hz: u64) {
    let hz = hz.max(1);
    TSC_HZ.store(hz, Ordering::Relaxed);
    NS_PER_TICK.store(rate::factor(hz, 1_000_000_000), Ordering::Relaxed);
}

/// TSC frequency in Hz.
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// The clock's numbers: what [`monotonic_ns`] and [`realtime_ns`] compute from, and what
/// the vDSO's clock page holds so that programs compute the same without a system call.
/// Final once [`finish_calibration`] has run.
pub fn clock_page() -> ClockPage {
    ClockPage {
        ns_per_tick: NS_PER_TICK.load(Ordering::Relaxed),
        tsc_at_boot: TSC_AT_BOOT.load(Ordering::Relaxed),
        epoch_at_boot_ns: EPOCH_AT_BOOT_NS.load(Ordering::Relaxed),
    }
}

/// The monotonic clock, in nanoseconds: [`kiln_abi::vdso::MONOTONIC_AT_BOOT_NS`] at boot,
/// as programs see it (the kernel's deadlines and the vDSO use it too).
pub fn monotonic_ns() -> u64 {
    // At most 2^-32 of a nanosecond off per tick: about 50 µs a day at 2.6 GHz.
    clock_page().monotonic_ns(rdtsc())
}

/// The TSC now: the clock the kernel charges CPU time with ([`ticks_to_ns`] converts).
pub fn ticks() -> u64 {
    rdtsc()
}

/// A duration of `ticks` TSC ticks in nanoseconds.
pub fn ticks_to_ns(ticks: u64) -> u64 {
    kiln_abi::rate::convert(ticks, NS_PER_TICK.load(Ordering::Relaxed))
}

/// Nanoseconds since boot (for the kernel's own reports).
pub fn since_boot_ns() -> u64 {
    clock_page().since_boot_ns(rdtsc())
}

/// Nanoseconds since the Unix epoch.
pub fn realtime_ns() -> u64 {
    clock_page().realtime_ns(rdtsc())
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

/// Per CPU: when its APIC timer is armed to fire (monotonic ns; 0 when not armed).
static ARMED: [AtomicU64; crate::smp::MAX_CPUS] =
    [const { AtomicU64::new(0) }; crate::smp::MAX_CPUS];

fn armed_at() -> &'static AtomicU64 {
    &ARMED[crate::smp::current()]
}

/// Makes sure the timer fires no later than `deadline` (monotonic ns). Keeps the current
/// arming when it already fires in time, so the common case costs no register writes
/// (each is a trap to the hypervisor) and no reading of the clock (the kernel arms the
/// timer on the way out of most system calls). An arming whose time has passed has fired,
/// or its interrupt waits for the kernel to let interrupts in: the interrupt entry clears
/// it ([`timer_fired`]). Firing early is harmless: the handler re-arms.
pub fn fire_by(deadline: u64) {
    let armed = armed_at().load(Ordering::Relaxed);
    if armed != 0 && armed <= deadline {
        return;
    }
    let now = monotonic_ns();
    let ns = deadline.saturating_sub(now).max(1);
    let ticks = apic_ticks_in(ns);
    crate::apic::arm_timer(ticks.clamp(1, u32::MAX as u64) as u32);
    armed_at().store(now + ns, Ordering::Relaxed);
}

/// APIC timer ticks in `ns` nanoseconds.
fn apic_ticks_in(ns: u64) -> u64 {
    rate::convert(ns, APIC_TICKS_PER_NS.load(Ordering::Relaxed))
}

/// Records that the timer fired (called by the interrupt entry).
pub fn timer_fired() {
    armed_at().store(0, Ordering::Relaxed);
}

/// Arms the APIC timer to fire `ns` nanoseconds from now (0 disarms it).
pub fn arm_timer_in(ns: u64) {
    if ns == 0 {
        crate::apic::arm_timer(0);
        armed_at().store(0, Ordering::Relaxed);
        return;
    }
    armed_at().store(monotonic_ns() + ns, Ordering::Relaxed);
    let ticks = apic_ticks_in(ns);
    crate::apic::arm_timer(ticks.clamp(1, u32::MAX as u64) as u32);
}
