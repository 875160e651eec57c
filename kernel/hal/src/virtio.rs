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

use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::pci::bus::{Command, PciRoot};
use virtio_drivers::transport::pci::{virtio_device_type, PciTransport};
use virtio_drivers::transport::{DeviceStatus, DeviceType, SomeTransport, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

use crate::frames::FRAMES;
use crate::pci::PortCam;
use crate::{phys_to_virt, DIRECT_MAP, PAGE_SIZE};

/// Receive and transmit queue size.
const QUEUE_SIZE: usize = 256;
/// Size of each receive buffer (a full Ethernet frame plus the virtio header).
const BUF_LEN: usize = 2048;
/// More than the DMA pages the driver allocates for two queues of `QUEUE_SIZE` (all at
/// setup; later transfers use shared heap buffers).
const DMA_PAGES: u64 = 32;
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
        // The transport sizes each BAR it uses, turning address decoding off and on around
        // each one unless it is off already; every such switch has QEMU rebuild its memory
        // map (0.3-0.5 ms each under TCG: the console's transport took 4 ms, now 1.7). So
        // decoding is off while the transport is made, and switched on once after.
        let (_, cmd) = root.get_status_command(df);
        let decode = Command::IO_SPACE | Command::MEMORY_SPACE;
        root.set_command(df, cmd - decode);
        let transport = PciTransport::new::<KilnHal, _>(&mut root, df);
        root.set_command(df, cmd | decode | Command::BUS_MASTER);
        let line = (crate::pci::line(df)) as u8;
        if let Ok(t) = transport {
            out.push((SomeTransport::Pci(t), line));
        }
    }
    out
}

/// Feature bits this driver accepts: the MAC address and link status in the configuration
/// space, and the virtio 1.0 layout. Not `RING_EVENT_IDX`: with it, the device ignores the
/// ring flags that stop its interrupts, and the driver needs those (see [`VirtioNet`]).
const NET_FEATURES: u64 = FEATURE_MAC | FEATURE_STATUS | FEATURE_VERSION_1;
const FEATURE_MAC: u64 = 1 << 5;
const FEATURE_STATUS: u64 = 1 << 16;
const FEATURE_VERSION_1: u64 = 1 << 32;
/// Receive and transmit queue numbers.
const QUEUE_RX: u16 = 0;
const QUEUE_TX: u16 = 1;

/// A virtio network card, driven through virtio-drivers' queues and transports.
///
/// The driver is ours rather than virtio-drivers' `VirtIONetRaw` for what that one cannot
/// do: the device never interrupts for finished transmissions (the buffers are taken back
/// on later ones); frames queued in one run of the network stack cost one notification of
/// the device ([`VirtioNet::flush`]), each of which traps to the hypervisor; and a full
/// barrier separates making buffers available from reading whether the device wants to be
/// notified, so the device cannot miss one.
pub struct VirtioNet {
    transport: SomeTransport<'static>,
    mac: [u8; 6],
    /// Boxed, as is `txq`: a queue keeps per-descriptor arrays inline (about 8 KiB each at
    /// 256 entries), too much to move around on a kernel stack.
    rxq: Box<VirtQueue<KilnHal, QUEUE_SIZE>>,
    txq: Box<VirtQueue<KilnHal, QUEUE_SIZE>>,
    /// Bytes of the virtio-net header in front of each frame.
    header: usize,
    /// Receive buffers the device holds, by token. Boxed: their memory never moves.
    rx: Vec<Option<Box<[u8]>>>,
    /// Transmit buffers the device holds, by token (a `Vec`'s memory does not move while
    /// it is left alone).
    tx: Vec<Option<Vec<u8>>>,
    /// Transmit buffers to use again.
    tx_spare: Vec<Vec<u8>>,
    /// Frames were queued since the device was last notified.
    tx_unannounced: bool,
}

impl VirtioNet {
    fn new(mut t: SomeTransport<'static>) -> Result<VirtioNet, &'static str> {
        if t.device_type() != DeviceType::Network {
            return Err("not a network device");
        }
        // `dma_alloc` cannot fail (the driver's `Hal` has no error path): make sure the
        // queues' pages are there first, beyond the kernel's reserve.
        if !FRAMES.lock().large_may_take(DMA_PAGES) {
            return Err("not enough memory for its queues");
        }
        // Virtio 1.x 3.1.1: reset, acknowledge, negotiate, then set the queues up.
        t.set_status(DeviceStatus::empty());
        t.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
        let features = t.read_device_features() & NET_FEATURES;
        t.write_driver_features(features);
        t.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK);
        t.set_guest_page_size(PAGE_SIZE as u32);
        let mut mac = [0u8; 6];
        if features & FEATURE_MAC != 0 {
            for (i, b) in mac.iter_mut().enumerate() {
                *b = t
                    .read_config_space::<u8>(i)
                    .map_err(|_| "cannot read the MAC address")?;
            }
        } else {
            // A locally administered address of our own.
            mac = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
        }
        let rxq = Box::new(
            VirtQueue::new(&mut t, QUEUE_RX, false, false).map_err(|_| "no receive queue")?,
        );
        let txq = Box::new(
            VirtQueue::new(&mut t, QUEUE_TX, false, false).map_err(|_| "no transmit queue")?,
        );
        t.finish_init();
        let mut n = VirtioNet {
            transport: t,
            mac,
            rxq,
            txq,
            // virtio 1.x headers carry `num_buffers`; legacy ones without mergeable
            // buffers do not.
            header: if features & FEATURE_VERSION_1 != 0 {
                12
            } else {
                10
            },
            rx: (0..QUEUE_SIZE).map(|_| None).collect(),
            tx: (0..QUEUE_SIZE).map(|_| None).collect(),
            tx_spare: Vec::new(),
            tx_unannounced: false,
        };
        // Finished transmissions are taken back on later ones: never interrupt for them.
        n.txq.set_dev_notify(false);
        let buffers = kiln_abi::memory::net_rx_buffers(
            FRAMES.lock().total() * PAGE_SIZE,
            QUEUE_SIZE,
            BUF_LEN,
        );
        for _ in 0..buffers {
            n.give_rx(vec![0u8; BUF_LEN].into_boxed_slice())
                .map_err(|_| "receive queue setup failed")?;
        }
        n.announce(QUEUE_RX);
        Ok(n)
    }

