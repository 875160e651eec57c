//! The virtio console that carries the program's standard output and error, and its
//! standard input: ports of a multiport virtio-serial device (QEMU's `virtserialport,nr=N`),
//! written with one buffer per write, read a filled buffer at a time.
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

use alloc::boxed::Box;
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
pub const MAX_PORTS: usize = 3;

/// The receive queue of port `port` (1 or more).
fn port_rx(port: u32) -> u16 {
    (2 + 2 * port) as u16
}
/// The transmit queue of port `port` (1 or more).
fn port_tx(port: u32) -> u16 {
    port_rx(port) + 1
}
/// Buffers lent on a receive queue (control messages, or a port's input).
const RX_BUFFERS: usize = 4;
/// Room for a control message (a `PORT_NAME` one carries a name).
const CONTROL_LEN: usize = 64;
/// Room for input in each buffer of a port that receives.
const INPUT_LEN: usize = 16 * 1024;
/// Most bytes handed to the device in one buffer.
const MAX_WRITE: usize = 256 * 1024;

/// A receive queue and the buffers lent to the device on it.
struct RxQueue {
    index: u16,
    queue: VirtQueue<KilnHal, RX_BUFFERS>,
    /// The buffers the device holds, each under its token; never moved or freed while lent.
    lent: Vec<(u16, Box<[u8]>)>,
}

impl RxQueue {
    fn new(transport: &mut SomeTransport<'static>, index: u16) -> Result<RxQueue, &'static str> {
        Ok(RxQueue {
            index,
            queue: VirtQueue::new(transport, index, false, false)
                .map_err(|_| "queue setup failed")?,
            lent: Vec::new(),
        })
    }

    /// Lends `RX_BUFFERS` fresh buffers of `len` bytes.
    fn fill(
        &mut self,
        transport: &mut SomeTransport<'static>,
        len: usize,
    ) -> Result<(), &'static str> {
        for _ in 0..RX_BUFFERS {
            self.lend(transport, alloc::vec![0; len].into_boxed_slice())?;
        }
        Ok(())
    }

    fn lend(
        &mut self,
        transport: &mut SomeTransport<'static>,
        mut buf: Box<[u8]>,
    ) -> Result<(), &'static str> {
        // SAFETY: the buffer is heap memory kept in `lent` (so neither moved nor freed)
        // until the device hands it back through `pop_used` in `next`.
        let token = unsafe { self.queue.add(&[], &mut [&mut buf[..]]) }
            .map_err(|_| "receive queue full")?;
        self.lent.push((token, buf));
        if self.queue.should_notify() {
            transport.notify(self.index);
        }
        Ok(())
    }

    /// Hands the bytes of the next buffer the device filled to `f`, and lends the buffer
    /// again; `None` when the device filled none.
    fn next<T>(
        &mut self,
        transport: &mut SomeTransport<'static>,
        f: impl FnOnce(&[u8]) -> T,
    ) -> Result<Option<T>, &'static str> {
        let Some(token) = self.queue.peek_used() else {
            return Ok(None);
        };
        let at = self
            .lent
            .iter()
            .position(|(t, _)| *t == token)
            .ok_or("unknown receive buffer")?;
        let (_, mut buf) = self.lent.swap_remove(at);
        // SAFETY: the buffer is the one lent under `token` (see `lend`).
        let len = unsafe { self.queue.pop_used(token, &[], &mut [&mut buf[..]]) }
            .map_err(|_| "receive queue")? as usize;
        let out = f(&buf[..len.min(buf.len())]);
        self.lend(transport, buf)?;
        Ok(Some(out))
    }
}

/// An open port: its transmit queue, and its receive queue when it was opened for input.
struct Port {
    id: u32,
    tx: VirtQueue<KilnHal, 2>,
    rx: Option<RxQueue>,
}

/// A multiport virtio console and the ports it opened.
pub struct VirtioConsole {
    transport: SomeTransport<'static>,
    control_rx: RxQueue,
    control_tx: VirtQueue<KilnHal, 2>,
    /// The open ports.
    ports: Vec<Port>,
}

