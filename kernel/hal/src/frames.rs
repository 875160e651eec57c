//! Physical page frames: handed out from the RAM regions of the boot memory map.
//!
//! Fresh frames come from a bump pointer over each region; freed frames go on a free list
//! threaded through the frames themselves (through the direct map), so the allocator needs
//! no heap.

use crate::{phys_to_virt, PAGE_SIZE};

const MAX_REGIONS: usize = 32;

/// The frame allocator's state.
pub struct Frames {
    regions: [(u64, u64); MAX_REGIONS],
    count: usize,
    current: usize,
    next: u64,
    free_list: u64,
    free_frames: u64,
    total_frames: u64,
    reserve: u64,
}

/// The frame allocator. Crate-private: handing it a frame that is in use ([`Frames::free`],
/// [`Frames::add_region`]) would let two owners write the same memory.
pub(crate) static FRAMES: spin::Mutex<Frames> = spin::Mutex::new(Frames {
    regions: [(0, 0); MAX_REGIONS],
    count: 0,
    current: 0,
    next: 0,
    free_list: 0,
    free_frames: 0,
    total_frames: 0,
    reserve: 0,
});

impl Frames {
    /// Adds the usable range `[start, end)` (rounded inwards to pages).
    ///
    /// # Safety
    /// The range must be RAM inside the direct map that nothing else uses or will use (not
    /// the kernel image, the payload, the boot tables or anything already added).
    pub unsafe fn add_region(&mut self, start: u64, end: u64) {
        let start = start.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let end = end / PAGE_SIZE * PAGE_SIZE;
        if end <= start || self.count == MAX_REGIONS {
            return;
        }
        self.regions[self.count] = (start, end);
        if self.count == 0 {
            self.next = start;
        }
        self.count += 1;
        self.total_frames += (end - start) / PAGE_SIZE;
    }

    /// One frame (not zeroed), or `None` when memory is exhausted.
    pub fn alloc(&mut self) -> Option<u64> {
        if self.free_list != 0 {
            let frame = self.free_list;
            // SAFETY: frames on the free list are unused and mapped by the direct map; the
            // first word holds the next free frame.
            self.free_list = unsafe { *(phys_to_virt(frame) as *const u64) };
            self.free_frames -= 1;
            return Some(frame);
        }
        self.alloc_contiguous(PAGE_SIZE)
    }

    /// `bytes` (a multiple of the page size) of physically contiguous memory.
    pub fn alloc_contiguous(&mut self, bytes: u64) -> Option<u64> {
        while self.current < self.count {
            let (_, end) = self.regions[self.current];
            if self.next + bytes <= end {
                let at = self.next;
                self.next += bytes;
                return Some(at);
            }
            if self.current + 1 == self.count {
                // The last region: keep what is left contiguous for smaller requests.
                return None;
            }
            // Move on; what is left of this region goes to the free list.
            while self.next + PAGE_SIZE <= end {
                let f = self.next;
                self.next += PAGE_SIZE;
                // SAFETY: `f` is in an added region and past the bump pointer, so it was
                // never handed out.
                unsafe { self.free(f) };
            }
            self.current += 1;
            if self.current < self.count {
                self.next = self.regions[self.current].0;
            }
        }
        None
    }

    /// `frames` physically contiguous frames from the free list, when it holds them as
    /// neighbours in list order (frames freed in address order, as unmapping a range does,
    /// lie there as runs of falling addresses). For the heap once fresh memory is gone.
    pub fn take_free_run(&mut self, frames: u64) -> Option<u64> {
        if frames == 0 || frames > self.free_frames {
            return None;
        }
        let next_of = |f: u64| {
            // SAFETY: `f` is on the free list: unused and mapped by the direct map, its
            // first word holding the next free frame.
            unsafe { *(phys_to_virt(f) as *const u64) }
        };
        // `before`: the frame whose link points at the run's first frame (0: the list head).
        let mut before = 0u64;
        let mut last = self.free_list;
        let mut len = 1;
        while last != 0 {
            if len == frames {
                let after = next_of(last);
                if before == 0 {
                    self.free_list = after;
                } else {
                    // SAFETY: `before` is on the free list (as above); relinking it past
                    // the run takes the run's frames off the list.
                    unsafe { *(phys_to_virt(before) as *mut u64) = after };
                }
                self.free_frames -= frames;
                return Some(last);
            }
            let next = next_of(last);
            if next != 0 && next + PAGE_SIZE == last {
                last = next;
                len += 1;
            } else {
                before = last;
                last = next;
                len = 1;
            }
        }
        None
    }

    /// Returns a frame to the allocator.
    ///
    /// # Safety
    /// `frame` must be a frame this allocator handed out (or a page of a region added to
    /// it) that nothing uses any more: no mapping, reference or device still reaches it.
    pub unsafe fn free(&mut self, frame: u64) {
        // SAFETY: the caller no longer uses `frame`; it is RAM covered by the direct map.
        unsafe { *(phys_to_virt(frame) as *mut u64) = self.free_list };
        self.free_list = frame;
        self.free_frames += 1;
    }

    /// Frames never handed out plus frames freed.
    pub fn available(&self) -> u64 {
        let mut bump = 0;
        for i in self.current..self.count {
            let (start, end) = self.regions[i];
            let from = if i == self.current { self.next } else { start };
            bump += (end - from) / PAGE_SIZE;
        }
        bump + self.free_frames
    }

    /// All frames the allocator manages.
    pub fn total(&self) -> u64 {
        self.total_frames
    }

    /// Keeps the last `frames` never-used frames for the kernel (its heap, which needs
    /// contiguous memory): [`Frames::alloc_user`] does not hand them out, so a program that
    /// exhausts memory gets `ENOMEM` (or is killed, on a page fault) while the kernel can
    /// still allocate what it needs.
    pub fn set_reserve(&mut self, frames: u64) {
        self.reserve = frames;
    }

    /// The frames kept for the kernel ([`Frames::set_reserve`]).
    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Frames of the kernel's reserve already handed out (to the heap): how far fresh memory
    /// is below [`Frames::set_reserve`]'s figure.
    pub fn reserve_deficit(&self) -> u64 {
        self.reserve.saturating_sub(self.fresh())
    }

    /// Frames never handed out (contiguous within each region).
    fn fresh(&self) -> u64 {
        self.available() - self.free_frames
    }

    /// Whether `frames` more frames may go to the program (its pages and page tables):
    /// freed frames, and fresh ones beyond the kernel's reserve.
    pub fn user_may_take(&self, frames: u64) -> bool {
        self.free_frames + self.fresh().saturating_sub(self.reserve) >= frames
    }

    /// Whether `frames` contiguous frames may go to a large kernel allocation made for the
    /// program (a file in memory, a buffer): only fresh frames beyond the reserve.
    pub fn large_may_take(&self, frames: u64) -> bool {
        self.fresh() >= self.reserve + frames
    }

    /// One frame for the program (not zeroed): a freed one, else a fresh one outside the
    /// kernel's reserve; `None` when there is none.
    pub fn alloc_user(&mut self) -> Option<u64> {
        if self.free_list != 0 || self.fresh() > self.reserve {
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
