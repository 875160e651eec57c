//! The program's memory map: regions (VMAs), demand paging, user copies and the memory
//! system calls' semantics (`mmap`, `munmap`, `mprotect`, `mremap`, `madvise`, `brk`).
//!
//! Mapping only records a region; pages get frames when first touched ([`AddressSpace::handle_fault`])
//! or when the kernel copies to or from them. The page tables hold user pages only inside
//! regions, so every page-table call here is confined to regions and never touches the
//! kernel's own memory (the `reserved` range).

use crate::fs::node::Inode;
use crate::small::SmallMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ops::Range;

use crate::errno::{Errno, KResult};
use crate::machine::{PageTable, Prot, PAGE_SIZE};

/// Lowest user address (Linux's default `vm.mmap_min_addr`).
pub const USER_START: u64 = 0x1_0000;
/// End of user space: Linux's `TASK_SIZE` on x86_64, one page short of the canonical
/// boundary 0x8000_0000_0000 (the last page is kept unmapped, as Linux does, so that no
/// instruction can run into the non-canonical hole).
pub const USER_END: u64 = 0x7fff_ffff_f000;
/// Top of the main thread's stack (Linux's without address randomisation).
pub const STACK_TOP: u64 = USER_END;
/// Size of the main thread's stack region (Linux's default `RLIMIT_STACK`).
pub const STACK_SIZE: u64 = 8 << 20;
/// Where top-down `mmap` placement starts (Linux's `mmap_base` without randomisation:
/// `TASK_SIZE` minus the 128 MiB minimum stack gap).
pub const MMAP_BASE: u64 = USER_END - (128 << 20);
/// Most regions a program may have (Linux's default `vm.max_map_count`): more would be
/// `ENOMEM`, so a program splitting mappings cannot grow the kernel's bookkeeping without
/// bound.
pub const MAX_MAP_COUNT: usize = 65_530;

/// `MAP_SHARED`.
pub const MAP_SHARED: u64 = 0x01;
/// `MAP_PRIVATE`.
pub const MAP_PRIVATE: u64 = 0x02;
/// `MAP_SHARED_VALIDATE`: shared, and unknown flags are an error.
pub const MAP_SHARED_VALIDATE: u64 = 0x03;
/// Mask of the mapping type.
pub const MAP_TYPE: u64 = 0x0f;
/// `MAP_FIXED`: exactly at `addr`, replacing what is there.
pub const MAP_FIXED: u64 = 0x10;
/// `MAP_ANONYMOUS`: not backed by a file.
pub const MAP_ANONYMOUS: u64 = 0x20;
/// `MAP_32BIT`: in the first 2 GiB.
pub const MAP_32BIT: u64 = 0x40;
/// `MAP_GROWSDOWN` (accepted; the region does not grow).
pub const MAP_GROWSDOWN: u64 = 0x100;
/// `MAP_DENYWRITE` (ignored, as by Linux).
pub const MAP_DENYWRITE: u64 = 0x800;
/// `MAP_EXECUTABLE` (ignored, as by Linux).
pub const MAP_EXECUTABLE: u64 = 0x1000;
/// `MAP_LOCKED`: populate now (memory is never swapped out here).
pub const MAP_LOCKED: u64 = 0x2000;
/// `MAP_NORESERVE` (all memory is demand-paged anyway).
pub const MAP_NORESERVE: u64 = 0x4000;
/// `MAP_POPULATE`: give the pages frames now.
pub const MAP_POPULATE: u64 = 0x8000;
/// `MAP_NONBLOCK`: with `MAP_POPULATE`, do not populate.
pub const MAP_NONBLOCK: u64 = 0x1_0000;
/// `MAP_STACK` (a hint).
pub const MAP_STACK: u64 = 0x2_0000;
/// `MAP_HUGETLB`: huge pages (none are reserved here, so `ENOMEM` as on such a Linux).
pub const MAP_HUGETLB: u64 = 0x4_0000;
/// `MAP_SYNC` (only meaningful for DAX files; refused with `MAP_SHARED_VALIDATE`).
pub const MAP_SYNC: u64 = 0x8_0000;
/// `MAP_FIXED_NOREPLACE`: exactly at `addr`, `EEXIST` if something is there.
pub const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;
/// `MAP_UNINITIALIZED` (ignored: pages are always zeroed).
pub const MAP_UNINITIALIZED: u64 = 0x400_0000;

const MAP_KNOWN: u64 = MAP_TYPE
    | MAP_FIXED
    | MAP_ANONYMOUS
    | MAP_32BIT
    | MAP_GROWSDOWN
    | MAP_DENYWRITE
    | MAP_EXECUTABLE
    | MAP_LOCKED
    | MAP_NORESERVE
    | MAP_POPULATE
    | MAP_NONBLOCK
    | MAP_STACK
    | MAP_HUGETLB
    | MAP_FIXED_NOREPLACE
    | MAP_UNINITIALIZED
    | (0x3f << 26); // MAP_HUGE_SHIFT size bits

/// `mremap`: the mapping may move.
pub const MREMAP_MAYMOVE: u64 = 1;
/// `mremap`: move to `new_addr`, replacing what is there.
pub const MREMAP_FIXED: u64 = 2;
/// `mremap`: move, and leave the old range mapped but empty.
pub const MREMAP_DONTUNMAP: u64 = 4;

/// `madvise` advice values (Linux numbers).
pub mod madv {
    /// `MADV_NORMAL`.
    pub const NORMAL: u64 = 0;
    /// `MADV_DONTNEED`: drop the pages; private mappings then read back as zero.
    pub const DONTNEED: u64 = 4;
    /// `MADV_FREE`: the pages may be dropped (here: they are, at once).
    pub const FREE: u64 = 8;
    /// `MADV_REMOVE`: free the backing store of a shared mapping.
    pub const REMOVE: u64 = 9;
    /// `MADV_POPULATE_READ`: fault the pages in for reading.
    pub const POPULATE_READ: u64 = 22;
    /// `MADV_POPULATE_WRITE`: fault the pages in for writing.
    pub const POPULATE_WRITE: u64 = 23;
    /// `MADV_DONTNEED_LOCKED`: as `MADV_DONTNEED`, locked pages included.
    pub const DONTNEED_LOCKED: u64 = 24;
    /// `MADV_HWPOISON` (needs privilege Kiln does not grant).
    pub const HWPOISON: u64 = 100;
    /// `MADV_SOFT_OFFLINE` (needs privilege Kiln does not grant).
    pub const SOFT_OFFLINE: u64 = 101;
}

/// Rounds `x` up to a page boundary (`None` on overflow).
pub fn page_up(x: u64) -> Option<u64> {
    x.checked_next_multiple_of(PAGE_SIZE)
}

/// Rounds `x` down to a page boundary.
pub fn page_down(x: u64) -> u64 {
    x & !(PAGE_SIZE - 1)
}

/// The file behind a [`VmaKind::SharedFile`] region, compared by identity.
#[derive(Clone)]
pub struct Backing(pub Arc<Inode>);

impl PartialEq for Backing {
    fn eq(&self, other: &Backing) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Backing {}

impl core::fmt::Debug for Backing {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Backing(inode {})", self.0.ino)
    }
}

/// A part of a [`VmaKind::SharedFile`] region: `[start, end)` holds the file's bytes from
/// `offset`.
#[derive(Debug, Clone)]
pub struct SharedRegion {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// The file offset at `start`.
    pub offset: u64,
    /// The region's rights.
    pub prot: Prot,
    /// The file.
    pub inode: Arc<Inode>,
}

/// What a region holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmaKind {
    /// A segment of the program (named by its path in `/proc/self/maps`).
    Program,
    /// The `brk` heap.
    Heap,
    /// The main thread's stack.
    Stack,
    /// Anonymous memory from `mmap`.
    Anonymous,
    /// A private copy of a file (its path, possibly empty when unknown).
    File(String),
    /// A writable shared mapping of a `/tmp` file (its path, and the file): a copy that
    /// the system calls keep coherent with the file (see `crate::syscall::mm::shared`).
    SharedFile(String, Backing),
    /// The page of clock numbers the vDSO reads (`[vvar]`; see `crate::vdso`).
    Vvar,
    /// The vDSO's code (`[vdso]`).
    Vdso,
}

/// One region of the memory map (its start is the key in the map).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vma {
    /// One past the last byte (page-aligned).
    pub end: u64,
    /// Access rights.
    pub prot: Prot,
    /// What it holds.
    pub kind: VmaKind,
    /// Mapped `MAP_SHARED` (shown as `s` in `/proc/self/maps`).
    pub shared: bool,
    /// File offset of the region's first byte (program segments and files; 0 otherwise).
    pub offset: u64,
}

/// The kind of access that faulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A data read.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Exec,
}

/// Why a page fault could not be resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No region at the address (`SIGSEGV` with `SEGV_MAPERR`).
    Unmapped,
    /// The region forbids this access (`SIGSEGV` with `SEGV_ACCERR`).
    Denied,
    /// No frame was left to back the page (Linux's OOM killer: `SIGKILL`).
    OutOfMemory,
}

impl Fault {
    /// The signal the program dies of: `SIGSEGV` (11), or `SIGKILL` (9) when out of memory.
    pub fn signal(self) -> u8 {
        match self {
            Fault::Unmapped | Fault::Denied => 11,
            Fault::OutOfMemory => 9,
        }
    }
    /// The `si_code` of the `SIGSEGV`: `SEGV_MAPERR` (1) or `SEGV_ACCERR` (2); 0 for out of memory.
    pub fn si_code(self) -> i32 {
        match self {
            Fault::Unmapped => 1,
            Fault::Denied => 2,
            Fault::OutOfMemory => 0,
        }
    }
    /// A short description for crash reports.
    pub fn describe(self) -> &'static str {
        match self {
            Fault::Unmapped => "address not mapped (SEGV_MAPERR)",
            Fault::Denied => "access not permitted by the mapping (SEGV_ACCERR)",
            Fault::OutOfMemory => "out of memory while paging in",
        }
    }
}

impl core::fmt::Display for Fault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.describe())
    }
}

fn allows(prot: Prot, access: Access) -> bool {
    match access {
        // On x86 every present page is readable.
        Access::Read => prot.read || prot.write || prot.exec,
        Access::Write => prot.write,
        Access::Exec => prot.exec,
    }
}

/// The program's memory map.
#[derive(Debug)]
pub struct AddressSpace {
    /// A sorted `Vec` (see [`crate::small`]): lookups are binary searches.
    vmas: SmallMap<u64, Vma>,
    reserved: Range<u64>,
    brk_start: u64,
    brk: u64,
    max_regions: usize,
    /// A [`VmaKind::SharedFile`] region was ever made (file system calls then look for
    /// the regions of the files they touch).
    shares_files: bool,
}

impl AddressSpace {
    /// An empty memory map. `reserved` is the kernel's own (identity-mapped) memory, which no
    /// user mapping may overlap; user space is `[USER_START, USER_END)` minus `reserved`.
    pub fn new(reserved: Range<u64>) -> AddressSpace {
        AddressSpace {
            vmas: SmallMap::new(),
            reserved,
            brk_start: 0,
            brk: 0,
            max_regions: MAX_MAP_COUNT,
            shares_files: false,
        }
    }

    /// Whether a writable shared file mapping was ever made in this address space.
    pub fn shares_files(&self) -> bool {
        self.shares_files
    }

    /// Lowers the region limit below [`MAX_MAP_COUNT`] (a small machine cannot keep as many:
    /// each region is kernel memory).
    pub fn set_max_regions(&mut self, n: usize) {
        self.max_regions = n.clamp(64, MAX_MAP_COUNT);
    }

    /// The kernel's range that user mappings avoid.
    pub fn reserved(&self) -> Range<u64> {
        self.reserved.clone()
    }

