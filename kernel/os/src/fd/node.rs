//! Nodes of the tree opened as files: regular files, directories, devices, and symbolic
//! links opened with `O_PATH`.

use alloc::sync::Arc;

use super::file::FileLike;
use crate::errno::{Errno, KResult};
use crate::fs::{Body, Device, FsId, Inode, Stat, Vfs};
use crate::machine::Machine;

/// Offsets may not pass this (Linux `MAX_LFS_FILESIZE`).
const MAX_OFFSET: u64 = i64::MAX as u64;

/// An opened node of the tree.
#[derive(Debug)]
pub struct NodeFile(pub Arc<Inode>);

impl NodeFile {
    fn is_device(&self) -> bool {
        matches!(self.0.body, Body::Device(_))
    }
}

impl FileLike for NodeFile {
    fn seekable(&self) -> bool {
        true
    }

    fn read_at(&self, m: &mut dyn Machine, buf: &mut [u8], off: u64) -> KResult<usize> {
        let n = &self.0;
        match &n.body {
            Body::Dir(_) => Err(Errno::EISDIR),
            Body::Device(Device::Null) => Ok(0),
            Body::Device(Device::Zero | Device::Full) => {
                buf.fill(0);
                Ok(buf.len())
            }
            Body::Device(Device::Random | Device::URandom) => {
                m.fill_random(buf);
                Ok(buf.len())
            }
            Body::StaticFile(_) | Body::MemFile(_) | Body::Remote(_) => Ok(n.read_at(off, buf)),
            Body::Symlink(_) | Body::Proc(_) => Err(Errno::EINVAL),
        }
    }

    fn write_at(&self, m: &mut dyn Machine, data: &[u8], off: u64, now: u64) -> KResult<usize> {
        let n = &self.0;
        match &n.body {
            Body::Device(Device::Full) => Err(Errno::ENOSPC),
            Body::Device(_) => Ok(data.len()),
            Body::MemFile(_) => {
                if off > MAX_OFFSET {
                    return Err(Errno::EINVAL);
                }
                // A /tmp file is kernel memory: once memory is down to the kernel's
                // reserve, files take no more pages (ENOSPC, a full tmpfs).
                let grows = n.write_needs_memory(off, data.len() as u64);
                if grows && m.pages().memory_low() {
                    return Err(Errno::ENOSPC);
                }
                n.write_at(off, data, now)
            }
            Body::Dir(_) => Err(Errno::EISDIR),
            _ => Err(Errno::EBADF),
        }
    }

    fn write_moves_offset(&self) -> bool {
        !self.is_device()
    }

    fn size(&self) -> u64 {
        self.0.size()
    }

    /// Devices always report 0; directories accept only absolute positions and
    /// `SEEK_CUR`.
    fn seek(&self, cur: u64, off: i64, whence: u32) -> KResult<u64> {
        if self.is_device() {
            return if whence > 4 {
                Err(Errno::EINVAL)
            } else {
                Ok(0)
            };
        }
        // A /tmp file knows its holes (pages never written).
        if let (3 | 4, Body::MemFile(d)) = (whence, &self.0.body) {
            let size = self.0.size();
            if off < 0 || off as u64 >= size {
                return Err(Errno::ENXIO);
            }
            let d = d.lock();
            return if whence == 3 {
                d.next_data(off as u64).ok_or(Errno::ENXIO)
            } else {
                Ok(d.next_hole(off as u64))
            };
        }
        seek_within(cur, off, whence, self.0.size(), self.0.is_dir())
    }

    fn stat(&self) -> Stat {
        self.0.stat()
    }

    fn fs(&self) -> FsId {
        self.0.fs
    }

    fn epollable(&self) -> bool {
        false
    }

    fn nread(&self, off: u64) -> KResult<u64> {
        if self.0.is_regular() {
            Ok(self.0.size().saturating_sub(off))
        } else {
            Err(Errno::ENOTTY)
        }
    }

    fn inode(&self) -> Option<&Arc<Inode>> {
        Some(&self.0)
    }

    fn reopen(&self, vfs: &Vfs, flags: u32, now: u64) -> KResult<Arc<dyn FileLike>> {
        vfs.open_existing(&self.0, flags, now)?;
        super::volume::open_node(self.0.clone(), flags)
    }
}

/// The offset `lseek` moves to in a file of `size` bytes at `cur` (directories take only
/// `SEEK_SET` and `SEEK_CUR`): `EINVAL` for a negative result or an unknown `whence`,
/// `ENXIO` for `SEEK_DATA`/`SEEK_HOLE` past the end, `EOVERFLOW` past `i64::MAX`.
pub(super) fn seek_within(
    cur: u64,
    off: i64,
    whence: u32,
    size: u64,
    is_dir: bool,
) -> KResult<u64> {
    let new = match whence {
        0 => Some(off),
        1 => cur.try_into().ok().and_then(|o: i64| o.checked_add(off)),
        2 if !is_dir => (size as i64).checked_add(off),
        3 | 4 if !is_dir => {
            if off < 0 || off as u64 >= size {
                return Err(Errno::ENXIO);
            }
            Some(if whence == 3 { off } else { size as i64 })
        }
        _ => return Err(Errno::EINVAL),
    };
    match new {
        Some(n) if n >= 0 => Ok(n as u64),
        Some(_) => Err(Errno::EINVAL),
        None => Err(Errno::EOVERFLOW),
    }
}
