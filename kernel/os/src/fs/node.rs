//! File-system nodes (inodes) and their status (`struct stat`, `struct statx`).

use alloc::string::String;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;

use super::filedata::FileData;
use super::p9::SetAttr;
use super::volume::{Remote, RemoteKind};
use crate::errno::{Errno, KResult};

/// File type bits of `st_mode`.
pub const S_IFMT: u32 = 0o170000;
/// Directory.
pub const S_IFDIR: u32 = 0o040000;
/// Regular file.
pub const S_IFREG: u32 = 0o100000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120000;
/// Character device.
pub const S_IFCHR: u32 = 0o020000;
/// FIFO (pipe).
pub const S_IFIFO: u32 = 0o010000;

/// Preferred I/O size reported in `st_blksize`.
pub const BLKSIZE: u64 = 4096;

static NEXT_INO: AtomicU64 = AtomicU64::new(2);

/// A fresh inode number, unique for the kernel's lifetime (shared by files and pipes).
pub fn alloc_ino() -> u64 {
    NEXT_INO.fetch_add(1, Ordering::Relaxed)
}

/// Which file system a node belongs to (it decides `EROFS` and `EXDEV`, and is `st_dev`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsId {
    /// The read-only root from the image's tar archive.
    Root = 1,
    /// The writable in-memory file system at `/tmp`.
    Tmp = 2,
    /// The device directory `/dev`.
    Dev = 3,
    /// The process information directory `/proc`.
    Proc = 4,
    /// Pipes (never in the tree).
    Pipe = 5,
    /// A host directory mounted with virtio-9p (`st_dev` tells volumes apart).
    Volume = 6,
}

/// The character devices under `/dev`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// `/dev/null`: reads end at once, writes vanish.
    Null,
    /// `/dev/zero`: reads give zeros, writes vanish.
    Zero,
    /// `/dev/random`: random bytes.
    Random,
    /// `/dev/urandom`: random bytes.
    URandom,
    /// `/dev/full`: reads give zeros, writes fail with `ENOSPC`.
    Full,
}

impl Device {
    /// Linux major and minor numbers.
    pub fn rdev(self) -> (u32, u32) {
        match self {
            Device::Null => (1, 3),
            Device::Zero => (1, 5),
            Device::Random => (1, 8),
            Device::URandom => (1, 9),
            Device::Full => (1, 7),
        }
    }
}

/// A directory's entries by name: a sorted `Vec` (see [`crate::small`] for the cost).
pub type DirMap = crate::small::SmallMap<String, alloc::sync::Arc<Inode>>;

/// What a node holds.
#[derive(Debug)]
pub enum Body {
    /// A directory.
    Dir(Mutex<DirMap>),
    /// A read-only file whose bytes live in the root filesystem archive.
    StaticFile(&'static [u8]),
    /// A writable in-memory file (`/tmp`), in pages.
    MemFile(Mutex<FileData>),
    /// A symbolic link and its target.
    Symlink(String),
    /// A character device.
    Device(Device),
    /// A text file of `/proc`: its text is made when it is opened.
    Proc(crate::procfs::ProcFile),
    /// A node of a host directory (virtio-9p); its status comes from the host.
    Remote(super::volume::Remote),
}

/// Mutable metadata of a node.
#[derive(Debug, Clone, Copy)]
struct Meta {
    perm: u32,
    uid: u32,
    gid: u32,
    /// Link count of non-directories; for directories 0 means removed, 1 present.
    links: u32,
    atime: u64,
    mtime: u64,
    ctime: u64,
    /// `F_SEAL_*` bits of a `/tmp` file (see [`Inode::add_seals`]).
    seals: u32,
}

/// No more seals may be added.
pub const F_SEAL_SEAL: u32 = 1;
/// The file may not shrink.
pub const F_SEAL_SHRINK: u32 = 2;
/// The file may not grow.
pub const F_SEAL_GROW: u32 = 4;
/// The file's bytes may not change (no writable shared mapping may exist).
pub const F_SEAL_WRITE: u32 = 8;
/// The file's bytes may not change through new writes or mappings.
pub const F_SEAL_FUTURE_WRITE: u32 = 16;
const F_SEAL_ALL: u32 =
    F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE;

/// A node of the tree. Shared (`Arc`) between directories and open files, so an unlinked
/// file stays readable through descriptors that still hold it.
#[derive(Debug)]
pub struct Inode {
    /// Inode number (stable for the node's life).
    pub ino: u64,
    /// The file system it belongs to.
    pub fs: FsId,
    /// Its contents.
    pub body: Body,
    meta: Mutex<Meta>,
}

/// A node's status, as `stat` reports it. Times are nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stat {
    /// Device of the file system: (major, minor).
    pub dev: (u32, u32),
    /// Inode number.
    pub ino: u64,
    /// Type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Number of hard links.
    pub nlink: u64,
    /// Device number of a device node: (major, minor).
    pub rdev: (u32, u32),
    /// Size in bytes.
    pub size: u64,
    /// Preferred I/O size.
    pub blksize: u64,
    /// Allocated 512-byte blocks.
    pub blocks: u64,
    /// Last access.
    pub atime: u64,
    /// Last modification.
    pub mtime: u64,
    /// Last status change.
    pub ctime: u64,
}

