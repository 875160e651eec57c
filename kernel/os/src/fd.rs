//! File descriptors: the per-process table and the open files (file descriptions) it
//! points to.
//!
//! An [`OpenFile`] is shared (`Arc`) by every descriptor `dup`ed from the same `open`, so
//! they share the offset and status flags, as on Linux. Mutable state sits behind `spin`
//! locks so the table can be shared by threads.
//!
//! # Readiness and waiting (the contract every file kind keeps)
//!
//! - [`OpenFile::poll_events`] is the one source of readiness (`POLLIN`, `POLLOUT`,
//!   `POLLHUP`, `POLLERR`, `POLLRDHUP`...) for `poll`, `select` and `epoll`. A new file kind
//!   (sockets) adds an arm there.
//! - A file whose readiness can change holds a [`Waitable`] (returned by
//!   [`OpenFile::waitable`]): a kernel object id and an event counter. Every state change
//!   that can change readiness calls [`Waitable::notify`], which bumps the counter (what
//!   edge-triggered epoll compares) and wakes [`Channel::Object`] (blocked reads and
//!   writes) and [`Channel::Io`] (every `poll`/`select`/`epoll_wait` waiter). Where no
//!   machine is at hand (a `Drop`), call [`Waitable::bump`] and wake later.
//! - Reads and writes that would block return `EAGAIN` whatever `O_NONBLOCK` says; the
//!   system-call layer turns that into a wait with [`OpenFile::block_on_eagain`] for
//!   blocking descriptors. With one thread and a descriptor only this process can make
//!   ready (a pipe or eventfd), the wait could never end: it fails with `EDEADLK` instead.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;

use crate::errno::{Errno, KResult};
use crate::fs::node::{alloc_ino, BLKSIZE, S_IFCHR, S_IFIFO};
use crate::fs::{Body, Device, FsId, Inode, Stat};
use crate::machine::Machine;
use crate::process::{Channel, Outcome, Wait};

/// Access-mode mask of the open flags.
pub const O_ACCMODE: u32 = 3;
/// Open for reading only.
pub const O_RDONLY: u32 = 0;
/// Open for writing only.
pub const O_WRONLY: u32 = 1;
/// Open for reading and writing.
pub const O_RDWR: u32 = 2;
/// Create the file if missing.
pub const O_CREAT: u32 = 0o100;
/// With `O_CREAT`: fail if the file exists.
pub const O_EXCL: u32 = 0o200;
/// Do not make a terminal the controlling terminal (ignored).
pub const O_NOCTTY: u32 = 0o400;
/// Truncate to length 0.
pub const O_TRUNC: u32 = 0o1000;
/// Every write appends.
pub const O_APPEND: u32 = 0o2000;
/// Non-blocking I/O.
pub const O_NONBLOCK: u32 = 0o4000;
/// Synchronised data writes (accepted; memory is always in sync).
pub const O_DSYNC: u32 = 0o10000;
/// Signal-driven I/O (recorded, never signalled).
pub const O_ASYNC: u32 = 0o20000;
/// Direct I/O (recorded, no effect).
pub const O_DIRECT: u32 = 0o40000;
/// Large-file offsets (always on for 64-bit).
pub const O_LARGEFILE: u32 = 0o100000;
/// Fail unless the path is a directory.
pub const O_DIRECTORY: u32 = 0o200000;
/// Do not follow a final symbolic link.
pub const O_NOFOLLOW: u32 = 0o400000;
/// Do not update access times (recorded, no effect).
pub const O_NOATIME: u32 = 0o1000000;
/// Close on `execve`.
pub const O_CLOEXEC: u32 = 0o2000000;
/// A descriptor for the path only (no reads or writes).
pub const O_PATH: u32 = 0o10000000;
/// An unnamed temporary file in the given directory (includes `O_DIRECTORY`).
pub const O_TMPFILE: u32 = 0o20000000 | O_DIRECTORY;

/// Status flags `F_SETFL` may change.
pub const SETFL_MASK: u32 = O_APPEND | O_ASYNC | O_DIRECT | O_NOATIME | O_NONBLOCK;

/// Most descriptors a process may hold (`RLIMIT_NOFILE`).
pub const MAX_FDS: usize = 1024;
/// Default (and initial) capacity of a pipe.
pub const PIPE_CAPACITY: usize = 65536;
/// Largest capacity `F_SETPIPE_SZ` grants.
pub const PIPE_MAX_CAPACITY: usize = 1 << 20;
/// Writes up to this size are atomic on pipes.
pub const PIPE_BUF: usize = 4096;

