//! `eventfd`: a 64-bit counter read and written 8 bytes at a time.

use spin::Mutex;

use super::file::{Access, FileLike};
use super::poll::{POLLERR, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
use super::{anon_stat, Waitable};
use crate::errno::{Errno, KResult};
use crate::fs::Stat;
use crate::machine::Machine;

/// The largest value the counter holds (`u64::MAX` itself would mean overflow).
pub const EVENTFD_MAX: u64 = u64::MAX - 1;

/// An eventfd counter.
#[derive(Debug)]
pub struct EventFd {
    /// Wake-ups and edges.
    pub waitable: Waitable,
    count: Mutex<u64>,
    semaphore: bool,
}

impl EventFd {
    /// A counter starting at `initval`; with `semaphore` each read takes 1.
    pub fn new(initval: u64, semaphore: bool) -> EventFd {
        EventFd {
            waitable: Waitable::new(),
            count: Mutex::new(initval),
            semaphore,
        }
    }

    /// The current value.
    pub fn value(&self) -> u64 {
        *self.count.lock()
    }
}

impl FileLike for EventFd {
    /// Reads the counter into the first 8 bytes of `buf` and resets it (or takes 1 in
    /// semaphore mode): `EINVAL` for a buffer under 8 bytes, `EAGAIN` while it is 0.
    fn read(&self, m: &mut dyn Machine, buf: &mut [u8]) -> KResult<usize> {
        if buf.len() < 8 {
            return Err(Errno::EINVAL);
        }
        let mut c = self.count.lock();
        if *c == 0 {
            return Err(Errno::EAGAIN);
        }
        let v = if self.semaphore { 1 } else { *c };
        *c -= v;
        drop(c);
        buf[..8].copy_from_slice(&v.to_le_bytes());
        self.waitable.notify(m);
        Ok(8)
    }

    /// Adds the value in the first 8 bytes of `data`: `EINVAL` for under 8 bytes or the
    /// value `u64::MAX`, `EAGAIN` while the sum would pass [`EVENTFD_MAX`].
    fn write(&self, m: &mut dyn Machine, data: &[u8]) -> KResult<usize> {
        if data.len() < 8 {
            return Err(Errno::EINVAL);
        }
        let v = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
        if v == u64::MAX {
            return Err(Errno::EINVAL);
        }
        let mut c = self.count.lock();
        if EVENTFD_MAX - *c < v {
            return Err(Errno::EAGAIN);
        }
        *c += v;
        drop(c);
        if v != 0 {
            self.waitable.notify(m);
        }
        Ok(8)
    }

    /// Readable while non-zero, writable while 1 more fits.
    fn poll_events(&self, _: Access) -> u16 {
        let c = *self.count.lock();
        let mut r = 0;
        if c > 0 {
            r |= POLLIN | POLLRDNORM;
        }
        if c < EVENTFD_MAX {
            r |= POLLOUT | POLLWRNORM;
        }
        if c == u64::MAX {
            r |= POLLERR;
        }
        r
    }

    fn stat(&self) -> Stat {
        anon_stat(self.waitable.id(), 0o600)
    }

    fn waitable(&self) -> Option<&Waitable> {
        Some(&self.waitable)
    }
}
