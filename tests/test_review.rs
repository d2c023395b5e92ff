//! Review findings on the core and the memory backends: each test names the
//! they describe lands; the others guard behaviour a fix must keep.

mod support;

use dogpile::backends::{BoundedMemoryBackend, MemoryBackend};
use dogpile::{
    AsyncBackend, AsyncDistributedLock, Backend, BackendError, BoxFuture, Clock, DistributedLock, Expiration,
    Invalidation, LockToken, MockClock, Region, Value, ValueKind,
};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use support::{Proxy, join_within, object};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap()
}

// ----- distributed lock: no read after acquiring it -----

/// An in-process map whose distributed lock is held by "another process"
/// that finishes exactly when we ask for the lock: its value lands and its
/// lock is released just before our `try_acquire`, which then succeeds.
struct LandsOnAcquire {
    map: Mutex<HashMap<String, Value>>,
    clock: Arc<MockClock>,
    acquires: AtomicUsize,
}

impl LandsOnAcquire {
    fn new(clock: &Arc<MockClock>) -> Arc<Self> {
        Arc::new(Self { map: Mutex::default(), clock: clock.clone(), acquires: AtomicUsize::new(0) })
    }
}

impl fmt::Debug for LandsOnAcquire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LandsOnAcquire").finish_non_exhaustive()
    }
}

impl Backend for LandsOnAcquire {
    fn name(&self) -> &'static str {
        "lands-on-acquire"
    }
    fn value_kind(&self) -> ValueKind {
        ValueKind::Object
    }
    fn distributed_lock(&self) -> Option<&dyn DistributedLock> {
        Some(self)
    }
    fn blocking(&self) -> Option<&dyn BlockingBackend> {
        Some(self)
    }

}

impl BlockingBackend for LandsOnAcquire {
    fn get(&self, key: &str) -> Result<Option<Value>, BackendError> {
        Ok(lock(&self.map).get(key).cloned())
    }
    fn set(&self, key: &str, value: Value, _ttl: Option<Duration>) -> Result<(), BackendError> {
        lock(&self.map).insert(key.to_owned(), value);
        Ok(())
    }
    fn delete(&self, key: &str) -> Result<(), BackendError> {
        lock(&self.map).remove(key);
        Ok(())
    }
}

impl DistributedLock for LandsOnAcquire {
    fn try_acquire(&self, key: &str, _token: &LockToken, _ttl: Duration) -> Result<bool, BackendError> {
        if self.acquires.fetch_add(1, Ordering::SeqCst) == 0 {
            // The other process stores its fresh value, then releases.
            let now = self.clock.now_nanos();
            lock(&self.map).insert(key.to_owned(), object("theirs".to_string(), now));
        }
        Ok(true)
    }
    fn extend(&self, _: &str, _: &LockToken, _: Duration) -> Result<bool, BackendError> {
        Ok(true)
    }
    fn release(&self, _: &str, _: &LockToken) -> Result<bool, BackendError> {
        Ok(true)
    }
}

fn landing_region(clock: &Arc<MockClock>, backend: &Arc<LandsOnAcquire>, exp: Expiration) -> Region {
    Region::builder("lands").backend_arc(backend.clone()).clock(clock.clone()).expiration(exp).build()
}

// Bug: create.rs `wait_distributed` (DistOutcome::Acquired) returns the
// distributed lock without reading the key again, so a value another process
// stored just before releasing its lock is created a second time. The read
// under the lock happens after the in-process lock only (create.rs:211),
// before the distributed one (create.rs:221).
#[test]
fn missing_key_is_read_again_after_the_distributed_lock() {
    let clock = MockClock::new();
    let backend = LandsOnAcquire::new(&clock);
    let region = landing_region(&clock, &backend, Expiration::After(Duration::from_secs(60)));
    let created = AtomicUsize::new(0);
    let v: String = region
        .get_or_create("k", || {
            created.fetch_add(1, Ordering::SeqCst);
            "mine".to_string()
        })
        .unwrap();
    assert_eq!(created.load(Ordering::SeqCst), 0, "created although another process's value had landed");
    assert_eq!(v, "theirs");
}