/// `poll` events.
pub mod poll {
    /// Data to read.
    pub const POLLIN: u16 = 0x1;
    /// Urgent data.
    pub const POLLPRI: u16 = 0x2;
    /// Writing will not block.
    pub const POLLOUT: u16 = 0x4;
    /// Error (always reported).
    pub const POLLERR: u16 = 0x8;
    /// Hang-up (always reported).
    pub const POLLHUP: u16 = 0x10;
    /// Invalid descriptor.
    pub const POLLNVAL: u16 = 0x20;
    /// Normal data to read.
    pub const POLLRDNORM: u16 = 0x40;
    /// Normal data may be written.
    pub const POLLWRNORM: u16 = 0x100;
}
use poll::*;

/// Which console stream a descriptor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    /// Standard input: always at end of file.
    Stdin,
    /// Standard output (`Machine::write_stdout`).
    Stdout,
    /// Standard error (`Machine::write_stderr`).
    Stderr,
}

/// What a file whose readiness changes carries: the kernel object id its waiters block on
/// and a counter of state changes (for edge-triggered epoll).
#[derive(Debug)]
pub struct Waitable {
    id: u64,
    seq: AtomicU64,
}

impl Default for Waitable {
    fn default() -> Self {
        Waitable::new()
    }
}

impl Waitable {
    /// A new object with a fresh id.
    pub fn new() -> Waitable {
        Waitable::with_id(alloc_ino())
    }

    /// A counter that wakes the waiters of object `id` (objects sharing one wait channel,
    /// such as the two directions of a socket pair).
    pub fn with_id(id: u64) -> Waitable {
        Waitable {
            id,
            seq: AtomicU64::new(0),
        }
    }

    /// The object's id ([`Channel::Object`]).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The channel blocked reads and writes of this object wait on.
    pub fn channel(&self) -> Channel {
        Channel::Object(self.id)
    }

    /// How many state changes there have been.
    pub fn seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    /// Records a state change without waking anyone (the caller wakes later).
    pub fn bump(&self) {
        self.seq.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a state change and wakes this object's waiters and every I/O waiter.
    pub fn notify(&self, m: &mut dyn Machine) {
        self.bump();
        wake_object(m, self.id);
    }
}

/// Wakes the waiters of object `id` and every `poll`/`select`/`epoll` waiter.
pub fn wake_object(m: &mut dyn Machine, id: u64) {
    m.wake(Channel::Object(id), usize::MAX);
    m.wake(Channel::Io, usize::MAX);
}

/// The shared state of a pipe.
#[derive(Debug)]
struct PipeState {
    buf: VecDeque<u8>,
    capacity: usize,
    readers: usize,
    writers: usize,
    /// Message lengths, oldest first, when the pipe keeps message boundaries (datagram
    /// and seqpacket socket pairs); `None` for a byte stream.
    msgs: Option<VecDeque<usize>>,
}

/// A pipe: a bounded byte queue between a read end and a write end.
#[derive(Debug)]
pub struct Pipe {
    /// Inode number shown by `fstat`.
    pub ino: u64,
    /// Wake-ups and edges.
    pub waitable: Waitable,
    state: Mutex<PipeState>,
}

impl Pipe {
    fn new() -> Arc<Pipe> {
        Pipe::with(Waitable::new(), PIPE_CAPACITY, false)
    }

    /// A pipe waking through `waitable`, holding `capacity` bytes, keeping message
    /// boundaries if `messages` (for socket pairs; no ends counted yet).
    fn with(waitable: Waitable, capacity: usize, messages: bool) -> Arc<Pipe> {
        Arc::new(Pipe {
            ino: alloc_ino(),
            waitable,
            state: Mutex::new(PipeState {
                buf: VecDeque::new(),
                capacity,
                readers: 0,
                writers: 0,
                msgs: messages.then(VecDeque::new),
            }),
        })
    }

    /// Reads what is buffered; `EAGAIN` when empty with a writer left, 0 at end of file.
    fn read(&self, m: &mut dyn Machine, buf: &mut [u8]) -> KResult<usize> {
        self.recv(m, buf, false).map(|(n, _)| n)
    }

    /// Reads what is buffered (leaving it there with `peek`): in message mode one whole
    /// message, truncated to `buf`. Returns the bytes copied and the length of what was
    /// there to read (the message length in message mode); `EAGAIN` when empty with a
    /// writer left, 0 at end of file.
    fn recv(&self, m: &mut dyn Machine, buf: &mut [u8], peek: bool) -> KResult<(usize, usize)> {
        let mut s = self.state.lock();
        let next = match &s.msgs {
            Some(q) => q.front().copied(),
            None if buf.is_empty() => return Ok((0, 0)),
            None => (!s.buf.is_empty()).then_some(s.buf.len()),
        };
        let Some(len) = next else {
            return if s.writers == 0 {
                Ok((0, 0))
            } else {
                Err(Errno::EAGAIN)
            };
        };
        let n = buf.len().min(len);
        for (dst, src) in buf[..n].iter_mut().zip(s.buf.iter()) {
            *dst = *src;
        }
        if peek {
            return Ok((n, len));
        }
        match &mut s.msgs {
            Some(q) => {
                q.pop_front();
                s.buf.drain(..len);
            }
            None => {
                s.buf.drain(..n);
            }
        }
        drop(s);
        self.waitable.notify(m);
        Ok((n, len))
    }

