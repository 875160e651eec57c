//! `epoll` instances: an interest list of (descriptor, open file) pairs and the scan that
//! turns their readiness into events.
//!
//! Entries hold the open file weakly: when the last descriptor of a file description is
//! closed, its entry disappears from every interest list, as on Linux. Readiness comes from
//! [`OpenFile::poll_events`]; edge-triggered entries remember the file's
//! [`OpenFile::event_seq`] at their last report and report again only after it changed.

use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;

use spin::Mutex;

use super::file::{Access, FileLike};
use super::poll::POLLIN;
use super::{anon_stat, OpenFile, Waitable};
use crate::errno::{Errno, KResult};
use crate::fs::Stat;

/// Readable.
pub const EPOLLIN: u32 = 0x1;
/// Urgent data.
pub const EPOLLPRI: u32 = 0x2;
/// Writable.
pub const EPOLLOUT: u32 = 0x4;
/// Error (always reported).
pub const EPOLLERR: u32 = 0x8;
/// Hang-up (always reported).
pub const EPOLLHUP: u32 = 0x10;
/// Peer closed its writing side (sockets).
pub const EPOLLRDHUP: u32 = 0x2000;
/// Wake one waiter only (accepted; every waiter rescans here).
pub const EPOLLEXCLUSIVE: u32 = 1 << 28;
/// Keep the system awake (accepted, meaningless here).
pub const EPOLLWAKEUP: u32 = 1 << 29;
/// Report once, then disable until `EPOLL_CTL_MOD`.
pub const EPOLLONESHOT: u32 = 1 << 30;
/// Edge-triggered.
pub const EPOLLET: u32 = 1 << 31;

/// Deepest nesting of epoll instances (Linux `EP_MAX_NESTS`).
const MAX_NESTS: usize = 4;

/// One `struct epoll_event`: events and the caller's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EpollEvent {
    /// `EPOLL*` bits.
    pub events: u32,
    /// Returned as given.
    pub data: u64,
}

#[derive(Debug)]
struct Interest {
    fd: i32,
    file: Weak<OpenFile>,
    events: u32,
    data: u64,
    /// Edge-triggered: the file's event counter when last reported.
    last_seq: Option<u64>,
    /// One-shot entry already reported.
    disabled: bool,
}

impl Interest {
    fn is(&self, fd: i32, file: &Arc<OpenFile>) -> bool {
        self.fd == fd && core::ptr::eq(self.file.as_ptr(), Arc::as_ptr(file))
    }

    /// The events this entry would report now, and the counter they go with.
    fn pending(&self, file: &OpenFile) -> Option<(u32, u64)> {
        if self.disabled {
            return None;
        }
        // The counter first: an edge-triggered entry whose file did not change since its
        // last report has nothing to say, and the counter costs less than the readiness
        // (a scan of a server's hundreds of connections asks every entry).
        let seq = file.event_seq();
        if self.events & EPOLLET != 0 && self.last_seq == Some(seq) {
            return None;
        }
        let rev = u32::from(file.poll_events()) & (self.events | EPOLLERR | EPOLLHUP);
        if rev == 0 {
            return None;
        }
        Some((
            rev & !(EPOLLET | EPOLLONESHOT | EPOLLEXCLUSIVE | EPOLLWAKEUP),
            seq,
        ))
    }
}

#[derive(Debug, Default)]
struct State {
    list: Vec<Interest>,
    /// Where the next scan starts, so a full result buffer does not starve later entries.
    cursor: usize,
}

/// An epoll instance.
#[derive(Debug, Default)]
pub struct Epoll {
    /// Wake-ups (bumped by changes to the interest list).
    pub waitable: Waitable,
    state: Mutex<State>,
}

impl Epoll {
    /// An empty instance.
    pub fn new() -> Epoll {
        Epoll::default()
    }