    /// The regions, in address order, as `(start, region)`.
    pub fn vmas(&self) -> impl Iterator<Item = (u64, &Vma)> {
        self.vmas.iter().map(|(s, v)| (*s, v))
    }

    /// The region containing `addr`, as `(start, region)`.
    pub fn find(&self, addr: u64) -> Option<(u64, &Vma)> {
        self.vmas
            .range(..=addr)
            .next_back()
            .filter(|(_, v)| addr < v.end)
            .map(|(s, v)| (*s, v))
    }

    /// The main thread's stack region, as `start..end`.
    pub fn stack(&self) -> Option<Range<u64>> {
        self.vmas
            .iter()
            .find(|(_, v)| v.kind == VmaKind::Stack)
            .map(|(s, v)| *s..v.end)
    }

    /// Removes every region and frees its pages (before loading a program).
    pub fn clear(&mut self, pt: &mut dyn PageTable) {
        for (start, v) in core::mem::take(&mut self.vmas) {
            pt.unmap_range(start, v.end);
        }
        self.brk_start = 0;
        self.brk = 0;
        self.shares_files = false;
    }

    // ----- region bookkeeping -----

    /// `ENOMEM` unless `extra` more regions stay within the limit ([`MAX_MAP_COUNT`] or
    /// less) and memory is not down to the kernel's reserve (each region is kernel memory).
    fn room_for(&self, pt: &dyn PageTable, extra: usize) -> KResult<()> {
        if extra > 0 && pt.memory_low() {
            return Err(Errno::ENOMEM);
        }
        self.count_allows(extra)
    }

    /// `ENOMEM` unless `extra` more regions stay within the limit.
    fn count_allows(&self, extra: usize) -> KResult<()> {
        if self.vmas.len() + extra > self.max_regions {
            Err(Errno::ENOMEM)
        } else {
            Ok(())
        }
    }

    /// How many regions splitting at `addr` and `end` adds (each boundary strictly inside a
    /// region splits it).
    fn splits(&self, addr: u64, end: u64) -> usize {
        let inside = |a: u64| self.find(a).is_some_and(|(s, _)| s != a);
        usize::from(inside(addr)) + usize::from(inside(end))
    }

    /// Whether `[start, end)` is a valid, non-empty user range clear of the kernel and of
    /// every region.
    fn is_free(&self, start: u64, end: u64) -> bool {
        start < end
            && start >= USER_START
            && end <= USER_END
            && !(start < self.reserved.end && self.reserved.start < end)
            && self.find(start).is_none()
            && self.vmas.range(start..end).next().is_none()
    }

    /// Whether every byte of `[start, end)` lies in some region.
    pub fn is_mapped(&self, start: u64, end: u64) -> bool {
        let mut cur = start;
        while cur < end {
            match self.find(cur) {
                Some((_, v)) => cur = v.end,
                None => return false,
            }
        }
        true
    }