    /// Writes what fits (all or nothing up to `PIPE_BUF` bytes when non-blocking, as Linux;
    /// in message mode always all or nothing, `EMSGSIZE` if it could never fit);
    /// `EAGAIN` when full, `EPIPE` without readers.
    fn write(&self, m: &mut dyn Machine, data: &[u8]) -> KResult<usize> {
        let mut s = self.state.lock();
        if s.readers == 0 {
            return Err(Errno::EPIPE);
        }
        let space = s.capacity.saturating_sub(s.buf.len());
        let n = if s.msgs.is_some() {
            if data.len() > s.capacity {
                return Err(Errno::EMSGSIZE);
            }
            if space < data.len() {
                return Err(Errno::EAGAIN);
            }
            data.len()
        } else {
            if data.is_empty() {
                return Ok(0);
            }
            if space == 0 || (data.len() <= PIPE_BUF && space < data.len()) {
                return Err(Errno::EAGAIN);
            }
            data.len().min(space)
        };
        // The buffer is kernel memory the program fills: once memory is down to the
        // kernel's reserve it stops growing (ENOMEM, as Linux when it has no page for it).
        if s.buf.len() + n > s.buf.capacity()
            && (m.pages().memory_low() || s.buf.try_reserve(n).is_err())
        {
            return Err(Errno::ENOMEM);
        }
        if let Some(q) = &mut s.msgs {
            if q.try_reserve(1).is_err() {
                return Err(Errno::ENOMEM);
            }
            q.push_back(n);
        }
        s.buf.extend(&data[..n]);
        drop(s);
        self.waitable.notify(m);
        Ok(n)
    }

    /// Bytes waiting to be read.
    pub fn available(&self) -> usize {
        self.state.lock().buf.len()
    }

    /// Current capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.state.lock().capacity
    }

    /// Sets the capacity (`F_SETPIPE_SZ`): rounded up to a power of two of at least a page;
    /// `EINVAL` above [`PIPE_MAX_CAPACITY`], `EBUSY` if more is buffered than would fit.
    pub fn set_capacity(&self, want: u64) -> KResult<usize> {
        if want > PIPE_MAX_CAPACITY as u64 {
            return Err(Errno::EINVAL);
        }
        let cap = (want as usize).max(4096).next_power_of_two();
        let mut s = self.state.lock();
        if s.buf.len() > cap {
            return Err(Errno::EBUSY);
        }
        s.capacity = cap;
        Ok(cap)
    }
}

/// What an open file refers to.
#[derive(Debug)]
pub enum Object {
    /// A node of the tree (file, directory, device, or a symlink opened with `O_PATH`).
    Node(Arc<Inode>),
    /// A `/proc` file whose text was captured at open time.
    Snapshot(Arc<Inode>, Vec<u8>),
    /// A console stream.
    Console(Console),
    /// The read end of a pipe.
    PipeRead(Arc<Pipe>),
    /// The write end of a pipe.
    PipeWrite(Arc<Pipe>),
    /// An `eventfd` counter.
    EventFd(Arc<EventFd>),
    /// An `epoll` instance.
    Epoll(Arc<Epoll>),
    /// A network socket.
    Socket(Arc<crate::net::Socket>),
    /// One end of an `AF_UNIX` socket pair.
    Unix(Arc<UnixSocket>),
}

#[derive(Debug)]
struct FileState {
    flags: u32,
    offset: u64,
}

/// An open file description, shared by `dup`ed descriptors.
#[derive(Debug)]
pub struct OpenFile {
    /// What it refers to.
    pub object: Object,
    /// Canonical path at open time (`pipe:[ino]` for pipes, `/dev/console` for the console).
    pub path: String,
    readable: bool,
    writable: bool,
    path_only: bool,
    state: Mutex<FileState>,
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        match &self.object {
            Object::PipeRead(p) => p.state.lock().readers -= 1,
            Object::PipeWrite(p) => p.state.lock().writers -= 1,
            _ => return,
        }
        // No machine here: whoever closed the descriptor wakes (see `FdTable::close`'s
        // callers in the system-call layer).
        if let Some(w) = self.waitable() {
            w.bump();
        }
    }
}

/// Offsets may not pass this (Linux `MAX_LFS_FILESIZE`).
const MAX_OFFSET: u64 = i64::MAX as u64;

