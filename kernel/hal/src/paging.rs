//! Page tables: the kernel's final tables, and the operations on user mappings.
//!
//! Layout of the one address space:
//! - `[0, 2^47)`: the program, with 4 KiB user pages; the kernel image sits in this half too,
//!   identity-mapped at its physical address (1 MiB up) with supervisor-only pages, so the
//!   program cannot touch it.
//! - [`crate::DIRECT_MAP`]: all physical memory below 4 GiB (RAM and device windows),
//!   supervisor-only, never executable.

use crate::cpu::{invlpg, set_cr3};
use crate::frames::{alloc_user_zeroed, alloc_zeroed, FRAMES};
use crate::{phys_to_virt, PAGE_SIZE};

const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const HUGE: u64 = 1 << 7;
const GLOBAL: u64 = 1 << 8;
/// Software bit: a user page Kiln mapped, possibly with no access (PROT_NONE).
const KILN_MAPPED: u64 = 1 << 9;
/// Software bit: the frame is borrowed (the program image in the payload), never freed.
const BORROWED: u64 = 1 << 10;
const NO_EXECUTE: u64 = 1 << 63;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// End of the user half (the lower canonical half), where all user pages live.
const USER_TOP: u64 = 1 << 47;

/// Rights of a user page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserRights {
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub exec: bool,
}

/// The one address space's page tables. Whoever holds this (through the [`TABLES`] lock)
/// is the only one reading or writing any page-table frame reachable from `pml4`; every
/// reference into a table borrows the handle, so none outlives the lock.
struct PageTables {
    pml4: u64,
}

static TABLES: crate::once::SetOnce<spin::Mutex<PageTables>> = crate::once::SetOnce::new();

/// The page tables, locked. Panics before [`init`].
fn tables() -> spin::MutexGuard<'static, PageTables> {
    TABLES.get().expect("paging not initialised").lock()
}

impl PageTables {
    /// The page-table frame at physical address `phys`.
    fn table(&mut self, phys: u64) -> &mut [u64; 512] {
        // SAFETY: page-table frames are RAM in the direct map owned by this handle (see the
        // type); the reference borrows `self`, so it is the only one into any table.
        unsafe { &mut *(phys_to_virt(phys) as *mut [u64; 512]) }
    }
}

unsafe extern "C" {
    static __kernel_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __kernel_end: u8;
}

/// Physical range of the kernel image (it is identity-mapped: these are also its virtual
/// addresses).
pub fn kernel_range() -> core::ops::Range<u64> {
    (&raw const __kernel_start) as u64..(&raw const __kernel_end) as u64
}

/// Builds the final kernel page tables and switches to them. Returns `None` when memory
/// runs out (with less than a few pages of RAM).
/// Frames holding page tables (tables are never freed: a table once needed stays).
static TABLE_FRAMES: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// A zeroed frame for a page table, counted.
fn alloc_table() -> Option<u64> {
    let f = alloc_zeroed()?;
    TABLE_FRAMES.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    Some(f)
}

/// Bytes of RAM holding page tables (the kernel's and the program's).
pub fn table_bytes() -> u64 {
    TABLE_FRAMES.load(core::sync::atomic::Ordering::Relaxed) * crate::PAGE_SIZE
}

