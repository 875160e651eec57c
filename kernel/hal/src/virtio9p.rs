//! virtio-9p (host directories) through the virtio-drivers crate's 9p device: one request
//! queue, the mount tag from configuration space. Requests are synchronous: the kernel runs
//! one system call at a time on one CPU, so a request is queued, the device notified, and
//! the used ring polled until the answer is there.
//!
//! Buffers are kernel heap memory, which lies in the direct map, so a buffer contiguous in
//! virtual memory is contiguous in physical memory too (one descriptor each).

use alloc::string::String;
use alloc::vec::Vec;
use virtio_drivers::device::virtio_9p::VirtIO9p;
use virtio_drivers::transport::{DeviceType, SomeTransport, Transport};

use crate::virtio::KilnHal;

/// A virtio-9p device.
pub struct Virtio9p {
    dev: VirtIO9p<KilnHal, SomeTransport<'static>>,
}

// SAFETY: the device is owned by this value and used only through `&mut self`; the kernel
// runs on one CPU under one lock, and nothing in the device state is tied to a thread.
unsafe impl Send for Virtio9p {}

impl Virtio9p {
    fn new(t: SomeTransport<'static>) -> Result<Virtio9p, &'static str> {
        if t.device_type() != DeviceType::_9P {
            return Err("not a 9p device");
        }
        let dev = VirtIO9p::new(t).map_err(|_| "device setup failed")?;
        Ok(Virtio9p { dev })
    }

    /// The virtio-mmio 9p device whose registers are at physical `base` (`size` bytes),
    /// checked as [`crate::virtio::VirtioNet::mmio`] checks its window.
    pub fn mmio(base: u64, size: u64) -> Result<Virtio9p, &'static str> {
        Virtio9p::new(crate::virtio::mmio_transport(base, size, DeviceType::_9P)?)
    }

    /// Every virtio-9p PCI device on bus 0.
    pub fn pci() -> Vec<Virtio9p> {
        crate::virtio::pci_transports(DeviceType::_9P)
            .into_iter()
            .filter_map(|(t, _)| Virtio9p::new(t).ok())
            .collect()
    }

    /// The device's mount tag (QEMU's `mount_tag=`).
    pub fn tag(&self) -> String {
        String::from(self.dev.mount_tag())
    }

    /// Sends one 9P message and waits for the answer in `resp`; the answer's length, or
    /// `None` when the device refused the request.
    pub fn request(&mut self, req: &[u8], resp: &mut [u8]) -> Option<usize> {
        self.dev.request(req, resp).ok().map(|n| n as usize)
    }
}
