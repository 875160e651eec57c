//! `AF_UNIX` socket calls: `socketpair` and everything on its ends ([`UnixSocket`]).
//!
//! `read`, `write`, `readv`, `writev`, `fstat`, `fcntl` and readiness go through the file
//! layer; `sendto`/`sendmsg`/`recvfrom`/`recvmsg` (no ancillary data: descriptors passed
//! with `SCM_RIGHTS` are refused with `EOPNOTSUPP`, and `msg_controllen` comes back 0),
//! `shutdown`, socket options and names are here. The ends are unnamed:
//! `getsockname`/`getpeername` give `sun_family` alone (length 2).
//!
//! Named sockets: `socket(AF_UNIX)` makes a [`UnixPort`]. Stream and seqpacket ports
//! bind to a path (in `/tmp`, the one writable file system) or an abstract name, listen,
//! and accept the connections other threads of the program make; a connecting port's
//! descriptor then holds its end of the new pair. The names live in the process
//! ([`Process::unix_names`]), not as socket files in the file system (`ls` does not show
//! them, and a name is free again once its socket is closed). A name nobody bound is
//! `ENOENT` (no such path) or `ECONNREFUSED`, as on a Linux machine where the service is
//! not running. Datagram ports connect and send nowhere (no datagram port can be bound:
//! `EOPNOTSUPP`, logged once).

use alloc::sync::Arc;
use alloc::vec;

use super::{
    gather, get_msghdr, read_user, ret, scatter, timeval_bytes, timeval_ns, write_user, MsgHdr,
    MSG_DONTWAIT, MSG_PEEK, SOCK_CLOEXEC, SOCK_NONBLOCK,
};
use crate::errno::{Errno, KResult};
use crate::fd::unix::{UnixOptions, UNIX_CAPACITY};
use crate::fd::{OpenFile, UnixKind, UnixName, UnixPort, UnixSocket, O_NONBLOCK, O_RDWR};
use crate::machine::Machine;
use crate::process::{Outcome, Process, Wait};
use crate::sysno as nr;

/// `AF_UNIX`.
pub const AF_UNIX: u16 = 1;
/// `SOCK_SEQPACKET`.
pub const SOCK_SEQPACKET: u64 = 5;
/// `MSG_TRUNC`: report (and, in `recvmsg` flags, signal) a message's full length.
pub const MSG_TRUNC: u64 = 0x20;

const SOL_SOCKET: u64 = 1;
const SO_REUSEADDR: u64 = 2;
const SO_TYPE: u64 = 3;
const SO_ERROR: u64 = 4;
const SO_SNDBUF: u64 = 7;
const SO_RCVBUF: u64 = 8;
const SO_KEEPALIVE: u64 = 9;
const SO_LINGER: u64 = 13;
const SO_PASSCRED: u64 = 16;
const SO_PEERCRED: u64 = 17;
const SO_RCVLOWAT: u64 = 18;
const SO_SNDLOWAT: u64 = 19;
const SO_RCVTIMEO: u64 = 20;
const SO_SNDTIMEO: u64 = 21;
const SO_ACCEPTCONN: u64 = 30;
const SO_SNDBUFFORCE: u64 = 32;
const SO_RCVBUFFORCE: u64 = 33;
const SO_PROTOCOL: u64 = 38;
const SO_DOMAIN: u64 = 39;

/// Largest amount one call copies in or out.
const MAX_IO: usize = UNIX_CAPACITY;