impl OpenFile {
    /// Wraps an opened node with the `open` flags (access mode, `O_APPEND`, `O_NONBLOCK`,
    /// `O_PATH`...). `O_CLOEXEC` belongs to the descriptor, not here.
    pub fn new(object: Object, path: String, flags: u32) -> Arc<OpenFile> {
        let acc = flags & O_ACCMODE;
        let path_only = flags & O_PATH != 0;
        match &object {
            Object::PipeRead(p) => p.state.lock().readers += 1,
            Object::PipeWrite(p) => p.state.lock().writers += 1,
            _ => {}
        }
        let keep = O_ACCMODE
            | O_APPEND
            | O_NONBLOCK
            | O_DSYNC
            | O_ASYNC
            | O_DIRECT
            | O_LARGEFILE
            | O_NOATIME
            | O_PATH
            | (O_TMPFILE & !O_DIRECTORY)
            | O_DIRECTORY
            | O_NOFOLLOW;
        Arc::new(OpenFile {
            object,
            path,
            readable: !path_only && (acc == O_RDONLY || acc == O_RDWR),
            writable: !path_only && (acc == O_WRONLY || acc == O_RDWR),
            path_only,
            state: Mutex::new(FileState {
                flags: flags & keep,
                offset: 0,
            }),
        })
    }

    /// Opened with `O_PATH`.
    pub fn is_path_only(&self) -> bool {
        self.path_only
    }

    /// Opened for reading.
    pub fn readable(&self) -> bool {
        self.readable
    }

    /// Opened for writing.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// The node behind the file, if it is one of the tree's.
    pub fn inode(&self) -> Option<&Arc<Inode>> {
        match &self.object {
            Object::Node(n) | Object::Snapshot(n, _) => Some(n),
            _ => None,
        }
    }

    /// The pipe behind the file, if it is a pipe end.
    pub fn pipe(&self) -> Option<&Arc<Pipe>> {
        match &self.object {
            Object::PipeRead(p) | Object::PipeWrite(p) => Some(p),
            _ => None,
        }
    }

    /// The flags `F_GETFL` reports (access mode and status flags).
    pub fn status_flags(&self) -> u32 {
        self.state.lock().flags
    }

    /// Replaces the status flags `F_SETFL` may change ([`SETFL_MASK`]).
    pub fn set_status_flags(&self, flags: u32) {
        let mut s = self.state.lock();
        s.flags = (s.flags & !SETFL_MASK) | (flags & SETFL_MASK);
    }

    /// Sets or clears `O_NONBLOCK` (`FIONBIO`).
    pub fn set_nonblock(&self, on: bool) {
        let mut s = self.state.lock();
        if on {
            s.flags |= O_NONBLOCK;
        } else {
            s.flags &= !O_NONBLOCK;
        }
    }

    /// Whether `O_NONBLOCK` is set.
    pub fn nonblock(&self) -> bool {
        self.state.lock().flags & O_NONBLOCK != 0
    }

    /// The current offset.
    pub fn offset(&self) -> u64 {
        self.state.lock().offset
    }

    /// Sets the offset directly (directory positions).
    pub fn set_offset(&self, off: u64) {
        self.state.lock().offset = off;
    }

    /// Whether reads and writes have positions (`ESPIPE` otherwise).
    pub fn seekable(&self) -> bool {
        matches!(self.object, Object::Node(_) | Object::Snapshot(..))
    }

    /// Reads at the file offset, advancing it.
    pub fn read(&self, m: &mut dyn Machine, buf: &mut [u8]) -> KResult<usize> {
        if !self.readable {
            return Err(Errno::EBADF);
        }
        match &self.object {
            Object::PipeRead(p) => p.read(m, buf),
            Object::EventFd(e) => e.read(m, buf),
            Object::Socket(s) => s.read(m, buf),
            Object::Unix(u) => u.recv(m, buf, false).map(|(n, _)| n),
            Object::Epoll(_) => Err(Errno::EINVAL),
            Object::Console(_) => Ok(0),
            Object::PipeWrite(_) => Err(Errno::EBADF),
            _ => {
                let mut s = self.state.lock();
                let n = self.read_object(m, buf, s.offset)?;
                s.offset += n as u64;
                Ok(n)
            }
        }
    }

    /// Reads at `off` without moving the offset (`pread64`).
    pub fn pread(&self, m: &mut dyn Machine, buf: &mut [u8], off: u64) -> KResult<usize> {
        if !self.readable {
            return Err(Errno::EBADF);
        }
        if !self.seekable() {
            return Err(Errno::ESPIPE);
        }
        self.read_object(m, buf, off)
    }

