//! When the drivers let a lease go: however the creation ends (a value, an
//! error, a panic, a cancelled future; for an async creator dropped by a
//! panic or a cancellation, in the background and in either order), before
//! the key's in-process lock
//! (so that a caller of this process woken by the local release finds the
//! lease free, instead of backing off behind it), and, for async callers,
//! through the async path, before the call returns.

mod support_store;

use dogpile::backend::{Meta, Value};
use dogpile::{Clock, Expiration, Region, SystemClock};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use support_store::{Calls, Handle, Interface, Store, block_on, wait_until};

const HANG: Duration = Duration::from_secs(60);

/// What the release hook saw: the key, and whether its in-process lock was
/// held at that moment.
type Seen = Arc<Mutex<Vec<(String, bool)>>>;

/// A region on `handle`, with every release of one of its leases recorded.
/// The hook holds the region: [`Handle::clear_on_release`] ends the cycle.
fn watched(handle: &Arc<Handle>) -> (Region, Seen) {
    let region = Region::builder("lease-order").backend_arc(handle.clone()).expiration(Expiration::Never).build();
    let seen: Seen = Arc::default();
    let (r, s) = (region.clone(), seen.clone());
    handle.on_release(move |key| {
        let locked = r.is_locked(key);
        s.lock().unwrap_or_else(PoisonError::into_inner).push((key.to_owned(), locked));
    });
    (region, seen)
}

/// A value "another process" stored just now.
fn theirs(v: u32) -> Value {
    Value::Object { meta: Meta { created_nanos: SystemClock.now_nanos(), creation_nanos: 0 }, object: Arc::new(v) }
}

/// Checks that each of `keys` was released once, with its in-process lock
/// still held, and that no lease is left.
fn released_before_the_local_lock(store: &Store, handle: &Handle, seen: &Seen, keys: &[&str]) {
    released(store, handle, seen, keys, &[]);
}

/// As [`released_before_the_local_lock`], with `dropped`: keys whose async
/// creator was dropped, whose lease is released (once) in the background
/// while their in-process lock goes at once, in either order.
fn released(store: &Store, handle: &Handle, seen: &Seen, keys: &[&str], dropped: &[&str]) {
    handle.clear_on_release();
    let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
    for key in dropped {
        let at = seen.iter().position(|(k, _)| k == key).unwrap_or_else(|| panic!("{key}: lease never released"));
        seen.remove(at);
    }
    seen.sort();
    let mut want: Vec<(String, bool)> = keys.iter().map(|k| (k.to_string(), true)).collect();
    want.sort();
    assert_eq!(seen, want, "(key, in-process lock held at the lease's release)");
    for key in keys.iter().chain(dropped) {
        assert!(!store.held(key), "{key}: lease left held");
    }
}

#[test]
fn the_blocking_driver_releases_the_lease_before_the_in_process_lock() {
    let store = Store::new();
    let handle = Handle::new(&store, Interface::Blocking).build();
    let (region, seen) = watched(&handle);

    assert_eq!(region.get_or_create("made", || 1u32).unwrap(), 1);
    let failed = region.try_get_or_create("failed", || Err::<u32, &str>("no"));
    assert!(failed.is_err());
    let r = region.clone();
    let panicked = std::thread::spawn(move || r.get_or_create::<u32, _>("panicked", || panic!("creator panics")));
    assert!(panicked.join().is_err(), "the panic reaches the caller");
    // The lease is won, but the value is there by then: released unused.
    handle.land_on_next_lease("landed", theirs(7));
    assert_eq!(region.get_or_create("landed", || -> u32 { panic!("the value landed") }).unwrap(), 7);
    let multi: Vec<u32> = region.get_or_create_multi(&["m2", "m1"], |keys| vec![2; keys.len()]).unwrap();
    assert_eq!(multi, [2, 2]);

    released_before_the_local_lock(&store, &handle, &seen, &["made", "failed", "panicked", "landed", "m1", "m2"]);
}

