//! Shuttle models of the async single-flight path (issue 4).
//!
//! Shuttle runs the tasks of each iteration on one thread and picks which
//! one goes next at every scheduling point, at random or by PCT. Our
//! scheduling points are the tasks' awaits: the creator's, the wait on a key's
//! release (event-listener wakes the task through shuttle's waker), and
//! every backend call, because the backend here is an async one that yields
//! before and after each operation, as a networked client would. So a task can stop
//! between reading "absent" and taking the lock, or between storing the
//! value and releasing the lock, in every order the scheduler finds.
//!
//! The last model puts two regions, standing for two processes, on one
//! store that issues leases (its calls yield as well), so the driver's
//! lease steps (read and lease, wait for another process's release, release)
//! run under the scheduler too.
//!
//! Not covered here: preemption inside the lock registry itself (no await
//! there; the loom model in `dogpile-core/src/lock.rs` covers its threads).

use dogpile::backend::{
    Acquire, AsyncBackend, Backend, BackendError, BlockingBackend, BoxFuture, Lease, Value, ValueKind,
};
use dogpile::backends::MemoryBackend;
use dogpile::{MockClock, Region};
use shuttle::future::{block_on, spawn, yield_now};
use std::collections::HashMap;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;

const RANDOM_ITERATIONS: usize = 1_000;
const PCT_ITERATIONS: usize = 500;
const PCT_DEPTH: usize = 3;
/// Tasks contending for one key in each model.
const TASKS: usize = 3;

/// The memory backend behind an async interface that yields to the
/// scheduler before and after every call (a request in flight, then a
/// response in flight).
#[derive(Debug)]
struct YieldingBackend {
    inner: MemoryBackend,
}

impl Backend for YieldingBackend {
    fn name(&self) -> &'static str {
        "yielding-memory"
    }
    fn value_kind(&self) -> ValueKind {
        self.inner.value_kind()
    }
    fn nonblocking(&self) -> Option<&dyn AsyncBackend> {
        Some(self)
    }
    fn blocking(&self) -> Option<&dyn BlockingBackend> {
        Some(self)
    }
}

impl BlockingBackend for YieldingBackend {
    fn get(&self, key: &str) -> Result<Option<Value>, BackendError> {
        self.inner.get(key)
    }
    fn set(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<(), BackendError> {
        self.inner.set(key, value, ttl)
    }
    fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.inner.delete(key)
    }
}

impl AsyncBackend for YieldingBackend {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Value>, BackendError>> {
        Box::pin(async move {
            yield_now().await;
            let r = self.inner.get(key);
            yield_now().await;
            r
        })
    }
    fn set<'a>(&'a self, key: &'a str, value: Value, ttl: Option<Duration>) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            yield_now().await;
            let r = self.inner.set(key, value, ttl);
            yield_now().await;
            r
        })
    }
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            yield_now().await;
            let r = self.inner.delete(key);
            yield_now().await;
            r
        })
    }
}

fn region(clock: &Arc<MockClock>) -> Region {
    Region::builder("shuttle")
        .backend(YieldingBackend { inner: MemoryBackend::new() })
        .expiration(Duration::from_secs(60))
        .clock(clock.clone())
        .build()
}

/// Runs `model` under the random scheduler and under PCT.
fn check(model: fn()) {
    shuttle::check_random(model, RANDOM_ITERATIONS);
    shuttle::check_pct(model, PCT_ITERATIONS, PCT_DEPTH);
}

/// Missing key: exactly one task creates, every task gets its value, and
/// no lock bookkeeping is left.
fn missing_key_model() {
    let region = region(&MockClock::new());
    let calls = Arc::new(AtomicUsize::new(0));
    block_on(async {
        let handles: Vec<_> = (0..TASKS)
            .map(|i| {
                let (region, calls) = (region.clone(), calls.clone());
                spawn(async move {
                    region
                        .get_or_create_async("k", move || async move {
                            calls.fetch_add(1, SeqCst);
                            yield_now().await;
                            yield_now().await;
                            format!("made by {i}")
                        })
                        .await
                        .expect("memory backend")
                })
            })
            .collect();
        let mut values = Vec::new();
        for h in handles {
            values.push(h.await.expect("task finished"));
        }
        assert!(values.iter().all(|v| *v == values[0]), "one value for all: {values:?}");
    });
    assert_eq!(calls.load(SeqCst), 1, "exactly one creation");
    assert_eq!(region.lock_entries(), 0);
}

