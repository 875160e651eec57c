//! File system calls: descriptors, paths, pipes, `poll`, `stat`.
//!
//! User memory goes through `p.vm` (`EFAULT` on bad pointers); paths are at most
//! `PATH_MAX - 1` bytes (`ENAMETOOLONG`) and must be UTF-8 (others cannot name anything in
//! this tree: `ENOENT`). Everything runs as root, so permission bits are informative.
//!
//! Waiting: a read or write that finds a blocking descriptor not ready (an empty pipe or
//! eventfd, a full one) returns [`Outcome::Block`] on the file's object and runs again when
//! woken; `poll`, `ppoll`, `select`, `pselect6` and `epoll_wait` with nothing ready block
//! on [`Channel::Io`] until a readiness change or their deadline (restarted calls keep the
//! first deadline, `Machine::restart_deadline`), returning 0 at the deadline. Every change
//! of readiness wakes `Channel::Io` (see [`crate::fd`]), closing a descriptor included.
//! A wait nothing could end (one thread, no deadline, only files this process drives)
//! fails with `EDEADLK`, logged once, instead of hanging the machine.
//!
//! Signal masks given to `ppoll`, `pselect6` and `epoll_pwait` are checked and accepted:
//! signals are not delivered while a thread waits here, so the mask has nothing to change.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use crate::errno::{Errno, KResult};
use crate::fd::poll::{POLLHUP, POLLIN, POLLNVAL};
use crate::fd::volume::VolumeFile;
use crate::fd::{
    wake_object, FileLike, NodeFile, OpenFile, Snapshot, Waitable, MAX_FDS, O_ACCMODE, O_APPEND,
    O_ASYNC, O_CLOEXEC, O_CREAT, O_DIRECTORY, O_LARGEFILE, O_NOFOLLOW, O_PATH, O_RDONLY, O_TRUNC,
    O_WRONLY,
};
use crate::fs::{parent_path, Body, Device, Inode, Stat, PATH_MAX};
use crate::machine::Machine;
use crate::process::{Channel, Outcome, Process, Wait};
use crate::sysno as nr;

/// `dirfd` meaning the working directory.
pub const AT_FDCWD: i32 = -100;
/// Do not follow a final symbolic link.
pub const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
/// `unlinkat`: remove a directory.
pub const AT_REMOVEDIR: u64 = 0x200;
/// `faccessat2`: check with effective ids (the same here).
pub const AT_EACCESS: u64 = 0x200;
/// Accepted and ignored (no automounts).
pub const AT_NO_AUTOMOUNT: u64 = 0x800;
/// An empty path names `dirfd` itself.
pub const AT_EMPTY_PATH: u64 = 0x1000;
/// `statx` synchronisation bits (meaningless in memory).
pub const AT_STATX_SYNC_TYPE: u64 = 0x6000;

/// Largest byte count one read or write moves (Linux `MAX_RW_COUNT`).
const MAX_RW: u64 = 0x7fff_f000;
/// Kernel buffer size for moving data between files and user memory.
const CHUNK: usize = 64 * 1024;
/// Most `iovec`s in one call (`UIO_MAXIOV`).
const IOV_MAX: u64 = 1024;

const FIONREAD: u32 = 0x541b;
/// `SIOCOUTQ` (`TIOCOUTQ`): bytes sent and not yet acknowledged.
const SIOCOUTQ: u32 = 0x5411;
const FIONBIO: u32 = 0x5421;
const FIONCLEX: u32 = 0x5450;
const FIOCLEX: u32 = 0x5451;
const FIOASYNC: u32 = 0x5452;

const F_DUPFD: u64 = 0;
const F_GETFD: u64 = 1;
const F_SETFD: u64 = 2;
const F_GETFL: u64 = 3;
const F_SETFL: u64 = 4;
const F_GETLK: u64 = 5;
const F_SETLK: u64 = 6;
const F_SETLKW: u64 = 7;
const F_SETOWN: u64 = 8;
const F_GETOWN: u64 = 9;
const F_SETSIG: u64 = 10;
const F_GETSIG: u64 = 11;
const F_OFD_GETLK: u64 = 36;
const F_OFD_SETLK: u64 = 37;
const F_OFD_SETLKW: u64 = 38;
const F_DUPFD_CLOEXEC: u64 = 1030;
const F_SETPIPE_SZ: u64 = 1031;
const F_GETPIPE_SZ: u64 = 1032;
const F_ADD_SEALS: u64 = 1033;
const F_GET_SEALS: u64 = 1034;
const FD_CLOEXEC: u64 = 1;
const F_RDLCK: u16 = 0;
const F_WRLCK: u16 = 1;
const F_UNLCK: u16 = 2;

fn ret(r: KResult<i64>) -> Outcome {
    Outcome::Return(r.unwrap_or_else(Errno::as_return))
}

/// Handles the file system calls; `None` for numbers this family does not own. Shared
/// mappings of the files a call touches are kept coherent around it.
#[inline(never)]
pub fn handle(p: &mut Process, m: &mut dyn Machine, nr: u64, a: [u64; 6]) -> Option<Outcome> {
    super::mm::shared::around(p, m, nr, a, |p, m| calls(p, m, nr, a))
}

