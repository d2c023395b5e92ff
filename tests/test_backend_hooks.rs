//! The optional parts of the backend contract are what the drivers use,
//! when a backend offers them: its own `read_and_lease` (one step, never
//! `try_lease` then `get`).

mod support_store;

use dogpile::{MockClock, Region};
use std::sync::Arc;
use std::time::Duration;
use support_store::{Calls, Handle, Interface, Store, block_on};

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
