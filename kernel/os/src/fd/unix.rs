//! `AF_UNIX` socket pairs (`socketpair`): two ends joined by two pipes, one per direction.
//!
//! Each end reads from one [`Pipe`] and writes to the other, counting as that pipe's
//! reader and writer, so end of file, `EPIPE` and back-pressure are the pipe's. Datagram
//! and seqpacket pairs use pipes in message mode (one read returns one message). Both
//! pipes of a pair share one wait channel: any change wakes both ends' waiters.
//!
//! Shutdown: `SHUT_WR` stops this end's writing (the peer reads end of file, writes here
//! fail with `EPIPE`); `SHUT_RD` stops its reading (reads return end of file once the
//! buffer is empty, the peer's writes fail with `EPIPE`). Closing an end does both. A
//! datagram pair behaves the same (Linux leaves a datagram peer waiting instead).
//!
//! A socket made by `socket(AF_UNIX, ...)` is a [`UnixPort`]: it may be bound to a name
//! and listen. A connection to a listening port makes a pair: the accepting side gets one
//! end, and the connecting port holds the other and from then on works as that end (so a
//! descriptor registered with `epoll` before `connect` sees the connection's events).

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use spin::Mutex;

use super::file::{Access, FileLike};
use super::pipe::Pipe;
use super::poll::{POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
use super::{anon_stat, Waitable, PIPE_BUF};
use crate::errno::{Errno, KResult};
use crate::fs::node::alloc_ino;
use crate::fs::Stat;
use crate::machine::Machine;
use crate::net::{POLLRDHUP, S_IFSOCK};

/// Bytes each direction buffers (Linux's default `SO_SNDBUF` for local sockets).
pub const UNIX_CAPACITY: usize = 212_992;

/// The socket type of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnixKind {
    /// `SOCK_STREAM`: a byte stream.
    Stream,
    /// `SOCK_DGRAM`: messages.
    Dgram,
    /// `SOCK_SEQPACKET`: messages, connection-oriented.
    SeqPacket,
}

impl UnixKind {
    /// The `SOCK_*` number.
    pub fn number(self) -> i32 {
        match self {
            UnixKind::Stream => 1,
            UnixKind::Dgram => 2,
            UnixKind::SeqPacket => 5,
        }
    }
}

/// Options an end keeps (`setsockopt`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnixOptions {
    /// `SO_SNDBUF` as set (0: default).
    pub sndbuf: u32,
    /// `SO_RCVBUF` as set (0: default).
    pub rcvbuf: u32,
    /// `SO_RCVTIMEO` in nanoseconds (0: none).
    pub rcv_timeout: u64,
    /// `SO_SNDTIMEO` in nanoseconds (0: none).
    pub snd_timeout: u64,
    /// `SO_PASSCRED` (recorded; no credentials are sent).
    pub pass_cred: bool,
}

#[derive(Debug, Default)]
struct EndState {
    shut_rd: bool,
    shut_wr: bool,
    options: UnixOptions,
}

/// One end of a socket pair.
#[derive(Debug)]
pub struct UnixSocket {
    /// Inode number shown by `fstat` (and in `socket:[ino]`).
    pub ino: u64,
    /// Stream, datagram or seqpacket.
    pub kind: UnixKind,
    rx: Arc<Pipe>,
    tx: Arc<Pipe>,
    state: Mutex<EndState>,
}

impl UnixSocket {
    /// Two connected ends.
    pub fn pair(kind: UnixKind) -> (Arc<UnixSocket>, Arc<UnixSocket>) {
        Self::pair_on(kind, alloc_ino())
    }

    /// Two connected ends whose changes wake the waiters of object `id`.
    pub fn pair_on(kind: UnixKind, id: u64) -> (Arc<UnixSocket>, Arc<UnixSocket>) {
        let messages = kind != UnixKind::Stream;
        let a2b = Pipe::with(Waitable::with_id(id), UNIX_CAPACITY, messages);
        let b2a = Pipe::with(Waitable::with_id(id), UNIX_CAPACITY, messages);
        for p in [&a2b, &b2a] {
            let mut s = p.state.lock();
            s.readers = 1;
            s.writers = 1;
        }
        let end = |rx: &Arc<Pipe>, tx: &Arc<Pipe>| {
            Arc::new(UnixSocket {
                ino: alloc_ino(),
                kind,
                rx: rx.clone(),
                tx: tx.clone(),
                state: Mutex::new(EndState::default()),
            })
        };
        (end(&b2a, &a2b), end(&a2b, &b2a))
    }