    /// The regions meeting `[start, end)`, in order, as `(start, end, prot)` (without
    /// copying them: a program may have tens of thousands).
    fn pieces(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, u64, Prot)> + '_ {
        let first = self.find(start).filter(|(s, _)| *s < start);
        first
            .into_iter()
            .chain(self.vmas.range(start..end.max(start)).map(|(s, v)| (*s, v)))
            .map(|(s, v)| (s, v.end, v.prot))
    }

    /// The first region starting in `[from, to)`.
    fn next_start(&self, from: u64, to: u64) -> Option<u64> {
        if from >= to {
            return None;
        }
        self.vmas.range(from..to).next().map(|(s, _)| *s)
    }

    /// Splits the region containing `addr` so that a region starts at `addr`.
    fn split_at(&mut self, addr: u64) {
        let Some((start, v)) = self.find(addr) else {
            return;
        };
        if start == addr {
            return;
        }
        let mut tail = v.clone();
        if matches!(
            tail.kind,
            VmaKind::Program | VmaKind::File(_) | VmaKind::SharedFile(..)
        ) {
            tail.offset += addr - start;
        }
        self.vmas.get_mut(&start).expect("region").end = addr;
        self.vmas.insert(addr, tail);
    }

    /// Removes every region (or part) in `[start, end)` and frees its pages.
    fn remove_range(&mut self, pt: &mut dyn PageTable, start: u64, end: u64) {
        self.split_at(start);
        self.split_at(end);
        while let Some(s) = self.next_start(start, end) {
            let v = self.vmas.remove(&s).expect("region");
            pt.unmap_range(s, v.end);
        }
    }

    fn mergeable(a_start: u64, a: &Vma, b: &Vma) -> bool {
        if a.prot != b.prot || a.shared != b.shared {
            return false;
        }
        match (&a.kind, &b.kind) {
            (VmaKind::Anonymous, VmaKind::Anonymous)
            | (VmaKind::Heap, VmaKind::Heap)
            | (VmaKind::Stack, VmaKind::Stack) => true,
            (VmaKind::Program, VmaKind::Program) => a.offset + (a.end - a_start) == b.offset,
            (VmaKind::File(x), VmaKind::File(y)) => {
                x == y && a.offset + (a.end - a_start) == b.offset
            }
            (VmaKind::SharedFile(x, bx), VmaKind::SharedFile(y, by)) => {
                x == y && bx == by && a.offset + (a.end - a_start) == b.offset
            }
            _ => false,
        }
    }

    /// Merges compatible neighbours among the regions touching `[lo, hi]`, as Linux does.
    fn coalesce(&mut self, lo: u64, hi: u64) {
        let first = self
            .vmas
            .range(..lo)
            .next_back()
            .map(|(s, _)| *s)
            .unwrap_or(lo);
        let mut cur: Option<u64> = None;
        let mut from = first;
        while let Some(k) = self.next_start(from, hi.saturating_add(1)) {
            from = k + 1;
            if let Some(c) = cur {
                let a = &self.vmas[&c];
                let b = &self.vmas[&k];
                if a.end == k && Self::mergeable(c, a, b) {
                    let b = self.vmas.remove(&k).expect("region");
                    self.vmas.get_mut(&c).expect("region").end = b.end;
                    continue;
                }
            }
            cur = Some(k);
        }
    }

    /// Adds a region at `[start, vma.end)`, which must be free: `EPERM` when it is outside
    /// user space or overlaps the kernel, `EEXIST` when a region is there.
    pub fn insert(&mut self, start: u64, vma: Vma) -> KResult<()> {
        let end = vma.end;
        if !start.is_multiple_of(PAGE_SIZE) || !end.is_multiple_of(PAGE_SIZE) || start >= end {
            return Err(Errno::EINVAL);
        }
        if start < USER_START
            || end > USER_END
            || (start < self.reserved.end && self.reserved.start < end)
        {
            return Err(Errno::EPERM);
        }
        if !self.is_free(start, end) {
            return Err(Errno::EEXIST);
        }
        self.count_allows(1)?;
        self.vmas.insert(start, vma);
        self.coalesce(start, end);
        Ok(())
    }

    /// The highest free range of `len` bytes inside `[lo, hi)`. Walks the regions in place
    /// (no copy: a program may have tens of thousands).
    fn find_free(&self, len: u64, lo: u64, hi: u64) -> Option<u64> {
        let mut fixed: [(u64, u64); 2] =
            [(self.reserved.start, self.reserved.end), (0, USER_START)];
        if fixed[0].0 < fixed[1].0 {
            fixed.swap(0, 1);
        }
        let mut fixed = fixed.into_iter().filter(|&(s, e)| s < e).peekable();
        let mut regions = self.vmas.iter().rev().map(|(s, v)| (*s, v.end)).peekable();
        // Busy ranges by falling start: the regions merged with the fixed ones.
        let mut busy = core::iter::from_fn(|| match (regions.peek(), fixed.peek()) {
            (Some(r), Some(f)) if r.0 >= f.0 => regions.next(),
            (_, Some(_)) => fixed.next(),
            (Some(_), None) => regions.next(),
            (None, None) => None,
        });
        let mut top = hi.min(USER_END);
        for (s, e) in &mut busy {
            if s >= top {
                continue;
            }
            if e < top {
                let bottom = e.max(lo);
                if top >= bottom && top - bottom >= len {
                    return Some(top - len);
                }
            }
            top = s;
            if top < lo || top - lo < len {
                return None;
            }
        }
        (top >= lo && top - lo >= len).then(|| top - len)
    }

    /// Where a non-fixed mapping of `len` bytes goes: top-down below [`MMAP_BASE`], then
    /// anywhere in user space.
    fn place(&self, len: u64) -> KResult<u64> {
        self.find_free(len, USER_START, MMAP_BASE)
            .or_else(|| self.find_free(len, USER_START, USER_END))
            .ok_or(Errno::ENOMEM)
    }

    /// Gives every unbacked page of `[start, end)` a frame (the range must be mapped).
    fn fault_in(&self, pt: &mut dyn PageTable, start: u64, end: u64) -> KResult<()> {
        if !self.is_mapped(start, end) {
            return Err(Errno::EFAULT);
        }
        for (s, e, prot) in self.pieces(start, end) {
            let mut page = page_down(start.max(s));
            let stop = end.min(e);
            while page < stop {
                if pt.query(page).is_none() {
                    pt.map_zeroed(page, prot)?;
                }
                page += PAGE_SIZE;
            }
        }
        Ok(())
    }

    /// Whether `[addr, addr + len)` is user memory that allows `access` throughout.
    fn check(&self, addr: u64, len: u64, access: Access) -> KResult<u64> {
        let end = addr.checked_add(len).ok_or(Errno::EFAULT)?;
        if end > USER_END {
            return Err(Errno::EFAULT);
        }
        if !self.is_mapped(addr, end) {
            return Err(Errno::EFAULT);
        }
        if self.pieces(addr, end).all(|r| allows(r.2, access)) {
            Ok(end)
        } else {
            Err(Errno::EFAULT)
        }
    }

    // ----- faults and user copies -----

    /// Resolves a page fault at `addr`: maps a zeroed page when the region allows `access`.
    pub fn handle_fault(
        &mut self,
        pt: &mut dyn PageTable,
        addr: u64,
        access: Access,
    ) -> Result<(), Fault> {
        let (_, v) = self.find(addr).ok_or(Fault::Unmapped)?;
        if !allows(v.prot, access) {
            return Err(Fault::Denied);
        }
        let prot = v.prot;
        let page = page_down(addr);
        match pt.query(page) {
            None => pt.map_zeroed(page, prot).map_err(|_| Fault::OutOfMemory),
            Some(p) => {
                // Present but with stale rights: bring the page in line with its region.
                if p != prot {
                    pt.protect_range(page, page + PAGE_SIZE, prot)
                        .map_err(|_| Fault::OutOfMemory)?;
                }
                Ok(())
            }
        }
    }

    /// Copies `buf.len()` bytes from user address `addr`; `EFAULT` unless all are readable.
    pub fn copy_from_user(
        &mut self,
        pt: &mut dyn PageTable,
        addr: u64,
        buf: &mut [u8],
    ) -> KResult<()> {
        if buf.is_empty() || pt.read_if_readable(addr, buf) {
            return Ok(());
        }
        let end = self.check(addr, buf.len() as u64, Access::Read)?;
        self.fault_in(pt, addr, end).map_err(|_| Errno::EFAULT)?;
        pt.read(addr, buf);
        Ok(())
    }

    /// Copies `data` to user address `addr`; `EFAULT` unless all are writable.
    pub fn copy_to_user(&mut self, pt: &mut dyn PageTable, addr: u64, data: &[u8]) -> KResult<()> {
        // The common case, a buffer the program has used: one look at each page.
        if data.is_empty() || pt.write_if_writable(addr, data) {
            return Ok(());
        }
        let end = self.check(addr, data.len() as u64, Access::Write)?;
        self.fault_in(pt, addr, end).map_err(|_| Errno::EFAULT)?;
        // Pages present without write access in a writable region (program pages mapped in
        // place, rights left behind by a failed mprotect) get the region's rights first:
        // that may need a private copy, which fails cleanly here when memory is gone.
        let mut page = page_down(addr);
        while page < end {
            if pt.query(page).is_some_and(|p| !p.write) {
                let prot = self.find(page).map(|(_, v)| v.prot).ok_or(Errno::EFAULT)?;
                pt.protect_range(page, page + PAGE_SIZE, prot)
                    .map_err(|_| Errno::EFAULT)?;
            }
            page += PAGE_SIZE;
        }
        pt.write(addr, data);
        Ok(())
    }

    /// Reads a NUL-terminated string (without the NUL) of at most `max` bytes;
    /// `ENAMETOOLONG` when longer, `EFAULT` when unreadable.
    pub fn read_cstr(&mut self, pt: &mut dyn PageTable, addr: u64, max: usize) -> KResult<Vec<u8>> {
        let mut out = Vec::new();
        let mut cur = addr;
        // Read page by page, so that the bytes after the NUL need not be readable.
        while out.len() <= max {
            let page_end = page_down(cur).checked_add(PAGE_SIZE).ok_or(Errno::EFAULT)?;
            let chunk = (page_end - cur).min((max + 1 - out.len()) as u64) as usize;
            let mut buf = alloc::vec![0u8; chunk];
            self.copy_from_user(pt, cur, &mut buf)?;
            if let Some(nul) = buf.iter().position(|&b| b == 0) {
                out.extend_from_slice(&buf[..nul]);
                return Ok(out);
            }
            out.extend_from_slice(&buf);
            cur += chunk as u64;
        }
        Err(Errno::ENAMETOOLONG)
    }

    /// Writes `data` at `addr` whatever the region's rights (the kernel filling a mapping:
    /// program segments, file contents). `EFAULT` unless the range is mapped; `ENOMEM` when
    /// no frame is left.
    pub fn populate(&mut self, pt: &mut dyn PageTable, addr: u64, data: &[u8]) -> KResult<()> {
        if data.is_empty() {
            return Ok(());
        }
        let end = addr.checked_add(data.len() as u64).ok_or(Errno::EFAULT)?;
        if !self.is_mapped(addr, end) {
            return Err(Errno::EFAULT);
        }
        self.fault_in(pt, addr, end)?;
        pt.write(addr, data);
        Ok(())
    }

    /// Gives frames to the pages of `[start, end)` that `access` may touch (`MAP_POPULATE`,
    /// `mlock`, `MADV_POPULATE_*`); regions that forbid it are skipped. `ENOMEM` when the range
    /// has holes or no frame is left.
    pub fn populate_range(
        &mut self,
        pt: &mut dyn PageTable,
        start: u64,
        end: u64,
        access: Access,
    ) -> KResult<()> {
        if !self.is_mapped(start, end) {
            return Err(Errno::ENOMEM);
        }
        for (s, e, prot) in self.pieces(start, end) {
            if allows(prot, access) {
                self.fault_in(pt, start.max(s), end.min(e))?;
            }
        }
        Ok(())
    }

    /// For `mincore`: one byte per page of `[start, end)`, 1 when the page has a frame.
    /// `ENOMEM` when the range has holes.
    pub fn residency(&self, pt: &dyn PageTable, start: u64, end: u64) -> KResult<Vec<u8>> {
        if !self.is_mapped(start, end) {
            return Err(Errno::ENOMEM);
        }
        // One byte a page of a range the program chooses: fallible.
        let pages = (end - page_down(start)).div_ceil(PAGE_SIZE);
        let mut out = Vec::new();
        out.try_reserve_exact(usize::try_from(pages).map_err(|_| Errno::ENOMEM)?)
            .map_err(|_| Errno::ENOMEM)?;
        let mut page = page_down(start);
        while page < end {
            out.push(u8::from(pt.query(page).is_some()));
            page += PAGE_SIZE;
        }
        Ok(out)
    }

    // ----- mmap and friends -----

    /// Maps anonymous memory (Linux `mmap` with `MAP_ANONYMOUS`; `flags` are `MAP_*` bits)
    /// and returns its address.
    pub fn mmap(
        &mut self,
        pt: &mut dyn PageTable,
        addr: u64,
        len: u64,
        prot: Prot,
        flags: u64,
    ) -> KResult<u64> {
        self.map(pt, addr, len, prot, flags, VmaKind::Anonymous, 0)
    }

    /// Maps a private copy of file bytes: `data` (the file's bytes from `offset`, possibly
    /// shorter than `len`; the rest reads as zero) under the name `path`.
    #[allow(clippy::too_many_arguments)]
    pub fn mmap_file(
        &mut self,
        pt: &mut dyn PageTable,
        addr: u64,
        len: u64,
        prot: Prot,
        flags: u64,
        path: String,
        offset: u64,
        data: &[u8],
    ) -> KResult<u64> {
        if !offset.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        self.mmap_copy(
            pt,
            addr,
            len,
            prot,
            flags,
            VmaKind::File(path),
            offset,
            data,
        )
    }

    /// Maps `kind` at `offset` with `data` copied in (see [`mmap_file`](Self::mmap_file)).
    #[allow(clippy::too_many_arguments)]
    fn mmap_copy(
        &mut self,
        pt: &mut dyn PageTable,
        addr: u64,
        len: u64,
        prot: Prot,
        flags: u64,
        kind: VmaKind,
        offset: u64,
        data: &[u8],
    ) -> KResult<u64> {
        let start = self.map(pt, addr, len, prot, flags, kind, offset)?;
        let n = data.len().min(len as usize);
        if let Err(e) = self.populate(pt, start, &data[..n]) {
            let end = start + page_up(len).unwrap_or(len);
            self.remove_range(pt, start, end);
            return Err(e);
        }
        Ok(start)
    }

    /// A writable `MAP_SHARED` mapping of the `/tmp` file `inode` (named `path`) from
    /// `offset`: a copy of its bytes now, which the system calls keep coherent with the file
    /// (`crate::syscall::mm::shared`). `ENODEV` when another such mapping already covers
    /// part of the same bytes (two copies could not both be the file).
    #[allow(clippy::too_many_arguments)]
    pub fn mmap_shared_file(
        &mut self,
        pt: &mut dyn PageTable,
        addr: u64,
        len: u64,
        prot: Prot,
        flags: u64,
        path: String,
        offset: u64,
        inode: Arc<Inode>,
    ) -> KResult<u64> {
        if !offset.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        let span = page_up(len).ok_or(Errno::ENOMEM)?;
        let end_off = offset.checked_add(span).ok_or(Errno::EOVERFLOW)?;
        let backing = Backing(inode);
        let fixed = flags & MAP_FIXED != 0;
        // Two writable copies of the same bytes could not both be the file; read-only ones
        // only take the file's bytes.
        let overlaps = self.shared_regions(&backing.0).iter().any(|r| {
            // A fixed mapping replaces what it covers: only regions it leaves count.
            let replaced = fixed && addr <= r.start && r.end <= addr.saturating_add(span);
            prot.write
                && r.prot.write
                && !replaced
                && r.offset < end_off
                && offset < r.offset + (r.end - r.start)
        });
        if overlaps {
            return Err(Errno::ENODEV);
        }
        let have = backing.0.size().saturating_sub(offset).min(span);
        let mut data = Vec::new();
        data.try_reserve_exact(have as usize)
            .map_err(|_| Errno::ENOMEM)?;
        data.resize(have as usize, 0);
        let n = backing.0.read_at(offset, &mut data);
        data.truncate(n);
        let kind = VmaKind::SharedFile(path, backing);
        self.shares_files = true;
        self.mmap_copy(pt, addr, len, prot, flags, kind, offset, &data)
    }

    /// The regions that share `inode` ([`VmaKind::SharedFile`]), in address order.
    pub fn shared_regions(&self, inode: &Arc<Inode>) -> Vec<SharedRegion> {
        self.vmas
            .iter()
            .filter_map(|(&start, v)| match &v.kind {
                VmaKind::SharedFile(_, b) if Arc::ptr_eq(&b.0, inode) => Some(SharedRegion {
                    start,
                    end: v.end,
                    offset: v.offset,
                    prot: v.prot,
                    inode: b.0.clone(),
                }),
                _ => None,
            })
            .collect()
    }

    /// The parts of [`VmaKind::SharedFile`] regions inside `[start, end)`.
    pub fn shared_regions_in(&self, start: u64, end: u64) -> Vec<SharedRegion> {
        self.vmas
            .range(..end)
            .filter(|(_, v)| v.end > start)
            .filter_map(|(&s, v)| match &v.kind {
                VmaKind::SharedFile(_, b) => {
                    let from = s.max(start);
                    Some(SharedRegion {
                        start: from,
                        end: v.end.min(end),
                        offset: v.offset + (from - s),
                        prot: v.prot,
                        inode: b.0.clone(),
                    })
                }
                _ => None,
            })
            .collect()
    }

    /// Copies the program's bytes at `[addr, addr + buf.len())` (mapped, any rights) into
    /// `buf`, giving untouched pages their frames first.
    pub fn read_mapped(&self, pt: &mut dyn PageTable, addr: u64, buf: &mut [u8]) -> KResult<()> {
        let end = addr.checked_add(buf.len() as u64).ok_or(Errno::EFAULT)?;
        self.fault_in(pt, addr, end)?;
        pt.read(addr, buf);
        Ok(())
    }

    /// [`mmap_file`](Self::mmap_file) for a file whose bytes stay in memory for the kernel's
    /// lifetime (`file`, the whole file: the read-only root's). Pages wholly inside the file
    /// that the mapping cannot write are mapped in place when their bytes are page-aligned
    /// (a later write or `mprotect` gives the page a private copy, so `MAP_PRIVATE` semantics
    /// hold); other pages with file bytes are copied; pages past the end of the file read as
    /// zeros when touched.
    #[allow(clippy::too_many_arguments)]
    pub fn mmap_file_in_place(
        &mut self,
        pt: &mut dyn PageTable,
        addr: u64,
        len: u64,
        prot: Prot,
        flags: u64,
        path: String,
        offset: u64,
        file: &'static [u8],
    ) -> KResult<u64> {
        if !offset.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        let start = self.map(pt, addr, len, prot, flags, VmaKind::File(path), offset)?;
        let end = start + page_up(len).unwrap_or(len);
        let borrow = !prot.write && (prot.read || prot.exec);
        let mut fill = || -> KResult<()> {
            let mut page = start;
            while page < end {
                let Some(at) = offset
                    .checked_add(page - start)
                    .filter(|&at| at < file.len() as u64)
                else {
                    break;
                };
                let at = at as usize;
                let n = (file.len() - at).min(PAGE_SIZE as usize);
                let bytes = &file[at..at + n];
                let in_place =
                    borrow && n == PAGE_SIZE as usize && pt.map_borrowed(page, bytes, prot)?;
                if !in_place {
                    self.populate(pt, page, bytes)?;
                }
                page += PAGE_SIZE;
            }
            Ok(())
        };
        if let Err(e) = fill() {
            self.remove_range(pt, start, end);
            return Err(e);
        }
        Ok(start)
    }

    #[allow(clippy::too_many_arguments)]
    fn map(
        &mut self,
        pt: &mut dyn PageTable,
        addr: u64,
        len: u64,
        prot: Prot,
        flags: u64,
        kind: VmaKind,
        offset: u64,
    ) -> KResult<u64> {
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let shared = match flags & MAP_TYPE {
            MAP_PRIVATE => false,
            MAP_SHARED => true,
            MAP_SHARED_VALIDATE => {
                if flags & !MAP_KNOWN != 0 || flags & MAP_SYNC != 0 {
                    return Err(Errno::EOPNOTSUPP);
                }
                true
            }
            _ => return Err(Errno::EINVAL),
        };
        let len = page_up(len).ok_or(Errno::ENOMEM)?;
        if len > USER_END - USER_START {
            return Err(Errno::ENOMEM);
        }
        if flags & MAP_HUGETLB != 0 {
            // No huge pages are reserved (like Linux with vm.nr_hugepages = 0).
            return Err(Errno::ENOMEM);
        }
        // The new region, and one more if a fixed mapping splits an existing one in two.
        self.room_for(pt, if flags & MAP_FIXED != 0 { 2 } else { 1 })?;
        let start = if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0 {
            if !addr.is_multiple_of(PAGE_SIZE) {
                return Err(Errno::EINVAL);
            }
            let end = addr.checked_add(len).ok_or(Errno::ENOMEM)?;
            if end > USER_END {
                return Err(Errno::ENOMEM);
            }
            if addr < USER_START || (addr < self.reserved.end && self.reserved.start < end) {
                return Err(Errno::EPERM);
            }
            if flags & MAP_FIXED_NOREPLACE != 0 {
                if !self.is_free(addr, end) {
                    return Err(Errno::EEXIST);
                }
            } else {
                self.remove_range(pt, addr, end);
            }
            addr
        } else if flags & MAP_32BIT != 0 {
            self.find_free(len, 0x4000_0000, 0x8000_0000)
                .ok_or(Errno::ENOMEM)?
        } else {
            match page_up(addr) {
                Some(h) if h != 0 && h.checked_add(len).is_some_and(|e| self.is_free(h, e)) => h,
                _ => self.place(len)?,
            }
        };
        let end = start + len;
        // A file's pages are filled from the file by the caller; past its end there is
        // nothing to populate (bbolt maps 10 GiB over a small file with MAP_POPULATE).
        let anonymous = !matches!(kind, VmaKind::File(_) | VmaKind::SharedFile(..));
        self.vmas.insert(
            start,
            Vma {
                end,
                prot,
                kind,
                shared,
                offset,
            },
        );
        self.coalesce(start, end);
        if anonymous && flags & (MAP_POPULATE | MAP_LOCKED) != 0 && flags & MAP_NONBLOCK == 0 {
            // As Linux, a failure to populate does not fail the mapping: pages that could
            // not get a frame now are faulted in later.
            let _ = self.populate_range(pt, start, end, Access::Read);
        }
        Ok(start)
    }

    /// Unmaps `[addr, addr + len)` (Linux `munmap`): holes are fine; `EINVAL` on bad
    /// alignment, zero length or a range outside user space.
    pub fn munmap(&mut self, pt: &mut dyn PageTable, addr: u64, len: u64) -> KResult<()> {
        if !addr.is_multiple_of(PAGE_SIZE) || len == 0 {
            return Err(Errno::EINVAL);
        }
        let len = page_up(len).ok_or(Errno::EINVAL)?;
        let end = addr.checked_add(len).ok_or(Errno::EINVAL)?;
        if end > USER_END {
            return Err(Errno::EINVAL);
        }
        // Unmapping the middle of a region splits it in two; other cases add no region.
        // Only the region limit applies: giving memory back must work when memory is low.
        let middle = self
            .find(addr)
            .is_some_and(|(s, v)| s != addr && end < v.end);
        self.count_allows(usize::from(middle))?;
        self.remove_range(pt, addr, end);
        Ok(())
    }

    /// Changes the rights of `[addr, addr + len)` (Linux `mprotect`): `EINVAL` on bad
    /// alignment, `ENOMEM` when the range has unmapped holes (then nothing changes), `EACCES`
    /// when making a shared file mapping writable.
    pub fn mprotect(
        &mut self,
        pt: &mut dyn PageTable,
        addr: u64,
        len: u64,
        prot: Prot,
    ) -> KResult<()> {
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        if len == 0 {
            return Ok(());
        }
        let len = page_up(len).ok_or(Errno::ENOMEM)?;
        let end = addr.checked_add(len).ok_or(Errno::ENOMEM)?;
        if end > USER_END || !self.is_mapped(addr, end) {
            return Err(Errno::ENOMEM);
        }
        // Shared file maps are read-only copies: writes through them would not reach the file.
        let shared_file = |s: &u64| {
            let v = &self.vmas[s];
            v.shared && matches!(v.kind, VmaKind::File(_))
        };
        if prot.write && self.pieces(addr, end).any(|r| shared_file(&r.0)) {
            return Err(Errno::EACCES);
        }
        self.room_for(pt, self.splits(addr, end))?;
        self.split_at(addr);
        self.split_at(end);
        let mut result = Ok(());
        let mut from = addr;
        while let Some(s) = self.next_start(from, end) {
            let v = self.vmas.get_mut(&s).expect("region");
            v.prot = prot;
            let e = v.end;
            from = e;
            // Out of frames for a private copy: Linux's mprotect may also have changed part
            // of the range when it fails. Pages left behind get the region's rights when
            // next touched (see `handle_fault`).
            if let Err(e) = pt.protect_range(s, e, prot) {
                result = Err(e);
            }
        }
        self.coalesce(addr, end);
        result
    }

    /// Resizes or moves a mapping (Linux `mremap`) and returns its new address.
    pub fn mremap(
        &mut self,
        pt: &mut dyn PageTable,
        old_addr: u64,
        old_len: u64,
        new_len: u64,
        flags: u64,
        new_addr: u64,
    ) -> KResult<u64> {
        if flags & !(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP) != 0
            || !old_addr.is_multiple_of(PAGE_SIZE)
        {
            return Err(Errno::EINVAL);
        }
        let may_move = flags & MREMAP_MAYMOVE != 0;
        let fixed = flags & MREMAP_FIXED != 0;
        let dont_unmap = flags & MREMAP_DONTUNMAP != 0;
        if (fixed || dont_unmap) && !may_move {
            return Err(Errno::EINVAL);
        }
        let old_len = page_up(old_len).ok_or(Errno::EINVAL)?;
        let new_len = page_up(new_len).ok_or(Errno::EINVAL)?;
        // old_len 0 duplicates a shared mapping on Linux; Kiln has no shared pages to duplicate.
        if new_len == 0 || old_len == 0 || (dont_unmap && old_len != new_len) {
            return Err(Errno::EINVAL);
        }
        let old_end = old_addr.checked_add(old_len).ok_or(Errno::EFAULT)?;
        let (_, vma) = self.find(old_addr).ok_or(Errno::EFAULT)?;
        if old_end > vma.end {
            return Err(Errno::EFAULT);
        }
        let vma_end = vma.end;

        // As Linux: a move may split the source and the target's neighbours.
        if fixed || dont_unmap {
            self.room_for(pt, 3)?;
        } else if new_len < old_len && old_end < vma_end {
            self.room_for(pt, 1)?;
        }
        if fixed {
            if !new_addr.is_multiple_of(PAGE_SIZE) {
                return Err(Errno::EINVAL);
            }
            let new_end = new_addr.checked_add(new_len).ok_or(Errno::EINVAL)?;
            if new_end > USER_END || (new_addr < old_end && old_addr < new_end) {
                return Err(Errno::EINVAL);
            }
            if new_addr < USER_START
                || (new_addr < self.reserved.end && self.reserved.start < new_end)
            {
                return Err(Errno::EPERM);
            }
            self.remove_range(pt, new_addr, new_end);
            let moved = old_len.min(new_len);
            if new_len < old_len {
                self.remove_range(pt, old_addr + new_len, old_end);
            }
            self.move_region(pt, old_addr, moved, new_addr, new_len, dont_unmap)?;
            return Ok(new_addr);
        }
        if dont_unmap {
            let to = self.place(new_len)?;
            self.move_region(pt, old_addr, old_len, to, new_len, true)?;
            return Ok(to);
        }
        if new_len <= old_len {
            self.remove_range(pt, old_addr + new_len, old_end);
            return Ok(old_addr);
        }
        let grow_end = old_addr.checked_add(new_len).ok_or(Errno::ENOMEM)?;
        if old_end == vma_end && self.is_free(old_end, grow_end) {
            let (start, _) = self.find(old_addr).expect("region");
            self.vmas.get_mut(&start).expect("region").end = grow_end;
            self.coalesce(start, grow_end);
            return Ok(old_addr);
        }
        if !may_move {
            return Err(Errno::ENOMEM);
        }
        self.room_for(pt, 3)?;
        let to = self.place(new_len)?;
        self.move_region(pt, old_addr, old_len, to, new_len, false)?;
        Ok(to)
    }

    /// Moves the region part `[from, from + len)` (inside one region) to the free range at
    /// `to`, which becomes `new_len` long; keeps the old range as an empty region when
    /// `keep_old`. `ENOMEM` when the pages cannot be moved (no frame for page tables): the
    /// region then stays where it was.
    fn move_region(
        &mut self,
        pt: &mut dyn PageTable,
        from: u64,
        len: u64,
        to: u64,
        new_len: u64,
        keep_old: bool,
    ) -> KResult<()> {
        self.split_at(from);
        self.split_at(from + len);
        if let Err(e) = pt.move_range(from, to, len) {
            self.coalesce(from, from + len);
            return Err(e);
        }
        let mut v = self.vmas.remove(&from).expect("region");
        if keep_old {
            self.vmas.insert(from, v.clone());
            self.coalesce(from, from + len);
        }
        v.end = to + new_len;
        self.vmas.insert(to, v);
        self.coalesce(to, to + new_len);
        Ok(())
    }

    /// Gives advice about `[addr, addr + len)` (Linux `madvise`). `MADV_DONTNEED`/`FREE` drop
    /// private pages (they read back as zero); `MADV_POPULATE_*` fault pages in; the other
    /// known advice is a hint with nothing to do here. `EINVAL` on bad alignment or unknown
    /// advice, `ENOMEM` when the range has unmapped holes.
    pub fn madvise(
        &mut self,
        pt: &mut dyn PageTable,
        addr: u64,
        len: u64,
        advice: u64,
    ) -> KResult<()> {
        let known = matches!(advice, 0..=4 | 8..=25 | madv::HWPOISON | madv::SOFT_OFFLINE);
        if !addr.is_multiple_of(PAGE_SIZE) || !known {
            return Err(Errno::EINVAL);
        }
        if matches!(advice, madv::HWPOISON | madv::SOFT_OFFLINE) {
            return Err(Errno::EPERM);
        }
        let len = page_up(len).ok_or(Errno::EINVAL)?;
        if len == 0 {
            return Ok(());
        }
        let end = addr.checked_add(len).ok_or(Errno::EINVAL)?;
        if end > USER_END {
            return Err(Errno::EINVAL);
        }
        if !self.is_mapped(addr, end) {
            return Err(Errno::ENOMEM);
        }
        match advice {
            madv::DONTNEED | madv::DONTNEED_LOCKED | madv::FREE | madv::REMOVE => {
                for (s, _, _) in self.pieces(addr, end) {
                    let shared = self.vmas[&s].shared;
                    if advice == madv::FREE && shared {
                        return Err(Errno::EINVAL);
                    }
                    if advice == madv::REMOVE && !shared {
                        return Err(Errno::EINVAL);
                    }
                }
                // Shared mappings keep their contents (Linux backs them with shmem, and
                // DONTNEED only drops the page-table entries): only private pages go.
                for (s, e, _) in self.pieces(addr, end) {
                    if !self.vmas[&s].shared || advice == madv::REMOVE {
                        pt.unmap_range(addr.max(s), end.min(e));
                    }
                }
                Ok(())
            }
            madv::POPULATE_READ | madv::POPULATE_WRITE => {
                let access = if advice == madv::POPULATE_READ {
                    Access::Read
                } else {
                    Access::Write
                };
                if self.pieces(addr, end).any(|r| !allows(r.2, access)) {
                    return Err(Errno::EFAULT);
                }
                self.fault_in(pt, addr, end)
            }
            _ => Ok(()),
        }
    }

    // ----- brk -----

    /// Sets where the heap starts (page-aligned end of the program's highest segment).
    pub fn init_brk(&mut self, start: u64) {
        self.brk_start = start;
        self.brk = start;
    }

    /// Where the heap starts.
    pub fn brk_start(&self) -> u64 {
        self.brk_start
    }

    /// The current program break.
    pub fn current_brk(&self) -> u64 {
        self.brk
    }

    /// Moves the program break (Linux `brk`) and returns the new one; on failure (below the
    /// heap's start, or growing into another mapping) returns the current break, as Linux.
    pub fn brk(&mut self, pt: &mut dyn PageTable, new: u64) -> u64 {
        if new < self.brk_start {
            return self.brk;
        }
        let (Some(old_top), Some(new_top)) = (page_up(self.brk), page_up(new)) else {
            return self.brk;
        };
        if new_top < old_top {
            self.remove_range(pt, new_top, old_top);
        } else if new_top > old_top {
            // Like Linux, keep a free page after the heap.
            let guard_ok = self.find(new_top).is_none()
                && self
                    .vmas
                    .range(new_top..new_top + PAGE_SIZE)
                    .next()
                    .is_none();
            if !self.is_free(old_top, new_top) || !guard_ok || self.room_for(pt, 1).is_err() {
                return self.brk;
            }
            self.vmas.insert(
                old_top,
                Vma {
                    end: new_top,
                    prot: Prot::RW,
                    kind: VmaKind::Heap,
                    shared: false,
                    offset: 0,
                },
            );
            self.coalesce(old_top, new_top);
        }
        self.brk = new;
        self.brk
    }

    // ----- /proc/self/maps -----

    /// The text of `/proc/self/maps`.
    pub fn maps_text(&self, exe_path: &str) -> String {
        self.try_maps_text(exe_path).unwrap_or_default()
    }

    /// The text of `/proc/self/maps`, or `ENOMEM` when the kernel has no memory for it (a
    /// program with tens of thousands of regions asks for megabytes).
    pub fn try_maps_text(&self, exe_path: &str) -> KResult<String> {
        fn name_of<'a>(v: &'a Vma, exe_path: &'a str) -> &'a str {
            match &v.kind {
                VmaKind::Program => exe_path,
                VmaKind::Heap => "[heap]",
                VmaKind::Stack => "[stack]",
                VmaKind::Vvar => "[vvar]",
                VmaKind::Vdso => "[vdso]",
                VmaKind::Anonymous => "",
                VmaKind::File(p) | VmaKind::SharedFile(p, _) => p.as_str(),
            }
        }
        // Each line is at most 74 bytes before the name, and a newline after it.
        let size: usize = self
            .vmas
            .values()
            .map(|v| 75 + name_of(v, exe_path).len())
            .sum();
        let mut out = String::new();
        out.try_reserve_exact(size).map_err(|_| Errno::ENOMEM)?;
        for (start, v) in &self.vmas {
            let name = name_of(v, exe_path);
            let line_start = out.len();
            // glibc reads this file at every program's start (`pthread_getattr_np` of the
            // main thread). Written digit by digit; against `write!` hello's run time did
            // not change measurably (34.3 against 34.5 ms, medians of 40 boots under TCG).
            push_hex(&mut out, *start);
            out.push('-');
            push_hex(&mut out, v.end);
            out.push(' ');
            out.push(if v.prot.read { 'r' } else { '-' });
            out.push(if v.prot.write { 'w' } else { '-' });
            out.push(if v.prot.exec { 'x' } else { '-' });
            out.push(if v.shared { 's' } else { 'p' });
            out.push(' ');
            push_hex(&mut out, v.offset);
            out.push_str(" 00:00 0 ");
            if !name.is_empty() {
                // Linux pads the path to column 73.
                while out.len() - line_start < 72 {
                    out.push(' ');
                }
                out.push(' ');
                out.push_str(name);
            }
            out.push('\n');
        }
        Ok(out)
    }
}