// Bug: the same in the async engine (create_async.rs `wait_distributed_async`,
// DistOutcome::Acquired).
#[test]
fn missing_key_is_read_again_after_the_distributed_lock_async() {
    let clock = MockClock::new();
    let backend = LandsOnAcquire::new(&clock);
    let region = landing_region(&clock, &backend, Expiration::After(Duration::from_secs(60)));
    let created = Arc::new(AtomicUsize::new(0));
    let c = created.clone();
    let v: String = current_thread()
        .block_on(region.get_or_create_async("k", || async move {
            c.fetch_add(1, Ordering::SeqCst);
            "mine".to_string()
        }))
        .unwrap();
    assert_eq!(created.load(Ordering::SeqCst), 0, "created although another process's value had landed");
    assert_eq!(v, "theirs");
}

// Bug: the same in multi-key creation (multi.rs `claim_one`, after
// `wait_distributed`): the key is claimed and created again.
#[test]
fn multi_key_is_read_again_after_the_distributed_lock() {
    let clock = MockClock::new();
    let backend = LandsOnAcquire::new(&clock);
    let region = landing_region(&clock, &backend, Expiration::After(Duration::from_secs(60)));
    let created = AtomicUsize::new(0);
    let v: Vec<String> = region
        .get_or_create_multi(&["k"], |keys| {
            created.fetch_add(keys.len(), Ordering::SeqCst);
            keys.iter().map(|_| "mine".to_string()).collect()
        })
        .unwrap();
    assert_eq!(created.load(Ordering::SeqCst), 0, "created although another process's value had landed");
    assert_eq!(v, ["theirs"]);
}

// Bug (lower severity): on an expired key, create.rs:169-187 regenerates as
// soon as both locks are taken; another process that regenerated and
// released between our read and our `try_acquire` gets its work repeated.
#[test]
fn expired_key_is_read_again_after_the_distributed_lock() {
    let clock = MockClock::new();
    let backend = LandsOnAcquire::new(&clock);
    let region = landing_region(&clock, &backend, Expiration::After(Duration::from_secs(60)));
    region.set("k", "old".to_string()).unwrap();
    clock.advance(Duration::from_secs(61));
    let created = AtomicUsize::new(0);
    let v: String = region
        .get_or_create("k", || {
            created.fetch_add(1, Ordering::SeqCst);
            "mine".to_string()
        })
        .unwrap();
    assert_eq!(created.load(Ordering::SeqCst), 0, "regenerated although another process just did");
    assert_eq!(v, "theirs");
}

// ----- hard invalidation at (nearly) the same instant -----

// Bug: region.rs:177-182 packs the soft flag into the low bit of the
// invalidation time, so a hard invalidation at an odd nanosecond `t` uses
// `t - 1` as its threshold, and region.rs:260 compares with `<`: a value
// created 1 ns before the invalidation, or at the same clock reading (a
// mock clock, or the microsecond-resolution clock of macOS), survives it.
#[test]
fn hard_invalidation_misses_a_value_created_just_before() {
    let clock = MockClock::new();
    let region = Region::builder("inv").backend(MemoryBackend::new()).clock(clock.clone()).build();
    region.set("k", 1u32).unwrap();
    clock.advance(Duration::from_nanos(1));
    region.invalidate(Invalidation::Hard);
    assert_eq!(region.get::<u32>("k").unwrap(), None, "created 1 ns before a hard invalidation");

    region.set("k", 2u32).unwrap();
    region.invalidate(Invalidation::Hard);
    assert_eq!(region.get::<u32>("k").unwrap(), None, "set, then invalidated, with no clock tick between");
}

// Guard for the fix above: a value created after the invalidation, even at
// the same clock reading, is fresh.
#[test]
fn value_created_after_invalidation_at_the_same_instant_is_fresh() {
    let clock = MockClock::new();
    let region = Region::builder("inv2").backend(MemoryBackend::new()).clock(clock.clone()).build();
    region.invalidate(Invalidation::Hard);
    region.set("k", 2u32).unwrap();
    assert_eq!(region.get::<u32>("k").unwrap(), Some(2));
    let next = AtomicUsize::new(0);
    region.invalidate(Invalidation::Hard);
    let created: usize = region.get_or_create("c", || next.fetch_add(1, Ordering::SeqCst)).unwrap();
    assert_eq!(region.get_or_create("c", || next.fetch_add(1, Ordering::SeqCst)).unwrap(), created);
}

// ----- bounded backend: entries far below max_weight are dropped -----