    /// Notifies the device of new buffers on `queue` unless it said it does not need it.
    fn announce(&mut self, queue: u16) {
        // The queue's `add` stored the available index; the device may have set "no
        // notification" just before it looked at that index. x86 may order our load of the
        // flag before our store of the index without this fence, and a device that ran out
        // of buffers would then wait for a notification that never comes.
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        let wants = match queue {
            QUEUE_RX => self.rxq.should_notify(),
            _ => self.txq.should_notify(),
        };
        if wants {
            self.transport.notify(queue);
        }
    }

    /// Hands a receive buffer to the device (without notifying it).
    fn give_rx(&mut self, mut buf: Box<[u8]>) -> Result<(), ()> {
        // SAFETY: the buffer is kept in `self.rx` under its token and not touched until the
        // device has returned it (`receive`), which is the queue's requirement.
        let token = unsafe { self.rxq.add(&[], &mut [&mut buf[..]]) }.map_err(|_| ())?;
        let slot = self.rx.get_mut(usize::from(token)).ok_or(())?;
        *slot = Some(buf);
        Ok(())
    }

    /// Takes back the transmit buffers the device has finished with.
    fn reclaim_tx(&mut self) {
        while let Some(token) = self.txq.peek_used() {
            let Some(buf) = self.tx.get_mut(usize::from(token)).and_then(Option::take) else {
                return;
            };
            // SAFETY: `buf` is the buffer `add` was given for this token.
            if unsafe { self.txq.pop_used(token, &[&buf[..]], &mut []) }.is_err() {
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
        self.mac
    }

    /// Whether a received frame waits (the device has returned a receive buffer): one
    /// load from the ring in memory.
    pub fn has_received(&self) -> bool {
        self.rxq.can_pop()
    }

    /// A copy of the next received frame, or `None` when none waits. The buffer goes
    /// straight back to the device, which is notified if it ran out.
    pub fn receive(&mut self) -> Option<Vec<u8>> {
        let token = self.rxq.peek_used()?;
        let mut rx = self.rx.get_mut(usize::from(token))?.take()?;
        // SAFETY: `rx` is the buffer `add` was given for this token.
        let got = unsafe { self.rxq.pop_used(token, &[], &mut [&mut rx[..]]) };
        let n = got.ok().map(|len| {
            let end = (len as usize).min(rx.len());
            rx[self.header.min(end)..end].to_vec()
        });
        // Giving the buffer back only fails on a queue bug; it is then lost, not reused.
        if self.give_rx(rx).is_ok() {
            self.announce(QUEUE_RX);
        }
        n
    }

    /// Queues one frame for sending without waiting for the device or notifying it (see
    /// [`VirtioNet::flush`]); `false` when it was dropped (the queue stayed full for
    /// `TX_FULL_WAIT_NS`).
    pub fn transmit(&mut self, frame: &[u8]) -> bool {
        self.reclaim_tx();
        if self.txq.available_desc() == 0 {
            self.flush();
            let start = crate::time::monotonic_ns();
            while self.txq.available_desc() == 0 {
                if crate::time::monotonic_ns() - start > TX_FULL_WAIT_NS {
                    return false;
                }
                core::hint::spin_loop();
                self.reclaim_tx();
            }
        }
        let mut buf = self.tx_spare.pop().unwrap_or_default();
        buf.clear();
        // An all-zero header: no offloads asked for.
        buf.resize(self.header, 0);
        buf.extend_from_slice(frame);
        // SAFETY: the buffer is kept in `self.tx` under its token and not touched until the
        // device has returned it (`reclaim_tx`).
        let Ok(token) = (unsafe { self.txq.add(&[&buf[..]], &mut []) }) else {
            return false;
        };
        self.tx_unannounced = true;
        match self.tx.get_mut(usize::from(token)) {
            Some(slot) => {
                *slot = Some(buf);
                true
            }
            // A token beyond the queue is a queue bug: leak the buffer rather than free
            // memory the device may still read.
            None => {
                core::mem::forget(buf);
                false
            }
        }
    }

    /// Notifies the device of the frames queued since the last call (one trap for all).
    pub fn flush(&mut self) {
        if core::mem::take(&mut self.tx_unannounced) {
            self.announce(QUEUE_TX);
        }
    }

    /// Whether frames were queued since the device was last notified.
    pub fn unflushed(&self) -> bool {
        self.tx_unannounced
    }

    /// Whether frames given to the device are still waiting to be sent.
    pub fn transmitting(&mut self) -> bool {
        self.flush();
        self.reclaim_tx();
        self.tx.iter().any(Option::is_some)
    }

    /// Acknowledges the device's interrupt (it lowers its line).
    pub fn ack_interrupt(&mut self) {
        let _ = self.transport.ack_interrupt();
    }
}