pub(crate) fn init() -> Option<()> {
    assert!(TABLES.get().is_none(), "paging initialised twice");
    let mut t = PageTables {
        pml4: alloc_table()?,
    };
    // Direct map of the first 4 GiB with 2 MiB pages.
    let dm_pdpt = alloc_table()?;
    for gib in 0..4u64 {
        let pd = alloc_table()?;
        for i in 0..512u64 {
            t.table(pd)[i as usize] =
                ((gib << 30) + (i << 21)) | PRESENT | WRITABLE | HUGE | GLOBAL | NO_EXECUTE;
        }
        t.table(dm_pdpt)[gib as usize] = pd | PRESENT | WRITABLE;
    }
    let pml4 = t.pml4;
    t.table(pml4)[256] = dm_pdpt | PRESENT | WRITABLE;

    // The kernel image, 4 KiB pages with per-section rights.
    let (text_end, rodata_end) = (
        (&raw const __text_end) as u64,
        (&raw const __rodata_end) as u64,
    );
    let range = kernel_range();
    let mut page = range.start;
    while page < range.end {
        let flags = if page < text_end {
            PRESENT | GLOBAL
        } else if page < rodata_end {
            PRESENT | GLOBAL | NO_EXECUTE
        } else {
            PRESENT | WRITABLE | GLOBAL | NO_EXECUTE
        };
        let pte = t.walk(page, true)?;
        *pte = page | flags;
        page += PAGE_SIZE;
    }
    TABLES.set(spin::Mutex::new(t));
    // SAFETY: the new tables map the kernel image at the same addresses and the direct map
    // at the same place as the boot tables; the boot stack lives in the kernel image.
    unsafe { set_cr3(pml4) };
    Some(())
}

impl PageTables {
    /// The leaf entry for `addr`, creating intermediate tables (user-accessible: leaves
    /// decide) when `create` is set.
    fn walk(&mut self, addr: u64, create: bool) -> Option<&mut u64> {
        let mut t = self.pml4;
        for level in [39u32, 30, 21] {
            let idx = ((addr >> level) & 511) as usize;
            let e = self.table(t)[idx];
            if e & PRESENT == 0 {
                if !create {
                    return None;
                }
                let f = alloc_table()?;
                self.table(t)[idx] = f | PRESENT | WRITABLE | USER;
                t = f;
            } else {
                assert!(e & HUGE == 0, "huge page in the user half at {addr:#x}");
                t = e & ADDR_MASK;
            }
        }
        Some(&mut self.table(t)[((addr >> 12) & 511) as usize])
    }

    /// The leaf entry where user page `page` goes, creating tables; `None` when no frame
    /// is left for a table. Panics outside the user half or over a kernel page (the kernel
    /// image is identity-mapped in the user half): a user mapping must never replace one.
    fn user_slot(&mut self, page: u64) -> Option<&mut u64> {
        assert!(page < USER_TOP, "user page {page:#x} outside the user half");
        let e = self.walk(page, true)?;
        assert!(
            *e & PRESENT == 0 || *e & KILN_MAPPED != 0,
            "user page {page:#x} over a kernel page"
        );
        Some(e)
    }

    /// The leaf entry of the user page holding `addr`, if Kiln mapped it.
    fn user_page(&mut self, addr: u64) -> Option<&mut u64> {
        if addr >= USER_TOP {
            return None;
        }
        let e = self.walk(addr, false)?;
        if *e & KILN_MAPPED != 0 {
            Some(e)
        } else {
            None
        }
    }

    /// Calls `f` on the leaf entry of every mapped user page in `[start, end)` (clipped to
    /// the user half), skipping unmapped 2 MiB and 1 GiB holes quickly.
    fn for_each_mapped(&mut self, start: u64, end: u64, mut f: impl FnMut(u64, &mut u64)) {
        let end = end.min(USER_TOP);
        let mut addr = start;
        while addr < end {
            // Skip whole missing tables.
            let mut t = self.pml4;
            let mut skipped = false;
            for level in [39u32, 30, 21] {
                let e = self.table(t)[((addr >> level) & 511) as usize];
                if e & PRESENT == 0 || e & HUGE != 0 {
                    let span = 1u64 << level;
                    addr = (addr & !(span - 1)) + span;
                    skipped = true;
                    break;
                }
                t = e & ADDR_MASK;
            }
            if skipped {
                continue;
            }
            let e = &mut self.table(t)[((addr >> 12) & 511) as usize];
            if *e & KILN_MAPPED != 0 {
                f(addr, e);
            }
            addr += PAGE_SIZE;
        }
    }
    /// The first mapped user page in `[start, end)` (clipped to the user half), skipping
    /// unmapped 2 MiB and 1 GiB holes as [`PageTables::for_each_mapped`] does.
    fn next_mapped(&mut self, start: u64, end: u64) -> Option<u64> {
        let end = end.min(USER_TOP);
        let mut addr = start;
        'pages: while addr < end {
            let mut t = self.pml4;
            for level in [39u32, 30, 21] {
                let e = self.table(t)[((addr >> level) & 511) as usize];
                if e & PRESENT == 0 || e & HUGE != 0 {
                    let span = 1u64 << level;
                    addr = (addr & !(span - 1)) + span;
                    continue 'pages;
                }
                t = e & ADDR_MASK;
            }
            if self.table(t)[((addr >> 12) & 511) as usize] & KILN_MAPPED != 0 {
                return Some(addr);
            }
            addr += PAGE_SIZE;
        }
        None
    }
}

