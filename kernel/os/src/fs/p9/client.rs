//! A 9P2000.L client over any [`Transport`]: one request at a time, fids numbered by the
//! client and recycled when clunked.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::wire::{Qid, Reader, Writer};
use crate::errno::{Errno, KResult};

/// Where 9P messages go: one request, one reply (a virtio-9p device).
pub trait Transport: Send {
    /// Sends `req` and waits for the reply in `resp`; the reply's length (`None`: the
    /// device failed).
    fn request(&mut self, req: &[u8], resp: &mut [u8]) -> Option<usize>;
}

/// The largest message the client proposes.
pub const MSIZE: u32 = 128 * 1024;
/// Bytes of a `Rread` before its data (size, type, tag, count).
const READ_HEADER: u32 = 11;
/// Bytes of a `Twrite` before its data (size, type, tag, fid, offset, count).
const WRITE_HEADER: u32 = 23;
/// The tag of every request but `Tversion`.
const TAG: u16 = 1;
/// The fid of the attached root.
pub const ROOT_FID: u32 = 0;

mod t {
    pub const LERROR: u8 = 7;
    pub const STATFS: u8 = 8;
    pub const LOPEN: u8 = 12;
    pub const LCREATE: u8 = 14;
    pub const SYMLINK: u8 = 16;
    pub const READLINK: u8 = 22;
    pub const GETATTR: u8 = 24;
    pub const SETATTR: u8 = 26;
    pub const READDIR: u8 = 40;
    pub const FSYNC: u8 = 50;
    pub const MKDIR: u8 = 72;
    pub const RENAMEAT: u8 = 74;
    pub const UNLINKAT: u8 = 76;
    pub const VERSION: u8 = 100;
    pub const ATTACH: u8 = 104;
    pub const WALK: u8 = 110;
    pub const READ: u8 = 116;
    pub const WRITE: u8 = 118;
    pub const CLUNK: u8 = 120;
}

/// A file's attributes (`Rgetattr`). Times are nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Attr {
    /// The file's qid.
    pub qid: Qid,
    /// Type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Hard links.
    pub nlink: u64,
    /// Device number of a device file.
    pub rdev: u64,
    /// Size in bytes.
    pub size: u64,
    /// 512-byte blocks allocated.
    pub blocks: u64,
    /// Last access.
    pub atime: u64,
    /// Last modification.
    pub mtime: u64,
    /// Last status change.
    pub ctime: u64,
}

/// What `Tsetattr` changes (`None` keeps it).
#[derive(Debug, Clone, Copy, Default)]
pub struct SetAttr {
    /// Permission bits.
    pub mode: Option<u32>,
    /// Length.
    pub size: Option<u64>,
    /// Access time (ns).
    pub atime: Option<u64>,
    /// Modification time (ns).
    pub mtime: Option<u64>,
}

/// One directory entry (`Rreaddir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Its qid.
    pub qid: Qid,
    /// The offset to continue reading after it.
    pub offset: u64,
    /// `d_type`.
    pub kind: u8,
    /// Its name.
    pub name: String,
}

/// File-system figures (`Rstatfs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatFs {
    /// File-system type magic.
    pub kind: u32,
    /// Block size.
    pub bsize: u32,
    /// Total blocks.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Blocks available to unprivileged users.
    pub bavail: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Longest name.
    pub namelen: u32,
}

/// A connected 9P2000.L session.
pub struct Client {
    t: Box<dyn Transport>,
    msize: u32,
    next_fid: u32,
    free: Vec<u32>,
    resp: Vec<u8>,
}

impl core::fmt::Debug for Client {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client")
            .field("msize", &self.msize)
            .finish()
    }
}

impl Client {
    /// Negotiates the version and attaches the export's root as [`ROOT_FID`].
    pub fn connect(t: Box<dyn Transport>) -> KResult<Client> {
        let mut c = Client {
            t,
            msize: MSIZE,
            next_fid: ROOT_FID + 1,
            free: Vec::new(),
            resp: vec![0; MSIZE as usize],
        };
        let req = Writer::new(t::VERSION, 0xffff)
            .u32(MSIZE)
            .str("9P2000.L")
            .finish();
        let mut r = c.call(&req, t::VERSION)?;
        let msize = r.u32()?;
        if r.str()? != "9P2000.L" || msize < 4096 {
            return Err(Errno::EIO);
        }
        c.msize = msize.min(MSIZE);
        let req = Writer::new(t::ATTACH, TAG)
            .u32(ROOT_FID)
            .u32(!0)
            .str("root")
            .str("")
            .u32(0)
            .finish();
        c.call(&req, t::ATTACH)?.qid()?;
        Ok(c)
    }