    /// How many entries are registered (closed files included until the next scan).
    pub fn len(&self) -> usize {
        self.state.lock().list.len()
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `EPOLL_CTL_ADD`: `EEXIST` if `(fd, file)` is registered, `ELOOP` for an epoll
    /// instance that contains this one (or nests too deep).
    pub fn add(&self, fd: i32, file: &Arc<OpenFile>, ev: EpollEvent) -> KResult<()> {
        if let Some(inner) = file.downcast::<Epoll>() {
            if core::ptr::eq(inner, self) {
                return Err(Errno::EINVAL);
            }
            if inner.reaches(self, 0) {
                return Err(Errno::ELOOP);
            }
        }
        let mut s = self.state.lock();
        prune(&mut s);
        if s.list.iter().any(|i| i.is(fd, file)) {
            return Err(Errno::EEXIST);
        }
        s.list.push(Interest {
            fd,
            file: Arc::downgrade(file),
            events: ev.events,
            data: ev.data,
            last_seq: None,
            disabled: false,
        });
        drop(s);
        self.waitable.bump();
        Ok(())
    }

    /// `EPOLL_CTL_MOD`: new events and data, re-arming one-shot and edge-triggered entries;
    /// `ENOENT` if not registered. `EPOLLEXCLUSIVE` entries cannot be modified (`EINVAL`).
    pub fn modify(&self, fd: i32, file: &Arc<OpenFile>, ev: EpollEvent) -> KResult<()> {
        let mut s = self.state.lock();
        prune(&mut s);
        let i = s
            .list
            .iter_mut()
            .find(|i| i.is(fd, file))
            .ok_or(Errno::ENOENT)?;
        if i.events & EPOLLEXCLUSIVE != 0 {
            return Err(Errno::EINVAL);
        }
        i.events = ev.events;
        i.data = ev.data;
        i.last_seq = None;
        i.disabled = false;
        drop(s);
        self.waitable.bump();
        Ok(())
    }

    /// `EPOLL_CTL_DEL`: `ENOENT` if not registered.
    pub fn remove(&self, fd: i32, file: &Arc<OpenFile>) -> KResult<()> {
        let mut s = self.state.lock();
        prune(&mut s);
        let at = s
            .list
            .iter()
            .position(|i| i.is(fd, file))
            .ok_or(Errno::ENOENT)?;
        s.list.remove(at);
        drop(s);
        self.waitable.bump();
        Ok(())
    }

    /// Whether `target` is this instance or is reachable through its nested instances
    /// (nesting deeper than Linux allows counts as reachable).
    fn reaches(&self, target: &Epoll, depth: usize) -> bool {
        if core::ptr::eq(self, target) || depth > MAX_NESTS {
            return true;
        }
        self.members().iter().any(|f| {
            f.downcast::<Epoll>()
                .is_some_and(|e| e.reaches(target, depth + 1))
        })
    }

    /// The live files of the interest list.
    fn members(&self) -> Vec<Arc<OpenFile>> {
        self.state
            .lock()
            .list
            .iter()
            .filter_map(|i| i.file.upgrade())
            .collect()
    }

    /// Takes up to `max` events: level-triggered entries report whenever ready,
    /// edge-triggered ones only after a change since their last report, one-shot ones once.
    pub fn collect(&self, max: usize) -> Vec<EpollEvent> {
        let mut s = self.state.lock();
        prune(&mut s);
        let n = s.list.len();
        let start = if s.cursor < n { s.cursor } else { 0 };
        let mut out = Vec::new();
        let mut next = start;
        for k in 0..n {
            if out.len() >= max {
                break;
            }
            let idx = (start + k) % n;
            let i = &mut s.list[idx];
            let Some(file) = i.file.upgrade() else {
                continue;
            };
            if let Some((events, seq)) = i.pending(&file) {
                if i.events & EPOLLET != 0 {
                    i.last_seq = Some(seq);
                }
                if i.events & EPOLLONESHOT != 0 {
                    i.disabled = true;
                }
                out.push(EpollEvent {
                    events,
                    data: i.data,
                });
                next = idx + 1;
            }
        }
        s.cursor = next;
        out
    }

    /// `POLLIN` when a wait would report something (the instance's own readiness).
    pub fn poll_events(&self) -> u16 {
        let s = self.state.lock();
        let ready = s
            .list
            .iter()
            .any(|i| i.file.upgrade().is_some_and(|f| i.pending(&f).is_some()));
        if ready {
            POLLIN | super::poll::POLLRDNORM
        } else {
            0
        }
    }

    /// Changes whenever the interest list or any member changed.
    pub fn event_seq(&self) -> u64 {
        self.members().iter().fold(self.waitable.seq(), |acc, f| {
            acc.wrapping_add(f.event_seq())
        })
    }

    /// Whether every member is driven by this process alone (see
    /// [`OpenFile::locally_driven`]).
    pub fn locally_driven(&self) -> bool {
        self.members().iter().all(|f| f.locally_driven())
    }
}

/// Drops the entries whose file was closed.
fn prune(s: &mut State) {
    s.list.retain(|i| i.file.strong_count() > 0);
}

impl FileLike for Epoll {
    fn stat(&self) -> Stat {
        anon_stat(self.waitable.id(), 0o600)
    }

    fn poll_events(&self, _: Access) -> u16 {
        Epoll::poll_events(self)
    }

    fn waitable(&self) -> Option<&Waitable> {
        Some(&self.waitable)
    }

    fn event_seq(&self) -> u64 {
        Epoll::event_seq(self)
    }

    fn locally_driven(&self) -> bool {
        Epoll::locally_driven(self)
    }
}
