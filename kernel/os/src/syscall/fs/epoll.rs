//! `eventfd`/`eventfd2` and `epoll_create`/`epoll_create1`, `epoll_ctl`, `epoll_wait`,
//! `epoll_pwait`, `epoll_pwait2`.
//!
//! `EPOLLEXCLUSIVE` is accepted (with Linux's checks) but every waiter rescans on a
//! wake-up; `EPOLLWAKEUP` is accepted and meaningless. Signal masks are checked and
//! accepted (see the family's documentation).

use super::*;
use crate::fd::epoll::{
    EPOLLERR, EPOLLET, EPOLLEXCLUSIVE, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLWAKEUP,
};
use crate::fd::{Epoll, EpollEvent, EventFd, O_NONBLOCK, O_RDWR};

/// `eventfd2` flag: reads take 1 instead of the whole count.
pub const EFD_SEMAPHORE: u64 = 1;

const EPOLL_CTL_ADD: u64 = 1;
const EPOLL_CTL_DEL: u64 = 2;
const EPOLL_CTL_MOD: u64 = 3;

/// Size of `struct epoll_event` on x86-64 (packed: `u32` events, `u64` data).
const EVENT_SIZE: usize = 12;

/// `eventfd2(initval, flags)` (`eventfd` passes no flags): `EFD_SEMAPHORE`,
/// `EFD_NONBLOCK` (`O_NONBLOCK`), `EFD_CLOEXEC` (`O_CLOEXEC`); others `EINVAL`.
pub(super) fn sys_eventfd(p: &mut Process, initval: u64, flags: u64) -> KResult<i64> {
    let known = EFD_SEMAPHORE | u64::from(O_NONBLOCK | O_CLOEXEC);
    if flags & !known != 0 {
        return Err(Errno::EINVAL);
    }
    let e = EventFd::new(u64::from(initval as u32), flags & EFD_SEMAPHORE != 0);
    let file = OpenFile::new(
        Arc::new(e),
        "anon_inode:[eventfd]".into(),
        O_RDWR | (flags as u32 & O_NONBLOCK),
    );
    p.files
        .install(file, flags & u64::from(O_CLOEXEC) != 0)
        .map(i64::from)
}

/// `epoll_create(size)` (`size` must be positive) and `epoll_create1(flags)` (only
/// `EPOLL_CLOEXEC`).
pub(super) fn sys_epoll_create(p: &mut Process, size: i64, flags: u64) -> KResult<i64> {
    if size <= 0 || flags & !u64::from(O_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let file = OpenFile::new(
        Arc::new(Epoll::new()),
        "anon_inode:[eventpoll]".into(),
        O_RDWR,
    );
    p.files.install(file, flags != 0).map(i64::from)
}

/// The epoll instance behind `epfd` (`EBADF`, or `EINVAL` for another kind of file).
fn instance(p: &Process, epfd: i32) -> KResult<Arc<OpenFile>> {
    let f = p.files.get(epfd)?;
    if f.downcast::<Epoll>().is_none() {
        return Err(Errno::EINVAL);
    }
    Ok(f)
}

fn epoll_of(f: &OpenFile) -> &Epoll {
    f.downcast::<Epoll>().expect("checked by instance()")
}

/// `epoll_ctl(epfd, op, fd, event)`.
pub(super) fn sys_epoll_ctl(p: &mut Process, m: &mut dyn Machine, a: [u64; 6]) -> KResult<i64> {
    let (epfd, op, fd, ev_addr) = (a[0] as i32, a[1], a[2] as i32, a[3]);
    let ep_file = p.files.get(epfd)?;
    let target = p.files.get(fd)?;
    if target.is_path_only() {
        return Err(Errno::EBADF);
    }
    if ep_file.downcast::<Epoll>().is_none() || Arc::ptr_eq(&ep_file, &target) {
        return Err(Errno::EINVAL);
    }
    // Files without readiness notifications (regular files, directories, devices).
    if !target.object.epollable() {
        return Err(Errno::EPERM);
    }
    let ep = epoll_of(&ep_file);
    let ev = if op == EPOLL_CTL_DEL {
        EpollEvent::default()
    } else {
        let raw = get::<EVENT_SIZE>(p, m, ev_addr)?;
        EpollEvent {
            events: u32::from_le_bytes(raw[..4].try_into().expect("4 bytes")),
            data: le_u64(&raw[4..]),
        }
    };
    if ev.events & EPOLLEXCLUSIVE != 0 {
        const OK: u32 = EPOLLIN
            | EPOLLOUT
            | crate::fd::poll::POLLRDNORM as u32
            | crate::fd::poll::POLLWRNORM as u32
            | EPOLLERR
            | EPOLLHUP
            | EPOLLWAKEUP
            | EPOLLET
            | EPOLLEXCLUSIVE;
        if op == EPOLL_CTL_MOD || ev.events & !OK != 0 || target.downcast::<Epoll>().is_some() {
            return Err(Errno::EINVAL);
        }
    }
    match op {
        EPOLL_CTL_ADD => ep.add(fd, &target, ev)?,
        EPOLL_CTL_MOD => ep.modify(fd, &target, ev)?,
        EPOLL_CTL_DEL => ep.remove(fd, &target)?,
        _ => return Err(Errno::EINVAL),
    }
    // A waiter may now have something to report (a ready file added, a one-shot re-armed).
    wake_object(m, ep.waitable.id());
    Ok(0)
}

/// `epoll_wait(epfd, events, maxevents, timeout_ms)`, `epoll_pwait` (plus a signal mask)
/// and `epoll_pwait2` (a `timespec` timeout, null for none).
pub(super) fn sys_epoll_wait(
    p: &mut Process,
    m: &mut dyn Machine,
    nr: u64,
    a: [u64; 6],
) -> KResult<Outcome> {
    let (epfd, events, maxevents) = (a[0] as i32, a[1], a[2] as i32);
    if nr != nr::EPOLL_WAIT && a[4] != 0 && a[5] != 8 {
        return Err(Errno::EINVAL);
    }
    if maxevents <= 0 || maxevents as usize > i32::MAX as usize / EVENT_SIZE {
        return Err(Errno::EINVAL);
    }
    let timeout_ns = if nr == nr::EPOLL_PWAIT2 {
        io::timeout(p, m, a[3], 1_000_000_000, 1)?
    } else {
        let ms = a[3] as i32;
        (ms >= 0).then(|| ms as u64 * 1_000_000)
    };
    let deadline = wait_deadline(m, timeout_ns);
    let f = instance(p, epfd)?;
    let ep = epoll_of(&f);
    let evs = ep.collect(maxevents as usize);
    if evs.is_empty() {
        let local = ep.locally_driven();
        if let Some(wait) = io_wait(p, m, "epoll_wait", timeout_ns, deadline, local)? {
            return Ok(wait);
        }
        return Ok(Outcome::Return(0));
    }
    let mut out = Vec::with_capacity(evs.len() * EVENT_SIZE);
    for e in &evs {
        out.extend_from_slice(&e.events.to_le_bytes());
        out.extend_from_slice(&e.data.to_le_bytes());
    }
    put(p, m, events, &out)?;
    Ok(Outcome::Return(evs.len() as i64))
}

#[cfg(test)]
mod tests;