fn put(buf: &mut [u8], off: usize, bytes: &[u8]) {
    buf[off..off + bytes.len()].copy_from_slice(bytes);
}

/// Linux's user-visible encoding of a device number.
fn encode_dev((major, minor): (u32, u32)) -> u64 {
    let (ma, mi) = (u64::from(major), u64::from(minor));
    ((ma & 0xfffff000) << 32) | ((ma & 0xfff) << 8) | ((mi & 0xffffff00) << 12) | (mi & 0xff)
}

impl Stat {
    /// Size of the x86_64 `struct stat`.
    pub const LINUX_SIZE: usize = 144;
    /// Size of `struct statx`.
    pub const STATX_SIZE: usize = 256;
    /// The `STATX_BASIC_STATS` fields this kernel fills in.
    pub const STATX_BASIC: u32 = 0x7ff;

    /// Encodes the x86_64 `struct stat` (144 bytes).
    pub fn to_linux(&self) -> [u8; Self::LINUX_SIZE] {
        let mut b = [0u8; Self::LINUX_SIZE];
        put(&mut b, 0, &encode_dev(self.dev).to_le_bytes());
        put(&mut b, 8, &self.ino.to_le_bytes());
        put(&mut b, 16, &self.nlink.to_le_bytes());
        put(&mut b, 24, &self.mode.to_le_bytes());
        put(&mut b, 28, &self.uid.to_le_bytes());
        put(&mut b, 32, &self.gid.to_le_bytes());
        put(&mut b, 40, &encode_dev(self.rdev).to_le_bytes());
        put(&mut b, 48, &self.size.to_le_bytes());
        put(&mut b, 56, &self.blksize.to_le_bytes());
        put(&mut b, 64, &self.blocks.to_le_bytes());
        for (off, t) in [(72, self.atime), (88, self.mtime), (104, self.ctime)] {
            put(&mut b, off, &(t / 1_000_000_000).to_le_bytes());
            put(&mut b, off + 8, &(t % 1_000_000_000).to_le_bytes());
        }
        b
    }

    /// Encodes `struct statx` (256 bytes) with the basic fields.
    pub fn to_statx(&self) -> [u8; Self::STATX_SIZE] {
        let mut b = [0u8; Self::STATX_SIZE];
        put(&mut b, 0, &Self::STATX_BASIC.to_le_bytes());
        put(&mut b, 4, &(self.blksize as u32).to_le_bytes());
        put(&mut b, 16, &(self.nlink as u32).to_le_bytes());
        put(&mut b, 20, &self.uid.to_le_bytes());
        put(&mut b, 24, &self.gid.to_le_bytes());
        put(&mut b, 28, &(self.mode as u16).to_le_bytes());
        put(&mut b, 32, &self.ino.to_le_bytes());
        put(&mut b, 40, &self.size.to_le_bytes());
        put(&mut b, 48, &self.blocks.to_le_bytes());
        // atime @64, btime @80 (not reported), ctime @96, mtime @112.
        for (off, t) in [(64, self.atime), (96, self.ctime), (112, self.mtime)] {
            put(&mut b, off, &(t / 1_000_000_000).to_le_bytes());
            put(&mut b, off + 8, &((t % 1_000_000_000) as u32).to_le_bytes());
        }
        put(&mut b, 128, &self.rdev.0.to_le_bytes());
        put(&mut b, 132, &self.rdev.1.to_le_bytes());
        put(&mut b, 136, &self.dev.0.to_le_bytes());
        put(&mut b, 140, &self.dev.1.to_le_bytes());
        b
    }
}

