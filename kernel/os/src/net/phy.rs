//! The smoltcp device the interface runs on: the machine's network card, plus an in-memory
//! loop for frames the guest sends to itself (127.0.0.0/8 and its own addresses).
//!
//! Frames addressed to the interface's own MAC, and broadcast ARP requests for one of its own
//! addresses, never reach the card: they are queued and received again on the next poll. So
//! loopback traffic takes the same path as any other (ARP included) and needs no second
//! interface.
//!
//! The interface receives only from `rx`: the stack moves looped frames and frames from the
//! card there first, and looks at them before the interface does (`Stack::admit`).

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant;
use smoltcp::wire::Ipv4Address;

use super::NetDevice;

/// Largest Ethernet frame (1500-byte MTU plus the 14-byte header).
pub const MAX_FRAME: usize = 1514;
/// Frames the loop may hold; more are dropped (TCP retransmits).
const LOOP_LIMIT: usize = 1024;

/// The device handed to `Interface::poll`.
pub(super) struct Phy<'a> {
    /// The card, for sending.
    pub hw: Option<&'a mut dyn NetDevice>,
    /// Frames sent to the interface itself, received again on the next round.
    pub looped: &'a mut VecDeque<Vec<u8>>,
    /// Frames to receive now.
    pub rx: &'a mut VecDeque<Vec<u8>>,
    pub mac: [u8; 6],
    /// The interface's IPv4 addresses (127.0.0.0/8 is always its own).
    pub own: &'a [Ipv4Address],
}

/// Whether a frame the interface sends is for the interface itself.
pub(super) fn is_for_self(frame: &[u8], mac: &[u8; 6], own: &[Ipv4Address]) -> bool {
    if frame.len() < 14 {
        return false;
    }
    if frame[..6] == mac[..] {
        return true;
    }
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    if frame[..6] == [0xff; 6] && ethertype == 0x0806 && frame.len() >= 42 {
        let target = Ipv4Address::new(frame[38], frame[39], frame[40], frame[41]);
        return target.octets()[0] == 127 || own.contains(&target);
    }
    false
}

pub(super) struct Rx(Vec<u8>);

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

pub(super) struct Tx<'p, 'a> {
    phy: &'p mut Phy<'a>,
}

impl TxToken for Tx<'_, '_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.phy.send(buf);
        r
    }
}

impl Phy<'_> {
    /// Sends a frame the interface wrote: to the loop when it is for the interface itself,
    /// else to the card. Out of line: `consume` is instantiated for each of smoltcp's
    /// senders.
    #[inline(never)]
    fn send(&mut self, buf: Vec<u8>) {
        if is_for_self(&buf, &self.mac, self.own) {
            if self.looped.len() < LOOP_LIMIT {
                self.looped.push_back(buf);
            }
        } else if let Some(hw) = self.hw.as_deref_mut() {
            // A full transmit queue drops the frame, as a congested link would.
            let _ = hw.transmit(&buf);
        }
    }
}

impl<'a> Device for Phy<'a> {
    type RxToken<'b>
        = Rx
    where
        Self: 'b;
    type TxToken<'b>
        = Tx<'b, 'a>
    where
        Self: 'b;

    fn receive(&mut self, _now: Instant) -> Option<(Rx, Tx<'_, 'a>)> {
        let frame = self.rx.pop_front()?;
        Some((Rx(frame), Tx { phy: self }))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Tx<'_, 'a>> {
        Some(Tx { phy: self })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        caps.max_burst_size = None;
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_for_self_are_looped() {
        let mac = [2, 0, 0, 0, 0, 1];
        let own = [Ipv4Address::new(10, 0, 2, 15)];
        let mut f = vec![0u8; 42];
        f[..6].copy_from_slice(&mac);
        assert!(is_for_self(&f, &mac, &own));
        f[..6].copy_from_slice(&[0xff; 6]);
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        f[38..42].copy_from_slice(&[127, 0, 0, 1]);
        assert!(is_for_self(&f, &mac, &own));
        f[38..42].copy_from_slice(&[10, 0, 2, 15]);
        assert!(is_for_self(&f, &mac, &own));
        f[38..42].copy_from_slice(&[10, 0, 2, 2]);
        assert!(!is_for_self(&f, &mac, &own));
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[38..42].copy_from_slice(&[127, 0, 0, 1]);
        assert!(!is_for_self(&f, &mac, &own));
        assert!(!is_for_self(&[0; 10], &mac, &own));
    }
}