/// Handles the calls on an `AF_UNIX` descriptor and `socketpair`/`socket(AF_UNIX)`;
/// `None` for anything else (other numbers, other descriptors).
pub fn handle(p: &mut Process, m: &mut dyn Machine, nr: u64, a: [u64; 6]) -> Option<Outcome> {
    let fd = a[0] as i32;
    match nr {
        nr::SOCKETPAIR => return Some(ret(sys_socketpair(p, m, a[0], a[1], a[2], a[3]))),
        nr::SOCKET if a[0] == AF_UNIX as u64 => return Some(ret(sys_socket(p, a[1], a[2]))),
        n if super::on_a_socket(n) => {}
        _ => return None,
    }
    let f = p.files.get(fd).ok()?;
    let u = match f.downcast_arc::<UnixPort>() {
        // A connected port works as its end of the pair.
        Some(port) => match port.connected() {
            Some(end) => end,
            None => return Some(port_call(p, m, nr, a, &f, &port)),
        },
        None => f.downcast_arc::<UnixSocket>()?,
    };
    Some(match nr {
        // Already connected (and unnamed, which Linux allows binding; not supported here).
        nr::BIND => ret(Err(Errno::EINVAL)),
        nr::LISTEN => ret(Err(Errno::EINVAL)),
        nr::ACCEPT | nr::ACCEPT4 => ret(Err(if u.kind == UnixKind::Dgram {
            Errno::EOPNOTSUPP
        } else {
            Errno::EINVAL
        })),
        nr::CONNECT => ret(Err(Errno::EISCONN)),
        nr::GETSOCKNAME | nr::GETPEERNAME => ret(put_unnamed(p, m, a[1], a[2]).map(|_| 0)),
        nr::SETSOCKOPT => {
            let mut o = u.options();
            let r = sys_setsockopt(p, m, &mut o, a[1], a[2], a[3], a[4]);
            u.set_options(|x| *x = o);
            ret(r)
        }
        nr::GETSOCKOPT => ret(sys_getsockopt(
            p,
            m,
            u.kind,
            u.options(),
            false,
            a[1],
            a[2],
            a[3],
            a[4],
        )),
        nr::SHUTDOWN => ret(u.shutdown(m, a[1] as u32).map(|_| 0)),
        nr::SENDTO if u.kind == UnixKind::Stream => {
            if a[4] != 0 && a[5] != 0 {
                return Some(ret(Err(Errno::EISCONN)));
            }
            // A blocking send on a stream queues every byte, as `write` does.
            let call = [nr, a[0], a[1], a[2]];
            let done = crate::syscall::write_resumes(m, call);
            let r = super::send_stream(p, m, &[(a[1] + done, a[2] - done)], MAX_IO, &|m, d| {
                u.send(m, d)
            });
            crate::syscall::write_settles(m, call, a[2], done, r, |m| {
                block(m, &f, &u, a[3], false, Err(Errno::EAGAIN))
            })
        }
        nr::SENDTO => {
            let r = (|| {
                if a[4] != 0 && a[5] != 0 {
                    return Err(Errno::EISCONN);
                }
                let mut data = vec![0u8; (a[2] as usize).min(MAX_IO)];
                p.vm.copy_from_user(m.pages(), a[1], &mut data)?;
                u.send(m, &data).map(|n| n as i64)
            })();
            block(m, &f, &u, a[3], false, r)
        }
        nr::RECVFROM => {
            let (buf, len, flags, addr, len_ptr) = (a[1], a[2], a[3], a[4], a[5]);
            let r = (|| {
                let mut data = vec![0u8; (len as usize).min(MAX_IO)];
                let (n, full) = u.recv(m, &mut data, flags & MSG_PEEK != 0)?;
                write_user(p, m, buf, &data[..n])?;
                if addr != 0 {
                    // The peer is unnamed: no address, length 0.
                    write_user(p, m, len_ptr, &0u32.to_le_bytes())?;
                }
                Ok(result_len(&u, flags, n, full))
            })();
            block(m, &f, &u, flags, true, r)
        }
        nr::SENDMSG if u.kind == UnixKind::Stream => {
            let call = [nr, a[0], a[1], a[2]];
            let done = crate::syscall::write_resumes(m, call);
            let (total, r) = match get_msghdr(p, m, a[1]) {
                Ok(h) if h.name != 0 && h.namelen != 0 => (0, Err(Errno::EISCONN)),
                Ok(h) => (
                    crate::syscall::iov_len(&h.iov),
                    refuse_passed_descriptors(p, m, &h).and_then(|()| {
                        super::send_stream(
                            p,
                            m,
                            &crate::syscall::iov_after(&h.iov, done),
                            MAX_IO,
                            &|m, d| u.send(m, d),
                        )
                    }),
                ),
                Err(e) => (0, Err(e)),
            };
            crate::syscall::write_settles(m, call, total, done, r, |m| {
                block(m, &f, &u, a[2], false, Err(Errno::EAGAIN))
            })
        }
        nr::SENDMSG => {
            let r = (|| {
                let h = get_msghdr(p, m, a[1])?;
                if h.name != 0 && h.namelen != 0 {
                    return Err(Errno::EISCONN);
                }
                refuse_passed_descriptors(p, m, &h)?;
                let data = gather(p, m, &h.iov, MAX_IO)?;
                u.send(m, &data).map(|n| n as i64)
            })();
            block(m, &f, &u, a[2], false, r)
        }
        nr::RECVMSG => {
            let (msg, flags) = (a[1], a[2]);
            let r = (|| {
                let h = get_msghdr(p, m, msg)?;
                let total: u64 = h.iov.iter().map(|&(_, l)| l).sum();
                let mut data = vec![0u8; (total as usize).min(MAX_IO)];
                let (n, full) = u.recv(m, &mut data, flags & MSG_PEEK != 0)?;
                scatter(p, m, &h.iov, &data[..n])?;
                // msg_namelen 0 (unnamed peer), msg_controllen 0 (no ancillary data),
                // msg_flags MSG_TRUNC when a message did not fit.
                write_user(p, m, msg + 8, &0u32.to_le_bytes())?;
                write_user(p, m, msg + 40, &0u64.to_le_bytes())?;
                let out_flags = if full > n { MSG_TRUNC as u32 } else { 0 };
                write_user(p, m, msg + 48, &out_flags.to_le_bytes())?;
                Ok(result_len(&u, flags, n, full))
            })();
            block(m, &f, &u, flags, true, r)
        }
        _ => unreachable!("filtered above"),
    })
}

