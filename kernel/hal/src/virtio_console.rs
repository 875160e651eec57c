//! The virtio console that carries the program's standard output and error: ports of a
//! multiport virtio-serial device (QEMU's `virtserialport,nr=N`), written with one buffer
//! per write.
//!
//! Why not virtio-drivers' console driver: it drives port 0 only, without `MULTIPORT`, and
//! QEMU's port 0 (the legacy console) drops what its character device cannot take at once,
//! so output written faster than the runner reads it would be lost. Any other port holds
//! the guest's buffer until the character device takes it. This driver uses virtio-drivers'
//! transports and queues, and speaks the control protocol itself
//! ([`kiln_abi::console_control`]).
//!
//! An `isa-debugcon` port costs QEMU a system call per byte (about 1.2 MB/s under TCG); here
//! a write is one buffer and one notification. Writes are synchronous: the buffer is queued,
//! the device notified and the used ring polled until the device has taken it, so the
//! caller's buffer can be reused at once and nothing is left to flush at the end.
//!
//! Buffers are kernel memory in the direct or identity map (the system call's bounce
//! buffer, kernel messages), physically contiguous, so each write is one descriptor.

use alloc::vec::Vec;
use bitflags::bitflags;
use kiln_abi::console_control::{Control, DEVICE_READY, PORT_OPEN};
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::{DeviceType, SomeTransport, Transport};

use crate::virtio::KilnHal;

bitflags! {
    /// The feature bits this driver knows.
    #[derive(Copy, Clone, Debug, Default, Eq, PartialEq)]
    struct Features: u64 {
        const MULTIPORT = 1 << 1;
        const VERSION_1 = 1 << 32;
    }
}

/// Queues: port 0's two, the control queues, then two per port (receive, transmit).
const CONTROL_RX: u16 = 2;
const CONTROL_TX: u16 = 3;
/// Ports a console may open.
pub const MAX_PORTS: usize = 2;

/// The transmit queue of port `port` (1 or more).
fn port_tx(port: u32) -> u16 {
    (2 + 2 * port + 1) as u16
}
/// Control messages the device may send before the driver reads them.
const CONTROL_BUFFERS: usize = 4;
/// Room for a control message (a `PORT_NAME` one carries a name).
const CONTROL_LEN: usize = 64;
/// Most bytes handed to the device in one buffer.
const MAX_WRITE: usize = 256 * 1024;

/// A multiport virtio console and the ports it opened.
pub struct VirtioConsole {
    transport: SomeTransport<'static>,
    control_rx: VirtQueue<KilnHal, CONTROL_BUFFERS>,
    control_tx: VirtQueue<KilnHal, 2>,
    /// The open ports and their transmit queues.
    ports: Vec<(u32, VirtQueue<KilnHal, 2>)>,
    /// The control receive buffers, each lent to the device under its token.
    control_bufs: Vec<(u16, alloc::boxed::Box<[u8; CONTROL_LEN]>)>,
}

// SAFETY: the device and its buffers are owned by this value and used only through
// `&mut self` (callers keep it behind a lock); nothing in its state is tied to a thread.
unsafe impl Send for VirtioConsole {}

