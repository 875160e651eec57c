//! PCI configuration space through the legacy I/O ports (0xCF8/0xCFC), which q35 and every
//! PC-compatible machine answer; on machines without PCI (microvm) reads return all ones.

use core::arch::asm;

use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction};

const ADDRESS: u16 = 0xCF8;
const DATA: u16 = 0xCFC;

fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: port I/O has no memory effects; 0xCFC is the PCI configuration data port.
    unsafe {
        asm!("in eax, dx", out("eax") v, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    v
}

fn address(df: DeviceFunction, offset: u8) -> u32 {
    0x8000_0000
        | (df.bus as u32) << 16
        | (df.device as u32) << 11
        | (df.function as u32) << 8
        | (offset as u32 & 0xfc)
}

/// Configuration access through ports 0xCF8/0xCFC (the kernel runs one CPU with interrupts
/// off while it touches them).
#[derive(Debug)]
pub struct PortCam;

impl ConfigurationAccess for PortCam {
    fn read_word(&self, df: DeviceFunction, offset: u8) -> u32 {
        crate::cpu::outl(ADDRESS, address(df, offset));
        inl(DATA)
    }
    fn write_word(&mut self, df: DeviceFunction, offset: u8, data: u32) {
        crate::cpu::outl(ADDRESS, address(df, offset));
        crate::cpu::outl(DATA, data);
    }
    // SAFETY: the port pair is stateless between accesses, so clones cannot interfere
    // (the kernel lock serialises configuration accesses).
    unsafe fn unsafe_clone(&self) -> Self {
        PortCam
    }
}

/// Whether a PCI host bridge answers at 00:00.0.
pub fn present() -> bool {
    let df = DeviceFunction {
        bus: 0,
        device: 0,
        function: 0,
    };
    PortCam.read_word(df, 0) & 0xffff != 0xffff
}

/// The interrupt line the firmware assigned to `df` (configuration offset 0x3C).
pub fn line(df: DeviceFunction) -> u32 {
    PortCam.read_word(df, 0x3C) & 0xff
}
