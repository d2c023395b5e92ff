//! Review findings on the core and the memory backends: each test names the
//! they describe lands; the others guard behaviour a fix must keep.

mod support;

use dogpile::backend::{
    Acquire, AsyncBackend, Backend, BackendError, BlockingBackend, BoxFuture, Lease, Value, ValueKind, ready,
};
use dogpile::backends::{BoundedMemoryBackend, MemoryBackend};
use dogpile::{Clock, Expiration, Invalidation, MockClock, Region};
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

// ----- lease: no read after acquiring it -----

/// An in-process map whose lease is held by "another process" that finishes
/// exactly when we ask for the lease: its value lands and its lease is
/// released just before our `try_lease`, which then succeeds.
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
    fn blocking(&self) -> Option<&dyn BlockingBackend> {
        Some(self)
    }
    fn never_blocks(&self) -> bool {
        true
    }
    fn issues_leases(&self) -> bool {
        true
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
    fn try_lease(&self, key: &str, _ttl: Duration) -> Result<Acquire, BackendError> {
        if self.acquires.fetch_add(1, Ordering::SeqCst) == 0 {
            // The other process stores its fresh value, then releases.
            let now = self.clock.now_nanos();
            lock(&self.map).insert(key.to_owned(), object("theirs".to_string(), now));
        }
        Ok(Acquire::Won(Box::new(FreeLease)))
    }
}

/// A lease nobody else contends for.
#[derive(Debug)]
struct FreeLease;

impl Lease for FreeLease {
    fn extend(&self, _: Duration) -> BoxFuture<'_, Result<bool, BackendError>> {
        ready(Ok(true))
    }
    fn release(&self) -> BoxFuture<'_, Result<bool, BackendError>> {
        ready(Ok(true))
    }
}

fn landing_region(clock: &Arc<MockClock>, backend: &Arc<LandsOnAcquire>, exp: Expiration) -> Region {
    Region::builder("lands").backend_arc(backend.clone()).clock(clock.clone()).expiration(exp).build()
}

// Regression (the old create.rs `wait_distributed` returned the distributed
// lock without reading the key again): a value another process stored just
// before releasing its lease must be read, not created a second time. The
// read that decides must come after the lease (`read_and_lease`).
#[test]
fn missing_key_is_read_again_after_the_lease() {
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

// Regression: the same in the async driver.
#[test]
fn missing_key_is_read_again_after_the_lease_async() {
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

// Regression: the same in multi-key creation (one flow per key): the key
// must not be claimed and created again.
#[test]
fn multi_key_is_read_again_after_the_lease() {
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

// Regression (lower severity): on an expired key, regenerating as soon as
// both locks are taken repeats the work of another process that regenerated
// and released between our read and our `try_lease`.
#[test]
fn expired_key_is_read_again_after_the_lease() {
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

// ----- async path with a blocking-only lease service -----

// Regression (the old create_async.rs `sleep_async` fell back to
// `std::thread::sleep` when the distributed lock was sync only, and the
// async waiter looped on it without ever yielding): on a current-thread
// runtime the task that holds the lease (here through a second region over
// the same backend, as a second process would) must run again while the
// other waits. Issue 4: waiting never blocks an executor thread.
#[test]
fn async_wait_on_a_blocking_lease_yields_to_the_holder() {
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
    assert_eq!(backend.lock().holder("k"), None, "the holder's lease is released");
}

// ----- async-only leases -----

/// The lease table of [`AsyncOnly`]: who holds `k`.
type Holder = Arc<Mutex<Option<String>>>;

/// A backend with only an async interface, issuing leases; "another
/// process" holds `k` for its first `held_for` attempts, then stores its
/// value and lets go.
struct AsyncOnly {
    map: Mutex<HashMap<String, Value>>,
    holder: Holder,
    attempts: AtomicUsize,
    held_for: usize,
    sleeps: Mutex<Vec<Duration>>,
    releases: Arc<AtomicUsize>,
}

impl AsyncOnly {
    fn new(held_for: usize) -> Arc<Self> {
        Arc::new(Self {
            map: Mutex::default(),
            holder: Arc::new(Mutex::new((held_for > 0).then(|| "other".to_owned()))),
            attempts: AtomicUsize::new(0),
            held_for,
            sleeps: Mutex::default(),
            releases: Arc::default(),
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
    fn nonblocking(&self) -> Option<&dyn AsyncBackend> {
        Some(self)
    }
    fn issues_leases(&self) -> bool {
        true
    }
}

impl AsyncBackend for AsyncOnly {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Value>, BackendError>> {
        Box::pin(async move { Ok(lock(&self.map).get(key).cloned()) })
    }
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Value,
        _ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            lock(&self.map).insert(key.to_owned(), value);
            Ok(())
        })
    }
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            lock(&self.map).remove(key);
            Ok(())
        })
    }
    fn try_lease<'a>(&'a self, key: &'a str, _ttl: Duration) -> BoxFuture<'a, Result<Acquire, BackendError>> {
        Box::pin(async move {
            let n = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
            let mut holder = lock(&self.holder);
            if holder.as_deref() == Some("other") && n > self.held_for {
                lock(&self.map).insert(key.to_owned(), object("theirs".to_string(), 0));
                *holder = None;
                // Still held at this attempt: the value shows on the next read.
                return Ok(Acquire::Held);
            }
            if holder.is_some() {
                return Ok(Acquire::Held);
            }
            let token = format!("ours-{n}");
            *holder = Some(token.clone());
            let lease = AsyncLease { holder: self.holder.clone(), token, releases: self.releases.clone() };
            Ok(Acquire::Won(Box::new(lease)))
        })
    }
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        lock(&self.sleeps).push(duration);
        Box::pin(async {})
    }
}