impl VirtioConsole {
    /// Sets the device up and opens `wanted` (at most [`MAX_PORTS`] ports, 1 or more); the
    /// ports the device has not got stay closed ([`VirtioConsole::has_port`]).
    fn new(
        mut transport: SomeTransport<'static>,
        wanted: &[u32],
    ) -> Result<VirtioConsole, &'static str> {
        if transport.device_type() != DeviceType::Console {
            return Err("not a console device");
        }
        let features = transport.begin_init(Features::MULTIPORT | Features::VERSION_1);
        if !features.contains(Features::MULTIPORT) {
            return Err("the console has one port only (no MULTIPORT)");
        }
        let queue_err = |_| "queue setup failed";
        let control_rx =
            VirtQueue::new(&mut transport, CONTROL_RX, false, false).map_err(queue_err)?;
        let control_tx =
            VirtQueue::new(&mut transport, CONTROL_TX, false, false).map_err(queue_err)?;
        let mut queues = Vec::new();
        for &port in wanted.iter().take(MAX_PORTS) {
            let q =
                VirtQueue::new(&mut transport, port_tx(port), false, false).map_err(queue_err)?;
            queues.push((port, q));
        }
        transport.finish_init();
        let mut console = VirtioConsole {
            transport,
            control_rx,
            control_tx,
            ports: Vec::new(),
            control_bufs: Vec::new(),
        };
        for _ in 0..CONTROL_BUFFERS {
            console.lend_control_buffer(alloc::boxed::Box::new([0; CONTROL_LEN]))?;
        }
        // The device announces its ports as it handles this message (before the
        // notification returns), into the buffers lent above.
        console.send_control(Control {
            id: 0,
            event: DEVICE_READY,
            value: 1,
        })?;
        // Each port is added, made ready and opened: a few messages each way.
        for _ in 0..32 {
            let Some(msg) = console.next_control()? else {
                break;
            };
            let Some(at) = queues.iter().position(|(p, _)| *p == msg.id) else {
                continue;
            };
            if let Some(answer) = msg.answer(msg.id) {
                console.send_control(answer)?;
                if answer.event == PORT_OPEN {
                    console.ports.push(queues.swap_remove(at));
                }
            }
        }
        if console.ports.is_empty() {
            return Err("no port opened");
        }
        Ok(console)
    }

    /// Lends `buf` to the device for a control message.
    fn lend_control_buffer(
        &mut self,
        mut buf: alloc::boxed::Box<[u8; CONTROL_LEN]>,
    ) -> Result<(), &'static str> {
        // SAFETY: the buffer is heap memory kept in `control_bufs` (so neither moved nor
        // freed) until the device hands it back through `pop_used` in `next_control`.
        let token = unsafe { self.control_rx.add(&[], &mut [&mut buf[..]]) }
            .map_err(|_| "control queue full")?;
        self.control_bufs.push((token, buf));
        if self.control_rx.should_notify() {
            self.transport.notify(CONTROL_RX);
        }
        Ok(())
    }

    /// The next control message the device sent, its buffer lent again.
    fn next_control(&mut self) -> Result<Option<Control>, &'static str> {
        let Some(token) = self.control_rx.peek_used() else {
            return Ok(None);
        };
        let at = self
            .control_bufs
            .iter()
            .position(|(t, _)| *t == token)
            .ok_or("unknown control buffer")?;
        let (_, mut buf) = self.control_bufs.swap_remove(at);
        // SAFETY: the buffer is the one lent under `token` (see `lend_control_buffer`).
        let len = unsafe { self.control_rx.pop_used(token, &[], &mut [&mut buf[..]]) }
            .map_err(|_| "control queue")? as usize;
        let msg = Control::parse(&buf[..len.min(CONTROL_LEN)]);
        self.lend_control_buffer(buf)?;
        Ok(msg)
    }

    fn send_control(&mut self, msg: Control) -> Result<(), &'static str> {
        let bytes = msg.to_bytes();
        self.control_tx
            .add_notify_wait_pop(&[&bytes], &mut [], &mut self.transport)
            .map(|_| ())
            .map_err(|_| "control message refused")
    }

    /// The virtio-mmio console whose registers are at physical `base` (`size` bytes),
    /// checked as [`crate::virtio::VirtioNet::mmio`] checks its window.
    pub fn mmio(base: u64, size: u64, ports: &[u32]) -> Result<VirtioConsole, &'static str> {
        let t = crate::virtio::mmio_transport(base, size, DeviceType::Console)?;
        VirtioConsole::new(t, ports)
    }

    /// Every virtio console on PCI bus 0, opening `ports` on each.
    pub fn pci(ports: &[u32]) -> Vec<VirtioConsole> {
        crate::virtio::pci_transports(DeviceType::Console)
            .into_iter()
            .filter_map(|(t, _)| VirtioConsole::new(t, ports).ok())
            .collect()
    }

    /// Whether `port` is open.
    pub fn has_port(&self, port: u32) -> bool {
        self.ports.iter().any(|(p, _)| *p == port)
    }

    /// Writes `data` to `port` (waiting while the host side cannot take more); `false` when
    /// the port is not open or the device refused the bytes.
    pub fn write(&mut self, port: u32, data: &[u8]) -> bool {
        let Some((_, tx)) = self.ports.iter_mut().find(|(p, _)| *p == port) else {
            return false;
        };
        let transport = &mut self.transport;
        data.chunks(MAX_WRITE)
            .all(|chunk| tx.add_notify_wait_pop(&[chunk], &mut [], transport).is_ok())
    }
}
