//! Per-region counters, sharded so that hits on two cores never write the
//! same cache line.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a region's counters since it was built.
///
/// # One outcome per call
///
/// Every `get_or_create*` call that returns (blocking or async, the
/// fallible `try_` forms and the background ones included) counts exactly
/// one outcome; a multi-key call counts one per distinct key:
///
/// - [`hits`](Self::hits): it found a fresh value;
/// - [`waited`](Self::waited): it found no usable value, waited while
///   another caller (in this process, or in another one sharing the
///   backend) created it, and got that caller's value;
/// - [`stale_served`](Self::stale_served): it got an expired value
///   (another caller was regenerating it, regeneration went to the
///   background, or its own creator failed under stale-if-error);
/// - [`misses`](Self::misses): it ran its own creator, because the value
///   was missing or expired (and it won the lock); the call got the
///   creator's value, or its error.
///
/// So, for those calls, `hits + waited + stale_served + misses` is the
/// number of calls (of keys, for multi-key calls), and the hit ratio is
/// `hits` over that sum. [`get`](crate::Region::get) and
/// [`get_multi`](crate::Region::get_multi) count each key as a hit or, when
/// absent, expired or undecodable, a miss. A call that ends in a cache error
/// (a backend failure, [`Error::Reentrant`](crate::Error::Reentrant)) or
/// whose creator panics or is cancelled counts no outcome.
///
/// The other counters count events, not calls: creator runs (`creations`,
/// `creation_errors`, background regenerations included), waits
/// (`lock_waits`: a call may wait more than once, and a waiter whose
/// creator failed may go on to create) and failures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Calls that found a fresh value (see [One outcome per
    /// call](Self#one-outcome-per-call)).
    pub hits: u64,
    /// Calls that ran their own creator (a missing or expired value); for
    /// `get` and `get_multi`, keys with no fresh value.
    pub misses: u64,
    /// Calls that got an expired value: another caller held the lock,
    /// regeneration ran in the background, or it failed with
    /// stale-if-error.
    pub stale_served: u64,
    /// Calls that waited for another caller's creation and got its value.
    pub waited: u64,
    /// Creator runs that returned a value (one per key for multi-key
    /// creators).
    pub creations: u64,
    /// Creator runs that returned an error or panicked.
    pub creation_errors: u64,
    /// Backend calls that failed.
    pub backend_errors: u64,
    /// Stored values that could not be decoded (or had another type); the
    /// read counts as finding nothing.
    pub decode_failures: u64,
    /// Times a caller had to wait for another caller's creation.
    pub lock_waits: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counter {
    Hits = 0,
    Misses,
    StaleServed,
    Creations,
    CreationErrors,
    BackendErrors,
    DecodeFailures,
    LockWaits,
    Waited,
}

const COUNTERS: usize = 9;
/// Shards owned by one thread each: a thread that touches any region gets
/// one, if one is free, and updates it with a plain load and store, no
/// atomic read-modify-write (the only writer is that thread; readers sum
/// with relaxed loads). A thread that exits hands its shard back, so
/// short-lived threads (a blocking pool's, a benchmark's) do not use up the
/// owned shards.
const OWNED: usize = 64;
/// Shards shared by the threads beyond the first `OWNED` live ones,
/// updated with `fetch_add`.
const SHARED: usize = 16;
const OWNED_FLAG: usize = 1 << (usize::BITS - 1);

#[repr(align(128))]
#[derive(Default)]
struct Shard([AtomicU64; COUNTERS]);

/// The live counters of one region.
pub(crate) struct StatsCells {
    shards: Box<[Shard]>,
}

impl Default for StatsCells {
    fn default() -> Self {
        Self { shards: (0..OWNED + SHARED).map(|_| Shard::default()).collect() }
    }
}

/// The owned shards no live thread holds, and how many were ever handed out.
struct FreeSlots {
    free: Vec<usize>,
    issued: usize,
    shared_next: usize,
}

