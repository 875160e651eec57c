//! Rates between clocks as 32.32 fixed-point factors: converting a count costs one
//! multiplication and a shift. The kernel converts TSC ticks to nanoseconds on most system
//! calls, and a 64-bit by 64-bit division through 128 bits is a software routine
//! (`__udivti3`), slow under emulation.

/// The factor that turns a count of a clock running at `from_hz` into one of a clock
/// running at `to_hz` (saturated; a zero rate counts as 1 Hz).
pub fn factor(from_hz: u64, to_hz: u64) -> u64 {
    let f = (u128::from(to_hz) << 32) / u128::from(from_hz.max(1));
    f.min(u128::from(u64::MAX)) as u64
}

/// `count` converted by `factor` (saturated at `u64::MAX`).
pub fn convert(count: u64, factor: u64) -> u64 {
    let v = (u128::from(count) * u128::from(factor)) >> 32;
    v.min(u128::from(u64::MAX)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: u64 = 1_000_000_000;

    #[test]
    fn ticks_become_nanoseconds_within_a_part_in_a_billion() {
        for hz in [
            1_000_000,
            1_193_182,
            2_596_200_000,
            3_000_000_000,
            4_700_000_123,
        ] {
            let f = factor(hz, NS);
            // One day of ticks.
            let ticks = hz * 86_400;
            let exact = u128::from(ticks) * u128::from(NS) / u128::from(hz);
            let got = u128::from(convert(ticks, f));
            let err = exact.abs_diff(got);
            assert!(
                err * 1_000_000_000 <= exact,
                "{hz} Hz: {got} against {exact}"
            );
        }
    }

    #[test]
    fn nanoseconds_become_timer_ticks() {
        let f = factor(NS, 100_000_000);
        // Rounded down: at most one tick short.
        assert!((99_999..=100_000).contains(&convert(1_000_000, f)));
        assert_eq!(convert(0, f), 0);
    }

    #[test]
    fn the_clock_never_goes_back_as_ticks_grow() {
        let f = factor(2_596_200_000, NS);
        let mut last = 0;
        for t in (0..10_000_000u64).step_by(997) {
            let ns = convert(t, f);
            assert!(ns >= last);
            last = ns;
        }
    }

    #[test]
    fn extremes_saturate_instead_of_wrapping() {
        assert_eq!(factor(0, NS), NS << 32);
        assert_eq!(factor(1, u64::MAX), u64::MAX);
        assert_eq!(convert(u64::MAX, u64::MAX), u64::MAX);
        assert_eq!(convert(u64::MAX, 1 << 32), u64::MAX);
    }
}