/// `SCM_RIGHTS` in a message's control data: descriptors are not passed (the message is
/// refused with `EOPNOTSUPP`, logged once, rather than sent without them). Other control
/// messages (credentials) carry nothing the receiver could not know: they are dropped.
fn refuse_passed_descriptors(p: &mut Process, m: &mut dyn Machine, h: &MsgHdr) -> KResult<()> {
    const SOL_SOCKET: i32 = 1;
    const SCM_RIGHTS: i32 = 1;
    let len = h.controllen.min(4096) as usize;
    if len < 16 {
        return Ok(());
    }
    let mut control = vec![0u8; len];
    p.vm.copy_from_user(m.pages(), h.control, &mut control)?;
    let mut at = 0;
    while at + 16 <= len {
        let clen = u64::from_le_bytes(control[at..at + 8].try_into().expect("8 bytes")) as usize;
        let level = i32::from_le_bytes(control[at + 8..at + 12].try_into().expect("4 bytes"));
        let kind = i32::from_le_bytes(control[at + 12..at + 16].try_into().expect("4 bytes"));
        if level == SOL_SOCKET && kind == SCM_RIGHTS {
            const KEY: u64 = u64::MAX - 7;
            if p.unsupported_logged.insert(KEY) {
                m.log(format_args!(
                    "sendmsg: passing descriptors over AF_UNIX sockets (SCM_RIGHTS) is not supported: EOPNOTSUPP"
                ));
            }
            return Err(Errno::EOPNOTSUPP);
        }
        if clen < 16 {
            return Err(Errno::EINVAL);
        }
        at += clen.div_ceil(8) * 8;
    }
    Ok(())
}

