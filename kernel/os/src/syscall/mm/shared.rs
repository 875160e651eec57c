//! Shared mappings of `/tmp` files and of volumes' files (`MAP_SHARED`: SQLite's WAL
//! index, `sem_open`, `shm_open`, Python's `mmap`, and read-only ones such as bbolt's,
//! which writes its file with `pwrite` and reads it through the mapping).
//!
//! The mapping is a copy of the file's bytes ([`crate::vm::VmaKind::SharedFile`]), kept
//! coherent at the points where anyone could tell: before a system call reads or writes
//! the file (or maps it again, syncs it, or unmaps the region), what the program wrote
//! through the mapping goes into the file; after a call changed the file, the mapping
//! gets the file's bytes. With one process, only its own system calls look at the file,
//! so the program sees one file, as on Linux. A write through the mapping never grows the
//! file (bytes past its end stay in the mapping, as in Linux's last partial page).

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use crate::fd::O_TRUNC;
use crate::fs::node::Inode;
use crate::machine::{Machine, PAGE_SIZE};
use crate::process::{Outcome, Process};
use crate::sysno as nr;
use crate::vm::SharedRegion;

/// Writes the program's changes in `regions` into their files (whole pages that differ).
pub fn flush(p: &mut Process, m: &mut dyn Machine, regions: &[SharedRegion]) {
    let now = m.realtime_ns();
    let mut mine = vec![0u8; PAGE_SIZE as usize];
    let mut file = vec![0u8; PAGE_SIZE as usize];
    // A read-only region has nothing of the program's to give (and may be older than
    // the file, which a writable region changed).
    for r in regions.iter().filter(|r| r.prot.write) {
        let size = r.inode.size();
        let mut addr = r.start;
        while addr < r.end {
            let off = r.offset + (addr - r.start);
            if off >= size {
                break;
            }
            let n = (PAGE_SIZE - addr % PAGE_SIZE)
                .min(r.end - addr)
                .min(size - off) as usize;
            if p.vm.read_mapped(m.pages(), addr, &mut mine[..n]).is_err() {
                break;
            }
            let have = r.inode.read_at(off, &mut file[..n]);
            if have != n || mine[..n] != file[..n] {
                // A /tmp file only fails to take bytes it already has room for when
                // memory is gone; the mapping keeps them then.
                let _ = r.inode.write_mapped(off, &mine[..n], now);
            }
            addr += n as u64;
        }
    }
}

/// Gives `regions` their files' bytes now (zeros past a file's end within the page).
pub fn refresh(p: &mut Process, m: &mut dyn Machine, regions: &[SharedRegion]) {
    refresh_range(p, m, regions, 0, u64::MAX);
}

/// Gives `regions` their files' bytes from offset `lo` to `hi` (the pages that hold them):
/// after a write, only what it changed is copied, not the whole file at every `pwrite`
/// (bbolt, under etcd, writes its database a page at a time through `pwrite` while it
/// reads it through a mapping of all of it).
pub fn refresh_range(
    p: &mut Process,
    m: &mut dyn Machine,
    regions: &[SharedRegion],
    lo: u64,
    hi: u64,
) {
    let mut buf = vec![0u8; PAGE_SIZE as usize];
    for r in regions {
        let size = r.inode.size();
        let len = r.end - r.start;
        if hi <= r.offset || lo >= r.offset.saturating_add(len) {
            continue;
        }
        // The first page of the region holding offset `lo`, and the address of `hi`.
        let first = r.start + lo.saturating_sub(r.offset);
        let mut addr = (first - first % PAGE_SIZE).max(r.start);
        let end = r
            .start
            .saturating_add(hi.saturating_sub(r.offset))
            .min(r.end);
        while addr < end {
            let off = r.offset + (addr - r.start);
            let n = (PAGE_SIZE - addr % PAGE_SIZE).min(r.end - addr) as usize;
            if off >= size && off % PAGE_SIZE == 0 {
                // Whole pages past the end: Linux would not let them be touched at all.
                break;
            }
            let have = r.inode.read_at(off, &mut buf[..n]);
            buf[have..n].fill(0);
            if p.vm.populate(m.pages(), addr, &buf[..n]).is_err() {
                break;
            }
            addr += n as u64;
        }
    }
}

/// The regions sharing the file open at `fd`, if any.
fn regions_of_fd(p: &Process, fd: u64) -> Vec<SharedRegion> {
    let Ok(fd) = i32::try_from(fd as i64) else {
        return Vec::new();
    };
    match p.files.get(fd).ok().and_then(|f| f.inode().cloned()) {
        Some(inode) => p.vm.shared_regions(&inode),
        None => Vec::new(),
    }
}

