//! Metadata and names: the `utimensat`, `chmod` and `chown` families, `symlink`, `link`,
//! `statfs`, `fallocate` and `sync`.
//!
//! Metadata lives on `/tmp` and `/dev` nodes; the read-only root refuses changes with
//! `EROFS` (see [`crate::fs::check_setattr`]). Descriptors that are not nodes of the tree
//! (the console, pipes) have no metadata to change: `EPERM`.

use super::*;
use crate::fd::O_TMPFILE;
use crate::fs::p9::SetAttr;
use crate::fs::{check_setattr, FsId};

/// `utimensat`: set this time to the current time.
pub const UTIME_NOW: i64 = 0x3fff_ffff;
/// `utimensat`: leave this time alone.
pub const UTIME_OMIT: i64 = 0x3fff_fffe;
/// `linkat`: follow a final symbolic link of the old path.
pub const AT_SYMLINK_FOLLOW: u64 = 0x400;

/// `statfs` magic numbers.
pub const TMPFS_MAGIC: i64 = 0x0102_1994;
/// `/proc`.
pub const PROC_SUPER_MAGIC: i64 = 0x9fa0;
/// The read-only root (an in-memory file system, like Linux's ramfs-backed rootfs).
pub const RAMFS_MAGIC: i64 = 0x8584_58f6;
/// Pipes.
pub const PIPEFS_MAGIC: i64 = 0x5049_5045;
/// `statfs` flags.
pub const ST_RDONLY: i64 = 1;
/// Set-user-ID bits are ignored.
pub const ST_NOSUID: i64 = 2;
/// Device files cannot be opened.
pub const ST_NODEV: i64 = 4;
/// Programs cannot be executed.
pub const ST_NOEXEC: i64 = 8;
/// `f_flags` is valid.
pub const ST_VALID: i64 = 0x20;

/// The node behind a descriptor (`EPERM` for the console and pipes).
fn fd_node(f: &Arc<OpenFile>) -> KResult<Arc<Inode>> {
    f.inode().cloned().ok_or(Errno::EPERM)
}

/// The node a path call names: `dirfd` itself (or the working directory) for an empty path
/// with `AT_EMPTY_PATH`; `/proc/self/fd/N` links reach the open file.
fn node_at(
    p: &mut Process,
    m: &mut dyn Machine,
    dirfd: i32,
    path_addr: u64,
    flags: u64,
) -> KResult<Arc<Inode>> {
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
            return p.vfs.find("/", &p.cwd, true);
        }
        return fd_node(&p.files.get(dirfd)?);
    }
    let base = base(p, dirfd, &path)?;
    let follow = flags & AT_SYMLINK_NOFOLLOW == 0;
    if let Some(fd) = p.vfs.fd_link(&base, &path, follow)? {
        return fd_node(&p.files.get(fd)?);
    }
    p.vfs.find(&base, &path, follow)
}

// ----- times -----

/// One requested time: (seconds, nanoseconds or `UTIME_NOW`/`UTIME_OMIT`).
type Times = Option<[(i64, i64); 2]>;

fn valid_nsec(ns: i64) -> bool {
    ns == UTIME_NOW || ns == UTIME_OMIT || (0..1_000_000_000).contains(&ns)
}

/// Applies requested times (`None`: both now). Times before the epoch or past what 64-bit
/// nanoseconds hold cannot be stored: `EINVAL`.
fn apply_times(n: &Inode, times: Times, now: u64) -> KResult<i64> {
    check_setattr(n, false)?;
    let conv = |(sec, nsec): (i64, i64)| -> KResult<Option<u64>> {
        match nsec {
            UTIME_NOW => Ok(Some(now)),
            UTIME_OMIT => Ok(None),
            _ => u64::try_from(sec)
                .ok()
                .and_then(|s| s.checked_mul(1_000_000_000))
                .and_then(|t| t.checked_add(nsec as u64))
                .map(Some)
                .ok_or(Errno::EINVAL),
        }
    };
    let (a, mt) = match times {
        None => (Some(now), Some(now)),
        Some([a, b]) => (conv(a)?, conv(b)?),
    };
    if let Some(r) = n.remote() {
        let set = SetAttr {
            atime: a,
            mtime: mt,
            ..SetAttr::default()
        };
        r.setattr(set)?;
    } else {
        n.set_times(a, mt, now);
    }
    Ok(0)
}