fn calls(p: &mut Process, m: &mut dyn Machine, nr: u64, a: [u64; 6]) -> Option<Outcome> {
    let fd0 = a[0] as i32;
    let r = match nr {
        nr::READ => {
            let r = sys_read(p, m, fd0, a[1], a[2], None);
            return Some(blocking(p, m, fd0, false, r));
        }
        nr::WRITE => {
            // A blocking write to a pipe or stream socket queues every byte.
            let call = [nr, a[0], a[1], a[2]];
            let done = super::write_resumes(m, call);
            let r = sys_write(p, m, fd0, a[1] + done, a[2] - done, None);
            return Some(super::write_settles(m, call, a[2], done, r, |m| {
                blocking(p, m, fd0, true, Err(Errno::EAGAIN))
            }));
        }
        nr::PREAD64 => sys_read(p, m, fd0, a[1], a[2], Some(a[3] as i64)),
        nr::PWRITE64 => sys_write(p, m, fd0, a[1], a[2], Some(a[3] as i64)),
        nr::READV => {
            let r = sys_readv(p, m, fd0, a[1], a[2]);
            return Some(blocking(p, m, fd0, false, r));
        }
        nr::WRITEV => {
            // As `write`: a blocking one to a pipe or stream socket queues every byte.
            let call = [nr, a[0], a[1], a[2]];
            let done = super::write_resumes(m, call);
            let (total, r) = match iovecs(p, m, a[1], a[2]) {
                Ok(iov) => (
                    super::iov_len(&iov),
                    write_iov(p, m, fd0, super::iov_after(&iov, done)),
                ),
                Err(e) => (0, Err(e)),
            };
            return Some(super::write_settles(m, call, total, done, r, |m| {
                blocking(p, m, fd0, true, Err(Errno::EAGAIN))
            }));
        }
        nr::OPEN => sys_open(p, m, AT_FDCWD, a[0], a[1], a[2]),
        nr::CREAT => sys_open(
            p,
            m,
            AT_FDCWD,
            a[0],
            O_CREAT as u64 | O_WRONLY as u64 | O_TRUNC as u64,
            a[1],
        ),
        nr::OPENAT => sys_open(p, m, fd0, a[1], a[2], a[3]),
        nr::CLOSE => {
            let f = p.files.get(fd0);
            p.files.close(fd0).map(|_| {
                closed(m, f.into_iter().collect());
                0
            })
        }
        nr::STAT => sys_stat(p, m, AT_FDCWD, a[0], a[1], 0),
        nr::LSTAT => sys_stat(p, m, AT_FDCWD, a[0], a[1], AT_SYMLINK_NOFOLLOW),
        nr::FSTAT => p
            .files
            .get(fd0)
            .map(|f| f.stat())
            .and_then(|st| put(p, m, a[1], &st.to_linux()))
            .map(|_| 0),
        nr::NEWFSTATAT => sys_stat(p, m, fd0, a[1], a[2], a[3]),
        nr::STATX => sys_statx(p, m, fd0, a[1], a[2], a[3] as u32, a[4]),
        nr::POLL => {
            let ms = a[2] as i32;
            let timeout = (ms >= 0).then(|| ms as u64 * 1_000_000);
            return Some(outcome(sys_poll(p, m, a[0], a[1], timeout)));
        }
        nr::PPOLL => return Some(outcome(sys_ppoll(p, m, a))),
        nr::LSEEK => io_file(p, fd0)
            .and_then(|f| f.seek(a[1] as i64, a[2] as u32))
            .map(|o| o as i64),
        nr::ACCESS => sys_access(p, m, AT_FDCWD, a[0], a[1], 0),
        nr::FACCESSAT => sys_access(p, m, fd0, a[1], a[2], 0),
        nr::FACCESSAT2 => sys_access(p, m, fd0, a[1], a[2], a[3]),
        nr::PIPE => sys_pipe(p, m, a[0], 0),
        nr::PIPE2 => sys_pipe(p, m, a[0], a[1]),
        nr::DUP => p.files.dup(fd0).map(i64::from),
        nr::DUP2 | nr::DUP3 => {
            let flags = (nr == nr::DUP3).then_some(a[2] as u32);
            let old = p.files.get(a[1] as i32);
            let r = p.files.dup3(fd0, a[1] as i32, flags).map(i64::from);
            if r.is_ok() && fd0 != a[1] as i32 {
                closed(m, old.into_iter().collect());
            }
            r
        }
        nr::FCNTL => sys_fcntl(p, m, fd0, a[1] as u32 as u64, a[2]),
        nr::FLOCK => return Some(outcome(flock::flock(p, m, fd0, a[1]))),
        // Advice on how a file will be read: files live in memory, there is nothing to
        // read ahead or drop, so valid advice is taken and changes nothing (as on tmpfs).
        nr::FADVISE64 => io_file(p, fd0).and_then(|f| {
            if !f.object.seekable() {
                Err(Errno::ESPIPE)
            } else if a[3] > 5 || (a[2] as i64) < 0 {
                Err(Errno::EINVAL)
            } else {
                Ok(0)
            }
        }),
        nr::READAHEAD => io_file(p, fd0).and_then(|f| match f.inode() {
            Some(n) if n.is_regular() => Ok(0),
            _ => Err(Errno::EINVAL),
        }),
        nr::IOCTL => sys_ioctl(p, m, fd0, a[1] as u32, a[2]),
        nr::FSYNC | nr::FDATASYNC => io_file(p, fd0).and_then(|f| {
            if let Some(v) = f.downcast::<VolumeFile>() {
                return v.sync(nr == nr::FDATASYNC).map(|()| 0);
            }
            match f.inode() {
                Some(n) if n.is_regular() || n.is_dir() => Ok(0),
                _ => Err(Errno::EINVAL),
            }
        }),
        nr::TRUNCATE => sys_truncate(p, m, a[0], a[1] as i64),
        nr::FTRUNCATE => sys_ftruncate(p, m, fd0, a[1] as i64),
        nr::MEMFD_CREATE => sys_memfd_create(p, m, a[0], a[1]),
        nr::GETDENTS64 => sys_getdents(p, m, fd0, a[1], a[2], true),
        nr::GETDENTS => sys_getdents(p, m, fd0, a[1], a[2], false),
        nr::GETCWD => sys_getcwd(p, m, a[0], a[1]),
        nr::CHDIR => path(p, m, a[0]).and_then(|path| {
            p.cwd = p.vfs.dir_path(&p.cwd, &path)?;
            Ok(0)
        }),
        nr::FCHDIR => p.files.get(fd0).and_then(|f| match f.inode() {
            Some(n) if n.is_dir() => {
                p.cwd = f.path.clone();
                Ok(0)
            }
            _ => Err(Errno::ENOTDIR),
        }),
        nr::RENAME => sys_rename(p, m, AT_FDCWD, a[0], AT_FDCWD, a[1], 0),
        nr::RENAMEAT => sys_rename(p, m, fd0, a[1], a[2] as i32, a[3], 0),
        nr::RENAMEAT2 => sys_rename(p, m, fd0, a[1], a[2] as i32, a[3], a[4]),
        nr::MKDIR => sys_mkdir(p, m, AT_FDCWD, a[0], a[1]),
        nr::MKDIRAT => sys_mkdir(p, m, fd0, a[1], a[2]),
        nr::RMDIR => sys_unlink(p, m, AT_FDCWD, a[0], AT_REMOVEDIR),
        nr::UNLINK => sys_unlink(p, m, AT_FDCWD, a[0], 0),
        nr::UNLINKAT => sys_unlink(p, m, fd0, a[1], a[2]),
        nr::READLINK => sys_readlink(p, m, AT_FDCWD, a[0], a[1], a[2]),
        nr::READLINKAT => sys_readlink(p, m, fd0, a[1], a[2], a[3]),
        nr::UMASK => {
            let old = p.vfs.umask;
            p.vfs.umask = a[0] as u32 & 0o777;
            Ok(i64::from(old))
        }
        nr::CLOSE_RANGE => sys_close_range(p, m, a[0], a[1], a[2]),
        nr::SENDFILE => {
            let (out_fd, in_fd) = (fd0, a[1] as i32);
            let r = sys_sendfile(p, m, out_fd, in_fd, a[2], a[3]);
            // It waits for whichever end is not ready: input first.
            let input_ready = p
                .files
                .get(in_fd)
                .is_ok_and(|f| f.poll_events() & (POLLIN | POLLHUP) != 0);
            return Some(blocking(
                p,
                m,
                if input_ready { out_fd } else { in_fd },
                input_ready,
                r,
            ));
        }
        nr::UTIMENSAT => attr::sys_utimensat(p, m, a),
        nr::UTIMES => attr::sys_futimesat(p, m, AT_FDCWD, a[0], a[1]),
        nr::FUTIMESAT => attr::sys_futimesat(p, m, fd0, a[1], a[2]),
        nr::UTIME => attr::sys_utime(p, m, a[0], a[1]),
        nr::CHMOD => attr::sys_chmod_at(p, m, AT_FDCWD, a[0], a[1], 0),
        nr::FCHMODAT => attr::sys_chmod_at(p, m, fd0, a[1], a[2], 0),
        nr::FCHMODAT2 => attr::sys_chmod_at(p, m, fd0, a[1], a[2], a[3]),
        nr::FCHMOD => attr::sys_fchmod(p, m, fd0, a[1]),
        nr::CHOWN => attr::sys_chown_at(p, m, [AT_FDCWD as u64, a[0], a[1], a[2], 0, 0]),
        nr::LCHOWN => attr::sys_chown_at(
            p,
            m,
            [AT_FDCWD as u64, a[0], a[1], a[2], AT_SYMLINK_NOFOLLOW, 0],
        ),
        nr::FCHOWNAT => attr::sys_chown_at(p, m, a),
        nr::FCHOWN => attr::sys_fchown(p, m, a),
        nr::SYMLINK => attr::sys_symlink(p, m, a[0], AT_FDCWD, a[1]),
        nr::SYMLINKAT => attr::sys_symlink(p, m, a[0], a[1] as i32, a[2]),
        nr::LINK => attr::sys_link(p, m, [AT_FDCWD as u64, a[0], AT_FDCWD as u64, a[1], 0, 0]),
        nr::LINKAT => attr::sys_link(p, m, a),
        nr::STATFS => attr::sys_statfs(p, m, a[0], a[1]),
        nr::GETXATTR => attr::sys_xattr(p, m, attr::Xattr::Get, None, a[0], true),
        nr::LGETXATTR => attr::sys_xattr(p, m, attr::Xattr::Get, None, a[0], false),
        nr::FGETXATTR => attr::sys_xattr(p, m, attr::Xattr::Get, Some(fd0), 0, true),
        nr::LISTXATTR => attr::sys_xattr(p, m, attr::Xattr::List, None, a[0], true),
        nr::LLISTXATTR => attr::sys_xattr(p, m, attr::Xattr::List, None, a[0], false),
        nr::FLISTXATTR => attr::sys_xattr(p, m, attr::Xattr::List, Some(fd0), 0, true),
        nr::SETXATTR => attr::sys_xattr(p, m, attr::Xattr::Set, None, a[0], true),
        nr::LSETXATTR => attr::sys_xattr(p, m, attr::Xattr::Set, None, a[0], false),
        nr::FSETXATTR => attr::sys_xattr(p, m, attr::Xattr::Set, Some(fd0), 0, true),
        nr::REMOVEXATTR => attr::sys_xattr(p, m, attr::Xattr::Remove, None, a[0], true),
        nr::LREMOVEXATTR => attr::sys_xattr(p, m, attr::Xattr::Remove, None, a[0], false),
        nr::FREMOVEXATTR => attr::sys_xattr(p, m, attr::Xattr::Remove, Some(fd0), 0, true),
        nr::FSTATFS => attr::sys_fstatfs(p, m, fd0, a[1]),
        nr::FALLOCATE => attr::sys_fallocate(p, m, fd0, a[1], a[2] as i64, a[3] as i64),
        // Nothing is buffered: every write is already in the file.
        nr::SYNC => Ok(0),
        nr::SYNCFS => io_file(p, fd0).map(|_| 0),
        nr::SELECT => return Some(outcome(io::sys_select(p, m, a))),
        nr::PSELECT6 => return Some(outcome(io::sys_pselect6(p, m, a))),
        nr::EVENTFD => epoll::sys_eventfd(p, a[0], 0),
        nr::EVENTFD2 => epoll::sys_eventfd(p, a[0], a[1]),
        nr::EPOLL_CREATE => epoll::sys_epoll_create(p, a[0] as i32 as i64, 0),
        nr::EPOLL_CREATE1 => epoll::sys_epoll_create(p, 1, a[0]),
        nr::EPOLL_CTL => epoll::sys_epoll_ctl(p, m, a),
        nr::EPOLL_WAIT | nr::EPOLL_PWAIT | nr::EPOLL_PWAIT2 => {
            return Some(outcome(epoll::sys_epoll_wait(p, m, nr, a)))
        }
        nr::PREADV => io::sys_prwv(p, m, a, false, None),
        nr::PWRITEV => io::sys_prwv(p, m, a, true, None),
        nr::PREADV2 => io::sys_prwv(p, m, a, false, Some(a[5])),
        nr::PWRITEV2 => io::sys_prwv(p, m, a, true, Some(a[5])),
        nr::COPY_FILE_RANGE => io::sys_copy_file_range(p, m, a),
        _ => return None,
    };
    Some(ret(r))
}

