//! Which family owns each system call number, learnt from its first call.
//!
//! `dispatch` asks the families in turn; a number owned by the last of them went through
//! six calls that answered "not mine" first, on every call (a server's socket calls are
//! in the last family). Ownership does not change while the kernel runs, so the family
//! that answered is remembered and asked first the next time.

use core::sync::atomic::{AtomicU8, Ordering};

/// Numbers remembered (Linux's x86-64 numbers stay below this).
const NUMBERS: usize = 512;
/// No family learnt yet.
const UNKNOWN: u8 = u8::MAX;

static OWNER: [AtomicU8; NUMBERS] = [const { AtomicU8::new(UNKNOWN) }; NUMBERS];

/// The family (its index in the dispatch order) that handled `nr` before.
pub fn owner(nr: u64) -> Option<usize> {
    let f = OWNER
        .get(usize::try_from(nr).ok()?)?
        .load(Ordering::Relaxed);
    (f != UNKNOWN).then_some(usize::from(f))
}

/// Remembers that family `family` handled `nr`.
pub fn learn(nr: u64, family: usize) {
    if let (Some(slot), Ok(f)) = (
        usize::try_from(nr).ok().and_then(|n| OWNER.get(n)),
        u8::try_from(family),
    ) {
        slot.store(f, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_is_remembered_per_number() {
        // Numbers no other test dispatches.
        assert_eq!(owner(500), None);
        learn(500, 3);
        assert_eq!(owner(500), Some(3));
        assert_eq!(owner(501), None);
    }

    #[test]
    fn numbers_beyond_the_table_are_never_remembered() {
        learn(NUMBERS as u64, 2);
        learn(u64::MAX, 2);
        assert_eq!(owner(NUMBERS as u64), None);
        assert_eq!(owner(u64::MAX), None);
    }
}
