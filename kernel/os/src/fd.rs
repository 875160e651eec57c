//! File descriptors: the per-process table and the open files (file descriptions) it
//! points to.
//!
//! An [`OpenFile`] is shared (`Arc`) by every descriptor `dup`ed from the same `open`, so
//! they share the offset and status flags, as on Linux. Mutable state sits behind `spin`
//! locks so the table can be shared by threads. What the file is comes from one
//! [`FileLike`] object, one module per kind: [`node`] (files, directories, devices),
//! [`snapshot`] (`/proc` text), [`console`], [`pipe`], [`unix`] (socket pairs), network
//! sockets, [`eventfd`], [`epoll`], [`signalfd`] and [`timerfd`]. Closing is dropping: a kind releases what it holds
//! when the last description holding it goes.
//!
//! # Readiness and waiting (the contract every file kind keeps)
//!
//! - [`OpenFile::poll_events`] is the one source of readiness (`POLLIN`, `POLLOUT`,
//!   `POLLHUP`, `POLLERR`, `POLLRDHUP`...) for `poll`, `select` and `epoll`; it asks the
//!   kind ([`FileLike::poll_events`]).
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

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::any::Any;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;

use crate::errno::{Errno, KResult};
use crate::fs::node::{alloc_ino, BLKSIZE};
use crate::fs::{FsId, Inode, Stat};
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