impl Inode {
    /// A new node with a fresh inode number; `now` sets all three times.
    pub fn new(fs: FsId, body: Body, perm: u32, now: u64) -> Inode {
        Inode {
            ino: alloc_ino(),
            fs,
            body,
            meta: Mutex::new(Meta {
                perm: perm & 0o7777,
                uid: 0,
                gid: 0,
                links: 1,
                atime: now,
                mtime: now,
                ctime: now,
                // As Linux's tmpfs: only `memfd_create(MFD_ALLOW_SEALING)` files take seals.
                seals: F_SEAL_SEAL,
            }),
        }
    }

    /// The file's seals (`F_GET_SEALS`); `EINVAL` for files that are not `/tmp` files.
    pub fn seals(&self) -> KResult<u32> {
        match self.body {
            Body::MemFile(_) => Ok(self.meta.lock().seals),
            _ => Err(Errno::EINVAL),
        }
    }

    /// Sets the seals outright (a new `memfd_create` file that allows sealing: none).
    pub fn set_seals(&self, seals: u32) {
        self.meta.lock().seals = seals;
    }

    /// Adds seals (`F_ADD_SEALS`): `EINVAL` for unknown bits or other files, `EPERM` once
    /// `F_SEAL_SEAL` is set.
    pub fn add_seals(&self, more: u32) -> KResult<()> {
        if more & !F_SEAL_ALL != 0 {
            return Err(Errno::EINVAL);
        }
        let cur = self.seals()?;
        if cur & F_SEAL_SEAL != 0 {
            return Err(Errno::EPERM);
        }
        self.meta.lock().seals = cur | more;
        Ok(())
    }

    /// A node of a volume, with the host's inode number.
    pub fn with_ino(ino: u64, fs: FsId, body: Body) -> Inode {
        let mut n = Inode::new(fs, body, 0, 0);
        n.ino = ino;
        n
    }

    /// The remote node behind a volume's node.
    pub fn remote(&self) -> Option<&super::volume::Remote> {
        match &self.body {
            Body::Remote(r) => Some(r),
            _ => None,
        }
    }

    /// The file-type bits of `st_mode`.
    pub fn type_bits(&self) -> u32 {
        match self.body {
            Body::Remote(ref r) => match r.kind {
                RemoteKind::Dir => S_IFDIR,
                RemoteKind::File => S_IFREG,
                RemoteKind::Symlink(_) => S_IFLNK,
            },
            Body::Dir(_) => S_IFDIR,
            Body::StaticFile(_) | Body::MemFile(_) | Body::Proc(_) => S_IFREG,
            Body::Symlink(_) => S_IFLNK,
            Body::Device(_) => S_IFCHR,
        }
    }

    /// The `d_type` of a directory entry for this node.
    pub fn dtype(&self) -> u8 {
        match self.body {
            Body::Remote(_) => ((self.type_bits() >> 12) & 0xf) as u8,
            Body::Dir(_) => 4,
            Body::StaticFile(_) | Body::MemFile(_) | Body::Proc(_) => 8,
            Body::Symlink(_) => 10,
            Body::Device(_) => 2,
        }
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.type_bits() == S_IFDIR
    }

    /// Whether this is a `/tmp` file (its bytes in kernel memory, writable).
    pub fn is_mem_file(&self) -> bool {
        matches!(self.body, Body::MemFile(_))
    }

    /// Whether shared mappings of this file are kept coherent with it (`/tmp` files and
    /// the files of volumes: `crate::syscall::mm::shared`).
    pub fn maps_shared(&self) -> bool {
        match &self.body {
            Body::MemFile(_) => true,
            Body::Remote(r) => r.kind == RemoteKind::File,
            _ => false,
        }
    }