/// The bytes of a regular file for a private file mapping: `len` bytes from `offset`,
/// zero-padded past the end of the file. `EBADF` for a bad or `O_PATH` descriptor,
/// `EACCES` unless it is open for reading, `ENODEV` for anything but a regular file or
/// `/dev/zero` (which maps as zeros), `ENOMEM` if the buffer cannot be allocated.
/// The bytes of `fd`'s file when they live in memory for the kernel's lifetime (a file of the
/// read-only root filesystem), so a mapping can use them in place; `None` for any other
/// descriptor. `EACCES` when the descriptor cannot read.
pub fn static_bytes_for_mmap(p: &mut Process, fd: i32) -> KResult<Option<&'static [u8]>> {
    let f = io_file(p, fd)?;
    if !f.readable() {
        return Err(Errno::EACCES);
    }
    Ok(match f.downcast::<NodeFile>() {
        Some(NodeFile(n)) => match n.body {
            Body::StaticFile(data) => Some(data),
            _ => None,
        },
        None => None,
    })
}

pub fn read_for_mmap(
    p: &mut Process,
    m: &mut dyn Machine,
    fd: i32,
    offset: u64,
    len: usize,
) -> KResult<Vec<u8>> {
    let f = io_file(p, fd)?;
    if !f.readable() {
        return Err(Errno::EACCES);
    }
    // Only what the file holds: a mapping may be far longer than its file (bbolt, inside
    // etcd, maps 10 GiB over a 16 KiB database), and the rest reads as zeros.
    let in_file = f.object.size().saturating_sub(offset);
    let len = len.min(usize::try_from(in_file).unwrap_or(usize::MAX));
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| Errno::ENOMEM)?;
    v.resize(len, 0);
    if let Some(vf) = f.downcast::<VolumeFile>() {
        // A private copy of the host file's bytes (short at its end: zeros).
        vf.read_at(m, &mut v, offset)?;
        return Ok(v);
    }
    let Some(NodeFile(n)) = f.downcast::<NodeFile>() else {
        return Err(Errno::ENODEV);
    };
    if !(n.is_regular() || matches!(n.body, Body::Device(Device::Zero))) {
        return Err(Errno::ENODEV);
    }
    n.read_at(offset, &mut v);
    Ok(v)
}

// ----- helpers -----

/// The outcome of a call that may wait.
fn outcome(r: KResult<Outcome>) -> Outcome {
    r.unwrap_or_else(|e| Outcome::Return(e.as_return()))
}

/// The outcome of a read or write (`write`) of `fd` that returned `r`: `EAGAIN` on a
/// blocking descriptor waits for the file (see [`OpenFile::block_on_eagain`]), at most as
/// long as its timeout for that direction (a socket's `SO_RCVTIMEO` or `SO_SNDTIMEO`),
/// after which the call returns `EAGAIN`.
fn blocking(
    p: &mut Process,
    m: &mut dyn Machine,
    fd: i32,
    write: bool,
    r: KResult<i64>,
) -> Outcome {
    if r != Err(Errno::EAGAIN) {
        return ret(r);
    }
    let Ok(f) = p.files.get(fd) else {
        return ret(r);
    };
    let timeout = f.object.io_timeout(write);
    if let Some(w) = f.waitable().filter(|_| timeout > 0 && !f.nonblock()) {
        // A wait with a deadline ends, even where nothing else could end it.
        return Outcome::Block(Wait {
            channels: vec![w.channel()],
            deadline: Some(
                m.restart_deadline()
                    .unwrap_or_else(|| m.monotonic_ns().saturating_add(timeout)),
            ),
            on_timeout: Errno::EAGAIN.as_return(),
            on_wake: None,
        });
    }
    let out = f.block_on_eagain(m, r);
    if out == Outcome::Return(Errno::EDEADLK.as_return()) {
        log_deadlock(p, m, &f.path);
    }
    out
}

/// Logs, once per process, that a wait could never end.
fn log_deadlock(p: &mut Process, m: &mut dyn Machine, what: &str) {
    const KEY: u64 = u64::MAX - 2;
    if p.unsupported_logged.insert(KEY) {
        m.log(format_args!(
            "{what}: blocking wait that nothing could end (one thread, no deadline, no outside source): EDEADLK"
        ));
    }
}

