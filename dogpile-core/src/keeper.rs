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
    #[cfg(all(test, not(loom)))]
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

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::backend::{Acquire, Backend, BackendError, BlockingBackend, BoxFuture, Lease, Value, ValueKind, ready};
    use crate::{Expiration, Region};
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    /// Stores nothing; issues leases that record their extensions and
    /// releases.
    #[derive(Debug, Default)]
    struct LeaseOnly {
        owners: Mutex<HashMap<String, u64>>,
        next: AtomicUsize,
        extends: AtomicUsize,
        releases: AtomicUsize,
        keep_alive: bool,
    }

    #[derive(Debug)]
    struct TestLease(Arc<LeaseOnly>, String, u64);

    impl Lease for TestLease {
        fn needs_keep_alive(&self) -> bool {
            self.0.keep_alive
        }
        fn extend(&self, _: Duration) -> BoxFuture<'_, Result<bool, BackendError>> {
            let ours = self.0.owners.lock().unwrap().get(&self.1) == Some(&self.2);
            if ours {
                self.0.extends.fetch_add(1, Ordering::SeqCst);
            }
            ready(Ok(ours))
        }
        fn release(&self) -> BoxFuture<'_, Result<bool, BackendError>> {
            self.0.releases.fetch_add(1, Ordering::SeqCst);
            let mut owners = self.0.owners.lock().unwrap();
            let ours = owners.get(&self.1) == Some(&self.2);
            if ours {
                owners.remove(&self.1);
            }
            ready(Ok(ours))
        }
    }

    #[derive(Debug)]
    struct Handle(Arc<LeaseOnly>);

    impl Backend for Handle {
        fn name(&self) -> &'static str {
            "lease-only"
        }
        fn value_kind(&self) -> ValueKind {
            ValueKind::Bytes
        }
        fn blocking(&self) -> Option<&dyn BlockingBackend> {
            Some(self)
        }
        fn issues_leases(&self) -> bool {
            true
        }
    }

    impl BlockingBackend for Handle {
        fn get(&self, _: &str) -> Result<Option<Value>, BackendError> {
            Ok(None)
        }
        fn set(&self, _: &str, _: Value, _: Option<Duration>) -> Result<(), BackendError> {
            Ok(())
        }
        fn delete(&self, _: &str) -> Result<(), BackendError> {
            Ok(())
        }
        fn try_lease(&self, key: &str, _: Duration) -> Result<Acquire, BackendError> {
            let mut owners = self.0.owners.lock().unwrap();
            if owners.contains_key(key) {
                return Ok(Acquire::Held);
            }
            let token = self.0.next.fetch_add(1, Ordering::SeqCst) as u64;
            owners.insert(key.to_owned(), token);
            Ok(Acquire::Won(Box::new(TestLease(self.0.clone(), key.to_owned(), token))))
        }
    }

    fn region(store: &Arc<LeaseOnly>) -> Region {
        Region::builder("keeper")
            .backend(Handle(store.clone()))
            .expiration(Expiration::Never)
            .lock_timeout(Duration::from_millis(30))
            .build()
    }

    /// Threads of this process named like the keeper (Linux truncates
    /// names to 15 bytes).
    #[cfg(target_os = "linux")]
    fn keeper_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.trim_end() == "dogpile-lease-k")
            .count()
    }

    #[test]
    fn slow_creators_keep_their_leases_with_one_keeper_thread() {
        let store = Arc::new(LeaseOnly { keep_alive: true, ..LeaseOnly::default() });
        let region = region(&store);
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let (region, store) = (region.clone(), store.clone());
                std::thread::spawn(move || {
                    region
                        .get_or_create(&format!("k{i}"), || {
                            // Runs until the keeper has extended leases a few
                            // times (hang guard: 10 s).
                            let start = Instant::now();
                            while store.extends.load(Ordering::SeqCst) < 8 {
                                assert!(start.elapsed() < Duration::from_secs(10), "leases never extended");
                                #[cfg(target_os = "linux")]
                                assert!(keeper_threads() <= 1, "one keeper per region, not one per lease");
                                std::thread::sleep(Duration::from_millis(1));
                            }
                            i
                        })
                        .unwrap()
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), i);
        }
        assert!(store.owners.lock().unwrap().is_empty(), "every lease released");
        assert_eq!(store.releases.load(Ordering::SeqCst), 4, "each released once, by its owner");
        assert_eq!(region.inner.keeper.len(), 0, "the keeper forgets released leases");
    }

    #[test]
    fn leases_without_keep_alive_are_not_extended() {
        let store = Arc::new(LeaseOnly { keep_alive: false, ..LeaseOnly::default() });
        let region = region(&store);
        let v: u32 = region
            .get_or_create("k", || {
                std::thread::sleep(Duration::from_millis(100));
                assert_eq!(region.inner.keeper.len(), 0);
                1
            })
            .unwrap();
        assert_eq!(v, 1);
        assert_eq!(store.extends.load(Ordering::SeqCst), 0);
        assert_eq!(store.releases.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_keep_alive_not_shorter_than_the_lease_is_refused() {
        let store = Arc::new(LeaseOnly::default());
        let err = Region::builder("bad")
            .backend(Handle(store))
            .lock_timeout(Duration::from_secs(1))
            .lease_keep_alive(Duration::from_secs(1))
            .try_build()
            .unwrap_err()
            .to_string();
        assert!(err.contains("region `bad`") && err.contains("keep-alive"), "{err}");
    }
}