    /// Receives (see `Pipe::recv`): the bytes copied and the length of the message (the
    /// bytes copied for streams); `EAGAIN` when nothing is there yet, 0 at end of file.
    pub fn recv(&self, m: &mut dyn Machine, buf: &mut [u8], peek: bool) -> KResult<(usize, usize)> {
        match self.rx.recv(m, buf, peek) {
            Err(Errno::EAGAIN) if self.state.lock().shut_rd => Ok((0, 0)),
            r => r,
        }
    }

    /// Sends (see `Pipe::write`): `EPIPE` after this end's `SHUT_WR` or once the peer
    /// stopped reading; `EAGAIN` when full.
    pub fn send(&self, m: &mut dyn Machine, data: &[u8]) -> KResult<usize> {
        if self.state.lock().shut_wr {
            return Err(Errno::EPIPE);
        }
        self.tx.send(m, data)
    }

    /// `shutdown`: `how` is `SHUT_RD` 0, `SHUT_WR` 1 or `SHUT_RDWR` 2 (`EINVAL` otherwise).
    pub fn shutdown(&self, m: &mut dyn Machine, how: u32) -> KResult<()> {
        if how > 2 {
            return Err(Errno::EINVAL);
        }
        let mut s = self.state.lock();
        if how != 1 && !s.shut_rd {
            s.shut_rd = true;
            self.rx.state.lock().readers -= 1;
        }
        if how != 0 && !s.shut_wr {
            s.shut_wr = true;
            self.tx.state.lock().writers -= 1;
        }
        drop(s);
        self.tx.waitable.bump();
        self.rx.waitable.notify(m);
        Ok(())
    }

    /// Readiness, as Linux's `unix_poll`: `POLLIN` with data or once reading is shut
    /// down (`POLLRDHUP` too), `POLLHUP` when both directions are shut, `POLLOUT` when a
    /// write would not block.
    pub fn poll_events(&self) -> u16 {
        let st = self.state.lock();
        let rx = self.rx.state.lock();
        let tx = self.tx.state.lock();
        let readable = match &rx.msgs {
            Some(q) => !q.is_empty(),
            None => !rx.buf.is_empty(),
        };
        let rcv_shut = st.shut_rd || rx.writers == 0;
        let snd_shut = st.shut_wr || tx.readers == 0;
        let space = tx.capacity.saturating_sub(tx.buf.len());
        let mut r = 0;
        if readable || rcv_shut {
            r |= POLLIN | POLLRDNORM;
        }
        if rcv_shut {
            r |= POLLRDHUP;
        }
        if rcv_shut && snd_shut {
            r |= super::poll::POLLHUP;
        }
        if snd_shut || space >= PIPE_BUF.min(tx.capacity) {
            r |= POLLOUT | POLLWRNORM;
        }
        r
    }

    /// The pair's wake-up identity (shared by both ends and directions).
    pub fn waitable(&self) -> &Waitable {
        &self.rx.waitable
    }

    /// Changes in either direction (edge-triggered epoll).
    pub fn event_seq(&self) -> u64 {
        self.rx.waitable.seq().wrapping_add(self.tx.waitable.seq())
    }

    /// Bytes (streams) or the next message's length (datagrams) waiting (`FIONREAD`).
    pub fn available(&self) -> usize {
        let rx = self.rx.state.lock();
        match &rx.msgs {
            Some(q) => q.front().copied().unwrap_or(0),
            None => rx.buf.len(),
        }
    }

    /// The options set so far.
    pub fn options(&self) -> UnixOptions {
        self.state.lock().options
    }

    /// Changes the options.
    pub fn set_options(&self, f: impl FnOnce(&mut UnixOptions)) {
        f(&mut self.state.lock().options);
    }
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        let s = self.state.get_mut();
        if !s.shut_rd {
            self.rx.state.lock().readers -= 1;
        }
        if !s.shut_wr {
            self.tx.state.lock().writers -= 1;
        }
        // No machine here: whoever closed the descriptor wakes (the shared channel).
        self.rx.waitable.bump();
        self.tx.waitable.bump();
    }
}