    /// Sends `req` and checks the reply is `want + 1` (an `Rlerror` becomes its errno).
    fn call(&mut self, req: &[u8], want: u8) -> KResult<Reader<'_>> {
        let n = self.t.request(req, &mut self.resp).ok_or(Errno::EIO)?;
        let body = self.resp.get(..n).ok_or(Errno::EIO)?;
        if n < 7 {
            return Err(Errno::EIO);
        }
        let mut r = Reader::new(&body[7..]);
        match body[4] {
            k if k == want + 1 => Ok(r),
            t::LERROR => Err(Errno(r.u32()? as i32)),
            _ => Err(Errno::EIO),
        }
    }

    fn fid(&mut self) -> u32 {
        self.free.pop().unwrap_or_else(|| {
            self.next_fid += 1;
            self.next_fid - 1
        })
    }

    /// Walks from `fid` through `names` (none: a copy of `fid`) to a new fid and the qid of
    /// what it reaches. A name that does not exist is `ENOENT`.
    pub fn walk(&mut self, fid: u32, names: &[&str]) -> KResult<(u32, Qid)> {
        let new = self.fid();
        let mut w = Writer::new(t::WALK, TAG)
            .u32(fid)
            .u32(new)
            .u16(names.len() as u16);
        for n in names {
            w = w.str(n);
        }
        let got = self.call(&w.finish(), t::WALK).and_then(|mut r| {
            let n = r.u16()? as usize;
            let mut last = Qid::default();
            for _ in 0..n {
                last = r.qid()?;
            }
            Ok((n, last))
        });
        match got {
            Ok((n, qid)) if n == names.len() => Ok((new, qid)),
            Ok(_) => {
                // A partial walk creates no fid.
                self.free.push(new);
                Err(Errno::ENOENT)
            }
            Err(e) => {
                self.free.push(new);
                Err(e)
            }
        }
    }

    /// Forgets `fid` (the server closes what it had open).
    pub fn clunk(&mut self, fid: u32) {
        if fid == ROOT_FID {
            return;
        }
        let req = Writer::new(t::CLUNK, TAG).u32(fid).finish();
        // The fid is gone on the server even if the reply is an error.
        let _ = self.call(&req, t::CLUNK);
        self.free.push(fid);
    }

    /// Opens the file `fid` refers to with Linux open `flags`.
    pub fn lopen(&mut self, fid: u32, flags: u32) -> KResult<()> {
        let req = Writer::new(t::LOPEN, TAG).u32(fid).u32(flags).finish();
        self.call(&req, t::LOPEN)?.qid()?;
        Ok(())
    }

    /// Creates `name` in the directory `fid`, which then refers to the new, open file.
    pub fn lcreate(&mut self, fid: u32, name: &str, flags: u32, mode: u32) -> KResult<Qid> {
        let req = Writer::new(t::LCREATE, TAG)
            .u32(fid)
            .str(name)
            .u32(flags)
            .u32(mode)
            .u32(0)
            .finish();
        self.call(&req, t::LCREATE)?.qid()
    }

    /// Reads at `off` into `buf` from the open `fid`, in as many requests as it takes;
    /// stops early at the end of the file.
    pub fn read(&mut self, fid: u32, off: u64, buf: &mut [u8]) -> KResult<usize> {
        let chunk = (self.msize - READ_HEADER) as usize;
        let mut done = 0;
        while done < buf.len() {
            let want = (buf.len() - done).min(chunk);
            let req = Writer::new(t::READ, TAG)
                .u32(fid)
                .u64(off + done as u64)
                .u32(want as u32)
                .finish();
            let mut r = self.call(&req, t::READ)?;
            let n = (r.u32()? as usize).min(want);
            let data = r.take(n)?;
            buf[done..done + n].copy_from_slice(data);
            done += n;
            if n < want {
                break;
            }
        }
        Ok(done)
    }

    /// Writes `data` at `off` through the open `fid`, in as many requests as it takes.
    pub fn write(&mut self, fid: u32, off: u64, data: &[u8]) -> KResult<usize> {
        let chunk = (self.msize - WRITE_HEADER) as usize;
        let mut done = 0;
        while done < data.len() {
            let part = &data[done..data.len().min(done + chunk)];
            let req = Writer::new(t::WRITE, TAG)
                .u32(fid)
                .u64(off + done as u64)
                .u32(part.len() as u32)
                .bytes(part)
                .finish();
            let n = match self.call(&req, t::WRITE).and_then(|mut r| r.u32()) {
                Ok(n) => (n as usize).min(part.len()),
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            };
            done += n;
            if n < part.len() {
                break;
            }
        }
        Ok(done)
    }

    /// The attributes of what `fid` refers to.
    pub fn getattr(&mut self, fid: u32) -> KResult<Attr> {
        let req = Writer::new(t::GETATTR, TAG).u32(fid).u64(0x3fff).finish();
        let mut r = self.call(&req, t::GETATTR)?;
        let _valid = r.u64()?;
        let qid = r.qid()?;
        let (mode, uid, gid) = (r.u32()?, r.u32()?, r.u32()?);
        let (nlink, rdev, size, _blksize, blocks) =
            (r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?);
        let mut time = || -> KResult<u64> { Ok(r.u64()? * 1_000_000_000 + r.u64()?) };
        let (atime, mtime, ctime) = (time()?, time()?, time()?);
        Ok(Attr {
            qid,
            mode,
            uid,
            gid,
            nlink,
            rdev,
            size,
            blocks,
            atime,
            mtime,
            ctime,
        })
    }

    /// Changes the attributes of what `fid` refers to.
    pub fn setattr(&mut self, fid: u32, s: SetAttr) -> KResult<()> {
        const MODE: u32 = 0x1;
        const SIZE: u32 = 0x8;
        const ATIME: u32 = 0x10;
        const MTIME: u32 = 0x20;
        const CTIME: u32 = 0x40;
        const ATIME_SET: u32 = 0x80;
        const MTIME_SET: u32 = 0x100;
        let mut valid = CTIME;
        let mut bit = |on: bool, b: u32| {
            if on {
                valid |= b;
            }
        };
        bit(s.mode.is_some(), MODE);
        bit(s.size.is_some(), SIZE);
        bit(s.atime.is_some(), ATIME | ATIME_SET);
        bit(s.mtime.is_some(), MTIME | MTIME_SET);
        let (a, mt) = (s.atime.unwrap_or(0), s.mtime.unwrap_or(0));
        let req = Writer::new(t::SETATTR, TAG)
            .u32(fid)
            .u32(valid)
            .u32(s.mode.unwrap_or(0))
            .u32(0)
            .u32(0)
            .u64(s.size.unwrap_or(0))
            .u64(a / 1_000_000_000)
            .u64(a % 1_000_000_000)
            .u64(mt / 1_000_000_000)
            .u64(mt % 1_000_000_000)
            .finish();
        self.call(&req, t::SETATTR).map(|_| ())
    }

    /// Directory entries of the open directory `fid` from `off` (empty at the end).
    pub fn readdir(&mut self, fid: u32, off: u64) -> KResult<Vec<DirEntry>> {
        let req = Writer::new(t::READDIR, TAG)
            .u32(fid)
            .u64(off)
            .u32(self.msize - READ_HEADER)
            .finish();
        let mut r = self.call(&req, t::READDIR)?;
        let n = r.u32()? as usize;
        let mut d = Reader::new(r.take(n)?);
        let mut out = Vec::new();
        while !d.is_empty() {
            out.push(DirEntry {
                qid: d.qid()?,
                offset: d.u64()?,
                kind: d.u8()?,
                name: d.str()?,
            });
        }
        Ok(out)
    }

    /// Creates the directory `name` in the directory `fid`.
    pub fn mkdir(&mut self, fid: u32, name: &str, mode: u32) -> KResult<Qid> {
        let req = Writer::new(t::MKDIR, TAG)
            .u32(fid)
            .str(name)
            .u32(mode)
            .u32(0)
            .finish();
        self.call(&req, t::MKDIR)?.qid()
    }

    /// Removes `name` from the directory `fid` (`flags`: `AT_REMOVEDIR` for a directory).
    pub fn unlinkat(&mut self, fid: u32, name: &str, flags: u32) -> KResult<()> {
        let req = Writer::new(t::UNLINKAT, TAG)
            .u32(fid)
            .str(name)
            .u32(flags)
            .finish();
        self.call(&req, t::UNLINKAT).map(|_| ())
    }

    /// Renames `old` in directory `ofid` to `new` in directory `nfid` (replacing it).
    pub fn renameat(&mut self, ofid: u32, old: &str, nfid: u32, new: &str) -> KResult<()> {
        let req = Writer::new(t::RENAMEAT, TAG)
            .u32(ofid)
            .str(old)
            .u32(nfid)
            .str(new)
            .finish();
        self.call(&req, t::RENAMEAT).map(|_| ())
    }

    /// Flushes the open file `fid` to the host's disk.
    pub fn fsync(&mut self, fid: u32, datasync: bool) -> KResult<()> {
        let req = Writer::new(t::FSYNC, TAG)
            .u32(fid)
            .u32(u32::from(datasync))
            .finish();
        self.call(&req, t::FSYNC).map(|_| ())
    }

    /// Figures of the file system holding `fid`.
    pub fn statfs(&mut self, fid: u32) -> KResult<StatFs> {
        let req = Writer::new(t::STATFS, TAG).u32(fid).finish();
        let mut r = self.call(&req, t::STATFS)?;
        Ok(StatFs {
            kind: r.u32()?,
            bsize: r.u32()?,
            blocks: r.u64()?,
            bfree: r.u64()?,
            bavail: r.u64()?,
            files: r.u64()?,
            ffree: r.u64()?,
            namelen: {
                let _fsid = r.u64()?;
                r.u32()?
            },
        })
    }

    /// Creates the symbolic link `name` to `target` in the directory `fid`.
    pub fn symlink(&mut self, fid: u32, name: &str, target: &str) -> KResult<Qid> {
        let req = Writer::new(t::SYMLINK, TAG)
            .u32(fid)
            .str(name)
            .str(target)
            .u32(0)
            .finish();
        self.call(&req, t::SYMLINK)?.qid()
    }

    /// The target of the symbolic link `fid`.
    pub fn readlink(&mut self, fid: u32) -> KResult<String> {
        let req = Writer::new(t::READLINK, TAG).u32(fid).finish();
        self.call(&req, t::READLINK)?.str()
    }
}
