//! Socket system calls (IPv4 TCP and UDP) over [`crate::net`]: the Linux ABI side
//! (`sockaddr_in`, `msghdr`, option encodings, flags) and blocking.
//!
//! `AF_UNIX` socket pairs are in [`unix`], `AF_NETLINK` sockets (the interfaces) in `netlink`.
//!
//! `read`, `write`, `readv` and `writev` on sockets go through the file layer
//! ([`crate::fd::OpenFile`]); everything socket-specific is here. A call that cannot finish
//! on a blocking socket waits on the socket's channel and runs again when woken
//! (`SO_RCVTIMEO`/`SO_SNDTIMEO` bound the wait with `EAGAIN`).
#![cfg_attr(not(feature = "net"), allow(dead_code, unused_imports))]

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use crate::errno::{Errno, KResult};
use crate::fd::{OpenFile, O_NONBLOCK, O_RDWR};
use crate::machine::Machine;
#[cfg(feature = "net")]
use crate::net::{Connect, SockAddr, Socket};
use crate::process::{Channel, Outcome, Process, Wait};
use crate::sysno as nr;

use super::{read_user, ret, write_user};

/// `AF_UNSPEC`.
pub const AF_UNSPEC: u16 = 0;
/// `AF_INET`.
pub const AF_INET: u16 = 2;
/// `SOCK_STREAM`.
pub const SOCK_STREAM: u64 = 1;
/// `SOCK_DGRAM`.
pub const SOCK_DGRAM: u64 = 2;
/// `SOCK_NONBLOCK` (same bit as `O_NONBLOCK`).
pub const SOCK_NONBLOCK: u64 = 0o4000;
/// `SOCK_CLOEXEC` (same bit as `O_CLOEXEC`).
pub const SOCK_CLOEXEC: u64 = 0o2000000;
/// `MSG_PEEK`.
pub const MSG_PEEK: u64 = 0x2;
/// `MSG_DONTWAIT`.
pub const MSG_DONTWAIT: u64 = 0x40;
/// `MSG_ERRQUEUE`: read the socket's queue of ICMP errors (`IP_RECVERR`).
const MSG_ERRQUEUE: u64 = 0x2000;

const IPPROTO_IP: u64 = 0;
/// `IPPROTO_ICMP`: with `SOCK_DGRAM`, a ping socket.
const IPPROTO_ICMP: u64 = 1;
const IPPROTO_TCP: u64 = 6;
const IPPROTO_UDP: u64 = 17;
const SOL_SOCKET: u64 = 1;

const SO_REUSEADDR: u64 = 2;
const SO_TYPE: u64 = 3;
const SO_ERROR: u64 = 4;
const SO_DONTROUTE: u64 = 5;
const SO_BROADCAST: u64 = 6;
const SO_SNDBUF: u64 = 7;
const SO_RCVBUF: u64 = 8;
const SO_KEEPALIVE: u64 = 9;
const SO_OOBINLINE: u64 = 10;
const SO_LINGER: u64 = 13;
const SO_REUSEPORT: u64 = 15;
const SO_RCVLOWAT: u64 = 18;
const SO_SNDLOWAT: u64 = 19;
const SO_RCVTIMEO: u64 = 20;
const SO_SNDTIMEO: u64 = 21;
/// `SO_TIMESTAMP` (`SO_TIMESTAMP_OLD`): a `struct timeval` control message per datagram.
const SO_TIMESTAMP: u64 = 29;
const SO_ACCEPTCONN: u64 = 30;
const SO_PROTOCOL: u64 = 38;
const SO_DOMAIN: u64 = 39;

const TCP_NODELAY: u64 = 1;
const TCP_MAXSEG: u64 = 2;
const TCP_KEEPIDLE: u64 = 4;
const TCP_KEEPINTVL: u64 = 5;
const TCP_KEEPCNT: u64 = 6;
const TCP_CORK: u64 = 3;
const TCP_DEFER_ACCEPT: u64 = 9;
const TCP_INFO: u64 = 11;
const TCP_QUICKACK: u64 = 12;
const TCP_CONGESTION: u64 = 13;
const TCP_USER_TIMEOUT: u64 = 18;
const TCP_FASTOPEN: u64 = 23;
const TCP_FASTOPEN_CONNECT: u64 = 30;
/// Size of Linux 6.1's `struct tcp_info`.
const TCP_INFO_SIZE: usize = 232;
/// `SO_PRIORITY`.
const SO_PRIORITY: u64 = 12;
const IP_BIND_ADDRESS_NO_PORT: u64 = 24;
const IP_MULTICAST_TTL: u64 = 33;
const IP_MULTICAST_LOOP: u64 = 34;

const IP_TOS: u64 = 1;
const IP_TTL: u64 = 2;
const IP_PKTINFO: u64 = 8;
const IP_MTU_DISCOVER: u64 = 10;
const IP_RECVERR: u64 = 11;
/// `msg_flags`: control data did not fit.
const MSG_CTRUNC: u32 = 0x8;

/// Largest amount one send call copies in (it may queue less; the rest is a short write).
const MAX_SEND: usize = 256 * 1024;
/// Largest amount one receive call copies out.
const MAX_RECV: usize = 256 * 1024;

/// Handles the socket calls; `None` for numbers this family does not own.
#[inline(never)]
pub fn handle(p: &mut Process, m: &mut dyn Machine, nr: u64, a: [u64; 6]) -> Option<Outcome> {
    if nr == nr::SENDMMSG || nr == nr::RECVMMSG {
        return Some(many_messages(p, m, nr, a));
    }
    if let Some(out) = unix::handle(p, m, nr, a) {
        return Some(out);
    }
    #[cfg(feature = "net")]
    if let Some(out) = netlink::handle(p, m, nr, a) {
        return Some(out);
    }
    inet(p, m, nr, a)
}

