//! Keeps a region's leases alive while their creators run: one thread per
//! region, not one per lease.
//!
//! A lease from a backend shared between processes expires after the
//! region's `lock_timeout`, so a crashed owner cannot hold it forever. A
//! creator that legitimately runs longer must not lose it: while any lease
//! that [needs keep-alive](crate::backend::Lease::needs_keep_alive) is held,
//! the region's keeper thread extends each one every `lease_keep_alive`
//! (a third of the timeout by default). The thread starts with the first
//! such lease and ends when none is left; a lease the backend reports lost
//! is dropped from the list with a warning.

use crate::backend::Lease;
use crate::block_on::block_on;
use crate::region::Inner;
use crate::stats::Counter;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

struct Kept {
    lease: Arc<dyn Lease>,
    key: String,
    due: Instant,
}

#[derive(Default)]
struct State {
    leases: HashMap<u64, Kept>,
    next_id: u64,
    running: bool,
}

/// The keeper of one region (lives in its `Inner`).
#[derive(Default)]
pub(crate) struct Keeper {
    state: Mutex<State>,
    changed: Condvar,
}

impl Keeper {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Extends `lease` every keep-alive interval until [`forget`](Self::forget).
    /// Returns its ticket.
    pub(crate) fn keep(inner: &Arc<Inner>, key: &str, lease: Arc<dyn Lease>) -> u64 {
        let keeper = &inner.keeper;
        let mut state = keeper.state();
        let id = state.next_id;
        state.next_id += 1;
        let due = Instant::now() + inner.keep_alive;
        state.leases.insert(id, Kept { lease, key: key.to_owned(), due });
        if !state.running {
            let theirs = inner.clone();
            let spawned = std::thread::Builder::new().name("dogpile-lease-keeper".into()).spawn(move || run(&theirs));
            match spawned {
                Ok(_) => state.running = true,
                Err(e) => tracing::warn!(
                    region = %inner.name,
                    error = %e,
                    "could not start the lease keeper; a creator slower than lock_timeout may lose its lease"
                ),
            }
        } else {
            keeper.changed.notify_one();
        }
        id
    }

    /// Stops extending the lease of `ticket` (before it is released).
    pub(crate) fn forget(&self, ticket: u64) {
        if self.state().leases.remove(&ticket).is_some() {
            self.changed.notify_one();
        }
    }

    /// How many leases are being kept (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state().leases.len()
    }
}

/// The keeper thread: extends whichever lease is due, sleeps until the next
/// one, exits when none is left. It holds the region while leases exist
/// (each lease's guard holds it too), and lets go when idle.
fn run(inner: &Arc<Inner>) {
    let keeper = &inner.keeper;
    let mut state = keeper.state();
    loop {
        let Some((&id, next)) = state.leases.iter().min_by_key(|(_, k)| k.due) else {
            state.running = false;
            return;
        };
        let now = Instant::now();
        if next.due > now {
            let wait = next.due - now;
            state = keeper.changed.wait_timeout(state, wait).unwrap_or_else(PoisonError::into_inner).0;
            continue;
        }
        let (lease, key) = (next.lease.clone(), next.key.clone());
        if let Some(k) = state.leases.get_mut(&id) {
            k.due = now + inner.keep_alive;
        }
        // The network call runs without the mutex: a guard releasing its
        // lease meanwhile is not held up.
        drop(state);
        let result = block_on(lease.extend(inner.lock_timeout));
        state = keeper.state();
        match result {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(region = %inner.name, key = %key, "lease lost while its creator still runs");
                state.leases.remove(&id);
            }
            Err(e) => {
                inner.stats.incr(Counter::BackendErrors);
                tracing::warn!(region = %inner.name, key = %key, error = %e, "could not extend a lease; trying again at the next interval");
            }
        }
    }
}

/// The default keep-alive interval for a lease time-to-live.
pub(crate) fn default_interval(ttl: Duration) -> Duration {
    (ttl / 3).max(Duration::from_millis(1))
}
