//! Where the region reads the time: the system's wall clock, or an injected
//! clock (a [`MockClock`] in tests).
//!
//! Creation times are wall-clock nanoseconds since the Unix epoch, because
//! byte backends share them between processes and machines.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time, in nanoseconds since the Unix epoch.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time in nanoseconds since the Unix epoch.
    fn now_nanos(&self) -> u64;
}

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        system_now_nanos()
    }
}

#[inline]
pub(crate) fn system_now_nanos() -> u64 {
    // A clock set before 1970 reads as the epoch; one past 2554 saturates.
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A clock that only moves when told to: expiry tests advance it instead of
/// sleeping.
///
/// ```
/// use std::time::Duration;
/// use dogpile_core::MockClock;
///
/// let clock = MockClock::new();
/// let t0 = clock.now();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(clock.now().duration_since(t0).unwrap(), Duration::from_secs(5));
/// ```
#[derive(Debug)]
pub struct MockClock {
    nanos: AtomicU64,
}

impl MockClock {
    /// A mock clock starting at 2020-01-01T00:00:00Z.
    pub fn new() -> Arc<Self> {
        Self::starting_at(UNIX_EPOCH + Duration::from_secs(1_577_836_800))
    }

    /// A mock clock starting at `start`.
    pub fn starting_at(start: SystemTime) -> Arc<Self> {
        Arc::new(Self { nanos: AtomicU64::new(to_nanos(start)) })
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self.nanos.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| Some(n.saturating_add(by)));
    }

    /// Sets the clock to `to` (it may go backwards).
    pub fn set(&self, to: SystemTime) {
        self.nanos.store(to_nanos(to), Ordering::SeqCst);
    }

    /// The clock's current reading.
    pub fn now(&self) -> SystemTime {
        from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

impl Clock for MockClock {
    fn now_nanos(&self) -> u64 {
        self.nanos.load(Ordering::SeqCst)
    }
}

/// The region's clock: the system clock is called directly (no virtual call
/// on the hit path), an injected one through its trait object.
#[derive(Debug, Clone)]
pub(crate) enum RegionClock {
    System,
    Custom(Arc<dyn Clock>),
}

impl RegionClock {
    /// The precise time: for creation and invalidation timestamps.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        match self {
            RegionClock::System => system_now_nanos(),
            RegionClock::Custom(c) => c.now_nanos(),
        }
    }

    /// The time to judge expiry with: the coarse clock (about a
    /// millisecond) for the system clock, the injected clock as is.
    #[inline]
    pub(crate) fn now_coarse(&self) -> u64 {
        match self {
            RegionClock::System => crate::coarse::now(),
            RegionClock::Custom(c) => c.now_nanos(),
        }
    }
}

pub(crate) fn to_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

pub(crate) fn from_nanos(n: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(n)
}

pub(crate) fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_clock_advances_and_sets() {
        let c = MockClock::new();
        let start = c.now_nanos();
        c.advance(Duration::from_millis(1500));
        assert_eq!(c.now_nanos() - start, 1_500_000_000);
        c.set(UNIX_EPOCH);
        assert_eq!(c.now_nanos(), 0);
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now_nanos() > 1_577_836_800_000_000_000);
    }

    #[test]
    fn nanos_round_trip() {
        let t = UNIX_EPOCH + Duration::from_nanos(1_234_567_890_123);
        assert_eq!(from_nanos(to_nanos(t)), t);
    }
}
