//! `/proc` files whose text is captured when they are opened (so a reader sees one
//! consistent state across several reads).

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::file::FileLike;
use super::node::seek_within;
use crate::errno::{Errno, KResult};
use crate::fs::{FsId, Inode, Stat, Vfs};
use crate::machine::Machine;
use crate::syscall::proc::ThreadNames;

/// A `/proc` node and the text captured at open time.
#[derive(Debug)]
pub struct Snapshot {
    node: Arc<Inode>,
    data: Vec<u8>,
    /// For a `comm` file open for writing: the names and the thread a write renames.
    renames: Option<(ThreadNames, u32)>,
}

impl Snapshot {
    /// `node` reading as `data`.
    pub fn new(node: Arc<Inode>, data: Vec<u8>) -> Snapshot {
        Snapshot {
            node,
            data,
            renames: None,
        }
    }

    /// A `comm` file open for writing: a write names thread `tid` (Linux keeps the bytes
    /// written, up to 15, a newline included).
    pub fn renaming(mut self, names: ThreadNames, tid: u32) -> Snapshot {
        self.renames = Some((names, tid));
        self
    }
}

impl FileLike for Snapshot {
    fn seekable(&self) -> bool {
        true
    }

    fn read_at(&self, _: &mut dyn Machine, buf: &mut [u8], off: u64) -> KResult<usize> {
        let data = &self.data;
        let off = usize::try_from(off).unwrap_or(usize::MAX).min(data.len());
        let n = buf.len().min(data.len() - off);
        buf[..n].copy_from_slice(&data[off..off + n]);
        Ok(n)
    }

    fn write_at(&self, _: &mut dyn Machine, buf: &[u8], _: u64, _: u64) -> KResult<usize> {
        let (names, tid) = self.renames.as_ref().ok_or(Errno::EBADF)?;
        names.set(*tid, buf);
        Ok(buf.len())
    }

    fn size(&self) -> u64 {
        self.data.len() as u64
    }

    fn seek(&self, cur: u64, off: i64, whence: u32) -> KResult<u64> {
        seek_within(cur, off, whence, self.size(), self.node.is_dir())
    }

    fn stat(&self) -> Stat {
        self.node.stat()
    }

    fn fs(&self) -> FsId {
        self.node.fs
    }

    fn epollable(&self) -> bool {
        false
    }

    fn inode(&self) -> Option<&Arc<Inode>> {
        Some(&self.node)
    }

    fn reopen(&self, vfs: &Vfs, flags: u32, now: u64) -> KResult<Arc<dyn FileLike>> {
        vfs.open_existing(&self.node, flags, now)?;
        Ok(Arc::new(Snapshot {
            node: self.node.clone(),
            data: self.data.clone(),
            renames: self.renames.clone(),
        }))
    }
}
