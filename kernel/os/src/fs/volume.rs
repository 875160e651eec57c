//! Host directories mounted with virtio-9p: a [`Volume`] is one attached 9P session, and a
//! [`Remote`] is a node of it (a directory, file or symbolic link) holding a fid walked to
//! it. Lookups walk one component at a time, so `..` and symbolic links are resolved by
//! the kernel in the guest's tree (see `Vfs::lookup`), never by the host: a path can leave
//! a volume only into the guest's own directories.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use spin::Mutex;

use super::node::{Body, FsId, Inode};
use super::p9::wire::{QTDIR, QTSYMLINK};
use super::p9::{Attr, Client, DirEntry, Qid, SetAttr, StatFs};
use crate::errno::{Errno, KResult};

/// `unlinkat` flag for directories.
const AT_REMOVEDIR: u32 = 0x200;
/// Open flags a create passes to the host (`O_RDWR | O_CREAT | O_EXCL`).
const CREATE_FLAGS: u32 = 0o2 | 0o100 | 0o200;

/// One mounted host directory.
#[derive(Debug)]
pub struct Volume {
    client: Mutex<Client>,
    /// Fids of dropped nodes and files, clunked before the next request.
    dead: Mutex<Vec<u32>>,
    /// Mounted read-only: every change is `EROFS`.
    pub readonly: bool,
    /// Which volume (its `st_dev` minor is 16 + this).
    pub index: u32,
}

/// What a remote node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteKind {
    /// A directory.
    Dir,
    /// A regular file (or anything else that is neither).
    File,
    /// A symbolic link and its target.
    Symlink(String),
}

/// A node of a volume: the fid walked to it (not opened).
#[derive(Debug)]
pub struct Remote {
    /// Its volume.
    pub vol: Arc<Volume>,
    /// The fid that names it.
    pub fid: u32,
    /// What it is.
    pub kind: RemoteKind,
    /// Proof that this kernel has volumes (see [`Present`]).
    pub present: Present,
}

/// `()` in a kernel with volumes (the `volumes` feature). Without it, a type with no
/// values: no [`Remote`] can then exist, so the compiler drops every path of the tree that
/// handles one, and with them the 9P client (about 15 KB of kernel).
#[cfg(feature = "volumes")]
pub type Present = ();
/// See the `volumes` variant: here a type with no values.
#[cfg(not(feature = "volumes"))]
pub type Present = core::convert::Infallible;

/// A [`Present`] value, or `ENODEV` in a kernel without volumes.
fn present() -> KResult<Present> {
    #[cfg(feature = "volumes")]
    return Ok(());
    #[cfg(not(feature = "volumes"))]
    Err(crate::errno::Errno::ENODEV)
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.vol.release(self.fid);
    }
}

impl Volume {
    /// A volume over an attached client.
    pub fn new(client: Client, readonly: bool, index: u32) -> Arc<Volume> {
        Arc::new(Volume {
            client: Mutex::new(client),
            dead: Mutex::new(Vec::new()),
            readonly,
            index,
        })
    }

    /// Runs `f` with the client, after clunking the fids of what was dropped.
    pub fn with<R>(&self, f: impl FnOnce(&mut Client) -> KResult<R>) -> KResult<R> {
        let mut c = self.client.lock();
        let dead = core::mem::take(&mut *self.dead.lock());
        for fid in dead {
            c.clunk(fid);
        }
        f(&mut c)
    }

    /// Gives back a fid no longer used (clunked at the next request).
    pub fn release(&self, fid: u32) {
        self.dead.lock().push(fid);
    }

    /// `EROFS` for a read-only volume.
    pub fn writable(&self) -> KResult<()> {
        if self.readonly {
            Err(Errno::EROFS)
        } else {
            Ok(())
        }
    }

    /// [`present`], releasing `fid` when this kernel has no volumes.
    fn present_for(&self, fid: u32) -> KResult<Present> {
        present().inspect_err(|_| self.release(fid))
    }

    /// The node of the volume's root directory.
    pub fn root(self: &Arc<Self>) -> KResult<Arc<Inode>> {
        // A walk of no names returns no qid: ask for the root's attributes.
        let (fid, qid) = self.with(|c| {
            let (fid, _) = c.walk(super::p9::client::ROOT_FID, &[])?;
            Ok((fid, c.getattr(fid)?.qid))
        })?;
        self.node(fid, qid)
    }