/// The async driver, on a multi-thread runtime, through `interface`: a
/// creator that returns, fails, panics, is cancelled, finds the value
/// landed, and a multi-key creation.
fn async_driver_releases_before_the_local_lock(interface: Interface) {
    let store = Store::new();
    let handle = Handle::new(&store, interface).build();
    let (region, seen) = watched(&handle);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(region.get_or_create_async("made", || async { 1u32 }).await.unwrap(), 1);
        let failed = region.try_get_or_create_async("failed", || async { Err::<u32, &str>("no") }).await;
        assert!(failed.is_err());

        let r = region.clone();
        let panicked = tokio::spawn(async move {
            r.get_or_create_async::<u32, _, _>("panicked", || async { panic!("creator panics") }).await
        });
        assert!(panicked.await.unwrap_err().is_panic(), "the panic reaches the caller");

        // Cancelled while its creator runs (a lease still on its way in
        // `read_and_lease` is released by the backend's `ReleaseOnDrop`).
        let r = region.clone();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let cancelled = tokio::spawn(async move {
            r.get_or_create_async("cancelled", || async move {
                let _ = started_tx.send(());
                std::future::pending::<u32>().await
            })
            .await
        });
        started_rx.await.unwrap();
        cancelled.abort();
        assert!(cancelled.await.unwrap_err().is_cancelled());

        handle.land_on_next_lease("landed", theirs(7));
        let landed = region.get_or_create_async::<u32, _, _>("landed", || async { panic!("the value landed") }).await;
        assert_eq!(landed.unwrap(), 7);

        let multi: Vec<u32> =
            region.get_or_create_multi_async(&["m2", "m1"], |keys| async move { vec![2; keys.len()] }).await.unwrap();
        assert_eq!(multi, [2, 2]);
    });
    // A panicked or cancelled creator's lease is released away from the
    // executor thread, a moment later (its in-process lock went at once).
    wait_until("the dropped creators' leases are released", HANG, || {
        !store.held("panicked") && !store.held("cancelled") && !region.is_locked("panicked")
    });
    released(&store, &handle, &seen, &["made", "failed", "landed", "m1", "m2"], &["panicked", "cancelled"]);
}

#[test]
fn the_async_driver_releases_an_async_lease_before_the_in_process_lock() {
    async_driver_releases_before_the_local_lock(Interface::Async);
}

#[test]
fn the_async_driver_releases_an_offloaded_lease_before_the_in_process_lock() {
    async_driver_releases_before_the_local_lock(Interface::Blocking);
}

// Regression (the old multi_async.rs released the leases of a multi-key
// async creation through the blocking Drop): on a backend with only an
// async interface, they stayed held until they expired (lock_timeout, 30 s
// by default), and every process waited for them meanwhile. Polled here
// outside any tokio runtime, so no fallback on tokio's blocking pool can
// release them: the call releases them itself, through the async
// interface, before it returns.
#[test]
fn multi_key_async_creation_does_not_leave_its_leases_to_expire() {
    let store = Store::new();
    let handle = Handle::new(&store, Interface::Async).build();
    let region = Region::builder("multi-async-leases")
        .backend_arc(handle.clone())
        .lock_timeout(Duration::from_secs(3600))
        .build();
    let got: Vec<String> =
        block_on(region.get_or_create_multi_async(&["b", "a"], |keys| async move {
            keys.iter().map(|k| format!("v-{k}")).collect()
        }))
        .unwrap();
    assert_eq!(got, ["v-b", "v-a"]);
    assert!(!store.held("a") && !store.held("b"), "a lease is still held after the call returned");
    assert_eq!(Calls::n(&handle.calls().release), 2);
    let me = std::thread::current().id();
    assert_eq!(handle.releasers(), [me, me], "released by the call, not by a detached fallback");
    assert!(store.has_value("a") && store.has_value("b"));
}