/// What a receive returns: the bytes copied, or with `MSG_TRUNC` on a message socket the
/// message's full length.
fn result_len(u: &UnixSocket, flags: u64, n: usize, full: usize) -> i64 {
    if flags & MSG_TRUNC != 0 && u.kind != UnixKind::Stream {
        full as i64
    } else {
        n as i64
    }
}

/// `EAGAIN` on a blocking end (and no `MSG_DONTWAIT`) waits for the pair, bounded by
/// `SO_RCVTIMEO`/`SO_SNDTIMEO` (`EAGAIN` at the end); without a timeout as the file
/// layer waits (`EDEADLK` when nothing could end it).
fn block(
    m: &mut dyn Machine,
    f: &OpenFile,
    u: &UnixSocket,
    flags: u64,
    receive: bool,
    r: KResult<i64>,
) -> Outcome {
    if r != Err(Errno::EAGAIN) || flags & MSG_DONTWAIT != 0 || f.nonblock() {
        return ret(r);
    }
    let o = u.options();
    let timeout = if receive {
        o.rcv_timeout
    } else {
        o.snd_timeout
    };
    if timeout == 0 {
        return f.block_on_eagain(m, r);
    }
    let deadline = m
        .restart_deadline()
        .unwrap_or_else(|| m.monotonic_ns().saturating_add(timeout));
    Outcome::Block(Wait {
        channels: vec![u.waitable().channel()],
        deadline: Some(deadline),
        on_timeout: Errno::EAGAIN.as_return(),
        on_wake: None,
    })
}

fn sys_socketpair(
    p: &mut Process,
    m: &mut dyn Machine,
    domain: u64,
    ty: u64,
    protocol: u64,
    sv: u64,
) -> KResult<i64> {
    if domain != AF_UNIX as u64 {
        // Linux: families without pairs (AF_INET...) refuse with EOPNOTSUPP.
        return Err(if domain == super::AF_INET as u64 {
            Errno::EOPNOTSUPP
        } else {
            Errno::EAFNOSUPPORT
        });
    }
    let kind = unix_kind(ty)?;
    if protocol != 0 {
        return Err(Errno::EPROTONOSUPPORT);
    }
    // Check the result array before installing anything.
    read_user::<8>(p, m, sv)?;
    let (a, b) = UnixSocket::pair(kind);
    let flags = O_RDWR
        | if ty & SOCK_NONBLOCK != 0 {
            O_NONBLOCK
        } else {
            0
        };
    let cloexec = ty & SOCK_CLOEXEC != 0;
    let open = |u: Arc<UnixSocket>| {
        let path = alloc::format!("socket:[{}]", u.ino);
        OpenFile::new(u, path, flags)
    };
    let fa = p.files.install(open(a), cloexec)?;
    let fb = match p.files.install(open(b), cloexec) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = p.files.close(fa);
            return Err(e);
        }
    };
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&fa.to_le_bytes());
    out[4..].copy_from_slice(&fb.to_le_bytes());
    write_user(p, m, sv, &out)?;
    Ok(0)
}