/// Reads two `struct timespec` (`scale` 1) or `struct timeval` (`scale` 1000, microseconds
/// checked to be below a million) at `addr`.
fn read_times(p: &mut Process, m: &mut dyn Machine, addr: u64, scale: i64) -> KResult<Times> {
    if addr == 0 {
        return Ok(None);
    }
    let b = get::<32>(p, m, addr)?;
    let v = |i: usize| le_u64(&b[i * 8..]) as i64;
    let mut t = [(v(0), v(1)), (v(2), v(3))];
    if scale != 1 {
        for (_, sub) in &mut t {
            if !(0..1_000_000).contains(sub) {
                return Err(Errno::EINVAL);
            }
            *sub *= scale;
        }
    }
    Ok(Some(t))
}

/// `utimensat`, and the older calls through it (`utimes`, `futimesat`, `utime`): a null
/// path with a real `dirfd` changes the descriptor's file (flags must be 0).
fn utimes_at(
    p: &mut Process,
    m: &mut dyn Machine,
    dirfd: i32,
    path_addr: u64,
    times: Times,
    flags: u64,
) -> KResult<i64> {
    if let Some([(_, a), (_, b)]) = times {
        if !valid_nsec(a) || !valid_nsec(b) {
            return Err(Errno::EINVAL);
        }
        if a == UTIME_OMIT && b == UTIME_OMIT {
            // Nothing to do: Linux does not even look at the path.
            return Ok(0);
        }
    }
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let n = if path_addr == 0 && dirfd != AT_FDCWD {
        if flags != 0 {
            return Err(Errno::EINVAL);
        }
        fd_node(&io_file(p, dirfd)?)?
    } else {
        if path_addr == 0 {
            return Err(Errno::EFAULT);
        }
        node_at(p, m, dirfd, path_addr, flags)?
    };
    apply_times(&n, times, now(m))
}

pub(super) fn sys_utimensat(p: &mut Process, m: &mut dyn Machine, a: [u64; 6]) -> KResult<i64> {
    let times = read_times(p, m, a[2], 1)?;
    utimes_at(p, m, a[0] as i32, a[1], times, a[3])
}

pub(super) fn sys_futimesat(
    p: &mut Process,
    m: &mut dyn Machine,
    dirfd: i32,
    path_addr: u64,
    tv: u64,
) -> KResult<i64> {
    let times = read_times(p, m, tv, 1000)?;
    utimes_at(p, m, dirfd, path_addr, times, 0)
}

pub(super) fn sys_utime(
    p: &mut Process,
    m: &mut dyn Machine,
    path_addr: u64,
    buf: u64,
) -> KResult<i64> {
    let times = if buf == 0 {
        None
    } else {
        let b = get::<16>(p, m, buf)?;
        Some([(le_u64(&b) as i64, 0), (le_u64(&b[8..]) as i64, 0)])
    };
    utimes_at(p, m, AT_FDCWD, path_addr, times, 0)
}

// ----- mode and owner -----

pub(super) fn sys_chmod_at(
    p: &mut Process,
    m: &mut dyn Machine,
    dirfd: i32,
    path_addr: u64,
    mode: u64,
    flags: u64,
) -> KResult<i64> {
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let n = node_at(p, m, dirfd, path_addr, flags)?;
    if n.symlink_target().is_some() {
        // Linux cannot change a link's own mode.
        return Err(Errno::EOPNOTSUPP);
    }
    chmod_node(&n, mode as u32, now(m))
}

pub(super) fn sys_fchmod(p: &mut Process, m: &mut dyn Machine, fd: i32, mode: u64) -> KResult<i64> {
    let n = fd_node(&io_file(p, fd)?)?;
    chmod_node(&n, mode as u32, now(m))
}

