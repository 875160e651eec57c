//! The routing netlink protocol (`NETLINK_ROUTE`), as far as programs use it to learn the
//! machine's network interfaces and routes: `RTM_GETLINK` and `RTM_GETADDR`, dumped or
//! (links) asked for by index, and `RTM_GETROUTE` dumped (the main table: the interface's
//! subnet and the default route). glibc's `getifaddrs`, Go's `net.Interfaces` and
//! `net.InterfaceAddrs`, and `ip link`/`ip addr`/`ip route` ask this way. Other dumps
//! (neighbours, rules) answer empty;
//! requests to change anything are refused with `EOPNOTSUPP`. No multicast groups: nothing
//! changes after boot that a listener would hear about.
//!
//! Messages follow `linux/netlink.h` and `linux/rtnetlink.h`: a 16-byte `nlmsghdr`, the
//! family header (`ifinfomsg`, `ifaddrmsg`), then attributes (`rtattr`), each padded to 4
//! bytes.

use alloc::vec::Vec;

/// `NLMSG_ERROR`: an error (or, with error 0, an acknowledgement).
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: the end of a dump.
pub const NLMSG_DONE: u16 = 3;
/// `RTM_NEWLINK`: a link, in answers.
pub const RTM_NEWLINK: u16 = 16;
/// `RTM_GETLINK`.
pub const RTM_GETLINK: u16 = 18;
/// `RTM_NEWADDR`: an address, in answers.
pub const RTM_NEWADDR: u16 = 20;
/// `RTM_GETADDR`.
pub const RTM_GETADDR: u16 = 22;
/// `RTM_NEWROUTE`: a route, in answers.
pub const RTM_NEWROUTE: u16 = 24;
/// `RTM_GETROUTE`.
pub const RTM_GETROUTE: u16 = 26;

