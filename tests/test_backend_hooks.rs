//! The optional parts of the backend contract are what the drivers use,
//! when a backend offers them: its own `read_and_lease` (one step, never
//! `try_lease` then `get`), its wake-up on another process's release
//! (instead of backing off), and the region's shared invalidation, read at
//! most once per `invalidation_refresh`. Two regions on one store stand for
//! two processes.

mod support_store;

use dogpile::{Expiration, Invalidation, MockClock, Region};
use std::sync::Arc;
use std::sync::mpsc::channel;
use std::time::Duration;
use support_store::{Calls, Handle, Interface, Store, block_on, wait_until};

const HANG: Duration = Duration::from_secs(60);

fn n(counter: &std::sync::atomic::AtomicUsize) -> usize {
    Calls::n(counter)
}

fn region(handle: &Arc<Handle>, clock: &Arc<MockClock>) -> Region {
    Region::builder("hooks")
        .backend_arc(handle.clone())
        .clock(clock.clone())
        .expiration(Duration::from_secs(60))
        .build()
}

// ----- read_and_lease -----

/// Creates a missing key, regenerates an expired one and creates two keys
/// at once through `interface`'s driver; checks that every lease came from
/// the backend's own `read_and_lease`.
fn read_and_lease_override_is_called(interface: Interface) {
    let store = Store::new();
    let handle = Handle::new(&store, interface).reading_and_leasing().build();
    let clock = MockClock::new();
    let r = region(&handle, &clock);
    let get_or_create = |key: &str, v: u32| match interface {
        Interface::Blocking => r.get_or_create(key, || v).unwrap(),
        _ => block_on(r.get_or_create_async(key, || async move { v })).unwrap(),
    };
    assert_eq!(get_or_create("missing", 1), 1);
    let calls = handle.calls();
    // The first read, the read under the in-process lock, then one step.
    assert_eq!((n(&calls.get), n(&calls.read_and_lease), n(&calls.try_lease)), (2, 1, 0), "missing key");

    clock.advance(Duration::from_secs(61));
    assert_eq!(get_or_create("missing", 2), 2, "expired: regenerated");
    // The first read, then one step (no read under the lock on this path).
    assert_eq!((n(&calls.get), n(&calls.read_and_lease), n(&calls.try_lease)), (3, 2, 0), "expired key");

    let keys = ["m1", "m2"];
    let made: Vec<u32> = match interface {
        Interface::Blocking => r.get_or_create_multi(&keys, |k| vec![3; k.len()]).unwrap(),
        _ => block_on(r.get_or_create_multi_async(&keys, |k| async move { vec![3; k.len()] })).unwrap(),
    };
    assert_eq!(made, [3, 3]);
    assert_eq!((n(&calls.read_and_lease), n(&calls.try_lease)), (4, 0), "one step per key of a multi-key call");
    assert!(!store.held("missing") && !store.held("m1") && !store.held("m2"));
}

#[test]
fn the_blocking_driver_calls_the_backends_own_read_and_lease() {
    read_and_lease_override_is_called(Interface::Blocking);
}

#[test]
fn the_async_driver_calls_the_backends_own_read_and_lease() {
    read_and_lease_override_is_called(Interface::Async);
}

// ----- wake-up -----

/// Checks, for the waiting process's handle, that it waited through the
/// backend's wake-up and that each wait ended with the release (so the
/// driver asked for the lease again at once, with no back-off).
fn woken_not_backed_off(waiter: &Handle) {
    let calls = waiter.calls();
    let waits = n(&calls.wait_released);
    assert!(waits >= 1, "the waiter never used the backend's wake-up");
    assert_eq!(n(&calls.woken), waits, "a wait ended before the release");
    assert_eq!(n(&calls.refused), waits, "each refused lease request was followed by one wait");
    assert_eq!(n(&calls.try_lease), waits + 1, "the lease was asked for once after each wake-up");
    assert_eq!(n(&calls.sleep), 0, "the waiter backed off although the backend wakes it");
}

