//! [`FileLike`]: what every kind of open file implements.
//!
//! The open file description ([`super::OpenFile`]) keeps what all kinds share: access
//! mode, status flags, the offset and the path. A kind implements only what it does; the
//! default methods answer the way Linux answers for a file that cannot do it (`EINVAL` for
//! reads and writes, `ESPIPE` for positions, `ENOTTY` for `ioctl`, `ENXIO` for reopening by
//! path). A new kind of file is one module with one `impl FileLike`.

use alloc::sync::Arc;
use core::any::Any;
use core::fmt;

use super::poll::{POLLIN, POLLNVAL, POLLOUT, POLLRDNORM, POLLWRNORM};
use super::Waitable;
use crate::errno::{Errno, KResult};
use crate::fs::{FsId, Inode, Stat, Vfs};
use crate::machine::Machine;

/// How the description was opened (what readiness may depend on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// Opened for reading.
    pub readable: bool,
    /// Opened for writing.
    pub writable: bool,
    /// Opened with `O_PATH`.
    pub path_only: bool,
}

/// One kind of open file: a pipe end, a socket, a node of the tree, an eventfd...
///
/// Readiness follows the contract in [`super`]: [`FileLike::poll_events`] is the only
/// source of readiness, and a kind whose readiness changes returns a [`Waitable`] it
/// notifies on every change.
///
/// `Debug` is not a supertrait: it would put every kind's `Debug` code in the kind's
/// vtable, and so in the kernel, though the kernel never prints a file (see the `Debug`
/// impl of `dyn FileLike` below).
pub trait FileLike: Any + Send + Sync {
    /// Reads from a stream (kinds without positions). `EAGAIN` when it would block.
    fn read(&self, m: &mut dyn Machine, buf: &mut [u8]) -> KResult<usize> {
        let _ = (m, buf);
        Err(Errno::EINVAL)
    }

    /// Writes to a stream (kinds without positions). `EAGAIN` when it would block.
    fn write(&self, m: &mut dyn Machine, data: &[u8]) -> KResult<usize> {
        let _ = (m, data);
        Err(Errno::EINVAL)
    }

    /// How long a blocking read (`write` false) or write may wait, in ns; 0 for as long as
    /// it takes (sockets: `SO_RCVTIMEO`, `SO_SNDTIMEO`).
    fn io_timeout(&self, write: bool) -> u64 {
        let _ = write;
        0
    }

    /// Whether reads and writes have positions: the description's offset is then passed
    /// to [`FileLike::read_at`]/[`FileLike::write_at`] instead of calling `read`/`write`.
    fn seekable(&self) -> bool {
        false
    }

    /// Reads at `off` (seekable kinds).
    fn read_at(&self, m: &mut dyn Machine, buf: &mut [u8], off: u64) -> KResult<usize> {
        let _ = (m, buf, off);
        Err(Errno::ESPIPE)
    }

    /// Writes at `off` (seekable kinds); `now` stamps the modification time.
    fn write_at(&self, m: &mut dyn Machine, data: &[u8], off: u64, now: u64) -> KResult<usize> {
        let _ = (m, data, off, now);
        Err(Errno::ESPIPE)
    }

    /// Whether a write through the offset moves it (devices keep theirs).
    fn write_moves_offset(&self) -> bool {
        true
    }

    /// The size `O_APPEND` writes at and `SEEK_END` counts from.
    fn size(&self) -> u64 {
        0
    }

    /// `lseek` from offset `cur`: the new offset (`SEEK_SET` 0, `SEEK_CUR` 1, `SEEK_END` 2,
    /// `SEEK_DATA` 3, `SEEK_HOLE` 4).
    fn seek(&self, cur: u64, off: i64, whence: u32) -> KResult<u64> {
        let _ = (cur, off, whence);
        Err(Errno::ESPIPE)
    }

    /// The status `fstat` reports.
    fn stat(&self) -> Stat;

    /// A description for `stats` when the open path does not say enough (sockets: their
    /// addresses and state).
    fn describe(&self) -> Option<alloc::string::String> {
        None
    }

    /// The filesystem `fstatfs` reports (anonymous kinds live on the pipe filesystem).
    fn fs(&self) -> FsId {
        FsId::Pipe
    }

    /// Everything that is ready now, not filtered by what a caller asked for. The default
    /// suits files that never block: always ready, `POLLNVAL` for `O_PATH` descriptors.
    fn poll_events(&self, access: Access) -> u16 {
        if access.path_only {
            POLLNVAL
        } else {
            POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM
        }
    }

    /// The wake-up identity and event counter, for kinds whose readiness changes.
    fn waitable(&self) -> Option<&Waitable> {
        None
    }

    /// A counter that changes whenever readiness may have changed (edge-triggered epoll).
    fn event_seq(&self) -> u64 {
        self.waitable().map_or(0, Waitable::seq)
    }

    /// Whether only this process's own system calls can make the file ready (so a lone
    /// thread waiting on it would wait forever).
    fn locally_driven(&self) -> bool {
        true
    }

    /// Whether `epoll_ctl` accepts it (`EPERM` for files that are always ready).
    fn epollable(&self) -> bool {
        true
    }

    /// Bytes `ioctl(FIONREAD)` reports at offset `off`; `ENOTTY` for kinds without.
    fn nread(&self, off: u64) -> KResult<u64> {
        let _ = off;
        Err(Errno::ENOTTY)
    }

    /// Bytes written and not yet taken by the other end (`ioctl(SIOCOUTQ)`, `TIOCOUTQ`);
    /// `ENOTTY` for kinds without.
    fn outq(&self) -> KResult<u64> {
        Err(Errno::ENOTTY)
    }

    /// The node of the tree behind the file, if any.
    fn inode(&self) -> Option<&Arc<Inode>> {
        None
    }

    /// The same object opened again through `/proc/self/fd/N` with `flags`; `ENXIO` for
    /// anonymous kinds.
    fn reopen(&self, vfs: &Vfs, flags: u32, now: u64) -> KResult<Arc<dyn FileLike>> {
        let _ = (vfs, flags, now);
        Err(Errno::ENXIO)
    }
}

/// Open files print as their kind's type name (for the kernel's own debugging output and
/// tests; the kinds' own `Debug` code stays out of the kernel).
impl fmt::Debug for dyn FileLike {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileLike")
    }
}