    /// A node for the walked `fid` (reading a symbolic link's target).
    fn node(self: &Arc<Self>, fid: u32, qid: Qid) -> KResult<Arc<Inode>> {
        let kind = if qid.kind & QTDIR != 0 {
            RemoteKind::Dir
        } else if qid.kind & QTSYMLINK != 0 {
            match self.with(|c| c.readlink(fid)) {
                Ok(t) => RemoteKind::Symlink(t),
                Err(e) => {
                    self.release(fid);
                    return Err(e);
                }
            }
        } else {
            RemoteKind::File
        };
        let remote = Remote {
            vol: self.clone(),
            fid,
            kind,
            present: self.present_for(fid)?,
        };
        Ok(Arc::new(Inode::with_ino(
            qid.path,
            FsId::Volume,
            Body::Remote(remote),
        )))
    }
}

impl Remote {
    /// The entry `name` of this directory, `None` if missing.
    pub fn child(&self, name: &str) -> KResult<Option<Arc<Inode>>> {
        match self.vol.with(|c| c.walk(self.fid, &[name])) {
            Ok((fid, qid)) => self.vol.node(fid, qid).map(Some),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A new fid for this node, opened with `flags` (the access mode and `O_DIRECTORY`).
    pub fn open(&self, flags: u32) -> KResult<u32> {
        self.vol.with(|c| {
            let (fid, _) = c.walk(self.fid, &[])?;
            match c.lopen(fid, flags) {
                Ok(()) => Ok(fid),
                Err(e) => {
                    c.clunk(fid);
                    Err(e)
                }
            }
        })
    }

    /// Its attributes.
    pub fn attr(&self) -> KResult<Attr> {
        self.vol.with(|c| c.getattr(self.fid))
    }

    /// Changes its attributes (`EROFS` on a read-only volume).
    pub fn setattr(&self, s: SetAttr) -> KResult<()> {
        self.vol.writable()?;
        self.vol.with(|c| c.setattr(self.fid, s))
    }

    /// Creates the empty file `name` in this directory with permission bits `mode`.
    pub fn create(&self, name: &str, mode: u32) -> KResult<()> {
        self.vol.writable()?;
        self.vol.with(|c| {
            let (fid, _) = c.walk(self.fid, &[])?;
            let r = c.lcreate(fid, name, CREATE_FLAGS, mode);
            c.clunk(fid);
            r.map(|_| ())
        })
    }

    /// Creates the directory `name` in this directory.
    pub fn mkdir(&self, name: &str, mode: u32) -> KResult<()> {
        self.vol.writable()?;
        self.vol.with(|c| c.mkdir(self.fid, name, mode).map(|_| ()))
    }

    /// Creates the symbolic link `name` to `target` in this directory.
    pub fn symlink(&self, name: &str, target: &str) -> KResult<()> {
        self.vol.writable()?;
        self.vol
            .with(|c| c.symlink(self.fid, name, target).map(|_| ()))
    }

    /// Removes `name` (a directory when `dir`) from this directory.
    pub fn unlink(&self, name: &str, dir: bool) -> KResult<()> {
        self.vol.writable()?;
        let flags = if dir { AT_REMOVEDIR } else { 0 };
        self.vol.with(|c| c.unlinkat(self.fid, name, flags))
    }

    /// Renames `old` in this directory to `new` in `to` (same volume, else `EXDEV`).
    pub fn rename(&self, old: &str, to: &Remote, new: &str) -> KResult<()> {
        if !Arc::ptr_eq(&self.vol, &to.vol) {
            return Err(Errno::EXDEV);
        }
        self.vol.writable()?;
        self.vol.with(|c| c.renameat(self.fid, old, to.fid, new))
    }

    /// File-system figures.
    pub fn statfs(&self) -> KResult<StatFs> {
        self.vol.with(|c| c.statfs(self.fid))
    }

    /// Every entry of the open directory `fid` but `.` and `..`.
    pub fn entries(&self, fid: u32) -> KResult<Vec<DirEntry>> {
        let mut out: Vec<DirEntry> = Vec::new();
        let mut off = 0;
        loop {
            let batch = self.vol.with(|c| c.readdir(fid, off))?;
            let Some(last) = batch.last() else {
                break;
            };
            off = last.offset;
            out.extend(
                batch
                    .into_iter()
                    .filter(|e| e.name != "." && e.name != ".."),
            );
        }
        Ok(out)
    }
}

impl Remote {
    /// Writes at `off` through a fid opened for this one write (a shared mapping's changes).
    pub fn write_once(&self, off: u64, data: &[u8]) -> KResult<usize> {
        self.vol.writable()?;
        let fid = self.open(crate::fd::O_WRONLY)?;
        let r = self.vol.with(|c| c.write(fid, off, data));
        self.vol.release(fid);
        r
    }

    /// Reads at `off` through a fid opened for this one read (for `mmap` and kernel reads).
    pub fn read_once(&self, off: u64, buf: &mut [u8]) -> KResult<usize> {
        let fid = self.open(0)?;
        let r = self.vol.with(|c| c.read(fid, off, buf));
        self.vol.release(fid);
        r
    }
}