// SAFETY: the device and its buffers are owned by this value and used only through
// `&mut self` (callers keep it behind a lock); nothing in its state is tied to a thread.
unsafe impl Send for VirtioConsole {}

impl VirtioConsole {
    /// Sets the device up and opens `wanted` (at most [`MAX_PORTS`] ports, 1 or more, each
    /// with whether it is read too); the ports the device has not got stay closed
    /// ([`VirtioConsole::has_port`]).
    fn new(
        mut transport: SomeTransport<'static>,
        wanted: &[(u32, bool)],
    ) -> Result<VirtioConsole, &'static str> {
        if transport.device_type() != DeviceType::Console {
            return Err("not a console device");
        }
        let features = transport.begin_init(Features::MULTIPORT | Features::VERSION_1);
        if !features.contains(Features::MULTIPORT) {
            return Err("the console has one port only (no MULTIPORT)");
        }
        let queue_err = |_| "queue setup failed";
        let control_rx = RxQueue::new(&mut transport, CONTROL_RX)?;
        let control_tx =
            VirtQueue::new(&mut transport, CONTROL_TX, false, false).map_err(queue_err)?;
        let mut queues = Vec::new();
        for &(id, reads) in wanted.iter().take(MAX_PORTS) {
            let tx =
                VirtQueue::new(&mut transport, port_tx(id), false, false).map_err(queue_err)?;
            let rx = match reads {
                true => Some(RxQueue::new(&mut transport, port_rx(id))?),
                false => None,
            };
            queues.push(Port { id, tx, rx });
        }
        transport.finish_init();
        let mut console = VirtioConsole {
            transport,
            control_rx,
            control_tx,
            ports: Vec::new(),
        };
        console
            .control_rx
            .fill(&mut console.transport, CONTROL_LEN)?;
        for port in &mut queues {
            if let Some(rx) = port.rx.as_mut() {
                rx.fill(&mut console.transport, INPUT_LEN)?;
            }
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
            let Some(at) = queues.iter().position(|p| p.id == msg.id) else {
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

    /// The next control message the device sent.
    fn next_control(&mut self) -> Result<Option<Control>, &'static str> {
        Ok(self
            .control_rx
            .next(&mut self.transport, Control::parse)?
            .flatten())
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
    pub fn mmio(
        base: u64,
        size: u64,
        ports: &[(u32, bool)],
    ) -> Result<VirtioConsole, &'static str> {
        let t = crate::virtio::mmio_transport(base, size, DeviceType::Console)?;
        VirtioConsole::new(t, ports)
    }

    /// Every virtio console on PCI bus 0, opening `ports` on each.
    pub fn pci(ports: &[(u32, bool)]) -> Vec<VirtioConsole> {
        crate::virtio::pci_transports(DeviceType::Console)
            .into_iter()
            .filter_map(|(t, _)| VirtioConsole::new(t, ports).ok())
            .collect()
    }

    /// Whether `port` is open.
    pub fn has_port(&self, port: u32) -> bool {
        self.ports.iter().any(|p| p.id == port)
    }

    /// Hands what arrived on `port` to `f`, a filled buffer at a time; `false` when the port
    /// is not open for reading or the device misbehaved.
    pub fn read(&mut self, port: u32, f: &mut dyn FnMut(&[u8])) -> bool {
        let Some(rx) = self
            .ports
            .iter_mut()
            .find(|p| p.id == port)
            .and_then(|p| p.rx.as_mut())
        else {
            return false;
        };
        loop {
            match rx.next(&mut self.transport, &mut *f) {
                Ok(Some(())) => {}
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    }

    /// Writes `data` to `port` (waiting while the host side cannot take more); `false` when
    /// the port is not open or the device refused the bytes.
    pub fn write(&mut self, port: u32, data: &[u8]) -> bool {
        let Some(p) = self.ports.iter_mut().find(|p| p.id == port) else {
            return false;
        };
        let transport = &mut self.transport;
        data.chunks(MAX_WRITE).all(|chunk| {
            p.tx.add_notify_wait_pop(&[chunk], &mut [], transport)
                .is_ok()
        })
    }
}
