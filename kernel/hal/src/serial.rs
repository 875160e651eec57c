//! The COM1 16550 UART, polled.

use crate::cpu::{inb, outb};

const COM1: u16 = 0x3f8;

/// Programs COM1 for 115200 baud, 8N1, FIFOs on, interrupts off.
pub fn init() {
    // SAFETY: COM1's registers (0x3f8-0x3ff) belong to a 16550 UART, which has no DMA;
    // these writes set its line format and FIFOs and leave its interrupts off.
    unsafe {
        outb(COM1 + 1, 0x00);
        outb(COM1 + 3, 0x80);
        outb(COM1, 0x01);
        outb(COM1 + 1, 0x00);
        outb(COM1 + 3, 0x03);
        outb(COM1 + 2, 0xC7);
        outb(COM1 + 4, 0x03);
    }
}

/// Writes bytes, waiting for the transmitter when it is busy.
pub fn write(data: &[u8]) {
    for &b in data {
        let mut spins = 0u32;
        // Wait for THR empty; give up waiting after a while so a missing UART cannot hang us.
        // SAFETY: reading the UART's line status register has no side effects.
        while unsafe { inb(COM1 + 5) } & 0x20 == 0 && spins < 100_000 {
            spins += 1;
            core::hint::spin_loop();
        }
        // SAFETY: the UART's transmit register only sends the byte.
        unsafe { outb(COM1, b) };
    }
}

/// COM1 as a formatting target (for messages written before the heap exists).
pub struct Out;

impl core::fmt::Write for Out {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        write(s.as_bytes());
        Ok(())
    }
}