/// The descriptors a file system call reads from and those it writes to.
fn descriptors(nr: u64) -> (&'static [usize], &'static [usize]) {
    match nr {
        nr::READ | nr::PREAD64 | nr::READV | nr::PREADV | nr::PREADV2 => (&[0], &[]),
        nr::FSYNC | nr::FDATASYNC | nr::SYNC_FILE_RANGE => (&[0], &[]),
        nr::WRITE | nr::PWRITE64 | nr::WRITEV | nr::PWRITEV | nr::PWRITEV2 => (&[0], &[0]),
        nr::FTRUNCATE | nr::FALLOCATE => (&[0], &[0]),
        nr::SENDFILE => (&[1], &[0]),
        nr::COPY_FILE_RANGE | nr::SPLICE => (&[0], &[2]),
        _ => (&[], &[]),
    }
}

/// Runs the file system call `nr` (through `call`) with the shared mappings of the files
/// it touches kept coherent: flushed before, refreshed after a change.
pub fn around(
    p: &mut Process,
    m: &mut dyn Machine,
    nr: u64,
    a: [u64; 6],
    call: impl FnOnce(&mut Process, &mut dyn Machine) -> Option<Outcome>,
) -> Option<Outcome> {
    if !p.vm.shares_files() {
        return call(p, m);
    }
    let (reads, writes) = descriptors(nr);
    for &i in reads.iter().chain(writes) {
        let regions = regions_of_fd(p, a[i]);
        flush(p, m, &regions);
    }
    // What an open that truncates would cut off must reach the file first too.
    let truncating = match nr {
        nr::CREAT => true,
        nr::OPEN => a[1] as u32 & O_TRUNC != 0,
        nr::OPENAT => a[2] as u32 & O_TRUNC != 0,
        _ => false,
    };
    if truncating {
        let all = p.vm.shared_regions_in(0, u64::MAX);
        flush(p, m, &all);
    }
    let out = call(p, m);
    for &i in writes {
        let regions = regions_of_fd(p, a[i]);
        if regions.is_empty() {
            continue;
        }
        match changed(p, nr, a, out.as_ref()) {
            Some((lo, hi)) => refresh_range(p, m, &regions, lo, hi),
            None => refresh(p, m, &regions),
        }
    }
    if truncating {
        if let Some(Outcome::Return(fd)) = out {
            if fd >= 0 {
                let regions = regions_of_fd(p, fd as u64);
                refresh(p, m, &regions);
            }
        }
    }
    out
}

/// The file offsets a write-family call `nr` changed, from its outcome: `None` when it
/// may have changed anything (a truncation, a copy between files), an empty range when it
/// failed.
fn changed(p: &Process, nr: u64, a: [u64; 6], out: Option<&Outcome>) -> Option<(u64, u64)> {
    let n = match out {
        Some(&Outcome::Return(n)) if n >= 0 => n as u64,
        Some(Outcome::Return(_)) => return Some((0, 0)),
        _ => return None,
    };
    let at = |off: u64| Some((off, off.saturating_add(n)));
    match nr {
        nr::PWRITE64 => at(a[3]),
        nr::PWRITEV | nr::PWRITEV2 if a[3] as i64 != -1 => at(a[3]),
        nr::WRITE | nr::WRITEV | nr::PWRITEV2 => {
            // Written up to where the file's offset is now (O_APPEND's end of file too).
            let f = p.files.get(a[0] as i32).ok()?;
            let end = f.offset();
            Some((end.saturating_sub(n), end))
        }
        _ => None,
    }
}

/// Before the regions in `[start, end)` go away or change (`munmap`, `mremap`, a fixed
/// `mmap` over them, `msync`): their changes go into the files.
pub fn flush_range(p: &mut Process, m: &mut dyn Machine, start: u64, end: u64) {
    if p.vm.shares_files() {
        let regions = p.vm.shared_regions_in(start, end);
        flush(p, m, &regions);
    }
}

/// Before the address space goes (the program ends, or `execve` replaces it): every shared
/// mapping's changes go into its file, as Linux writes dirty pages back (a volume's file
/// outlives the machine).
pub fn flush_all(p: &mut Process, m: &mut dyn Machine) {
    flush_range(p, m, 0, u64::MAX);
}

/// Before `inode` is mapped again (a new copy is made of its bytes): the changes of its
/// shared mappings go into it.
pub fn flush_inode(p: &mut Process, m: &mut dyn Machine, inode: &Arc<Inode>) {
    if p.vm.shares_files() {
        let regions = p.vm.shared_regions(inode);
        flush(p, m, &regions);
    }
}