// Bug: bounded.rs:181-186 hands quick_cache the whole weight budget, which
// it splits over `4 x cores` shards (rounded to a power of two); an entry
// heavier than ~0.97 x (max_weight / shards) is silently never stored, so a
// value weighing 40 % of max_weight is recreated on every call. The doc says
// only entries above `max_weight` are refused.
#[test]
fn weighted_backend_stores_an_entry_below_max_weight() {
    let backend = Arc::new(BoundedMemoryBackend::with_weigher(1000, |_, _| 400));
    let region = Region::builder("heavy").backend_arc(backend.clone()).build();
    let calls = AtomicUsize::new(0);
    for _ in 0..3 {
        let _: u32 = region.get_or_create("k", || calls.fetch_add(1, Ordering::SeqCst) as u32).unwrap();
    }
    assert_eq!(backend.len(), 1, "a 400-weight entry in a 1000-weight cache was not stored");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

// ----- async path with a sync-only distributed lock blocks the executor -----

// Bug: create_async.rs:268-275 `sleep_async` falls back to
// `std::thread::sleep` when the backend's distributed lock is sync only, and
// `wait_distributed_async` loops on it without ever yielding. On a
// current-thread runtime the task that holds the lock (here through a second
// region over the same backend, as a second process would) never runs
// again: the waiter spins forever. Issue 4: waiting never blocks an
// executor thread.
#[test]
fn async_wait_on_a_sync_distributed_lock_yields_to_the_holder() {
    let backend = Proxy::with_lock(MemoryBackend::new());
    let holder = Region::builder("shared").backend_arc(backend.clone()).build();
    let waiter = Region::builder("shared").backend_arc(backend.clone()).build();
    let thread = std::thread::spawn(move || {
        current_thread().block_on(async move {
            let (entered_tx, entered_rx) = tokio::sync::oneshot::channel();
            let creating = tokio::spawn(async move {
                holder
                    .get_or_create_async("k", || async move {
                        let _ = entered_tx.send(());
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        1u32
                    })
                    .await
                    .unwrap()
            });
            entered_rx.await.unwrap();
            let v: u32 = waiter.get_or_create_async("k", || async { 2u32 }).await.unwrap();
            (v, creating.await.unwrap())
        })
    });
    let (waited, created) = join_within(thread, Duration::from_secs(10));
    assert_eq!((waited, created), (1, 1));
}

// ----- async-only distributed locks -----

/// A backend whose distributed lock exists only through its async
/// interface; "another process" holds `k` for its first `held_for` attempts,
/// then stores its value and lets go.
struct AsyncOnly {
    map: Mutex<HashMap<String, Value>>,
    holder: Mutex<Option<String>>,
    attempts: AtomicUsize,
    held_for: usize,
    sleeps: Mutex<Vec<Duration>>,
}

impl AsyncOnly {
    fn new(held_for: usize) -> Arc<Self> {
        Arc::new(Self {
            map: Mutex::default(),
            holder: Mutex::new((held_for > 0).then(|| "other".to_owned())),
            attempts: AtomicUsize::new(0),
            held_for,
            sleeps: Mutex::default(),
        })
    }
}

impl fmt::Debug for AsyncOnly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncOnly").finish_non_exhaustive()
    }
}

impl Backend for AsyncOnly {
    fn name(&self) -> &'static str {
        "async-only"
    }
    fn value_kind(&self) -> ValueKind {
        ValueKind::Object
    }
    fn as_async(&self) -> Option<&dyn AsyncBackend> {
        Some(self)
    }
    fn blocking(&self) -> Option<&dyn BlockingBackend> {
        Some(self)
    }

}

impl BlockingBackend for AsyncOnly {
    fn get(&self, key: &str) -> Result<Option<Value>, BackendError> {
        Ok(lock(&self.map).get(key).cloned())
    }
    fn set(&self, key: &str, value: Value, _ttl: Option<Duration>) -> Result<(), BackendError> {
        lock(&self.map).insert(key.to_owned(), value);
        Ok(())
    }
    fn delete(&self, key: &str) -> Result<(), BackendError> {
        lock(&self.map).remove(key);
        Ok(())
    }
}

impl AsyncBackend for AsyncOnly {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Value>, BackendError>> {
        Box::pin(async move { Backend::get(self, key) })
    }
    fn set<'a>(&'a self, key: &'a str, value: Value, ttl: Option<Duration>) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move { Backend::set(self, key, value, ttl) })
    }
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move { Backend::delete(self, key) })
    }
    fn distributed_lock(&self) -> Option<&dyn AsyncDistributedLock> {
        Some(self)
    }
}