static FREE: Mutex<FreeSlots> = Mutex::new(FreeSlots { free: Vec::new(), issued: 0, shared_next: 0 });

/// A thread's shard index, with `OWNED_FLAG` set when it owns it; an owned
/// shard goes back to `FREE` when the thread exits. The hand-over is
/// ordered by the mutex: the last store of the exiting thread happens
/// before the next owner's first load.
struct ThreadSlot(std::cell::Cell<usize>);

impl Drop for ThreadSlot {
    fn drop(&mut self) {
        let s = self.0.get();
        if s != usize::MAX && s & OWNED_FLAG != 0 {
            free_slots().free.push(s & !OWNED_FLAG);
        }
    }
}

fn free_slots() -> std::sync::MutexGuard<'static, FreeSlots> {
    FREE.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cold]
fn take_slot() -> usize {
    let mut slots = free_slots();
    if let Some(id) = slots.free.pop() {
        return id | OWNED_FLAG;
    }
    if slots.issued < OWNED {
        slots.issued += 1;
        return (slots.issued - 1) | OWNED_FLAG;
    }
    slots.shared_next = slots.shared_next.wrapping_add(1);
    OWNED + slots.shared_next % SHARED
}

/// This thread's shard index, with `OWNED_FLAG` set when it owns it.
#[inline]
fn slot() -> usize {
    thread_local! {
        static SLOT: ThreadSlot = const { ThreadSlot(std::cell::Cell::new(usize::MAX)) };
    }
    SLOT.try_with(|slot| {
        let s = slot.0.get();
        if s != usize::MAX {
            return s;
        }
        let s = take_slot();
        slot.0.set(s);
        s
    })
    // During the thread's own teardown (a region used from another
    // thread-local's destructor): a shared shard.
    .unwrap_or(OWNED)
}

impl StatsCells {
    #[inline]
    pub(crate) fn add(&self, counter: Counter, n: u64) {
        let s = slot();
        let cell = &self.shards[s & !OWNED_FLAG].0[counter as usize];
        if s & OWNED_FLAG != 0 {
            cell.store(cell.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
        } else {
            cell.fetch_add(n, Ordering::Relaxed);
        }
    }

    #[inline]
    pub(crate) fn incr(&self, counter: Counter) {
        self.add(counter, 1);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let sum = |c: Counter| self.shards.iter().map(|s| s.0[c as usize].load(Ordering::Relaxed)).sum();
        Stats {
            hits: sum(Counter::Hits),
            misses: sum(Counter::Misses),
            stale_served: sum(Counter::StaleServed),
            creations: sum(Counter::Creations),
            creation_errors: sum(Counter::CreationErrors),
            backend_errors: sum(Counter::BackendErrors),
            decode_failures: sum(Counter::DecodeFailures),
            lock_waits: sum(Counter::LockWaits),
            waited: sum(Counter::Waited),
        }
    }
}

impl std::fmt::Debug for StatsCells {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.snapshot().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_across_threads() {
        let cells = std::sync::Arc::new(StatsCells::default());
        // More threads than owned shards, so shared shards are used too.
        let handles: Vec<_> = (0..(OWNED + 8))
            .map(|_| {
                let cells = cells.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        cells.incr(Counter::Hits);
                    }
                    cells.add(Counter::LockWaits, 2);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let s = cells.snapshot();
        assert_eq!(s.hits, (OWNED as u64 + 8) * 1000);
        // Those threads exited: their shards are free again, so a new
        // thread owns one (no shared shard, no atomic add).
        let owned = std::thread::spawn(slot).join().unwrap();
        assert_ne!(owned & OWNED_FLAG, 0, "a thread started after the others exited owns a shard");
        assert_eq!(s.lock_waits, (OWNED as u64 + 8) * 2);
        assert_eq!(s.misses, 0);
    }
}