/// `chmod` of a node: on a volume the host's file changes.
fn chmod_node(n: &Inode, mode: u32, now: u64) -> KResult<i64> {
    check_setattr(n, true)?;
    if let Some(r) = n.remote() {
        let set = SetAttr {
            mode: Some(mode & 0o7777),
            ..SetAttr::default()
        };
        r.setattr(set)?;
    } else {
        n.chmod(mode, now);
    }
    Ok(0)
}

fn owner(id: u64) -> Option<u32> {
    let id = id as u32;
    (id != u32::MAX).then_some(id)
}

fn chown_node(n: &Inode, uid: u64, gid: u64, now: u64) -> KResult<i64> {
    check_setattr(n, false)?;
    if n.remote().is_some() {
        // Volumes keep the host's owners (QEMU's `security_model=none`).
        return Err(Errno::EPERM);
    }
    n.chown(owner(uid), owner(gid), now);
    Ok(0)
}

pub(super) fn sys_chown_at(p: &mut Process, m: &mut dyn Machine, a: [u64; 6]) -> KResult<i64> {
    let flags = a[4];
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let n = node_at(p, m, a[0] as i32, a[1], flags)?;
    chown_node(&n, a[2], a[3], now(m))
}

pub(super) fn sys_fchown(p: &mut Process, m: &mut dyn Machine, a: [u64; 6]) -> KResult<i64> {
    let n = fd_node(&io_file(p, a[0] as i32)?)?;
    chown_node(&n, a[1], a[2], now(m))
}

// ----- links -----

pub(super) fn sys_symlink(
    p: &mut Process,
    m: &mut dyn Machine,
    target_addr: u64,
    dirfd: i32,
    path_addr: u64,
) -> KResult<i64> {
    let target = path(p, m, target_addr)?;
    let path = path(p, m, path_addr)?;
    let base = base(p, dirfd, &path)?;
    super::room_for_names(m)?;
    p.vfs.symlink(&target, &base, &path, now(m))?;
    Ok(0)
}