fn leaf_flags(r: UserRights) -> u64 {
    let mut f = KILN_MAPPED | USER;
    if r.read || r.write || r.exec {
        f |= PRESENT;
    }
    if r.write {
        f |= WRITABLE;
    }
    if !r.exec {
        f |= NO_EXECUTE;
    }
    f
}

/// Frames a user mapping may need at most: the page and three page tables.
const USER_MAP_FRAMES: u64 = 4;

/// Maps a zeroed frame at user page `page`. `false` when out of memory (the kernel's
/// reserve is not given to programs). Panics when `page` is outside the user half or holds
/// a kernel page.
pub fn map_user_zeroed(page: u64, rights: UserRights) -> bool {
    if !FRAMES.lock().user_may_take(USER_MAP_FRAMES) {
        return false;
    }
    let Some(frame) = alloc_user_zeroed() else {
        return false;
    };
    match tables().user_slot(page) {
        Some(e) => {
            debug_assert!(*e & KILN_MAPPED == 0, "page {page:#x} already mapped");
            *e = frame | leaf_flags(rights);
            invlpg(page);
            true
        }
        None => {
            // SAFETY: the frame was allocated above and never mapped.
            unsafe { FRAMES.lock().free(frame) };
            false
        }
    }
}

/// Why [`map_user_borrowed`] did not map a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BorrowError {
    /// `bytes` is not one whole page of the direct map, or the page was to be writable:
    /// the caller copies instead.
    NotShareable,
    /// No frame was left for a page table.
    OutOfMemory,
}

/// Maps user page `page` read-only (or execute-only) onto `bytes` in place, without
/// copying: the program image in the payload. `bytes` must be exactly one page-aligned page
/// of the direct map; being `'static` and shared, it stays valid and is never written, so
/// the frame is never freed and the page is never writable (making it writable later, or a
/// kernel write through [`write_user`], gives it a private copy first). Panics when `page`
/// is outside the user half or holds a kernel page.
pub fn map_user_borrowed(
    page: u64,
    bytes: &'static [u8],
    rights: UserRights,
) -> Result<(), BorrowError> {
    let virt = bytes.as_ptr() as u64;
    if rights.write
        || bytes.len() != PAGE_SIZE as usize
        || !virt.is_multiple_of(PAGE_SIZE)
        || !(crate::DIRECT_MAP..crate::DIRECT_MAP + DIRECT_MAP_SIZE).contains(&virt)
    {
        return Err(BorrowError::NotShareable);
    }
    let frame = virt - crate::DIRECT_MAP;
    if !FRAMES.lock().user_may_take(USER_MAP_FRAMES - 1) {
        return Err(BorrowError::OutOfMemory);
    }
    match tables().user_slot(page) {
        Some(e) => {
            debug_assert!(*e & KILN_MAPPED == 0, "page {page:#x} already mapped");
            *e = frame | leaf_flags(rights) | BORROWED;
            invlpg(page);
            Ok(())
        }
        None => Err(BorrowError::OutOfMemory),
    }
}