/// After descriptors were closed or replaced: wakes the waiters of what they referred to
/// (a pipe end closing is a hang-up or end of file for the other end).
pub(crate) fn closed(m: &mut dyn Machine, files: Vec<Arc<OpenFile>>) {
    let ids: Vec<u64> = files
        .iter()
        .filter_map(|f| f.waitable().map(Waitable::id))
        .collect();
    // A file closing may release a lock someone waits for.
    let unlocks = files.iter().any(|f| f.object.inode().is_some());
    drop(files);
    if unlocks {
        m.wake(flock::FLOCK_CHANNEL, usize::MAX);
    }
    for id in ids {
        wake_object(m, id);
    }
}

/// How a readiness wait ends: the deadline for a timeout of `timeout_ns` (`None`:
/// forever), the first run's deadline when the call is run again after a wake-up.
fn wait_deadline(m: &dyn Machine, timeout_ns: Option<u64>) -> Option<u64> {
    let t = timeout_ns?;
    Some(
        m.restart_deadline()
            .unwrap_or_else(|| m.monotonic_ns().saturating_add(t)),
    )
}

/// The wait of a `poll`-family call with nothing ready: on [`Channel::Io`] until
/// `deadline`, returning 0 then. `None` when the call must return now (timeout 0 or
/// passed). `EDEADLK` when nothing could end an endless wait (one thread, no timer armed
/// to send a signal, and `local`: only files this process drives, at least one).
fn io_wait(
    p: &mut Process,
    m: &mut dyn Machine,
    what: &str,
    timeout_ns: Option<u64>,
    deadline: Option<u64>,
    local: bool,
) -> KResult<Option<Outcome>> {
    if timeout_ns == Some(0) || deadline.is_some_and(|d| d <= m.monotonic_ns()) {
        return Ok(None);
    }
    // An armed `alarm`, interval or POSIX timer will send a signal, which ends the wait.
    let timer_armed = p.timers.real.is_some() || p.timers.posix.next_deadline().is_some();
    if deadline.is_none() && local && m.thread_count() <= 1 && !timer_armed {
        log_deadlock(p, m, what);
        return Err(Errno::EDEADLK);
    }
    Ok(Some(Outcome::Block(Wait {
        channels: vec![Channel::Io],
        deadline,
        on_timeout: 0,
        on_wake: None,
    })))
}

/// An open file usable for I/O (`EBADF` for `O_PATH` descriptors).
fn io_file(p: &Process, fd: i32) -> KResult<Arc<OpenFile>> {
    let f = p.files.get(fd)?;
    if f.is_path_only() {
        return Err(Errno::EBADF);
    }
    Ok(f)
}

/// Reads a path argument (possibly empty), and brings `/proc/self` up to date for it.
pub(crate) fn path_or_empty(p: &mut Process, m: &mut dyn Machine, addr: u64) -> KResult<String> {
    let tids = m.tids();
    p.vfs.sync_proc(&p.files, &p.cwd, &tids);
    let bytes = p.vm.read_cstr(m.pages(), addr, PATH_MAX - 1)?;
    String::from_utf8(bytes).map_err(|_| Errno::ENOENT)
}

/// Reads a non-empty path argument (`ENOENT` if empty).
fn path(p: &mut Process, m: &mut dyn Machine, addr: u64) -> KResult<String> {
    let s = path_or_empty(p, m, addr)?;
    if s.is_empty() {
        return Err(Errno::ENOENT);
    }
    Ok(s)
}

/// The directory a `*at` path is relative to: the working directory for [`AT_FDCWD`], else
/// `dirfd`'s (`EBADF`, `ENOTDIR`). Absolute paths ignore `dirfd`.
pub(crate) fn base(p: &Process, dirfd: i32, path: &str) -> KResult<String> {
    if path.starts_with('/') {
        return Ok(String::from("/"));
    }
    if dirfd == AT_FDCWD {
        return Ok(p.cwd.clone());
    }
    let f = p.files.get(dirfd)?;
    match f.inode() {
        Some(n) if n.is_dir() => Ok(f.path.clone()),
        _ => Err(Errno::ENOTDIR),
    }
}

fn put(p: &mut Process, m: &mut dyn Machine, addr: u64, data: &[u8]) -> KResult<()> {
    p.vm.copy_to_user(m.pages(), addr, data)
}

fn get<const N: usize>(p: &mut Process, m: &mut dyn Machine, addr: u64) -> KResult<[u8; N]> {
    let mut b = [0u8; N];
    p.vm.copy_from_user(m.pages(), addr, &mut b)?;
    Ok(b)
}

fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
}

fn now(m: &dyn Machine) -> u64 {
    m.realtime_ns()
}

// ----- read and write -----

/// A source of bytes for [`read_into_user`]: fills the buffer given the bytes done so far.
type ReadOp<'a> = dyn FnMut(&mut dyn Machine, &mut [u8], u64) -> KResult<usize> + 'a;

/// A sink of bytes for [`write_from_user`]: takes the buffer given the bytes done so far.
type WriteOp<'a> = dyn FnMut(&mut dyn Machine, &[u8], u64) -> KResult<usize> + 'a;

/// Moves up to `count` bytes from `op` (called with a kernel buffer and the bytes done so
/// far) to user memory at `addr`, a chunk at a time, until a short chunk. An error after
/// some bytes were moved ends the call with the count. `op` is a `dyn` closure (here and
/// in [`write_from_user`]) and both are out of line, so that the loop exists once, not
/// once per caller.
#[inline(never)]
fn read_into_user(
    p: &mut Process,
    m: &mut dyn Machine,
    addr: u64,
    count: u64,
    op: &mut ReadOp<'_>,
) -> KResult<u64> {
    let count = count.min(MAX_RW);
    let mut buf = p.bounce.take((count as usize).min(CHUNK));
    let r = read_chunks(p, m, addr, count, &mut buf, op);
    p.bounce.put(buf);
    r
}

/// The loop of [`read_into_user`], through `buf`.
fn read_chunks(
    p: &mut Process,
    m: &mut dyn Machine,
    addr: u64,
    count: u64,
    buf: &mut [u8],
    op: &mut ReadOp<'_>,
) -> KResult<u64> {
    let mut done = 0u64;
    loop {
        let want = ((count - done) as usize).min(CHUNK);
        let n = match op(m, &mut buf[..want], done) {
            Ok(n) => n,
            Err(_) if done > 0 => break,
            Err(e) => return Err(e),
        };
        match p
            .vm
            .copy_to_user(m.pages(), addr.wrapping_add(done), &buf[..n])
        {
            Ok(()) => {}
            Err(_) if done > 0 => break,
            Err(e) => return Err(e),
        }
        done += n as u64;
        if n < want || done == count {
            break;
        }
    }
    Ok(done)
}

/// Moves up to `count` bytes from user memory at `addr` to `op`, a chunk at a time, until
/// `op` takes less than it was given.
#[inline(never)]
fn write_from_user(
    p: &mut Process,
    m: &mut dyn Machine,
    addr: u64,
    count: u64,
    op: &mut WriteOp<'_>,
) -> KResult<u64> {
    let count = count.min(MAX_RW);
    let mut buf = p.bounce.take((count as usize).min(CHUNK));
    let r = write_chunks(p, m, addr, count, &mut buf, op);
    p.bounce.put(buf);
    r
}