/// `NLM_F_REQUEST`.
pub const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_MULTI`: part of a multi-message answer.
pub const NLM_F_MULTI: u16 = 0x2;
/// `NLM_F_ACK`: the sender wants an acknowledgement.
pub const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
pub const NLM_F_DUMP: u16 = 0x300;

const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const ARPHRD_ETHER: u16 = 1;
const ARPHRD_LOOPBACK: u16 = 772;
const IFF_UP: u32 = 0x1;
const IFF_BROADCAST: u32 = 0x2;
const IFF_LOOPBACK: u32 = 0x8;
const IFF_RUNNING: u32 = 0x40;
const IFF_MULTICAST: u32 = 0x1000;
const IFF_LOWER_UP: u32 = 0x1_0000;
const IFLA_ADDRESS: u16 = 1;
const IFLA_BROADCAST: u16 = 2;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_TXQLEN: u16 = 13;
const IFLA_OPERSTATE: u16 = 16;
/// `struct rtnl_link_stats64`: 24 counters (`ip -s link`, `ifconfig`).
const IFLA_STATS64: u16 = 23;
/// `IF_OPER_UP`.
const OPER_UP: u8 = 6;
/// `IF_OPER_UNKNOWN`, what Linux reports for loopback.
const OPER_UNKNOWN: u8 = 0;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_LABEL: u16 = 3;
const IFA_BROADCAST: u16 = 4;
const IFA_F_PERMANENT: u8 = 0x80;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RT_SCOPE_HOST: u8 = 254;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_KERNEL: u8 = 2;
const RTPROT_BOOT: u8 = 3;
const RTN_UNICAST: u8 = 1;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PREFSRC: u16 = 7;
const RTA_TABLE: u16 = 15;

const EOPNOTSUPP: i32 = 95;
const ENODEV: i32 = 19;
const EINVAL: i32 = 22;

/// One network interface as netlink describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index (1 for loopback).
    pub index: u32,
    /// Its name (`lo`, `eth0`).
    pub name: &'static str,
    /// Hardware address (zeros for loopback).
    pub mac: [u8; 6],
    /// Whether it is the loopback interface.
    pub loopback: bool,
    /// Largest packet it sends.
    pub mtu: u32,
    /// Its IPv4 address and prefix length, if it has one.
    pub addr: Option<([u8; 4], u8)>,
    /// Frames and bytes received and sent: `(rx_packets, tx_packets, rx_bytes, tx_bytes)`.
    pub counts: (u64, u64, u64, u64),
}

impl Link {
    /// The loopback interface, `lo` (index 1, 127.0.0.1/8).
    pub fn loopback() -> Link {
        Link {
            index: 1,
            name: "lo",
            mac: [0; 6],
            loopback: true,
            mtu: 65536,
            addr: Some(([127, 0, 0, 1], 8)),
            counts: (0, 0, 0, 0),
        }
    }

    /// Its hardware type (`ARPHRD_*`).
    pub fn hw_type(&self) -> u16 {
        if self.loopback {
            ARPHRD_LOOPBACK
        } else {
            ARPHRD_ETHER
        }
    }

    /// Its `IFF_*` flags: up and running, and loopback or broadcast-capable.
    pub fn flags(&self) -> u32 {
        let kind = if self.loopback {
            IFF_LOOPBACK
        } else {
            IFF_BROADCAST | IFF_MULTICAST
        };
        kind | IFF_UP | IFF_RUNNING | IFF_LOWER_UP
    }

    /// Its IPv4 netmask and broadcast address (loopback has no broadcast), if it has an
    /// address.
    pub fn mask_and_broadcast(&self) -> Option<([u8; 4], Option<[u8; 4]>)> {
        let (ip, prefix) = self.addr?;
        let host_bits = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
        let broadcast = (u32::from_be_bytes(ip) | host_bits).to_be_bytes();
        Some((
            (!host_bits).to_be_bytes(),
            (!self.loopback).then_some(broadcast),
        ))
    }
}

/// The answer to the messages in `request` (from a socket whose port id is `port`), as
/// the messages' bytes one after the other, for the interfaces `links` and the default
/// route's `gateway`. Malformed trailing bytes are ignored, as Linux does; a message too
/// short for its type gets an `EINVAL` error message.
pub fn answer(request: &[u8], links: &[Link], gateway: Option<[u8; 4]>, port: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(hdr) = request.get(at..at + 16) {
        let len = u32_at(hdr, 0) as usize;
        if len < 16 || at + len > request.len() {
            break;
        }
        let msg = &request[at..at + len];
        let (ty, flags, seq) = (u16_at(hdr, 4), u16_at(hdr, 6), u32_at(hdr, 8));
        let reply = Reply { seq, port };
        let body = &msg[16..];
        match ty {
            RTM_GETLINK if flags & NLM_F_DUMP != 0 => {
                for l in links {
                    reply.link(&mut out, l, NLM_F_MULTI);
                }
                reply.done(&mut out);
            }
            RTM_GETLINK => match body.get(4..8).map(|b| u32_at(b, 0)) {
                None => reply.error(&mut out, -EINVAL, msg),
                Some(index) => match links.iter().find(|l| l.index == index) {
                    Some(l) => {
                        reply.link(&mut out, l, 0);
                        if flags & NLM_F_ACK != 0 {
                            reply.error(&mut out, 0, msg);
                        }
                    }
                    None => reply.error(&mut out, -ENODEV, msg),
                },
            },
            RTM_GETADDR if flags & NLM_F_DUMP != 0 => {
                // A filter on another family (IPv6) finds nothing.
                let family = body.first().copied().unwrap_or(AF_UNSPEC);
                if family == AF_UNSPEC || family == AF_INET {
                    for l in links {
                        reply.addr(&mut out, l);
                    }
                }
                reply.done(&mut out);
            }
            RTM_GETROUTE if flags & NLM_F_DUMP != 0 => {
                let family = body.first().copied().unwrap_or(AF_UNSPEC);
                if family == AF_UNSPEC || family == AF_INET {
                    for l in links.iter().filter(|l| !l.loopback) {
                        reply.routes(&mut out, l, gateway);
                    }
                }
                reply.done(&mut out);
            }
            // Other "get" requests (neighbours 30, rules 34, ...), dumped: none.
            t if t >= RTM_NEWLINK && t % 4 == 2 && flags & NLM_F_DUMP != 0 => reply.done(&mut out),
            // Changes, and anything else.
            _ => reply.error(&mut out, -EOPNOTSUPP, msg),
        }
        at += align(len);
    }
    out
}

/// Splits an answer into datagrams of at most `max` bytes at message boundaries (a
/// message longer than `max` is a datagram of its own).
pub fn datagrams(answer: &[u8], max: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut at = 0;
    while let Some(hdr) = answer.get(at..at + 16) {
        let len = align(u32_at(hdr, 0) as usize)
            .max(16)
            .min(answer.len() - at);
        let msg = &answer[at..at + len];
        match out.last_mut() {
            Some(d) if d.len() + len <= max => d.extend_from_slice(msg),
            _ => out.push(msg.to_vec()),
        }
        at += len;
    }
    out
}

/// Who an answer goes to.
struct Reply {
    seq: u32,
    port: u32,
}

impl Reply {
    /// Appends a message of type `ty` whose body `body` writes.
    fn message(&self, out: &mut Vec<u8>, ty: u16, flags: u16, body: impl FnOnce(&mut Vec<u8>)) {
        let start = out.len();
        out.extend_from_slice(&[0; 16]);
        body(out);
        let len = (out.len() - start) as u32;
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4..start + 6].copy_from_slice(&ty.to_le_bytes());
        out[start + 6..start + 8].copy_from_slice(&flags.to_le_bytes());
        out[start + 8..start + 12].copy_from_slice(&self.seq.to_le_bytes());
        out[start + 12..start + 16].copy_from_slice(&self.port.to_le_bytes());
        out.resize(start + align(len as usize), 0);
    }

    fn done(&self, out: &mut Vec<u8>) {
        self.message(out, NLMSG_DONE, NLM_F_MULTI, |b| {
            b.extend_from_slice(&0i32.to_le_bytes())
        });
    }

    /// An error message (`error` negative) or an acknowledgement (0), quoting the header
    /// of the message it answers.
    fn error(&self, out: &mut Vec<u8>, error: i32, msg: &[u8]) {
        self.message(out, NLMSG_ERROR, 0, |b| {
            b.extend_from_slice(&error.to_le_bytes());
            b.extend_from_slice(&msg[..16]);
        });
    }

    fn link(&self, out: &mut Vec<u8>, l: &Link, flags: u16) {
        self.message(out, RTM_NEWLINK, flags, |b| {
            // ifinfomsg: family, pad, type, index, flags, change.
            b.extend_from_slice(&[AF_UNSPEC, 0]);
            b.extend_from_slice(&l.hw_type().to_le_bytes());
            b.extend_from_slice(&l.index.to_le_bytes());
            b.extend_from_slice(&l.flags().to_le_bytes());
            b.extend_from_slice(&u32::MAX.to_le_bytes());
            attr(b, IFLA_IFNAME, &name_z(l.name));
            attr(b, IFLA_ADDRESS, &l.mac);
            let broadcast = if l.loopback { [0; 6] } else { [0xff; 6] };
            attr(b, IFLA_BROADCAST, &broadcast);
            attr(b, IFLA_MTU, &l.mtu.to_le_bytes());
            attr(b, IFLA_TXQLEN, &1000u32.to_le_bytes());
            let oper = if l.loopback { OPER_UNKNOWN } else { OPER_UP };
            attr(b, IFLA_OPERSTATE, &[oper]);
            let (rx_packets, tx_packets, rx_bytes, tx_bytes) = l.counts;
            let mut stats = [0u8; 24 * 8];
            for (i, v) in [rx_packets, tx_packets, rx_bytes, tx_bytes]
                .iter()
                .enumerate()
            {
                stats[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
            }
            attr(b, IFLA_STATS64, &stats);
        });
    }

    fn addr(&self, out: &mut Vec<u8>, l: &Link) {
        let Some((ip, prefix)) = l.addr else { return };
        self.message(out, RTM_NEWADDR, NLM_F_MULTI, |b| {
            let scope = if l.loopback {
                RT_SCOPE_HOST
            } else {
                RT_SCOPE_UNIVERSE
            };
            // ifaddrmsg: family, prefix length, flags, scope, index.
            b.extend_from_slice(&[AF_INET, prefix, IFA_F_PERMANENT, scope]);
            b.extend_from_slice(&l.index.to_le_bytes());
            attr(b, IFA_ADDRESS, &ip);
            attr(b, IFA_LOCAL, &ip);
            if let Some((_, Some(broadcast))) = l.mask_and_broadcast() {
                attr(b, IFA_BROADCAST, &broadcast);
            }
            attr(b, IFA_LABEL, &name_z(l.name));
        });
    }
}

impl Reply {
    /// The main table's routes through `l`: its subnet (`proto kernel scope link`), and
    /// the default route when `gateway` is on it.
    fn routes(&self, out: &mut Vec<u8>, l: &Link, gateway: Option<[u8; 4]>) {
        let Some(((ip, prefix), (mask, _))) = l.addr.zip(l.mask_and_broadcast()) else {
            return;
        };
        let net = (u32::from_be_bytes(ip) & u32::from_be_bytes(mask)).to_be_bytes();
        let route =
            |out: &mut Vec<u8>, dst_len: u8, proto: u8, scope: u8, attrs: &[(u16, [u8; 4])]| {
                self.message(out, RTM_NEWROUTE, NLM_F_MULTI, |b| {
                    // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
                    b.extend_from_slice(&[AF_INET, dst_len, 0, 0, RT_TABLE_MAIN, proto, scope]);
                    b.push(RTN_UNICAST);
                    b.extend_from_slice(&0u32.to_le_bytes());
                    attr(b, RTA_TABLE, &u32::from(RT_TABLE_MAIN).to_le_bytes());
                    for (ty, v) in attrs {
                        attr(b, *ty, v);
                    }
                    attr(b, RTA_OIF, &l.index.to_le_bytes());
                });
            };
        if let Some(gw) = gateway {
            route(out, 0, RTPROT_BOOT, RT_SCOPE_UNIVERSE, &[(RTA_GATEWAY, gw)]);
        }
        let link = [(RTA_DST, net), (RTA_PREFSRC, ip)];
        route(out, prefix, RTPROT_KERNEL, RT_SCOPE_LINK, &link);
    }
}

/// Appends an attribute, padded to 4 bytes.
fn attr(b: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = 4 + data.len();
    b.extend_from_slice(&(len as u16).to_le_bytes());
    b.extend_from_slice(&ty.to_le_bytes());
    b.extend_from_slice(data);
    b.resize(b.len() + align(len) - len, 0);
}

/// `name` with its terminating NUL.
fn name_z(name: &str) -> Vec<u8> {
    let mut v = Vec::from(name.as_bytes());
    v.push(0);
    v
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests;