/// The `SOCK_*` type of a `socket`/`socketpair` type argument.
fn unix_kind(ty: u64) -> KResult<UnixKind> {
    if ty & !(0xf | SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    match ty & 0xf {
        super::SOCK_STREAM => Ok(UnixKind::Stream),
        super::SOCK_DGRAM => Ok(UnixKind::Dgram),
        SOCK_SEQPACKET => Ok(UnixKind::SeqPacket),
        _ => Err(Errno::ESOCKTNOSUPPORT),
    }
}

/// `socket(AF_UNIX, ty, protocol)`: an unbound [`UnixPort`].
fn sys_socket(p: &mut Process, ty: u64, protocol: u64) -> KResult<i64> {
    let kind = unix_kind(ty)?;
    if protocol != 0 {
        return Err(Errno::EPROTONOSUPPORT);
    }
    let port = UnixPort::new(kind);
    let flags = O_RDWR
        | if ty & SOCK_NONBLOCK != 0 {
            O_NONBLOCK
        } else {
            0
        };
    let path = alloc::format!("socket:[{}]", port.ino);
    let fd = p
        .files
        .install(OpenFile::new(port, path, flags), ty & SOCK_CLOEXEC != 0)?;
    Ok(i64::from(fd))
}

/// Largest `sockaddr_un` (family and 108 bytes of path).
const SOCKADDR_UN_LEN: u64 = 110;

/// The name in the `sockaddr_un` of `len` bytes at `addr`: `None` for the family alone
/// (`bind` then picks an abstract name). A path is made absolute and canonical (its
/// directory must exist: `ENOENT`, `ENOTDIR`).
fn read_name(
    p: &mut Process,
    m: &mut dyn Machine,
    addr: u64,
    len: u64,
) -> KResult<Option<UnixName>> {
    if !(2..=SOCKADDR_UN_LEN).contains(&len) {
        return Err(Errno::EINVAL);
    }
    let mut b = vec![0u8; len as usize];
    p.vm.copy_from_user(m.pages(), addr, &mut b)?;
    if u16::from_le_bytes([b[0], b[1]]) != AF_UNIX {
        return Err(Errno::EINVAL);
    }
    let sun_path = &b[2..];
    if sun_path.is_empty() {
        return Ok(None);
    }
    if sun_path[0] == 0 {
        return Ok(Some(UnixName::Abstract(sun_path[1..].to_vec())));
    }
    let end = sun_path
        .iter()
        .position(|&c| c == 0)
        .unwrap_or(sun_path.len());
    let path = core::str::from_utf8(&sun_path[..end]).map_err(|_| Errno::ENOENT)?;
    let (dir, last) = match path.rsplit_once('/') {
        Some(("", last)) => ("/", last),
        Some((dir, last)) => (dir, last),
        None => (".", path),
    };
    if last.is_empty() || last == "." || last == ".." {
        return Err(Errno::EINVAL);
    }
    let dir = p.vfs.dir_path(&p.cwd, dir)?;
    let sep = if dir.ends_with('/') { "" } else { "/" };
    Ok(Some(UnixName::Path(alloc::format!("{dir}{sep}{last}"))))
}

/// The port bound to `name`, if one is (and still open).
fn bound(p: &Process, name: &UnixName) -> Option<Arc<UnixPort>> {
    p.unix_names.get(name).and_then(alloc::sync::Weak::upgrade)
}

/// What reaching `name` gives when no port of this program is bound to it: the path's own
/// lookup error (`ENOENT`...), else `ECONNREFUSED` (a file that is no listening socket, or
/// an abstract name nobody holds), as on Linux with no server running.
fn unreachable(p: &Process, name: &UnixName) -> Errno {
    match name {
        UnixName::Path(path) => match p.vfs.find("/", path, true) {
            Err(e) => e,
            Ok(_) => Errno::ECONNREFUSED,
        },
        UnixName::Abstract(_) => Errno::ECONNREFUSED,
    }
}

/// The calls on a [`UnixPort`] (a socket from `socket(AF_UNIX)` not connected yet).
fn port_call(
    p: &mut Process,
    m: &mut dyn Machine,
    nr: u64,
    a: [u64; 6],
    f: &Arc<OpenFile>,
    port: &Arc<UnixPort>,
) -> Outcome {
    match nr {
        nr::BIND => ret(port_bind(p, m, port, a[1], a[2])),
        nr::LISTEN => {
            // As Linux: a negative or too large backlog is the largest (`somaxconn`).
            let backlog = a[1] as i32;
            let backlog = if !(0..=4096).contains(&backlog) {
                4096
            } else {
                backlog as usize
            };
            ret(port.listen(backlog).map(|()| 0))
        }
        nr::ACCEPT | nr::ACCEPT4 => {
            let flags = if nr == nr::ACCEPT4 { a[3] } else { 0 };
            if flags & !(SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 {
                return ret(Err(Errno::EINVAL));
            }
            if port.kind == UnixKind::Dgram {
                return ret(Err(Errno::EOPNOTSUPP));
            }
            match port.accept(m) {
                Ok(end) => ret(install_end(p, end, flags).and_then(|fd| {
                    if a[1] != 0 {
                        // The connecting side is unnamed.
                        put_unnamed(p, m, a[1], a[2])?;
                    }
                    Ok(i64::from(fd))
                })),
                Err(Errno::EAGAIN) => f.block_on_eagain(m, Err(Errno::EAGAIN)),
                Err(e) => ret(Err(e)),
            }
        }
        nr::CONNECT => port_connect(p, m, f, port, a[1], a[2]),
        nr::GETSOCKNAME => ret(put_name(p, m, port.name().as_ref(), a[1], a[2]).map(|()| 0)),
        nr::GETPEERNAME | nr::SHUTDOWN => ret(Err(Errno::ENOTCONN)),
        nr::SENDTO | nr::SENDMSG => {
            let to = if nr == nr::SENDTO {
                Ok((a[4], a[5]))
            } else {
                get_msghdr(p, m, a[1]).map(|h| (h.name, u64::from(h.namelen)))
            };
            ret(to.and_then(|(addr, len)| {
                if addr == 0 || len == 0 {
                    return Err(Errno::ENOTCONN);
                }
                let name = read_name(p, m, addr, len)?.ok_or(Errno::EINVAL)?;
                // No datagram port can be bound, so nothing receives.
                Err(match bound(p, &name) {
                    Some(_) => Errno::ECONNREFUSED,
                    None => unreachable(p, &name),
                })
            }))
        }
        nr::RECVFROM | nr::RECVMSG => {
            if port.kind == UnixKind::Dgram {
                f.block_on_eagain(m, Err(Errno::EAGAIN))
            } else {
                ret(Err(Errno::EINVAL))
            }
        }
        nr::SETSOCKOPT => {
            let mut o = port.options();
            let r = sys_setsockopt(p, m, &mut o, a[1], a[2], a[3], a[4]);
            port.set_options(o);
            ret(r)
        }
        nr::GETSOCKOPT => {
            let (kind, o, listening) = (port.kind, port.options(), port.listening());
            ret(sys_getsockopt(
                p, m, kind, o, listening, a[1], a[2], a[3], a[4],
            ))
        }
        _ => unreachable!("filtered by the caller"),
    }
}

/// `bind` of a port to a name (`None`: an abstract name of its own, as Linux's autobind).
fn port_bind(
    p: &mut Process,
    m: &mut dyn Machine,
    port: &Arc<UnixPort>,
    addr: u64,
    len: u64,
) -> KResult<i64> {
    if port.kind == UnixKind::Dgram {
        const KEY: u64 = u64::MAX - 5;
        if p.unsupported_logged.insert(KEY) {
            m.log(format_args!(
                "bind(AF_UNIX, SOCK_DGRAM): datagram sockets cannot be bound to a name (stream and seqpacket ones can): EOPNOTSUPP"
            ));
        }
        return Err(Errno::EOPNOTSUPP);
    }
    if port.name().is_some() {
        return Err(Errno::EINVAL);
    }
    let name = match read_name(p, m, addr, len)? {
        Some(n) => n,
        None => UnixName::Abstract(alloc::format!("{:05x}", port.ino & 0xf_ffff).into_bytes()),
    };
    if let UnixName::Path(path) = &name {
        // The name takes the place of a file: a path already there is in use, and the
        // directory must be writable (`/tmp`; the root file system is read-only).
        if p.vfs.find("/", path, false).is_ok() {
            return Err(Errno::EADDRINUSE);
        }
        let dir = path
            .rsplit_once('/')
            .map_or("/", |(d, _)| if d.is_empty() { "/" } else { d });
        if p.vfs.find("/", dir, true)?.fs != crate::fs::FsId::Tmp {
            return Err(Errno::EROFS);
        }
    }
    if bound(p, &name).is_some() {
        return Err(Errno::EADDRINUSE);
    }
    port.set_name(name.clone())?;
    // Names of closed sockets are free again.
    let dead: alloc::vec::Vec<UnixName> = p
        .unix_names
        .iter()
        .filter(|(_, w)| w.strong_count() == 0)
        .map(|(n, _)| n.clone())
        .collect();
    for n in dead {
        p.unix_names.remove(&n);
    }
    p.unix_names.insert(name, Arc::downgrade(port));
    Ok(0)
}

/// `connect` of a port: the listening port bound to the name takes the connection, and
/// the caller's port holds its end of the new pair.
fn port_connect(
    p: &mut Process,
    m: &mut dyn Machine,
    f: &Arc<OpenFile>,
    port: &Arc<UnixPort>,
    addr: u64,
    len: u64,
) -> Outcome {
    let r = (|| {
        let name = read_name(p, m, addr, len)?.ok_or(Errno::EINVAL)?;
        let Some(target) = bound(p, &name) else {
            return Err(unreachable(p, &name));
        };
        if port.kind == UnixKind::Dgram {
            return Err(Errno::ECONNREFUSED);
        }
        match port.connect_to(m, &target) {
            Ok(()) => Ok(Ok(0)),
            // The listener's queue is full: wait for it to accept one.
            Err(Errno::EAGAIN) if !f.nonblock() => Ok(Err(target)),
            Err(e) => Err(e),
        }
    })();
    match r {
        Ok(Ok(v)) => ret(Ok(v)),
        Ok(Err(target)) => Outcome::Block(Wait {
            channels: vec![target.waitable().channel()],
            deadline: None,
            on_timeout: 0,
            on_wake: None,
        }),
        Err(e) => ret(Err(e)),
    }
}

/// Installs an accepted end with `accept4`'s flags.
fn install_end(p: &mut Process, end: Arc<UnixSocket>, flags: u64) -> KResult<i32> {
    let oflags = O_RDWR
        | if flags & SOCK_NONBLOCK != 0 {
            O_NONBLOCK
        } else {
            0
        };
    let path = alloc::format!("socket:[{}]", end.ino);
    p.files
        .install(OpenFile::new(end, path, oflags), flags & SOCK_CLOEXEC != 0)
}

/// Writes `name` as a `sockaddr_un` (the family alone when unnamed) and its length.
fn put_name(
    p: &mut Process,
    m: &mut dyn Machine,
    name: Option<&UnixName>,
    addr: u64,
    len_ptr: u64,
) -> KResult<()> {
    let mut b = AF_UNIX.to_le_bytes().to_vec();
    match name {
        None => {}
        Some(UnixName::Path(path)) => {
            b.extend_from_slice(path.as_bytes());
            b.push(0);
        }
        Some(UnixName::Abstract(n)) => {
            b.push(0);
            b.extend_from_slice(n);
        }
    }
    let len = i32::from_le_bytes(read_user::<4>(p, m, len_ptr)?);
    if len < 0 {
        return Err(Errno::EINVAL);
    }
    let n = (len as usize).min(b.len());
    write_user(p, m, addr, &b[..n])?;
    write_user(p, m, len_ptr, &(b.len() as u32).to_le_bytes())
}

/// Writes an unnamed `sockaddr_un` (`sun_family` only) and its length 2.
fn put_unnamed(p: &mut Process, m: &mut dyn Machine, addr: u64, len_ptr: u64) -> KResult<()> {
    let len = i32::from_le_bytes(read_user::<4>(p, m, len_ptr)?);
    if len < 0 {
        return Err(Errno::EINVAL);
    }
    let b = AF_UNIX.to_le_bytes();
    let n = (len as usize).min(b.len());
    write_user(p, m, addr, &b[..n])?;
    write_user(p, m, len_ptr, &2u32.to_le_bytes())
}

/// `setsockopt` on an `AF_UNIX` socket: changes `o`, the socket's options.
fn sys_setsockopt(
    p: &mut Process,
    m: &mut dyn Machine,
    o: &mut UnixOptions,
    level: u64,
    name: u64,
    val: u64,
    len: u64,
) -> KResult<i64> {
    if level != SOL_SOCKET {
        return Err(Errno::EOPNOTSUPP);
    }
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
    match name {
        SO_SNDBUF | SO_SNDBUFFORCE => {
            let v = int()?.max(0) as u32;
            o.sndbuf = v;
        }
        SO_RCVBUF | SO_RCVBUFFORCE => {
            let v = int()?.max(0) as u32;
            o.rcvbuf = v;
        }
        SO_RCVTIMEO => {
            let ns = timeval_ns(&raw)?;
            o.rcv_timeout = ns;
        }
        SO_SNDTIMEO => {
            let ns = timeval_ns(&raw)?;
            o.snd_timeout = ns;
        }
        SO_PASSCRED => {
            let on = int()? != 0;
            o.pass_cred = on;
        }
        SO_REUSEADDR | SO_KEEPALIVE | SO_RCVLOWAT | SO_SNDLOWAT => {
            int()?;
        }
        SO_LINGER if raw.len() >= 8 => {}
        _ => return Err(Errno::ENOPROTOOPT),
    }
    Ok(0)
}

/// `getsockopt` on an `AF_UNIX` socket of `kind` with options `o` (`listening`: a port
/// that listens, for `SO_ACCEPTCONN`).
#[allow(clippy::too_many_arguments)]
fn sys_getsockopt(
    p: &mut Process,
    m: &mut dyn Machine,
    kind: UnixKind,
    o: UnixOptions,
    listening: bool,
    level: u64,
    name: u64,
    val: u64,
    len_ptr: u64,
) -> KResult<i64> {
    let len = i32::from_le_bytes(read_user::<4>(p, m, len_ptr)?);
    if len < 0 {
        return Err(Errno::EINVAL);
    }
    if level != SOL_SOCKET {
        return Err(Errno::EOPNOTSUPP);
    }
    let int = |v: i32| v.to_le_bytes().to_vec();
    // Linux reports twice what was set (bookkeeping overhead).
    let buf = |v: u32| {
        int(if v == 0 {
            UNIX_CAPACITY as i32
        } else {
            (v.min(i32::MAX as u32 / 2) * 2) as i32
        })
    };
    let bytes = match name {
        SO_TYPE => int(kind.number()),
        SO_DOMAIN => int(AF_UNIX as i32),
        SO_ACCEPTCONN => int(i32::from(listening)),
        SO_PROTOCOL | SO_ERROR | SO_REUSEADDR | SO_KEEPALIVE => int(0),
        SO_SNDBUF => buf(o.sndbuf),
        SO_RCVBUF => buf(o.rcvbuf),
        SO_RCVLOWAT | SO_SNDLOWAT => int(1),
        SO_PASSCRED => int(o.pass_cred as i32),
        // struct ucred of the peer: this process, root.
        SO_PEERCRED => {
            let mut v = int(crate::process::PID as i32);
            v.extend_from_slice(&[0u8; 8]);
            v
        }
        SO_LINGER => vec![0u8; 8],
        SO_RCVTIMEO => timeval_bytes(o.rcv_timeout),
        SO_SNDTIMEO => timeval_bytes(o.snd_timeout),
        _ => return Err(Errno::ENOPROTOOPT),
    };
    let n = (len as usize).min(bytes.len());
    write_user(p, m, val, &bytes[..n])?;
    write_user(p, m, len_ptr, &(n as u32).to_le_bytes())?;
    Ok(0)
}

#[cfg(test)]
mod tests;
