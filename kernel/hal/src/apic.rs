//! The local APIC: end-of-interrupt and a one-shot timer that wakes a halted CPU.

use crate::cpu::{msr, rdmsr};
use crate::phys_to_virt;
use core::sync::atomic::{AtomicBool, Ordering};

const ID: usize = 0x20;
const SPURIOUS: usize = 0xF0;
const ICR_LOW: usize = 0x300;
const ICR_HIGH: usize = 0x310;
const EOI: usize = 0xB0;
const LVT_TIMER: usize = 0x320;
const INITIAL_COUNT: usize = 0x380;
const CURRENT_COUNT: usize = 0x390;
const DIVIDE: usize = 0x3E0;

static BASE: crate::once::SetOnce<u64> = crate::once::SetOnce::new();

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
    BASE.set(rdmsr(msr::APIC_BASE) & 0x000f_ffff_ffff_f000);
    init_cpu();
}

/// Enables this CPU's local APIC with the spurious vector and a masked timer (every CPU
/// has its own; they share the address).
pub(crate) fn init_cpu() {
    write(SPURIOUS, 0x100 | crate::trap::SPURIOUS_VECTOR as u32);
    write(DIVIDE, 0xB); // divide by 1
    TIMER_LIVE[crate::smp::current()].store(false, Ordering::Relaxed);
    write(LVT_TIMER, 1 << 16); // masked
}

/// This CPU's local APIC ID.
pub fn id() -> u32 {
    read(ID) >> 24
}

/// Writes the interrupt command register (`high` first: writing `low` sends) and waits
/// until the APIC has taken the command.
fn command(high: u32, low: u32) {
    write(ICR_HIGH, high);
    write(ICR_LOW, low);
    let mut spins = 0;
    while read(ICR_LOW) & (1 << 12) != 0 && spins < 1_000_000 {
        core::hint::spin_loop();
        spins += 1;
    }
}

/// Sends interrupt `vector` to the CPU with local APIC ID `apic_id`.
pub(crate) fn send_ipi(apic_id: u32, vector: u8) {
    command(apic_id << 24, u32::from(vector) | 1 << 14);
}

/// Sends interrupt `vector` to every CPU but this one.
pub(crate) fn broadcast_ipi(vector: u8) {
    command(0, u32::from(vector) | 1 << 14 | 3 << 18);
}

/// Sends INIT to the CPU with local APIC ID `apic_id` (it waits for STARTUP).
pub(crate) fn send_init(apic_id: u32) {
    command(apic_id << 24, 5 << 8 | 1 << 14);
}

/// Sends STARTUP: the CPU starts in real mode at `vector << 12`.
pub(crate) fn send_startup(apic_id: u32, vector: u8) {
    command(apic_id << 24, 6 << 8 | 1 << 14 | u32::from(vector));
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
    if !TIMER_LIVE[crate::smp::current()].swap(true, Ordering::Relaxed) {
        write(LVT_TIMER, crate::trap::TIMER_VECTOR as u32);
    }
    write(INITIAL_COUNT, ticks);
}

/// Per CPU: the LVT timer entry is unmasked with the timer's vector.
static TIMER_LIVE: [AtomicBool; crate::smp::MAX_CPUS] =
    [const { AtomicBool::new(false) }; crate::smp::MAX_CPUS];

/// The timer's current count.
pub fn timer_count() -> u32 {
    read(CURRENT_COUNT)
}

/// Masks the timer interrupt while keeping it counting (for calibration).
pub fn write_lvt_masked() {
    TIMER_LIVE[crate::smp::current()].store(false, Ordering::Relaxed);
    write(LVT_TIMER, 1 << 16 | crate::trap::TIMER_VECTOR as u32);
}