/// Rights of the user page holding `addr`, if mapped.
pub fn query_user(addr: u64) -> Option<UserRights> {
    let e = *tables().user_page(addr & !(PAGE_SIZE - 1))?;
    Some(UserRights {
        read: e & PRESENT != 0,
        write: e & WRITABLE != 0,
        exec: e & PRESENT != 0 && e & NO_EXECUTE == 0,
    })
}

/// Unmaps every user page in `[start, end)` and frees its frame.
///
/// With more than one CPU, another may still hold a page's translation in its TLB: frames
/// are freed in batches, each after a TLB shootdown ([`crate::smp::shootdown`]), so no CPU
/// can write to a frame that is handed out again.
pub fn unmap_user_range(start: u64, end: u64) {
    let mut batch = [0u64; 64];
    let mut held = 0;
    let mut any = false;
    let free_all = |frames: &[u64]| {
        let mut f = FRAMES.lock();
        for &frame in frames {
            // SAFETY: the frame was this page's own (`map_user_zeroed` or a private copy),
            // its only mapping is gone (entry cleared) and no CPU's TLB holds it any more
            // (this one's flushed by `invlpg`, the others' by a shootdown).
            unsafe { f.free(frame) };
        }
    };
    tables().for_each_mapped(start, end, |addr, e| {
        let frame = *e & ADDR_MASK;
        let borrowed = *e & BORROWED != 0;
        *e = 0;
        invlpg(addr);
        any = true;
        if !borrowed {
            batch[held] = frame;
            held += 1;
            if held == batch.len() {
                crate::smp::shootdown();
                free_all(&batch);
                held = 0;
            }
        }
    });
    if any {
        crate::smp::shootdown();
    }
    free_all(&batch[..held]);
}

/// Changes the rights of every mapped user page in `[start, end)`. A borrowed page that
/// becomes writable first gets a private copy. `false` when no frame is left for a copy
/// (the pages before it are already changed).
pub fn protect_user_range(start: u64, end: u64, rights: UserRights) -> bool {
    let mut ok = true;
    // Whether a page lost a right or changed frame: then other CPUs' TLBs must forget it.
    let mut lost = false;
    tables().for_each_mapped(start, end, |addr, e| {
        if !ok {
            return;
        }
        let mut frame = *e & ADDR_MASK;
        let mut borrowed = *e & BORROWED;
        if borrowed != 0 && rights.write {
            let copy = FRAMES.lock().alloc_user();
            let Some(copy) = copy else {
                ok = false;
                return;
            };
            // SAFETY: both frames are RAM in the direct map; `copy` is fresh and unshared.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    phys_to_virt(frame) as *const u8,
                    phys_to_virt(copy) as *mut u8,
                    PAGE_SIZE as usize,
                )
            };
            frame = copy;
            borrowed = 0;
        }
        let old = *e;
        *e = frame | leaf_flags(rights) | borrowed;
        invlpg(addr);
        lost |= old & PRESENT != 0
            && (*e & PRESENT == 0
                || (old & WRITABLE != 0 && *e & WRITABLE == 0)
                || (old & NO_EXECUTE == 0 && *e & NO_EXECUTE != 0)
                || old & ADDR_MASK != frame);
    });
    if lost {
        crate::smp::shootdown();
    }
    ok
}

