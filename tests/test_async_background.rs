//! Background regeneration as a tokio task (feature `tokio`, issue 4): an
//! expired key is served stale to every caller, the winner of the lock
//! included, while one spawned task regenerates it.
#![cfg(feature = "tokio")]

#[macro_use]
mod support_async;

use dogpile::{CreateOptions, Error, MockClock, Region};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use support_async::{Flavor, TASKS, region, region_with_expired, until};
use tokio::sync::Notify;
use tokio::task::JoinSet;

on_both_runtimes!(
    expired_key_regenerates_in_one_background_task,
    missing_key_is_created_by_the_caller,
    panicking_background_creator_releases_the_key,
);

/// Calls `get_or_create_async_background(key)` from `n` tasks; the creator
/// counts its calls, awaits `release` and returns `"new"`. Returns what each
/// task got.
async fn background_stampede(
    region: &Region,
    n: usize,
    calls: &Arc<AtomicUsize>,
    release: &Arc<Notify>,
) -> Vec<String> {
    let mut set = JoinSet::new();
    for _ in 0..n {
        let (region, calls, release) = (region.clone(), calls.clone(), release.clone());
        set.spawn(async move {
            region
                .get_or_create_async_background("k", &CreateOptions::new(), move || async move {
                    calls.fetch_add(1, SeqCst);
                    release.notified().await;
                    "new".to_string()
                })
                .await
                .expect("memory backend")
        });
    }
    let mut got = Vec::new();
    while let Some(joined) = set.join_next().await {
        got.push(joined.expect("stampede task"));
    }
    got
}

/// All 64 callers get the stale value while the regeneration is parked on a
/// `Notify`; once released, exactly one regeneration has run and the new
/// value is stored.
async fn expired_key_regenerates_in_one_background_task(_: Flavor) {
    let clock = MockClock::new();
    let region = region_with_expired(&clock, "k");
    let calls = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Notify::new());
    let got = background_stampede(&region, TASKS, &calls, &release).await;
    assert_eq!(got.len(), TASKS);
    assert!(got.iter().all(|v| v == "old"), "every caller, the winner included, gets the stale value: {got:?}");
    assert_eq!(region.stats().stale_served, TASKS as u64);
    // The regeneration task holds the lock until it is released.
    assert!(region.is_locked("k"));
    until(|| calls.load(SeqCst) == 1).await;
    assert_eq!(region.get::<String>("k").expect("memory backend"), None, "still expired while regenerating");
    release.notify_one();
    // The lock's entry goes just after the release (the handle is dropped
    // after the flag is cleared), so wait for the entry itself.
    until(|| region.lock_entries() == 0).await;
    assert!(!region.is_locked("k"));
    assert_eq!(calls.load(SeqCst), 1, "exactly one regeneration");
    assert_eq!(region.get::<String>("k").expect("memory backend").as_deref(), Some("new"));
    let stats = region.stats();
    assert_eq!((stats.creations, stats.creation_errors), (1, 0));
    assert_eq!(region.lock_entries(), 0);
    // Fresh now: no further regeneration.
    let again = background_stampede(&region, 4, &calls, &release).await;
    assert!(again.iter().all(|v| v == "new"));
    assert_eq!(calls.load(SeqCst), 1);
}

/// A missing key has nothing to serve meanwhile: one caller creates inline
/// and the others wait for it (no background task).
async fn missing_key_is_created_by_the_caller(_: Flavor) {
    let region = region(&MockClock::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Notify::new());
    release.notify_one();
    let got = background_stampede(&region, TASKS, &calls, &release).await;
    assert!(got.iter().all(|v| v == "new"), "{got:?}");
    assert_eq!(calls.load(SeqCst), 1);
    assert_eq!(region.stats().stale_served, 0);
    assert_eq!(region.lock_entries(), 0);
}

/// The spawned regeneration panics: the key's lock is released, the panic
/// is counted, the stale value stays, and the next caller regenerates again.
async fn panicking_background_creator_releases_the_key(_: Flavor) {
    let clock = MockClock::new();
    let region = region_with_expired(&clock, "k");
    let first: String = region
        .get_or_create_async_background("k", &CreateOptions::new(), || async {
            tokio::task::yield_now().await;
            panic!("the background creator fails on purpose")
        })
        .await
        .expect("memory backend");
    assert_eq!(first, "old");
    until(|| region.stats().creation_errors == 1).await;
    until(|| region.lock_entries() == 0).await;
    assert!(!region.is_locked("k"));
    let second: String = region
        .get_or_create_async_background("k", &CreateOptions::new(), || async { "new".to_string() })
        .await
        .expect("memory backend");
    assert_eq!(second, "old", "still stale: the failed regeneration stored nothing");
    until(|| region.stats().creations == 1).await;
    until(|| region.lock_entries() == 0).await;
    assert_eq!(region.get::<String>("k").expect("memory backend").as_deref(), Some("new"));
}

/// Outside a tokio runtime the regeneration cannot be spawned: the caller
/// still gets the stale value, the lock is not kept, and no creator runs.
#[test]
fn no_runtime_still_serves_stale() {
    let clock = MockClock::new();
    let region = region_with_expired(&clock, "k");
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let got: Result<String, Error> = support_async::block_on(region.get_or_create_async_background(
        "k",
        &CreateOptions::new(),
        move || async move {
            c.fetch_add(1, SeqCst);
            "new".to_string()
        },
    ));
    assert_eq!(got.expect("stale served").as_str(), "old");
    assert_eq!(calls.load(SeqCst), 0);
    assert!(!region.is_locked("k"));
    assert_eq!(region.lock_entries(), 0);
}

/// The background future is `Send` (and so is a `TokioRunner` region's).
#[test]
fn background_future_is_send() {
    fn assert_send<T: Send>(t: T) -> T {
        t
    }
    let region = Region::builder("send").runner(dogpile::TokioRunner::new()).build();
    let opts = CreateOptions::new();
    drop(assert_send(region.get_or_create_async_background("k", &opts, || async { 1u8 })));
}
