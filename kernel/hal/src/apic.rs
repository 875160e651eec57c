//! The local APIC: end-of-interrupt and a one-shot timer that wakes a halted CPU.

use crate::cpu::{msr, rdmsr};
use crate::phys_to_virt;
use core::sync::atomic::{AtomicBool, Ordering};

const SPURIOUS: usize = 0xF0;
const EOI: usize = 0xB0;
const LVT_TIMER: usize = 0x320;
const INITIAL_COUNT: usize = 0x380;
const CURRENT_COUNT: usize = 0x390;
const DIVIDE: usize = 0x3E0;

static BASE: spin::Once<u64> = spin::Once::new();

fn reg(offset: usize) -> *mut u32 {
    (phys_to_virt(*BASE.get().unwrap_or(&0xFEE0_0000)) as usize + offset) as *mut u32
}

fn write(offset: usize, value: u32) {
    // SAFETY: the local APIC page is device memory inside the direct map; this register
    // offset is architectural.
    unsafe { core::ptr::write_volatile(reg(offset), value) }
}

fn read(offset: usize) -> u32 {
    // SAFETY: as for `write`.
    unsafe { core::ptr::read_volatile(reg(offset)) }
}

/// Enables the local APIC with the spurious vector and a masked timer; masks the legacy PIC.
pub fn init() {
    // Mask both 8259 PICs: their vectors would collide with CPU exceptions.
    // SAFETY: the data ports of the two 8259 PICs; writing 0xff masks all their lines.
    unsafe {
        crate::cpu::outb(0x21, 0xff);
        crate::cpu::outb(0xa1, 0xff);
    }
    BASE.call_once(|| rdmsr(msr::APIC_BASE) & 0x000f_ffff_ffff_f000);
    write(SPURIOUS, 0x100 | crate::trap::SPURIOUS_VECTOR as u32);
    write(DIVIDE, 0xB); // divide by 1
    TIMER_LIVE.store(false, Ordering::Relaxed);
    write(LVT_TIMER, 1 << 16); // masked
}

/// Signals end of interrupt.
pub fn eoi() {
    if BASE.get().is_some() {
        write(EOI, 0);
    }
}

/// Arms the one-shot timer for `ticks` APIC timer ticks (0 disarms it).
pub fn arm_timer(ticks: u32) {
    // Each register write traps to the hypervisor: the LVT only when it changes.
    if !TIMER_LIVE.swap(true, Ordering::Relaxed) {
        write(LVT_TIMER, crate::trap::TIMER_VECTOR as u32);
    }
    write(INITIAL_COUNT, ticks);
}

/// The LVT timer entry is unmasked with the timer's vector.
static TIMER_LIVE: AtomicBool = AtomicBool::new(false);

/// The timer's current count.
pub fn timer_count() -> u32 {
    read(CURRENT_COUNT)
}

/// Masks the timer interrupt while keeping it counting (for calibration).
pub fn write_lvt_masked() {
    TIMER_LIVE.store(false, Ordering::Relaxed);
    write(LVT_TIMER, 1 << 16 | crate::trap::TIMER_VECTOR as u32);
}
