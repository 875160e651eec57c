//! virtio-net through the virtio-drivers crate, over MMIO (microvm, Firecracker: devices
//! announced on the command line) or PCI (q35: found by scanning bus 0).
//!
//! DMA memory comes from the frame allocator (physically contiguous, direct-mapped); buffers
//! the driver shares live in the kernel heap, which is direct-mapped too, so a buffer's
//! physical address is its virtual address minus the direct-map base.

use alloc::vec::Vec;
use core::ptr::NonNull;

use virtio_drivers::device::net::VirtIONet;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::pci::bus::{Command, PciRoot};
use virtio_drivers::transport::pci::{virtio_device_type, PciTransport};
use virtio_drivers::transport::{DeviceType, SomeTransport, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

use crate::frames::FRAMES;
use crate::pci::PortCam;
use crate::{phys_to_virt, DIRECT_MAP, PAGE_SIZE};

/// Receive and transmit queue size.
const QUEUE_SIZE: usize = 64;
/// Size of each receive buffer (a full Ethernet frame plus the virtio header).
const BUF_LEN: usize = 2048;
/// More than the DMA pages the driver allocates for two queues of `QUEUE_SIZE` (all at
/// setup; later transfers use shared heap buffers).
const DMA_PAGES: u64 = 32;
/// End of the direct map.
const DIRECT_MAP_END: u64 = 1 << 32;

/// The `Hal` the driver uses: DMA from the frame allocator, addresses through the direct map.
pub struct KilnHal;

fn virt_to_phys(virt: u64) -> u64 {
    if virt >= DIRECT_MAP {
        virt - DIRECT_MAP
    } else {
        // The kernel image is identity-mapped.
        virt
    }
}

// SAFETY: DMA regions are fresh, zeroed, page-aligned frames used by nothing else until
// freed; MMIO regions are device memory, in the direct map below 4 GiB and in the device window
// above (`paging::map_device`); shared buffers are kernel memory whose physical address follows
// from the direct (or identity) map.
unsafe impl Hal for KilnHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let bytes = pages as u64 * PAGE_SIZE;
        let phys = FRAMES
            .lock()
            .alloc_contiguous(bytes)
            .expect("out of memory for network DMA buffers");
        let virt = phys_to_virt(phys) as *mut u8;
        // SAFETY: the frames are ours and mapped read-write by the direct map.
        unsafe { core::ptr::write_bytes(virt, 0, bytes as usize) };
        (phys, NonNull::new(virt).expect("direct map is not null"))
    }

    // SAFETY: the driver hands back exactly the pages `dma_alloc` gave it, no longer in use.
    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        let mut frames = FRAMES.lock();
        for i in 0..pages as u64 {
            // SAFETY: the driver hands back pages `dma_alloc` took from this allocator and
            // no longer uses them (the trait's contract).
            unsafe { frames.free(paddr + i * PAGE_SIZE) };
        }
        0
    }

    // SAFETY: see the impl: the returned mapping covers `size` bytes of device memory.
    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        // Below 4 GiB this is the direct map; 64-bit BARs above it (as OVMF assigns them)
        // get an uncached mapping in the device window.
        let virt = crate::paging::map_device(paddr, size as u64)
            .unwrap_or_else(|| panic!("cannot map device registers at {paddr:#x} ({size} bytes)"));
        NonNull::new(virt as *mut u8).expect("mapped address is not null")
    }

    // SAFETY: `buffer` is kernel memory that stays valid while the device uses it.
    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        virt_to_phys(buffer.as_ptr() as *mut u8 as u64)
    }

    // SAFETY: nothing to undo: buffers are shared in place (no bounce buffers).
    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// A virtio network card.
pub struct VirtioNet {
    dev: VirtIONet<KilnHal, SomeTransport<'static>, QUEUE_SIZE>,
}