    fn read_object(&self, m: &mut dyn Machine, buf: &mut [u8], off: u64) -> KResult<usize> {
        match &self.object {
            Object::Snapshot(_, data) => {
                let off = usize::try_from(off).unwrap_or(usize::MAX).min(data.len());
                let n = buf.len().min(data.len() - off);
                buf[..n].copy_from_slice(&data[off..off + n]);
                Ok(n)
            }
            Object::Node(n) => match &n.body {
                Body::Dir(_) => Err(Errno::EISDIR),
                Body::Device(Device::Null) => Ok(0),
                Body::Device(Device::Zero) => {
                    buf.fill(0);
                    Ok(buf.len())
                }
                Body::Device(Device::Random | Device::URandom) => {
                    m.fill_random(buf);
                    Ok(buf.len())
                }
                Body::StaticFile(_) | Body::MemFile(_) => Ok(n.read_at(off, buf)),
                Body::Symlink(_) | Body::ProcMaps => Err(Errno::EINVAL),
            },
            _ => Err(Errno::ESPIPE),
        }
    }

    /// Writes at the file offset (at the end with `O_APPEND`), advancing it.
    pub fn write(&self, m: &mut dyn Machine, data: &[u8], now: u64) -> KResult<usize> {
        if !self.writable {
            return Err(Errno::EBADF);
        }
        match &self.object {
            Object::PipeWrite(p) => p.write(m, data),
            Object::EventFd(e) => e.write(m, data),
            Object::Socket(s) => s.write(m, data),
            Object::Unix(u) => u.send(m, data),
            Object::Epoll(_) => Err(Errno::EINVAL),
            Object::Console(Console::Stdout) => {
                m.write_stdout(data);
                Ok(data.len())
            }
            Object::Console(Console::Stderr) => {
                m.write_stderr(data);
                Ok(data.len())
            }
            Object::Console(Console::Stdin) | Object::PipeRead(_) => Err(Errno::EBADF),
            _ => {
                let mut s = self.state.lock();
                let off = if s.flags & O_APPEND != 0 {
                    self.inode().map_or(0, |n| n.size())
                } else {
                    s.offset
                };
                let n = self.write_object(m, data, off, now)?;
                if self
                    .inode()
                    .is_some_and(|n| !matches!(n.body, Body::Device(_)))
                {
                    s.offset = off + n as u64;
                }
                Ok(n)
            }
        }
    }

    /// Writes at `off` without moving the offset (`pwrite64`; Linux appends anyway with
    /// `O_APPEND`).
    pub fn pwrite(&self, m: &mut dyn Machine, data: &[u8], off: u64, now: u64) -> KResult<usize> {
        if !self.writable {
            return Err(Errno::EBADF);
        }
        if !self.seekable() {
            return Err(Errno::ESPIPE);
        }
        let off = if self.state.lock().flags & O_APPEND != 0 {
            self.inode().map_or(0, |n| n.size())
        } else {
            off
        };
        self.write_object(m, data, off, now)
    }

    fn write_object(&self, m: &mut dyn Machine, data: &[u8], off: u64, now: u64) -> KResult<usize> {
        match &self.object {
            Object::Node(n) => match &n.body {
                Body::Device(_) => Ok(data.len()),
                Body::MemFile(_) => {
                    if off > MAX_OFFSET {
                        return Err(Errno::EINVAL);
                    }
                    // A /tmp file is kernel memory: once memory is down to the kernel's
                    // reserve, files stop growing (ENOSPC, a full tmpfs).
                    let grows = off.saturating_add(data.len() as u64) > n.size();
                    if grows && m.pages().memory_low() {
                        return Err(Errno::ENOSPC);
                    }
                    n.write_at(off, data, now)
                }
                Body::Dir(_) => Err(Errno::EISDIR),
                _ => Err(Errno::EBADF),
            },
            Object::Snapshot(..) => Err(Errno::EBADF),
            _ => Err(Errno::ESPIPE),
        }
    }

    /// `lseek`: `whence` is `SEEK_SET` 0, `SEEK_CUR` 1, `SEEK_END` 2, `SEEK_DATA` 3,
    /// `SEEK_HOLE` 4. Devices always report 0; directories accept only absolute positions
    /// and `SEEK_CUR`.
    pub fn seek(&self, off: i64, whence: u32) -> KResult<u64> {
        if !self.seekable() {
            return Err(Errno::ESPIPE);
        }
        let node = self.inode();
        if let Some(n) = node {
            if matches!(n.body, Body::Device(_)) {
                if whence > 4 {
                    return Err(Errno::EINVAL);
                }
                self.set_offset(0);
                return Ok(0);
            }
        }
        let is_dir = node.is_some_and(|n| n.is_dir());
        let size = match &self.object {
            Object::Snapshot(_, d) => d.len() as u64,
            _ => node.map_or(0, |n| n.size()),
        };
        let mut s = self.state.lock();
        let new = match whence {
            0 => Some(off),
            1 => s
                .offset
                .try_into()
                .ok()
                .and_then(|o: i64| o.checked_add(off)),
            2 if !is_dir => (size as i64).checked_add(off),
            3 | 4 if !is_dir => {
                if off < 0 || off as u64 >= size {
                    return Err(Errno::ENXIO);
                }
                Some(if whence == 3 { off } else { size as i64 })
            }
            _ => return Err(Errno::EINVAL),
        };
        let new = match new {
            Some(n) if n >= 0 => n as u64,
            Some(_) => return Err(Errno::EINVAL),
            None => return Err(Errno::EOVERFLOW),
        };
        s.offset = new;
        Ok(new)
    }

