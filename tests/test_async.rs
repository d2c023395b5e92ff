//! The async dogpile lock on tokio (issue 4): single flight across tasks
//! without blocking an executor thread, stale values served at once, and a
//! creator that is cancelled, panics or fails releasing the key so that a
//! waiter takes over. Every scenario runs on a current-thread and on a
//! multi-thread runtime, under a hang guard.

#[macro_use]
mod support_async;

use dogpile::{CreateOptions, Error, MockClock, Region, TryCreateError};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;
use support_async::{Flavor, TASKS, region, region_with_expired, until};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinSet;

on_both_runtimes!(
    cold_stampede_one_creation,
    expired_stampede_serves_stale_without_waiting,
    aborted_creator_hands_over,
    timed_out_creator_hands_over,
    panicking_creator_hands_over,
    failing_creator_stores_nothing_and_hands_over,
    async_get_set_delete,
);

/// Spawns `n` tasks that each call `get_or_create_async(key)` with a creator
/// that counts its calls in `calls`, yields once and returns `"from waiter"`.
fn spawn_waiters(region: &Region, key: &'static str, n: usize, calls: &Arc<AtomicUsize>) -> JoinSet<String> {
    let mut set = JoinSet::new();
    for _ in 0..n {
        let (region, calls) = (region.clone(), calls.clone());
        set.spawn(async move {
            region
                .get_or_create_async(key, move || async move {
                    calls.fetch_add(1, SeqCst);
                    tokio::task::yield_now().await;
                    "from waiter".to_string()
                })
                .await
                .expect("memory backend")
        });
    }
    set
}

/// Every task of `set` returned `expected`; returns how many there were.
async fn all_got(mut set: JoinSet<String>, expected: &str) -> usize {
    let mut n = 0;
    while let Some(joined) = set.join_next().await {
        assert_eq!(joined.expect("waiter task"), expected);
        n += 1;
    }
    n
}

/// 64 tasks on one missing key; the creator awaits a 100 ms tokio sleep. On
/// a current-thread runtime a waiter that blocked its thread would stop the
/// creator's timer for good, so finishing at all proves waiting is async.
async fn cold_stampede_one_creation(flavor: Flavor) {
    let region = region(&MockClock::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for i in 0..TASKS {
        let (region, calls) = (region.clone(), calls.clone());
        set.spawn(async move {
            region
                .get_or_create_async("k", move || async move {
                    calls.fetch_add(1, SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    format!("made by task {i}")
                })
                .await
                .expect("memory backend")
        });
    }
    let mut values = Vec::new();
    while let Some(joined) = set.join_next().await {
        values.push(joined.expect("stampede task"));
    }
    assert_eq!(calls.load(SeqCst), 1, "exactly one creation");
    assert_eq!(values.len(), TASKS);
    assert!(values.iter().all(|v| *v == values[0]), "every task got the one created value: {values:?}");
    let stats = region.stats();
    assert_eq!(stats.creations, 1);
    // One outcome per call: the creating task missed, the others got its value.
    assert_eq!(stats.misses, 1);
    assert_eq!(stats.hits + stats.waited, TASKS as u64 - 1);
    if flavor == Flavor::CurrentThread {
        // Deterministic on one thread: the first task takes the lock, each of
        // the other 63 waits exactly once and then reads the value.
        assert_eq!(stats.lock_waits, TASKS as u64 - 1);
        assert_eq!(stats.waited, TASKS as u64 - 1);
    }
    assert_eq!(region.lock_entries(), 0);
    assert_eq!(region.get::<String>("k").expect("memory backend").as_deref(), Some(values[0].as_str()));
}

/// 64 tasks on an expired key: one regenerates; the creator stays parked
/// until the other 63 have all returned, so they cannot have awaited it.
async fn expired_stampede_serves_stale_without_waiting(_: Flavor) {
    let clock = MockClock::new();
    let region = region_with_expired(&clock, "k");
    let calls = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Notify::new());
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let mut set = JoinSet::new();
    for _ in 0..TASKS {
        let (region, calls, release, tx) = (region.clone(), calls.clone(), release.clone(), tx.clone());
        set.spawn(async move {
            let v: String = region
                .get_or_create_async("k", move || async move {
                    calls.fetch_add(1, SeqCst);
                    release.notified().await;
                    "new".to_string()
                })
                .await
                .expect("memory backend");
            tx.send(v).expect("the test listens");
        });
    }
    drop(tx);
    for _ in 0..TASKS - 1 {
        assert_eq!(rx.recv().await.expect("a task's value"), "old");
    }
    // 63 stale answers are in while the creator is still parked.
    assert_eq!(calls.load(SeqCst), 1);
    assert!(region.is_locked("k"));
    assert_eq!(region.stats().stale_served, TASKS as u64 - 1);
    release.notify_one();
    assert_eq!(rx.recv().await.expect("the creator's value"), "new");
    assert!(rx.recv().await.is_none(), "exactly 64 answers");
    while let Some(joined) = set.join_next().await {
        joined.expect("stampede task");
    }
    assert_eq!(calls.load(SeqCst), 1);
    let stats = region.stats();
    assert_eq!((stats.creations, stats.creation_errors), (1, 0));
    assert_eq!(region.get::<String>("k").expect("memory backend").as_deref(), Some("new"));
    assert_eq!(region.lock_entries(), 0);
}

/// Starts a task whose creator for `key` signals that it runs, then awaits
/// `then` and maps its output through `finish`.
fn spawn_creator<Fut, O: 'static>(
    region: &Region,
    key: &'static str,
    then: Fut,
    finish: fn(O) -> String,
) -> (tokio::task::JoinHandle<Result<String, Error>>, oneshot::Receiver<()>)
where
    Fut: Future<Output = O> + Send + 'static,
{
    let (started_tx, started_rx) = oneshot::channel();
    let region = region.clone();
    let handle = tokio::spawn(async move {
        region
            .get_or_create_async(key, move || async move {
                let _ = started_tx.send(());
                finish(then.await)
            })
            .await
    });
    (handle, started_rx)
}

