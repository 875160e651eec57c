//! The kernel's free-frame bitmap: one bit per physical page frame, set while the frame is
//! free. Kept here, apart from the memory it describes, where host tests reach it.
//!
//! A bitmap rather than a free list: freed frames coalesce by themselves, so a run of
//! contiguous frames (a kernel heap chunk, DMA buffers) is found by scanning words, however
//! the frames were freed. A free list threaded through the frames finds runs only where
//! frames happened to be freed in address order, and walking it costs one cache miss per
//! free frame: under a server's churn of connection buffers the kernel spent most of its
//! time there.
//!
//! Runs (the kernel heap's chunks, DMA buffers) come from the lowest free stretch long
//! enough, single frames (the program's pages, page tables) from the highest free frame: the
//! heap's chunks follow each other upwards (talc, which fills lower addresses first, then
//! leaves the newest chunks free to give back after a burst), and the program's pages fill
//! memory from the top down.

/// Free frames, one bit each (frame `i` is bit `i % 64` of word `i / 64`), over storage the
/// owner provides: `frames.div_ceil(64)` words ([`FrameMap::words_for`]).
#[derive(Debug)]
pub struct FrameMap<'a> {
    words: &'a mut [u64],
    free: u64,
    /// No word at or above this one has a free frame.
    high: usize,
}

impl<'a> FrameMap<'a> {
    /// Words of storage for `frames` frames.
    pub const fn words_for(frames: u64) -> usize {
        frames.div_ceil(64) as usize
    }

    /// A map over `words` with no frame free (the storage is cleared).
    pub fn new(words: &'a mut [u64]) -> Self {
        words.fill(0);
        FrameMap {
            words,
            free: 0,
            high: 0,
        }
    }

    /// Frames the map can describe.
    pub fn capacity(&self) -> u64 {
        self.words.len() as u64 * 64
    }

    /// Free frames.
    pub fn free_count(&self) -> u64 {
        self.free
    }

