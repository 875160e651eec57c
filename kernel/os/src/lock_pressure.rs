//! Whether the CPUs beyond the boot CPU should take threads: not while the kernel lock is
//! what limits the program.
//!
//! The kernel runs one CPU at a time (one big lock). A program whose threads spend their
//! time in system calls, such as a network server under load, gains nothing from a second
//! CPU: that CPU spends its time waiting for the lock, each request crosses CPUs, and under
//! an emulator the waiting vCPU takes a host core from the one doing the work. Measured
//! with `examples/http-hello` on two vCPUs under TCG: 7,700 requests/s at 256 connections
//! with both CPUs taking threads, 10,400 with only the boot CPU taking them. A program
//! whose threads compute in user mode takes the lock rarely and scales with the CPUs.
//!
//! So the kernel counts how many lock acquisitions had to wait, over windows of
//! [`WINDOW_NS`]. When more than half did, the other CPUs are held back for [`HOLD_NS`]:
//! they finish what they run but take no new thread, and are not woken for ready ones.
//! Then they take threads again, and the next window measures afresh, so a program that
//! turns to computing gets its CPUs back within a fraction of a second.

/// How long one measurement lasts (ns).
pub const WINDOW_NS: u64 = 20_000_000;
/// How long the other CPUs are held back once a window found the lock contended (ns).
pub const HOLD_NS: u64 = 200_000_000;
/// Fewer acquisitions than this in a window say nothing either way.
const MIN_ACQUISITIONS: u64 = 100;

/// The measurement (see the module documentation). The counts it is given are running
/// totals, kept by whoever takes the lock.
#[derive(Debug, Default)]
pub struct LockPressure {
    /// When the current window began (monotonic ns), and the totals then.
    window: Option<(u64, u64, u64)>,
    /// Until when the other CPUs are held back (monotonic ns).
    held_back_until: u64,
    /// How many times the other CPUs were held back.
    holds: u64,
}

impl LockPressure {
    /// Takes the running totals of lock acquisitions and of those that had to wait, at
    /// `now`; ends the window when its time is up. Cheap when it is not.
    pub fn update(&mut self, now: u64, acquired: u64, contended: u64) {
        let Some((start, a0, c0)) = self.window else {
            self.window = Some((now, acquired, contended));
            return;
        };
        if now < start.saturating_add(WINDOW_NS) {
            return;
        }
        let (a, c) = (acquired.wrapping_sub(a0), contended.wrapping_sub(c0));
        if a >= MIN_ACQUISITIONS && c.saturating_mul(2) > a && !self.held_back(now) {
            self.held_back_until = now.saturating_add(HOLD_NS);
            self.holds += 1;
        }
        self.window = Some((now, acquired, contended));
    }

    /// Whether the CPUs beyond the boot CPU take no new thread at `now`.
    pub fn held_back(&self, now: u64) -> bool {
        now < self.held_back_until
    }

    /// Until when the other CPUs are held back (monotonic ns; in the past when they are not).
    pub fn held_back_until(&self) -> u64 {
        self.held_back_until
    }

    /// How many times the other CPUs were held back so far.
    pub fn holds(&self) -> u64 {
        self.holds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_contended_window_holds_the_other_cpus_back_for_a_while() {
        let mut p = LockPressure::default();
        p.update(0, 0, 0);
        assert!(!p.held_back(0));
        // Within the window nothing is decided.
        p.update(10 * MS, 1000, 900);
        assert!(!p.held_back(10 * MS));
        p.update(20 * MS, 1000, 900);
        assert!(p.held_back(20 * MS));
        assert!(p.held_back(20 * MS + HOLD_NS - 1));
        assert!(!p.held_back(20 * MS + HOLD_NS));
        assert_eq!(p.holds(), 1);
    }

    #[test]
    fn a_lock_mostly_free_or_rarely_taken_holds_nothing_back() {
        let mut p = LockPressure::default();
        p.update(0, 0, 0);
        // Half the acquisitions waited: not more than half.
        p.update(20 * MS, 1000, 500);
        assert!(!p.held_back(20 * MS));
        // All waited, but too few to tell (a computing program's occasional call).
        p.update(40 * MS, 1050, 550);
        assert!(!p.held_back(40 * MS));
        assert_eq!(p.holds(), 0);
    }

    #[test]
    fn after_the_hold_the_next_window_measures_afresh() {
        let mut p = LockPressure::default();
        p.update(0, 0, 0);
        p.update(20 * MS, 1000, 1000);
        let until = p.held_back_until();
        // Held back: a window ending now does not extend the hold.
        p.update(40 * MS, 1200, 1000);
        assert_eq!(p.held_back_until(), until);
        // Back to normal, and the program now computes: it keeps its CPUs.
        p.update(until, 1300, 1000);
        p.update(until + WINDOW_NS, 1500, 1010);
        assert!(!p.held_back(until + WINDOW_NS));
        // Contended again: held back again.
        p.update(until + 2 * WINDOW_NS, 3000, 2500);
        assert!(p.held_back(until + 2 * WINDOW_NS));
        assert_eq!(p.holds(), 2);
    }
}