/// Waits until the creator runs and 63 waiters wait on its lock.
async fn creator_running_with_waiters(
    region: &Region,
    started: oneshot::Receiver<()>,
    calls: &Arc<AtomicUsize>,
) -> JoinSet<String> {
    started.await.expect("the creator started");
    assert!(region.is_locked("k"));
    let waiters = spawn_waiters(region, "k", TASKS - 1, calls);
    until(|| region.stats().lock_waits >= TASKS as u64 - 1).await;
    assert_eq!(calls.load(SeqCst), 0, "nobody creates while the lock is held");
    waiters
}

/// After the first creator went away without a value: one waiter created,
/// all of them got its value, the failure was counted once, no lock is left.
async fn waiters_took_over(region: &Region, waiters: JoinSet<String>, calls: &Arc<AtomicUsize>) {
    assert_eq!(all_got(waiters, "from waiter").await, TASKS - 1);
    assert_eq!(calls.load(SeqCst), 1, "exactly one waiter created");
    let stats = region.stats();
    assert_eq!((stats.creations, stats.creation_errors), (1, 1));
    assert_eq!(region.lock_entries(), 0);
    assert!(!region.is_locked("k"));
    assert_eq!(region.get::<String>("k").expect("memory backend").as_deref(), Some("from waiter"));
}