/// `MSG_WAITFORONE`: `recvmmsg` waits for the first datagram only.
const MSG_WAITFORONE: u64 = 0x10000;
/// Size of `struct mmsghdr`: a `msghdr` and the length sent or received (padded).
const MMSGHDR_SIZE: u64 = 64;
/// Offset of `msg_len` in `struct mmsghdr`.
const MMSG_LEN: u64 = 56;
/// Most messages one `sendmmsg`/`recvmmsg` handles (`UIO_MAXIOV`).
const MMSG_MAX: u64 = 1024;

/// `sendmmsg` and `recvmmsg` (glibc's resolver sends its A and AAAA questions with one
/// `sendmmsg`): `sendmsg`/`recvmsg` for each message of the vector in turn, whatever the
/// socket's family. Only the first may wait; the count done so far is returned at the
/// first message that would wait or fails (its error when it is the first). `recvmmsg`'s
/// timeout is not applied: after the first datagram it takes only those already queued,
/// as with `MSG_WAITFORONE`.
fn many_messages(p: &mut Process, m: &mut dyn Machine, nr: u64, a: [u64; 6]) -> Outcome {
    let one = if nr == nr::SENDMMSG {
        nr::SENDMSG
    } else {
        nr::RECVMSG
    };
    let (vec, count, flags) = (a[1], a[2].min(MMSG_MAX), a[3] & !MSG_WAITFORONE);
    let mut done = 0;
    while done < count {
        let msg = vec + done * MMSGHDR_SIZE;
        let f = if done == 0 {
            flags
        } else {
            flags | MSG_DONTWAIT
        };
        match handle(p, m, one, [a[0], msg, f, 0, 0, 0]) {
            Some(Outcome::Return(n)) if n >= 0 => {
                if let Err(e) = write_user(p, m, msg + MMSG_LEN, &(n as u32).to_le_bytes()) {
                    return ret(if done == 0 { Err(e) } else { Ok(done as i64) });
                }
                done += 1;
            }
            Some(out) if done == 0 => return out,
            _ => break,
        }
    }
    Outcome::Return(done as i64)
}

/// Whether `nr` is a call on a socket descriptor (its first argument).
fn on_a_socket(nr: u64) -> bool {
    matches!(
        nr,
        nr::BIND
            | nr::LISTEN
            | nr::ACCEPT
            | nr::ACCEPT4
            | nr::CONNECT
            | nr::GETSOCKNAME
            | nr::GETPEERNAME
            | nr::SETSOCKOPT
            | nr::GETSOCKOPT
            | nr::SHUTDOWN
            | nr::SENDTO
            | nr::RECVFROM
            | nr::SENDMSG
            | nr::RECVMSG
    )
}

/// Without the IPv4 stack: `socket` for any family but `AF_UNIX` (served above) fails with
/// `EAFNOSUPPORT`, and the other socket calls find no internet socket (`EBADF` for a closed
/// descriptor, `ENOTSOCK` for any other file).
#[cfg(not(feature = "net"))]
fn inet(p: &mut Process, m: &mut dyn Machine, nr: u64, a: [u64; 6]) -> Option<Outcome> {
    use core::sync::atomic::{AtomicBool, Ordering};
    static LOGGED: AtomicBool = AtomicBool::new(false);
    match nr {
        nr::SOCKET => {
            if !LOGGED.swap(true, Ordering::Relaxed) {
                m.log(format_args!(
                    "socket(family {}): this image's kernel has no network stack (built with --no-net): EAFNOSUPPORT",
                    a[0]
                ));
            }
            Some(ret(Err(Errno::EAFNOSUPPORT)))
        }
        n if on_a_socket(n) => Some(ret(p.files.get(a[0] as i32).and(Err(Errno::ENOTSOCK)))),
        _ => None,
    }
}

/// The IPv4 socket calls.
#[cfg(feature = "net")]
fn inet(p: &mut Process, m: &mut dyn Machine, nr: u64, a: [u64; 6]) -> Option<Outcome> {
    let fd = a[0] as i32;
    Some(match nr {
        nr::SOCKET => ret(sys_socket(p, a[0], a[1], a[2])),
        nr::BIND => ret(sys_bind(p, m, fd, a[1], a[2])),
        nr::LISTEN => ret(socket(p, fd).and_then(|s| s.listen(m, a[1] as i32).map(|_| 0))),
        nr::ACCEPT => sys_accept(p, m, fd, a[1], a[2], 0),
        nr::ACCEPT4 => sys_accept(p, m, fd, a[1], a[2], a[3]),
        nr::CONNECT => sys_connect(p, m, fd, a[1], a[2]),
        nr::GETSOCKNAME => {
            ret(socket(p, fd)
                .and_then(|s| put_sockaddr(p, m, a[1], a[2], s.local_addr()).map(|_| 0)))
        }
        nr::GETPEERNAME => ret(socket(p, fd)
            .and_then(|s| s.peer_addr())
            .and_then(|peer| put_sockaddr(p, m, a[1], a[2], peer).map(|_| 0))),
        nr::SETSOCKOPT => ret(sys_setsockopt(p, m, fd, a[1], a[2], a[3], a[4])),
        nr::GETSOCKOPT => ret(sys_getsockopt(p, m, fd, a[1], a[2], a[3], a[4])),
        nr::SHUTDOWN => ret(socket(p, fd).and_then(|s| s.shutdown(m, a[1] as u32).map(|_| 0))),
        nr::SENDTO => sys_sendto(p, m, fd, a[1], a[2], a[3], a[4], a[5]),
        nr::RECVFROM => sys_recvfrom(p, m, fd, a[1], a[2], a[3], a[4], a[5]),
        nr::SENDMSG => sys_sendmsg(p, m, fd, a[1], a[2]),
        nr::RECVMSG => sys_recvmsg(p, m, fd, a[1], a[2]),
        _ => return None,
    })
}

#[cfg(feature = "net")]
/// The open file and socket behind `fd` (`EBADF`, or `ENOTSOCK` for other files).
fn file_socket(p: &Process, fd: i32) -> KResult<(Arc<OpenFile>, Arc<Socket>)> {
    let f = p.files.get(fd)?;
    let s = f.downcast_arc::<Socket>().ok_or(Errno::ENOTSOCK)?;
    Ok((f, s))
}

