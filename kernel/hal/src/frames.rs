//! Physical page frames: handed out from the RAM regions of the boot memory map.
//!
//! Which frames are free is kept in a bitmap ([`FrameMap`]) at the start of the first RAM
//! region, through the direct map, so the allocator needs no heap (the heap takes its memory
//! from here). Contiguous runs come from the bottom of memory, single frames from the top.

use kiln_abi::frame_map::FrameMap;

use crate::{phys_to_virt, PAGE_SIZE};

const MAX_REGIONS: usize = 32;

/// The frame allocator's state.
pub struct Frames {
    regions: [(u64, u64); MAX_REGIONS],
    count: usize,
    /// The free frames, once [`Frames::build_map`] has run; bit `i` is the frame at
    /// `base + i * PAGE_SIZE`.
    map: Option<FrameMap<'static>>,
    base: u64,
    total_frames: u64,
    reserve: u64,
}

/// The frame allocator. Crate-private: handing it a frame that is in use ([`Frames::free`],
/// [`Frames::add_region`]) would let two owners write the same memory.
pub(crate) static FRAMES: spin::Mutex<Frames> = spin::Mutex::new(Frames {
    regions: [(0, 0); MAX_REGIONS],
    count: 0,
    map: None,
    base: 0,
    total_frames: 0,
    reserve: 0,
});

impl Frames {
    /// Adds the usable range `[start, end)` (rounded inwards to pages); its frames become
    /// free at [`Frames::build_map`].
    ///
    /// # Safety
    /// The range must be RAM inside the direct map that nothing else uses or will use (not
    /// the kernel image, the payload, the boot tables or anything already added).
    pub unsafe fn add_region(&mut self, start: u64, end: u64) {
        let start = start.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let end = end / PAGE_SIZE * PAGE_SIZE;
        if end <= start || self.count == MAX_REGIONS || self.map.is_some() {
            return;
        }
        self.regions[self.count] = (start, end);
        self.count += 1;
    }

    /// Makes the regions added so far the allocator's memory: places the bitmap at the start
    /// of the first region with room for it, and marks every other frame free.
    pub fn build_map(&mut self) {
        let regions = &self.regions[..self.count];
        let (Some(lo), Some(hi)) = (
            regions.iter().map(|r| r.0).min(),
            regions.iter().map(|r| r.1).max(),
        ) else {
            return;
        };
        let words = FrameMap::words_for((hi - lo) / PAGE_SIZE);
        let bytes = (words as u64 * 8).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let Some(home) = regions.iter().position(|r| r.1 - r.0 >= bytes) else {
            return;
        };
        let at = regions[home].0;
        // SAFETY: `[at, at + bytes)` lies in a region `add_region` was given (RAM in the
        // direct map that nothing else uses); no frame of it is ever marked free below, so
        // the allocator never hands it out, and this is the only reference to it.
        let storage =
            unsafe { core::slice::from_raw_parts_mut(phys_to_virt(at) as *mut u64, words) };
        let mut map = FrameMap::new(storage);
        for (i, &(start, end)) in regions.iter().enumerate() {
            let start = if i == home { start + bytes } else { start };
            map.release_range((start - lo) / PAGE_SIZE, (end - lo) / PAGE_SIZE);
        }
        self.total_frames = map.free_count();
        self.base = lo;
        self.map = Some(map);
    }

    /// One frame (not zeroed), the highest free, or `None` when memory is exhausted.
    pub fn alloc(&mut self) -> Option<u64> {
        let i = self.map.as_mut()?.take_high()?;
        Some(self.base + i * PAGE_SIZE)
    }

    /// `bytes` (a multiple of the page size) of physically contiguous memory, from the
    /// lowest free stretch long enough.
    pub fn alloc_contiguous(&mut self, bytes: u64) -> Option<u64> {
        let i = self.map.as_mut()?.take_run_low(bytes.div_ceil(PAGE_SIZE))?;
        Some(self.base + i * PAGE_SIZE)
    }