impl VirtioNet {
    fn new(t: SomeTransport<'static>) -> Result<VirtioNet, &'static str> {
        if t.device_type() != DeviceType::Network {
            return Err("not a network device");
        }
        // `dma_alloc` cannot fail (the driver's `Hal` has no error path): make sure the
        // queues' pages are there first, beyond the kernel's reserve.
        if !FRAMES.lock().large_may_take(DMA_PAGES) {
            return Err("not enough memory for its queues");
        }
        let dev = VirtIONet::new(t, BUF_LEN).map_err(|_| "device setup failed")?;
        Ok(VirtioNet { dev })
    }

    /// The virtio-mmio device whose registers are at physical `base` (`size` bytes), as
    /// announced by `virtio_mmio.device=SIZE@BASE:IRQ`. The window must lie below 4 GiB
    /// outside every RAM range of the loader's memory map, and hold a virtio header (magic
    /// and version, checked by the transport); anything else is refused, so no argument can
    /// make the driver write to memory.
    pub fn mmio(base: u64, size: u64) -> Result<VirtioNet, &'static str> {
        let end = base.checked_add(size).ok_or("bad register window")?;
        if base == 0 || end > DIRECT_MAP_END || size < 0x100 {
            return Err("bad register window");
        }
        if crate::pvh::overlaps_ram(base, end) {
            return Err("register window overlaps RAM");
        }
        let header = NonNull::new(phys_to_virt(base) as *mut VirtIOHeader).ok_or("null")?;
        // SAFETY: `[base, end)` is below 4 GiB (in the direct map) and outside RAM, so it is
        // device memory or nothing; the transport reads the magic and version before using
        // it and refuses anything but a virtio-mmio device, which this driver then owns.
        let t = unsafe { MmioTransport::new(header, size as usize) }
            .map_err(|_| "no virtio device there")?;
        VirtioNet::new(SomeTransport::Mmio(t))
    }

    /// Every virtio-net PCI device on bus 0, each with its interrupt line (the legacy IRQ
    /// the firmware assigned, which the I/O APIC also receives).
    pub fn pci() -> Vec<(VirtioNet, u8)> {
        let mut out = Vec::new();
        if !crate::pci::present() {
            return out;
        }
        let mut root = PciRoot::new(PortCam::new());
        let found: Vec<_> = root
            .enumerate_bus(0)
            .filter(|(_, info)| virtio_device_type(info) == Some(DeviceType::Network))
            .map(|(df, _)| df)
            .collect();
        for df in found {
            let (_, cmd) = root.get_status_command(df);
            root.set_command(
                df,
                cmd | Command::IO_SPACE | Command::MEMORY_SPACE | Command::BUS_MASTER,
            );
            let line = (crate::pci::line(df)) as u8;
            let Ok(t) = PciTransport::new::<KilnHal, _>(&mut root, df) else {
                continue;
            };
            if let Ok(n) = VirtioNet::new(SomeTransport::Pci(t)) {
                out.push((n, line));
            }
        }
        out
    }

    /// The card's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.dev.mac_address()
    }

    /// Copies the next received frame into `buf`; its length, or `None` when none waits.
    pub fn receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        let rx = self.dev.receive().ok()?;
        let pkt = rx.packet();
        let n = pkt.len().min(buf.len());
        buf[..n].copy_from_slice(&pkt[..n]);
        // Recycling only fails on a driver bug; the buffer is then lost, not reused.
        let _ = self.dev.recycle_rx_buffer(rx);
        Some(n)
    }

    /// Sends one frame (waits for the device to take it); `false` when the queue is full.
    pub fn transmit(&mut self, frame: &[u8]) -> bool {
        if !self.dev.can_send() {
            return false;
        }
        let mut tx = self.dev.new_tx_buffer(frame.len());
        tx.packet_mut().copy_from_slice(frame);
        self.dev.send(tx).is_ok()
    }

    /// Acknowledges the device's interrupt (it lowers its line).
    pub fn ack_interrupt(&mut self) {
        let _ = self.dev.ack_interrupt();
    }
}
