//! The power button, which hypervisors and clouds press to ask a VM to stop (QEMU's
//! `system_powerdown`, `virsh shutdown`, a cloud's "stop"): ACPI's fixed PM1 event behind
//! the SCI (full ACPI machines, q35), or the generic event device's event register
//! (hardware-reduced ACPI, microvm with `acpi=on`). Also reads the firmware's ACPI tables
//! for the kernel, which parses them (`kiln_os::acpi`) and says which of the two to enable.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::cpu::{inw, outb, outw};
use crate::phys_to_virt;

/// The vector the button's interrupt arrives on.
const VECTOR: u8 = crate::trap::FIRST_DEVICE_VECTOR + 2;
/// PM1 status/enable bit of the power button.
const PM1_POWER_BUTTON: u16 = 1 << 8;
/// PM1 control: SCI_EN (the machine is in ACPI mode).
const PM1_SCI_EN: u16 = 1;
/// The generic event device's power-down event.
const GED_POWER_DOWN: u32 = 0x2;

/// Set when the button was pressed and nobody has looked yet.
static PRESSED: AtomicBool = AtomicBool::new(false);
/// Which source is enabled: 0 none, 1 PM1, 2 GED.
static SOURCE: AtomicU64 = AtomicU64::new(0);
/// PM1: the event block's port (status; enable follows at half its length).
static PM1_EVT: AtomicU64 = AtomicU64::new(0);
/// GED: the event selector register's physical address.
static GED_SEL: AtomicU64 = AtomicU64::new(0);

/// Copies `buf.len()` bytes of firmware memory at physical address `phys` (ACPI tables,
/// the BIOS area). `false` for ranges the kernel may be using: RAM the loader reported
/// above 1 MiB, or anything above 4 GiB (outside the direct map).
pub fn read_firmware(phys: u64, buf: &mut [u8]) -> bool {
    let Some(end) = phys.checked_add(buf.len() as u64) else {
        return false;
    };
    if end > 1 << 32 || (end > 0x10_0000 && crate::pvh::overlaps_ram(phys.max(0x10_0000), end)) {
        return false;
    }
    for (i, b) in buf.iter_mut().enumerate() {
        // SAFETY: below 4 GiB, so in the direct map; not RAM the frame allocator hands out
        // (checked above), so nothing in the kernel writes it; a byte read has no side
        // effects on firmware tables or the BIOS area.
        *b = unsafe { core::ptr::read_volatile(phys_to_virt(phys + i as u64) as *const u8) };
    }
    true
}

/// The fixed PM1 power button of a full ACPI machine, from its FADT.
#[derive(Debug, Clone, Copy)]
pub struct Pm1 {
    /// PM1a event block (status register; the enable register is at half the length).
    pub evt: u16,
    /// PM1 event block length.
    pub evt_len: u8,
    /// PM1a control block.
    pub cnt: u16,
    /// SMI command port (0: the machine is always in ACPI mode).
    pub smi_cmd: u16,
    /// Value that switches to ACPI mode.
    pub acpi_enable: u8,
}

/// An interrupt line as the firmware describes it.
#[derive(Debug, Clone, Copy)]
pub struct Line {
    /// The I/O APIC input.
    pub gsi: u8,
    /// Level-triggered (edge otherwise).
    pub level: bool,
    /// Active low (high otherwise).
    pub active_low: bool,
}

/// Why the button could not be enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The machine did not switch to ACPI mode.
    NoAcpiMode,
    /// The interrupt line cannot be routed.
    NoLine,
    /// The register is not where a device can be (above 4 GiB, or in RAM).
    BadRegister,
}

/// Enables the fixed PM1 power button, its events arriving on the SCI `line`.
pub fn enable_pm1(pm1: Pm1, line: Line) -> Result<(), Error> {
    if pm1.evt == 0 || pm1.evt_len < 4 || pm1.cnt == 0 {
        return Err(Error::BadRegister);
    }
    let en = pm1.evt + u16::from(pm1.evt_len / 2);
    // SAFETY: the FADT names these ports as the PM1 event and control blocks and the SMI
    // command port; the writes switch to ACPI mode, acknowledge the power-button status and
    // set its enable bit, none of which touches memory.
    unsafe {
        if pm1.smi_cmd != 0 && inw(pm1.cnt) & PM1_SCI_EN == 0 {
            outb(pm1.smi_cmd, pm1.acpi_enable);
            let deadline = crate::time::monotonic_ns() + 300_000_000;
            while inw(pm1.cnt) & PM1_SCI_EN == 0 {
                if crate::time::monotonic_ns() > deadline {
                    return Err(Error::NoAcpiMode);
                }
                core::hint::spin_loop();
            }
        }
        outw(pm1.evt, PM1_POWER_BUTTON);
        outw(en, inw(en) | PM1_POWER_BUTTON);
    }
    PM1_EVT.store(u64::from(pm1.evt), Ordering::Relaxed);
    SOURCE.store(1, Ordering::Relaxed);
    route(line)
}

/// Enables the generic event device whose event selector register is at physical `sel`,
/// its events arriving on `line`.
pub fn enable_ged(sel: u64, line: Line) -> Result<(), Error> {
    if sel == 0
        || !sel.is_multiple_of(4)
        || sel >= 1 << 32
        || crate::pvh::overlaps_ram(sel, sel + 4)
    {
        return Err(Error::BadRegister);
    }
    GED_SEL.store(sel, Ordering::Relaxed);
    SOURCE.store(2, Ordering::Relaxed);
    route(line)
}

fn route(line: Line) -> Result<(), Error> {
    crate::trap::set_irq_handler(VECTOR, on_irq);
    if crate::ioapic::route_with(line.gsi, VECTOR, line.level, line.active_low) {
        Ok(())
    } else {
        SOURCE.store(0, Ordering::Relaxed);
        Err(Error::NoLine)
    }
}

fn on_irq(_vector: u8) -> bool {
    let pressed = match SOURCE.load(Ordering::Relaxed) {
        1 => {
            let evt = PM1_EVT.load(Ordering::Relaxed) as u16;
            // SAFETY: the PM1 status register `enable_pm1` was given; writing its set bits
            // back acknowledges them (and lowers the level-triggered SCI).
            unsafe {
                let sts = inw(evt);
                if sts != 0 {
                    outw(evt, sts);
                }
                sts & PM1_POWER_BUTTON != 0
            }
        }
        2 => {
            let sel = GED_SEL.load(Ordering::Relaxed);
            // SAFETY: the event selector register `enable_ged` checked is device memory
            // in the direct map; reading it returns the pending events and clears them.
            let events = unsafe { core::ptr::read_volatile(phys_to_virt(sel) as *const u32) };
            events & GED_POWER_DOWN != 0
        }
        _ => false,
    };
    if pressed {
        PRESSED.store(true, Ordering::Release);
    }
    pressed
}

/// Whether the button was pressed since the last call.
pub fn take_press() -> bool {
    PRESSED.swap(false, Ordering::Acquire)
}