#[test]
fn a_blocking_caller_waiting_for_another_process_is_woken_by_the_backend() {
    let store = Store::new();
    let clock = MockClock::new();
    let (ha, hb) = (
        Handle::new(&store, Interface::Blocking).waking().build(),
        Handle::new(&store, Interface::Blocking).waking().build(),
    );
    let (ra, rb) = (region(&ha, &clock), region(&hb, &clock));
    let (entered_tx, entered_rx) = channel();
    let (go_tx, go_rx) = channel::<()>();
    let creator = std::thread::spawn(move || {
        ra.get_or_create("k", || {
            entered_tx.send(()).unwrap();
            go_rx.recv_timeout(HANG).expect("let go by the test");
            1u32
        })
        .unwrap()
    });
    entered_rx.recv_timeout(HANG).expect("the creator started");
    let waiter =
        std::thread::spawn(move || rb.get_or_create("k", || -> u32 { panic!("the other process creates") }).unwrap());
    wait_until("the waiter waits for the lease", HANG, || n(&hb.calls().wait_released) >= 1);
    go_tx.send(()).unwrap();
    assert_eq!(creator.join().unwrap(), 1);
    assert_eq!(waiter.join().unwrap(), 1, "the other process's value");
    woken_not_backed_off(&hb);
    assert!(!store.held("k"));
}

#[test]
fn an_async_caller_waiting_for_another_process_is_woken_by_the_backend() {
    let store = Store::new();
    let clock = MockClock::new();
    let (ha, hb) = (
        Handle::new(&store, Interface::Async).waking().build(),
        Handle::new(&store, Interface::Async).waking().build(),
    );
    let (ra, rb) = (region(&ha, &clock), region(&hb, &clock));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (entered_tx, entered_rx) = tokio::sync::oneshot::channel();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let creator = tokio::spawn(async move {
            ra.get_or_create_async("k", || async move {
                entered_tx.send(()).unwrap();
                go_rx.await.expect("let go by the test");
                1u32
            })
            .await
            .unwrap()
        });
        entered_rx.await.unwrap();
        let hb2 = hb.clone();
        let waiter = tokio::spawn(async move {
            rb.get_or_create_async::<u32, _, _>("k", || async { panic!("the other process creates") }).await.unwrap()
        });
        let waiting = tokio::time::timeout(HANG, async {
            while n(&hb2.calls().wait_released) == 0 {
                tokio::task::yield_now().await;
            }
        });
        waiting.await.expect("the waiter never waited for the lease");
        go_tx.send(()).unwrap();
        assert_eq!(creator.await.unwrap(), 1);
        assert_eq!(waiter.await.unwrap(), 1, "the other process's value");
    });
    woken_not_backed_off(&hb);
    assert!(!store.held("k"));
}

// ----- shared invalidation -----

#[test]
fn shared_invalidation_is_read_at_most_once_per_refresh_interval() {
    let store = Store::new();
    let clock = MockClock::new();
    let (ha, hb) = (Handle::new(&store, Interface::Both).build(), Handle::new(&store, Interface::Both).build());
    let build = |handle: &Arc<Handle>| {
        Region::builder("shared-invalidation")
            .backend_arc(handle.clone())
            .clock(clock.clone())
            .expiration(Expiration::Never)
            .invalidation_refresh(Duration::from_secs(3600))
            .build()
    };
    let (ra, rb) = (build(&ha), build(&hb));
    let loads = || n(&ha.calls().load_invalidation);
    ra.set("k", 1u32).unwrap();
    // Many hits, blocking and async: the word is read by the first only.
    for _ in 0..50 {
        assert_eq!(ra.get::<u32>("k").unwrap(), Some(1));
        assert_eq!(ra.get_or_create("k", || 2u32).unwrap(), 1);
        assert_eq!(block_on(ra.get_async::<u32>("k")).unwrap(), Some(1));
        assert_eq!(block_on(ra.get_or_create_async("k", || async { 2u32 })).unwrap(), 1);
    }
    assert_eq!(ra.get_multi::<u32, _>(&["k"]).unwrap(), [Some(1)]);
    assert_eq!(loads(), 1, "hits within the interval read the shared invalidation once");

    clock.advance(Duration::from_secs(1));
    rb.invalidate(Invalidation::Hard);
    assert_eq!(
        ra.get::<u32>("k").unwrap(),
        Some(1),
        "the other process's invalidation is not seen before the interval"
    );
    assert_eq!(loads(), 1);

    clock.advance(Duration::from_secs(3600));
    assert_eq!(ra.get::<u32>("k").unwrap(), None, "the other process's invalidation is seen after the interval");
    assert_eq!(loads(), 2, "read again once the interval is over");
    assert_eq!(ra.get_or_create("k", || 3u32).unwrap(), 3);
    for _ in 0..50 {
        assert_eq!(ra.get::<u32>("k").unwrap(), Some(3));
        assert_eq!(block_on(ra.get_async::<u32>("k")).unwrap(), Some(3));
    }
    assert_eq!(loads(), 2, "and not again within the next interval");
}