#[cfg(feature = "net")]
fn socket(p: &Process, fd: i32) -> KResult<Arc<Socket>> {
    file_socket(p, fd).map(|(_, s)| s)
}

#[cfg(feature = "net")]
/// `EAGAIN` from a blocking socket becomes a wait on the socket, bounded by `timeout_ns`
/// (0: none) with `EAGAIN` at the end, as `SO_RCVTIMEO` does.
fn block(
    m: &mut dyn Machine,
    f: &OpenFile,
    s: &Socket,
    flags: u64,
    timeout_ns: u64,
    r: KResult<i64>,
) -> Outcome {
    match r {
        Err(Errno::EAGAIN) if !f.nonblock() && flags & MSG_DONTWAIT == 0 => {
            let deadline = (timeout_ns > 0).then(|| {
                m.restart_deadline()
                    .unwrap_or_else(|| m.monotonic_ns().saturating_add(timeout_ns))
            });
            Outcome::Block(Wait {
                channels: vec![Channel::Object(s.id)],
                deadline,
                on_timeout: Errno::EAGAIN.as_return(),
                on_wake: None,
            })
        }
        r => ret(r),
    }
}

#[cfg(feature = "net")]
fn sys_socket(p: &mut Process, domain: u64, ty: u64, protocol: u64) -> KResult<i64> {
    if domain != AF_INET as u64 {
        return Err(Errno::EAFNOSUPPORT);
    }
    if ty & !(0xf | SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let stream = match ty & 0xf {
        SOCK_STREAM => true,
        SOCK_DGRAM => false,
        _ => return Err(Errno::ESOCKTNOSUPPORT),
    };
    let sock = match (stream, protocol) {
        (_, 0) | (true, IPPROTO_TCP) | (false, IPPROTO_UDP) => p.net.socket(stream),
        // Linux's unprivileged ping sockets, what `ping` opens first.
        (false, IPPROTO_ICMP) => p.net.ping_socket(),
        _ => return Err(Errno::EPROTONOSUPPORT),
    };
    install(p, sock, ty & SOCK_NONBLOCK != 0, ty & SOCK_CLOEXEC != 0)
}

#[cfg(feature = "net")]
fn install(p: &mut Process, sock: Arc<Socket>, nonblock: bool, cloexec: bool) -> KResult<i64> {
    let path = alloc::format!("socket:[{}]", sock.id);
    let flags = O_RDWR | if nonblock { O_NONBLOCK } else { 0 };
    let file = OpenFile::new(sock, path, flags);
    p.files.install(file, cloexec).map(|fd| fd as i64)
}

#[cfg(feature = "net")]
/// Reads a `sockaddr_in`. `AF_UNSPEC` gives `None` (accepted where Linux accepts it).
fn get_sockaddr(
    p: &mut Process,
    m: &mut dyn Machine,
    addr: u64,
    len: u64,
) -> KResult<Option<SockAddr>> {
    if !(2..=128).contains(&len) {
        return Err(Errno::EINVAL);
    }
    let mut raw = vec![0u8; len as usize];
    p.vm.copy_from_user(m.pages(), addr, &mut raw)?;
    match u16::from_le_bytes([raw[0], raw[1]]) {
        AF_INET if len >= 16 => Ok(Some(SockAddr {
            port: u16::from_be_bytes([raw[2], raw[3]]),
            ip: [raw[4], raw[5], raw[6], raw[7]],
        })),
        AF_INET => Err(Errno::EINVAL),
        AF_UNSPEC => Ok(None),
        _ => Err(Errno::EAFNOSUPPORT),
    }
}

#[cfg(feature = "net")]
/// The 16 bytes of a `sockaddr_in`.
pub fn sockaddr_bytes(a: SockAddr) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..2].copy_from_slice(&AF_INET.to_le_bytes());
    b[2..4].copy_from_slice(&a.port.to_be_bytes());
    b[4..8].copy_from_slice(&a.ip);
    b
}

#[cfg(feature = "net")]
/// Writes a `sockaddr_in` to `addr` (truncated to the `socklen_t` at `len_ptr`) and its
/// full length to `len_ptr`. Does nothing when `addr` is null.
fn put_sockaddr(
    p: &mut Process,
    m: &mut dyn Machine,
    addr: u64,
    len_ptr: u64,
    a: SockAddr,
) -> KResult<()> {
    if addr == 0 {
        return Ok(());
    }
    let len = i32::from_le_bytes(read_user::<4>(p, m, len_ptr)?);
    if len < 0 {
        return Err(Errno::EINVAL);
    }
    let b = sockaddr_bytes(a);
    let n = (len as usize).min(b.len());
    write_user(p, m, addr, &b[..n])?;
    write_user(p, m, len_ptr, &(b.len() as u32).to_le_bytes())
}

#[cfg(feature = "net")]
fn sys_bind(p: &mut Process, m: &mut dyn Machine, fd: i32, addr: u64, len: u64) -> KResult<i64> {
    let s = socket(p, fd)?;
    let a = get_sockaddr(p, m, addr, len)?.ok_or(Errno::EAFNOSUPPORT)?;
    s.bind(m, a)?;
    Ok(0)
}

