//! How much guest memory an image needs: the kernel checks it at boot (and says how much to
//! give instead of failing later), `build-image` prints it.

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