    /// The status `fstat` reports.
    pub fn stat(&self) -> Stat {
        match &self.object {
            Object::Node(n) | Object::Snapshot(n, _) => n.stat(),
            Object::Console(c) => Stat {
                dev: (0, FsId::Dev as u32),
                ino: *c as u64 + 1,
                mode: S_IFCHR | 0o620,
                nlink: 1,
                rdev: (5, 1),
                blksize: 1024,
                ..Stat::default()
            },
            Object::PipeRead(p) | Object::PipeWrite(p) => Stat {
                dev: (0, FsId::Pipe as u32),
                ino: p.ino,
                mode: S_IFIFO | 0o600,
                nlink: 1,
                blksize: BLKSIZE,
                ..Stat::default()
            },
            // Anonymous inodes: no file type bits, as on Linux.
            Object::Socket(s) => Stat {
                dev: (0, FsId::Pipe as u32),
                ino: s.id,
                mode: crate::net::S_IFSOCK | 0o777,
                nlink: 1,
                blksize: BLKSIZE,
                ..Stat::default()
            },
            Object::Unix(u) => Stat {
                dev: (0, FsId::Pipe as u32),
                ino: u.ino,
                mode: crate::net::S_IFSOCK | 0o777,
                nlink: 1,
                blksize: BLKSIZE,
                ..Stat::default()
            },
            Object::EventFd(_) | Object::Epoll(_) => Stat {
                dev: (0, FsId::Pipe as u32),
                ino: self.waitable().map_or(0, Waitable::id),
                mode: 0o600,
                nlink: 1,
                blksize: BLKSIZE,
                ..Stat::default()
            },
        }
    }

    /// The events that are ready now, among `events` (`POLLERR`, `POLLHUP` and `POLLNVAL`
    /// are always reported).
    pub fn poll(&self, events: u16) -> u16 {
        self.poll_events() & (events | POLLERR | POLLHUP | POLLNVAL)
    }

    /// Everything that is ready now (`POLLIN`, `POLLOUT`, `POLLHUP`, `POLLERR`,
    /// `POLLRDHUP`...), not filtered by what a caller asked for: the one source of
    /// readiness for `poll`, `select` and `epoll`.
    pub fn poll_events(&self) -> u16 {
        match &self.object {
            Object::PipeRead(p) => {
                let s = p.state.lock();
                let mut r = 0;
                if !s.buf.is_empty() {
                    r |= POLLIN | POLLRDNORM;
                }
                if s.writers == 0 {
                    r |= POLLHUP;
                }
                r
            }
            Object::PipeWrite(p) => {
                let s = p.state.lock();
                if s.readers == 0 {
                    POLLERR
                } else if s.capacity - s.buf.len() >= PIPE_BUF.min(s.capacity) {
                    POLLOUT | POLLWRNORM
                } else {
                    0
                }
            }
            _ if self.path_only => POLLNVAL,
            Object::EventFd(e) => e.poll_events(),
            Object::Epoll(e) => e.poll_events(),
            Object::Socket(s) => s.poll_events(),
            Object::Unix(u) => u.poll_events(),
            Object::Console(_) => {
                let mut r = 0;
                if self.readable {
                    r |= POLLIN | POLLRDNORM;
                }
                if self.writable {
                    r |= POLLOUT | POLLWRNORM;
                }
                r
            }
            Object::Node(_) | Object::Snapshot(..) => POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM,
        }
    }

    /// The object's wake-up identity and event counter, for files whose readiness changes.
    pub fn waitable(&self) -> Option<&Waitable> {
        match &self.object {
            Object::PipeRead(p) | Object::PipeWrite(p) => Some(&p.waitable),
            Object::EventFd(e) => Some(&e.waitable),
            Object::Epoll(e) => Some(&e.waitable),
            Object::Socket(s) => Some(&s.waitable),
            Object::Unix(u) => Some(u.waitable()),
            Object::Node(_) | Object::Snapshot(..) | Object::Console(_) => None,
        }
    }

    /// A counter that changes whenever the file's readiness may have changed (the edges of
    /// edge-triggered epoll). Files that never change report a constant.
    pub fn event_seq(&self) -> u64 {
        match &self.object {
            Object::Epoll(e) => e.event_seq(),
            Object::Socket(s) => s.event_seq(),
            Object::Unix(u) => u.event_seq(),
            _ => self.waitable().map_or(0, Waitable::seq),
        }
    }