/// The creating task is aborted while its creator awaits: its future is
/// dropped, the lock goes with it and a waiter creates.
async fn aborted_creator_hands_over(_: Flavor) {
    let region = region(&MockClock::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let (creator, started) = spawn_creator(&region, "k", std::future::pending::<()>(), |()| unreachable!());
    let waiters = creator_running_with_waiters(&region, started, &calls).await;
    creator.abort();
    let joined = creator.await.expect_err("the creator task was aborted");
    assert!(joined.is_cancelled());
    waiters_took_over(&region, waiters, &calls).await;
}

/// A caller gives up with `tokio::time::timeout` while creating: same as an
/// abort, the dropped future releases the lock.
async fn timed_out_creator_hands_over(_: Flavor) {
    let region = region(&MockClock::new());
    let gave_up = tokio::time::timeout(
        Duration::from_millis(20),
        region.get_or_create_async("k", std::future::pending::<String>),
    )
    .await;
    assert!(gave_up.is_err(), "the creator never finishes");
    assert!(!region.is_locked("k"));
    assert_eq!(region.lock_entries(), 0);
    assert_eq!(region.stats().creation_errors, 1);
    let v: String = region.get_or_create_async("k", || async { "second try".to_string() }).await.expect("memory");
    assert_eq!(v, "second try");
    assert_eq!(region.stats().creations, 1);
}

/// The creator future panics inside its task: the task ends with a panic,
/// the lock is released, and a waiter creates.
async fn panicking_creator_hands_over(_: Flavor) {
    let region = region(&MockClock::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let go = Arc::new(Notify::new());
    let (creator, started) =
        spawn_creator(&region, "k", go.clone().notified_owned(), |()| panic!("the creator fails on purpose"));
    let waiters = creator_running_with_waiters(&region, started, &calls).await;
    go.notify_one();
    let joined = creator.await.expect_err("the creator task panicked");
    assert!(joined.is_panic());
    waiters_took_over(&region, waiters, &calls).await;
}

/// A fallible creator returns `Err`: its caller gets the error, nothing is
/// stored (a waiter then finds the key missing and creates), the waiters go
/// on.
async fn failing_creator_stores_nothing_and_hands_over(_: Flavor) {
    let region = region(&MockClock::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let go = Arc::new(Notify::new());
    let (started_tx, started_rx) = oneshot::channel();
    let creator = tokio::spawn({
        let (region, go) = (region.clone(), go.clone());
        async move {
            region
                .try_get_or_create_async("k", move || async move {
                    let _ = started_tx.send(());
                    go.notified().await;
                    Err::<String, _>("backend of record is down")
                })
                .await
        }
    });
    let waiters = creator_running_with_waiters(&region, started_rx, &calls).await;
    go.notify_one();
    match creator.await.expect("the creator task") {
        Err(TryCreateError::Creator(e)) => assert_eq!(e, "backend of record is down"),
        other => panic!("expected the creator's error, got {other:?}"),
    }
    waiters_took_over(&region, waiters, &calls).await;

    // Alone, on a fresh key: the error comes back and the key stays empty.
    let r = region.try_get_or_create_async("alone", || async { Err::<String, _>(7) }).await;
    assert!(matches!(r, Err(TryCreateError::Creator(7))), "{r:?}");
    assert_eq!(region.get::<String>("alone").expect("memory backend"), None);
    assert_eq!(region.stats().creation_errors, 2);
    assert_eq!(region.lock_entries(), 0);
}

/// The plain async twins read and write what the sync calls see, and
/// per-call options apply.
async fn async_get_set_delete(_: Flavor) {
    let clock = MockClock::new();
    let region = region(&clock);
    assert_eq!(region.get_async::<u64>("n").await.expect("memory"), None);
    region.set_async("n", 5u64).await.expect("memory");
    assert_eq!(region.get_async::<u64>("n").await.expect("memory"), Some(5));
    assert_eq!(region.get::<u64>("n").expect("memory"), Some(5));
    region.delete_async("n").await.expect("memory");
    assert_eq!(region.get::<u64>("n").expect("memory"), None);

    // A per-call expiration shorter than the region's.
    let short = CreateOptions::new().expiration(Duration::from_secs(5));
    let v: u64 = region.get_or_create_async_with("s", &short, || async { 1 }).await.expect("memory");
    assert_eq!(v, 1);
    clock.advance(Duration::from_secs(6));
    let v: u64 = region.get_or_create_async_with("s", &short, || async { 2 }).await.expect("memory");
    assert_eq!(v, 2, "expired after the per-call 5 s, regenerated by the only caller");
    // `should_cache` refusing a value: returned, not stored.
    let never = CreateOptions::new().should_cache(|_: &u64| false);
    let r = region.try_get_or_create_async_with("t", &never, || async { Ok::<u64, ()>(3) }).await;
    assert_eq!(r.expect("creator succeeded"), 3);
    assert_eq!(region.get::<u64>("t").expect("memory"), None);
    assert_eq!(region.lock_entries(), 0);
}

fn assert_send<T: Send>(t: T) -> T {
    t
}

/// Compile-time check: the futures of the async API are `Send` (so
/// `tokio::spawn` takes them), for owned and borrowed keys alike.
#[test]
fn async_futures_are_send() {
    let region = region(&MockClock::new());
    let key = String::from("borrowed");
    let opts = CreateOptions::<u8>::new();
    drop(assert_send(region.get_or_create_async(&key, || async { 1u8 })));
    drop(assert_send(region.get_or_create_async_with(&key, &opts, || async { 1u8 })));
    drop(assert_send(region.try_get_or_create_async(&key, || async { Ok::<u8, String>(1) })));
    drop(assert_send(region.try_get_or_create_async_with(&key, &opts, || async { Ok::<u8, String>(1) })));
    drop(assert_send(region.get_async::<u8>(&key)));
    drop(assert_send(region.set_async(&key, 1u8)));
    drop(assert_send(region.delete_async(&key)));
    assert_eq!(region.stats().creations, 0, "futures are lazy");
}

/// Waiting needs no tokio: the async path runs on a bare executor too (the
/// core stays runtime-agnostic; only background regeneration needs tokio).
#[test]
fn runs_without_tokio() {
    let region = region(&MockClock::new());
    let v: u64 = support_async::block_on(region.get_or_create_async("k", || async { 9 })).expect("memory");
    assert_eq!(v, 9);
    let v: u64 = support_async::block_on(region.get_or_create_async("k", || async { unreachable!() })).expect("mem");
    assert_eq!(v, 9);
}
