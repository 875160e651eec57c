//! virtio-net through the virtio-drivers crate, over MMIO (microvm, Firecracker: devices
//! announced on the command line) or PCI (q35: found by scanning bus 0).
//!
//! DMA memory comes from the frame allocator (physically contiguous, direct-mapped); buffers
//! the driver shares live in the kernel heap, which is direct-mapped too, so a buffer's
//! physical address is its virtual address minus the direct-map base.
//!
//! Transmission does not wait for the device: a frame is copied into a buffer of ours,
//! queued, and the device notified; buffers the device has finished with are reclaimed on
//! later transmissions. Waiting for each frame (what the driver's `send` does) kept the CPU
//! spinning until QEMU's I/O thread got round to the queue, which under load was most of
//! the guest's time. Only a full queue waits, for the device to free a slot.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::ptr::NonNull;

use virtio_drivers::device::net::VirtIONetRaw;
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
/// Largest virtio-net header (the modern one; the legacy one is 10 bytes).
const MAX_HEADER: usize = 12;
/// How long a transmission waits for a slot in a full queue before dropping the frame.
const TX_FULL_WAIT_NS: u64 = 100_000_000;
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

/// The virtio-mmio transport of a `kind` device whose registers are at physical `base`
/// (`size` bytes). The window must lie below 4 GiB outside every RAM range of the loader's
/// memory map, and hold a virtio header (magic and version, checked by the transport);
/// anything else is refused, so no argument can make a driver write to memory. The device
/// type is read before the transport is made: dropping a transport resets its device, which
/// must not happen to another driver's device.
pub(crate) fn mmio_transport(
    base: u64,
    size: u64,
    kind: DeviceType,
) -> Result<SomeTransport<'static>, &'static str> {
    let end = base.checked_add(size).ok_or("bad register window")?;
    if base == 0 || end > DIRECT_MAP_END || size < 0x100 {
        return Err("bad register window");
    }
    if crate::pvh::overlaps_ram(base, end) {
        return Err("register window overlaps RAM");
    }
    let regs = phys_to_virt(base) as *const u32;
    // SAFETY: `[base, end)` is below 4 GiB (in the direct map) and outside RAM, so it is
    // device memory or nothing; reading the magic (offset 0) and device id (offset 8)
    // registers has no side effect on a virtio-mmio device.
    let (magic, id) = unsafe {
        (
            core::ptr::read_volatile(regs),
            core::ptr::read_volatile(regs.add(2)),
        )
    };
    if magic != 0x7472_6976 {
        return Err("no virtio device there");
    }
    if DeviceType::try_from(id).ok() != Some(kind) {
        return Err("another kind of device");
    }
    let header = NonNull::new(phys_to_virt(base) as *mut VirtIOHeader).ok_or("null")?;
    // SAFETY: `[base, end)` is below 4 GiB (in the direct map) and outside RAM, so it is
    // device memory or nothing; the transport reads the magic and version before using
    // it and refuses anything but a virtio-mmio device, which the caller's driver then owns.
    let t = unsafe { MmioTransport::new(header, size as usize) }
        .map_err(|_| "no virtio device there")?;
    Ok(SomeTransport::Mmio(t))
}

/// The transports of every `kind` virtio PCI device on bus 0 (bus mastering enabled), each
/// with its interrupt line (the legacy IRQ the firmware assigned, which the I/O APIC also
/// receives).
pub(crate) fn pci_transports(kind: DeviceType) -> Vec<(SomeTransport<'static>, u8)> {
    let mut out = Vec::new();
    if !crate::pci::present() {
        return out;
    }
    let mut root = PciRoot::new(PortCam::new());
    let found: Vec<_> = root
        .enumerate_bus(0)
        .filter(|(_, info)| virtio_device_type(info) == Some(kind))
        .map(|(df, _)| df)
        .collect();
    for df in found {
        let (_, cmd) = root.get_status_command(df);
        root.set_command(
            df,
            cmd | Command::IO_SPACE | Command::MEMORY_SPACE | Command::BUS_MASTER,
        );
        let line = (crate::pci::line(df)) as u8;
        if let Ok(t) = PciTransport::new::<KilnHal, _>(&mut root, df) {
            out.push((SomeTransport::Pci(t), line));
        }
    }
    out
}

