//! The kernel heap: talc, fed with physically contiguous chunks from the frame allocator
//! whenever it runs out (so the heap grows with demand instead of reserving a fixed share),
//! and giving whole free pages at the top of a chunk back to it once it holds more free than
//! it keeps for the next burst (so memory a burst of connections took goes back to the
//! program when they close).
//!
//! Allocations of [`RUN_MIN`] bytes and more (socket buffers, socket sets, `/tmp` pages,
//! the system call's bounce buffer) are not talc's: each is a run of frames of its own,
//! whose pages go straight back to the frame allocator when it is freed. Inside talc's
//! chunks they left free holes among small allocations that talc cannot give back (it
//! gives back only the free top of a chunk): after a burst of 110 listening sockets, 2.5 MiB
//! stayed with the kernel.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};

use kiln_abi::memory;
use talc::base::binning::Binning;
use talc::base::Talc;
use talc::source::Source;

use crate::frames::FRAMES;
use crate::{phys_to_virt, DIRECT_MAP, PAGE_SIZE};

/// Smallest chunk claimed from the frame allocator at a time.
const CHUNK: u64 = 256 * 1024;
/// Allocations larger than this do not use the frames kept for the kernel (the kernel's
/// own buffers, such as a system call's 256 KiB bounce buffer, are at most this large).
const LARGE: u64 = 256 * 1024;

/// Allocations this large (and aligned to at most a page) are runs of frames of their own.
/// Below it, rounding to pages would waste too much (up to a quarter here).
pub const RUN_MIN: usize = 16 * 1024;

/// Whether `layout` is allocated as a run of frames.
fn is_run(layout: Layout) -> bool {
    layout.size() >= RUN_MIN && layout.align() <= PAGE_SIZE as usize
}

/// Frames of a run of `bytes`.
fn run_frames(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(PAGE_SIZE)
}

/// A run of frames for `layout` ([`is_run`]), zeroed when asked; null when memory is short
/// (or, for more than [`LARGE`] bytes, when only the kernel's reserve is left).
fn alloc_run(layout: Layout, zeroed: bool) -> *mut u8 {
    let frames = run_frames(layout.size());
    let phys = {
        let mut all = FRAMES.lock();
        if layout.size() as u64 > LARGE && !all.large_may_take(frames) {
            return core::ptr::null_mut();
        }
        match all.alloc_contiguous(frames * PAGE_SIZE) {
            Some(p) => p,
            None => return core::ptr::null_mut(),
        }
    };
    RUNS.fetch_add((frames * PAGE_SIZE) as usize, Ordering::Relaxed);
    let p = phys_to_virt(phys) as *mut u8;
    if zeroed {
        // SAFETY: the run is ours (just taken from the frame allocator), in the direct map.
        unsafe { core::ptr::write_bytes(p, 0, layout.size()) };
    }
    p
}

/// Gives back the frames of `ptr`'s run from frame `from` (0: all of it) to the end of a
/// run of `bytes`.
///
/// # Safety
/// `ptr` came from [`alloc_run`] for `bytes`, and nothing uses `[ptr + from pages, end)`
/// any more.
unsafe fn free_run(ptr: *mut u8, bytes: usize, from: u64) {
    let frames = run_frames(bytes);
    if from >= frames {
        return;
    }
    let first = ptr as u64 - DIRECT_MAP + from * PAGE_SIZE;
    // SAFETY: the caller's guarantees: these frames came from this allocator and are unused.
    unsafe { FRAMES.lock().free_run(first, frames - from) };
    RUNS.fetch_sub(((frames - from) * PAGE_SIZE) as usize, Ordering::Relaxed);
}

/// Takes memory from the frame allocator, and gives free pages back to it.
#[derive(Debug)]
pub struct FrameSource;

// SAFETY: `acquire` only touches the frame allocator (its own lock, no heap use) and the
// `talc` it is given.
unsafe impl Source for FrameSource {
    fn acquire<B: Binning>(talc: &mut Talc<Self, B>, layout: Layout) -> Result<(), ()> {
        let need = layout.size() as u64 + layout.align() as u64 + 4096;
        let bytes = need.max(CHUNK).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let least = need.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let (phys, bytes) = {
            let mut frames = FRAMES.lock();
            let (pages, least_pages) = (bytes / PAGE_SIZE, least / PAGE_SIZE);
            // A large allocation holds a program's data (a /tmp file, a buffer): it may not
            // eat the frames kept for the kernel's own small allocations, and fails instead
            // (its callers use `try_reserve`).
            if layout.size() as u64 > LARGE && !frames.large_may_take(least_pages) {
                return Err(());
            }
            // A whole chunk while memory beyond the kernel's reserve allows, else just
            // enough (the reserve is there for this), else the one frame a small allocation
            // needs.
            let chunk = if frames.large_may_take(pages) {
                frames.alloc_contiguous(bytes)
            } else {
                None
            };
            if let Some(p) = chunk {
                (p, bytes)
            } else if let Some(p) = frames.alloc_contiguous(least) {
                (p, least)
            } else if need - 4096 <= PAGE_SIZE / 2 {
                (frames.alloc().ok_or(())?, PAGE_SIZE)
            } else {
                return Err(());
            }
        };
        // SAFETY: the chunk is unused RAM (free in the frame allocator), mapped read-write by
        // the direct map, used by nothing else.
        unsafe { talc.claim(phys_to_virt(phys) as *mut u8, bytes as usize) }
            .map(|_| {
                CLAIMED.fetch_add(bytes as usize, Ordering::Relaxed);
            })
            .ok_or(())
    }