/// Appends `v` in lowercase hexadecimal, at least eight digits (`{:08x}`).
fn push_hex(out: &mut String, v: u64) {
    let digits = (64 - v.leading_zeros()).div_ceil(4).max(8);
    for i in (0..digits).rev() {
        let d = ((v >> (i * 4)) & 0xf) as u8;
        out.push(char::from(if d < 10 { b'0' + d } else { b'a' + d - 10 }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakePages;

    #[test]
    fn hex_is_what_format_writes() {
        for v in [
            0,
            1,
            0xabc,
            0xffff_ffff,
            0x1_0000_0000,
            0x7fff_ffff_f000,
            u64::MAX,
        ] {
            let mut s = String::new();
            push_hex(&mut s, v);
            assert_eq!(s, alloc::format!("{v:08x}"));
        }
    }

    const RESERVED: Range<u64> = 0x10_0000..0x40_0000;
    const R: Prot = Prot {
        read: true,
        write: false,
        exec: false,
    };
    const RX: Prot = Prot {
        read: true,
        write: false,
        exec: true,
    };
    const P: u64 = PAGE_SIZE;
    const ANON: u64 = MAP_PRIVATE | MAP_ANONYMOUS;

    fn setup() -> (AddressSpace, FakePages) {
        (AddressSpace::new(RESERVED), FakePages::default())
    }

    fn layout(vm: &AddressSpace) -> Vec<(u64, u64, Prot)> {
        vm.vmas().map(|(s, v)| (s, v.end, v.prot)).collect()
    }

    #[test]
    fn mmap_places_top_down_below_mmap_base() {
        let (mut vm, mut pt) = setup();
        let a = vm.mmap(&mut pt, 0, 3 * P, Prot::RW, ANON).unwrap();
        assert_eq!(a, MMAP_BASE - 3 * P);
        let b = vm.mmap(&mut pt, 0, 100, Prot::NONE, ANON).unwrap();
        assert_eq!(b, a - P);
        // Nothing is backed until touched.
        assert!(pt.pages.is_empty());
        // Freed space is reused.
        vm.munmap(&mut pt, a, 3 * P).unwrap();
        let c = vm.mmap(&mut pt, 0, 2 * P, R, ANON).unwrap();
        assert_eq!(c, MMAP_BASE - 2 * P);
    }

    #[test]
    fn mmap_argument_errors() {
        let (mut vm, mut pt) = setup();
        assert_eq!(vm.mmap(&mut pt, 0, 0, R, ANON), Err(Errno::EINVAL));
        assert_eq!(vm.mmap(&mut pt, 0, P, R, MAP_ANONYMOUS), Err(Errno::EINVAL));
        assert_eq!(vm.mmap(&mut pt, 0, u64::MAX, R, ANON), Err(Errno::ENOMEM));
        assert_eq!(vm.mmap(&mut pt, 0, 1 << 47, R, ANON), Err(Errno::ENOMEM));
        assert_eq!(
            vm.mmap(&mut pt, 0x1000_0001, P, R, ANON | MAP_FIXED),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            vm.mmap(&mut pt, 0x1000, P, R, ANON | MAP_FIXED),
            Err(Errno::EPERM)
        );
        assert_eq!(
            vm.mmap(&mut pt, 0x20_0000, P, R, ANON | MAP_FIXED),
            Err(Errno::EPERM)
        );
        assert_eq!(
            vm.mmap(&mut pt, USER_END, P, R, ANON | MAP_FIXED),
            Err(Errno::ENOMEM)
        );
        assert_eq!(
            vm.mmap(&mut pt, 0, P, R, ANON | MAP_HUGETLB),
            Err(Errno::ENOMEM)
        );
        assert_eq!(
            vm.mmap(
                &mut pt,
                0,
                P,
                R,
                MAP_SHARED_VALIDATE | MAP_ANONYMOUS | 0x200
            ),
            Err(Errno::EOPNOTSUPP)
        );
        // Accepted hints.
        let flags = ANON | MAP_NORESERVE | MAP_STACK | MAP_GROWSDOWN;
        assert!(vm.mmap(&mut pt, 0, P, Prot::RW, flags).is_ok());
        assert!(vm
            .mmap(&mut pt, 0, P, Prot::RW, MAP_SHARED | MAP_ANONYMOUS)
            .is_ok());
        assert!(vm.vmas().any(|(_, v)| v.shared));
    }

    #[test]
    fn hint_is_honoured_when_free() {
        let (mut vm, mut pt) = setup();
        let a = vm.mmap(&mut pt, 0x7000_0000, 2 * P, R, ANON).unwrap();
        assert_eq!(a, 0x7000_0000);
        // Unaligned hint rounds up.
        let b = vm.mmap(&mut pt, 0x6000_0001, P, R, ANON).unwrap();
        assert_eq!(b, 0x6000_1000);
        // Occupied hint: placed elsewhere, top-down.
        let c = vm.mmap(&mut pt, 0x7000_0000, P, R, ANON).unwrap();
        assert_eq!(c, MMAP_BASE - P);
        // A hint in the kernel's range is not honoured.
        let d = vm.mmap(&mut pt, 0x20_0000, P, Prot::RW, ANON).unwrap();
        assert_eq!(d, MMAP_BASE - 2 * P);
    }

    #[test]
    fn map_fixed_replaces_and_noreplace_refuses() {
        let (mut vm, mut pt) = setup();
        let a = vm
            .mmap(&mut pt, 0x5000_0000, 4 * P, Prot::RW, ANON)
            .unwrap();
        vm.copy_to_user(&mut pt, a + P, b"old").unwrap();
        assert_eq!(
            vm.mmap(&mut pt, a + P, P, R, ANON | MAP_FIXED_NOREPLACE),
            Err(Errno::EEXIST)
        );
        assert_eq!(
            vm.mmap(&mut pt, a + P, P, R, ANON | MAP_FIXED | MAP_FIXED_NOREPLACE),
            Err(Errno::EEXIST)
        );
        let b = vm.mmap(&mut pt, a + P, P, R, ANON | MAP_FIXED).unwrap();
        assert_eq!(b, a + P);
        assert_eq!(
            layout(&vm),
            vec![
                (a, a + P, Prot::RW),
                (a + P, a + 2 * P, R),
                (a + 2 * P, a + 4 * P, Prot::RW)
            ]
        );
        // The old page is gone: the new mapping reads zero.
        let mut buf = [9u8; 3];
        vm.copy_from_user(&mut pt, a + P, &mut buf).unwrap();
        assert_eq!(buf, [0; 3]);
        let c = vm
            .mmap(&mut pt, 0x5100_0000, P, R, ANON | MAP_FIXED_NOREPLACE)
            .unwrap();
        assert_eq!(c, 0x5100_0000);
    }

    #[test]
    fn map_32bit_and_populate() {
        let (mut vm, mut pt) = setup();
        let a = vm.mmap(&mut pt, 0, P, R, ANON | MAP_32BIT).unwrap();
        assert!((0x4000_0000..0x8000_0000).contains(&a));
        let b = vm
            .mmap(&mut pt, 0, 3 * P, Prot::RW, ANON | MAP_POPULATE)
            .unwrap();
        assert_eq!(pt.pages.range(b..b + 3 * P).count(), 3);
        // Populate failing for want of frames does not fail the mapping.
        pt.budget = Some(1);
        let c = vm
            .mmap(&mut pt, 0, 3 * P, Prot::RW, ANON | MAP_POPULATE)
            .unwrap();
        assert_eq!(pt.pages.range(c..c + 3 * P).count(), 1);
    }

    #[test]
    fn adjacent_anonymous_regions_merge() {
        let (mut vm, mut pt) = setup();
        let a = vm.mmap(&mut pt, 0, P, Prot::RW, ANON).unwrap();
        let b = vm.mmap(&mut pt, 0, P, Prot::RW, ANON).unwrap();
        assert_eq!(b, a - P);
        assert_eq!(layout(&vm), vec![(b, a + P, Prot::RW)]);
    }

    #[test]
    fn munmap_splits_and_frees() {
        let (mut vm, mut pt) = setup();
        let a = vm
            .mmap(&mut pt, 0x5000_0000, 4 * P, Prot::RW, ANON)
            .unwrap();
        vm.populate_range(&mut pt, a, a + 4 * P, Access::Write)
            .unwrap();
        vm.munmap(&mut pt, a + P, 2 * P).unwrap();
        assert_eq!(
            layout(&vm),
            vec![(a, a + P, Prot::RW), (a + 3 * P, a + 4 * P, Prot::RW)]
        );
        assert_eq!(
            pt.pages.keys().copied().collect::<Vec<_>>(),
            vec![a, a + 3 * P]
        );
        // Holes and repeated unmaps are fine.
        vm.munmap(&mut pt, a, 10 * P).unwrap();
        assert!(layout(&vm).is_empty() && pt.pages.is_empty());
        assert_eq!(vm.munmap(&mut pt, a + 1, P), Err(Errno::EINVAL));
        assert_eq!(vm.munmap(&mut pt, a, 0), Err(Errno::EINVAL));
        assert_eq!(vm.munmap(&mut pt, USER_END - P, 2 * P), Err(Errno::EINVAL));
        assert_eq!(vm.munmap(&mut pt, a, u64::MAX), Err(Errno::EINVAL));
    }

    #[test]
    fn mprotect_splits_applies_and_merges_back() {
        let (mut vm, mut pt) = setup();
        let a = vm
            .mmap(&mut pt, 0x5000_0000, 4 * P, Prot::NONE, ANON)
            .unwrap();
        // A thread stack: PROT_NONE reservation, then the upper part made usable.
        vm.mprotect(&mut pt, a + P, 3 * P, Prot::RW).unwrap();
        assert_eq!(
            layout(&vm),
            vec![(a, a + P, Prot::NONE), (a + P, a + 4 * P, Prot::RW)]
        );
        vm.copy_to_user(&mut pt, a + 2 * P, b"x").unwrap();
        vm.mprotect(&mut pt, a + 2 * P, 1, R).unwrap();
        assert_eq!(pt.pages[&(a + 2 * P)].1, R);
        assert_eq!(layout(&vm).len(), 4);
        vm.mprotect(&mut pt, a + 2 * P, P, Prot::RW).unwrap();
        assert_eq!(
            layout(&vm),
            vec![(a, a + P, Prot::NONE), (a + P, a + 4 * P, Prot::RW)]
        );
        // Errors: alignment, holes (nothing changes), zero length is a no-op.
        assert_eq!(vm.mprotect(&mut pt, a + 1, P, R), Err(Errno::EINVAL));
        assert_eq!(vm.mprotect(&mut pt, a, 5 * P, R), Err(Errno::ENOMEM));
        assert_eq!(vm.mprotect(&mut pt, 0x6000_0000, P, R), Err(Errno::ENOMEM));
        assert_eq!(layout(&vm)[0].2, Prot::NONE);
        assert_eq!(vm.mprotect(&mut pt, 0x6000_0000, 0, R), Ok(()));
    }

    #[test]
    fn demand_faults_follow_region_rights() {
        let (mut vm, mut pt) = setup();
        let rw = vm.mmap(&mut pt, 0x5000_0000, P, Prot::RW, ANON).unwrap();
        let rx = vm.mmap(&mut pt, 0x5100_0000, P, RX, ANON).unwrap();
        let none = vm.mmap(&mut pt, 0x5200_0000, P, Prot::NONE, ANON).unwrap();
        assert_eq!(vm.handle_fault(&mut pt, rw + 8, Access::Write), Ok(()));
        assert_eq!(pt.pages[&rw].1, Prot::RW);
        assert_eq!(
            vm.handle_fault(&mut pt, rw, Access::Exec),
            Err(Fault::Denied)
        );
        assert_eq!(vm.handle_fault(&mut pt, rx + 1, Access::Exec), Ok(()));
        assert_eq!(vm.handle_fault(&mut pt, rx, Access::Read), Ok(()));
        assert_eq!(
            vm.handle_fault(&mut pt, rx, Access::Write),
            Err(Fault::Denied)
        );
        assert_eq!(
            vm.handle_fault(&mut pt, none, Access::Read),
            Err(Fault::Denied)
        );
        assert_eq!(
            vm.handle_fault(&mut pt, 0x5300_0000, Access::Read),
            Err(Fault::Unmapped)
        );
        assert_eq!(
            vm.handle_fault(&mut pt, 0, Access::Read),
            Err(Fault::Unmapped)
        );
        assert_eq!(Fault::Unmapped.si_code(), 1);
        assert_eq!(Fault::Denied.si_code(), 2);
        assert_eq!(Fault::Denied.signal(), 11);
        assert_eq!(
            alloc::format!("{}", Fault::Unmapped),
            "address not mapped (SEGV_MAPERR)"
        );
        // Out of frames.
        pt.budget = Some(0);
        let more = vm.mmap(&mut pt, 0x5400_0000, P, Prot::RW, ANON).unwrap();
        assert_eq!(
            vm.handle_fault(&mut pt, more, Access::Read),
            Err(Fault::OutOfMemory)
        );
        assert_eq!(Fault::OutOfMemory.signal(), 9);
    }

    #[test]
    fn copies_check_rights_and_bounds() {
        let (mut vm, mut pt) = setup();
        let a = vm
            .mmap(&mut pt, 0x5000_0000, 2 * P, Prot::RW, ANON)
            .unwrap();
        let r = vm.mmap(&mut pt, a + 2 * P, P, R, ANON | MAP_FIXED).unwrap();
        // Across a page boundary.
        vm.copy_to_user(&mut pt, a + P - 2, b"abcd").unwrap();
        let mut buf = [0u8; 4];
        vm.copy_from_user(&mut pt, a + P - 2, &mut buf).unwrap();
        assert_eq!(&buf, b"abcd");
        // Across regions with different rights: reading is fine, writing is not.
        let mut buf = [1u8; 8];
        vm.copy_from_user(&mut pt, r - 4, &mut buf).unwrap();
        assert_eq!(buf, [0; 8]);
        assert_eq!(vm.copy_to_user(&mut pt, r - 4, &[0; 8]), Err(Errno::EFAULT));
        assert_eq!(vm.copy_to_user(&mut pt, r, b"x"), Err(Errno::EFAULT));
        // Unmapped, wrapping, beyond user space, kernel memory.
        assert_eq!(
            vm.copy_from_user(&mut pt, r + P, &mut buf),
            Err(Errno::EFAULT)
        );
        assert_eq!(
            vm.copy_from_user(&mut pt, u64::MAX - 3, &mut buf),
            Err(Errno::EFAULT)
        );
        assert_eq!(
            vm.copy_from_user(&mut pt, 0xffff_8000_0000_0000, &mut buf),
            Err(Errno::EFAULT)
        );
        assert_eq!(
            vm.copy_from_user(&mut pt, 0x20_0000, &mut buf),
            Err(Errno::EFAULT)
        );
        assert_eq!(vm.copy_to_user(&mut pt, 0, &[1]), Err(Errno::EFAULT));
        // Empty copies always succeed.
        assert_eq!(vm.copy_to_user(&mut pt, 0, &[]), Ok(()));
        // Out of frames turns into EFAULT.
        let n = vm.mmap(&mut pt, 0x5800_0000, P, Prot::RW, ANON).unwrap();
        pt.budget = Some(0);
        assert_eq!(vm.copy_to_user(&mut pt, n, b"x"), Err(Errno::EFAULT));
    }

    #[test]
    fn read_cstr_stops_at_nul_and_limits() {
        let (mut vm, mut pt) = setup();
        let a = vm.mmap(&mut pt, 0x5000_0000, P, Prot::RW, ANON).unwrap();
        vm.copy_to_user(&mut pt, a + P - 6, b"hello\0").unwrap();
        // The string ends exactly at the end of the mapping: nothing after it is read.
        assert_eq!(vm.read_cstr(&mut pt, a + P - 6, 4096).unwrap(), b"hello");
        assert_eq!(vm.read_cstr(&mut pt, a + P - 6, 5).unwrap(), b"hello");
        assert_eq!(
            vm.read_cstr(&mut pt, a + P - 6, 4),
            Err(Errno::ENAMETOOLONG)
        );
        assert_eq!(vm.read_cstr(&mut pt, a + P - 3, 100), Ok(b"lo".to_vec()));
        // No NUL before the end of the mapping.
        vm.copy_to_user(&mut pt, a + P - 1, b"x").unwrap();
        assert_eq!(vm.read_cstr(&mut pt, a + P - 1, 100), Err(Errno::EFAULT));
        assert_eq!(vm.read_cstr(&mut pt, 0x10, 100), Err(Errno::EFAULT));
        assert_eq!(vm.read_cstr(&mut pt, u64::MAX, 100), Err(Errno::EFAULT));
        assert_eq!(vm.read_cstr(&mut pt, a, 0), Ok(Vec::new()));
    }

    #[test]
    fn populate_ignores_rights_but_not_holes() {
        let (mut vm, mut pt) = setup();
        let a = vm.mmap(&mut pt, 0x5000_0000, 2 * P, R, ANON).unwrap();
        vm.populate(&mut pt, a + P - 1, b"ab").unwrap();
        assert_eq!(pt.pages[&a].1, R);
        let mut buf = [0u8; 2];
        vm.copy_from_user(&mut pt, a + P - 1, &mut buf).unwrap();
        assert_eq!(&buf, b"ab");
        assert_eq!(
            vm.populate(&mut pt, a + 2 * P - 1, b"ab"),
            Err(Errno::EFAULT)
        );
        pt.budget = Some(0);
        let b = vm.mmap(&mut pt, 0x5100_0000, P, R, ANON).unwrap();
        assert_eq!(vm.populate(&mut pt, b, b"x"), Err(Errno::ENOMEM));
    }

    #[test]
    fn mmap_file_copies_bytes_and_names_region() {
        let (mut vm, mut pt) = setup();
        let a = vm
            .mmap_file(
                &mut pt,
                0,
                2 * P,
                R,
                MAP_PRIVATE,
                "/etc/data".into(),
                0x2000,
                b"file!",
            )
            .unwrap();
        let mut buf = [0u8; 6];
        vm.copy_from_user(&mut pt, a, &mut buf).unwrap();
        assert_eq!(&buf, b"file!\0");
        let maps = vm.maps_text("/app");
        assert!(
            maps.contains(" r--p 00002000 00:00 0 ") && maps.ends_with(" /etc/data\n"),
            "{maps}"
        );
        let s = vm
            .mmap_file(&mut pt, 0, P, R, MAP_SHARED, "/etc/data".into(), 0, b"s")
            .unwrap();
        assert_eq!(vm.mprotect(&mut pt, s, P, Prot::RW), Err(Errno::EACCES));
        assert_eq!(vm.mprotect(&mut pt, a, P, Prot::RW), Ok(()));
        assert_eq!(
            vm.mmap_file(&mut pt, 0, P, R, MAP_PRIVATE, "/x".into(), 1, b""),
            Err(Errno::EINVAL)
        );
        // No frame for the data: the mapping is undone.
        pt.budget = Some(0);
        let before = layout(&vm);
        assert_eq!(
            vm.mmap_file(&mut pt, 0, P, R, MAP_PRIVATE, "/x".into(), 0, b"y"),
            Err(Errno::ENOMEM)
        );
        assert_eq!(layout(&vm), before);
    }

    #[test]
    fn mremap_shrinks_grows_in_place_and_moves() {
        let (mut vm, mut pt) = setup();
        let a = vm
            .mmap(&mut pt, 0x5000_0000, 4 * P, Prot::RW, ANON)
            .unwrap();
        vm.copy_to_user(&mut pt, a, b"keep").unwrap();
        vm.copy_to_user(&mut pt, a + 3 * P, b"tail").unwrap();
        // Shrink drops the tail pages.
        assert_eq!(vm.mremap(&mut pt, a, 4 * P, 2 * P, 0, 0), Ok(a));
        assert!(!pt.pages.contains_key(&(a + 3 * P)));
        // Grow in place when the space after is free.
        assert_eq!(vm.mremap(&mut pt, a, 2 * P, 8 * P, 0, 0), Ok(a));
        assert_eq!(layout(&vm), vec![(a, a + 8 * P, Prot::RW)]);
        // Blocked: ENOMEM without MAYMOVE, a move with it.
        vm.mmap(&mut pt, a + 8 * P, P, R, ANON | MAP_FIXED).unwrap();
        assert_eq!(
            vm.mremap(&mut pt, a, 8 * P, 16 * P, 0, 0),
            Err(Errno::ENOMEM)
        );
        let b = vm
            .mremap(&mut pt, a, 8 * P, 16 * P, MREMAP_MAYMOVE, 0)
            .unwrap();
        assert_ne!(b, a);
        let mut buf = [0u8; 4];
        vm.copy_from_user(&mut pt, b, &mut buf).unwrap();
        assert_eq!(&buf, b"keep");
        assert!(vm.find(a).is_none());
        assert_eq!(vm.find(b).unwrap().1.end, b + 16 * P);
        // Fixed move.
        let c = vm
            .mremap(
                &mut pt,
                b,
                16 * P,
                2 * P,
                MREMAP_MAYMOVE | MREMAP_FIXED,
                0x6000_0000,
            )
            .unwrap();
        assert_eq!(c, 0x6000_0000);
        vm.copy_from_user(&mut pt, c, &mut buf).unwrap();
        assert_eq!(&buf, b"keep");
        assert!(vm.find(b).is_none());
        // Don't-unmap move leaves an empty region behind.
        let d = vm
            .mremap(
                &mut pt,
                c,
                2 * P,
                2 * P,
                MREMAP_MAYMOVE | MREMAP_DONTUNMAP,
                0,
            )
            .unwrap();
        vm.copy_from_user(&mut pt, d, &mut buf).unwrap();
        assert_eq!(&buf, b"keep");
        vm.copy_from_user(&mut pt, c, &mut buf).unwrap();
        assert_eq!(buf, [0; 4]);
    }

    #[test]
    fn mremap_errors() {
        let (mut vm, mut pt) = setup();
        let a = vm
            .mmap(&mut pt, 0x5000_0000, 2 * P, Prot::RW, ANON)
            .unwrap();
        assert_eq!(vm.mremap(&mut pt, a + 1, P, P, 0, 0), Err(Errno::EINVAL));
        assert_eq!(vm.mremap(&mut pt, a, P, P, 8, 0), Err(Errno::EINVAL));
        assert_eq!(
            vm.mremap(&mut pt, a, P, P, MREMAP_FIXED, 0),
            Err(Errno::EINVAL)
        );
        assert_eq!(vm.mremap(&mut pt, a, P, 0, 0, 0), Err(Errno::EINVAL));
        assert_eq!(vm.mremap(&mut pt, a, 0, P, 0, 0), Err(Errno::EINVAL));
        assert_eq!(
            vm.mremap(&mut pt, a, P, 2 * P, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            vm.mremap(&mut pt, 0x6000_0000, P, 2 * P, 0, 0),
            Err(Errno::EFAULT)
        );
        assert_eq!(
            vm.mremap(&mut pt, a, 3 * P, 4 * P, 0, 0),
            Err(Errno::EFAULT)
        );
        let fixed = MREMAP_MAYMOVE | MREMAP_FIXED;
        assert_eq!(
            vm.mremap(&mut pt, a, 2 * P, 2 * P, fixed, a + P),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            vm.mremap(&mut pt, a, P, P, fixed, 0x6000_0001),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            vm.mremap(&mut pt, a, P, P, fixed, 0x20_0000),
            Err(Errno::EPERM)
        );
    }

    #[test]
    fn madvise_dontneed_zeroes_private_pages_only() {
        let (mut vm, mut pt) = setup();
        let a = vm
            .mmap(&mut pt, 0x5000_0000, 2 * P, Prot::RW, ANON)
            .unwrap();
        let s = vm
            .mmap(
                &mut pt,
                0x5100_0000,
                P,
                Prot::RW,
                MAP_SHARED | MAP_ANONYMOUS,
            )
            .unwrap();
        vm.copy_to_user(&mut pt, a, b"data").unwrap();
        vm.copy_to_user(&mut pt, s, b"shrd").unwrap();
        vm.madvise(&mut pt, a, 2 * P, madv::DONTNEED).unwrap();
        vm.madvise(&mut pt, s, P, madv::DONTNEED).unwrap();
        let mut buf = [0u8; 4];
        vm.copy_from_user(&mut pt, a, &mut buf).unwrap();
        assert_eq!(buf, [0; 4]);
        vm.copy_from_user(&mut pt, s, &mut buf).unwrap();
        assert_eq!(&buf, b"shrd");
        vm.copy_to_user(&mut pt, a, b"more").unwrap();
        vm.madvise(&mut pt, a, P, madv::FREE).unwrap();
        assert!(!pt.pages.contains_key(&a));
        assert_eq!(vm.madvise(&mut pt, s, P, madv::FREE), Err(Errno::EINVAL));
        assert_eq!(vm.madvise(&mut pt, a, P, madv::REMOVE), Err(Errno::EINVAL));
        // Hints, populate, errors.
        vm.madvise(&mut pt, a, 2 * P, 14).unwrap();
        vm.madvise(&mut pt, a, 2 * P, madv::POPULATE_WRITE).unwrap();
        assert!(pt.pages.contains_key(&(a + P)));
        assert_eq!(
            vm.madvise(&mut pt, a + 1, P, madv::DONTNEED),
            Err(Errno::EINVAL)
        );
        assert_eq!(vm.madvise(&mut pt, a, P, 77), Err(Errno::EINVAL));
        assert_eq!(
            vm.madvise(&mut pt, a, 3 * P, madv::NORMAL),
            Err(Errno::ENOMEM)
        );
        assert_eq!(vm.madvise(&mut pt, a, P, madv::HWPOISON), Err(Errno::EPERM));
        assert_eq!(vm.madvise(&mut pt, a, 0, madv::DONTNEED), Ok(()));
        let n = vm.mmap(&mut pt, 0x5200_0000, P, Prot::NONE, ANON).unwrap();
        assert_eq!(
            vm.madvise(&mut pt, n, P, madv::POPULATE_READ),
            Err(Errno::EFAULT)
        );
    }

    #[test]
    fn brk_grows_shrinks_and_refuses() {
        let (mut vm, mut pt) = setup();
        vm.init_brk(0x60_0000);
        assert_eq!(vm.brk(&mut pt, 0), 0x60_0000);
        assert_eq!(vm.brk(&mut pt, 0x60_0010), 0x60_0010);
        assert_eq!(layout(&vm), vec![(0x60_0000, 0x60_1000, Prot::RW)]);
        assert_eq!(vm.brk(&mut pt, 0x62_1000), 0x62_1000);
        assert_eq!(layout(&vm), vec![(0x60_0000, 0x62_1000, Prot::RW)]);
        vm.copy_to_user(&mut pt, 0x62_0000, b"x").unwrap();
        // Shrink: pages above the break go.
        assert_eq!(vm.brk(&mut pt, 0x61_0800), 0x61_0800);
        assert!(!pt.pages.contains_key(&0x62_0000));
        assert_eq!(vm.current_brk(), 0x61_0800);
        // Below the start: refused, current break returned.
        assert_eq!(vm.brk(&mut pt, 0x50_0000), 0x61_0800);
        // Growing into another mapping (or its guard page) is refused.
        vm.mmap(&mut pt, 0x70_0000, P, R, ANON | MAP_FIXED).unwrap();
        assert_eq!(vm.brk(&mut pt, 0x70_0000), 0x61_0800);
        assert_eq!(vm.brk(&mut pt, 0x6f_f000), 0x6f_f000);
        assert_eq!(vm.brk(&mut pt, u64::MAX), 0x6f_f000);
        // Back to empty.
        assert_eq!(vm.brk(&mut pt, 0x60_0000), 0x60_0000);
        assert_eq!(layout(&vm).len(), 1);
        assert!(vm.maps_text("/app").lines().all(|l| !l.contains("[heap]")));
    }

    #[test]
    fn maps_text_matches_linux_format() {
        let (mut vm, mut pt) = setup();
        vm.insert(
            0x40_0000,
            Vma {
                end: 0x40_1000,
                prot: R,
                kind: VmaKind::Program,
                shared: false,
                offset: 0,
            },
        )
        .unwrap();
        vm.insert(
            0x40_1000,
            Vma {
                end: 0x40_3000,
                prot: RX,
                kind: VmaKind::Program,
                shared: false,
                offset: 0x1000,
            },
        )
        .unwrap();
        vm.init_brk(0x40_4000);
        vm.brk(&mut pt, 0x40_5000);
        vm.insert(
            STACK_TOP - STACK_SIZE,
            Vma {
                end: STACK_TOP,
                prot: Prot::RW,
                kind: VmaKind::Stack,
                shared: false,
                offset: 0,
            },
        )
        .unwrap();
        vm.mmap(&mut pt, 0, P, Prot::RW, ANON).unwrap();
        let text = vm.maps_text("/bin/app");
        let expected = "\
00400000-00401000 r--p 00000000 00:00 0                                  /bin/app
00401000-00403000 r-xp 00001000 00:00 0                                  /bin/app
00404000-00405000 rw-p 00000000 00:00 0                                  [heap]
7ffff7ffe000-7ffff7fff000 rw-p 00000000 00:00 0 
7fffff7ff000-7ffffffff000 rw-p 00000000 00:00 0                          [stack]
";
        assert_eq!(text, expected);
        assert_eq!(vm.stack(), Some(STACK_TOP - STACK_SIZE..STACK_TOP));
        // Inserting over the kernel or an existing region is refused.
        let v = Vma {
            end: 0x20_1000,
            prot: R,
            kind: VmaKind::Anonymous,
            shared: false,
            offset: 0,
        };
        assert_eq!(vm.insert(0x20_0000, v.clone()), Err(Errno::EPERM));
        let v = Vma {
            end: 0x40_2000,
            ..v
        };
        assert_eq!(vm.insert(0x40_1000, v), Err(Errno::EEXIST));
    }

    #[test]
    fn clear_and_residency() {
        let (mut vm, mut pt) = setup();
        let a = vm
            .mmap(&mut pt, 0x5000_0000, 3 * P, Prot::RW, ANON)
            .unwrap();
        vm.copy_to_user(&mut pt, a + P, b"x").unwrap();
        assert_eq!(vm.residency(&pt, a, a + 3 * P), Ok(vec![0, 1, 0]));
        assert_eq!(vm.residency(&pt, a, a + 4 * P), Err(Errno::ENOMEM));
        vm.clear(&mut pt);
        assert!(pt.pages.is_empty() && vm.vmas().next().is_none());
    }
    #[test]
    fn mprotect_out_of_frames_is_enomem_not_a_crash() {
        let (mut vm, mut pt) = setup();
        let a = vm.mmap(&mut pt, 0, 4 * P, R, ANON).unwrap();
        vm.copy_to_user(&mut pt, a, b"x").unwrap_err();
        vm.populate(&mut pt, a, b"x").unwrap();
        pt.out_of_frames = true;
        // A split needs a new region: refused before anything changes.
        assert_eq!(vm.mprotect(&mut pt, a + P, P, Prot::RW), Err(Errno::ENOMEM));
        assert_eq!(layout(&vm), vec![(a, a + 4 * P, R)]);
        assert_eq!(pt.pages[&a].1, R);
        // The whole region needs no split; the page tables fail (no frame for a copy).
        assert_eq!(vm.mprotect(&mut pt, a, 4 * P, Prot::RW), Err(Errno::ENOMEM));
        // The region says RW; the page catches up when memory is back.
        assert_eq!(
            vm.handle_fault(&mut pt, a, Access::Write),
            Err(Fault::OutOfMemory)
        );
        pt.out_of_frames = false;
        vm.handle_fault(&mut pt, a, Access::Write).unwrap();
        assert_eq!(pt.pages[&a].1, Prot::RW);
    }

    #[test]
    fn mremap_that_cannot_move_keeps_the_mapping() {
        let (mut vm, mut pt) = setup();
        let a = vm.mmap(&mut pt, 0, 2 * P, Prot::RW, ANON).unwrap();
        vm.copy_to_user(&mut pt, a, b"kept").unwrap();
        // Something right after it, so growing must move.
        vm.mmap(&mut pt, a + 2 * P, P, R, ANON | MAP_FIXED).unwrap();
        pt.out_of_frames = true;
        assert_eq!(
            vm.mremap(&mut pt, a, 2 * P, 8 * P, MREMAP_MAYMOVE, 0),
            Err(Errno::ENOMEM)
        );
        assert_eq!(layout(&vm)[0], (a, a + 2 * P, Prot::RW));
        let mut b = [0u8; 4];
        vm.copy_from_user(&mut pt, a, &mut b).unwrap();
        assert_eq!(&b, b"kept");
        // Shrinking frees memory: it works even now.
        assert_eq!(vm.mremap(&mut pt, a, 2 * P, P, 0, 0), Ok(a));
        // Unmapping a whole region too; only splitting one is refused.
        let c = vm.mmap(&mut pt, 0x6000_0000, 3 * P, R, ANON | MAP_FIXED);
        assert_eq!(c, Err(Errno::ENOMEM), "a new region needs memory");
        pt.out_of_frames = false;
        let c = vm
            .mmap(&mut pt, 0x6000_0000, 3 * P, R, ANON | MAP_FIXED)
            .unwrap();
        pt.out_of_frames = true;
        // Giving memory back works even when it splits a region.
        assert_eq!(vm.munmap(&mut pt, c + P, P), Ok(()));
        assert_eq!(vm.munmap(&mut pt, c, 3 * P), Ok(()));
    }

    #[test]
    fn move_range_failure_in_the_page_tables_keeps_the_region() {
        // The page tables fail although bookkeeping had room (a race with the reserve).
        struct Refusing(FakePages);
        impl PageTable for Refusing {
            fn map_zeroed(&mut self, page: u64, prot: Prot) -> KResult<()> {
                self.0.map_zeroed(page, prot)
            }
            fn map_borrowed(&mut self, p: u64, b: &'static [u8], prot: Prot) -> KResult<bool> {
                self.0.map_borrowed(p, b, prot)
            }
            fn query(&self, addr: u64) -> Option<Prot> {
                self.0.query(addr)
            }
            fn unmap_range(&mut self, start: u64, end: u64) {
                self.0.unmap_range(start, end)
            }
            fn protect_range(&mut self, _: u64, _: u64, _: Prot) -> KResult<()> {
                Err(Errno::ENOMEM)
            }
            fn move_range(&mut self, _: u64, _: u64, _: u64) -> KResult<()> {
                Err(Errno::ENOMEM)
            }
            fn read(&self, addr: u64, buf: &mut [u8]) {
                self.0.read(addr, buf)
            }
            fn write(&mut self, addr: u64, data: &[u8]) {
                self.0.write(addr, data)
            }
            // Copies take the careful way.
            fn read_if_readable(&self, _: u64, _: &mut [u8]) -> bool {
                false
            }
            fn write_if_writable(&mut self, _: u64, _: &[u8]) -> bool {
                false
            }
        }
        let (mut vm, pt) = setup();
        let mut pt = Refusing(pt);
        let a = vm.mmap(&mut pt, 0, 3 * P, Prot::RW, ANON).unwrap();
        vm.copy_to_user(&mut pt, a + P, b"mid").unwrap();
        let moved = vm.mremap(
            &mut pt,
            a + P,
            P,
            P,
            MREMAP_MAYMOVE | MREMAP_FIXED,
            0x6000_0000,
        );
        assert_eq!(moved, Err(Errno::ENOMEM));
        assert_eq!(layout(&vm), vec![(a, a + 3 * P, Prot::RW)], "split undone");
        let mut b = [0u8; 3];
        vm.copy_from_user(&mut pt, a + P, &mut b).unwrap();
        assert_eq!(&b, b"mid");
    }

    #[test]
    fn a_small_machine_has_fewer_regions() {
        let (mut vm, mut pt) = setup();
        vm.set_max_regions(100);
        let a = vm.mmap(&mut pt, 0, 400 * P, Prot::NONE, ANON).unwrap();
        let mut made = 0;
        while vm.mprotect(&mut pt, a + 2 * made * P, P, R).is_ok() {
            made += 1;
        }
        assert!(vm.vmas().count() <= 100);
        assert!(made >= 45, "{made}");
    }

    #[test]
    fn regions_stop_at_max_map_count() {
        let (mut vm, mut pt) = setup();
        let n = MAX_MAP_COUNT as u64 + 10;
        let a = vm.mmap(&mut pt, 0, 2 * n * P, Prot::NONE, ANON).unwrap();
        let mut err = None;
        for i in 0..n {
            if let Err(e) = vm.mprotect(&mut pt, a + 2 * i * P, P, R) {
                err = Some((i, e));
                break;
            }
        }
        let (i, e) = err.expect("mprotect fails before the limit is passed");
        assert_eq!(e, Errno::ENOMEM);
        assert!(vm.vmas().count() <= MAX_MAP_COUNT, "{i}");
        assert!(vm.vmas().count() >= MAX_MAP_COUNT - 2, "{i}");
        assert_eq!(vm.mmap(&mut pt, 0, P, R, ANON), Err(Errno::ENOMEM));
        let full = vm.vmas().count();
        let last = vm.vmas().last().map(|(s, v)| (s, v.end)).unwrap();
        if last.1 - last.0 > P {
            assert_eq!(
                vm.munmap(&mut pt, last.0 + P, P).is_err(),
                full == MAX_MAP_COUNT
            );
        }
        // Merging back frees room.
        vm.mprotect(&mut pt, a, 2 * n * P, Prot::NONE).unwrap();
        assert_eq!(vm.vmas().count(), 1);
        vm.mmap(&mut pt, 0, P, R, ANON).unwrap();
    }
    #[test]
    fn maps_text_fits_its_reservation() {
        let (mut vm, mut pt) = setup();
        let a = vm.mmap(&mut pt, 0, 64 * P, Prot::NONE, ANON).unwrap();
        for i in 0..32 {
            vm.mprotect(&mut pt, a + 2 * i * P, P, R).unwrap();
        }
        vm.mmap_file(
            &mut pt,
            0,
            P,
            R,
            MAP_PRIVATE,
            "/a/long/file/name".into(),
            0,
            b"x",
        )
        .unwrap();
        let text = vm.try_maps_text("/bin/app").unwrap();
        assert_eq!(text.lines().count(), vm.vmas().count());
        let bound: usize = vm
            .vmas()
            .map(|(_, v)| 75 + matches!(v.kind, VmaKind::File(_)) as usize * 17)
            .sum();
        assert!(text.len() <= bound, "{} > {bound}", text.len());
    }
    #[test]
    fn root_file_pages_are_mapped_in_place_unless_writable() {
        let (mut vm, mut pt) = setup();
        // A file of two and a half pages.
        let mut bytes = alloc::vec![0u8; (2 * P + P / 2) as usize];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (i / P as usize) as u8 + 1;
        }
        let file: &'static [u8] = bytes.leak();
        let name = || String::from("/lib/libx.so");
        // Read-only over more than the file (as the loader reserves a library's span):
        // whole pages in place, the partial last page copied, the rest zero on demand.
        let a = vm
            .mmap_file_in_place(&mut pt, 0, 4 * P, R, MAP_PRIVATE, name(), 0, file)
            .unwrap();
        assert_eq!(pt.borrowed, 2);
        let mut b = [0u8; 1];
        vm.copy_from_user(&mut pt, a + P, &mut b).unwrap();
        assert_eq!(b, [2]);
        let mut tail = [9u8; 2];
        vm.copy_from_user(&mut pt, a + 2 * P + P / 2 - 1, &mut tail)
            .unwrap();
        assert_eq!(tail, [3, 0]);
        assert!(!pt.pages.contains_key(&(a + 3 * P)));
        assert_eq!(vm.handle_fault(&mut pt, a + 3 * P, Access::Read), Ok(()));
        // MAP_FIXED over the reservation at an offset, writable (a data segment): copied,
        // and private.
        let d = vm
            .mmap_file_in_place(
                &mut pt,
                a + P,
                P,
                Prot::RW,
                MAP_PRIVATE | MAP_FIXED,
                name(),
                P,
                file,
            )
            .unwrap();
        assert_eq!((d, pt.borrowed), (a + P, 2));
        vm.copy_to_user(&mut pt, d, b"w").unwrap();
        assert_eq!(file[P as usize], 2, "the file is never written");
        // RELRO: read-only afterwards, the written byte stays.
        vm.mprotect(&mut pt, d, P, R).unwrap();
        vm.copy_from_user(&mut pt, d, &mut b).unwrap();
        assert_eq!(b, *b"w");
        // /proc/self/maps names the file (one region again: same file, same rights,
        // contiguous offsets, as Linux merges them).
        let maps = vm.maps_text("/bin/app");
        assert!(
            maps.lines()
                .any(|l| l.contains("r--p 00000000") && l.ends_with("/lib/libx.so")),
            "{maps}"
        );
        // Offsets past the end of the file map zeros; unaligned offsets are refused.
        let z = vm
            .mmap_file_in_place(&mut pt, 0, P, R, MAP_PRIVATE, name(), 8 * P, file)
            .unwrap();
        vm.copy_from_user(&mut pt, z, &mut b).unwrap();
        assert_eq!(b, [0]);
        assert_eq!(
            vm.mmap_file_in_place(&mut pt, 0, P, R, MAP_PRIVATE, name(), 1, file),
            Err(Errno::EINVAL)
        );
    }

    #[test]
    fn copy_to_user_makes_read_only_pages_of_a_writable_region_private_first() {
        let (mut vm, mut pt) = setup();
        let a = vm.mmap(&mut pt, 0, 2 * P, Prot::RW, ANON).unwrap();
        vm.copy_to_user(&mut pt, a, b"x").unwrap();
        // As a program page mapped in place: present, read-only, in a writable region.
        pt.pages.get_mut(&a).unwrap().1 = R;
        pt.out_of_frames = true;
        assert_eq!(vm.copy_to_user(&mut pt, a, b"y"), Err(Errno::EFAULT));
        pt.out_of_frames = false;
        vm.copy_to_user(&mut pt, a, b"y").unwrap();
        assert_eq!(pt.pages[&a].1, Prot::RW);
    }
}
