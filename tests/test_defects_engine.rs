//! Regression tests for defects of the lock engine, one per defect, named
//! after what broke.
//!
//! Timeouts here are hang guards only; the assertions are on counts and
//! outcomes.

#[macro_use]
mod support_async;
mod support;

use dogpile::backend::{AsyncBackend, Backend, BackendError, BlockingBackend, BoxFuture, Value, ValueKind};
use dogpile::backends::MemoryBackend;
use dogpile::{Error, MockClock, Region, Stats, TryCreateError};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;
use support::{join, join_within, wait_until};
use support_async::{Flavor, TASKS, block_on, region, until};
use tokio::task::JoinSet;

// ----- a creator asking for its own key from async code -----

on_both_runtimes!(
    async_creator_asking_for_its_own_key_gets_reentrant_error,
    try_async_creator_asking_for_its_own_key_gets_cache_reentrant_error,
    blocking_call_inside_async_creator_for_its_own_key_gets_reentrant_error,
    async_multi_key_creator_asking_for_one_of_its_keys_gets_reentrant_error,
    async_creator_asking_for_a_key_locked_by_an_outer_creator_gets_reentrant_error,
    other_tasks_on_the_creators_thread_still_wait_for_its_value,
);

/// The key is free again and holds the outer creator's value: the next
/// caller gets it without creating.
async fn key_is_free_and_cached(region: &Region, key: &str, expected: u32) {
    assert!(!region.is_locked(key), "the key stays locked");
    assert_eq!(region.lock_entries(), 0, "lock bookkeeping left behind");
    let again: u32 =
        region.get_or_create_async(key, || async { panic!("must not create: the value is cached") }).await.unwrap();
    assert_eq!(again, expected);
}

fn assert_reentrant(got: Option<Result<u32, Error>>, key: &str) {
    match got.expect("the inner call returned") {
        Err(Error::Reentrant { key: k }) => assert_eq!(k, key),
        other => panic!("expected Error::Reentrant for `{key}`, got {other:?}"),
    }
}

async fn async_creator_asking_for_its_own_key_gets_reentrant_error(_: Flavor) {
    let region = region(&MockClock::new());
    let inner = Mutex::new(None);
    let (r, slot) = (&region, &inner);
    let v: u32 = region
        .get_or_create_async("k", move || async move {
            let got = r.get_or_create_async("k", || async { 2u32 }).await;
            *slot.lock().unwrap() = Some(got);
            1u32
        })
        .await
        .expect("the outer call succeeds");
    assert_eq!(v, 1);
    assert_reentrant(inner.into_inner().unwrap(), "k");
    key_is_free_and_cached(&region, "k", 1).await;
}

async fn try_async_creator_asking_for_its_own_key_gets_cache_reentrant_error(_: Flavor) {
    let region = region(&MockClock::new());
    let inner = Mutex::new(None);
    let (r, slot) = (&region, &inner);
    let v: Result<u32, TryCreateError<String>> = region
        .try_get_or_create_async("k", move || async move {
            let got: Result<u32, TryCreateError<String>> = r.try_get_or_create_async("k", || async { Ok(2) }).await;
            let reentrant = matches!(got, Err(TryCreateError::Cache(Error::Reentrant { .. })));
            *slot.lock().unwrap() = Some(reentrant);
            Ok(1)
        })
        .await;
    assert_eq!(v.expect("the outer call succeeds"), 1);
    assert_eq!(inner.into_inner().unwrap(), Some(true), "the inner call must get TryCreateError::Cache(Reentrant)");
    key_is_free_and_cached(&region, "k", 1).await;
}

async fn blocking_call_inside_async_creator_for_its_own_key_gets_reentrant_error(_: Flavor) {
    let region = region(&MockClock::new());
    let inner = Mutex::new(None);
    let (r, slot) = (&region, &inner);
    let v: u32 = region
        .get_or_create_async("k", move || async move {
            tokio::task::yield_now().await;
            // Blocking the executor thread would be a bug of its own; here
            // the blocking call must return at once instead of waiting.
            let got = r.get_or_create("k", || 2u32);
            *slot.lock().unwrap() = Some(got);
            1u32
        })
        .await
        .expect("the outer call succeeds");
    assert_eq!(v, 1);
    assert_reentrant(inner.into_inner().unwrap(), "k");
    key_is_free_and_cached(&region, "k", 1).await;
}

