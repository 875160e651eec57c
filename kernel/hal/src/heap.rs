//! The kernel heap: talc, fed with physically contiguous chunks from the frame allocator
//! whenever it runs out (so the heap grows with demand instead of reserving a fixed share).

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};

use talc::base::binning::Binning;
use talc::base::Talc;
use talc::source::Source;

use crate::frames::FRAMES;
use crate::{phys_to_virt, PAGE_SIZE};

/// Smallest chunk claimed from the frame allocator at a time.
const CHUNK: u64 = 256 * 1024;

/// Takes memory from the frame allocator.
#[derive(Debug)]
pub struct FrameSource;

// SAFETY: `acquire` only touches the frame allocator (its own lock, no heap use) and the
// `talc` it is given.
unsafe impl Source for FrameSource {
    fn acquire<B: Binning>(talc: &mut Talc<Self, B>, layout: Layout) -> Result<(), ()> {
        let want = (layout.size() as u64 + layout.align() as u64 + 4096).max(CHUNK);
        let bytes = want.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let phys = FRAMES.lock().alloc_contiguous(bytes).ok_or(())?;
        // SAFETY: the chunk is fresh RAM, mapped read-write by the direct map, used by
        // nothing else.
        unsafe { talc.claim(phys_to_virt(phys) as *mut u8, bytes as usize) }
            .map(|_| ())
            .ok_or(())
    }
}

static TALC: talc::TalcLock<spinning_top::RawSpinlock, FrameSource> =
    talc::TalcLock::new(FrameSource);

/// Bytes the heap has handed out and not got back.
static IN_USE: AtomicUsize = AtomicUsize::new(0);

/// talc, counting what is in use.
struct CountingHeap;

// SAFETY: every method forwards to talc's `GlobalAlloc` with the same arguments; the
// counter only records sizes.
unsafe impl GlobalAlloc for CountingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded under the caller's guarantees.
        let p = unsafe { TALC.alloc(layout) };
        if !p.is_null() {
            IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded under the caller's guarantees.
        let p = unsafe { TALC.alloc_zeroed(layout) };
        if !p.is_null() {
            IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
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
