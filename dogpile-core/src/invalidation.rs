//! A region's last invalidation and the creation times it is judged
//! against.
//!
//! The invalidation is read on every hit, so it lives in one atomic word:
//!
//! ```text
//! bits 63..2  the invalidation time in ns since the Unix epoch, rounded up
//!             to a multiple of 4 (so its two low bits are free)
//! bit  1      soft
//! bit  0      set (0 for a region never invalidated)
//! ```
//!
//! Every time from the epoch to the end of `u64` nanoseconds (year 2554)
//! can be recorded, the epoch itself included; the cost is that a value
//! created up to 3 ns after an invalidation may count as invalidated, which
//! only makes it regenerate.
//!
//! A value is invalidated when it was created at or before the recorded
//! time. Creations stamp values with the time their creation *started*, and
//! never earlier than just after the last invalidation seen when it started
//! ([`Invalidations::creation_start`]): a value whose creation began before
//! an invalidation is caught by it, a value begun after is not.
//!
//! Clocks step back (NTP corrections, restored VMs) and other hosts' clocks
//! run ahead, so some stored values carry creation times later than our
//! clock. An invalidation covers every creation time this region has stamped
//! or read ([`Invalidations::saw`]), not just those before its own clock
//! reading.

use crate::options::Invalidation;
use std::sync::atomic::{AtomicU64, Ordering};

const SET: u64 = 1;
const SOFT: u64 = 2;
const TIME_MASK: u64 = !3;

/// How an invalidation applies to one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Created after the last invalidation (or never invalidated).
    Valid,
    /// Soft-invalidated: serve stale while one caller regenerates.
    Soft,
    /// Hard-invalidated: a miss.
    Hard,
}

pub(crate) struct Invalidations {
    /// The packed last invalidation (see the module docs).
    last: AtomicU64,
    /// The latest creation time this region has stamped or read that was
    /// not beyond the clock-skew tolerance.
    newest_seen: AtomicU64,
}

impl Invalidations {
    pub(crate) const fn new() -> Self {
        Self { last: AtomicU64::new(0), newest_seen: AtomicU64::new(0) }
    }

    /// How the last invalidation applies to a value created at `created`.
    #[inline]
    pub(crate) fn verdict(&self, created: u64) -> Verdict {
        let last = self.last.load(Ordering::Acquire);
        if last & SET == 0 || created > last & TIME_MASK {
            Verdict::Valid
        } else if last & SOFT != 0 {
            Verdict::Soft
        } else {
            Verdict::Hard
        }
    }

    /// Whether the last invalidation was a hard one.
    pub(crate) fn last_was_hard(&self) -> bool {
        let last = self.last.load(Ordering::Acquire);
        last & SET != 0 && last & SOFT == 0
    }

    /// Records an invalidation at `now` by our clock. Its time is the latest
    /// of `now`, every creation time seen, and just after the previous
    /// invalidation (times only move forward, so a value stamped after one
    /// invalidation is never caught by a later one's slow clock).
    pub(crate) fn record(&self, now: u64, how: Invalidation) {
        let at = now.max(self.newest_seen.load(Ordering::Acquire));
        let flags = SET | if how == Invalidation::Soft { SOFT } else { 0 };
        let _ = self.last.fetch_update(Ordering::AcqRel, Ordering::Acquire, |prev| {
            let mut t = round_up(at);
            if prev & SET != 0 {
                t = t.max((prev & TIME_MASK).saturating_add(4) & TIME_MASK);
            }
            Some(t | flags)
        });
    }

    /// The creation time for a value whose creation starts at `now`:
    /// strictly after the last invalidation, so that one recorded at the
    /// same instant does not catch it. Recorded as seen.
    pub(crate) fn creation_start(&self, now: u64) -> u64 {
        let last = self.last.load(Ordering::Acquire);
        let at = if last & SET == 0 { now } else { now.max((last & TIME_MASK).saturating_add(1)) };
        self.saw(at);
        at
    }

    /// The packed last invalidation, as shared through a backend (see the
    /// module docs for the layout; 0 when never invalidated).
    pub(crate) fn word(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }

    /// Adopts an invalidation recorded elsewhere (another process, through
    /// the backend) if it is later than ours. Words of unknown layout (the
    /// set bit clear) are ignored.
    pub(crate) fn merge(&self, word: u64) {
        if word & SET != 0 && word > self.last.load(Ordering::Acquire) {
            self.last.fetch_max(word, Ordering::AcqRel);
        }
    }

    /// Notes a creation time stamped or read by this region, so that a later
    /// invalidation covers it even if our clock reads earlier.
    #[inline]
    pub(crate) fn saw(&self, created: u64) {
        // A load first: the common case (nothing newer) writes nothing, so
        // readers on several cores do not bounce the cache line.
        if created > self.newest_seen.load(Ordering::Relaxed) {
            self.newest_seen.fetch_max(created, Ordering::AcqRel);
        }
    }
}

/// `t` rounded up to a multiple of 4, saturating at the largest one.
fn round_up(t: u64) -> u64 {
    t.checked_add(3).map_or(TIME_MASK, |t| t & TIME_MASK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_invalidated_is_valid_at_every_time() {
        let inv = Invalidations::new();
        for t in [0, 1, u64::MAX] {
            assert_eq!(inv.verdict(t), Verdict::Valid);
        }
    }

    #[test]
    fn a_hard_invalidation_at_clock_zero_is_kept() {
        let inv = Invalidations::new();
        inv.record(0, Invalidation::Hard);
        assert_eq!(inv.verdict(0), Verdict::Hard);
        assert!(inv.last_was_hard());
        assert_eq!(inv.verdict(inv.creation_start(0)), Verdict::Valid);
    }

    #[test]
    fn times_after_2116_and_up_to_the_end_of_u64_are_kept() {
        // 2200-01-01 in ns since the epoch: past what a shift by two holds.
        let t2200 = 7_258_118_400_000_000_000u64;
        let inv = Invalidations::new();
        inv.record(t2200, Invalidation::Soft);
        assert_eq!(inv.verdict(t2200 - 1), Verdict::Soft);
        assert_eq!(inv.verdict(t2200), Verdict::Soft);
        assert_eq!(inv.verdict(t2200 + 4), Verdict::Valid);
        inv.record(u64::MAX, Invalidation::Hard);
        assert_eq!(inv.verdict(u64::MAX - 4), Verdict::Hard);
    }

    #[test]
    fn invalidations_only_move_forward_and_the_last_decides() {
        let inv = Invalidations::new();
        inv.record(1_000, Invalidation::Hard);
        inv.record(10, Invalidation::Soft); // a clock that stepped back
        assert_eq!(inv.verdict(1_000), Verdict::Soft);
        assert_eq!(inv.verdict(1_004), Verdict::Soft);
        assert_eq!(inv.verdict(1_005), Verdict::Valid);
    }

    #[test]
    fn a_creation_started_before_an_invalidation_is_caught_by_it() {
        let inv = Invalidations::new();
        let start = inv.creation_start(500);
        inv.record(500, Invalidation::Hard); // same instant, after the start
        assert_eq!(inv.verdict(start), Verdict::Hard);
        let later = inv.creation_start(500);
        assert!(later > start);
        assert_eq!(inv.verdict(later), Verdict::Valid);
    }

    #[test]
    fn an_invalidation_covers_creation_times_ahead_of_the_clock() {
        let inv = Invalidations::new();
        inv.saw(5_000);
        inv.record(1_000, Invalidation::Hard);
        assert_eq!(inv.verdict(5_000), Verdict::Hard);
    }
}