/// A lease of [`AsyncOnly`]: only its owner (same token) extends or
/// releases it. Its futures do their work when polled, as an async
/// client's would.
#[derive(Debug)]
struct AsyncLease {
    holder: Holder,
    token: String,
    releases: Arc<AtomicUsize>,
}

impl Lease for AsyncLease {
    fn extend(&self, _: Duration) -> BoxFuture<'_, Result<bool, BackendError>> {
        Box::pin(async move { Ok(lock(&self.holder).as_deref() == Some(self.token.as_str())) })
    }
    fn release(&self) -> BoxFuture<'_, Result<bool, BackendError>> {
        Box::pin(async move {
            self.releases.fetch_add(1, Ordering::SeqCst);
            let mut holder = lock(&self.holder);
            let ours = holder.as_deref() == Some(self.token.as_str());
            if ours {
                *holder = None;
            }
            Ok(ours)
        })
    }
}

// Was: the async waiter of an async-only lock polled the backend (try_acquire
// + get) in a tight loop, its retry interval being read from the sync lock
// only. Now there is no retry interval: without a wake-up the waiter backs
// off with jitter from 2 ms, capped at 50 ms, through the backend's `sleep`;
// no lease request is retried without a back-off before it.
#[test]
fn async_only_lease_wait_backs_off_with_jitter() {
    let backend = AsyncOnly::new(3);
    let region = Region::builder("async-only").backend_arc(backend.clone()).expiration(Expiration::Never).build();
    let v: String =
        current_thread().block_on(region.get_or_create_async("k", || async { "mine".to_string() })).unwrap();
    assert_eq!(v, "theirs");
    let sleeps = lock(&backend.sleeps).clone();
    let attempts = backend.attempts.load(Ordering::SeqCst);
    assert!(!sleeps.is_empty(), "the waiter never slept");
    assert!(sleeps.len() + 1 >= attempts, "{attempts} lease requests for {} back-offs: {sleeps:?}", sleeps.len());
    assert!(
        sleeps.iter().all(|d| *d >= Duration::from_millis(1) && *d <= Duration::from_millis(50)),
        "back-off outside [1 ms, 50 ms] (2 ms with jitter, capped): {sleeps:?}"
    );
    assert!(sleeps[0] <= Duration::from_millis(2), "the first back-off starts at 2 ms: {sleeps:?}");
}

// Regression (the old dist.rs released a guard dropped by cancellation
// through the sync lock only, and the keeper extended through the sync lock
// only): an async-only lease taken by a cancelled creator must be released
// by its owner, not left held until it expires (lock_timeout, 30 s by
// default) while every other process waits.
#[test]
fn cancelled_creator_releases_an_async_only_lease() {
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
        assert!(lock(&backend.holder).is_some(), "the creator never took the lease");
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
    });
    assert_eq!(region.lock_entries(), 0, "in-process lock released");
    // The release runs from a task (tokio) or a helper thread: wait for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while backend.releases.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(backend.releases.load(Ordering::SeqCst), 1, "released once, by its owner");
    assert_eq!(*lock(&backend.holder), None, "lease still held after the creator was cancelled");
}

// The blocking API on an async-only backend is refused with an error that
// says why, not a panic or a silent fallback.
#[test]
fn blocking_call_on_an_async_only_backend_is_unsupported() {
    let backend = AsyncOnly::new(0);
    let region = Region::builder("async-only-sync").backend_arc(backend.clone()).build();
    let err = region.get_or_create("k", || 1u32).unwrap_err();
    assert!(matches!(err, dogpile::Error::Unsupported(ref m) if m.contains("async")), "{err:?}");
    assert_eq!(backend.attempts.load(Ordering::SeqCst), 0, "no lease asked for");
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
