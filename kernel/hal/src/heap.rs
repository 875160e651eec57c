//! The kernel heap: talc, fed with physically contiguous chunks from the frame allocator
//! whenever it runs out (so the heap grows with demand instead of reserving a fixed share),
//! and giving whole free pages at the top of a chunk back to it once it holds more free than
//! it keeps for the next burst (so memory a burst of connections took goes back to the
//! program when they close).

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

/// Bytes the heap has handed out and not got back.
static IN_USE: AtomicUsize = AtomicUsize::new(0);
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
        // SAFETY: forwarded under the caller's guarantees.
        let p = unsafe { TALC.alloc(layout) };
        if !p.is_null() {
            IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    #[inline(never)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded under the caller's guarantees.
        let p = unsafe { TALC.alloc_zeroed(layout) };
        if !p.is_null() {
            IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    #[inline(never)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded under the caller's guarantees.
        unsafe { TALC.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded under the caller's guarantees.
        let p = unsafe { TALC.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
            IN_USE.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static HEAP: CountingHeap = CountingHeap;

/// Bytes of kernel heap in use (allocated and not freed).
pub fn in_use_bytes() -> usize {
    IN_USE.load(Ordering::Relaxed)
}

/// Bytes the heap holds free: taken from the frame allocator and not in use (the heap keeps
/// memory once taken: the program cannot have it back).
pub fn slack_bytes() -> usize {
    CLAIMED
        .load(Ordering::Relaxed)
        .saturating_sub(IN_USE.load(Ordering::Relaxed))
}