impl FileLike for UnixSocket {
    fn read(&self, m: &mut dyn Machine, buf: &mut [u8]) -> KResult<usize> {
        self.recv(m, buf, false).map(|(n, _)| n)
    }

    fn io_timeout(&self, write: bool) -> u64 {
        let o = self.options();
        [o.rcv_timeout, o.snd_timeout][usize::from(write)]
    }

    fn write(&self, m: &mut dyn Machine, data: &[u8]) -> KResult<usize> {
        self.send(m, data)
    }

    fn stat(&self) -> Stat {
        anon_stat(self.ino, S_IFSOCK | 0o777)
    }

    fn poll_events(&self, _: Access) -> u16 {
        UnixSocket::poll_events(self)
    }

    fn waitable(&self) -> Option<&Waitable> {
        Some(UnixSocket::waitable(self))
    }

    fn event_seq(&self) -> u64 {
        UnixSocket::event_seq(self)
    }

    fn nread(&self, _: u64) -> KResult<u64> {
        Ok(self.available() as u64)
    }
}

/// The name an `AF_UNIX` socket is bound to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum UnixName {
    /// A path of the file system (canonical, absolute).
    Path(String),
    /// A name in the abstract namespace (`sun_path` starting with a NUL byte), without
    /// that byte.
    Abstract(Vec<u8>),
}

#[derive(Debug, Default)]
struct PortState {
    name: Option<UnixName>,
    /// Options set before connecting: the connection's end takes them.
    options: UnixOptions,
    /// Listening: the backlog and the server ends of connections not yet accepted.
    listen: Option<(usize, VecDeque<Arc<UnixSocket>>)>,
}

/// A socket from `socket(AF_UNIX, ...)`: unbound, bound to a [`UnixName`], listening,
/// or connected (then it works as its end of the pair, [`UnixPort::connected`]).
#[derive(Debug)]
pub struct UnixPort {
    /// Inode number shown by `fstat` (and in `socket:[ino]`).
    pub ino: u64,
    /// Stream, datagram or seqpacket.
    pub kind: UnixKind,
    waitable: Waitable,
    state: Mutex<PortState>,
    /// Its end of the pair, once connected (the pair shares the port's wait channel).
    end: Mutex<Option<Arc<UnixSocket>>>,
}

impl UnixPort {
    /// A new, unbound socket.
    pub fn new(kind: UnixKind) -> Arc<UnixPort> {
        let waitable = Waitable::new();
        Arc::new(UnixPort {
            ino: waitable.id(),
            kind,
            waitable,
            state: Mutex::new(PortState::default()),
            end: Mutex::new(None),
        })
    }

    /// Its end of the pair, once `connect` made one.
    pub fn connected(&self) -> Option<Arc<UnixSocket>> {
        self.end.lock().clone()
    }

    /// Connects to the listening `target`: the pair's other end waits there to be
    /// accepted (see [`UnixPort::connect`] for the errors). `EISCONN` when connected
    /// already.
    pub fn connect_to(&self, m: &mut dyn Machine, target: &UnixPort) -> KResult<()> {
        if self.end.lock().is_some() {
            return Err(Errno::EISCONN);
        }
        let end = target.connect(m, self.kind, self.waitable.id())?;
        let options = self.options();
        end.set_options(|o| *o = options);
        *self.end.lock() = Some(end);
        Ok(())
    }

    /// The options set so far (`setsockopt` before connecting).
    pub fn options(&self) -> UnixOptions {
        self.state.lock().options
    }

    /// Replaces the options.
    pub fn set_options(&self, options: UnixOptions) {
        self.state.lock().options = options;
    }

    /// The name it is bound to.
    pub fn name(&self) -> Option<UnixName> {
        self.state.lock().name.clone()
    }

    /// Records the name `bind` gave it (`EINVAL` when it has one already).
    pub fn set_name(&self, name: UnixName) -> KResult<()> {
        let mut s = self.state.lock();
        if s.name.is_some() {
            return Err(Errno::EINVAL);
        }
        s.name = Some(name);
        Ok(())
    }