/// The loop of [`write_from_user`], through `buf`.
fn write_chunks(
    p: &mut Process,
    m: &mut dyn Machine,
    addr: u64,
    count: u64,
    buf: &mut [u8],
    op: &mut WriteOp<'_>,
) -> KResult<u64> {
    let mut done = 0u64;
    loop {
        let want = ((count - done) as usize).min(CHUNK);
        match p
            .vm
            .copy_from_user(m.pages(), addr.wrapping_add(done), &mut buf[..want])
        {
            Ok(()) => {}
            Err(_) if done > 0 => break,
            Err(e) => return Err(e),
        }
        let n = match op(m, &buf[..want], done) {
            Ok(n) => n,
            Err(_) if done > 0 => break,
            Err(e) => return Err(e),
        };
        done += n as u64;
        if n < want || done == count {
            break;
        }
    }
    Ok(done)
}

fn sys_read(
    p: &mut Process,
    m: &mut dyn Machine,
    fd: i32,
    buf: u64,
    count: u64,
    at: Option<i64>,
) -> KResult<i64> {
    let f = io_file(p, fd)?;
    if !f.readable() {
        return Err(Errno::EBADF);
    }
    let n = match at {
        None => read_into_user(p, m, buf, count, &mut |m, b, _| f.read(m, b))?,
        Some(off) => {
            if off < 0 {
                return Err(Errno::EINVAL);
            }
            if !f.seekable() {
                return Err(Errno::ESPIPE);
            }
            read_into_user(p, m, buf, count, &mut |m, b, done| {
                f.pread(m, b, off as u64 + done)
            })?
        }
    };
    Ok(n as i64)
}

fn sys_write(
    p: &mut Process,
    m: &mut dyn Machine,
    fd: i32,
    buf: u64,
    count: u64,
    at: Option<i64>,
) -> KResult<i64> {
    let f = io_file(p, fd)?;
    if !f.writable() {
        return Err(Errno::EBADF);
    }
    let t = now(m);
    let n = match at {
        None => write_from_user(p, m, buf, count, &mut |m, b, _| f.write(m, b, t))?,
        Some(off) => {
            if off < 0 {
                return Err(Errno::EINVAL);
            }
            if !f.seekable() {
                return Err(Errno::ESPIPE);
            }
            write_from_user(p, m, buf, count, &mut |m, b, done| {
                f.pwrite(m, b, off as u64 + done, t)
            })?
        }
    };
    Ok(n as i64)
}

/// Reads an `iovec` array: (base, len) pairs. `EINVAL` for too many or a total that
/// overflows `ssize_t`.
fn iovecs(p: &mut Process, m: &mut dyn Machine, addr: u64, cnt: u64) -> KResult<Vec<(u64, u64)>> {
    if cnt > IOV_MAX {
        return Err(Errno::EINVAL);
    }
    let mut raw = vec![0u8; cnt as usize * 16];
    p.vm.copy_from_user(m.pages(), addr, &mut raw)?;
    let iov: Vec<(u64, u64)> = raw
        .chunks_exact(16)
        .map(|c| (le_u64(&c[..8]), le_u64(&c[8..])))
        .collect();
    let mut total: u64 = 0;
    for &(_, len) in &iov {
        total = total
            .checked_add(len)
            .filter(|&t| t <= i64::MAX as u64)
            .ok_or(Errno::EINVAL)?;
    }
    Ok(iov)
}

fn sys_readv(p: &mut Process, m: &mut dyn Machine, fd: i32, iov: u64, cnt: u64) -> KResult<i64> {
    let f = io_file(p, fd)?;
    if !f.readable() {
        return Err(Errno::EBADF);
    }
    let iov = iovecs(p, m, iov, cnt)?;
    let mut total = 0u64;
    for (base, len) in iov {
        match read_into_user(p, m, base, len, &mut |m, b, _| f.read(m, b)) {
            Ok(n) => {
                total += n;
                if n < len {
                    break;
                }
            }
            Err(_) if total > 0 => break,
            Err(e) => return Err(e),
        }
    }
    Ok(total as i64)
}

fn sys_writev(p: &mut Process, m: &mut dyn Machine, fd: i32, iov: u64, cnt: u64) -> KResult<i64> {
    let iov = iovecs(p, m, iov, cnt)?;
    write_iov(p, m, fd, iov)
}

/// Writes the buffers `iov` to `fd` in order, until one is not taken whole.
fn write_iov(p: &mut Process, m: &mut dyn Machine, fd: i32, iov: Vec<(u64, u64)>) -> KResult<i64> {
    let f = io_file(p, fd)?;
    if !f.writable() {
        return Err(Errno::EBADF);
    }
    let t = now(m);
    let mut total = 0u64;
    for (base, len) in iov {
        match write_from_user(p, m, base, len, &mut |m, b, _| f.write(m, b, t)) {
            Ok(n) => {
                total += n;
                if n < len {
                    break;
                }
            }
            Err(_) if total > 0 => break,
            Err(e) => return Err(e),
        }
    }
    Ok(total as i64)
}

