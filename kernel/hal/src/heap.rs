//! The kernel heap: talc, fed with physically contiguous chunks from the frame allocator
//! whenever it runs out (so the heap grows with demand instead of reserving a fixed share).

use core::alloc::Layout;

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

#[global_allocator]
static HEAP: talc::TalcLock<spinning_top::RawSpinlock, FrameSource> =
    talc::TalcLock::new(FrameSource);
