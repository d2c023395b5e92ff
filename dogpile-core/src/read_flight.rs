//! Shared reads: callers of one process that come for the same key of a
//! remote backend while a read of it is under way wait for that read instead
//! of making their own round trip.
//!
//! On a stampede (an expired key, many callers at once) every caller would
//! otherwise read the key before it can learn that another one is
//! regenerating it: a burst of identical round trips, each of which must be
//! answered and scheduled before its caller gets the stale value. With shared
//! reads the first caller (the leader) reads; the others (followers) wait
//! for its decoded value and judge it themselves, now.
//!
//! The leader shares what it read only when followers joined. A leader that
//! fails, finds bytes it cannot decode, or is dropped (a cancelled future)
//! abandons the flight, and its followers read for themselves. A `set` or
//! `delete` of the key detaches the flight (see [`ReadFlights::detach`]):
//! a caller that comes after the write does not join a read begun before it.

use crate::value::Meta;
use event_listener::{Event, Listener};
use std::any::Any;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

const SHARDS: usize = 16;

type Shard = Mutex<HashMap<Box<str>, Arc<Flight>>>;

/// The reads under way in one region, by storage key.
pub(crate) struct ReadFlights {
    shards: Box<[Shard]>,
    hasher: RandomState,
    /// Flights in the map: while none is, a write detaches nothing.
    active: AtomicUsize,
}

/// What a leader read, for its followers.
#[derive(Clone)]
pub(crate) enum Shared {
    /// A decoded value and its metadata (a `T` behind `dyn Any`).
    Value(Meta, Arc<dyn Any + Send + Sync>),
    /// The backend holds nothing under the key.
    Absent,
    /// The leader did not finish its read: read for yourself.
    Abandoned,
}

/// One read under way.
pub(crate) struct Flight {
    result: OnceLock<Shared>,
    done: Event,
    /// Callers waiting for this read (counted under the shard's mutex).
    followers: AtomicUsize,
}

/// What a caller does about a key's read.
pub(crate) enum Join<'a> {
    /// Read the key, then [`Lead::finish`].
    Lead(Lead<'a>),
    /// Wait for the leader's read ([`Flight::wait`]).
    Follow(Arc<Flight>),
}

/// The leader's duty to share its read; abandons the flight when dropped
/// unfinished.
pub(crate) struct Lead<'a> {
    flights: &'a ReadFlights,
    key: &'a str,
    flight: Option<Arc<Flight>>,
}

impl ReadFlights {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            active: AtomicUsize::new(0),
        }
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, HashMap<Box<str>, Arc<Flight>>> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        self.shards[i].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Leads a read of `key`, or follows the one under way.
    pub(crate) fn join<'a>(&'a self, key: &'a str) -> Join<'a> {
        let mut map = self.shard(key);
        if let Some(flight) = map.get(key) {
            flight.followers.fetch_add(1, Ordering::Relaxed);
            return Join::Follow(flight.clone());
        }
        let flight = Arc::new(Flight { result: OnceLock::new(), done: Event::new(), followers: AtomicUsize::new(0) });
        map.insert(key.into(), flight.clone());
        self.active.fetch_add(1, Ordering::Relaxed);
        Join::Lead(Lead { flights: self, key, flight: Some(flight) })
    }

    /// Takes `key`'s flight out of the map, if it is `flight` (a detached
    /// flight's key may hold a newer one); returns its follower count, final
    /// once the flight is out of the map.
    fn remove(&self, key: &str, flight: &Arc<Flight>) -> usize {
        let mut map = self.shard(key);
        if map.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            map.remove(key);
            self.active.fetch_sub(1, Ordering::Relaxed);
        }
        flight.followers.load(Ordering::Relaxed)
    }

    /// After a write of `key`: callers that come now start a read of their
    /// own rather than join one begun before the write.
    pub(crate) fn detach(&self, key: &str) {
        if self.active.load(Ordering::Relaxed) == 0 {
            return;
        }
        if self.shard(key).remove(key).is_some() {
            self.active.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Callers waiting for the read of `key` under way.
    pub(crate) fn followers(&self, key: &str) -> usize {
        self.shard(key).get(key).map_or(0, |f| f.followers.load(Ordering::Relaxed))
    }

    /// Flights in the map (tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap().len()).sum()
    }
}

