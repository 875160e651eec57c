//! `AF_NETLINK` socket calls ([`NetlinkSocket`]): `socket(AF_NETLINK, SOCK_RAW or
//! SOCK_DGRAM, NETLINK_ROUTE)`, `bind`/`connect`/`getsockname` with a `sockaddr_nl`,
//! requests sent with `send`/`sendto`/`sendmsg`/`write` and answers received with
//! `recv`/`recvfrom`/`recvmsg`/`read` (from port 0, the kernel), and the options programs
//! set on such sockets. Other netlink families are refused with `EPROTONOSUPPORT`, logged
//! once by name.

use alloc::sync::Arc;
use alloc::vec;

use super::unix::MSG_TRUNC;
use super::{
    gather, get_msghdr, read_user, ret, scatter, write_user, MSG_DONTWAIT, MSG_PEEK, SOCK_CLOEXEC,
    SOCK_DGRAM, SOCK_NONBLOCK, SOL_SOCKET, SO_DOMAIN, SO_ERROR, SO_PROTOCOL, SO_RCVBUF, SO_SNDBUF,
    SO_TYPE,
};
use crate::errno::{Errno, KResult};
use crate::fd::netlink::NetlinkSocket;
use crate::fd::{OpenFile, O_NONBLOCK, O_RDWR};
use crate::machine::Machine;
use crate::process::{Outcome, Process};
use crate::sysno as nr;

/// `AF_NETLINK`.
pub const AF_NETLINK: u16 = 16;
/// `NETLINK_ROUTE`.
pub const NETLINK_ROUTE: u64 = 0;
/// `SOCK_RAW`.
const SOCK_RAW: u64 = 3;
/// `SOL_NETLINK`: its options (`NETLINK_EXT_ACK`, `NETLINK_GET_STRICT_CHK`, ...) are
/// accepted and change nothing here.
const SOL_NETLINK: u64 = 270;
/// Largest request one call takes.
const MAX_REQUEST: usize = 64 * 1024;
/// Largest answer one call copies out.
const MAX_ANSWER: usize = 64 * 1024;
/// The buffer sizes the socket reports (Linux's defaults).
const BUFFER: i32 = 212_992;

/// Handles `socket(AF_NETLINK)` and the calls on a netlink descriptor; `None` for
/// anything else.
pub fn handle(p: &mut Process, m: &mut dyn Machine, nr: u64, a: [u64; 6]) -> Option<Outcome> {
    match nr {
        nr::SOCKET if a[0] == u64::from(AF_NETLINK) => {
            return Some(ret(sys_socket(p, m, a[1], a[2])))
        }
        n if super::on_a_socket(n) => {}
        _ => return None,
    }
    let f = p.files.get(a[0] as i32).ok()?;
    let s = f.downcast_arc::<NetlinkSocket>()?;
    Some(match nr {
        nr::BIND => ret(sockaddr_nl(p, m, a[1], a[2]).map(|(port, groups)| {
            s.bind(port, groups);
            0
        })),
        // Only the kernel (port 0) answers.
        nr::CONNECT => ret(sockaddr_nl(p, m, a[1], a[2]).and_then(|(port, _)| {
            if port == 0 {
                Ok(0)
            } else {
                Err(Errno::ECONNREFUSED)
            }
        })),
        nr::LISTEN | nr::ACCEPT | nr::ACCEPT4 => ret(Err(Errno::EOPNOTSUPP)),
        nr::GETSOCKNAME => {
            let (port, groups) = s.name();
            ret(put_sockaddr_nl(p, m, a[1], a[2], port, groups).map(|_| 0))
        }
        nr::GETPEERNAME => ret(put_sockaddr_nl(p, m, a[1], a[2], 0, 0).map(|_| 0)),
        nr::SETSOCKOPT => ret(match a[1] {
            SOL_SOCKET | SOL_NETLINK => Ok(0),
            _ => Err(Errno::ENOPROTOOPT),
        }),
        nr::GETSOCKOPT => ret(sys_getsockopt(p, m, a[1], a[2], a[3], a[4])),
        nr::SHUTDOWN => ret(Ok(0)),
        nr::SENDTO => ret((|| {
            let mut data = vec![0u8; (a[2] as usize).min(MAX_REQUEST)];
            p.vm.copy_from_user(m.pages(), a[1], &mut data)?;
            s.send(m, &data).map(|n| n as i64)
        })()),
        nr::SENDMSG => ret((|| {
            let h = get_msghdr(p, m, a[1])?;
            let data = gather(p, m, &h.iov, MAX_REQUEST)?;
            s.send(m, &data).map(|n| n as i64)
        })()),
        nr::RECVFROM => {
            let (buf, len, flags, addr, len_ptr) = (a[1], a[2], a[3], a[4], a[5]);
            let r = (|| {
                let mut data = vec![0u8; (len as usize).min(MAX_ANSWER)];
                let (n, full) = s.recv(&mut data, flags & MSG_PEEK != 0)?;
                write_user(p, m, buf, &data[..n])?;
                if addr != 0 {
                    put_sockaddr_nl(p, m, addr, len_ptr, 0, 0)?;
                }
                Ok(result_len(flags, n, full))
            })();
            block(m, &f, flags, r)
        }
        nr::RECVMSG => {
            let (msg, flags) = (a[1], a[2]);
            let r = (|| {
                let h = get_msghdr(p, m, msg)?;
                let total: u64 = h.iov.iter().map(|&(_, l)| l).sum();
                let mut data = vec![0u8; (total as usize).min(MAX_ANSWER)];
                let (n, full) = s.recv(&mut data, flags & MSG_PEEK != 0)?;
                scatter(p, m, &h.iov, &data[..n])?;
                // The sender's address (the kernel), no ancillary data, MSG_TRUNC when
                // the datagram did not fit.
                if h.name != 0 {
                    put_sockaddr_nl(p, m, h.name, msg + 8, 0, 0)?;
                } else {
                    write_user(p, m, msg + 8, &0u32.to_le_bytes())?;
                }
                write_user(p, m, msg + 40, &0u64.to_le_bytes())?;
                let out_flags = if full > n { MSG_TRUNC as u32 } else { 0 };
                write_user(p, m, msg + 48, &out_flags.to_le_bytes())?;
                Ok(result_len(flags, n, full))
            })();
            block(m, &f, flags, r)
        }
        _ => unreachable!("filtered above"),
    })
}