#[cfg(feature = "net")]
fn sys_accept(
    p: &mut Process,
    m: &mut dyn Machine,
    fd: i32,
    addr: u64,
    len_ptr: u64,
    flags: u64,
) -> Outcome {
    let r = (|| {
        if flags & !(SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 {
            return Err(Errno::EINVAL);
        }
        let (f, s) = file_socket(p, fd)?;
        if !s.stream {
            return Err(Errno::EOPNOTSUPP);
        }
        Ok((f, s))
    })();
    let (f, s) = match r {
        Ok(x) => x,
        Err(e) => return ret(Err(e)),
    };
    let r = s.accept(m).and_then(|(conn, peer)| {
        // Check the address buffer before installing, so a bad pointer leaks nothing.
        if addr != 0 {
            read_user::<4>(p, m, len_ptr)?;
        }
        let fd = install(
            p,
            conn,
            flags & SOCK_NONBLOCK != 0,
            flags & SOCK_CLOEXEC != 0,
        )?;
        if let Err(e) = put_sockaddr(p, m, addr, len_ptr, peer) {
            let _ = p.files.close(fd as i32);
            return Err(e);
        }
        Ok(fd)
    });
    let timeout = s.options().rcv_timeout;
    block(m, &f, &s, 0, timeout, r)
}

#[cfg(feature = "net")]
fn sys_connect(p: &mut Process, m: &mut dyn Machine, fd: i32, addr: u64, len: u64) -> Outcome {
    let (f, s) = match file_socket(p, fd) {
        Ok(x) => x,
        Err(e) => return ret(Err(e)),
    };
    let to = match get_sockaddr(p, m, addr, len) {
        Ok(Some(a)) => a,
        // AF_UNSPEC dissolves a UDP association.
        Ok(None) if !s.stream => SockAddr::default(),
        Ok(None) => return ret(Err(Errno::EAFNOSUPPORT)),
        Err(e) => return ret(Err(e)),
    };
    let blocking = !f.nonblock();
    match s.connect(m, to, blocking) {
        Ok(Connect::Done) => Outcome::Return(0),
        Ok(Connect::InProgress) if blocking => Outcome::Block(Wait {
            channels: vec![Channel::Object(s.id)],
            deadline: None,
            on_timeout: 0,
            on_wake: None,
        }),
        Ok(Connect::InProgress) => ret(Err(Errno::EINPROGRESS)),
        Ok(Connect::NoAddress { channel, deadline }) if blocking => Outcome::Block(Wait {
            channels: vec![Channel::Object(channel)],
            deadline: Some(deadline),
            on_timeout: Errno::ENETUNREACH.as_return(),
            on_wake: None,
        }),
        Ok(Connect::NoAddress { .. }) => ret(Err(Errno::ENETUNREACH)),
        Err(e) => ret(Err(e)),
    }
}

#[allow(clippy::too_many_arguments)]
#[cfg(feature = "net")]
fn sys_sendto(
    p: &mut Process,
    m: &mut dyn Machine,
    fd: i32,
    buf: u64,
    len: u64,
    flags: u64,
    addr: u64,
    addrlen: u64,
) -> Outcome {
    let (f, s) = match file_socket(p, fd) {
        Ok(x) => x,
        Err(e) => return ret(Err(e)),
    };
    let timeout = s.options().snd_timeout;
    if s.stream {
        // A blocking send on a stream queues every byte, as `write` does.
        let call = [nr::SENDTO, fd as u64, buf, len];
        let done = super::write_resumes(m, call);
        let r = send_stream(p, m, &[(buf + done, len - done)], MAX_SEND, &|m, d| {
            s.send(m, d, None)
        });
        return super::write_settles(m, call, len, done, r, |m| {
            block(m, &f, &s, flags, timeout, Err(Errno::EAGAIN))
        });
    }
    let r = (|| {
        let to = if addr != 0 {
            get_sockaddr(p, m, addr, addrlen)?
        } else {
            None
        };
        let len = (len as usize).min(MAX_SEND);
        let mut data = p.bounce.take(len);
        let r =
            p.vm.copy_from_user(m.pages(), buf, &mut data[..len])
                .and_then(|()| s.send(m, &data[..len], to));
        p.bounce.put(data);
        r.map(|n| n as i64)
    })();
    block(m, &f, &s, flags, timeout, r)
}

/// Queues one piece of a stream's bytes on its socket: the bytes taken (`send`).
pub(crate) type SendPiece<'a> = dyn Fn(&mut dyn Machine, &[u8]) -> KResult<usize> + 'a;

/// Queues the bytes of the buffers `iov` on a stream socket with `send`, `max` at a time
/// while they fit: the count, or the error of the first piece.
pub(crate) fn send_stream(
    p: &mut Process,
    m: &mut dyn Machine,
    iov: &[(u64, u64)],
    max: usize,
    send: &SendPiece<'_>,
) -> KResult<i64> {
    let len = super::iov_len(iov);
    let mut done = 0u64;
    let mut data = p.bounce.take((len as usize).min(max));
    let r = loop {
        let want = ((len - done) as usize).min(max);
        let sent = gather_into(p, m, &super::iov_after(iov, done), &mut data[..want])
            .and_then(|()| send(m, &data[..want]));
        match sent {
            Ok(n) => {
                done += n as u64;
                if n < want || done == len {
                    break Ok(done as i64);
                }
            }
            Err(_) if done > 0 => break Ok(done as i64),
            Err(e) => break Err(e),
        }
    };
    p.bounce.put(data);
    r
}

#[allow(clippy::too_many_arguments)]
#[cfg(feature = "net")]
fn sys_recvfrom(
    p: &mut Process,
    m: &mut dyn Machine,
    fd: i32,
    buf: u64,
    len: u64,
    flags: u64,
    addr: u64,
    len_ptr: u64,
) -> Outcome {
    let (f, s) = match file_socket(p, fd) {
        Ok(x) => x,
        Err(e) => return ret(Err(e)),
    };
    if flags & MSG_ERRQUEUE != 0 {
        return ret(Err(ERRQUEUE_EMPTY));
    }
    let r = (|| {
        let len = (len as usize).min(MAX_RECV);
        let mut data = p.bounce.take(len);
        let r = s
            .recv(m, &mut data[..len], flags & MSG_PEEK != 0)
            .and_then(|(n, from)| write_user(p, m, buf, &data[..n]).map(|()| (n, from)));
        p.bounce.put(data);
        let (n, from) = r?;
        if let Some(from) = from {
            put_sockaddr(p, m, addr, len_ptr, from)?;
        } else if addr != 0 && s.stream {
            // Linux leaves the address alone and reports length 0 for TCP.
            write_user(p, m, len_ptr, &0u32.to_le_bytes())?;
        }
        Ok(n as i64)
    })();
    let timeout = s.options().rcv_timeout;
    block(m, &f, &s, flags, timeout, r)
}

/// The fields of a `struct msghdr` the calls use.
struct MsgHdr {
    name: u64,
    namelen: u32,
    iov: Vec<(u64, u64)>,
    /// `msg_control`.
    control: u64,
    /// `msg_controllen`.
    controllen: u64,
}

/// Copies the bytes of a `msghdr`'s iovec from user memory, at most `max` of them.
pub(crate) fn gather(
    p: &mut Process,
    m: &mut dyn Machine,
    iov: &[(u64, u64)],
    max: usize,
) -> KResult<Vec<u8>> {
    let mut data = vec![0; (super::iov_len(iov) as usize).min(max)];
    gather_into(p, m, iov, &mut data)?;
    Ok(data)
}

/// Fills `out` from the buffers `iov` in user memory, in order.
pub(crate) fn gather_into(
    p: &mut Process,
    m: &mut dyn Machine,
    iov: &[(u64, u64)],
    out: &mut [u8],
) -> KResult<()> {
    let mut at = 0;
    for &(base, len) in iov {
        if at == out.len() {
            break;
        }
        let take = (len as usize).min(out.len() - at);
        p.vm.copy_from_user(m.pages(), base, &mut out[at..at + take])?;
        at += take;
    }
    Ok(())
}

/// Copies `data` into a `msghdr`'s iovec in user memory, buffer after buffer.
pub(crate) fn scatter(
    p: &mut Process,
    m: &mut dyn Machine,
    iov: &[(u64, u64)],
    data: &[u8],
) -> KResult<()> {
    let mut off = 0;
    for &(base, len) in iov {
        if off == data.len() {
            break;
        }
        let take = (len as usize).min(data.len() - off);
        write_user(p, m, base, &data[off..off + take])?;
        off += take;
    }
    Ok(())
}

fn get_msghdr(p: &mut Process, m: &mut dyn Machine, addr: u64) -> KResult<MsgHdr> {
    let raw = read_user::<56>(p, m, addr)?;
    let u64at = |o: usize| u64::from_le_bytes(raw[o..o + 8].try_into().expect("8 bytes"));
    let iovlen = u64at(24);
    if iovlen > 1024 {
        return Err(Errno::EMSGSIZE);
    }
    let mut rawiov = vec![0u8; iovlen as usize * 16];
    p.vm.copy_from_user(m.pages(), u64at(16), &mut rawiov)?;
    let iov = rawiov
        .chunks_exact(16)
        .map(|c| {
            (
                u64::from_le_bytes(c[..8].try_into().expect("8 bytes")),
                u64::from_le_bytes(c[8..].try_into().expect("8 bytes")),
            )
        })
        .collect();
    Ok(MsgHdr {
        name: u64at(0),
        namelen: u32::from_le_bytes(raw[8..12].try_into().expect("4 bytes")),
        iov,
        control: u64at(32),
        controllen: u64at(40),
    })
}

#[cfg(feature = "net")]
fn sys_sendmsg(p: &mut Process, m: &mut dyn Machine, fd: i32, msg: u64, flags: u64) -> Outcome {
    let (f, s) = match file_socket(p, fd) {
        Ok(x) => x,
        Err(e) => return ret(Err(e)),
    };
    let timeout = s.options().snd_timeout;
    if s.stream {
        // A blocking send on a stream queues every byte, as `write` does.
        let call = [nr::SENDMSG, fd as u64, msg, flags];
        let done = super::write_resumes(m, call);
        let (total, r) = match get_msghdr(p, m, msg) {
            Ok(h) => (
                super::iov_len(&h.iov),
                send_stream(p, m, &super::iov_after(&h.iov, done), MAX_SEND, &|m, d| {
                    s.send(m, d, None)
                }),
            ),
            Err(e) => (0, Err(e)),
        };
        return super::write_settles(m, call, total, done, r, |m| {
            block(m, &f, &s, flags, timeout, Err(Errno::EAGAIN))
        });
    }
    let r = (|| {
        let h = get_msghdr(p, m, msg)?;
        let to = if h.name != 0 && !s.stream {
            get_sockaddr(p, m, h.name, h.namelen as u64)?
        } else {
            None
        };
        let data = gather(p, m, &h.iov, MAX_SEND)?;
        s.send(m, &data, to).map(|n| n as i64)
    })();
    block(m, &f, &s, flags, timeout, r)
}

#[cfg(feature = "net")]
fn sys_recvmsg(p: &mut Process, m: &mut dyn Machine, fd: i32, msg: u64, flags: u64) -> Outcome {
    let (f, s) = match file_socket(p, fd) {
        Ok(x) => x,
        Err(e) => return ret(Err(e)),
    };
    if flags & MSG_ERRQUEUE != 0 {
        return ret(Err(ERRQUEUE_EMPTY));
    }
    let r = (|| {
        let h = get_msghdr(p, m, msg)?;
        let total: u64 = h.iov.iter().map(|&(_, l)| l).sum();
        let len = (total as usize).min(MAX_RECV);
        let mut data = p.bounce.take(len);
        let r = s
            .recv(m, &mut data[..len], flags & MSG_PEEK != 0)
            .and_then(|(n, from)| scatter(p, m, &h.iov, &data[..n]).map(|()| (n, from)));
        p.bounce.put(data);
        let (n, from) = r?;
        let namelen = match (from, h.name) {
            (Some(from), name) if name != 0 => {
                let b = sockaddr_bytes(from);
                let k = (h.namelen as usize).min(b.len());
                write_user(p, m, name, &b[..k])?;
                b.len() as u32
            }
            _ => 0,
        };
        write_user(p, m, msg + 8, &namelen.to_le_bytes())?;
        // The control messages a datagram socket asked for: IP_PKTINFO (UDP) and
        // SO_TIMESTAMP. No flags otherwise (MSG_TRUNC is not reported).
        let opts = s.options();
        let mut control = match s.last_destination() {
            Some(dst) if !s.stream && opts.pkt_info => pktinfo_cmsg(dst),
            _ => Vec::new(),
        };
        if !s.stream && opts.timestamp {
            control.extend_from_slice(&timestamp_cmsg(m.realtime_ns()));
        }
        let (controllen, msg_flags) = if control.len() as u64 <= h.controllen {
            write_user(p, m, h.control, &control)?;
            (control.len() as u64, 0)
        } else {
            (0, MSG_CTRUNC)
        };
        write_user(p, m, msg + 40, &controllen.to_le_bytes())?;
        write_user(p, m, msg + 48, &msg_flags.to_le_bytes())?;
        Ok(n as i64)
    })();
    let timeout = s.options().rcv_timeout;
    block(m, &f, &s, flags, timeout, r)
}

/// What reading the error queue (`MSG_ERRQUEUE`) gives: the stack hands sockets no ICMP
/// errors, so the queue is always empty, which Linux reports at once with `EAGAIN`.
const ERRQUEUE_EMPTY: Errno = Errno::EAGAIN;

/// A `cmsghdr` (`SOL_IP`, `IP_PKTINFO`) with its `struct in_pktinfo`: the interface's
/// index and the address a datagram was sent to, padded to `CMSG_SPACE`.
fn pktinfo_cmsg(dst: [u8; 4]) -> Vec<u8> {
    // 16 bytes of header, then ipi_ifindex, ipi_spec_dst, ipi_addr.
    let mut c = Vec::with_capacity(32);
    c.extend_from_slice(&28u64.to_le_bytes());
    c.extend_from_slice(&(IPPROTO_IP as i32).to_le_bytes());
    c.extend_from_slice(&(IP_PKTINFO as i32).to_le_bytes());
    let ifindex: i32 = if dst[0] == 127 { 1 } else { 2 };
    c.extend_from_slice(&ifindex.to_le_bytes());
    c.extend_from_slice(&dst);
    c.extend_from_slice(&dst);
    c.resize(32, 0);
    c
}

/// A `cmsghdr` (`SOL_SOCKET`, `SO_TIMESTAMP`) with the `struct timeval` of `ns` (the
/// realtime clock when the datagram was handed over; the stack keeps no arrival times).
fn timestamp_cmsg(ns: u64) -> [u8; 32] {
    let mut c = [0u8; 32];
    c[..8].copy_from_slice(&32u64.to_le_bytes());
    c[8..12].copy_from_slice(&(SOL_SOCKET as i32).to_le_bytes());
    c[12..16].copy_from_slice(&(SO_TIMESTAMP as i32).to_le_bytes());
    c[16..24].copy_from_slice(&((ns / 1_000_000_000) as i64).to_le_bytes());
    c[24..32].copy_from_slice(&((ns % 1_000_000_000 / 1000) as i64).to_le_bytes());
    c
}

#[cfg(feature = "net")]
/// Linux's `struct tcp_info` with what the stack knows: the state, the MSS and path MTU of
/// its one 1500-byte link and the receive space. Round-trip time, congestion and
/// retransmission figures are not kept by the stack and read 0.
fn tcp_info_bytes(info: Option<crate::net::TcpInfo>) -> Vec<u8> {
    let mut b = vec![0u8; TCP_INFO_SIZE];
    let Some(i) = info else { return b };
    let put = |b: &mut [u8], at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    b[0] = i.state;
    put(&mut b, 16, 1460); // tcpi_snd_mss
    put(&mut b, 20, 1460); // tcpi_rcv_mss
    put(&mut b, 56, 1500); // tcpi_pmtu
    put(&mut b, 80, 1460); // tcpi_advmss
    put(&mut b, 92, i.recv_space.min(u32::MAX as usize) as u32); // tcpi_rcv_space
    b
}

fn timeval_ns(b: &[u8]) -> KResult<u64> {
    if b.len() < 16 {
        return Err(Errno::EINVAL);
    }
    let sec = i64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
    let usec = i64::from_le_bytes(b[8..16].try_into().expect("8 bytes"));
    if !(0..1_000_000).contains(&usec) {
        return Err(Errno(33)); // EDOM
    }
    Ok((sec.max(0) as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(usec as u64 * 1000))
}

fn timeval_bytes(ns: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    v.extend_from_slice(&((ns / 1_000_000_000) as i64).to_le_bytes());
    v.extend_from_slice(&(((ns % 1_000_000_000) / 1000) as i64).to_le_bytes());
    v
}

#[cfg(feature = "net")]
fn sys_setsockopt(
    p: &mut Process,
    m: &mut dyn Machine,
    fd: i32,
    level: u64,
    name: u64,
    val: u64,
    len: u64,
) -> KResult<i64> {
    let s = socket(p, fd)?;
    if len > 64 {
        return Err(Errno::EINVAL);
    }
    let mut raw = vec![0u8; len as usize];
    p.vm.copy_from_user(m.pages(), val, &mut raw)?;
    let int = || -> KResult<i32> {
        if raw.len() < 4 {
            return Err(Errno::EINVAL);
        }
        Ok(i32::from_le_bytes(raw[..4].try_into().expect("4 bytes")))
    };
    match (level, name) {
        (SOL_SOCKET, SO_REUSEADDR) => {
            let on = int()? != 0;
            s.set_options(&|o| o.reuse_addr = on);
        }
        (SOL_SOCKET, SO_REUSEPORT) => {
            let on = int()? != 0;
            s.set_options(&|o| o.reuse_port = on);
        }
        (SOL_SOCKET, SO_KEEPALIVE) => {
            let on = int()? != 0;
            s.set_options(&|o| o.keep_alive = on);
        }
        (SOL_SOCKET, SO_BROADCAST) => {
            let on = int()? != 0;
            s.set_options(&|o| o.broadcast = on);
        }
        (SOL_SOCKET, SO_TIMESTAMP) => {
            let on = int()? != 0;
            s.set_options(&|o| o.timestamp = on);
        }
        (SOL_SOCKET, SO_RCVBUF) => {
            let v = int()?.max(0) as u32;
            s.set_options(&|o| o.rcvbuf = v);
        }
        (SOL_SOCKET, SO_SNDBUF) => {
            let v = int()?.max(0) as u32;
            s.set_options(&|o| o.sndbuf = v);
        }
        (SOL_SOCKET, SO_LINGER) => {
            if raw.len() < 8 {
                return Err(Errno::EINVAL);
            }
            let on = int()? != 0;
            let secs = i32::from_le_bytes(raw[4..8].try_into().expect("4 bytes"));
            s.set_options(&|o| o.linger = (on, secs));
        }
        (SOL_SOCKET, SO_RCVTIMEO) => {
            let ns = timeval_ns(&raw)?;
            s.set_options(&|o| o.rcv_timeout = ns);
        }
        (SOL_SOCKET, SO_SNDTIMEO) => {
            let ns = timeval_ns(&raw)?;
            s.set_options(&|o| o.snd_timeout = ns);
        }
        (SOL_SOCKET, SO_DONTROUTE | SO_OOBINLINE | SO_RCVLOWAT | SO_SNDLOWAT) => {
            int()?;
        }
        (IPPROTO_TCP, TCP_NODELAY) if s.stream => {
            let on = int()? != 0;
            s.set_options(&|o| o.no_delay = on);
        }
        (IPPROTO_TCP, TCP_MAXSEG | TCP_KEEPIDLE | TCP_KEEPINTVL | TCP_KEEPCNT) if s.stream => {
            int()?;
        }
        (IPPROTO_TCP, TCP_CONGESTION) if s.stream => {
            let name = raw.split(|&b| b == 0).next().unwrap_or(&[]);
            let reno = match name {
                b"reno" => true,
                b"cubic" => false,
                _ => return Err(Errno::ENOENT),
            };
            s.set_options(&|o| o.kept.reno = reno);
        }
        (SOL_SOCKET, SO_PRIORITY) => {
            let v = int()?;
            s.set_options(&|o| o.kept.priority = v);
        }
        (IPPROTO_TCP, TCP_USER_TIMEOUT) if s.stream => {
            let v = u32::try_from(int()?).map_err(|_| Errno::EINVAL)?;
            s.set_options(&|o| o.kept.user_timeout = v);
        }
        (IPPROTO_TCP, TCP_QUICKACK) if s.stream => {
            let on = int()? != 0;
            s.set_options(&|o| o.kept.quickack = on);
        }
        (IPPROTO_TCP, TCP_CORK) if s.stream => {
            let on = int()? != 0;
            s.set_options(&|o| o.kept.cork = on);
        }
        (IPPROTO_TCP, TCP_DEFER_ACCEPT) if s.stream => {
            let v = int()?.max(0);
            s.set_options(&|o| o.kept.defer_accept = v);
        }
        (IPPROTO_TCP, TCP_FASTOPEN) if s.stream => {
            let v = int()?.max(0);
            s.set_options(&|o| o.kept.fastopen = v);
        }
        (IPPROTO_TCP, TCP_FASTOPEN_CONNECT) if s.stream => {
            let on = int()? != 0;
            s.set_options(&|o| o.kept.fastopen_connect = on);
        }
        (IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT) => {
            let on = int()? != 0;
            s.set_options(&|o| o.kept.bind_no_port = on);
        }
        (IPPROTO_IP, IP_MULTICAST_TTL) if !s.stream => {
            // An int or a single byte, as Linux takes it.
            let v = if raw.len() == 1 {
                raw[0].into()
            } else {
                int()?
            };
            let ttl = match v {
                -1 => None,
                0..=255 => Some(v as u8),
                _ => return Err(Errno::EINVAL),
            };
            s.set_options(&|o| o.kept.multicast_ttl = ttl);
        }
        (IPPROTO_IP, IP_MULTICAST_LOOP) if !s.stream => {
            let v = if raw.len() == 1 {
                raw[0].into()
            } else {
                int()?
            };
            s.set_options(&|o| o.kept.multicast_no_loop = v == 0);
        }
        (IPPROTO_IP, IP_TTL) => {
            let ttl = match int()? {
                -1 => 0,
                v @ 1..=255 => v as u8,
                _ => return Err(Errno::EINVAL),
            };
            s.set_options(&|o| o.ttl = ttl);
        }
        (IPPROTO_IP, IP_TOS) => {
            let tos = int()? as u8;
            s.set_options(&|o| o.tos = tos);
        }
        (IPPROTO_IP, IP_RECVERR) => {
            let on = int()? != 0;
            s.set_options(&|o| o.recv_err = on);
        }
        (IPPROTO_IP, IP_PKTINFO) => {
            let on = int()? != 0;
            s.set_options(&|o| o.pkt_info = on);
        }
        (IPPROTO_IP, IP_MTU_DISCOVER) => {
            // IP_PMTUDISC_DONT, WANT, DO, PROBE, INTERFACE, OMIT.
            let v = u8::try_from(int()?)
                .ok()
                .filter(|v| *v <= 5)
                .ok_or(Errno::EINVAL)?;
            s.set_options(&|o| o.pmtu_disc = Some(v));
        }
        _ => return Err(Errno::ENOPROTOOPT),
    }
    Ok(0)
}

#[cfg(feature = "net")]
fn sys_getsockopt(
    p: &mut Process,
    m: &mut dyn Machine,
    fd: i32,
    level: u64,
    name: u64,
    val: u64,
    len_ptr: u64,
) -> KResult<i64> {
    let s = socket(p, fd)?;
    let len = i32::from_le_bytes(read_user::<4>(p, m, len_ptr)?);
    if len < 0 {
        return Err(Errno::EINVAL);
    }
    let o = s.options();
    let int = |v: i32| v.to_le_bytes().to_vec();
    let bytes = match (level, name) {
        (SOL_SOCKET, SO_REUSEADDR) => int(o.reuse_addr as i32),
        (SOL_SOCKET, SO_REUSEPORT) => int(o.reuse_port as i32),
        (SOL_SOCKET, SO_KEEPALIVE) => int(o.keep_alive as i32),
        (SOL_SOCKET, SO_BROADCAST) => int(o.broadcast as i32),
        (SOL_SOCKET, SO_TYPE) => int(if s.stream { 1 } else { 2 }),
        (SOL_SOCKET, SO_DOMAIN) => int(AF_INET as i32),
        (SOL_SOCKET, SO_PROTOCOL) => int(s.protocol().into()),
        (SOL_SOCKET, SO_ERROR) => int(s.take_error().map_or(0, |e| e.0)),
        (SOL_SOCKET, SO_ACCEPTCONN) => int(s.is_listening() as i32),
        // Linux reports twice what was asked (bookkeeping overhead); these are its defaults.
        (SOL_SOCKET, SO_RCVBUF) => int(if o.rcvbuf == 0 {
            131072
        } else {
            (o.rcvbuf.min(i32::MAX as u32 / 2) * 2) as i32
        }),
        (SOL_SOCKET, SO_SNDBUF) => int(if o.sndbuf == 0 {
            16384
        } else {
            (o.sndbuf.min(i32::MAX as u32 / 2) * 2) as i32
        }),
        (SOL_SOCKET, SO_LINGER) => {
            let mut v = int(o.linger.0 as i32);
            v.extend_from_slice(&o.linger.1.to_le_bytes());
            v
        }
        (SOL_SOCKET, SO_RCVTIMEO) => timeval_bytes(o.rcv_timeout),
        (SOL_SOCKET, SO_SNDTIMEO) => timeval_bytes(o.snd_timeout),
        (SOL_SOCKET, SO_DONTROUTE | SO_OOBINLINE) => int(0),
        (SOL_SOCKET, SO_RCVLOWAT | SO_SNDLOWAT) => int(1),
        (IPPROTO_TCP, TCP_NODELAY) if s.stream => int(o.no_delay as i32),
        (IPPROTO_TCP, TCP_MAXSEG) if s.stream => int(1460),
        (IPPROTO_TCP, TCP_KEEPIDLE) if s.stream => int(7200),
        (IPPROTO_TCP, TCP_KEEPINTVL) if s.stream => int(75),
        (IPPROTO_TCP, TCP_KEEPCNT) if s.stream => int(9),
        (IPPROTO_TCP, TCP_CONGESTION) if s.stream => {
            let mut v = vec![0u8; 16];
            let name: &[u8] = if o.kept.reno { b"reno" } else { b"cubic" };
            v[..name.len()].copy_from_slice(name);
            v
        }
        (IPPROTO_TCP, TCP_INFO) if s.stream => tcp_info_bytes(s.tcp_info()),
        (SOL_SOCKET, SO_PRIORITY) => int(o.kept.priority),
        (IPPROTO_TCP, TCP_USER_TIMEOUT) if s.stream => int(o.kept.user_timeout as i32),
        (IPPROTO_TCP, TCP_QUICKACK) if s.stream => int(o.kept.quickack.into()),
        (IPPROTO_TCP, TCP_CORK) if s.stream => int(o.kept.cork.into()),
        (IPPROTO_TCP, TCP_DEFER_ACCEPT) if s.stream => int(o.kept.defer_accept),
        (IPPROTO_TCP, TCP_FASTOPEN) if s.stream => int(o.kept.fastopen),
        (IPPROTO_TCP, TCP_FASTOPEN_CONNECT) if s.stream => int(o.kept.fastopen_connect.into()),
        (IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT) => int(o.kept.bind_no_port.into()),
        (IPPROTO_IP, IP_MULTICAST_TTL) if !s.stream => {
            int(o.kept.multicast_ttl.unwrap_or(1).into())
        }
        (IPPROTO_IP, IP_MULTICAST_LOOP) if !s.stream => int((!o.kept.multicast_no_loop).into()),
        (IPPROTO_IP, IP_TTL) => int(if o.ttl == 0 { 64 } else { o.ttl.into() }),
        (IPPROTO_IP, IP_TOS) => int(o.tos.into()),
        (IPPROTO_IP, IP_RECVERR) => int(o.recv_err.into()),
        (IPPROTO_IP, IP_PKTINFO) => int(o.pkt_info.into()),
        (SOL_SOCKET, SO_TIMESTAMP) => int(o.timestamp.into()),
        (IPPROTO_IP, IP_MTU_DISCOVER) => int(o.pmtu_disc.unwrap_or(1).into()),
        _ => return Err(Errno::ENOPROTOOPT),
    };
    let n = (len as usize).min(bytes.len());
    write_user(p, m, val, &bytes[..n])?;
    write_user(p, m, len_ptr, &(n as u32).to_le_bytes())?;
    Ok(0)
}

#[cfg(feature = "net")]
pub mod ifreq;
#[cfg(feature = "net")]
pub mod netlink;
pub mod unix;

#[cfg(all(test, feature = "net"))]
mod tests;

#[cfg(all(test, not(feature = "net")))]
mod no_net_tests {
    use crate::syscall::testutil::*;
    use crate::sysno as nr;

    #[test]
    fn internet_sockets_are_eafnosupport_and_unix_ones_work() {
        let (mut p, mut m, buf) = setup();
        // socket(AF_INET, SOCK_STREAM, 0)
        assert_eq!(call(&mut p, &mut m, nr::SOCKET, &[2, 1, 0]), -97);
        // bind on a file that is not a socket, on a closed descriptor
        assert_eq!(call(&mut p, &mut m, nr::BIND, &[1, buf, 16]), -88);
        assert_eq!(call(&mut p, &mut m, nr::BIND, &[77, buf, 16]), -9);
        // socketpair(AF_UNIX, SOCK_STREAM, 0, fds)
        assert_eq!(call(&mut p, &mut m, nr::SOCKETPAIR, &[1, 1, 0, buf]), 0);
    }
}