impl AsyncDistributedLock for AsyncOnly {
    fn try_acquire<'a>(&'a self, key: &'a str, token: &'a LockToken, _: Duration) -> BoxFuture<'a, BoxResult> {
        Box::pin(async move {
            let n = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
            let mut holder = lock(&self.holder);
            if holder.as_deref() == Some("other") && n > self.held_for {
                lock(&self.map).insert(key.to_owned(), object("theirs".to_string(), 0));
                *holder = None;
                // Still held at this attempt: the value shows on the next read.
                return Ok(false);
            }
            if holder.is_some() {
                return Ok(false);
            }
            *holder = Some(token.as_str().to_owned());
            Ok(true)
        })
    }
    fn extend<'a>(&'a self, _: &'a str, token: &'a LockToken, _: Duration) -> BoxFuture<'a, BoxResult> {
        Box::pin(async move { Ok(lock(&self.holder).as_deref() == Some(token.as_str())) })
    }
    fn release<'a>(&'a self, _: &'a str, token: &'a LockToken) -> BoxFuture<'a, BoxResult> {
        Box::pin(async move {
            let mut holder = lock(&self.holder);
            let ours = holder.as_deref() == Some(token.as_str());
            if ours {
                *holder = None;
            }
            Ok(ours)
        })
    }
    fn retry_interval(&self) -> Duration {
        Duration::from_millis(10)
    }
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        lock(&self.sleeps).push(duration);
        Box::pin(async {})
    }
}

type BoxResult = Result<bool, BackendError>;

// Bug: dist.rs:70-74 `dist_backoff` reads the retry interval from the sync
// distributed lock only; with an async-only lock it is zero, so the async
// waiter polls the backend (try_acquire + get) in a tight loop.
#[test]
fn async_only_lock_waits_its_retry_interval() {
    let backend = AsyncOnly::new(3);
    let region = Region::builder("async-only").backend_arc(backend.clone()).expiration(Expiration::Never).build();
    let v: String =
        current_thread().block_on(region.get_or_create_async("k", || async { "mine".to_string() })).unwrap();
    assert_eq!(v, "theirs");
    let sleeps = lock(&backend.sleeps).clone();
    assert!(!sleeps.is_empty(), "the waiter never slept");
    assert!(sleeps.iter().all(|d| *d >= Duration::from_millis(10)), "back-off below the retry interval: {sleeps:?}");
}

// Bug: dist.rs:106-115 releases a guard dropped by cancellation through the
// sync lock only, and keeper.rs:138 extends through the sync lock only; an
// async-only lock taken by a cancelled creator stays held until it expires
// (lock_timeout, 30 s by default), so every other process waits that long.
#[test]
fn cancelled_creator_releases_an_async_only_distributed_lock() {
    let backend = AsyncOnly::new(0);
    let region = Region::builder("async-only-cancel").backend_arc(backend.clone()).build();
    current_thread().block_on(async {
        let r = region.clone();
        let task = tokio::spawn(async move {
            r.get_or_create_async("k", std::future::pending::<u32>).await.unwrap();
        });
        for _ in 0..100 {
            if lock(&backend.holder).is_some() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(lock(&backend.holder).is_some(), "the creator never took the lock");
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
    });
    assert_eq!(region.lock_entries(), 0, "in-process lock released");
    assert_eq!(*lock(&backend.holder), None, "distributed lock still held after the creator was cancelled");
}

// ----- Send futures -----

fn assert_send<F: std::future::Future + Send>(f: F) -> F {
    f
}

// Guard (no bug found): every async entry point, the tokio background one
// included, gives a `Send` future, so it can be spawned on a multi-thread
// runtime.
#[test]
fn every_async_entry_point_is_send() {
    let region = Region::builder("send").backend(MemoryBackend::new()).build();
    let opts = dogpile::CreateOptions::<u8>::new();
    drop(assert_send(region.get_or_create_async_with("k", &opts, || async { 1u8 })));
    drop(assert_send(region.try_get_or_create_async_with("k", &opts, || async { Ok::<u8, String>(1) })));
    #[cfg(feature = "tokio")]
    drop(assert_send(region.get_or_create_async_background("k", &opts, || async { 1u8 })));
}
