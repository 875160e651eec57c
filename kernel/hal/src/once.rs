//! A value set once, at boot, and read from then on: the handlers, the page tables, the
//! command line.
//!
//! `spin::Once` did this job, but its `call_once` is a general initialiser (it waits for a
//! caller that is running the closure, and panics after one that panicked): each of its
//! nine uses compiled to its own slow path with three jump tables and two panics, about
//! 2 KB together. Here setting is one compare-and-swap and a store, and reading one load.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, Ordering};

const EMPTY: u8 = 0;
const WRITING: u8 = 1;
const READY: u8 = 2;

/// A `T` that is set at most once and shared read-only after.
pub struct SetOnce<T> {
    state: AtomicU8,
    value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: the value is written only by the one caller of `set` that moved `state` from
// EMPTY to WRITING, before `state` becomes READY (release); `get` hands out shared
// references only after it sees READY (acquire), and nothing writes the value after that.
// So a `SetOnce<T>` can be shared between CPUs when `T` can be sent (it is moved in by any
// CPU) and shared (every CPU reads it).
unsafe impl<T: Send + Sync> Sync for SetOnce<T> {}

impl<T> SetOnce<T> {
    /// Nothing set yet.
    pub const fn new() -> Self {
        Self {
            state: AtomicU8::new(EMPTY),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// Sets the value, unless it was set before (or another CPU is setting it): then
    /// `value` is dropped and the first value stays, as with `spin::Once::call_once`.
    /// Returns whether this call set it.
    pub fn set(&self, value: T) -> bool {
        if self
            .state
            .compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        // SAFETY: this caller alone moved `state` to WRITING, so nothing else writes the
        // value, and no reader looks at it before `state` is READY.
        unsafe { (*self.value.get()).write(value) };
        self.state.store(READY, Ordering::Release);
        true
    }

    /// The value, once set.
    pub fn get(&self) -> Option<&T> {
        if self.state.load(Ordering::Acquire) != READY {
            return None;
        }
        // SAFETY: READY is stored (release) only after the value was written, and the value
        // is never written again, so it is initialised and only shared from here on.
        Some(unsafe { (*self.value.get()).assume_init_ref() })
    }
}

impl<T> Default for SetOnce<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Drop for SetOnce<T> {
    fn drop(&mut self) {
        if *self.state.get_mut() == READY {
            // SAFETY: READY means the value was written; `&mut self` means no reference
            // to it is left.
            unsafe { self.value.get_mut().assume_init_drop() };
        }
    }
}