/// Moves the mapped pages of `[from, from + len)` to `to`, keeping frames and rights.
/// `false` when a page table for the target cannot be allocated; then nothing has moved.
pub fn move_user_range(from: u64, to: u64, len: u64) -> bool {
    let mut t = tables();
    // First give every target page its page tables, so the move itself cannot fail.
    let mut at = from;
    while let Some(page) = t.next_mapped(at, from + len) {
        if !FRAMES.lock().user_may_take(USER_MAP_FRAMES - 1) {
            return false;
        }
        if t.user_slot(page - from + to).is_none() {
            return false;
        }
        at = page + PAGE_SIZE;
    }
    let mut at = from;
    while let Some(page) = t.next_mapped(at, from + len) {
        let Some(src) = t.user_page(page) else { break };
        let entry = core::mem::take(src);
        invlpg(page);
        let Some(dst) = t.user_slot(page - from + to) else {
            // Unreachable after the first pass; put the page back rather than lose it.
            if let Some(src) = t.user_slot(page) {
                *src = entry;
            }
            return false;
        };
        *dst = entry;
        invlpg(page - from + to);
        at = page + PAGE_SIZE;
    }
    if at != from {
        // The old addresses are gone: other CPUs must forget them.
        crate::smp::shootdown();
    }
    true
}

/// The kernel-virtual address (direct map) of user address `addr`, if its page is mapped.
/// With `for_write`, a borrowed page first gets a private copy (a borrowed frame is shared,
/// immutable memory); panics when no frame is left for it.
fn kernel_view(t: &mut PageTables, addr: u64, for_write: bool) -> Option<*mut u8> {
    let page = addr & !(PAGE_SIZE - 1);
    let e = t.user_page(page)?;
    if for_write && *e & BORROWED != 0 {
        let frame = *e & ADDR_MASK;
        let copy = FRAMES
            .lock()
            .alloc()
            .unwrap_or_else(|| panic!("out of memory copying program page {page:#x}"));
        // SAFETY: both frames are RAM in the direct map; `copy` is fresh and unshared.
        unsafe {
            core::ptr::copy_nonoverlapping(
                phys_to_virt(frame) as *const u8,
                phys_to_virt(copy) as *mut u8,
                PAGE_SIZE as usize,
            )
        };
        *e = (*e & !(ADDR_MASK | BORROWED)) | copy;
        invlpg(page);
        // Other CPUs may still read the shared frame through their TLBs.
        crate::smp::shootdown();
    }
    Some(phys_to_virt((*e & ADDR_MASK) + (addr & (PAGE_SIZE - 1))) as *mut u8)
}

/// Copies from mapped user pages, ignoring their rights. Panics on an unmapped page.
///
/// The copy goes through the direct map with the page tables locked, so the frame stays
/// mapped (and owned by the page) until it is done; the program is stopped meanwhile.
pub fn read_user(addr: u64, buf: &mut [u8]) {
    let mut t = tables();
    let mut done = 0;
    while done < buf.len() {
        let a = addr + done as u64;
        let n = ((PAGE_SIZE - (a % PAGE_SIZE)) as usize).min(buf.len() - done);
        let src = kernel_view(&mut t, a, false)
            .unwrap_or_else(|| panic!("kernel read of unmapped user page {a:#x}"));
        // SAFETY: `src` points into a mapped frame with at least `n` bytes left in the page.
        unsafe { core::ptr::copy_nonoverlapping(src, buf[done..].as_mut_ptr(), n) };
        done += n;
    }
}

/// Copies into mapped user pages, ignoring their rights (a borrowed page gets a private
/// copy first). Panics on an unmapped page.
pub fn write_user(addr: u64, data: &[u8]) {
    let mut t = tables();
    let mut done = 0;
    while done < data.len() {
        let a = addr + done as u64;
        let n = ((PAGE_SIZE - (a % PAGE_SIZE)) as usize).min(data.len() - done);
        let dst = kernel_view(&mut t, a, true)
            .unwrap_or_else(|| panic!("kernel write to unmapped user page {a:#x}"));
        // SAFETY: `dst` points into a mapped frame with at least `n` bytes left in the page.
        unsafe { core::ptr::copy_nonoverlapping(data[done..].as_ptr(), dst, n) };
        done += n;
    }
}