impl Lead<'_> {
    /// Ends the read, handing `share()` to the followers, if any joined
    /// (`share` is not called otherwise).
    pub(crate) fn finish(mut self, share: impl FnOnce() -> Shared) {
        if let Some(flight) = self.flight.take() {
            let followers = self.flights.remove(self.key, &flight);
            if followers > 0 {
                flight.settle(share());
            }
        }
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        if let Some(flight) = self.flight.take() {
            self.flights.remove(self.key, &flight);
            flight.settle(Shared::Abandoned);
        }
    }
}

impl Flight {
    fn settle(&self, shared: Shared) {
        let _ = self.result.set(shared);
        self.done.notify(usize::MAX);
    }

    /// Blocks until the leader finishes.
    pub(crate) fn wait(&self) -> Shared {
        loop {
            if let Some(r) = self.result.get() {
                return r.clone();
            }
            let listener = self.done.listen();
            // Checked again after registering: a result set between the
            // first check and `listen` is not missed.
            if let Some(r) = self.result.get() {
                return r.clone();
            }
            listener.wait();
        }
    }

    /// Waits until the leader finishes, without blocking the thread.
    pub(crate) async fn wait_async(&self) -> Shared {
        loop {
            if let Some(r) = self.result.get() {
                return r.clone();
            }
            let listener = self.done.listen();
            if let Some(r) = self.result.get() {
                return r.clone();
            }
            listener.await;
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn lead(j: Join<'_>) -> Lead<'_> {
        match j {
            Join::Lead(l) => l,
            Join::Follow(_) => panic!("expected to lead"),
        }
    }

    fn follow(j: Join<'_>) -> Arc<Flight> {
        match j {
            Join::Follow(f) => f,
            Join::Lead(_) => panic!("expected to follow"),
        }
    }

    #[test]
    fn followers_get_what_the_leader_read() {
        let flights = ReadFlights::new();
        let l = lead(flights.join("k"));
        let f = follow(flights.join("k"));
        let other = lead(flights.join("other"));
        let waiter = std::thread::spawn(move || f.wait());
        l.finish(|| Shared::Value(Meta { created_nanos: 1, creation_nanos: 0 }, Arc::new(7u32)));
        match waiter.join().unwrap() {
            Shared::Value(_, v) => assert_eq!(v.downcast_ref::<u32>(), Some(&7)),
            _ => panic!("expected the value"),
        }
        drop(other);
        assert_eq!(flights.len(), 0);
        assert_eq!(flights.active.load(Ordering::Relaxed), 0);
        // The next caller reads again.
        drop(lead(flights.join("k")));
    }

    #[test]
    fn a_leader_without_followers_shares_nothing() {
        let flights = ReadFlights::new();
        lead(flights.join("k")).finish(|| panic!("nothing to share"));
        assert_eq!(flights.len(), 0);
    }

    #[test]
    fn a_dropped_leader_abandons_its_flight() {
        let flights = ReadFlights::new();
        let l = lead(flights.join("k"));
        let f = follow(flights.join("k"));
        drop(l);
        assert!(matches!(f.wait(), Shared::Abandoned));
        assert_eq!(flights.len(), 0);
    }

    #[test]
    fn a_write_detaches_the_read_under_way() {
        let flights = ReadFlights::new();
        let old = lead(flights.join("k"));
        let before = follow(flights.join("k"));
        flights.detach("k");
        // A caller after the write starts its own read...
        let new = lead(flights.join("k"));
        // ...which the old leader's end does not remove.
        old.finish(|| Shared::Absent);
        assert!(matches!(before.wait(), Shared::Absent));
        let after = follow(flights.join("k"));
        new.finish(|| Shared::Absent);
        assert!(matches!(after.wait(), Shared::Absent));
        assert_eq!(flights.len(), 0);
        assert_eq!(flights.active.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn async_followers_wake() {
        let flights = Arc::new(ReadFlights::new());
        let l = lead(flights.join("k"));
        let f = follow(flights.join("k"));
        let waiter = std::thread::spawn(move || crate::block_on::block_on(f.wait_async()));
        std::thread::sleep(std::time::Duration::from_millis(20));
        l.finish(|| Shared::Absent);
        assert!(matches!(waiter.join().unwrap(), Shared::Absent));
    }
}