/// Descriptors a new process may hold (`RLIMIT_NOFILE`'s soft limit, which a program
/// may raise up to the hard limit: see [`FdTable::set_limit`]).
pub const MAX_FDS: usize = 1024;
/// The highest descriptor number any table accepts (Linux's `fs.nr_open`).
pub const NR_OPEN: usize = 1 << 20;
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
    pub const fn with_id(id: u64) -> Waitable {
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

#[derive(Debug)]
struct FileState {
    flags: u32,
    offset: u64,
}

/// An open file description, shared by `dup`ed descriptors: what all kinds share (access
/// mode, status flags, offset, path) around one [`FileLike`].
#[derive(Debug)]
pub struct OpenFile {
    /// What it refers to.
    pub object: Arc<dyn FileLike>,
    /// Canonical path at open time (`pipe:[ino]` for pipes, `/dev/console` for the console).
    pub path: String,
    readable: bool,
    writable: bool,
    path_only: bool,
    state: Mutex<FileState>,
}

/// The status of a file with no node in the tree (pipes, sockets, eventfds): inode `ino`
/// of the pipe filesystem with `mode` (anonymous inodes have no file type bits, as on
/// Linux).
pub(crate) fn anon_stat(ino: u64, mode: u32) -> Stat {
    Stat {
        dev: (0, FsId::Pipe as u32),
        ino,
        mode,
        nlink: 1,
        blksize: BLKSIZE,
        ..Stat::default()
    }
}

impl OpenFile {
    /// Wraps an opened object with the `open` flags (access mode, `O_APPEND`,
    /// `O_NONBLOCK`, `O_PATH`...). `O_CLOEXEC` belongs to the descriptor, not here.
    pub fn new(object: Arc<dyn FileLike>, path: String, flags: u32) -> Arc<OpenFile> {
        let acc = flags & O_ACCMODE;
        let path_only = flags & O_PATH != 0;
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

    /// The object as kind `T`, if it is one.
    pub fn downcast<T: FileLike>(&self) -> Option<&T> {
        let any: &dyn Any = &*self.object;
        any.downcast_ref()
    }

    /// The object as a shared `T`, if it is one.
    pub fn downcast_arc<T: FileLike>(&self) -> Option<Arc<T>> {
        let any: Arc<dyn Any + Send + Sync> = self.object.clone();
        any.downcast().ok()
    }

    /// How the description was opened.
    pub fn access(&self) -> Access {
        Access {
            readable: self.readable,
            writable: self.writable,
            path_only: self.path_only,
        }
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
        self.object.inode()
    }

    /// The pipe behind the file, if it is a pipe end.
    pub fn pipe(&self) -> Option<&Arc<Pipe>> {
        match self.downcast::<PipeReader>() {
            Some(r) => Some(r.pipe()),
            None => self.downcast::<PipeWriter>().map(PipeWriter::pipe),
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
        self.object.seekable()
    }

    /// Reads at the file offset, advancing it (or from the stream).
    pub fn read(&self, m: &mut dyn Machine, buf: &mut [u8]) -> KResult<usize> {
        if !self.readable {
            return Err(Errno::EBADF);
        }
        if !self.object.seekable() {
            return self.object.read(m, buf);
        }
        let mut s = self.state.lock();
        let n = self.object.read_at(m, buf, s.offset)?;
        s.offset += n as u64;
        Ok(n)
    }

    /// Reads at `off` without moving the offset (`pread64`).
    pub fn pread(&self, m: &mut dyn Machine, buf: &mut [u8], off: u64) -> KResult<usize> {
        if !self.readable {
            return Err(Errno::EBADF);
        }
        if !self.seekable() {
            return Err(Errno::ESPIPE);
        }
        self.object.read_at(m, buf, off)
    }

    /// Writes at the file offset (at the end with `O_APPEND`), advancing it (or to the
    /// stream).
    pub fn write(&self, m: &mut dyn Machine, data: &[u8], now: u64) -> KResult<usize> {
        if !self.writable {
            return Err(Errno::EBADF);
        }
        if !self.object.seekable() {
            return self.object.write(m, data);
        }
        let mut s = self.state.lock();
        let off = if s.flags & O_APPEND != 0 {
            self.object.size()
        } else {
            s.offset
        };
        let n = self.object.write_at(m, data, off, now)?;
        if self.object.write_moves_offset() {
            s.offset = off + n as u64;
        }
        Ok(n)
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
            self.object.size()
        } else {
            off
        };
        self.object.write_at(m, data, off, now)
    }

    /// `lseek`: `whence` is `SEEK_SET` 0, `SEEK_CUR` 1, `SEEK_END` 2, `SEEK_DATA` 3,
    /// `SEEK_HOLE` 4 (see [`FileLike::seek`]).
    pub fn seek(&self, off: i64, whence: u32) -> KResult<u64> {
        let mut s = self.state.lock();
        let new = self.object.seek(s.offset, off, whence)?;
        s.offset = new;
        Ok(new)
    }

    /// The status `fstat` reports.
    pub fn stat(&self) -> Stat {
        self.object.stat()
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
        self.object.poll_events(self.access())
    }

    /// The object's wake-up identity and event counter, for files whose readiness changes.
    pub fn waitable(&self) -> Option<&Waitable> {
        self.object.waitable()
    }

    /// A counter that changes whenever the file's readiness may have changed (the edges of
    /// edge-triggered epoll). Files that never change report a constant.
    pub fn event_seq(&self) -> u64 {
        self.object.event_seq()
    }

    /// Whether only this process's own system calls can make the file ready (pipes,
    /// eventfds, files; not sockets, which the network can make ready).
    pub fn locally_driven(&self) -> bool {
        self.object.locally_driven()
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
#[derive(Debug)]
pub struct FdTable {
    slots: Vec<Option<Slot>>,
    /// New descriptors are below this (`RLIMIT_NOFILE`'s soft limit).
    limit: usize,
    /// Bumped whenever a descriptor is installed or closed (see [`FdTable::generation`]).
    generation: u64,
    /// The descriptors changed, one per generation after `log_start` (see
    /// [`FdTable::changes_since`]).
    log: Vec<u32>,
    /// The generation the log starts after.
    log_start: u64,
    /// `select` requests of threads waiting with a timeout, by thread id: their user copies
    /// were cleared (a timeout leaves them empty), and a rerun after a wake-up reads them
    /// from here.
    pub select_saved: crate::small::SmallMap<u32, [Vec<u8>; 3]>,
}

/// Validates a descriptor number.
fn index(fd: i32) -> KResult<usize> {
    usize::try_from(fd)
        .ok()
        .filter(|&i| i < NR_OPEN)
        .ok_or(Errno::EBADF)
}

impl Default for FdTable {
    fn default() -> FdTable {
        FdTable {
            slots: Vec::new(),
            limit: MAX_FDS,
            generation: 0,
            log: Vec::new(),
            log_start: 0,
            select_saved: Default::default(),
        }
    }
}

impl FdTable {
    /// An empty table.
    pub fn new() -> FdTable {
        FdTable::default()
    }

    /// Sets the number new descriptors stay below (`setrlimit(RLIMIT_NOFILE)`); open
    /// descriptors above it stay open, as on Linux.
    pub fn set_limit(&mut self, limit: u64) {
        self.limit = usize::try_from(limit).map_or(NR_OPEN, |l| l.min(NR_OPEN));
    }

    /// The number new descriptors stay below.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether no descriptor below the limit is free (the next open is `EMFILE`).
    pub fn is_full(&self) -> bool {
        self.slots.len() >= self.limit && self.slots[..self.limit].iter().all(Option::is_some)
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
                OpenFile::new(Arc::new(c), "/dev/console".into(), flags),
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
            .filter(|&m| m < self.limit)
            .ok_or(Errno::EINVAL)?;
        let free = (min..self.limit)
            .find(|&i| self.slots.get(i).is_none_or(|s| s.is_none()))
            .ok_or(Errno::EMFILE)?;
        if free >= self.slots.len() {
            self.slots.resize(free + 1, None);
        }
        self.slots[free] = Some(Slot { file, cloexec });
        self.note_change(free);
        Ok(free as i32)
    }

    /// Installs `file` at exactly `fd`, closing what was there (`dup2`); `EBADF` if out of
    /// range.
    pub fn install_at(&mut self, fd: i32, file: Arc<OpenFile>, cloexec: bool) -> KResult<()> {
        let i = index(fd).and_then(|i| {
            if i < self.limit {
                Ok(i)
            } else {
                Err(Errno::EBADF)
            }
        })?;
        if i >= self.slots.len() {
            self.slots.resize(i + 1, None);
        }
        self.slots[i] = Some(Slot { file, cloexec });
        self.note_change(i);
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
                self.note_change(i);
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

    /// Every open descriptor and its file, lowest first.
    pub fn open(&self) -> impl Iterator<Item = (i32, &Arc<OpenFile>)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i as i32, &s.as_ref()?.file)))
    }

    /// What descriptor `fd`'s file is, for `stats`: the socket's addresses, otherwise the
    /// path it was opened by.
    pub fn describe(file: &OpenFile) -> alloc::string::String {
        file.object.describe().unwrap_or_else(|| file.path.clone())
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
        let reader = Arc::new(PipeReader::new(p.clone()));
        let r = OpenFile::new(reader, name.clone(), O_RDONLY | status);
        let w = OpenFile::new(Arc::new(PipeWriter::new(p)), name, O_WRONLY | status);
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
        self.note_bulk_change();
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
        Ok(())
    }

    /// Closes every close-on-exec descriptor (for `execve`); returns their open files, for
    /// the caller to wake what waited on them.
    pub fn close_on_exec(&mut self) -> Vec<Arc<OpenFile>> {
        let mut closed = Vec::new();
        for slot in &mut self.slots {
            if slot.as_ref().is_some_and(|s| s.cloexec) {
                if let Some(s) = slot.take() {
                    closed.push(s.file);
                }
            }
        }
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
        self.note_bulk_change();
        closed
    }

    /// A counter that changes whenever the set of open descriptors may have changed
    /// (for caches such as `/proc/self/fd`).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The descriptors installed or closed since generation `gen` (some maybe more than
    /// once), or `None` when the table no longer knows (too long ago, or a bulk close):
    /// a cache then rebuilds from [`FdTable::open`].
    pub fn changes_since(&self, gen: u64) -> Option<&[u32]> {
        let from = usize::try_from(gen.checked_sub(self.log_start)?).ok()?;
        self.log.get(from..)
    }

    fn note_change(&mut self, fd: usize) {
        /// Changes kept: enough for a cache looked at every few calls.
        const LOG_MAX: usize = 256;
        if self.log.len() == LOG_MAX {
            self.log.clear();
            self.log_start = self.generation;
        }
        self.generation += 1;
        self.log.push(fd as u32);
    }

    fn note_bulk_change(&mut self) {
        self.generation += 1;
        self.log.clear();
        self.log_start = self.generation;
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

pub mod console;
pub mod epoll;
pub mod eventfd;
pub mod file;
#[cfg(feature = "net")]
pub mod netlink;
pub mod node;
pub mod pipe;
pub mod signalfd;
pub mod snapshot;
#[cfg(feature = "net")]
mod socket;
pub mod timerfd;
pub mod unix;
pub mod volume;

pub use console::Console;
pub use epoll::{Epoll, EpollEvent};
pub use eventfd::EventFd;
pub use file::{Access, FileLike};
pub use node::NodeFile;
pub use pipe::{Pipe, PipeReader, PipeWriter};
pub use snapshot::Snapshot;
pub use unix::{UnixKind, UnixName, UnixPort, UnixSocket};

#[cfg(test)]
mod tests;