    /// Whether only this process's own system calls can make the file ready (pipes,
    /// eventfds, files; not sockets, which the network can make ready).
    pub fn locally_driven(&self) -> bool {
        match &self.object {
            Object::Node(_)
            | Object::Snapshot(..)
            | Object::Console(_)
            | Object::PipeRead(_)
            | Object::PipeWrite(_)
            | Object::EventFd(_)
            | Object::Unix(_) => true,
            Object::Epoll(e) => e.locally_driven(),
            Object::Socket(_) => false,
        }
    }

    /// The outcome of a read or write of this file that returned `r`: `EAGAIN` on a
    /// blocking descriptor becomes a wait on the object that runs the call again when woken
    /// (`EDEADLK` when nothing could ever wake it: one thread and a file only this process
    /// drives; the caller logs it).
    pub fn block_on_eagain(&self, m: &mut dyn Machine, r: KResult<i64>) -> Outcome {
        match r {
            Err(Errno::EAGAIN) if !self.nonblock() => match self.waitable() {
                Some(_) if m.thread_count() <= 1 && self.locally_driven() => {
                    Outcome::Return(Errno::EDEADLK.as_return())
                }
                Some(w) => Outcome::Block(Wait {
                    channels: alloc::vec![w.channel()],
                    deadline: None,
                    on_timeout: 0,
                    on_wake: None,
                }),
                None => Outcome::Return(Errno::EAGAIN.as_return()),
            },
            r => Outcome::Return(r.unwrap_or_else(Errno::as_return)),
        }
    }
}

/// One descriptor: the open file and its close-on-exec flag.
#[derive(Debug, Clone)]
struct Slot {
    file: Arc<OpenFile>,
    cloexec: bool,
}

/// The file-descriptor table.
#[derive(Debug, Default)]
pub struct FdTable {
    slots: Vec<Option<Slot>>,
    /// Bumped whenever a descriptor is installed or closed (see [`FdTable::generation`]).
    generation: u64,
    /// `select` requests of threads waiting with a timeout, by thread id: their user copies
    /// were cleared (a timeout leaves them empty), and a rerun after a wake-up reads them
    /// from here.
    pub select_saved: BTreeMap<u32, [Vec<u8>; 3]>,
}

/// Validates a descriptor number.
fn index(fd: i32) -> KResult<usize> {
    usize::try_from(fd)
        .ok()
        .filter(|&i| i < MAX_FDS)
        .ok_or(Errno::EBADF)
}

impl FdTable {
    /// An empty table.
    pub fn new() -> FdTable {
        FdTable::default()
    }

    /// A table with the console on 0 (stdin, always at end of file), 1 (stdout) and
    /// 2 (stderr). The console is not a terminal.
    pub fn with_console() -> FdTable {
        let mut t = FdTable::new();
        for (c, flags) in [
            (Console::Stdin, O_RDONLY),
            (Console::Stdout, O_WRONLY),
            (Console::Stderr, O_WRONLY),
        ] {
            t.install(
                OpenFile::new(Object::Console(c), "/dev/console".into(), flags),
                false,
            )
            .expect("empty table has room");
        }
        t
    }

    /// The open file behind `fd` (`EBADF` if none).
    pub fn get(&self, fd: i32) -> KResult<Arc<OpenFile>> {
        let i = index(fd)?;
        match self.slots.get(i) {
            Some(Some(s)) => Ok(s.file.clone()),
            _ => Err(Errno::EBADF),
        }
    }

    /// Installs `file` at the lowest free descriptor (`EMFILE` when full).
    pub fn install(&mut self, file: Arc<OpenFile>, cloexec: bool) -> KResult<i32> {
        self.install_from(0, file, cloexec)
    }

    /// Installs `file` at the lowest free descriptor `>= min` (`F_DUPFD`): `EINVAL` if `min`
    /// is out of range, `EMFILE` when none is free.
    pub fn install_from(&mut self, min: i32, file: Arc<OpenFile>, cloexec: bool) -> KResult<i32> {
        let min = usize::try_from(min)
            .ok()
            .filter(|&m| m < MAX_FDS)
            .ok_or(Errno::EINVAL)?;
        let free = (min..MAX_FDS)
            .find(|&i| self.slots.get(i).is_none_or(|s| s.is_none()))
            .ok_or(Errno::EMFILE)?;
        if free >= self.slots.len() {
            self.slots.resize(free + 1, None);
        }
        self.slots[free] = Some(Slot { file, cloexec });
        self.generation += 1;
        Ok(free as i32)
    }

    /// Installs `file` at exactly `fd`, closing what was there (`dup2`); `EBADF` if out of
    /// range.
    pub fn install_at(&mut self, fd: i32, file: Arc<OpenFile>, cloexec: bool) -> KResult<()> {
        let i = index(fd)?;
        if i >= self.slots.len() {
            self.slots.resize(i + 1, None);
        }
        self.slots[i] = Some(Slot { file, cloexec });
        self.generation += 1;
        Ok(())
    }