    /// Whether this is a regular file.
    pub fn is_regular(&self) -> bool {
        self.type_bits() == S_IFREG
    }

    /// The directory's entries, if this is a directory.
    pub fn dir(&self) -> Option<&Mutex<DirMap>> {
        match &self.body {
            Body::Dir(d) => Some(d),
            _ => None,
        }
    }

    /// The target of a symbolic link.
    pub fn symlink_target(&self) -> Option<&str> {
        match &self.body {
            Body::Symlink(t) => Some(t),
            Body::Remote(Remote {
                kind: RemoteKind::Symlink(t),
                ..
            }) => Some(t),
            _ => None,
        }
    }

    /// Permission bits.
    pub fn perm(&self) -> u32 {
        if let Some(Ok(a)) = self.remote().map(Remote::attr) {
            return a.mode & 0o7777;
        }
        self.meta.lock().perm
    }

    /// Sets the permission bits.
    pub fn set_perm(&self, perm: u32) {
        self.meta.lock().perm = perm & 0o7777;
    }

    /// `chmod`: sets the permission bits and the status-change time.
    pub fn chmod(&self, perm: u32, now: u64) {
        let mut m = self.meta.lock();
        m.perm = perm & 0o7777;
        m.ctime = now;
    }

    /// `chown`: sets the owner and/or group (`None` keeps them) and the status-change time.
    /// As on Linux (even for root), a non-directory loses its set-user-ID bit, and its
    /// set-group-ID bit when group-executable.
    pub fn chown(&self, uid: Option<u32>, gid: Option<u32>, now: u64) {
        let is_dir = self.is_dir();
        let mut m = self.meta.lock();
        if let Some(u) = uid {
            m.uid = u;
        }
        if let Some(g) = gid {
            m.gid = g;
        }
        if !is_dir {
            m.perm &= !0o4000;
            if m.perm & 0o010 != 0 {
                m.perm &= !0o2000;
            }
        }
        m.ctime = now;
    }

    /// Sets the access and/or modification time (`None` keeps it); the status-change time
    /// becomes `now`.
    pub fn set_times(&self, atime: Option<u64>, mtime: Option<u64>, now: u64) {
        let mut m = self.meta.lock();
        if let Some(a) = atime {
            m.atime = a;
        }
        if let Some(t) = mtime {
            m.mtime = t;
        }
        m.ctime = now;
    }

    /// `fallocate` mode 0 on a `/tmp` file: makes `[off, off + len)` part of the file,
    /// growing it with zeros (never shrinking). `EFBIG` past the largest offset, `ENOSPC`
    /// when memory runs out, `EROFS` for other files.
    pub fn allocate(&self, off: u64, len: u64, now: u64) -> KResult<()> {
        if self.remote().is_some() {
            return Err(Errno::EOPNOTSUPP);
        }
        let Body::MemFile(d) = &self.body else {
            return Err(Errno::EROFS);
        };
        let end = off
            .checked_add(len)
            .filter(|&e| e <= i64::MAX as u64)
            .ok_or(Errno::EFBIG)?;
        let end = usize::try_from(end).map_err(|_| Errno::EFBIG)?;
        let grew = end as u64 > d.lock().len();
        d.lock().allocate(off, len)?;
        if grew {
            self.touch(now);
        }
        Ok(())
    }

    /// Whether writing `len` bytes at `off` would take memory (a `/tmp` file's page there is
    /// a hole, or the write grows the file).
    pub fn write_needs_memory(&self, off: u64, len: u64) -> bool {
        match &self.body {
            Body::MemFile(d) => d.lock().needs_pages(off, len),
            _ => false,
        }
    }

    /// Size in bytes (a symlink's is its target's length; devices and `/proc` files are 0).
    pub fn size(&self) -> u64 {
        match &self.body {
            Body::StaticFile(d) => d.len() as u64,
            Body::MemFile(d) => d.lock().len(),
            Body::Symlink(t) => t.len() as u64,
            Body::Dir(_) => BLKSIZE,
            Body::Device(_) | Body::Proc(_) => 0,
            Body::Remote(r) => r.attr().map_or(0, |a| a.size),
        }
    }

