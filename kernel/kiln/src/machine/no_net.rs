//! The network card in a kernel built without the network stack (the `net` feature off):
//! there is none. The kernel never looks for a card, so QEMU's card (if the runner attached
//! one) stays untouched, and the scheduler has no stack to run.

use kiln_abi::cmdline::Config;
use kiln_os::net::NetDevice;
use kiln_os::process::Process;

use crate::console;
use crate::Kernel;

/// A network card: none can exist in this kernel.
pub enum NetCard {}

impl NetDevice for NetCard {
    fn mac(&self) -> [u8; 6] {
        match *self {}
    }
    fn receive(&mut self, _buf: &mut [u8]) -> Option<usize> {
        match *self {}
    }
    fn transmit(&mut self, _frame: &[u8]) -> bool {
        match *self {}
    }
}

/// Where a card could be: nowhere this kernel looks.
pub struct Candidates;

/// Notes, on the log, that this kernel has no network stack.
pub fn start(
    config: &Config,
    _acpi: &[super::acpi::Transport],
    _process: &mut Process,
) -> Candidates {
    if config.net.ip.is_some() {
        console::info(format_args!(
            "net: this kernel has no network stack (image built with --no-net); kiln.ip is ignored"
        ));
    }
    Candidates
}

/// Never a card.
pub fn open(_candidates: Candidates) -> Option<NetCard> {
    None
}

/// Frames and bytes received and sent: none.
pub fn counters() -> ((u64, u64), (u64, u64)) {
    ((0, 0), (0, 0))
}

/// Nothing to run.
pub fn service(_k: &mut Kernel) {}

/// Nothing to send before the VM ends.
pub fn flush(_k: &mut Kernel) {}

/// No network: nothing written waits to be sent.
pub fn flush_writes(_k: &mut Kernel) {}

/// The stack never wants to run.
pub fn deadline(_k: &mut Kernel) -> Option<u64> {
    None
}
