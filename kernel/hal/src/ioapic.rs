//! The I/O APIC: routes device interrupt lines (GSIs) to CPU vectors.
//!
//! Kiln uses one I/O APIC at the architectural default address, as QEMU (microvm, q35),
//! Firecracker and Cloud Hypervisor provide. Lines are routed level-triggered and
//! active-high to the boot CPU; a handler masks its line, and the kernel unmasks it once
//! the device acknowledged the interrupt (see the network driver).

use core::sync::atomic::{AtomicBool, Ordering};

use crate::phys_to_virt;

/// Physical address of the I/O APIC.
const BASE: u64 = 0xFEC0_0000;
const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
const VERSION: u32 = 0x01;
const MASKED: u32 = 1 << 16;
const LEVEL: u32 = 1 << 15;
const ACTIVE_LOW: u32 = 1 << 13;

/// Serialises the select/window register pair (interrupt handlers mask lines too, but only
/// while the kernel runs with interrupts off, so this is never contended on one CPU).
static BUSY: AtomicBool = AtomicBool::new(false);

fn with_regs<R>(f: impl FnOnce(&dyn Fn(u32) -> u32, &dyn Fn(u32, u32)) -> R) -> R {
    while BUSY
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        core::hint::spin_loop();
    }
    let read = |reg: u32| {
        // SAFETY: the I/O APIC's registers are device memory in the direct map; BUSY gives
        // exclusive use of the select/window pair.
        unsafe {
            core::ptr::write_volatile(phys_to_virt(BASE + IOREGSEL) as *mut u32, reg);
            core::ptr::read_volatile(phys_to_virt(BASE + IOWIN) as *const u32)
        }
    };
    let write = |reg: u32, v: u32| {
        // SAFETY: as for `read`.
        unsafe {
            core::ptr::write_volatile(phys_to_virt(BASE + IOREGSEL) as *mut u32, reg);
            core::ptr::write_volatile(phys_to_virt(BASE + IOWIN) as *mut u32, v);
        }
    };
    let r = f(&read, &write);
    BUSY.store(false, Ordering::Release);
    r
}

/// How many lines the I/O APIC has (0 when none answers).
pub fn lines() -> u32 {
    with_regs(|read, _| {
        let v = read(VERSION);
        if v == u32::MAX {
            0
        } else {
            ((v >> 16) & 0xff) + 1
        }
    })
}

/// Routes line `gsi` to `vector` on the boot CPU, level-triggered, active-high, unmasked.
/// `false` when the I/O APIC has no such line, or `vector` is not a device vector (an
/// exception vector would run a stub that expects an error code the interrupt does not
/// push, and return through a misaligned frame).
pub fn route(gsi: u8, vector: u8) -> bool {
    route_with(gsi, vector, true, false)
}

/// As [`route`], with the line's trigger mode (`level`, or edge) and polarity
/// (`active_low`, or high) as the firmware describes the device.
pub fn route_with(gsi: u8, vector: u8, level: bool, active_low: bool) -> bool {
    if vector < crate::trap::FIRST_DEVICE_VECTOR || vector == crate::trap::SPURIOUS_VECTOR {
        return false;
    }
    if gsi as u32 >= lines() {
        return false;
    }
    let apic_id = crate::cpu::cpuid(1, 0).ebx >> 24;
    let reg = 0x10 + 2 * gsi as u32;
    with_regs(|_, write| {
        write(reg, MASKED);
        write(reg + 1, apic_id << 24);
        let mode = if level { LEVEL } else { 0 } | if active_low { ACTIVE_LOW } else { 0 };
        write(reg, vector as u32 | mode);
    });
    true
}

/// Masks (`true`) or unmasks line `gsi`. Always writes the entry, even when it is so
/// already: QEMU's I/O APIC delivers a level-triggered line still raised when its entry is
/// written, and skipping the write when unmasked (a cached entry) cut lighttpd's
/// connection-per-request rate to a third under TCG (BENCHMARKS.md, "Fewer
/// notifications").
pub fn set_masked(gsi: u8, masked: bool) {
    let reg = 0x10 + 2 * gsi as u32;
    with_regs(|read, write| {
        let low = read(reg);
        write(reg, if masked { low | MASKED } else { low & !MASKED });
    });
}
