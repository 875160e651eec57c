//! `flock`: advisory whole-file locks, held by open file descriptions.
//!
//! As on Linux, a lock belongs to the open file (descriptors `dup`ed from it share it) and
//! goes when that file's last descriptor closes; two opens of the same file conflict even
//! within one process (a program's "one instance at a time" lock file, a database's
//! locking between its own connections). A shared lock conflicts with an exclusive one,
//! an exclusive one with any other. A blocked `flock` waits for a holder to unlock or
//! close; one that nothing could ever end (a lone thread waiting for a lock it holds
//! through another open) is `EDEADLK`, logged, where Linux would hang.

use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;

use crate::errno::{Errno, KResult};
use crate::fd::OpenFile;
use crate::machine::Machine;
use crate::process::{Channel, Outcome, Process, Wait};

/// `LOCK_SH`: a shared lock.
pub const LOCK_SH: u64 = 1;
/// `LOCK_EX`: an exclusive lock.
pub const LOCK_EX: u64 = 2;
/// `LOCK_NB`: fail with `EWOULDBLOCK` rather than wait.
pub const LOCK_NB: u64 = 4;
/// `LOCK_UN`: unlock.
pub const LOCK_UN: u64 = 8;

/// The wait channel of blocked `flock` calls, woken by unlocks and closes.
pub const FLOCK_CHANNEL: Channel = Channel::Object(u64::MAX - 2);

/// One held lock.
#[derive(Debug)]
struct Held {
    /// The locked file's identity (its node, or its object for files without one).
    key: usize,
    holder: Weak<OpenFile>,
    exclusive: bool,
}

/// The locks held in the process.
#[derive(Debug, Default)]
pub struct Flocks {
    held: Vec<Held>,
}

/// The identity locks of `f` go by: the node behind it, so that two opens of a file
/// meet; the object itself for pipes, sockets and other files without one.
fn key(f: &OpenFile) -> usize {
    match f.object.inode() {
        Some(node) => Arc::as_ptr(node) as usize,
        None => Arc::as_ptr(&f.object) as *const u8 as usize,
    }
}

impl Flocks {
    /// Tries `op` (`LOCK_SH`, `LOCK_EX` or `LOCK_UN`) for `f`: `Ok(true)` when done,
    /// `Ok(false)` when another open file's lock is in the way.
    fn try_lock(&mut self, f: &Arc<OpenFile>, op: u64) -> KResult<bool> {
        // Locks of files closed since are gone.
        self.held.retain(|h| h.holder.strong_count() > 0);
        let mine = |h: &Held| h.holder.as_ptr() == Arc::as_ptr(f);
        if op == LOCK_UN {
            self.held.retain(|h| !mine(h));
            return Ok(true);
        }
        let exclusive = match op {
            LOCK_SH => false,
            LOCK_EX => true,
            _ => return Err(Errno::EINVAL),
        };
        let k = key(f);
        if self
            .held
            .iter()
            .any(|h| h.key == k && !mine(h) && (h.exclusive || exclusive))
        {
            return Ok(false);
        }
        match self.held.iter_mut().find(|h| mine(h)) {
            Some(h) => h.exclusive = exclusive,
            None => self.held.push(Held {
                key: k,
                holder: Arc::downgrade(f),
                exclusive,
            }),
        }
        Ok(true)
    }
}

/// `flock(fd, op)`.
pub fn flock(p: &mut Process, m: &mut dyn Machine, fd: i32, op: u64) -> KResult<Outcome> {
    let f = p.files.get(fd)?;
    if f.is_path_only() {
        return Err(Errno::EBADF);
    }
    let nonblocking = op & LOCK_NB != 0;
    if p.flocks.try_lock(&f, op & !LOCK_NB)? {
        if op & LOCK_UN != 0 {
            m.wake(FLOCK_CHANNEL, usize::MAX);
        }
        return Ok(Outcome::Return(0));
    }
    if nonblocking {
        return Err(Errno::EAGAIN);
    }
    if m.thread_count() <= 1 {
        super::log_deadlock(p, m, "flock");
        return Err(Errno::EDEADLK);
    }
    Ok(Outcome::Block(Wait {
        channels: alloc::vec![FLOCK_CHANNEL],
        deadline: None,
        on_timeout: 0,
        on_wake: None,
    }))
}