/// A virtio network card.
pub struct VirtioNet {
    dev: VirtIONetRaw<KilnHal, SomeTransport<'static>, QUEUE_SIZE>,
    /// Receive buffers the device holds, by token. Boxed: their memory never moves.
    rx: Vec<Option<Box<[u8]>>>,
    /// Transmit buffers the device holds, by token (a `Vec`'s memory does not move while
    /// it is left alone).
    tx: Vec<Option<Vec<u8>>>,
    /// Transmit buffers to use again.
    tx_spare: Vec<Vec<u8>>,
    /// A receive buffer held back, handed to the device by [`VirtioNet::refill_rx`].
    rx_reserve: Option<Box<[u8]>>,
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
        let dev = VirtIONetRaw::new(t).map_err(|_| "device setup failed")?;
        let mut n = VirtioNet {
            dev,
            rx: (0..QUEUE_SIZE).map(|_| None).collect(),
            tx: (0..QUEUE_SIZE).map(|_| None).collect(),
            tx_spare: Vec::new(),
            rx_reserve: Some(vec![0u8; BUF_LEN].into_boxed_slice()),
        };
        for _ in 0..QUEUE_SIZE - 1 {
            n.give_rx(vec![0u8; BUF_LEN].into_boxed_slice())
                .map_err(|_| "receive queue setup failed")?;
        }
        Ok(n)
    }

    /// Hands a receive buffer to the device.
    fn give_rx(&mut self, mut buf: Box<[u8]>) -> Result<(), ()> {
        // SAFETY: the buffer is kept in `self.rx` under its token and not touched until the
        // device has returned it (`receive`), which is the driver's requirement.
        let token = unsafe { self.dev.receive_begin(&mut buf) }.map_err(|_| ())?;
        let slot = self.rx.get_mut(usize::from(token)).ok_or(())?;
        *slot = Some(buf);
        Ok(())
    }

    /// Takes back the transmit buffers the device has finished with.
    fn reclaim_tx(&mut self) {
        while let Some(token) = self.dev.poll_transmit() {
            let Some(buf) = self.tx.get_mut(usize::from(token)).and_then(Option::take) else {
                return;
            };
            // SAFETY: `buf` is the buffer `transmit_begin` was given for this token.
            if unsafe { self.dev.transmit_complete(token, &buf) }.is_err() {
                return;
            }
            self.tx_spare.push(buf);
        }
    }

    /// The virtio-mmio device whose registers are at physical `base` (`size` bytes), as
    /// announced by `virtio_mmio.device=SIZE@BASE:IRQ` or the DSDT (see [`mmio_transport`]).
    pub fn mmio(base: u64, size: u64) -> Result<VirtioNet, &'static str> {
        VirtioNet::new(mmio_transport(base, size, DeviceType::Network)?)
    }

    /// Every virtio-net PCI device on bus 0, each with its interrupt line (the legacy IRQ
    /// the firmware assigned, which the I/O APIC also receives).
    pub fn pci() -> Vec<(VirtioNet, u8)> {
        pci_transports(DeviceType::Network)
            .into_iter()
            .filter_map(|(t, line)| Some((VirtioNet::new(t).ok()?, line)))
            .collect()
    }

    /// The card's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.dev.mac_address()
    }

    /// Copies the next received frame into `buf`; its length, or `None` when none waits.
    pub fn receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        let token = self.dev.poll_receive()?;
        let mut rx = self.rx.get_mut(usize::from(token))?.take()?;
        // SAFETY: `rx` is the buffer `receive_begin` was given for this token.
        let got = unsafe { self.dev.receive_complete(token, &mut rx) };
        let n = match got {
            Ok((header, len)) => {
                let pkt = &rx[header..(header + len).min(rx.len())];
                let n = pkt.len().min(buf.len());
                buf[..n].copy_from_slice(&pkt[..n]);
                Some(n)
            }
            Err(_) => None,
        };
        if self.rx_reserve.is_none() {
            self.rx_reserve = Some(rx);
        } else {
            // Giving the buffer back only fails on a driver bug; it is then lost, not reused.
            let _ = self.give_rx(rx);
        }
        n
    }

    /// Hands the held-back receive buffer to the device, which notifies the device if it
    /// waits for buffers. The kernel calls this now and then: virtio-drivers 0.13 decides
    /// whether to notify by reading the device's notification index right after storing the
    /// available index, with no full barrier between the store and the load (x86 may reorder
    /// them), so a device that ran out of receive buffers can miss the notification and
    /// wait forever while the driver waits for frames. Any later buffer notifies it again.
    pub fn refill_rx(&mut self) {
        if let Some(buf) = self.rx_reserve.take() {
            core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
            let _ = self.give_rx(buf);
        }
    }

    /// Queues one frame for sending without waiting for the device to send it; `false`
    /// when it was dropped (the queue stayed full for `TX_FULL_WAIT_NS`).
    pub fn transmit(&mut self, frame: &[u8]) -> bool {
        self.reclaim_tx();
        if !self.dev.can_send() {
            let start = crate::time::monotonic_ns();
            while !self.dev.can_send() {
                if crate::time::monotonic_ns() - start > TX_FULL_WAIT_NS {
                    return false;
                }
                core::hint::spin_loop();
                self.reclaim_tx();
            }
        }
        let mut buf = self.tx_spare.pop().unwrap_or_default();
        buf.clear();
        buf.resize(MAX_HEADER + frame.len(), 0);
        let Ok(header) = self.dev.fill_buffer_header(&mut buf) else {
            return false;
        };
        buf.truncate(header + frame.len());
        buf[header..].copy_from_slice(frame);
        // SAFETY: the buffer is kept in `self.tx` under its token and not touched until the
        // device has returned it (`reclaim_tx`).
        let Ok(token) = (unsafe { self.dev.transmit_begin(&buf) }) else {
            return false;
        };
        match self.tx.get_mut(usize::from(token)) {
            Some(slot) => {
                *slot = Some(buf);
                true
            }
            // A token beyond the queue is a driver bug: leak the buffer rather than free
            // memory the device may still read.
            None => {
                core::mem::forget(buf);
                false
            }
        }
    }

    /// Whether frames given to the device are still waiting to be sent.
    pub fn transmitting(&mut self) -> bool {
        self.reclaim_tx();
        self.tx.iter().any(Option::is_some)
    }

    /// Acknowledges the device's interrupt (it lowers its line).
    pub fn ack_interrupt(&mut self) {
        let _ = self.dev.ack_interrupt();
    }
}