fn sys_sendfile(
    p: &mut Process,
    m: &mut dyn Machine,
    out_fd: i32,
    in_fd: i32,
    off_ptr: u64,
    count: u64,
) -> KResult<i64> {
    let fin = io_file(p, in_fd)?;
    let fout = io_file(p, out_fd)?;
    if !fin.readable() || !fout.writable() {
        return Err(Errno::EBADF);
    }
    if fout.status_flags() & O_APPEND != 0 {
        return Err(Errno::EINVAL);
    }
    let mut pos = if off_ptr != 0 {
        if !fin.seekable() {
            return Err(Errno::ESPIPE);
        }
        let off = i64::from_le_bytes(get::<8>(p, m, off_ptr)?);
        if off < 0 {
            return Err(Errno::EINVAL);
        }
        Some(off as u64)
    } else {
        None
    };
    let count = count.min(MAX_RW);
    let t = now(m);
    let mut buf = vec![0u8; (count as usize).min(CHUNK)];
    let mut done = 0u64;
    while done < count {
        let want = ((count - done) as usize).min(CHUNK);
        let r = match pos {
            Some(off) => fin.pread(m, &mut buf[..want], off),
            None => fin.read(m, &mut buf[..want]),
        };
        let n = match r {
            Ok(n) => n,
            Err(_) if done > 0 => break,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        let w = match fout.write(m, &buf[..n], t) {
            Ok(w) => w,
            Err(e) => {
                if pos.is_none() && fin.seekable() {
                    fin.set_offset(fin.offset() - n as u64);
                }
                if done > 0 {
                    break;
                }
                return Err(e);
            }
        };
        if pos.is_none() && w < n && fin.seekable() {
            fin.set_offset(fin.offset() - (n - w) as u64);
        }
        done += w as u64;
        if let Some(off) = &mut pos {
            *off += w as u64;
        }
        if w < n || n < want {
            break;
        }
    }
    if let Some(off) = pos {
        put(p, m, off_ptr, &off.to_le_bytes())?;
    }
    Ok(done as i64)
}

// ----- open, stat, access -----

/// `ENOSPC` once memory is down to the kernel's reserve: new names in `/tmp` (directories,
/// links) are kernel memory, and tmpfs is then full.
pub(super) fn room_for_names(m: &mut dyn Machine) -> KResult<()> {
    if m.pages().memory_low() {
        Err(Errno::ENOSPC)
    } else {
        Ok(())
    }
}

fn sys_open(
    p: &mut Process,
    m: &mut dyn Machine,
    dirfd: i32,
    path_addr: u64,
    flags: u64,
    mode: u64,
) -> KResult<i64> {
    let flags = flags as u32;
    let path = path(p, m, path_addr)?;
    if p.files.is_full() {
        return Err(Errno::EMFILE);
    }
    let base = base(p, dirfd, &path)?;
    if m.pages().memory_low() {
        // A new /tmp file is kernel memory: once memory is down to the kernel's reserve,
        // only existing files open (a full tmpfs says ENOSPC).
        let tmpfile = flags & crate::fd::O_TMPFILE == crate::fd::O_TMPFILE;
        let creates = flags & O_CREAT != 0
            && p.vfs.find(&base, &path, flags & O_NOFOLLOW == 0).err() == Some(Errno::ENOENT);
        if tmpfile || creates {
            return Err(Errno::ENOSPC);
        }
    }
    if flags & O_NOFOLLOW == 0 {
        if let Some(fd) = p.vfs.fd_link(&base, &path, true)? {
            let file = reopen(p, m, fd, flags)?;
            return p.files.install(file, flags & O_CLOEXEC != 0).map(i64::from);
        }
    }
    let o = p
        .vfs
        .open(&base, &path, flags, mode as u32 & 0o7777, now(m))?;
    let object: Arc<dyn FileLike> = if let (Body::Proc(f), 0) = (&o.inode.body, flags & O_PATH) {
        let (f, text) = (*f, crate::procfs::text(*f, p, m)?);
        let snapshot = Snapshot::new(o.inode, text);
        match f.renames() {
            Some(tid) if flags & O_ACCMODE != O_RDONLY => {
                Arc::new(snapshot.renaming(p.proc.names.clone(), tid))
            }
            _ => Arc::new(snapshot),
        }
    } else {
        crate::fd::volume::open_node(o.inode, flags)?
    };
    let file = OpenFile::new(object, o.path, flags | O_LARGEFILE);
    p.files.install(file, flags & O_CLOEXEC != 0).map(i64::from)
}

const MFD_CLOEXEC: u64 = 1;
const MFD_ALLOW_SEALING: u64 = 2;
const MFD_NOEXEC_SEAL: u64 = 8;
const MFD_EXEC: u64 = 0x10;
/// Longest `memfd_create` name, without its NUL.
const MFD_NAME_MAX: usize = 249;

/// `memfd_create`: a new `/tmp` file with no name in any directory, open for reading and
/// writing (`/proc/self/fd/N` shows `/memfd:NAME (deleted)`, as on Linux). Huge pages are
/// refused (`EINVAL`): none are reserved.
fn sys_memfd_create(p: &mut Process, m: &mut dyn Machine, name: u64, flags: u64) -> KResult<i64> {
    let known = MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL | MFD_EXEC;
    if flags & !known != 0 || flags & (MFD_NOEXEC_SEAL | MFD_EXEC) == MFD_NOEXEC_SEAL | MFD_EXEC {
        return Err(Errno::EINVAL);
    }
    let name =
        p.vm.read_cstr(m.pages(), name, MFD_NAME_MAX)
            .map_err(|e| match e {
                Errno::ENAMETOOLONG => Errno::EINVAL,
                e => e,
            })?;
    if p.files.is_full() {
        return Err(Errno::EMFILE);
    }
    room_for_names(m).map_err(|_| Errno::ENOMEM)?;
    let t = now(m);
    let perm = if flags & MFD_NOEXEC_SEAL != 0 {
        0o666
    } else {
        0o777
    };
    let inode = Inode::new(
        crate::fs::FsId::Tmp,
        Body::MemFile(spin::Mutex::new(crate::fs::filedata::FileData::new())),
        perm,
        t,
    );
    inode.unlink(t);
    if flags & (MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL) != 0 {
        inode.set_seals(0);
    }
    let object = crate::fd::volume::open_node(Arc::new(inode), crate::fd::O_RDWR)?;
    let path = alloc::format!("/memfd:{} (deleted)", String::from_utf8_lossy(&name));
    let file = OpenFile::new(object, path, crate::fd::O_RDWR | O_LARGEFILE);
    p.files
        .install(file, flags & MFD_CLOEXEC != 0)
        .map(i64::from)
}

/// Opens `/proc/self/fd/N` (or a link to it, such as `/dev/stdout`): a new open file for
/// what descriptor `N` refers to, as Linux does. A pipe opens as its read or write end by
/// the access mode (`O_RDWR`: `EINVAL`, as a pipe end here has one direction).
fn reopen(p: &mut Process, m: &mut dyn Machine, fd: i32, flags: u32) -> KResult<Arc<OpenFile>> {
    let f = p.files.get(fd)?;
    // Anonymous inodes (eventfd, epoll, sockets) cannot be opened again by path.
    let object = f.object.reopen(&p.vfs, flags, now(m))?;
    if flags & O_DIRECTORY != 0 && !f.inode().is_some_and(|n| n.is_dir()) {
        return Err(Errno::ENOTDIR);
    }
    Ok(OpenFile::new(object, f.path.clone(), flags | O_LARGEFILE))
}

/// The node a `*at` call with `AT_EMPTY_PATH` support names, as a status.
fn stat_at(
    p: &mut Process,
    m: &mut dyn Machine,
    dirfd: i32,
    path_addr: u64,
    flags: u64,
) -> KResult<Stat> {
    let path = if path_addr == 0 && flags & AT_EMPTY_PATH != 0 {
        String::new()
    } else {
        path_or_empty(p, m, path_addr)?
    };
    if path.is_empty() {
        if flags & AT_EMPTY_PATH == 0 {
            return Err(Errno::ENOENT);
        }
        if dirfd == AT_FDCWD {
            return Ok(p.vfs.find("/", &p.cwd, true)?.stat());
        }
        return Ok(p.files.get(dirfd)?.stat());
    }
    let base = base(p, dirfd, &path)?;
    let follow = flags & AT_SYMLINK_NOFOLLOW == 0;
    if let Some(fd) = p.vfs.fd_link(&base, &path, follow)? {
        return Ok(p.files.get(fd)?.stat());
    }
    Ok(p.vfs.find(&base, &path, follow)?.stat())
}

fn sys_stat(
    p: &mut Process,
    m: &mut dyn Machine,
    dirfd: i32,
    path_addr: u64,
    buf: u64,
    flags: u64,
) -> KResult<i64> {
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let st = stat_at(p, m, dirfd, path_addr, flags)?;
    put(p, m, buf, &st.to_linux())?;
    Ok(0)
}

fn sys_statx(
    p: &mut Process,
    m: &mut dyn Machine,
    dirfd: i32,
    path_addr: u64,
    flags: u64,
    mask: u32,
    buf: u64,
) -> KResult<i64> {
    let known = AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_EMPTY_PATH | AT_STATX_SYNC_TYPE;
    if flags & !known != 0 || flags & AT_STATX_SYNC_TYPE == AT_STATX_SYNC_TYPE {
        return Err(Errno::EINVAL);
    }
    if mask & 0x8000_0000 != 0 {
        return Err(Errno::EINVAL);
    }
    let st = stat_at(p, m, dirfd, path_addr, flags)?;
    put(p, m, buf, &st.to_statx())?;
    Ok(0)
}

fn sys_access(
    p: &mut Process,
    m: &mut dyn Machine,
    dirfd: i32,
    path_addr: u64,
    mode: u64,
    flags: u64,
) -> KResult<i64> {
    if flags & !(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) != 0 || mode & !7 != 0 {
        return Err(Errno::EINVAL);
    }
    let path = path_or_empty(p, m, path_addr)?;
    if path.is_empty() {
        if flags & AT_EMPTY_PATH == 0 {
            return Err(Errno::ENOENT);
        }
        let target = if dirfd == AT_FDCWD {
            p.cwd.clone()
        } else {
            p.files.get(dirfd)?.path.clone()
        };
        p.vfs.access("/", &target, mode as u32, true)?;
        return Ok(0);
    }
    let base = base(p, dirfd, &path)?;
    p.vfs
        .access(&base, &path, mode as u32, flags & AT_SYMLINK_NOFOLLOW == 0)?;
    Ok(0)
}

// ----- pipes and descriptors -----

fn sys_pipe(p: &mut Process, m: &mut dyn Machine, fds: u64, flags: u64) -> KResult<i64> {
    let flags = u32::try_from(flags).map_err(|_| Errno::EINVAL)?;
    let (r, w) = p.files.pipe(flags)?;
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&r.to_le_bytes());
    out[4..].copy_from_slice(&w.to_le_bytes());
    if let Err(e) = put(p, m, fds, &out) {
        let _ = p.files.close(r);
        let _ = p.files.close(w);
        return Err(e);
    }
    Ok(0)
}

