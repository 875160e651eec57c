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

static PML4: spin::Once<u64> = spin::Once::new();

fn table(phys: u64) -> &'static mut [u64; 512] {
    // SAFETY: page-table frames are owned by this module, mapped by the direct map, and only
    // touched with the address-space lock held (single CPU, interrupts off in the kernel).
    unsafe { &mut *(phys_to_virt(phys) as *mut [u64; 512]) }
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
pub fn init() -> Option<()> {
    let pml4 = alloc_zeroed()?;
    // Direct map of the first 4 GiB with 2 MiB pages.
    let dm_pdpt = alloc_zeroed()?;
    for gib in 0..4u64 {
        let pd = alloc_zeroed()?;
        for i in 0..512u64 {
            table(pd)[i as usize] =
                ((gib << 30) + (i << 21)) | PRESENT | WRITABLE | HUGE | GLOBAL | NO_EXECUTE;
        }
        table(dm_pdpt)[gib as usize] = pd | PRESENT | WRITABLE;
    }
    table(pml4)[256] = dm_pdpt | PRESENT | WRITABLE;

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
        let pte = walk(pml4, page, true)?;
        *pte = page | flags;
        page += PAGE_SIZE;
    }
    PML4.call_once(|| pml4);
    // SAFETY: the new tables map the kernel image at the same addresses and the direct map
    // at the same place as the boot tables; the boot stack lives in the kernel image.
    unsafe { set_cr3(pml4) };
    Some(())
}

/// The leaf entry for `addr`, creating intermediate tables (user-accessible: leaves decide)
/// when `create` is set.
fn walk(pml4: u64, addr: u64, create: bool) -> Option<&'static mut u64> {
    let mut t = pml4;
    for level in [39u32, 30, 21] {
        let idx = ((addr >> level) & 511) as usize;
        let e = table(t)[idx];
        if e & PRESENT == 0 {
            if !create {
                return None;
            }
            let f = alloc_zeroed()?;
            table(t)[idx] = f | PRESENT | WRITABLE | USER;
            t = f;
        } else {
            assert!(e & HUGE == 0, "huge page in the user half at {addr:#x}");
            t = e & ADDR_MASK;
        }
    }
    Some(&mut table(t)[((addr >> 12) & 511) as usize])
}

fn root() -> u64 {
    *PML4.get().expect("paging not initialised")
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

fn user_page(addr: u64) -> Option<&'static mut u64> {
    let e = walk(root(), addr, false)?;
    if *e & KILN_MAPPED != 0 {
        Some(e)
    } else {
        None
    }
}

/// Frames a user mapping may need at most: the page and three page tables.
const USER_MAP_FRAMES: u64 = 4;

/// Maps a zeroed frame at user page `page`. `false` when out of memory (the kernel's
/// reserve is not given to programs).
pub fn map_user_zeroed(page: u64, rights: UserRights) -> bool {
    if !FRAMES.lock().user_may_take(USER_MAP_FRAMES) {
        return false;
    }
    let Some(frame) = alloc_user_zeroed() else {
        return false;
    };
    match walk(root(), page, true) {
        Some(e) => {
            debug_assert!(*e & KILN_MAPPED == 0, "page {page:#x} already mapped");
            *e = frame | leaf_flags(rights);
            invlpg(page);
            true
        }
        None => {
            FRAMES.lock().free(frame);
            false
        }
    }
}

/// Maps user page `page` to the existing frame at physical address `frame` (the program
/// image), without copying. The frame is never freed; making the page writable later gives
/// it a private copy. `false` when a page table cannot be allocated.
pub fn map_user_borrowed(page: u64, frame: u64, rights: UserRights) -> bool {
    if !FRAMES.lock().user_may_take(USER_MAP_FRAMES - 1) {
        return false;
    }
    match walk(root(), page, true) {
        Some(e) => {
            debug_assert!(*e & KILN_MAPPED == 0, "page {page:#x} already mapped");
            *e = frame | leaf_flags(rights) | BORROWED;
            invlpg(page);
            true
        }
        None => false,
    }
}

/// Rights of the user page holding `addr`, if mapped.
pub fn query_user(addr: u64) -> Option<UserRights> {
    let e = *user_page(addr & !(PAGE_SIZE - 1))?;
    Some(UserRights {
        read: e & PRESENT != 0,
        write: e & WRITABLE != 0,
        exec: e & PRESENT != 0 && e & NO_EXECUTE == 0,
    })
}