async fn async_multi_key_creator_asking_for_one_of_its_keys_gets_reentrant_error(_: Flavor) {
    let region = region(&MockClock::new());
    let inner = Mutex::new(None);
    let (r, slot) = (&region, &inner);
    let v: Vec<u32> = region
        .get_or_create_multi_async(&["a", "k"], move |missing| async move {
            assert_eq!(missing, ["a", "k"]);
            let got = r.get_or_create_async("k", || async { 2u32 }).await;
            *slot.lock().unwrap() = Some(got);
            vec![1, 1]
        })
        .await
        .expect("the outer call succeeds");
    assert_eq!(v, [1, 1]);
    assert_reentrant(inner.into_inner().unwrap(), "k");
    assert!(!region.is_locked("a"));
    key_is_free_and_cached(&region, "k", 1).await;
}

/// Creator of `a` calls for `b`, whose creator calls for `a`: the innermost
/// call is re-entrant (it would wait for the outer creator, which waits for
/// it), and both keys end up created and free.
async fn async_creator_asking_for_a_key_locked_by_an_outer_creator_gets_reentrant_error(_: Flavor) {
    let region = region(&MockClock::new());
    let inner = Mutex::new(None);
    let (r, slot) = (&region, &inner);
    let v: u32 = region
        .get_or_create_async("a", move || async move {
            r.get_or_create_async("b", move || async move {
                let got = r.get_or_create_async("a", || async { 3u32 }).await;
                *slot.lock().unwrap() = Some(got);
                2u32
            })
            .await
            .expect("the middle call succeeds")
                - 1
        })
        .await
        .expect("the outer call succeeds");
    assert_eq!(v, 1);
    assert_reentrant(inner.into_inner().unwrap(), "a");
    key_is_free_and_cached(&region, "b", 2).await;
    key_is_free_and_cached(&region, "a", 1).await;
}

/// The guard against re-entry must not catch other tasks: on the creator's
/// own thread (the only one, on a current-thread runtime) they wait for its
/// value as before.
async fn other_tasks_on_the_creators_thread_still_wait_for_its_value(_: Flavor) {
    let region = region(&MockClock::new());
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let creator = {
        let region = region.clone();
        tokio::spawn(async move {
            region
                .get_or_create_async("k", || async move {
                    release_rx.await.expect("test side alive");
                    7u32
                })
                .await
        })
    };
    until(|| region.is_locked("k")).await;
    let mut set = JoinSet::new();
    for _ in 0..4 {
        let region = region.clone();
        set.spawn(async move { region.get_or_create_async("k", || async { 0u32 }).await });
    }
    until(|| region.stats().lock_waits >= 4).await;
    release_tx.send(()).expect("creator alive");
    assert_eq!(creator.await.expect("creator task").expect("memory backend"), 7);
    while let Some(joined) = set.join_next().await {
        assert_eq!(joined.expect("waiter task").expect("a waiter is not re-entrant"), 7);
    }
}

/// The same guard without tokio: the creator's future polled by a bare
/// executor on a plain thread.
#[test]
fn async_creator_asking_for_its_own_key_without_tokio_gets_reentrant_error() {
    let region = region(&MockClock::new());
    let r = region.clone();
    let got = join_within(
        std::thread::spawn(move || {
            let inner = Mutex::new(None);
            let (rr, slot) = (&r, &inner);
            let v: u32 = block_on(r.get_or_create_async("k", move || async move {
                *slot.lock().unwrap() = Some(rr.get_or_create_async("k", || async { 2u32 }).await);
                1u32
            }))
            .expect("the outer call succeeds");
            (v, inner.into_inner().unwrap())
        }),
        Duration::from_secs(10),
    );
    assert_eq!(got.0, 1);
    assert_reentrant(got.1, "k");
    assert!(!region.is_locked("k"));
    assert_eq!(region.lock_entries(), 0);
}