    /// Closes `fd`.
    pub fn close(&mut self, fd: i32) -> KResult<()> {
        let i = index(fd)?;
        match self.slots.get_mut(i).and_then(Option::take) {
            Some(_) => {
                while matches!(self.slots.last(), Some(None)) {
                    self.slots.pop();
                }
                self.generation += 1;
                Ok(())
            }
            None => Err(Errno::EBADF),
        }
    }

    /// `dup`: a new lowest descriptor for the same open file (close-on-exec clear).
    pub fn dup(&mut self, fd: i32) -> KResult<i32> {
        let f = self.get(fd)?;
        self.install(f, false)
    }

    /// `dup2`/`dup3`: makes `new` refer to `old`'s open file. `dup3` (with `flags`) fails
    /// with `EINVAL` when `old == new` or for flags other than `O_CLOEXEC`.
    pub fn dup3(&mut self, old: i32, new: i32, flags: Option<u32>) -> KResult<i32> {
        if let Some(fl) = flags {
            if fl & !O_CLOEXEC != 0 || old == new {
                return Err(Errno::EINVAL);
            }
        }
        let f = self.get(old)?;
        if old == new {
            return Ok(new);
        }
        let cloexec = flags.is_some_and(|fl| fl & O_CLOEXEC != 0);
        self.install_at(new, f, cloexec)?;
        Ok(new)
    }

    /// The close-on-exec flag of `fd`.
    pub fn cloexec(&self, fd: i32) -> KResult<bool> {
        let i = index(fd)?;
        match self.slots.get(i) {
            Some(Some(s)) => Ok(s.cloexec),
            _ => Err(Errno::EBADF),
        }
    }

    /// Sets the close-on-exec flag of `fd`.
    pub fn set_cloexec(&mut self, fd: i32, on: bool) -> KResult<()> {
        let i = index(fd)?;
        match self.slots.get_mut(i) {
            Some(Some(s)) => {
                s.cloexec = on;
                Ok(())
            }
            _ => Err(Errno::EBADF),
        }
    }

    /// Creates a pipe; `flags` may hold `O_CLOEXEC`, `O_NONBLOCK` and `O_DIRECT`
    /// (`EINVAL` otherwise). Returns (read end, write end).
    pub fn pipe(&mut self, flags: u32) -> KResult<(i32, i32)> {
        if flags & !(O_CLOEXEC | O_NONBLOCK | O_DIRECT) != 0 {
            return Err(Errno::EINVAL);
        }
        let cloexec = flags & O_CLOEXEC != 0;
        let status = flags & (O_NONBLOCK | O_DIRECT);
        let p = Pipe::new();
        let name = alloc::format!("pipe:[{}]", p.ino);
        let r = OpenFile::new(Object::PipeRead(p.clone()), name.clone(), O_RDONLY | status);
        let w = OpenFile::new(Object::PipeWrite(p), name, O_WRONLY | status);
        let rfd = self.install(r, cloexec)?;
        match self.install(w, cloexec) {
            Ok(wfd) => Ok((rfd, wfd)),
            Err(e) => {
                let _ = self.close(rfd);
                Err(e)
            }
        }
    }

    /// `close_range`: closes (or with `cloexec`, marks close-on-exec) every descriptor in
    /// `[first, last]`.
    pub fn close_range(&mut self, first: u32, last: u32, cloexec: bool) -> KResult<()> {
        if first > last {
            return Err(Errno::EINVAL);
        }
        let end = (last as usize).min(self.slots.len().saturating_sub(1));
        for i in first as usize..=end {
            if cloexec {
                if let Some(Some(s)) = self.slots.get_mut(i) {
                    s.cloexec = true;
                }
            } else if let Some(slot) = self.slots.get_mut(i) {
                *slot = None;
            }
        }
        self.generation += 1;
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
        Ok(())
    }

    /// Closes every close-on-exec descriptor (for `execve`).
    pub fn close_on_exec(&mut self) {
        for slot in &mut self.slots {
            if slot.as_ref().is_some_and(|s| s.cloexec) {
                *slot = None;
            }
        }
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
        self.generation += 1;
    }

    /// A counter that changes whenever the set of open descriptors may have changed
    /// (for caches such as `/proc/self/fd`).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The open descriptors, in order.
    pub fn fds(&self) -> impl Iterator<Item = i32> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_some())
            .map(|(i, _)| i as i32)
    }
}

pub mod epoll;
pub mod eventfd;
pub mod unix;

pub use epoll::{Epoll, EpollEvent};
pub use eventfd::EventFd;
pub use unix::{UnixKind, UnixSocket};

#[cfg(test)]
mod tests;