#[cfg(test)]
mod tests {
    use crate::process::{Outcome, ThreadState};
    use crate::syscall::testutil::*;
    use crate::sysno;

    fn open(p: &mut crate::process::Process, m: &mut crate::testing::FakeMachine, buf: u64) -> u64 {
        poke(p, m, buf, b"/tmp/lock\0");
        let fd = call(p, m, sysno::OPENAT, &[-100i64 as u64, buf, 0o102, 0o600]);
        assert!(fd >= 0, "open: {fd}");
        fd as u64
    }

    #[test]
    fn two_opens_of_a_file_conflict_and_a_dup_shares_the_lock() {
        let (mut p, mut m, buf) = setup();
        let (a, b) = (open(&mut p, &mut m, buf), open(&mut p, &mut m, buf));
        let dup = call(&mut p, &mut m, sysno::DUP, &[a]) as u64;
        let nb = super::LOCK_NB;
        assert_eq!(call(&mut p, &mut m, sysno::FLOCK, &[a, super::LOCK_EX]), 0);
        // The same open file, through another descriptor: its own lock again.
        assert_eq!(
            call(&mut p, &mut m, sysno::FLOCK, &[dup, super::LOCK_EX | nb]),
            0
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::FLOCK, &[b, super::LOCK_SH | nb]),
            -11
        );
        // Down to shared: a second shared lock fits, an exclusive one does not.
        assert_eq!(call(&mut p, &mut m, sysno::FLOCK, &[a, super::LOCK_SH]), 0);
        assert_eq!(
            call(&mut p, &mut m, sysno::FLOCK, &[b, super::LOCK_SH | nb]),
            0
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::FLOCK, &[b, super::LOCK_EX | nb]),
            -11
        );
        // A lone thread waiting for a lock held through its own other open: EDEADLK.
        assert_eq!(
            call(&mut p, &mut m, sysno::FLOCK, &[b, super::LOCK_EX]),
            -35
        );
        // With another thread the wait blocks, and an unlock wakes it.
        m.others.insert(
            2,
            ThreadState {
                tid: 2,
                ..ThreadState::default()
            },
        );
        assert!(matches!(
            outcome(&mut p, &mut m, sysno::FLOCK, &[b, super::LOCK_EX]),
            Outcome::Block(_)
        ));
        m.waiting.push(super::FLOCK_CHANNEL);
        assert_eq!(call(&mut p, &mut m, sysno::FLOCK, &[a, super::LOCK_UN]), 0);
        assert!(m.waiting.is_empty(), "the waiter was not woken");
        assert_eq!(
            call(&mut p, &mut m, sysno::FLOCK, &[b, super::LOCK_EX | nb]),
            0
        );
        // Closing the last descriptor of the holder lets the lock go.
        assert_eq!(
            call(&mut p, &mut m, sysno::FLOCK, &[a, super::LOCK_SH | nb]),
            -11
        );
        assert_eq!(call(&mut p, &mut m, sysno::CLOSE, &[b]), 0);
        assert_eq!(
            call(&mut p, &mut m, sysno::FLOCK, &[a, super::LOCK_EX | nb]),
            0
        );
        // Bad operations and descriptors.
        assert_eq!(call(&mut p, &mut m, sysno::FLOCK, &[a, 3]), -22);
        assert_eq!(call(&mut p, &mut m, sysno::FLOCK, &[a, 0]), -22);
        assert_eq!(
            call(&mut p, &mut m, sysno::FLOCK, &[99, super::LOCK_EX]),
            -9
        );
    }
}