// ----- a backend whose multi-read returns too few slots -----

/// A memory backend whose `get_multi` drops the last slot, through its sync
/// interface and (when `with_async`) its async one.
#[derive(Debug)]
struct DropsLastSlot {
    inner: MemoryBackend,
    with_async: bool,
}

impl DropsLastSlot {
    fn region(with_async: bool) -> Region {
        Region::builder("short-multi").backend(DropsLastSlot { inner: MemoryBackend::new(), with_async }).build()
    }
}

impl Backend for DropsLastSlot {
    fn name(&self) -> &'static str {
        "drops-last-slot"
    }
    fn value_kind(&self) -> ValueKind {
        self.inner.value_kind()
    }
    fn never_blocks(&self) -> bool {
        true
    }
    fn nonblocking(&self) -> Option<&dyn AsyncBackend> {
        self.with_async.then_some(self as &dyn AsyncBackend)
    }
    fn blocking(&self) -> Option<&dyn BlockingBackend> {
        Some(self)
    }
}

impl BlockingBackend for DropsLastSlot {
    fn get(&self, key: &str) -> Result<Option<Value>, BackendError> {
        self.inner.get(key)
    }
    fn set(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<(), BackendError> {
        self.inner.set(key, value, ttl)
    }
    fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.inner.delete(key)
    }
    fn get_multi(&self, keys: &[&str]) -> Result<Vec<Option<Value>>, BackendError> {
        let mut slots = self.inner.get_multi(keys)?;
        slots.pop();
        Ok(slots)
    }
}

impl AsyncBackend for DropsLastSlot {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Value>, BackendError>> {
        Box::pin(async move { self.inner.get(key) })
    }
    fn set<'a>(&'a self, key: &'a str, value: Value, ttl: Option<Duration>) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move { self.inner.set(key, value, ttl) })
    }
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move { self.inner.delete(key) })
    }
    fn get_multi<'a>(&'a self, keys: &'a [&'a str]) -> BoxFuture<'a, Result<Vec<Option<Value>>, BackendError>> {
        Box::pin(async move { BlockingBackend::get_multi(self, keys) })
    }
}

/// `r` is the backend error naming the short backend and the counts, and
/// it was counted; no key was left locked.
fn assert_short_read<T: std::fmt::Debug>(region: &Region, r: Result<T, Error>, errors_so_far: u64) {
    match r {
        Err(Error::Backend(e)) => {
            assert_eq!(e.backend(), "drops-last-slot");
            assert!(e.to_string().contains("returned 2 values for 3 keys"), "{e}");
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
    assert_eq!(region.stats().backend_errors, errors_so_far, "counted as a backend error");
    assert_eq!(region.lock_entries(), 0);
}

#[test]
fn get_or_create_multi_with_a_backend_returning_too_few_slots_is_a_backend_error() {
    let region = DropsLastSlot::region(false);
    let calls = AtomicUsize::new(0);
    let r = region.get_or_create_multi(&["a", "b", "c"], |missing| {
        calls.fetch_add(1, SeqCst);
        missing.iter().map(|k| k.len() as u32).collect()
    });
    assert_short_read(&region, r, 1);
    assert_eq!(calls.load(SeqCst), 0, "nothing is created from a broken read");
}

#[test]
fn get_multi_with_a_backend_returning_too_few_slots_is_a_backend_error() {
    let region = DropsLastSlot::region(false);
    region.set_multi([("a", 1u32), ("b", 2), ("c", 3)]).unwrap();
    assert_short_read(&region, region.get_multi::<u32, _>(&["a", "b", "c"]), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn async_multi_calls_with_a_backend_returning_too_few_slots_are_backend_errors() {
    for with_async in [false, true] {
        let region = DropsLastSlot::region(with_async);
        let r = region
            .get_or_create_multi_async(&["a", "b", "c"], |missing| async move {
                panic!("nothing is created from a broken read: {missing:?}")
            })
            .await;
        assert_short_read::<Vec<u32>>(&region, r, 1);
        region.set_multi_async([("a", 1u32), ("b", 2), ("c", 3)]).await.unwrap();
        assert_short_read(&region, region.get_multi_async::<u32, _>(&["a", "b", "c"]).await, 2);
    }
}

// ----- stats: every call counted once -----

/// The outcomes counted (one per call, or per key of a multi-key call).
fn outcomes(s: &Stats) -> u64 {
    s.hits + s.misses + s.stale_served + s.waited
}

/// `n` threads run `call` at once, released by a barrier; returns what each
/// got.
fn stampede<T: Send + 'static>(n: usize, call: impl Fn() -> T + Send + Sync + 'static) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(n));
    let call = Arc::new(call);
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (barrier, call) = (barrier.clone(), call.clone());
            std::thread::spawn(move || {
                barrier.wait();
                call()
            })
        })
        .collect();
    threads.into_iter().map(join).collect()
}