/// Calls `f` on the leaf entry of every mapped user page in `[start, end)`, skipping
/// unmapped 2 MiB and 1 GiB holes quickly.
fn for_each_mapped(start: u64, end: u64, mut f: impl FnMut(u64, &mut u64)) {
    let mut addr = start;
    while addr < end {
        // Skip whole missing tables.
        let mut t = root();
        let mut skipped = false;
        for level in [39u32, 30, 21] {
            let e = table(t)[((addr >> level) & 511) as usize];
            if e & PRESENT == 0 {
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
        let e = &mut table(t)[((addr >> 12) & 511) as usize];
        if *e & KILN_MAPPED != 0 {
            f(addr, e);
        }
        addr += PAGE_SIZE;
    }
}

/// Unmaps every user page in `[start, end)` and frees its frame.
pub fn unmap_user_range(start: u64, end: u64) {
    for_each_mapped(start, end, |addr, e| {
        let frame = *e & ADDR_MASK;
        let borrowed = *e & BORROWED != 0;
        *e = 0;
        invlpg(addr);
        if !borrowed {
            FRAMES.lock().free(frame);
        }
    });
}

/// Changes the rights of every mapped user page in `[start, end)`. A borrowed page that
/// becomes writable first gets a private copy. `false` when no frame is left for a copy
/// (the pages before it are already changed).
pub fn protect_user_range(start: u64, end: u64, rights: UserRights) -> bool {
    let mut ok = true;
    for_each_mapped(start, end, |addr, e| {
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
        *e = frame | leaf_flags(rights) | borrowed;
        invlpg(addr);
    });
    ok
}

/// The first mapped user page in `[start, end)`, skipping unmapped 2 MiB and 1 GiB holes.
fn next_mapped(start: u64, end: u64) -> Option<u64> {
    let mut addr = start;
    'pages: while addr < end {
        let mut t = root();
        for level in [39u32, 30, 21] {
            let e = table(t)[((addr >> level) & 511) as usize];
            if e & PRESENT == 0 {
                let span = 1u64 << level;
                addr = (addr & !(span - 1)) + span;
                continue 'pages;
            }
            t = e & ADDR_MASK;
        }
        if table(t)[((addr >> 12) & 511) as usize] & KILN_MAPPED != 0 {
            return Some(addr);
        }
        addr += PAGE_SIZE;
    }
    None
}

/// Moves the mapped pages of `[from, from + len)` to `to`, keeping frames and rights.
/// `false` when a page table for the target cannot be allocated; then nothing has moved.
pub fn move_user_range(from: u64, to: u64, len: u64) -> bool {
    // First give every target page its page tables, so the move itself cannot fail.
    let mut at = from;
    while let Some(page) = next_mapped(at, from + len) {
        if !FRAMES.lock().user_may_take(USER_MAP_FRAMES - 1) {
            return false;
        }
        if walk(root(), page - from + to, true).is_none() {
            return false;
        }
        at = page + PAGE_SIZE;
    }
    let mut at = from;
    while let Some(page) = next_mapped(at, from + len) {
        let Some(src) = user_page(page) else { break };
        let entry = core::mem::take(src);
        invlpg(page);
        let Some(dst) = walk(root(), page - from + to, false) else {
            // Unreachable after the first pass; put the page back rather than lose it.
            if let Some(src) = walk(root(), page, false) {
                *src = entry;
            }
            return false;
        };
        *dst = entry;
        invlpg(page - from + to);
        at = page + PAGE_SIZE;
    }
    true
}

/// The kernel-virtual address (direct map) of user address `addr`, if its page is mapped.
fn kernel_view(addr: u64) -> Option<*mut u8> {
    let e = *user_page(addr & !(PAGE_SIZE - 1))?;
    Some(phys_to_virt((e & ADDR_MASK) + (addr & (PAGE_SIZE - 1))) as *mut u8)
}

/// Copies from mapped user pages, ignoring their rights. Panics on an unmapped page.
pub fn read_user(addr: u64, buf: &mut [u8]) {
    let mut done = 0;
    while done < buf.len() {
        let a = addr + done as u64;
        let n = ((PAGE_SIZE - (a % PAGE_SIZE)) as usize).min(buf.len() - done);
        let src =
            kernel_view(a).unwrap_or_else(|| panic!("kernel read of unmapped user page {a:#x}"));
        // SAFETY: `src` points into a mapped frame with at least `n` bytes left in the page.
        unsafe { core::ptr::copy_nonoverlapping(src, buf[done..].as_mut_ptr(), n) };
        done += n;
    }
}

/// Copies into mapped user pages, ignoring their rights. Panics on an unmapped page.
pub fn write_user(addr: u64, data: &[u8]) {
    let mut done = 0;
    while done < data.len() {
        let a = addr + done as u64;
        let n = ((PAGE_SIZE - (a % PAGE_SIZE)) as usize).min(data.len() - done);
        let dst =
            kernel_view(a).unwrap_or_else(|| panic!("kernel write to unmapped user page {a:#x}"));
        // SAFETY: `dst` points into a mapped frame with at least `n` bytes left in the page.
        unsafe { core::ptr::copy_nonoverlapping(data[done..].as_ptr(), dst, n) };
        done += n;
    }
}

/// Start of the window where device registers outside the direct map are mapped.
const DEVICE_WINDOW: u64 = 0xffff_c000_0000_0000;
/// Size of that window (1 TiB).
const DEVICE_WINDOW_SIZE: u64 = 1 << 40;
const CACHE_DISABLE: u64 = (1 << 3) | (1 << 4);

static DEVICE_NEXT: spin::Mutex<u64> = spin::Mutex::new(DEVICE_WINDOW);

/// The kernel-virtual address of device registers at physical `[phys, phys + size)`.
/// Below 4 GiB that is the direct map; above, the pages are mapped uncached into a device
/// window the first time. `None` when page tables or the window run out.
pub fn map_device(phys: u64, size: u64) -> Option<u64> {
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
    for i in 0..pages {
        let e = walk(root(), base + i * PAGE_SIZE, true)?;
        *e = (start + i * PAGE_SIZE) | PRESENT | WRITABLE | GLOBAL | NO_EXECUTE | CACHE_DISABLE;
        invlpg(base + i * PAGE_SIZE);
    }
    *next = base + pages * PAGE_SIZE;
    Some(base + (phys - start))
}
