//! Pipes: a bounded byte queue ([`Pipe`]) and its two ends ([`PipeReader`],
//! [`PipeWriter`]), each an open-file kind. An end counts itself on the pipe while it
//! exists, so a reader sees end of file once every writer is gone and a writer `EPIPE`
//! once every reader is.

use alloc::collections::VecDeque;
use alloc::sync::Arc;

use spin::Mutex;

use super::file::{Access, FileLike};
use super::poll::{POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
use super::PIPE_MAX_CAPACITY;
use super::{anon_stat, Waitable, O_ACCMODE, O_PATH, O_RDONLY, O_WRONLY, PIPE_BUF, PIPE_CAPACITY};
use crate::errno::{Errno, KResult};
use crate::fs::node::{alloc_ino, S_IFIFO};
use crate::fs::{Stat, Vfs};
use crate::machine::Machine;

/// The shared state of a pipe.
#[derive(Debug)]
pub(super) struct PipeState {
    pub(super) buf: VecDeque<u8>,
    pub(super) capacity: usize,
    pub(super) readers: usize,
    pub(super) writers: usize,
    /// Message lengths, oldest first, when the pipe keeps message boundaries (datagram
    /// and seqpacket socket pairs); `None` for a byte stream.
    pub(super) msgs: Option<VecDeque<usize>>,
}

/// A pipe: a bounded byte queue between a read end and a write end.
#[derive(Debug)]
pub struct Pipe {
    /// Inode number shown by `fstat`.
    pub ino: u64,
    /// Wake-ups and edges.
    pub waitable: Waitable,
    pub(super) state: Mutex<PipeState>,
}

impl Pipe {
    /// A new pipe with the default capacity (no ends yet).
    pub fn new() -> Arc<Pipe> {
        Pipe::with(Waitable::new(), PIPE_CAPACITY, false)
    }

    /// A pipe waking through `waitable`, holding `capacity` bytes, keeping message
    /// boundaries if `messages` (for socket pairs; no ends counted yet).
    pub(super) fn with(waitable: Waitable, capacity: usize, messages: bool) -> Arc<Pipe> {
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

    /// Reads what is buffered (leaving it there with `peek`): in message mode one whole
    /// message, truncated to `buf`. Returns the bytes copied and the length of what was
    /// there to read (the message length in message mode); `EAGAIN` when empty with a
    /// writer left, 0 at end of file.
    pub(super) fn recv(
        &self,
        m: &mut dyn Machine,
        buf: &mut [u8],
        peek: bool,
    ) -> KResult<(usize, usize)> {
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
    pub(super) fn send(&self, m: &mut dyn Machine, data: &[u8]) -> KResult<usize> {
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

    fn stat(&self) -> Stat {
        anon_stat(self.ino, S_IFIFO | 0o600)
    }

    /// An end of this pipe opened again with `flags` (`/proc/self/fd/N`): by the access
    /// mode, or the same end as `writer` says with `O_PATH`; `EINVAL` for `O_RDWR`, as a
    /// pipe end here has one direction.
    fn reopen(self: &Arc<Pipe>, flags: u32, writer: bool) -> KResult<Arc<dyn FileLike>> {
        let writer = match flags & O_ACCMODE {
            _ if flags & O_PATH != 0 => writer,
            O_RDONLY => false,
            O_WRONLY => true,
            _ => return Err(Errno::EINVAL),
        };
        Ok(if writer {
            Arc::new(PipeWriter::new(self.clone()))
        } else {
            Arc::new(PipeReader::new(self.clone()))
        })
    }
}

/// The read end of a pipe.
#[derive(Debug)]
pub struct PipeReader(Arc<Pipe>);

/// The write end of a pipe.
#[derive(Debug)]
pub struct PipeWriter(Arc<Pipe>);

impl PipeReader {
    /// A read end of `pipe`, counted as a reader until dropped.
    pub fn new(pipe: Arc<Pipe>) -> PipeReader {
        pipe.state.lock().readers += 1;
        PipeReader(pipe)
    }

    /// The pipe.
    pub fn pipe(&self) -> &Arc<Pipe> {
        &self.0
    }
}

impl PipeWriter {
    /// A write end of `pipe`, counted as a writer until dropped.
    pub fn new(pipe: Arc<Pipe>) -> PipeWriter {
        pipe.state.lock().writers += 1;
        PipeWriter(pipe)
    }

    /// The pipe.
    pub fn pipe(&self) -> &Arc<Pipe> {
        &self.0
    }
}

// No machine in `drop`: whoever closed the descriptor wakes (see `FdTable::close`'s
// callers in the system-call layer).
impl Drop for PipeReader {
    fn drop(&mut self) {
        self.0.state.lock().readers -= 1;
        self.0.waitable.bump();
    }
}

impl Drop for PipeWriter {
    fn drop(&mut self) {
        self.0.state.lock().writers -= 1;
        self.0.waitable.bump();
    }
}

impl FileLike for PipeReader {
    /// Reads what is buffered; `EAGAIN` when empty with a writer left, 0 at end of file.
    fn read(&self, m: &mut dyn Machine, buf: &mut [u8]) -> KResult<usize> {
        self.0.recv(m, buf, false).map(|(n, _)| n)
    }

    fn stat(&self) -> Stat {
        self.0.stat()
    }

    fn poll_events(&self, _: Access) -> u16 {
        let s = self.0.state.lock();
        let mut r = 0;
        if !s.buf.is_empty() {
            r |= POLLIN | POLLRDNORM;
        }
        if s.writers == 0 {
            r |= POLLHUP;
        }
        r
    }

    fn waitable(&self) -> Option<&Waitable> {
        Some(&self.0.waitable)
    }

    fn nread(&self, _: u64) -> KResult<u64> {
        Ok(self.0.available() as u64)
    }

    fn reopen(&self, _: &Vfs, flags: u32, _: u64) -> KResult<Arc<dyn FileLike>> {
        self.0.reopen(flags, false)
    }
}

impl FileLike for PipeWriter {
    fn write(&self, m: &mut dyn Machine, data: &[u8]) -> KResult<usize> {
        self.0.send(m, data)
    }

    fn stat(&self) -> Stat {
        self.0.stat()
    }

    fn poll_events(&self, _: Access) -> u16 {
        let s = self.0.state.lock();
        if s.readers == 0 {
            POLLERR
        } else if s.capacity - s.buf.len() >= PIPE_BUF.min(s.capacity) {
            POLLOUT | POLLWRNORM
        } else {
            0
        }
    }

    fn waitable(&self) -> Option<&Waitable> {
        Some(&self.0.waitable)
    }

    fn reopen(&self, _: &Vfs, flags: u32, _: u64) -> KResult<Arc<dyn FileLike>> {
        self.0.reopen(flags, true)
    }
}