pub(super) fn sys_link(p: &mut Process, m: &mut dyn Machine, a: [u64; 6]) -> KResult<i64> {
    let (olddirfd, old_addr, newdirfd, new_addr, flags) =
        (a[0] as i32, a[1], a[2] as i32, a[3], a[4]);
    if flags & !(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    super::room_for_names(m)?;
    let old = path_or_empty(p, m, old_addr)?;
    let (node, relink) = if old.is_empty() {
        if flags & AT_EMPTY_PATH == 0 {
            return Err(Errno::ENOENT);
        }
        if olddirfd == AT_FDCWD {
            (p.vfs.find("/", &p.cwd, true)?, false)
        } else {
            let f = p.files.get(olddirfd)?;
            let tmpfile = f.status_flags() & O_TMPFILE & !crate::fd::O_DIRECTORY != 0;
            (fd_node(&f)?, tmpfile)
        }
    } else {
        let ob = base(p, olddirfd, &old)?;
        (
            p.vfs.find(&ob, &old, flags & AT_SYMLINK_FOLLOW != 0)?,
            false,
        )
    };
    let new = path(p, m, new_addr)?;
    let nb = base(p, newdirfd, &new)?;
    p.vfs.link(&node, &nb, &new, relink, now(m))?;
    Ok(0)
}

// ----- file systems -----

/// `f_type` of a 9p file system (Linux `V9FS_MAGIC`).
const V9FS_MAGIC: i64 = 0x0102_1997;

/// Encodes the x86_64 `struct statfs` (120 bytes) for a file system of `blocks` 4 KiB
/// blocks, `free` of them free.
pub fn statfs_bytes(fs: FsId, (blocks, free): (u64, u64)) -> [u8; 120] {
    let (magic, flags) = match fs {
        FsId::Root => (RAMFS_MAGIC, ST_RDONLY),
        FsId::Tmp => (TMPFS_MAGIC, ST_NOSUID | ST_NODEV | ST_NOEXEC),
        FsId::Dev => (TMPFS_MAGIC, ST_NOSUID),
        FsId::Proc => (PROC_SUPER_MAGIC, ST_NOSUID | ST_NODEV | ST_NOEXEC),
        FsId::Pipe => (PIPEFS_MAGIC, 0),
        FsId::Volume => (V9FS_MAGIC, ST_NOEXEC),
    };
    let mut b = [0u8; 120];
    b[0..8].copy_from_slice(&magic.to_le_bytes());
    b[8..16].copy_from_slice(&4096i64.to_le_bytes());
    b[16..24].copy_from_slice(&blocks.to_le_bytes());
    b[24..32].copy_from_slice(&free.to_le_bytes());
    b[32..40].copy_from_slice(&free.to_le_bytes());
    // Inodes (40..56): as many as memory holds, reported as 0 (no fixed number).
    b[56..60].copy_from_slice(&(fs as i32).to_le_bytes());
    b[64..72].copy_from_slice(&(crate::fs::NAME_MAX as i64).to_le_bytes());
    b[72..80].copy_from_slice(&4096i64.to_le_bytes());
    b[80..88].copy_from_slice(&(flags | ST_VALID).to_le_bytes());
    b
}

/// The `struct statfs` of a volume's node: the host file system's own figures (9P's
/// `Tstatfs`), as Linux's 9p client reports them; `None` for other nodes.
fn volume_statfs(node: &crate::fs::Inode) -> KResult<Option<[u8; 120]>> {
    let crate::fs::node::Body::Remote(r) = &node.body else {
        return Ok(None);
    };
    let f = r.statfs()?;
    let mut b = statfs_bytes(FsId::Volume, (f.blocks, f.bfree));
    let bsize = i64::from(f.bsize);
    b[8..16].copy_from_slice(&bsize.to_le_bytes());
    b[32..40].copy_from_slice(&f.bavail.to_le_bytes());
    b[40..48].copy_from_slice(&f.files.to_le_bytes());
    b[48..56].copy_from_slice(&f.ffree.to_le_bytes());
    b[64..72].copy_from_slice(&i64::from(f.namelen).to_le_bytes());
    b[72..80].copy_from_slice(&bsize.to_le_bytes());
    if r.vol.writable().is_err() {
        let flags = i64::from_le_bytes(b[80..88].try_into().unwrap_or_default()) | ST_RDONLY;
        b[80..88].copy_from_slice(&flags.to_le_bytes());
    }
    Ok(Some(b))
}

pub(super) fn sys_statfs(
    p: &mut Process,
    m: &mut dyn Machine,
    path_addr: u64,
    buf: u64,
) -> KResult<i64> {
    let path = path(p, m, path_addr)?;
    if let Some(fd) = p.vfs.fd_link(&p.cwd, &path, true)? {
        return fstatfs(p, m, &p.files.get(fd)?, buf);
    }
    let node = p.vfs.find(&p.cwd, &path, true)?;
    if let Some(b) = volume_statfs(&node)? {
        put(p, m, buf, &b)?;
        return Ok(0);
    }
    let size = fs_blocks(p, m, node.fs);
    put(p, m, buf, &statfs_bytes(node.fs, size))?;
    Ok(0)
}

fn fstatfs(p: &mut Process, m: &mut dyn Machine, f: &Arc<OpenFile>, buf: u64) -> KResult<i64> {
    if let Some(b) = f
        .object
        .inode()
        .map(|n| volume_statfs(n))
        .transpose()?
        .flatten()
    {
        put(p, m, buf, &b)?;
        return Ok(0);
    }
    let fs = file_fs(f);
    let size = fs_blocks(p, m, fs);
    put(p, m, buf, &statfs_bytes(fs, size))?;
    Ok(0)
}

/// The size of a file system in 4 KiB blocks, and its free blocks: the root filesystem is
/// the image's archive and full; `/tmp` may use half the RAM, as Linux's tmpfs by default,
/// as far as RAM is free; the others hold no data.
fn fs_blocks(p: &Process, m: &dyn Machine, fs: FsId) -> (u64, u64) {
    match fs {
        FsId::Root => (p.vfs.root_bytes().div_ceil(4096), 0),
        FsId::Tmp => {
            let (total, free) = m.ram();
            let blocks = total / 2 / 4096;
            (blocks, (free / 4096).min(blocks))
        }
        _ => (0, 0),
    }
}

fn file_fs(f: &Arc<OpenFile>) -> FsId {
    f.object.fs()
}

pub(super) fn sys_fstatfs(p: &mut Process, m: &mut dyn Machine, fd: i32, buf: u64) -> KResult<i64> {
    let f = p.files.get(fd)?;
    fstatfs(p, m, &f, buf)
}

/// `fallocate`: mode 0 only (others `EOPNOTSUPP`) on `/tmp` files.
pub(super) fn sys_fallocate(
    p: &mut Process,
    m: &mut dyn Machine,
    fd: i32,
    mode: u64,
    off: i64,
    len: i64,
) -> KResult<i64> {
    let f = io_file(p, fd)?;
    if off < 0 || len <= 0 {
        return Err(Errno::EINVAL);
    }
    if mode != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    if !f.writable() {
        return Err(Errno::EBADF);
    }
    let Some(n) = f.inode() else {
        return Err(if f.pipe().is_some() {
            Errno::ESPIPE
        } else {
            Errno::ENODEV
        });
    };
    if n.is_dir() {
        return Err(Errno::EISDIR);
    }
    if !n.is_regular() {
        return Err(Errno::ENODEV);
    }
    // A /tmp file's pages are kernel memory: taken a piece at a time, none once memory is
    // down to the reserve (ENOSPC, a full tmpfs; the pieces taken stay, as on Linux).
    const PIECE: u64 = 256 * 1024;
    let (off, end) = (off as u64, (off as u64).saturating_add(len as u64));
    let mut at = off;
    while at < end {
        let n_bytes = (end - at).min(PIECE);
        if n.write_needs_memory(at, n_bytes) && m.pages().memory_low() {
            return Err(Errno::ENOSPC);
        }
        n.allocate(at, n_bytes, now(m))?;
        at += n_bytes;
    }
    Ok(0)
}

/// Which extended-attribute call (`getxattr` ... `removexattr` and their `l`/`f` forms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Xattr {
    /// `*getxattr`.
    Get,
    /// `*listxattr`.
    List,
    /// `*setxattr`.
    Set,
    /// `*removexattr`.
    Remove,
}