fn sys_socket(p: &mut Process, m: &mut dyn Machine, ty: u64, protocol: u64) -> KResult<i64> {
    if ty & !(0xf | SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    if !matches!(ty & 0xf, SOCK_RAW | SOCK_DGRAM) {
        return Err(Errno::ESOCKTNOSUPPORT);
    }
    if protocol != NETLINK_ROUTE {
        const KEY: u64 = u64::MAX - 6;
        if p.unsupported_logged.insert(KEY) {
            m.log(format_args!(
                "socket(AF_NETLINK, protocol {protocol}): only NETLINK_ROUTE (interfaces and addresses) is supported: EPROTONOSUPPORT"
            ));
        }
        return Err(Errno::EPROTONOSUPPORT);
    }
    let s = Arc::new(NetlinkSocket::new(p.net.clone()));
    let flags = O_RDWR
        | if ty & SOCK_NONBLOCK != 0 {
            O_NONBLOCK
        } else {
            0
        };
    let path = alloc::format!("socket:[netlink {}]", s.waitable().id());
    let file = OpenFile::new(s, path, flags);
    p.files.install(file, ty & SOCK_CLOEXEC != 0).map(i64::from)
}

/// Reads a `sockaddr_nl`: (port id, groups).
fn sockaddr_nl(p: &mut Process, m: &mut dyn Machine, addr: u64, len: u64) -> KResult<(u32, u32)> {
    if len < 12 {
        return Err(Errno::EINVAL);
    }
    let b = read_user::<12>(p, m, addr)?;
    if u16::from_le_bytes([b[0], b[1]]) != AF_NETLINK {
        return Err(Errno::EINVAL);
    }
    let word = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    Ok((word(4), word(8)))
}

/// Writes a `sockaddr_nl` at `addr` and its length at `len_ptr`, cut to the length the
/// caller gave, as Linux does.
fn put_sockaddr_nl(
    p: &mut Process,
    m: &mut dyn Machine,
    addr: u64,
    len_ptr: u64,
    port: u32,
    groups: u32,
) -> KResult<()> {
    let given = u32::from_le_bytes(read_user::<4>(p, m, len_ptr)?) as usize;
    let mut b = [0u8; 12];
    b[..2].copy_from_slice(&AF_NETLINK.to_le_bytes());
    b[4..8].copy_from_slice(&port.to_le_bytes());
    b[8..].copy_from_slice(&groups.to_le_bytes());
    write_user(p, m, addr, &b[..given.min(12)])?;
    write_user(p, m, len_ptr, &12u32.to_le_bytes())
}

fn sys_getsockopt(
    p: &mut Process,
    m: &mut dyn Machine,
    level: u64,
    name: u64,
    val: u64,
    len_ptr: u64,
) -> KResult<i64> {
    let v: i32 = match (level, name) {
        (SOL_SOCKET, SO_TYPE) => SOCK_RAW as i32,
        (SOL_SOCKET, SO_ERROR) => 0,
        (SOL_SOCKET, SO_SNDBUF | SO_RCVBUF) => BUFFER,
        (SOL_SOCKET, SO_PROTOCOL) => NETLINK_ROUTE as i32,
        (SOL_SOCKET, SO_DOMAIN) => i32::from(AF_NETLINK),
        (SOL_NETLINK, _) => 0,
        _ => return Err(Errno::ENOPROTOOPT),
    };
    let given = u32::from_le_bytes(read_user::<4>(p, m, len_ptr)?) as usize;
    write_user(p, m, val, &v.to_le_bytes()[..given.min(4)])?;
    write_user(p, m, len_ptr, &(given.min(4) as u32).to_le_bytes())?;
    Ok(0)
}

/// What a receive returns: the bytes copied, or with `MSG_TRUNC` the datagram's length.
fn result_len(flags: u64, n: usize, full: usize) -> i64 {
    if flags & MSG_TRUNC != 0 {
        full as i64
    } else {
        n as i64
    }
}

/// An empty queue on a blocking socket waits for an answer (which only this process's
/// own requests bring: the file layer's wait says so when nothing else could end it).
fn block(m: &mut dyn Machine, f: &OpenFile, flags: u64, r: KResult<i64>) -> Outcome {
    if r != Err(Errno::EAGAIN) || flags & MSG_DONTWAIT != 0 || f.nonblock() {
        return ret(r);
    }
    f.block_on_eagain(m, r)
}

#[cfg(test)]
mod tests;