/// Expired key: regenerations never overlap, non-regenerating tasks get the
/// stale value, and the new value ends up stored.
///
/// Not "exactly one regeneration": the expired path reads the value once
/// (as the original does, DESIGN §3), so a task whose read was still in
/// flight during the winner's whole regeneration finds the lock free
/// afterwards and regenerates again. Shuttle finds that schedule; the
/// tokio stampede test, whose creator outlasts every read, shows one.
fn expired_key_model() {
    let clock = MockClock::new();
    let region = region(&clock);
    region.set("k", "old".to_string()).expect("memory backend");
    clock.advance(Duration::from_secs(61));
    let calls = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    block_on(async {
        let handles: Vec<_> = (0..TASKS)
            .map(|_| {
                let (region, calls, running) = (region.clone(), calls.clone(), running.clone());
                spawn(async move {
                    region
                        .get_or_create_async("k", move || async move {
                            calls.fetch_add(1, SeqCst);
                            assert_eq!(running.fetch_add(1, SeqCst), 0, "two regenerations at once");
                            yield_now().await;
                            running.fetch_sub(1, SeqCst);
                            "new".to_string()
                        })
                        .await
                        .expect("memory backend")
                })
            })
            .collect();
        let mut values = Vec::new();
        for h in handles {
            values.push(h.await.expect("task finished"));
        }
        // Tasks that start after a regeneration finished see it fresh.
        let new = values.iter().filter(|v| *v == "new").count();
        let old = values.iter().filter(|v| *v == "old").count();
        assert_eq!(new + old, TASKS, "{values:?}");
        assert!(new >= calls.load(SeqCst), "each regenerating task returns its value: {values:?}");
    });
    let calls = calls.load(SeqCst);
    assert!((1..=TASKS).contains(&calls));
    let stats = region.stats();
    assert_eq!(stats.creations, calls as u64);
    assert_eq!(stats.stale_served + stats.creations + stats.hits, TASKS as u64, "{stats:?}");
    assert_eq!(region.get::<String>("k").expect("memory backend").as_deref(), Some("new"));
    assert_eq!(region.lock_entries(), 0);
}

/// Missing key, and the task running the first creator is aborted while
/// that creator awaits: one other task creates, none hangs (shuttle reports
/// a deadlock if a task waits for a wake-up that never comes).
fn aborted_creator_model() {
    let region = region(&MockClock::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let creating = Arc::new(AtomicUsize::new(usize::MAX));
    let started = Arc::new(Notify::new());
    block_on(async {
        let mut handles: Vec<_> = (0..TASKS)
            .map(|i| {
                let (region, calls, creating, started) =
                    (region.clone(), calls.clone(), creating.clone(), started.clone());
                Some(spawn(async move {
                    region
                        .get_or_create_async("k", move || async move {
                            if calls.fetch_add(1, SeqCst) == 0 {
                                creating.store(i, SeqCst);
                                started.notify_one();
                                std::future::pending::<()>().await;
                            }
                            yield_now().await;
                            "v".to_string()
                        })
                        .await
                        .expect("memory backend")
                }))
            })
            .collect();
        started.notified().await;
        let victim = handles[creating.load(SeqCst)].take().expect("a task index");
        victim.abort();
        assert!(victim.await.is_err(), "the first creator never finishes, so its task is cancelled");
        for h in handles.into_iter().flatten() {
            assert_eq!(h.await.expect("task finished"), "v");
        }
    });
    assert_eq!(calls.load(SeqCst), 2, "the aborted creation, then exactly one more");
    let stats = region.stats();
    assert_eq!((stats.creations, stats.creation_errors), (1, 1));
    assert_eq!(region.lock_entries(), 0);
    assert!(!region.is_locked("k"));
}

/// Values in a memory backend and leases by owner token, shared by the
/// regions of two "processes" (one [`LeaseHandle`] each); every call yields
/// before and after. Leases need no keep-alive (the keeper is a real
/// thread, outside the scheduler's control).
#[derive(Debug, Default)]
struct LeaseStore {
    values: MemoryBackend,
    /// key -> owner token
    leases: Mutex<HashMap<String, u64>>,
    next_token: AtomicU64,
    released: Notify,
    /// Waiters are woken by a release (`wait_released`); otherwise they back
    /// off, a back-off being a yield here (a real timer would stall the
    /// model).
    wakes: bool,
}

impl LeaseStore {
    fn leases(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.leases.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug)]
struct LeaseHandle(Arc<LeaseStore>);

impl Backend for LeaseHandle {
    fn name(&self) -> &'static str {
        "yielding-lease-store"
    }
    fn value_kind(&self) -> ValueKind {
        self.0.values.value_kind()
    }
    fn nonblocking(&self) -> Option<&dyn AsyncBackend> {
        Some(self)
    }
    fn issues_leases(&self) -> bool {
        true
    }
}