/// The extended-attribute calls. Kiln's file systems keep no extended attributes: a file has
/// none (`getxattr` and `removexattr` fail with `ENODATA`, as for a name a file lacks on Linux,
/// and `listxattr` gives an empty list), and none can be set (`EROFS` on the read-only root,
/// `EOPNOTSUPP` elsewhere). So `ls -l` and SELinux-aware programs see files without labels.
/// `by` is the path (`follow` for `getxattr`, not for `lgetxattr`) or, when `fd` is given,
/// the descriptor of the `f` form.
pub(super) fn sys_xattr(
    p: &mut Process,
    m: &mut dyn Machine,
    what: Xattr,
    fd: Option<i32>,
    path_addr: u64,
    follow: bool,
) -> KResult<i64> {
    let n = match fd {
        Some(fd) => fd_node(&io_file(p, fd)?)?,
        None => node_at(
            p,
            m,
            AT_FDCWD,
            path_addr,
            if follow { 0 } else { AT_SYMLINK_NOFOLLOW },
        )?,
    };
    match what {
        Xattr::Get => Err(Errno::ENODATA),
        Xattr::List => Ok(0),
        Xattr::Set | Xattr::Remove => {
            check_setattr(&n, false)?;
            Err(if what == Xattr::Set {
                Errno::EOPNOTSUPP
            } else {
                Errno::ENODATA
            })
        }
    }
}