    /// Returns a frame to the allocator.
    ///
    /// # Safety
    /// `frame` must be a frame this allocator handed out that nothing uses any more: no
    /// mapping, reference or device still reaches it.
    pub unsafe fn free(&mut self, frame: u64) {
        if let (Some(map), Some(offset)) = (self.map.as_mut(), frame.checked_sub(self.base)) {
            map.release(offset / PAGE_SIZE);
        }
    }

    /// Returns `frames` contiguous frames from `first` to the allocator.
    ///
    /// # Safety
    /// As [`Frames::free`], for each of them.
    pub unsafe fn free_run(&mut self, first: u64, frames: u64) {
        if let (Some(map), Some(offset)) = (self.map.as_mut(), first.checked_sub(self.base)) {
            let start = offset / PAGE_SIZE;
            map.release_range(start, start + frames);
        }
    }

    /// Free frames.
    pub fn available(&self) -> u64 {
        self.map.as_ref().map_or(0, FrameMap::free_count)
    }

    /// All frames the allocator manages.
    pub fn total(&self) -> u64 {
        self.total_frames
    }

    /// Keeps the last `frames` free frames for the kernel (its heap): [`Frames::alloc_user`]
    /// does not hand them out, so a program that exhausts memory gets `ENOMEM` (or is
    /// killed, on a page fault) while the kernel can still allocate what it needs. The
    /// program's frames come from the top of memory and the kernel's runs from the bottom,
    /// so what is left for the kernel tends to stay contiguous.
    pub fn set_reserve(&mut self, frames: u64) {
        self.reserve = frames;
    }

    /// The frames kept for the kernel ([`Frames::set_reserve`]).
    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Whether `frames` more frames may go to the program (its pages and page tables): free
    /// frames beyond the kernel's reserve.
    pub fn user_may_take(&self, frames: u64) -> bool {
        self.available().saturating_sub(self.reserve) >= frames
    }

    /// Whether `frames` contiguous frames may go to a large kernel allocation made for the
    /// program (a file in memory, a buffer): only free frames beyond the reserve.
    pub fn large_may_take(&self, frames: u64) -> bool {
        self.available() >= self.reserve + frames
    }

    /// One frame for the program (not zeroed), outside the kernel's reserve; `None` when
    /// there is none.
    pub fn alloc_user(&mut self) -> Option<u64> {
        if self.available() > self.reserve {
            self.alloc()
        } else {
            None
        }
    }
}

/// Whether free memory is down to the kernel's reserve (with a little slack): what the
/// program asks the kernel to allocate for it should then fail.
pub fn memory_low() -> bool {
    !FRAMES.lock().user_may_take(16)
}

/// Bytes kept for the kernel once programs have taken the rest ([`Frames::set_reserve`]).
pub fn reserve_bytes() -> u64 {
    FRAMES.lock().reserve() * PAGE_SIZE
}

/// Allocates one zeroed frame for the program ([`Frames::alloc_user`]).
pub fn alloc_user_zeroed() -> Option<u64> {
    let f = FRAMES.lock().alloc_user()?;
    // SAFETY: the frame is ours and mapped by the direct map.
    unsafe { core::ptr::write_bytes(phys_to_virt(f) as *mut u8, 0, PAGE_SIZE as usize) };
    Some(f)
}

/// Allocates one zeroed frame.
pub fn alloc_zeroed() -> Option<u64> {
    let f = FRAMES.lock().alloc()?;
    // SAFETY: the frame is ours and mapped by the direct map.
    unsafe { core::ptr::write_bytes(phys_to_virt(f) as *mut u8, 0, PAGE_SIZE as usize) };
    Some(f)
}

/// Bytes of RAM the frame allocator manages.
pub fn total_bytes() -> u64 {
    FRAMES.lock().total() * PAGE_SIZE
}

/// Bytes of RAM handed out so far (frames in use, heap included).
pub fn used_bytes() -> u64 {
    let f = FRAMES.lock();
    (f.total() - f.available()) * PAGE_SIZE
}