    /// The link count as `st_nlink` shows it (directories: 2 plus subdirectories).
    pub fn nlink(&self) -> u64 {
        let links = self.meta.lock().links;
        match &self.body {
            Body::Dir(d) if links > 0 => {
                2 + d.lock().values().filter(|n| n.is_dir()).count() as u64
            }
            _ => u64::from(links),
        }
    }

    /// Adds one hard link.
    pub fn link(&self) {
        self.meta.lock().links += 1;
    }

    /// Drops one hard link (a removed directory drops to 0).
    pub fn unlink(&self, now: u64) {
        let mut m = self.meta.lock();
        m.links = m.links.saturating_sub(1);
        m.ctime = now;
    }

    /// Whether the node was removed from the tree (an unlinked file or removed directory).
    pub fn removed(&self) -> bool {
        self.meta.lock().links == 0
    }

    /// Marks a modification (mtime and ctime).
    pub fn touch(&self, now: u64) {
        let mut m = self.meta.lock();
        m.mtime = now;
        m.ctime = now;
    }

    /// Marks a status change (ctime).
    pub fn touch_ctime(&self, now: u64) {
        self.meta.lock().ctime = now;
    }

    /// The node's status.
    pub fn stat(&self) -> Stat {
        if let Some(r) = self.remote() {
            let a = r.attr().unwrap_or_default();
            return Stat {
                dev: (0, 16 + r.vol.index),
                ino: self.ino,
                mode: self.type_bits() | (a.mode & 0o7777),
                uid: a.uid,
                gid: a.gid,
                nlink: a.nlink,
                rdev: (0, 0),
                size: a.size,
                blksize: BLKSIZE,
                blocks: a.blocks,
                atime: a.atime,
                mtime: a.mtime,
                ctime: a.ctime,
            };
        }
        let m = *self.meta.lock();
        let size = self.size();
        let rdev = match self.body {
            Body::Device(d) => d.rdev(),
            _ => (0, 0),
        };
        let blocks = match self.body {
            Body::StaticFile(_) | Body::Dir(_) => size.div_ceil(BLKSIZE) * 8,
            // Pages written or allocated, 512-byte blocks each 4 KiB page (holes take none).
            Body::MemFile(ref d) => d.lock().pages_in_use() * 8,
            _ => 0,
        };
        Stat {
            dev: (0, self.fs as u32),
            ino: self.ino,
            mode: self.type_bits() | m.perm,
            uid: m.uid,
            gid: m.gid,
            nlink: self.nlink(),
            rdev,
            size,
            blksize: BLKSIZE,
            blocks,
            atime: m.atime,
            mtime: m.mtime,
            ctime: m.ctime,
        }
    }

    /// Reads file bytes at `off` into `buf`; returns how many (0 at or past the end).
    /// Only for regular files with contents.
    pub fn read_at(&self, off: u64, buf: &mut [u8]) -> usize {
        fn copy(data: &[u8], off: u64, buf: &mut [u8]) -> usize {
            let Ok(off) = usize::try_from(off) else {
                return 0;
            };
            if off >= data.len() {
                return 0;
            }
            let n = buf.len().min(data.len() - off);
            buf[..n].copy_from_slice(&data[off..off + n]);
            n
        }
        match &self.body {
            Body::StaticFile(d) => copy(d, off, buf),
            Body::MemFile(d) => d.lock().read(off, buf),
            Body::Remote(r) if r.kind == RemoteKind::File => r.read_once(off, buf).unwrap_or(0),
            _ => 0,
        }
    }