    /// `listen`: starts (or, called again, resizes) the queue of connections waiting to be
    /// accepted (`EINVAL` when unbound, `EOPNOTSUPP` for datagrams).
    pub fn listen(&self, backlog: usize) -> KResult<()> {
        if self.kind == UnixKind::Dgram {
            return Err(Errno::EOPNOTSUPP);
        }
        let mut s = self.state.lock();
        if s.name.is_none() {
            return Err(Errno::EINVAL);
        }
        match &mut s.listen {
            Some((b, _)) => *b = backlog,
            None => s.listen = Some((backlog, VecDeque::new())),
        }
        Ok(())
    }

    /// Whether it listens.
    pub fn listening(&self) -> bool {
        self.state.lock().listen.is_some()
    }

    /// A connection from a socket of `kind`: makes the pair (waking waiters of object
    /// `channel`), queues the server end and returns the client's. `ECONNREFUSED` when not listening, `EPROTOTYPE` for another
    /// socket type, `EAGAIN` when the queue is full.
    pub fn connect(
        &self,
        m: &mut dyn Machine,
        kind: UnixKind,
        channel: u64,
    ) -> KResult<Arc<UnixSocket>> {
        let mut s = self.state.lock();
        let Some((backlog, queue)) = &mut s.listen else {
            return Err(Errno::ECONNREFUSED);
        };
        if kind != self.kind {
            return Err(Errno::EPROTOTYPE);
        }
        // Linux admits one more than the backlog.
        if queue.len() > *backlog {
            return Err(Errno::EAGAIN);
        }
        let (client, server) = UnixSocket::pair_on(kind, channel);
        queue.push_back(server);
        drop(s);
        self.waitable.notify(m);
        Ok(client)
    }

    /// The next connection waiting to be accepted: `EINVAL` when not listening, `EAGAIN`
    /// when none waits.
    pub fn accept(&self, m: &mut dyn Machine) -> KResult<Arc<UnixSocket>> {
        let mut s = self.state.lock();
        let Some((_, queue)) = &mut s.listen else {
            return Err(Errno::EINVAL);
        };
        let end = queue.pop_front().ok_or(Errno::EAGAIN)?;
        drop(s);
        // A connecting side may wait for room in the queue.
        self.waitable.notify(m);
        Ok(end)
    }

    /// The port's wake-up identity.
    pub fn waitable(&self) -> &Waitable {
        &self.waitable
    }
}

impl FileLike for UnixPort {
    fn read(&self, m: &mut dyn Machine, buf: &mut [u8]) -> KResult<usize> {
        match self.connected() {
            Some(u) => FileLike::read(&*u, m, buf),
            None if self.kind == UnixKind::Dgram => Err(Errno::EAGAIN),
            None => Err(Errno::EINVAL),
        }
    }

    fn write(&self, m: &mut dyn Machine, data: &[u8]) -> KResult<usize> {
        match self.connected() {
            Some(u) => u.send(m, data),
            None => Err(Errno::ENOTCONN),
        }
    }

    fn stat(&self) -> Stat {
        anon_stat(self.ino, S_IFSOCK | 0o777)
    }

    /// As Linux's `unix_poll`: a listener is readable with connections waiting; a socket
    /// that is not connected is writable and hung up; a connected one is its end's.
    fn poll_events(&self, access: Access) -> u16 {
        if let Some(u) = self.connected() {
            return FileLike::poll_events(&*u, access);
        }
        let s = self.state.lock();
        match &s.listen {
            Some((_, q)) if !q.is_empty() => POLLIN | POLLRDNORM,
            Some(_) => 0,
            None => POLLOUT | POLLWRNORM | super::poll::POLLHUP,
        }
    }

    /// The port's, which its pair shares once connected.
    fn waitable(&self) -> Option<&Waitable> {
        Some(&self.waitable)
    }

    fn event_seq(&self) -> u64 {
        match self.connected() {
            // Past the port's own count, so a change of either is a change.
            Some(u) => u.event_seq().wrapping_add(self.waitable.seq()),
            None => self.waitable.seq(),
        }
    }

    fn nread(&self, arg: u64) -> KResult<u64> {
        match self.connected() {
            Some(u) => FileLike::nread(&*u, arg),
            None => Ok(0),
        }
    }
}