/// Runs `op` between two yields (a request, then a response, in flight).
async fn round_trip<R>(op: impl FnOnce() -> R) -> R {
    yield_now().await;
    let r = op();
    yield_now().await;
    r
}

impl AsyncBackend for LeaseHandle {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Value>, BackendError>> {
        Box::pin(round_trip(move || self.0.values.get(key)))
    }
    fn set<'a>(&'a self, key: &'a str, value: Value, ttl: Option<Duration>) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(round_trip(move || self.0.values.set(key, value, ttl)))
    }
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(round_trip(move || self.0.values.delete(key)))
    }
    fn try_lease<'a>(&'a self, key: &'a str, _ttl: Duration) -> BoxFuture<'a, Result<Acquire, BackendError>> {
        Box::pin(round_trip(move || {
            let mut leases = self.0.leases();
            if leases.contains_key(key) {
                return Ok(Acquire::Held);
            }
            let token = self.0.next_token.fetch_add(1, SeqCst);
            leases.insert(key.to_owned(), token);
            Ok(Acquire::Won(Box::new(StoreLease { store: self.0.clone(), key: key.to_owned(), token })))
        }))
    }
    fn wait_released<'a>(&'a self, key: &'a str, _max: Duration) -> BoxFuture<'a, Result<bool, BackendError>> {
        Box::pin(async move {
            if !self.0.wakes {
                return Ok(false);
            }
            loop {
                // Registered before the check, so a release in between wakes it.
                let mut released = pin!(self.0.released.notified());
                released.as_mut().enable();
                if !self.0.leases().contains_key(key) {
                    return Ok(true);
                }
                released.await;
            }
        })
    }
    fn sleep(&self, _duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(yield_now())
    }
}

#[derive(Debug)]
struct StoreLease {
    store: Arc<LeaseStore>,
    key: String,
    token: u64,
}

impl Lease for StoreLease {
    fn needs_keep_alive(&self) -> bool {
        false
    }
    fn extend(&self, _ttl: Duration) -> BoxFuture<'_, Result<bool, BackendError>> {
        Box::pin(round_trip(move || Ok(self.store.leases().get(&self.key) == Some(&self.token))))
    }
    fn release(&self) -> BoxFuture<'_, Result<bool, BackendError>> {
        Box::pin(round_trip(move || {
            let mut leases = self.store.leases();
            let ours = leases.get(&self.key) == Some(&self.token);
            if ours {
                leases.remove(&self.key);
                self.store.released.notify_waiters();
            }
            Ok(ours)
        }))
    }
}

/// Tasks of the two-process model, split between the two regions.
const TASKS_TWO_PROCESSES: usize = 4;

/// Missing key, two regions on one lease store (two processes), the tasks
/// split between them: exactly one creation across both, every task gets
/// its value, and no lease or lock bookkeeping is left.
fn two_processes_model(wakes: bool) {
    let store = Arc::new(LeaseStore { wakes, ..LeaseStore::default() });
    let clock = MockClock::new();
    let regions: Vec<Region> = (0..2)
        .map(|_| {
            Region::builder("shuttle-leases")
                .backend(LeaseHandle(store.clone()))
                .expiration(Duration::from_secs(60))
                .clock(clock.clone())
                .build()
        })
        .collect();
    let calls = Arc::new(AtomicUsize::new(0));
    block_on(async {
        let handles: Vec<_> = (0..TASKS_TWO_PROCESSES)
            .map(|i| {
                let (region, calls) = (regions[i % 2].clone(), calls.clone());
                spawn(async move {
                    region
                        .get_or_create_async("k", move || async move {
                            calls.fetch_add(1, SeqCst);
                            yield_now().await;
                            format!("made by {i}")
                        })
                        .await
                        .expect("the lease store does not fail")
                })
            })
            .collect();
        let mut values = Vec::new();
        for h in handles {
            values.push(h.await.expect("task finished"));
        }
        assert!(values.iter().all(|v| *v == values[0]), "one value for all: {values:?}");
    });
    assert_eq!(calls.load(SeqCst), 1, "exactly one creation across both processes");
    assert!(store.leases().is_empty(), "a lease is left held: {:?}", store.leases());
    for region in &regions {
        assert_eq!(region.lock_entries(), 0);
    }
}

#[test]
fn shuttle_missing_key_single_flight() {
    check(missing_key_model);
}

#[test]
fn shuttle_expired_key_regenerations_never_overlap() {
    check(expired_key_model);
}

#[test]
fn shuttle_aborted_creator_hands_over() {
    check(aborted_creator_model);
}

#[test]
fn shuttle_two_processes_create_once_woken_by_the_release() {
    check(|| two_processes_model(true));
}

#[test]
fn shuttle_two_processes_create_once_backing_off() {
    check(|| two_processes_model(false));
}