    /// Writes `data` at `off` into a `/tmp` file, growing it (with zeros) as needed.
    /// `EFBIG` past the largest offset, `ENOSPC` when memory runs out, `EROFS` for other files.
    pub fn write_at(&self, off: u64, data: &[u8], now: u64) -> KResult<usize> {
        if self.meta.lock().seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE) != 0 {
            return Err(Errno::EPERM);
        }
        self.write_mapped(off, data, now)
    }

    /// [`write_at`](Self::write_at) for the bytes a shared mapping wrote, which
    /// `F_SEAL_FUTURE_WRITE` does not stop (it came after the mapping).
    pub fn write_mapped(&self, off: u64, data: &[u8], now: u64) -> KResult<usize> {
        let d = match &self.body {
            Body::MemFile(d) => d,
            Body::Remote(r) if r.kind == RemoteKind::File => return r.write_once(off, data),
            _ => return Err(Errno::EROFS),
        };
        if data.is_empty() {
            return Ok(0);
        }
        let end = off
            .checked_add(data.len() as u64)
            .filter(|&e| e <= i64::MAX as u64)
            .ok_or(Errno::EFBIG)?;
        let mut v = d.lock();
        if end > v.len() && self.meta.lock().seals & F_SEAL_GROW != 0 {
            return Err(Errno::EPERM);
        }
        let r = v.write(off, data);
        drop(v);
        self.touch(now);
        r.map(|()| data.len())
    }

    /// Sets the length of a `/tmp` file (zero-filling when it grows).
    pub fn truncate(&self, len: u64, now: u64) -> KResult<()> {
        if let Some(r) = self.remote() {
            if len > i64::MAX as u64 {
                return Err(Errno::EFBIG);
            }
            let set = SetAttr {
                size: Some(len),
                ..SetAttr::default()
            };
            return r.setattr(set);
        }
        let Body::MemFile(d) = &self.body else {
            return Err(Errno::EROFS);
        };
        if len > i64::MAX as u64 {
            return Err(Errno::EFBIG);
        }
        let mut v = d.lock();
        let seals = self.meta.lock().seals;
        if (len > v.len() && seals & F_SEAL_GROW != 0)
            || (len < v.len() && seals & F_SEAL_SHRINK != 0)
        {
            return Err(Errno::EPERM);
        }
        // Growing adds a hole: no memory is taken until bytes are written there.
        v.set_len(len);
        drop(v);
        self.touch(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_layout() {
        let s = Stat {
            dev: (0, 2),
            ino: 77,
            mode: S_IFREG | 0o644,
            uid: 1000,
            gid: 100,
            nlink: 1,
            rdev: (1, 3),
            size: 5000,
            blksize: 4096,
            blocks: 16,
            atime: 1_500_000_000,
            mtime: 2_000_000_001,
            ctime: 3,
        };
        let b = s.to_linux();
        let u64at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        assert_eq!(u64at(0), 2);
        assert_eq!(u64at(8), 77);
        assert_eq!(u64at(16), 1);
        assert_eq!(u32::from_le_bytes(b[24..28].try_into().unwrap()), 0o100644);
        assert_eq!(u32::from_le_bytes(b[28..32].try_into().unwrap()), 1000);
        assert_eq!(u32::from_le_bytes(b[32..36].try_into().unwrap()), 100);
        assert_eq!(u64at(40), 0x103);
        assert_eq!(u64at(48), 5000);
        assert_eq!(u64at(56), 4096);
        assert_eq!(u64at(64), 16);
        assert_eq!((u64at(72), u64at(80)), (1, 500_000_000));
        assert_eq!((u64at(88), u64at(96)), (2, 1));
        assert_eq!((u64at(104), u64at(112)), (0, 3));

        let x = s.to_statx();
        let u32at = |o: usize| u32::from_le_bytes(x[o..o + 4].try_into().unwrap());
        let x64 = |o: usize| u64::from_le_bytes(x[o..o + 8].try_into().unwrap());
        assert_eq!(u32at(0), 0x7ff);
        assert_eq!(u32at(4), 4096);
        assert_eq!(u32at(16), 1);
        assert_eq!((u32at(20), u32at(24)), (1000, 100));
        assert_eq!(u16::from_le_bytes([x[28], x[29]]), 0o100644);
        assert_eq!(x64(32), 77);
        assert_eq!(x64(40), 5000);
        assert_eq!(x64(48), 16);
        assert_eq!((x64(64), u32at(72)), (1, 500_000_000));
        assert_eq!((x64(112), u32at(120)), (2, 1));
        assert_eq!((u32at(128), u32at(132)), (1, 3));
        assert_eq!((u32at(136), u32at(140)), (0, 2));
    }

    #[test]
    fn memfile_write_read_truncate() {
        let n = Inode::new(
            FsId::Tmp,
            Body::MemFile(Mutex::new(FileData::new())),
            0o644,
            5,
        );
        assert_eq!(n.write_at(3, b"abc", 9), Ok(3));
        let mut buf = [9u8; 10];
        assert_eq!(n.read_at(0, &mut buf), 6);
        assert_eq!(&buf[..6], b"\0\0\0abc");
        assert_eq!(n.read_at(6, &mut buf), 0);
        assert_eq!(n.read_at(u64::MAX, &mut buf), 0);
        assert_eq!(n.stat().mtime, 9);
        n.truncate(2, 10).unwrap();
        assert_eq!(n.size(), 2);
        n.truncate(4, 10).unwrap();
        assert_eq!(n.read_at(0, &mut buf), 4);
        assert_eq!(&buf[..4], b"\0\0\0\0");
        assert_eq!(n.write_at(i64::MAX as u64, b"x", 1), Err(Errno::EFBIG));
        assert_eq!(n.truncate(u64::MAX, 1), Err(Errno::EFBIG));
        // A sparse length takes no memory, as on Linux's tmpfs; a byte written out there
        // would need a page table the machine cannot give.
        assert_eq!(n.truncate(1 << 60, 1), Ok(()));
        assert_eq!((n.size(), n.stat().blocks), (1 << 60, 8));
        assert_eq!(n.write_at(1 << 60, b"x", 1), Err(Errno::ENOSPC));
        let s = Inode::new(FsId::Root, Body::StaticFile(b"ro"), 0o644, 0);
        assert_eq!(s.write_at(0, b"x", 1), Err(Errno::EROFS));
        assert_eq!(s.truncate(0, 1), Err(Errno::EROFS));
    }

    #[test]
    fn metadata_changes() {
        let n = Inode::new(
            FsId::Tmp,
            Body::MemFile(Mutex::new(FileData::new())),
            0o6755,
            1,
        );
        n.chmod(0o17777, 2);
        assert_eq!(n.stat().mode, S_IFREG | 0o7777);
        assert_eq!(n.stat().ctime, 2);
        n.chown(Some(5), None, 3);
        let st = n.stat();
        assert_eq!(
            (st.uid, st.gid, st.mode, st.ctime),
            (5, 0, S_IFREG | 0o1777, 3)
        );
        n.chmod(0o2745, 3);
        n.chown(None, Some(7), 4);
        // Not group-executable: set-group-ID stays (mandatory locking marker).
        assert_eq!((n.stat().gid, n.stat().mode), (7, S_IFREG | 0o2745));
        let d = Inode::new(FsId::Tmp, Body::Dir(Mutex::new(DirMap::new())), 0o6755, 1);
        d.chown(Some(1), Some(1), 2);
        assert_eq!(d.stat().mode, S_IFDIR | 0o6755);
        n.set_times(Some(10), None, 11);
        let st = n.stat();
        assert_eq!((st.atime, st.mtime, st.ctime), (10, 1, 11));
        n.set_times(None, Some(12), 13);
        let st = n.stat();
        assert_eq!((st.atime, st.mtime, st.ctime), (10, 12, 13));
        n.allocate(2, 3, 20).unwrap();
        assert_eq!((n.size(), n.stat().mtime), (5, 20));
        n.allocate(0, 1, 21).unwrap();
        assert_eq!((n.size(), n.stat().mtime), (5, 20));
        assert_eq!(n.allocate(i64::MAX as u64, 1, 1), Err(Errno::EFBIG));
        assert_eq!(n.allocate(1 << 60, 1, 1), Err(Errno::ENOSPC));
        let s = Inode::new(FsId::Root, Body::StaticFile(b"ro"), 0o644, 0);
        assert_eq!(s.allocate(0, 1, 1), Err(Errno::EROFS));
    }

    #[test]
    fn inode_numbers_are_unique() {
        let a = Inode::new(FsId::Tmp, Body::Symlink("x".into()), 0o777, 0);
        let b = Inode::new(FsId::Tmp, Body::Symlink("x".into()), 0o777, 0);
        assert_ne!(a.ino, b.ino);
        assert_eq!(a.size(), 1);
        assert_eq!(a.stat().mode, S_IFLNK | 0o777);
    }
}
