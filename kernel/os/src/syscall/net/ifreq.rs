//! The interface `ioctl`s on a socket (`SIOCGIF*`, `struct ifreq` and `struct ifconf`):
//! the older way to ask what netlink answers ([`crate::net::netlink`]), still used by
//! glibc's `if_nametoindex`/`if_indextoname`, `ifconfig`, `ip` (the transmit queue length)
//! and runtimes such as the JVM's. They read the same interfaces (`Net::links`); the ones
//! that would change an interface are refused with `EPERM` (configuration comes from the
//! command line).

use alloc::vec::Vec;

use super::{read_user, write_user};
use crate::errno::{Errno, KResult};
use crate::machine::Machine;
use crate::net::netlink::Link;
use crate::process::Process;

/// `SIOCGIFNAME`: the name of the interface with index `ifr_ifindex`.
const SIOCGIFNAME: u32 = 0x8910;
/// `SIOCGIFCONF`: every interface with an address.
const SIOCGIFCONF: u32 = 0x8912;
const SIOCGIFFLAGS: u32 = 0x8913;
const SIOCGIFADDR: u32 = 0x8915;
const SIOCGIFBRDADDR: u32 = 0x8919;
const SIOCGIFNETMASK: u32 = 0x891b;
const SIOCGIFMETRIC: u32 = 0x891d;
const SIOCGIFMTU: u32 = 0x8921;
const SIOCGIFHWADDR: u32 = 0x8927;
const SIOCGIFINDEX: u32 = 0x8933;
const SIOCGIFTXQLEN: u32 = 0x8942;
/// The requests that change an interface (`SIOCSIFFLAGS`, `SIOCSIFADDR`, `SIOCSIFDSTADDR`,
/// `SIOCSIFBRDADDR`, `SIOCSIFNETMASK`, `SIOCSIFMETRIC`, `SIOCSIFMTU`, `SIOCSIFNAME`,
/// `SIOCSIFHWADDR`, `SIOCSIFTXQLEN`).
const SETS: [u32; 10] = [
    0x8914, 0x8916, 0x8918, 0x891a, 0x891c, 0x891e, 0x8922, 0x8923, 0x8924, 0x8943,
];
/// `struct ifreq`: a 16-byte name, then a 24-byte union.
const IFREQ: usize = 40;

/// Whether `req` is an interface request (`0x8910..=0x89ff`, the socket ioctls).
pub fn is_interface_request(req: u32) -> bool {
    (0x8910..=0x89ff).contains(&req)
}

/// Serves interface request `req` with argument `arg`.
pub fn ioctl(p: &mut Process, m: &mut dyn Machine, req: u32, arg: u64) -> KResult<i64> {
    let links = p.net.links(m);
    if req == SIOCGIFCONF {
        return ifconf(p, m, &links, arg);
    }
    let mut r = read_user::<IFREQ>(p, m, arg)?;
    if req == SIOCGIFNAME {
        let index = u32::from_le_bytes([r[16], r[17], r[18], r[19]]);
        let l = links
            .iter()
            .find(|l| l.index == index)
            .ok_or(Errno::ENODEV)?;
        r[..16].fill(0);
        r[..l.name.len()].copy_from_slice(l.name.as_bytes());
        write_user(p, m, arg, &r)?;
        return Ok(0);
    }
    let name = &r[..16];
    let len = name.iter().position(|&b| b == 0).unwrap_or(16);
    let link = links
        .iter()
        .find(|l| l.name.as_bytes() == &name[..len])
        .ok_or(Errno::ENODEV)?;
    let data = &mut r[16..];
    data.fill(0);
    let int = |data: &mut [u8], v: u32| data[..4].copy_from_slice(&v.to_le_bytes());
    match req {
        SIOCGIFFLAGS => data[..2].copy_from_slice(&(link.flags() as u16).to_le_bytes()),
        SIOCGIFADDR => sockaddr_in(data, link.addr.ok_or(Errno::EADDRNOTAVAIL)?.0),
        SIOCGIFNETMASK => {
            let (mask, _) = link.mask_and_broadcast().ok_or(Errno::EADDRNOTAVAIL)?;
            sockaddr_in(data, mask)
        }
        SIOCGIFBRDADDR => match link.mask_and_broadcast() {
            Some((_, Some(b))) => sockaddr_in(data, b),
            _ => return Err(Errno::EADDRNOTAVAIL),
        },
        SIOCGIFMETRIC => int(data, 0),
        SIOCGIFMTU => int(data, link.mtu),
        SIOCGIFINDEX => int(data, link.index),
        SIOCGIFTXQLEN => int(data, 1000),
        SIOCGIFHWADDR => {
            data[..2].copy_from_slice(&link.hw_type().to_le_bytes());
            data[2..8].copy_from_slice(&link.mac);
        }
        _ if SETS.contains(&req) => return Err(Errno::EPERM),
        _ => return Err(Errno::EINVAL),
    }
    write_user(p, m, arg, &r)?;
    Ok(0)
}

/// `SIOCGIFCONF`: an `ifreq` with the address of each interface that has one, as far as
/// `ifc_len` allows; with a null buffer, only the length needed.
fn ifconf(p: &mut Process, m: &mut dyn Machine, links: &[Link], arg: u64) -> KResult<i64> {
    let c = read_user::<16>(p, m, arg)?;
    let len = i32::from_le_bytes([c[0], c[1], c[2], c[3]]).max(0) as usize;
    let buf = u64::from_le_bytes(c[8..16].try_into().expect("8 bytes"));
    let mut out = Vec::new();
    for l in links {
        let Some((ip, _)) = l.addr else { continue };
        let mut r = [0u8; IFREQ];
        r[..l.name.len()].copy_from_slice(l.name.as_bytes());
        sockaddr_in(&mut r[16..], ip);
        out.extend_from_slice(&r);
    }
    let n = if buf == 0 {
        out.len()
    } else {
        let n = out.len().min(len / IFREQ * IFREQ);
        write_user(p, m, buf, &out[..n])?;
        n
    };
    write_user(p, m, arg, &(n as i32).to_le_bytes())?;
    Ok(0)
}

/// Writes a `sockaddr_in` for `ip` (port 0).
fn sockaddr_in(data: &mut [u8], ip: [u8; 4]) {
    data[..2].copy_from_slice(&2u16.to_le_bytes());
    data[4..8].copy_from_slice(&ip);
}

#[cfg(test)]
mod tests;