#[test]
fn stampede_waiters_are_counted_once_not_as_a_miss_and_a_hit() {
    const THREADS: usize = 32;
    let region = region(&MockClock::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let got = {
        let (region, calls) = (region.clone(), calls.clone());
        stampede(THREADS, move || {
            let r = region.clone();
            region
                .get_or_create("k", || {
                    calls.fetch_add(1, SeqCst);
                    // Every other thread is waiting before the value lands.
                    wait_until("the others wait", || r.stats().lock_waits >= THREADS as u64 - 1);
                    "v".to_string()
                })
                .unwrap()
        })
    };
    assert!(got.iter().all(|v| v == "v"));
    assert_eq!(calls.load(SeqCst), 1);
    let s = region.stats();
    assert_eq!((s.creations, s.misses, s.hits, s.stale_served), (1, 1, 0, 0), "{s:?}");
    assert_eq!(s.waited, THREADS as u64 - 1, "every other thread waited for the value: {s:?}");
    assert_eq!(outcomes(&s), THREADS as u64, "one outcome per call: {s:?}");

    // A second round on the now-fresh key: 32 plain hits.
    let got = {
        let region = region.clone();
        stampede(THREADS, move || region.get_or_create("k", || -> String { panic!("fresh") }).unwrap())
    };
    assert!(got.iter().all(|v| v == "v"));
    let t = region.stats();
    assert_eq!(t.hits, s.hits + THREADS as u64, "{t:?}");
    assert_eq!((t.misses, t.creations, t.waited), (s.misses, s.creations, s.waited), "{t:?}");
    assert_eq!(outcomes(&t), 2 * THREADS as u64, "{t:?}");
}

#[test]
fn multi_key_stampede_counts_each_key_of_each_call_once() {
    const THREADS: usize = 8;
    let region = region(&MockClock::new());
    let got = {
        let region = region.clone();
        stampede(THREADS, move || {
            let r = region.clone();
            region
                .get_or_create_multi(&["a", "b"], |missing| {
                    wait_until("the others wait", || r.stats().lock_waits >= THREADS as u64 - 1);
                    missing.iter().map(|k| k.to_string()).collect()
                })
                .unwrap()
        })
    };
    assert!(got.iter().all(|v| v == &["a", "b"]));
    let s = region.stats();
    assert_eq!((s.creations, s.misses, s.hits, s.stale_served), (2, 2, 0, 0), "{s:?}");
    assert_eq!(s.waited, 2 * (THREADS as u64 - 1), "{s:?}");
    assert_eq!(outcomes(&s), 2 * THREADS as u64, "one outcome per key and call: {s:?}");

    let region2 = region.clone();
    stampede(THREADS, move || {
        region2.get_or_create_multi(&["a", "b"], |_| -> Vec<String> { panic!("fresh") }).unwrap()
    });
    let t = region.stats();
    assert_eq!(t.hits, s.hits + 2 * THREADS as u64, "{t:?}");
    assert_eq!(outcomes(&t), 4 * THREADS as u64, "{t:?}");
}

/// An expired key: the caller that regenerates counts a miss (it ran its
/// creator), the others a stale value each.
#[test]
fn regenerating_an_expired_key_counts_one_miss_and_the_rest_stale() {
    const THREADS: usize = 8;
    let clock = MockClock::new();
    let region = support_async::region_with_expired(&clock, "k");
    let (inside, outside) = support::gate();
    let regenerating = {
        let region = region.clone();
        std::thread::spawn(move || {
            region
                .get_or_create("k", || {
                    inside.enter_and_wait();
                    "new".to_string()
                })
                .unwrap()
        })
    };
    outside.wait_entered();
    let others = {
        let region = region.clone();
        stampede(THREADS - 1, move || region.get_or_create("k", || -> String { panic!("locked") }).unwrap())
    };
    assert!(others.iter().all(|v| v == "old"));
    outside.open();
    assert_eq!(join(regenerating), "new");
    let s = region.stats();
    assert_eq!((s.creations, s.misses, s.stale_served, s.hits, s.waited), (1, 1, THREADS as u64 - 1, 0, 0), "{s:?}");
    assert_eq!(outcomes(&s), THREADS as u64, "{s:?}");
}

on_both_runtimes!(async_stampede_waiters_are_counted_once, async_multi_key_stampede_counts_each_key_once);

async fn async_stampede_waiters_are_counted_once(_: Flavor) {
    let region = region(&MockClock::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for _ in 0..TASKS {
        let (region, calls) = (region.clone(), calls.clone());
        set.spawn(async move {
            let r = region.clone();
            region
                .get_or_create_async("k", || async move {
                    calls.fetch_add(1, SeqCst);
                    until(|| r.stats().lock_waits >= TASKS as u64 - 1).await;
                    "v".to_string()
                })
                .await
                .unwrap()
        });
    }
    while let Some(joined) = set.join_next().await {
        assert_eq!(joined.expect("stampede task"), "v");
    }
    assert_eq!(calls.load(SeqCst), 1);
    let s = region.stats();
    assert_eq!((s.creations, s.misses, s.hits, s.stale_served), (1, 1, 0, 0), "{s:?}");
    assert_eq!(s.waited, TASKS as u64 - 1, "{s:?}");
    assert_eq!(outcomes(&s), TASKS as u64, "one outcome per call: {s:?}");

    for _ in 0..TASKS {
        let region = region.clone();
        set.spawn(async move { region.get_or_create_async("k", || async { panic!("fresh") }).await.unwrap() });
    }
    while let Some(joined) = set.join_next().await {
        assert_eq!(joined.expect("hit task"), "v");
    }
    let t = region.stats();
    assert_eq!(t.hits, s.hits + TASKS as u64, "{t:?}");
    assert_eq!(outcomes(&t), 2 * TASKS as u64, "{t:?}");
}

async fn async_multi_key_stampede_counts_each_key_once(_: Flavor) {
    const N: usize = 8;
    let region = region(&MockClock::new());
    let mut set = JoinSet::new();
    for _ in 0..N {
        let region = region.clone();
        set.spawn(async move {
            let r = region.clone();
            region
                .get_or_create_multi_async(&["a", "b"], |missing| async move {
                    until(|| r.stats().lock_waits >= N as u64 - 1).await;
                    missing
                })
                .await
                .unwrap()
        });
    }
    while let Some(joined) = set.join_next().await {
        assert_eq!(joined.expect("stampede task"), ["a", "b"]);
    }
    let s = region.stats();
    assert_eq!((s.creations, s.misses, s.hits, s.stale_served), (2, 2, 0, 0), "{s:?}");
    assert_eq!(s.waited, 2 * (N as u64 - 1), "{s:?}");
    assert_eq!(outcomes(&s), 2 * N as u64, "one outcome per key and call: {s:?}");
}
