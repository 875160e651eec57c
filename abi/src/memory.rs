//! How much guest memory an image needs: the kernel checks it at boot (and says how much to
//! give instead of failing later), `build-image` prints it. And when the kernel heap gives
//! free memory back to the program.

/// One mebibyte.
pub const MIB: u64 = 1 << 20;

/// Memory the kernel needs above its image and payload: the first heap chunk (256 KiB), page
/// tables, the frames it keeps for itself once a program has taken the rest (1 MiB at this
/// size), and what is left for the program's own pages (stack, data, heap: about 700 KiB,
/// three times what hello uses).
pub const MIN_FREE: u64 = 2 * MIB;

/// The least guest memory, in whole MiB, for an image whose loaded segments (kernel and
/// payload, at their physical addresses) end at `image_end`.
pub const fn min_mib(image_end: u64) -> u64 {
    (image_end + MIN_FREE).div_ceil(MIB)
}

/// What to suggest for `--memory` when `need_mib` is the minimum: the next power of two,
/// leaving the program some room.
pub const fn suggested_mib(need_mib: u64) -> u64 {
    need_mib.next_power_of_two()
}

/// Receive buffers to give a network card with `queue` slots of `buf_len` bytes each, in a
/// guest of `ram` bytes: a full queue (a burst the program has not read yet waits in the
/// guest, not in the hypervisor, which drops what it cannot hand over), but no more than
/// 1/32 of RAM, and at least 64.
pub fn net_rx_buffers(ram: u64, queue: usize, buf_len: usize) -> usize {
    let by_ram = (ram / 32 / buf_len.max(1) as u64) as usize;
    by_ram.clamp(64.min(queue), queue)
}

/// Free memory the kernel heap keeps rather than giving back: the buffers of a few
/// connections, so steady traffic does not move pages back and forth.
pub const HEAP_KEEP: usize = 512 * 1024;
/// Least the kernel heap gives back at a time.
pub const HEAP_RELEASE_MIN: usize = 64 * 1024;

/// Where the heap whose free top runs from `chunk_base` to `heap_end` should end after giving
/// pages back: `heap_end` to keep them all; `chunk_base` deletes the heap (only when
/// `is_heap_base`, the whole heap being free). `slack` is what the heap holds free (this
/// top included), `keep` what it should go on holding. `page` is the page size.
pub fn heap_release_end(
    page: usize,
    chunk_base: usize,
    heap_end: usize,
    is_heap_base: bool,
    slack: usize,
    keep: usize,
) -> usize {
    let Some(excess) = slack.checked_sub(keep) else {
        return heap_end;
    };
    let excess = excess / page * page;
    // The heap's first page when the whole heap is free (talc puts the base tag in its
    // first bytes: chunk_base lies just above the page-aligned base).
    let heap_start = (chunk_base - 1) / page * page;
    let first_free_page = chunk_base.div_ceil(page) * page;
    let (floor, whole) = if is_heap_base {
        (heap_start, chunk_base)
    } else {
        (first_free_page, first_free_page)
    };
    if heap_end <= floor || excess < HEAP_RELEASE_MIN {
        return heap_end;
    }
    let (new_end, released_from) = if heap_end - floor <= excess {
        (whole, floor)
    } else {
        // Part of the top, never the page holding the heap's base or its last allocation.
        let end = (heap_end - excess).max(first_free_page);
        (end, end)
    };
    if heap_end - released_from < HEAP_RELEASE_MIN {
        heap_end
    } else {
        new_end
    }
}

/// The message the kernel prints (one line, no allocation needed) when the machine has too
/// little memory for the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLittle {
    /// The least memory the image needs, in MiB ([`min_mib`]).
    pub need_mib: u64,
    /// The memory the machine has, in MiB.
    pub have_mib: u64,
}

impl core::fmt::Display for TooLittle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "this image needs at least {} MiB of memory; the machine has {} MiB: run with --memory {}M",
            self.need_mib,
            self.have_mib,
            suggested_mib(self.need_mib)
        )
    }
}

#[cfg(test)]
mod tests {
    const PAGE: usize = 4096;
    const K: usize = 1024;

    #[test]
    fn receive_buffers_fill_the_queue_within_a_32nd_of_ram() {
        use super::{net_rx_buffers as rx, MIB};
        // 8 MiB: 256 KiB of 2 KiB buffers.
        assert_eq!(rx(8 * MIB, 256, 2048), 128);
        assert_eq!(rx(16 * MIB, 256, 2048), 256);
        assert_eq!(rx(4 << 30, 256, 2048), 256);
        // Tiny guests still get 64, and never more than the queue holds.
        assert_eq!(rx(2 * MIB, 256, 2048), 64);
        assert_eq!(rx(2 * MIB, 32, 2048), 32);
        assert_eq!(rx(MIB, 256, 0), 256);
    }

    #[test]
    fn the_heap_keeps_what_it_should_and_small_tops() {
        use super::heap_release_end as end;
        let base = 0x10_0000;
        // Slack within what it keeps: nothing goes back.
        assert_eq!(
            end(PAGE, base + 32, base + 256 * K, true, 512 * K, 512 * K),
            base + 256 * K
        );
        // A top smaller than the least it gives back.
        assert_eq!(
            end(
                PAGE,
                base + 200 * K + 8,
                base + 256 * K,
                false,
                4096 * K,
                512 * K
            ),
            base + 256 * K
        );
        // An excess smaller than that.
        assert_eq!(
            end(PAGE, base + 32, base + 256 * K, true, 560 * K, 512 * K),
            base + 256 * K
        );
    }

    #[test]
    fn a_whole_free_heap_is_deleted_and_a_partial_top_goes_back_by_pages() {
        use super::heap_release_end as end;
        let base = 0x10_0000;
        // The whole heap is free and the excess covers it: deleted (chunk_base returned).
        assert_eq!(
            end(PAGE, base + 32, base + 256 * K, true, 2048 * K, 512 * K),
            base + 32
        );
        // Free from an allocation's end: everything from the next page boundary.
        assert_eq!(
            end(
                PAGE,
                base + 10 * K + 48,
                base + 256 * K,
                false,
                2048 * K,
                512 * K
            ),
            base + 12 * K
        );
        // The excess covers part of the top: that much, in whole pages.
        assert_eq!(
            end(
                PAGE,
                base + 32,
                base + 256 * K,
                true,
                512 * K + 100 * K + 100,
                512 * K
            ),
            base + 156 * K
        );
        assert_eq!(
            end(
                PAGE,
                base + 10 * K + 48,
                base + 256 * K,
                false,
                512 * K + 100 * K,
                512 * K
            ),
            base + 156 * K
        );
    }
    use super::*;

    #[test]
    fn minimum_covers_the_image_and_rounds_up() {
        assert_eq!(min_mib(0), 2);
        assert_eq!(min_mib(3 * MIB), 5);
        assert_eq!(min_mib(3 * MIB + 1), 6);
        assert_eq!(suggested_mib(7), 8);
        assert_eq!(suggested_mib(8), 8);
        assert_eq!(suggested_mib(9), 16);
        let msg = TooLittle {
            need_mib: 7,
            have_mib: 3,
        };
        assert_eq!(
            alloc::format!("{msg}"),
            "this image needs at least 7 MiB of memory; the machine has 3 MiB: run with --memory 8M"
        );
    }
}
