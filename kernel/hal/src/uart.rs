//! More 16550 UARTs beside COM1 (the kernel log): the control channel
//! (`kiln.control=PORT`) and standard input (`kiln.stdin=PORT`). Receive interrupts on,
//! so bytes from the host wake an idle kernel; bytes go out polled.

use core::sync::atomic::{AtomicU8, Ordering};

use crate::cpu::{inb, outb};

/// The vector of the first UART's interrupt (the others follow it, by [`PORTS`] index).
const VECTOR: u8 = crate::trap::FIRST_DEVICE_VECTOR + 3;
/// Ports these UARTs may use, with their ISA IRQs: the PC's COM2 to COM4 (COM1 carries
/// the kernel log). COM2 and COM4 share an IRQ, so at most one of them is opened.
pub const PORTS: [(u16, u8); 3] = [(0x2f8, 3), (0x3e8, 4), (0x2e8, 3)];

/// The UARTs opened, one bit per [`PORTS`] index.
static OPEN: AtomicU8 = AtomicU8::new(0);
/// The UARTs whose bytes arrived since the kernel last read them, one bit per index.
static PENDING: AtomicU8 = AtomicU8::new(0);

/// A UART the kernel owns.
#[derive(Debug, Clone, Copy)]
pub struct Uart {
    port: u16,
    /// Its bit in [`OPEN`] and [`PENDING`].
    bit: u8,
}

impl Uart {
    /// Takes the UART at `port` (one of [`PORTS`]) if one answers there: programs it for
    /// 115200 baud 8N1 with FIFOs and receive interrupts, and routes its ISA IRQ.
    pub fn open(port: u16) -> Option<Uart> {
        let index = PORTS.iter().position(|(p, _)| *p == port)?;
        let irq = PORTS[index].1;
        // SAFETY: `port` is one of the PC's COM ports, where only a 16550 UART (no DMA)
        // answers; the scratch register test touches nothing else.
        let present = unsafe {
            outb(port + 7, 0x5a);
            inb(port + 7) == 0x5a
        };
        if !present {
            return None;
        }
        program(port, true);
        let bit = 1 << index;
        OPEN.fetch_or(bit, Ordering::Relaxed);
        let vector = VECTOR + index as u8;
        crate::trap::set_irq_handler(vector, on_irq);
        crate::ioapic::route_with(irq, vector, false, false);
        Some(Uart { port, bit })
    }

    /// A byte that arrived, if any.
    pub fn read_byte(self) -> Option<u8> {
        // SAFETY: line status and receive registers of the UART `open` checked; reading
        // the receive register takes the byte, which is what this is for.
        unsafe { (inb(self.port + 5) & 1 != 0).then(|| inb(self.port)) }
    }

    /// Whether bytes arrived since the last call (then [`Uart::read_byte`] until `None`).
    pub fn take_pending(self) -> bool {
        PENDING.fetch_and(!self.bit, Ordering::Acquire) & self.bit != 0
    }

    /// Sends `data`, waiting for the transmitter (giving up on a UART that never drains).
    pub fn write(self, data: &[u8]) {
        send(self.port, data);
    }
}

/// Programs the 16550 at COM port `port` for 115200 baud 8N1 with FIFOs, interrupting
/// when a byte arrives if `rx_interrupts`.
pub(crate) fn program(port: u16, rx_interrupts: bool) {
    // SAFETY: callers pass a PC COM port (COM1, or one of [`PORTS`]), where a 16550 UART,
    // which has no DMA, answers; these writes set its line format, FIFOs and interrupts.
    unsafe {
        outb(port + 1, 0x00);
        outb(port + 3, 0x80);
        outb(port, 0x01);
        outb(port + 1, 0x00);
        outb(port + 3, 0x03);
        outb(port + 2, 0xc7);
        // DTR, RTS, and OUT2, which gates the PC UART's interrupt line.
        outb(port + 4, if rx_interrupts { 0x0b } else { 0x03 });
        outb(port + 1, u8::from(rx_interrupts));
    }
}

/// Sends `data` through the UART at COM port `port`, waiting for the transmitter when it
/// is busy; gives up waiting after a while, so a missing UART cannot hang the kernel.
pub(crate) fn send(port: u16, data: &[u8]) {
    for &b in data {
        let mut spins = 0u32;
        // SAFETY: reading a COM port's line status register has no side effects.
        while unsafe { inb(port + 5) } & 0x20 == 0 && spins < 100_000 {
            spins += 1;
            core::hint::spin_loop();
        }
        // SAFETY: the transmit register only sends the byte.
        unsafe { outb(port, b) };
    }
}

fn on_irq(_vector: u8) -> bool {
    let open = OPEN.load(Ordering::Relaxed);
    if open == 0 {
        return false;
    }
    for (i, (port, _)) in PORTS.iter().enumerate() {
        if open & (1 << i) != 0 {
            // SAFETY: reading an opened UART's interrupt identification register
            // acknowledges a transmitter interrupt and has no other effect; receive
            // interrupts end when the bytes are read.
            unsafe { inb(port + 2) };
        }
    }
    PENDING.fetch_or(open, Ordering::Release);
    true
}