/// Walks the user pages of `[addr, addr + len)` once each: `copy(kernel address, offset
/// in the range, bytes)` for each page's part while its entry passes `allowed`; `false` at
/// the first page that is not mapped or does not pass.
fn each_user_chunk(
    addr: u64,
    len: usize,
    allowed: impl Fn(u64) -> bool,
    mut copy: impl FnMut(*mut u8, usize, usize),
) -> bool {
    let mut t = tables();
    let mut done = 0;
    while done < len {
        let Some(a) = addr.checked_add(done as u64) else {
            return false;
        };
        let n = ((PAGE_SIZE - (a % PAGE_SIZE)) as usize).min(len - done);
        match t.user_page(a & !(PAGE_SIZE - 1)).map(|e| *e) {
            Some(e) if allowed(e) => {
                copy(
                    phys_to_virt((e & ADDR_MASK) + (a & (PAGE_SIZE - 1))) as *mut u8,
                    done,
                    n,
                );
            }
            _ => return false,
        }
        done += n;
    }
    true
}

/// Copies from user pages the program may read, looking at each page once; `false` at
/// the first page it may not read (not mapped, or `PROT_NONE`), with the pages before it
/// copied. The careful way (regions, faulting pages in) is the caller's after a `false`.
pub fn read_user_if_readable(addr: u64, buf: &mut [u8]) -> bool {
    let into = buf.as_mut_ptr();
    each_user_chunk(
        addr,
        buf.len(),
        |e| e & PRESENT != 0,
        |src, at, n| {
            // SAFETY: `src` points into the mapped frame of a present user page, with at
            // least `n` bytes left in the page; `at + n` is within `buf`.
            unsafe { core::ptr::copy_nonoverlapping(src, into.add(at), n) }
        },
    )
}

/// Copies into user pages the program may write and owns (not borrowed from the image),
/// looking at each page once; `false` at the first other page, with the pages before it
/// written (the careful way the caller takes then writes the same bytes again).
pub fn write_user_if_writable(addr: u64, data: &[u8]) -> bool {
    let writable = |e: u64| e & (PRESENT | WRITABLE) == PRESENT | WRITABLE && e & BORROWED == 0;
    each_user_chunk(addr, data.len(), writable, |dst, at, n| {
        // SAFETY: `dst` points into the program's own frame of a present, writable user
        // page, with at least `n` bytes left in the page; `at + n` is within `data`.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr().add(at), dst, n) }
    })
}

/// Size of the direct map (all physical memory below 4 GiB).
const DIRECT_MAP_SIZE: u64 = 1 << 32;
/// Start of the window where device registers outside the direct map are mapped.
const DEVICE_WINDOW: u64 = 0xffff_c000_0000_0000;
/// Size of that window (1 TiB).
const DEVICE_WINDOW_SIZE: u64 = 1 << 40;
const CACHE_DISABLE: u64 = (1 << 3) | (1 << 4);

static DEVICE_NEXT: spin::Mutex<u64> = spin::Mutex::new(DEVICE_WINDOW);

/// The kernel-virtual address of device registers at physical `[phys, phys + size)`.
/// Below 4 GiB that is the direct map; above, the pages are mapped uncached into a device
/// window the first time. `None` when page tables or the window run out.
pub(crate) fn map_device(phys: u64, size: u64) -> Option<u64> {
    let end = phys.checked_add(size)?;
    if end <= 1 << 32 {
        return Some(phys_to_virt(phys));
    }
    let start = phys & !(PAGE_SIZE - 1);
    let pages = (end - start).div_ceil(PAGE_SIZE);
    let mut next = DEVICE_NEXT.lock();
    let base = *next;
    if base + pages * PAGE_SIZE > DEVICE_WINDOW + DEVICE_WINDOW_SIZE {
        return None;
    }
    let mut t = tables();
    for i in 0..pages {
        let e = t.walk(base + i * PAGE_SIZE, true)?;
        *e = (start + i * PAGE_SIZE) | PRESENT | WRITABLE | GLOBAL | NO_EXECUTE | CACHE_DISABLE;
        invlpg(base + i * PAGE_SIZE);
    }
    *next = base + pages * PAGE_SIZE;
    Some(base + (phys - start))
}