    /// Whether frame `i` is free.
    pub fn is_free(&self, i: u64) -> bool {
        i < self.capacity() && self.words[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    /// Marks frames `[start, end)` free. Frames already free stay free (counted once);
    /// frames beyond the map are ignored.
    pub fn release_range(&mut self, start: u64, end: u64) {
        let end = end.min(self.capacity());
        let mut i = start;
        while i < end {
            // Whole words at a time where the range covers them (boot marks all of memory).
            if i.is_multiple_of(64) && i + 64 <= end {
                let w = (i / 64) as usize;
                self.free += u64::from(self.words[w].count_zeros());
                self.words[w] = u64::MAX;
                self.high = self.high.max(w + 1);
                i += 64;
            } else {
                self.release(i);
                i += 1;
            }
        }
    }

    /// Marks frame `i` free; `false` (and no change) when it already was, or lies beyond
    /// the map.
    pub fn release(&mut self, i: u64) -> bool {
        if i >= self.capacity() {
            return false;
        }
        let (w, bit) = ((i / 64) as usize, 1u64 << (i % 64));
        if self.words[w] & bit != 0 {
            return false;
        }
        self.words[w] |= bit;
        self.free += 1;
        self.high = self.high.max(w + 1);
        true
    }

    /// Takes the highest free frame.
    pub fn take_high(&mut self) -> Option<u64> {
        let w = (0..self.high).rev().find(|&w| self.words[w] != 0)?;
        self.high = w + 1;
        let bit = 63 - self.words[w].leading_zeros() as u64;
        self.words[w] &= !(1 << bit);
        self.free -= 1;
        Some(w as u64 * 64 + bit)
    }

    /// Takes `n` contiguous free frames from the lowest free stretch long enough, and
    /// returns the first; `None` when no stretch is (or `n` is 0).
    pub fn take_run_low(&mut self, n: u64) -> Option<u64> {
        if n == 0 || n > self.free {
            return None;
        }
        // Walking up: `run` free frames start at `start`.
        let mut run = 0u64;
        let mut start = 0u64;
        for w in 0..self.words.len() {
            let word = self.words[w];
            let base = w as u64 * 64;
            if word == 0 {
                run = 0;
                continue;
            }
            if word == u64::MAX {
                if run == 0 {
                    start = base;
                }
                run += 64;
            } else {
                for bit in 0..64 {
                    if word & (1 << bit) == 0 {
                        run = 0;
                        continue;
                    }
                    if run == 0 {
                        start = base + bit;
                    }
                    run += 1;
                    if run >= n {
                        break;
                    }
                }
            }
            if run >= n {
                self.take_range(start, start + n);
                return Some(start);
            }
        }
        None
    }

    /// Marks the free frames `[start, end)` taken.
    fn take_range(&mut self, start: u64, end: u64) {
        for i in start..end {
            let (w, bit) = ((i / 64) as usize, 1u64 << (i % 64));
            debug_assert!(self.words[w] & bit != 0);
            self.words[w] &= !bit;
        }
        self.free -= end - start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(words: &mut [u64]) -> FrameMap<'_> {
        FrameMap::new(words)
    }

    #[test]
    fn single_frames_come_from_the_top() {
        let mut w = [u64::MAX; 4];
        let mut m = map(&mut w);
        assert_eq!(m.free_count(), 0);
        assert_eq!(m.take_high(), None);
        m.release_range(70, 200);
        assert_eq!(m.free_count(), 130);
        assert_eq!(m.take_high(), Some(199));
        assert_eq!(m.take_high(), Some(198));
        assert!(m.release(250));
        assert!(!m.release(250), "a frame freed twice counts once");
        assert!(!m.release(256), "beyond the map");
        assert_eq!(m.take_high(), Some(250));
        assert_eq!(m.take_high(), Some(197));
        assert_eq!(m.free_count(), 127);
    }

    #[test]
    fn runs_come_from_the_bottom_and_freed_frames_coalesce() {
        let mut w = [0; 8];
        let mut m = map(&mut w);
        m.release_range(0, 500);
        assert_eq!(m.take_run_low(10), Some(0));
        assert_eq!(m.take_run_low(100), Some(10));
        assert!(!m.is_free(109) && m.is_free(110) && !m.is_free(0));
        // Freed one by one in any order, the frames make one run again.
        for i in [5, 101, 9, 50].into_iter().chain(0..110) {
            m.release(i);
        }
        assert_eq!(m.free_count(), 500);
        assert_eq!(m.take_run_low(500), Some(0));
    }

    #[test]
    fn a_run_skips_stretches_too_short_and_spans_words() {
        let mut w = [0; 8];
        let mut m = map(&mut w);
        // Free: 10..40, 100..110, 300..370 (70 frames, across a word boundary).
        m.release_range(10, 40);
        m.release_range(100, 110);
        m.release_range(300, 370);
        assert_eq!(m.take_run_low(40), Some(300));
        assert_eq!(m.take_run_low(31), None, "no stretch of 31 is left");
        assert_eq!(m.take_run_low(30), Some(10));
        assert_eq!(m.take_run_low(30), Some(340));
        assert_eq!(m.take_run_low(10), Some(100));
        assert_eq!(m.take_run_low(1), None);
        assert_eq!(m.free_count(), 0);
        assert_eq!(m.take_run_low(0), None);
    }

    #[test]
    fn whole_free_words_make_long_runs() {
        let mut w = [0; 64];
        let mut m = map(&mut w);
        m.release_range(5, 4096);
        assert_eq!(m.take_run_low(4000), Some(5));
        assert_eq!(m.take_run_low(92), None);
        assert_eq!(m.take_run_low(91), Some(4005));
        assert_eq!(m.free_count(), 0);
    }

    #[test]
    fn releasing_a_range_counts_each_frame_once() {
        let mut w = [0; 8];
        let mut m = map(&mut w);
        m.release_range(60, 70);
        m.release_range(0, 300);
        assert_eq!(m.free_count(), 300);
        assert!(m.is_free(0) && m.is_free(299) && !m.is_free(300));
        assert_eq!(m.take_high(), Some(299));
        m.release_range(500, 1000);
        assert_eq!(m.free_count(), 299 + 12, "only the map's 512 frames");
    }

    #[test]
    fn the_words_a_map_needs() {
        assert_eq!(FrameMap::words_for(0), 0);
        assert_eq!(FrameMap::words_for(64), 1);
        assert_eq!(FrameMap::words_for(65), 2);
        let mut w = [0; 0];
        let mut m = map(&mut w);
        assert_eq!((m.take_high(), m.take_run_low(1)), (None, None));
    }
}
