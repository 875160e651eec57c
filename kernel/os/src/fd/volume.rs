//! Files and directories of a volume (a host directory over virtio-9p), opened: each open
//! file holds a fid opened on the host, so reads and writes go straight to the host's file
//! at the description's offset.

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::file::FileLike;
use super::node::seek_within;
use super::{O_ACCMODE, O_PATH};
use crate::errno::{Errno, KResult};
use crate::fs::p9::DirEntry;
use crate::fs::volume::{Remote, RemoteKind};
use crate::fs::{FsId, Inode, Stat, Vfs};
use crate::machine::Machine;

/// An opened node of a volume.
#[derive(Debug)]
pub struct VolumeFile {
    inode: Arc<Inode>,
    /// The fid opened on the host.
    fid: u32,
}

impl VolumeFile {
    /// Opens `inode` (a volume's node) on the host with the access mode of `flags`.
    pub fn open(inode: Arc<Inode>, flags: u32) -> KResult<VolumeFile> {
        let r = inode.remote().ok_or(Errno::EINVAL)?;
        if r.kind == RemoteKind::Dir {
            // Directories open for reading only (`O_DIRECTORY`).
            let fid = r.open(0o200000)?;
            return Ok(VolumeFile { inode, fid });
        }
        let fid = r.open(flags & O_ACCMODE)?;
        Ok(VolumeFile { inode, fid })
    }

    fn remote(&self) -> &Remote {
        self.inode.remote().expect("a volume's node")
    }

    /// `fsync`/`fdatasync`: the host flushes the file to its disk.
    pub fn sync(&self, datasync: bool) -> KResult<()> {
        let fid = self.fid;
        self.remote().vol.with(|c| c.fsync(fid, datasync))
    }

    /// The directory's entries but `.` and `..` (`ENOTDIR` for files).
    pub fn entries(&self) -> KResult<Vec<DirEntry>> {
        if !self.inode.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        self.remote().entries(self.fid)
    }
}

impl Drop for VolumeFile {
    fn drop(&mut self) {
        self.remote().vol.release(self.fid);
    }
}

impl FileLike for VolumeFile {
    fn seekable(&self) -> bool {
        true
    }

    fn read_at(&self, _m: &mut dyn Machine, buf: &mut [u8], off: u64) -> KResult<usize> {
        if self.inode.is_dir() {
            return Err(Errno::EISDIR);
        }
        let fid = self.fid;
        self.remote().vol.with(|c| c.read(fid, off, buf))
    }

    fn write_at(&self, _m: &mut dyn Machine, data: &[u8], off: u64, _now: u64) -> KResult<usize> {
        if self.inode.is_dir() {
            return Err(Errno::EISDIR);
        }
        if off
            .checked_add(data.len() as u64)
            .is_none_or(|e| e > i64::MAX as u64)
        {
            return Err(Errno::EFBIG);
        }
        let fid = self.fid;
        let vol = &self.remote().vol;
        vol.writable()?;
        vol.with(|c| c.write(fid, off, data))
    }

    fn size(&self) -> u64 {
        self.inode.size()
    }

    fn seek(&self, cur: u64, off: i64, whence: u32) -> KResult<u64> {
        let size = if matches!(whence, 2..=4) {
            self.inode.size()
        } else {
            0
        };
        seek_within(cur, off, whence, size, self.inode.is_dir())
    }

    fn stat(&self) -> Stat {
        self.inode.stat()
    }

    fn fs(&self) -> FsId {
        FsId::Volume
    }

    fn epollable(&self) -> bool {
        false
    }

    fn nread(&self, off: u64) -> KResult<u64> {
        if self.inode.is_dir() {
            return Err(Errno::ENOTTY);
        }
        Ok(self.inode.size().saturating_sub(off))
    }

    fn inode(&self) -> Option<&Arc<Inode>> {
        Some(&self.inode)
    }

    fn reopen(&self, vfs: &Vfs, flags: u32, now: u64) -> KResult<Arc<dyn FileLike>> {
        vfs.open_existing(&self.inode, flags, now)?;
        open_node(self.inode.clone(), flags)
    }
}

/// The open file for a node of the tree: a [`VolumeFile`] for a volume's files and
/// directories (not with `O_PATH`), else a [`super::node::NodeFile`].
pub fn open_node(inode: Arc<Inode>, flags: u32) -> KResult<Arc<dyn FileLike>> {
    let remote = inode
        .remote()
        .is_some_and(|r| !matches!(r.kind, RemoteKind::Symlink(_)));
    if remote && flags & O_PATH == 0 {
        Ok(Arc::new(VolumeFile::open(inode, flags)?))
    } else {
        Ok(Arc::new(super::node::NodeFile(inode)))
    }
}