fn sys_close_range(
    p: &mut Process,
    m: &mut dyn Machine,
    first: u64,
    last: u64,
    flags: u64,
) -> KResult<i64> {
    const UNSHARE: u64 = 2;
    const CLOEXEC: u64 = 4;
    if flags & !(UNSHARE | CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let first = u32::try_from(first).map_err(|_| Errno::EINVAL)?;
    let last = last.min(u64::from(u32::MAX)) as u32;
    let cloexec = flags & CLOEXEC != 0;
    let gone: Vec<Arc<OpenFile>> = if cloexec {
        Vec::new()
    } else {
        let fds: Vec<i32> = p.files.fds().collect();
        fds.into_iter()
            .filter(|&fd| (first..=last).contains(&(fd as u32)))
            .filter_map(|fd| p.files.get(fd).ok())
            .collect()
    };
    p.files.close_range(first, last, cloexec)?;
    closed(m, gone);
    Ok(0)
}

fn sys_fcntl(p: &mut Process, m: &mut dyn Machine, fd: i32, cmd: u64, arg: u64) -> KResult<i64> {
    let f = p.files.get(fd)?;
    match cmd {
        F_DUPFD | F_DUPFD_CLOEXEC => p
            .files
            .install_from(arg as i32, f, cmd == F_DUPFD_CLOEXEC)
            .map(i64::from),
        F_GETFD => Ok(i64::from(p.files.cloexec(fd)?)),
        F_SETFD => {
            p.files.set_cloexec(fd, arg & FD_CLOEXEC != 0)?;
            Ok(0)
        }
        F_GETFL => Ok(i64::from(f.status_flags())),
        _ if f.is_path_only() => Err(Errno::EBADF),
        F_SETFL => {
            f.set_status_flags(arg as u32);
            Ok(0)
        }
        F_GETLK | F_SETLK | F_SETLKW | F_OFD_GETLK | F_OFD_SETLK | F_OFD_SETLKW => {
            let mut fl = get::<32>(p, m, arg)?;
            let ty = u16::from_le_bytes([fl[0], fl[1]]);
            let whence = u16::from_le_bytes([fl[2], fl[3]]);
            let pid = i32::from_le_bytes(fl[24..28].try_into().expect("4 bytes"));
            if whence > 2 || ty > F_UNLCK {
                return Err(Errno::EINVAL);
            }
            let ofd = matches!(cmd, F_OFD_GETLK | F_OFD_SETLK | F_OFD_SETLKW);
            if ofd && pid != 0 {
                return Err(Errno::EINVAL);
            }
            if matches!(cmd, F_GETLK | F_OFD_GETLK) {
                // The only process holds every lock there is: nothing conflicts.
                fl[0..2].copy_from_slice(&F_UNLCK.to_le_bytes());
                put(p, m, arg, &fl)?;
                return Ok(0);
            }
            match ty {
                F_RDLCK if !f.readable() => Err(Errno::EBADF),
                F_WRLCK if !f.writable() => Err(Errno::EBADF),
                _ => Ok(0),
            }
        }
        F_GETOWN | F_GETSIG => Ok(0),
        F_SETOWN | F_SETSIG => Ok(0),
        F_GET_SEALS => match f.inode() {
            Some(n) => n.seals().map(i64::from),
            None => Err(Errno::EINVAL),
        },
        F_ADD_SEALS => match f.inode() {
            Some(_) if !f.writable() => Err(Errno::EPERM),
            Some(n) => {
                let n = n.clone();
                let more = arg as u32;
                // No writable shared mapping may outlive a write seal.
                let writable_map = || p.vm.shared_regions(&n).iter().any(|r| r.prot.write);
                if more & crate::fs::node::F_SEAL_WRITE != 0
                    && n.seals()? & crate::fs::node::F_SEAL_SEAL == 0
                    && writable_map()
                {
                    return Err(Errno::EBUSY);
                }
                n.add_seals(more).map(|_| 0)
            }
            None => Err(Errno::EINVAL),
        },
        F_GETPIPE_SZ => f.pipe().map(|pp| pp.capacity() as i64).ok_or(Errno::EBADF),
        F_SETPIPE_SZ => match f.pipe() {
            Some(pp) => {
                let c = pp.set_capacity(arg as u32 as u64)?;
                pp.waitable.notify(m);
                Ok(c as i64)
            }
            None => Err(Errno::EBADF),
        },
        _ => Err(Errno::EINVAL),
    }
}

/// Whether the open file is a socket (interface requests are made on any socket).
#[cfg(feature = "net")]
fn is_socket(f: &OpenFile) -> bool {
    f.object.stat().mode & crate::fs::node::S_IFMT == crate::net::S_IFSOCK
}

fn sys_ioctl(p: &mut Process, m: &mut dyn Machine, fd: i32, req: u32, arg: u64) -> KResult<i64> {
    let f = io_file(p, fd)?;
    match req {
        FIOCLEX | FIONCLEX => {
            p.files.set_cloexec(fd, req == FIOCLEX)?;
            Ok(0)
        }
        FIONBIO => {
            let on = i32::from_le_bytes(get::<4>(p, m, arg)?) != 0;
            f.set_nonblock(on);
            Ok(0)
        }
        FIOASYNC => {
            let on = i32::from_le_bytes(get::<4>(p, m, arg)?) != 0;
            let fl = f.status_flags();
            f.set_status_flags(if on { fl | O_ASYNC } else { fl & !O_ASYNC });
            Ok(0)
        }
        FIONREAD | SIOCOUTQ => {
            let n = if req == FIONREAD {
                f.object.nread(f.offset())?
            } else {
                f.object.outq()?
            };
            put(p, m, arg, &(n.min(i32::MAX as u64) as i32).to_le_bytes())?;
            Ok(0)
        }
        #[cfg(feature = "net")]
        _ if super::net::ifreq::is_interface_request(req) && is_socket(&f) => {
            super::net::ifreq::ioctl(p, m, req, arg)
        }
        // No descriptor here is a terminal (TCGETS, TIOCGWINSZ, ... all fail).
        _ => Err(Errno::ENOTTY),
    }
}

// ----- poll -----

fn sys_poll(
    p: &mut Process,
    m: &mut dyn Machine,
    fds: u64,
    nfds: u64,
    timeout_ns: Option<u64>,
) -> KResult<Outcome> {
    if nfds > p.files.limit() as u64 {
        return Err(Errno::EINVAL);
    }
    let deadline = wait_deadline(m, timeout_ns);
    let mut raw = vec![0u8; nfds as usize * 8];
    p.vm.copy_from_user(m.pages(), fds, &mut raw)?;
    let mut ready = 0i64;
    // With no descriptor to watch, the call waits for a signal, as `pause` does.
    let mut local = nfds > 0;
    for e in raw.chunks_exact_mut(8) {
        let fd = i32::from_le_bytes(e[0..4].try_into().expect("4 bytes"));
        let events = u16::from_le_bytes([e[4], e[5]]);
        let revents = if fd < 0 {
            0
        } else {
            match p.files.get(fd) {
                Ok(f) => {
                    local &= f.locally_driven();
                    f.poll(events)
                }
                Err(_) => POLLNVAL,
            }
        };
        e[6..8].copy_from_slice(&revents.to_le_bytes());
        if revents != 0 {
            ready += 1;
        }
    }
    // Written before waiting too: a timeout returns 0 with every `revents` cleared.
    p.vm.copy_to_user(m.pages(), fds, &raw)?;
    if ready == 0 {
        if let Some(wait) = io_wait(p, m, "poll", timeout_ns, deadline, local)? {
            return Ok(wait);
        }
    }
    Ok(Outcome::Return(ready))
}

fn sys_ppoll(p: &mut Process, m: &mut dyn Machine, a: [u64; 6]) -> KResult<Outcome> {
    let (fds, nfds, tmo, sigmask, sigsetsize) = (a[0], a[1], a[2], a[3], a[4]);
    if sigmask != 0 && sigsetsize != 8 {
        return Err(Errno::EINVAL);
    }
    let timeout = io::timeout(p, m, tmo, 1_000_000_000, 1)?;
    let out = sys_poll(p, m, fds, nfds, timeout)?;
    if tmo != 0 {
        let d = wait_deadline(m, timeout);
        io::put_remaining(p, m, tmo, d, &out, 1);
    }
    Ok(out)
}

// ----- directories and names -----

fn sys_truncate(p: &mut Process, m: &mut dyn Machine, path_addr: u64, len: i64) -> KResult<i64> {
    let path = path(p, m, path_addr)?;
    if len < 0 {
        return Err(Errno::EINVAL);
    }
    p.vfs.truncate(&p.cwd, &path, len as u64, now(m))?;
    Ok(0)
}

fn sys_ftruncate(p: &mut Process, m: &mut dyn Machine, fd: i32, len: i64) -> KResult<i64> {
    if len < 0 {
        return Err(Errno::EINVAL);
    }
    let f = io_file(p, fd)?;
    match f.inode() {
        Some(n) if n.is_regular() && f.writable() => {
            // Growing a /tmp file takes kernel memory: not once it is down to the reserve.
            if len as u64 > n.size() && m.pages().memory_low() {
                return Err(Errno::ENOSPC);
            }
            n.truncate(len as u64, now(m))?;
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

fn sys_getdents(
    p: &mut Process,
    m: &mut dyn Machine,
    fd: i32,
    buf: u64,
    count: u64,
    is64: bool,
) -> KResult<i64> {
    let f = io_file(p, fd)?;
    let tids = m.tids();
    p.vfs.sync_proc(&p.files, &p.cwd, &tids);
    let node: Arc<Inode> = match f.inode() {
        Some(n) if n.is_dir() => n.clone(),
        _ => return Err(Errno::ENOTDIR),
    };
    let parent_ino = p
        .vfs
        .find("/", parent_path(&f.path), true)
        .map(|n| n.ino)
        .unwrap_or(node.ino);
    let mut entries: Vec<(String, u64, u8)> =
        vec![(".".into(), node.ino, 4), ("..".into(), parent_ino, 4)];
    if let Some(d) = node.dir() {
        entries.extend(d.lock().iter().map(|(k, v)| (k.clone(), v.ino, v.dtype())));
    } else if let Some(v) = f.downcast::<VolumeFile>() {
        entries.extend(
            v.entries()?
                .into_iter()
                .map(|e| (e.name, e.qid.path, e.kind)),
        );
    }
    let count = count.min(MAX_RW) as usize;
    let mut pos = usize::try_from(f.offset()).unwrap_or(usize::MAX);
    let mut out: Vec<u8> = Vec::new();
    while let Some((name, ino, dtype)) = entries.get(pos) {
        let reclen = if is64 {
            (19 + name.len() + 1).div_ceil(8) * 8
        } else {
            (18 + name.len() + 2).div_ceil(8) * 8
        };
        if out.len() + reclen > count {
            break;
        }
        let start = out.len();
        out.resize(start + reclen, 0);
        let rec = &mut out[start..];
        rec[0..8].copy_from_slice(&ino.to_le_bytes());
        rec[8..16].copy_from_slice(&((pos + 1) as u64).to_le_bytes());
        rec[16..18].copy_from_slice(&(reclen as u16).to_le_bytes());
        if is64 {
            rec[18] = *dtype;
            rec[19..19 + name.len()].copy_from_slice(name.as_bytes());
        } else {
            rec[18..18 + name.len()].copy_from_slice(name.as_bytes());
            rec[reclen - 1] = *dtype;
        }
        pos += 1;
    }
    if out.is_empty() && pos < entries.len() {
        return Err(Errno::EINVAL);
    }
    put(p, m, buf, &out)?;
    f.set_offset(pos as u64);
    Ok(out.len() as i64)
}

fn sys_getcwd(p: &mut Process, m: &mut dyn Machine, buf: u64, size: u64) -> KResult<i64> {
    let mut s = p.cwd.clone().into_bytes();
    s.push(0);
    if (size as usize) < s.len() {
        return Err(Errno::ERANGE);
    }
    put(p, m, buf, &s)?;
    Ok(s.len() as i64)
}

#[allow(clippy::too_many_arguments)]
fn sys_rename(
    p: &mut Process,
    m: &mut dyn Machine,
    olddirfd: i32,
    old_addr: u64,
    newdirfd: i32,
    new_addr: u64,
    flags: u64,
) -> KResult<i64> {
    let flags = u32::try_from(flags).map_err(|_| Errno::EINVAL)?;
    let old = path(p, m, old_addr)?;
    let new = path(p, m, new_addr)?;
    let ob = base(p, olddirfd, &old)?;
    let nb = base(p, newdirfd, &new)?;
    p.vfs.rename(&ob, &old, &nb, &new, flags, now(m))?;
    Ok(0)
}

fn sys_mkdir(
    p: &mut Process,
    m: &mut dyn Machine,
    dirfd: i32,
    path_addr: u64,
    mode: u64,
) -> KResult<i64> {
    let path = path(p, m, path_addr)?;
    let base = base(p, dirfd, &path)?;
    room_for_names(m)?;
    p.vfs.mkdir(&base, &path, mode as u32, now(m))?;
    Ok(0)
}

fn sys_unlink(
    p: &mut Process,
    m: &mut dyn Machine,
    dirfd: i32,
    path_addr: u64,
    flags: u64,
) -> KResult<i64> {
    if flags & !AT_REMOVEDIR != 0 {
        return Err(Errno::EINVAL);
    }
    let path = path(p, m, path_addr)?;
    let base = base(p, dirfd, &path)?;
    if flags & AT_REMOVEDIR != 0 {
        p.vfs.rmdir(&base, &path, now(m))?;
    } else {
        p.vfs.unlink(&base, &path, now(m))?;
    }
    Ok(0)
}

fn sys_readlink(
    p: &mut Process,
    m: &mut dyn Machine,
    dirfd: i32,
    path_addr: u64,
    buf: u64,
    size: u64,
) -> KResult<i64> {
    let size = size as i32;
    if size <= 0 {
        return Err(Errno::EINVAL);
    }
    let path = path(p, m, path_addr)?;
    let base = base(p, dirfd, &path)?;
    let target = p.vfs.readlink(&base, &path)?;
    let n = target.len().min(size as usize);
    put(p, m, buf, &target.as_bytes()[..n])?;
    Ok(n as i64)
}

mod attr;
mod epoll;
pub mod flock;
mod io;

#[cfg(test)]
mod tests;
