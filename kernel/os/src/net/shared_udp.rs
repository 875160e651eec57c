//! UDP ports shared by several sockets (`SO_REUSEADDR` on each, or `SO_REUSEPORT`).
//!
//! smoltcp hands a datagram to the first of its sockets bound to the port, whatever else
//! is bound there. Linux gives it to the socket that matches best: one connected to the
//! sender before one that is not, one bound to the datagram's destination address before
//! one bound to any address. iperf3's UDP mode relies on it: it connects the socket the
//! first datagram came to, and binds a new one to the same port for the next client.
//!
//! So after each run of the interface, the datagrams queued in the smoltcp sockets of a
//! shared port are taken out and queued on the socket that matches best ([`receiver`]);
//! `recv` and readiness look at that queue before the smoltcp socket's own. A port bound
//! once behaves as before, without the copy.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use smoltcp::socket::udp;
use smoltcp::wire::IpAddress;

use super::{Kind, SockAddr, Stack, UDP_BYTES, UDP_RX_PACKETS};

/// A datagram taken from a shared port for one socket.
#[derive(Debug)]
pub(super) struct Datagram {
    pub data: Vec<u8>,
    pub from: SockAddr,
    /// The address it was sent to (`IP_PKTINFO`).
    pub to: Option<[u8; 4]>,
}

/// The datagrams queued for one socket of a shared port, bounded as a smoltcp socket's
/// receive buffer is (count and bytes).
#[derive(Debug, Default)]
pub(super) struct Queue {
    datagrams: VecDeque<Datagram>,
    bytes: usize,
}

impl Queue {
    /// The next datagram.
    pub fn front(&self) -> Option<&Datagram> {
        self.datagrams.front()
    }

    /// Takes the next datagram.
    pub fn pop(&mut self) -> Option<Datagram> {
        let d = self.datagrams.pop_front()?;
        self.bytes -= d.data.len();
        Some(d)
    }

    /// Queues `d`, or drops it when the queue is full (as a full socket buffer does).
    fn push(&mut self, d: Datagram) {
        if self.datagrams.len() < UDP_RX_PACKETS && self.bytes + d.data.len() <= UDP_BYTES {
            self.bytes += d.data.len();
            self.datagrams.push_back(d);
        }
    }
}

/// A socket bound to a UDP port: its descriptor id, local address and connected peer.
pub(super) type Member = (u64, SockAddr, Option<SockAddr>);

/// Which of `members` takes a datagram from `from` to `to`: among those bound to its port
/// and address (or any address) and not connected to another peer, the one connected to
/// `from` first, then one bound to `to` itself; of equals, the socket made last (as Linux
/// finds the last bound first). `None` when no socket takes it.
pub(super) fn receiver(
    members: &[Member],
    port: u16,
    from: SockAddr,
    to: Option<[u8; 4]>,
) -> Option<u64> {
    members
        .iter()
        .filter(|(_, local, peer)| {
            local.port == port
                && (local.ip == [0; 4] || Some(local.ip) == to)
                && peer.is_none_or(|p| p == from)
        })
        .max_by_key(|(id, local, peer)| (peer.is_some(), local.ip != [0; 4], *id))
        .map(|m| m.0)
}

impl Stack {
    /// Moves the datagrams of shared ports to the sockets that match them best (see the
    /// module documentation). Cheap when no port is shared.
    pub(super) fn share_datagrams(&mut self) {
        if !self.shared_udp {
            return;
        }
        let members: Vec<(Member, super::Slot)> = self
            .socks
            .iter()
            .filter_map(|(&id, s)| match (&s.kind, s.local) {
                (Kind::Udp(Some(h)), Some(l)) => Some(((id, l, s.peer), *h)),
                _ => None,
            })
            .collect();
        let bound: Vec<Member> = members.iter().map(|m| m.0).collect();
        let shared = |port: u16| bound.iter().filter(|m| m.1.port == port).count() > 1;
        if !bound.iter().any(|m| shared(m.1.port)) {
            // The sockets sharing a port are gone.
            self.shared_udp = false;
            return;
        }
        let Stack { socks, sockets, .. } = self;
        for &((_, local, _), h) in &members {
            if !shared(local.port) {
                continue;
            }
            let u = sockets.get_mut::<udp::Socket>(h);
            while let Ok((data, meta)) = u.recv() {
                let from = SockAddr::from_endpoint(meta.endpoint);
                let to = meta.local_address.map(|a| match a {
                    IpAddress::Ipv4(v4) => v4.octets(),
                });
                let Some(id) = receiver(&bound, local.port, from, to) else {
                    continue;
                };
                let mut copy = Vec::new();
                if copy.try_reserve_exact(data.len()).is_err() {
                    continue;
                }
                copy.extend_from_slice(data);
                if let Some(sock) = socks.get_mut(&id) {
                    sock.shared_rx.push(Datagram {
                        data: copy,
                        from,
                        to,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(ip: [u8; 4], port: u16) -> SockAddr {
        SockAddr { ip, port }
    }

    #[test]
    fn the_best_match_takes_the_datagram() {
        let client = a([10, 0, 2, 2], 40000);
        let other = a([10, 0, 2, 2], 40001);
        let any = a([0; 4], 5201);
        let own = a([10, 0, 2, 15], 5201);
        // iperf3: the first socket is connected to its client, the second waits for more.
        let members = [(3, any, Some(client)), (4, any, None)];
        let to = Some([10, 0, 2, 15]);
        assert_eq!(receiver(&members, 5201, client, to), Some(3));
        assert_eq!(receiver(&members, 5201, other, to), Some(4));
        assert_eq!(receiver(&members, 5202, client, to), None);
        // Bound to the destination beats bound to any address; of equals, the newest.
        let members = [(3, own, None), (4, any, None), (5, any, None)];
        assert_eq!(receiver(&members, 5201, other, to), Some(3));
        assert_eq!(
            receiver(&members, 5201, other, Some([127, 0, 0, 1])),
            Some(5)
        );
        // Connected elsewhere only: nobody takes it.
        let members = [(3, any, Some(client))];
        assert_eq!(receiver(&members, 5201, other, to), None);
    }

    #[test]
    fn a_full_queue_drops_what_does_not_fit() {
        let mut q = Queue::default();
        let d = |n: usize| Datagram {
            data: alloc::vec![0; n],
            from: a([127, 0, 0, 1], 1),
            to: None,
        };
        q.push(d(UDP_BYTES - 10));
        q.push(d(11));
        q.push(d(10));
        assert_eq!(q.pop().map(|d| d.data.len()), Some(UDP_BYTES - 10));
        assert_eq!(q.pop().map(|d| d.data.len()), Some(10));
        assert!(q.pop().is_none());
        for _ in 0..UDP_RX_PACKETS + 5 {
            q.push(d(1));
        }
        assert_eq!(q.datagrams.len(), UDP_RX_PACKETS);
    }
}
