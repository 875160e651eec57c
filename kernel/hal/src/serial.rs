//! The COM1 16550 UART, polled: the kernel log.

const COM1: u16 = 0x3f8;

/// Programs COM1 for 115200 baud, 8N1, FIFOs on, interrupts off.
pub fn init() {
    crate::uart::program(COM1, false);
}

/// Writes bytes, waiting for the transmitter when it is busy.
pub fn write(data: &[u8]) {
    crate::uart::send(COM1, data);
}

/// COM1 as a formatting target (for messages written before the heap exists).
pub struct Out;

impl core::fmt::Write for Out {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        write(s.as_bytes());
        Ok(())
    }
}
