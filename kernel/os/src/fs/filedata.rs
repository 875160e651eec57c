//! The bytes of a `/tmp` file, in pages taken as they are written.
//!
//! A file used to be one `Vec<u8>`: growing it by appending asked the heap for one
//! contiguous block of twice its size (with the old one still held), which a machine whose
//! memory had been used and freed often could not give, so a 100 MB file could fail with
//! `ENOSPC` with half the memory free; and `truncate -s 1G` took a gigabyte. Here a file is
//! a length and a table of 4 KiB pages: a page is taken when a byte in it is first written
//! (or `fallocate`d), pages never written are holes that read as zeros, and the table only
//! reaches the last page written.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::errno::{Errno, KResult};

/// Bytes in a page of file data.
pub const PAGE: usize = 4096;

type Page = Box<[u8; PAGE]>;

/// A file's length and pages (see the module documentation).
#[derive(Debug, Default)]
pub struct FileData {
    len: u64,
    /// Page `i` holds bytes `[i * PAGE, (i + 1) * PAGE)`; `None`, or past the end of the
    /// table, is a hole.
    pages: Vec<Option<Page>>,
}

/// A zeroed page, or `ENOSPC` when memory is out (a full tmpfs).
fn new_page() -> KResult<Page> {
    let mut v = Vec::new();
    v.try_reserve_exact(PAGE).map_err(|_| Errno::ENOSPC)?;
    v.resize(PAGE, 0);
    v.into_boxed_slice().try_into().map_err(|_| Errno::ENOSPC)
}

impl FileData {
    /// An empty file.
    pub const fn new() -> FileData {
        FileData {
            len: 0,
            pages: Vec::new(),
        }
    }

    /// The file's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Pages holding data (what `st_blocks` counts).
    pub fn pages_in_use(&self) -> u64 {
        self.pages.iter().filter(|p| p.is_some()).count() as u64
    }

    /// Copies the bytes at `off` into `buf`; how many (0 at or past the end). Holes read
    /// as zeros.
    pub fn read(&self, off: u64, buf: &mut [u8]) -> usize {
        if off >= self.len {
            return 0;
        }
        let n = buf
            .len()
            .min((self.len - off).min(usize::MAX as u64) as usize);
        let mut done = 0;
        while done < n {
            let at = off + done as u64;
            let (index, within) = ((at / PAGE as u64) as usize, (at % PAGE as u64) as usize);
            let k = (PAGE - within).min(n - done);
            match self.pages.get(index).and_then(Option::as_ref) {
                Some(page) => buf[done..done + k].copy_from_slice(&page[within..within + k]),
                None => buf[done..done + k].fill(0),
            }
            done += k;
        }
        n
    }

    /// The page `index`, taken (zeroed) when it is a hole.
    fn page_mut(&mut self, index: usize) -> KResult<&mut [u8; PAGE]> {
        if index >= self.pages.len() {
            self.pages
                .try_reserve(index + 1 - self.pages.len())
                .map_err(|_| Errno::ENOSPC)?;
            self.pages.resize_with(index + 1, || None);
        }
        let slot = &mut self.pages[index];
        if slot.is_none() {
            *slot = Some(new_page()?);
        }
        Ok(slot.as_mut().expect("filled above"))
    }

    /// The page index of byte offset `off`, or `EFBIG` when the table could not reach it.
    fn index(off: u64) -> KResult<usize> {
        usize::try_from(off / PAGE as u64).map_err(|_| Errno::EFBIG)
    }

    /// Writes `data` at `off`, growing the file as needed. `ENOSPC` when memory runs out:
    /// then the bytes before the failing page are written and the length covers them.
    pub fn write(&mut self, off: u64, data: &[u8]) -> KResult<()> {
        let mut done = 0;
        while done < data.len() {
            let at = off + done as u64;
            let within = (at % PAGE as u64) as usize;
            let k = (PAGE - within).min(data.len() - done);
            let page = match Self::index(at).and_then(|i| self.page_mut(i)) {
                Ok(p) => p,
                Err(e) => {
                    self.len = self.len.max(at);
                    return Err(e);
                }
            };
            page[within..within + k].copy_from_slice(&data[done..done + k]);
            done += k;
        }
        self.len = self.len.max(off + data.len() as u64);
        Ok(())
    }

    /// Sets the length: growing adds a hole, shrinking gives back the pages past the end
    /// and clears the rest of the last one (so growing again reads zeros there).
    pub fn set_len(&mut self, len: u64) {
        if len < self.len {
            let keep = len.div_ceil(PAGE as u64) as usize;
            if keep < self.pages.len() {
                self.pages.truncate(keep);
                if self.pages.capacity() > 2 * keep.max(16) {
                    self.pages.shrink_to_fit();
                }
            }
            let within = (len % PAGE as u64) as usize;
            if within != 0 {
                if let Some(Some(page)) = self.pages.get_mut(keep - 1) {
                    page[within..].fill(0);
                }
            }
        }
        self.len = len;
    }