    const TRACK_HEAP_END: bool = true;

    // SAFETY (talc's contract for this method): the returned end is `heap_end` or a
    // page-aligned address in `[chunk_base, heap_end]` (`heap_release_end`), so it is
    // CHUNK_UNIT-aligned and at least `chunk_base`; it returns `chunk_base` only when
    // `is_heap_base`, deleting the heap; and it never claims memory talc does not hold.
    unsafe fn resize(
        &mut self,
        chunk_base: *mut u8,
        heap_end: *mut u8,
        is_heap_base: bool,
    ) -> *mut u8 {
        let (base, end) = (chunk_base as usize, heap_end as usize);
        if end - base < memory::HEAP_RELEASE_MIN || end % PAGE_SIZE as usize != 0 {
            return heap_end;
        }
        let mut frames = FRAMES.lock();
        // The reserve is a count of free frames, not particular ones: whatever the heap
        // gives back counts towards it again, so the heap keeps only its burst allowance.
        let slack = slack_bytes();
        let new_end = memory::heap_release_end(
            PAGE_SIZE as usize,
            base,
            end,
            is_heap_base,
            slack,
            memory::HEAP_KEEP,
        );
        if new_end == end {
            return heap_end;
        }
        // Deleting the heap gives back its first page too (where talc kept its base tag).
        let from = if new_end == base {
            (base - 1) / PAGE_SIZE as usize * PAGE_SIZE as usize
        } else {
            new_end
        };
        for page in (from..end).step_by(PAGE_SIZE as usize) {
            // SAFETY: talc gives `[new_end, heap_end)` up (it is free heap memory and no
            // longer the heap's); its pages are RAM this allocator handed the heap, reached
            // through the direct map, and nothing else uses them.
            unsafe { frames.free(page as u64 - DIRECT_MAP) };
        }
        CLAIMED.fetch_sub(end - from, Ordering::Relaxed);
        new_end as *mut u8
    }
}

static TALC: talc::TalcLock<spinning_top::RawSpinlock, FrameSource> =
    talc::TalcLock::new(FrameSource);

/// Bytes talc has handed out and not got back.
static IN_USE: AtomicUsize = AtomicUsize::new(0);
/// Bytes of frames held by runs ([`alloc_run`]).
static RUNS: AtomicUsize = AtomicUsize::new(0);
/// Bytes of RAM the heap has taken from the frame allocator (it keeps them).
static CLAIMED: AtomicUsize = AtomicUsize::new(0);

/// talc, counting what is in use.
struct CountingHeap;

// SAFETY: every method forwards to talc's `GlobalAlloc` with the same arguments; the
// counter only records sizes.
// `alloc`, `alloc_zeroed` and `dealloc` are out of line: inlined, the null check and the
// count were copied into each of about 160 places that allocate (5.7 KB).
unsafe impl GlobalAlloc for CountingHeap {
    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_run(layout) {
            return alloc_run(layout, false);
        }
        // SAFETY: forwarded under the caller's guarantees.
        let p = unsafe { TALC.alloc(layout) };
        if !p.is_null() {
            IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    #[inline(never)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_run(layout) {
            return alloc_run(layout, true);
        }
        // SAFETY: forwarded under the caller's guarantees.
        let p = unsafe { TALC.alloc_zeroed(layout) };
        if !p.is_null() {
            IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    #[inline(never)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_run(layout) {
            // SAFETY: `ptr` is a run of this layout (`alloc` chose by the same test), which
            // the caller no longer uses.
            return unsafe { free_run(ptr, layout.size(), 0) };
        }
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded under the caller's guarantees.
        unsafe { TALC.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size`, rounded up to the alignment, fits `isize`.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (is_run(layout), is_run(new_layout)) {
            (false, false) => {
                // SAFETY: forwarded under the caller's guarantees.
                let p = unsafe { TALC.realloc(ptr, layout, new_size) };
                if !p.is_null() {
                    IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
                    IN_USE.fetch_add(new_size, Ordering::Relaxed);
                }
                p
            }
            // A run that keeps or loses pages stays where it is.
            (true, true) if run_frames(new_size) <= run_frames(layout.size()) => {
                // SAFETY: the pages past the new size are the caller's no more.
                unsafe { free_run(ptr, layout.size(), run_frames(new_size)) };
                ptr
            }
            _ => {
                // SAFETY: `new_layout` is valid (above) and not zero-sized (`new_size` > 0
                // by the caller's guarantees).
                let p = unsafe { self.alloc(new_layout) };
                if !p.is_null() {
                    // SAFETY: both blocks are live, distinct, and at least this long; the
                    // old one is the caller's to give up.
                    unsafe {
                        core::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                p
            }
        }
    }
}

#[global_allocator]
static HEAP: CountingHeap = CountingHeap;

/// Bytes of kernel heap in use (allocated and not freed; runs counted in whole pages).
pub fn in_use_bytes() -> usize {
    IN_USE.load(Ordering::Relaxed) + RUNS.load(Ordering::Relaxed)
}

/// Bytes the heap holds free: taken from the frame allocator and not in use (the heap keeps
/// memory once taken: the program cannot have it back).
pub fn slack_bytes() -> usize {
    CLAIMED
        .load(Ordering::Relaxed)
        .saturating_sub(IN_USE.load(Ordering::Relaxed))
}
