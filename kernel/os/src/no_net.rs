//! The network layer of a kernel built without its IPv4 stack (the `net` feature off, for
//! programs that never open an internet socket; see `build-image --no-net`).
//!
//! It keeps the names the rest of the kernel shares with [`crate::net`] (the socket file
//! type bits, the card interface, the process's stack handle) so everything else builds
//! unchanged: `AF_UNIX` sockets, pipes and files work as in the full kernel, and
//! `socket(AF_INET, ...)` fails with `EAFNOSUPPORT` (see `syscall::net`). No card is ever
//! set up, and no smoltcp or virtio-net code is linked in.

use kiln_abi::cmdline::NetConfig;

use crate::machine::Machine;

/// A network card, as the full stack drives it (never used here).
pub trait NetDevice {
    /// The card's MAC address.
    fn mac(&self) -> [u8; 6];
    /// Copies the next received frame into `buf` and returns its length, or `None` when no
    /// frame is waiting.
    fn receive(&mut self, buf: &mut [u8]) -> Option<usize>;
    /// Sends one frame; `false` when it was dropped (transmit queue full).
    fn transmit(&mut self, frame: &[u8]) -> bool;
}

/// File type bits of a socket in `st_mode`.
pub const S_IFSOCK: u32 = 0o140000;

/// `POLLRDHUP`: the peer closed its writing side.
pub const POLLRDHUP: u16 = 0x2000;

/// Largest listen backlog, Linux's default `net.core.somaxconn` (what
/// `/proc/sys/net/core/somaxconn` says, as in the full kernel).
pub const SOMAXCONN: usize = 4096;

/// The process's network: no interface, no sockets.
#[derive(Default)]
pub struct Net;

impl Net {
    /// There is no interface to configure: `kiln.ip`, `kiln.gw` are ignored (`kiln.dns`
    /// still rewrites `/etc/resolv.conf`, which the kernel does at boot).
    pub fn configure(&self, _config: NetConfig) {}

    /// Nothing to run: never wants to run again.
    pub fn poll(&self, _m: &mut dyn Machine) -> Option<u64> {
        None
    }

    /// Never wants to run.
    pub fn next_poll(&self) -> Option<u64> {
        None
    }

    /// Nothing can be dirty.
    pub fn poll_if_dirty(&self, _m: &mut dyn Machine) {}

    /// Nothing to send or take in at the end of a system call.
    pub fn end_of_call(&self, _m: &mut dyn Machine) {}

    /// No stack to batch runs of.
    pub fn set_busy(&self, _busy: bool) {}

    /// No buffers.
    pub fn buffer_bytes(&self) -> usize {
        0
    }

    /// No interface, so no address.
    pub fn address(&self) -> Option<([u8; 4], u8)> {
        None
    }
}