    /// Takes the pages of `[off, off + len)` (`fallocate`), growing the file to its end.
    /// `ENOSPC` when memory runs out (the pages taken so far stay, the length does not
    /// change).
    pub fn allocate(&mut self, off: u64, len: u64) -> KResult<()> {
        let end = off.checked_add(len).ok_or(Errno::EFBIG)?;
        if len == 0 {
            return Ok(());
        }
        let (first, last) = (Self::index(off)?, Self::index(end - 1)?);
        for index in first..=last {
            self.page_mut(index)?;
        }
        self.len = self.len.max(end);
        Ok(())
    }

    /// Whether writing `[off, off + len)` would take memory: a page in it is a hole.
    pub fn needs_pages(&self, off: u64, len: u64) -> bool {
        if len == 0 {
            return false;
        }
        let (first, last) = (
            off / PAGE as u64,
            (off.saturating_add(len) - 1) / PAGE as u64,
        );
        (first..=last).any(|i| {
            usize::try_from(i)
                .ok()
                .and_then(|i| self.pages.get(i))
                .is_none_or(Option::is_none)
        })
    }

    /// `SEEK_DATA` from `off`: the first offset at or after it in a page holding data, or
    /// `None` when only a hole is left before the end.
    pub fn next_data(&self, off: u64) -> Option<u64> {
        if off >= self.len {
            return None;
        }
        let start = (off / PAGE as u64) as usize;
        let index = (start..self.pages.len()).find(|&i| self.pages[i].is_some())?;
        let at = (index as u64 * PAGE as u64).max(off);
        (at < self.len).then_some(at)
    }

    /// `SEEK_HOLE` from `off` (before the end): the first offset at or after it in a hole,
    /// or the end of the file (which counts as a hole).
    pub fn next_hole(&self, off: u64) -> u64 {
        let start = (off / PAGE as u64) as usize;
        let index = (start..self.pages.len())
            .find(|&i| self.pages[i].is_none())
            .unwrap_or(self.pages.len());
        (index as u64 * PAGE as u64).max(off).min(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_reads_and_holes() {
        let mut f = FileData::new();
        assert!(f.needs_pages(5000, 5));
        f.write(5000, b"hello").unwrap();
        assert_eq!(f.len(), 5005);
        assert!(!f.needs_pages(4096, 4096), "the page is there");
        assert!(f.needs_pages(4096, 4097));
        assert_eq!(f.pages_in_use(), 1, "only the page written");
        let mut buf = [9u8; 8];
        assert_eq!(f.read(4998, &mut buf), 7);
        assert_eq!(&buf[..7], b"\0\0hello");
        assert_eq!(f.read(10, &mut buf[..4]), 4);
        assert_eq!(&buf[..4], &[0; 4], "a hole reads as zeros");
        assert_eq!(f.read(5005, &mut buf), 0);
        // A write across a page boundary.
        let data: Vec<u8> = (0..6000u32).map(|i| i as u8).collect();
        f.write(3000, &data).unwrap();
        let mut back = vec![0u8; 6000];
        assert_eq!(f.read(3000, &mut back), 6000);
        assert_eq!(back, data);
        assert_eq!(f.pages_in_use(), 3);
    }

    #[test]
    fn a_huge_length_costs_nothing_until_written() {
        let mut f = FileData::new();
        f.set_len(1 << 40);
        assert_eq!((f.len(), f.pages_in_use()), (1 << 40, 0));
        let mut buf = [1u8; 16];
        assert_eq!(f.read((1 << 40) - 16, &mut buf), 16);
        assert_eq!(buf, [0; 16]);
        assert_eq!(f.next_data(0), None);
        assert_eq!(f.next_hole(12345), 12345);
    }

    #[test]
    fn shrinking_clears_the_tail_and_drops_pages() {
        let mut f = FileData::new();
        f.write(0, &[7u8; 3 * PAGE]).unwrap();
        f.set_len(PAGE as u64 + 10);
        assert_eq!(f.pages_in_use(), 2);
        f.set_len(3 * PAGE as u64);
        let mut buf = [1u8; 4];
        f.read(PAGE as u64 + 8, &mut buf);
        assert_eq!(buf, [7, 7, 0, 0], "the bytes cut off do not come back");
        assert_eq!(f.pages_in_use(), 2);
    }

    #[test]
    fn data_and_holes_for_lseek() {
        let mut f = FileData::new();
        f.set_len(10 * PAGE as u64);
        f.write(4 * PAGE as u64 + 100, b"x").unwrap();
        assert_eq!(f.next_data(0), Some(4 * PAGE as u64));
        assert_eq!(
            f.next_data(4 * PAGE as u64 + 50),
            Some(4 * PAGE as u64 + 50)
        );
        assert_eq!(f.next_data(5 * PAGE as u64), None);
        assert_eq!(f.next_hole(4 * PAGE as u64), 5 * PAGE as u64);
        assert_eq!(f.next_hole(0), 0);
        f.allocate(0, 2 * PAGE as u64).unwrap();
        assert_eq!(f.next_hole(0), 2 * PAGE as u64);
        assert_eq!(
            f.len(),
            10 * PAGE as u64,
            "allocating inside changes no length"
        );
        f.allocate(10 * PAGE as u64, 1).unwrap();
        assert_eq!(f.len(), 10 * PAGE as u64 + 1);
    }
}
