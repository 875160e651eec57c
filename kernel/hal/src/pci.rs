//! PCI configuration space through the legacy I/O ports (0xCF8/0xCFC), which q35 and every
//! PC-compatible machine answer; on machines without PCI (microvm) reads return all ones.

use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction};

const ADDRESS: u16 = 0xCF8;
const DATA: u16 = 0xCFC;

fn address(df: DeviceFunction, offset: u8) -> u32 {
    0x8000_0000
        | (df.bus as u32) << 16
        | (df.device as u32) << 11
        | (df.function as u32) << 8
        | (offset as u32 & 0xfc)
}

/// Configuration access through ports 0xCF8/0xCFC (the kernel runs one CPU with interrupts
/// off while it touches them).
///
/// Writing configuration space can move a device's registers over RAM or let it master
/// the bus, so only this crate can make one (the field is private): the virtio driver,
/// which programs exactly the devices it drives.
#[derive(Debug)]
pub struct PortCam(());

impl PortCam {
    /// Configuration access for this crate's drivers.
    pub(crate) const fn new() -> PortCam {
        PortCam(())
    }
}

impl ConfigurationAccess for PortCam {
    fn read_word(&self, df: DeviceFunction, offset: u8) -> u32 {
        // SAFETY: selecting a configuration register and reading it has no side effects
        // on the devices Kiln meets (none has read-to-clear configuration registers).
        unsafe {
            crate::cpu::outl(ADDRESS, address(df, offset));
            crate::cpu::inl(DATA)
        }
    }
    fn write_word(&mut self, df: DeviceFunction, offset: u8, data: u32) {
        // SAFETY: a `PortCam` exists only inside this crate, whose driver writes the
        // command and BAR registers of the device it drives, with values that keep the
        // device's windows outside RAM (the firmware's or the driver's assignment).
        unsafe {
            crate::cpu::outl(ADDRESS, address(df, offset));
            crate::cpu::outl(DATA, data);
        }
    }
    // SAFETY: the port pair is stateless between accesses, so clones cannot interfere
    // (the kernel lock serialises configuration accesses).
    unsafe fn unsafe_clone(&self) -> Self {
        PortCam(())
    }
}

/// Whether a PCI host bridge answers at 00:00.0.
pub fn present() -> bool {
    let df = DeviceFunction {
        bus: 0,
        device: 0,
        function: 0,
    };
    PortCam::new().read_word(df, 0) & 0xffff != 0xffff
}

/// The interrupt line the firmware assigned to `df` (configuration offset 0x3C).
pub fn line(df: DeviceFunction) -> u32 {
    PortCam::new().read_word(df, 0x3C) & 0xff
}
