//! `AF_NETLINK` sockets of the routing family (`NETLINK_ROUTE`): what a program writes is
//! answered at once ([`crate::net::netlink::answer`], from the stack's interfaces as they
//! are then) and the answer waits in the socket's queue, one datagram per read, as the
//! kernel's side of a netlink conversation does on Linux.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use spin::Mutex;

use super::file::{Access, FileLike};
use super::poll::{POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
use super::{anon_stat, Waitable};
use crate::errno::{Errno, KResult};
use crate::fs::node::alloc_ino;
use crate::fs::Stat;
use crate::machine::Machine;
use crate::net::netlink::{answer, datagrams};
use crate::net::{Net, S_IFSOCK};

/// Largest datagram of an answer (Linux's `NLMSG_GOODSIZE` on 4 KiB pages).
const DATAGRAM: usize = 4096;
/// Most answer bytes queued before sends fail with `ENOBUFS` (a program that asks without
/// reading).
const QUEUE_LIMIT: usize = 212_992;

/// A netlink socket (see the module documentation).
pub struct NetlinkSocket {
    ino: u64,
    net: Net,
    waitable: Waitable,
    state: Mutex<State>,
}

struct State {
    /// The port id `bind` set (or the process's pid: the kernel picks that one first).
    port: u32,
    /// Multicast groups asked for in `bind` (kept for `getsockname`; nothing is sent to them).
    groups: u32,
    queue: VecDeque<Vec<u8>>,
    queued: usize,
}

impl NetlinkSocket {
    /// A socket answering from `net`'s interfaces.
    pub fn new(net: Net) -> NetlinkSocket {
        NetlinkSocket {
            ino: alloc_ino(),
            net,
            waitable: Waitable::new(),
            state: Mutex::new(State {
                port: crate::process::PID as u32,
                groups: 0,
                queue: VecDeque::new(),
                queued: 0,
            }),
        }
    }

    /// The port id and multicast groups (`getsockname`).
    pub fn name(&self) -> (u32, u32) {
        let s = self.state.lock();
        (s.port, s.groups)
    }

    /// `bind`: a port id (0: the kernel's choice, the pid) and groups.
    pub fn bind(&self, port: u32, groups: u32) {
        let mut s = self.state.lock();
        s.port = if port == 0 {
            crate::process::PID as u32
        } else {
            port
        };
        s.groups = groups;
    }

    /// Takes a request; its answer is queued for reading. Returns the bytes taken.
    pub fn send(&self, m: &mut dyn Machine, data: &[u8]) -> KResult<usize> {
        let port = self.state.lock().port;
        let reply = answer(data, &self.net.links(m), self.net.gateway(), port);
        let mut s = self.state.lock();
        if s.queued + reply.len() > QUEUE_LIMIT {
            return Err(Errno::ENOBUFS);
        }
        for d in datagrams(&reply, DATAGRAM) {
            s.queued += d.len();
            s.queue.push_back(d);
        }
        drop(s);
        if !reply.is_empty() {
            self.waitable.notify(m);
        }
        Ok(data.len())
    }

    /// Reads the next datagram into `buf` (the rest of a longer one is dropped, unless
    /// `peek` leaves it queued). Returns the bytes copied and the datagram's length;
    /// `EAGAIN` when nothing is queued.
    pub fn recv(&self, buf: &mut [u8], peek: bool) -> KResult<(usize, usize)> {
        let mut s = self.state.lock();
        let Some(d) = s.queue.front() else {
            return Err(Errno::EAGAIN);
        };
        let (n, full) = (d.len().min(buf.len()), d.len());
        buf[..n].copy_from_slice(&d[..n]);
        if !peek {
            s.queue.pop_front();
            s.queued -= full;
        }
        Ok((n, full))
    }

    /// The wait channel of blocked reads.
    pub fn waitable(&self) -> &Waitable {
        &self.waitable
    }
}

impl FileLike for NetlinkSocket {
    fn read(&self, _m: &mut dyn Machine, buf: &mut [u8]) -> KResult<usize> {
        self.recv(buf, false).map(|(n, _)| n)
    }

    fn write(&self, m: &mut dyn Machine, data: &[u8]) -> KResult<usize> {
        self.send(m, data)
    }

    fn stat(&self) -> Stat {
        anon_stat(self.ino, S_IFSOCK | 0o777)
    }

    fn poll_events(&self, _: Access) -> u16 {
        let readable = if self.state.lock().queue.is_empty() {
            0
        } else {
            POLLIN | POLLRDNORM
        };
        readable | POLLOUT | POLLWRNORM
    }

    fn waitable(&self) -> Option<&Waitable> {
        Some(&self.waitable)
    }

    fn nread(&self, _: u64) -> KResult<u64> {
        Ok(self
            .state
            .lock()
            .queue
            .front()
            .map_or(0, |d| d.len() as u64))
    }
}
