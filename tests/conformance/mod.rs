//! The conformance suite: what every backend must do, written once and run
//! against each backend through [`conformance_suite!`] (the Python
//! original's generic backend tests are the model).
//!
//! A backend's test file includes this module and names a factory:
//!
//! ```ignore
//! mod conformance;
//! conformance_suite!(memory, Stores::Values, || Arc::new(MemoryBackend::new()));
//! ```
//!
//! Each check becomes its own `#[test]` inside `mod memory`, so a failure
//! names the backend and the check. Two backends made by one factory call
//! each must not share storage; remote backends give each call a fresh key
//! prefix (or database) for that. What a shared backend promises between
//! processes is checked by [`shared_suite!`] through two handles on one
//! store (two regions in one test standing for two processes): one
//! creation across both, stale values served while the other regenerates,
//! lease semantics (exclusive, owner-only release, expiry, keep-alive),
//! and invalidation seen by the other.

#![allow(dead_code, unreachable_pub)]

use dogpile::backend::{Acquire, Backend, Lease, Meta, Value, ValueKind};
use dogpile::{Clock, CreateOptions, Invalidation, Region};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What the backend keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stores {
    /// Every value written is read back until deleted or expired.
    Values,
    /// Nothing is kept (the null backend): every read misses, every call
    /// creates, nothing else may break.
    Nothing,
}

/// How long a check may wait for threads before declaring a hang.
const HANG: Duration = Duration::from_secs(60);

fn region(backend: Arc<dyn Backend>, expiration: Duration) -> Region {
    Region::builder("conformance").backend_arc(backend).expiration(expiration).build()
}

fn join_all<T>(handles: Vec<std::thread::JoinHandle<T>>) -> Vec<T> {
    let deadline = Instant::now() + HANG;
    handles
        .into_iter()
        .map(|h| {
            while !h.is_finished() {
                assert!(Instant::now() < deadline, "threads did not finish within {HANG:?} (hang)");
                std::thread::sleep(Duration::from_millis(1));
            }
            h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
        .collect()
}

/// Values of several shapes survive a set and a get, and `get_or_create`
/// reads what `set` stored.
pub fn round_trip(backend: Arc<dyn Backend>, stores: Stores) {
    let r = region(backend, Duration::from_secs(3600));
    let values: Vec<(&str, Vec<Option<String>>)> = vec![
        ("empty", vec![]),
        ("one", vec![Some("a".into())]),
        ("mixed", vec![None, Some(String::new()), Some("ü\n\0 spaced".into())]),
    ];
    for (key, value) in &values {
        r.set(key, value.clone()).unwrap();
    }
    for (key, value) in &values {
        let got = r.get::<Vec<Option<String>>>(key).unwrap();
        match stores {
            Stores::Values => assert_eq!(got.as_ref(), Some(value), "{key}"),
            Stores::Nothing => assert_eq!(got, None, "{key}"),
        }
    }
    let created = AtomicUsize::new(0);
    let v: u64 = r
        .get_or_create("n", || {
            created.fetch_add(1, Ordering::SeqCst);
            7
        })
        .unwrap();
    let again: u64 = r.get_or_create("n", || 8).unwrap();
    assert_eq!(v, 7);
    match stores {
        Stores::Values => assert_eq!(again, 7, "the stored value is read back"),
        Stores::Nothing => assert_eq!(again, 8, "nothing stored: the creator runs again"),
    }
    assert_eq!(created.load(Ordering::SeqCst), 1);
}

/// Multi-key reads answer one slot per key, in the caller's order, with
/// `None` where nothing is stored; empty batches are fine.
pub fn multi_get_and_set_in_order(backend: Arc<dyn Backend>, stores: Stores) {
    let r = region(backend, Duration::from_secs(3600));
    assert_eq!(r.get_multi::<u32, &str>(&[]).unwrap(), Vec::<Option<u32>>::new());
    r.set_multi(Vec::<(&str, u32)>::new()).unwrap();
    r.set_multi(vec![("a", 1u32), ("c", 3)]).unwrap();
    let got = r.get_multi::<u32, _>(&["c", "b", "a", "a"]).unwrap();
    match stores {
        Stores::Values => assert_eq!(got, [Some(3), None, Some(1), Some(1)]),
        Stores::Nothing => assert_eq!(got, [None, None, None, None]),
    }
    r.delete_multi(&["a", "missing"]).unwrap();
    let got = r.get_multi::<u32, _>(&["a", "c"]).unwrap();
    match stores {
        Stores::Values => assert_eq!(got, [None, Some(3)]),
        Stores::Nothing => assert_eq!(got, [None, None]),
    }
}

/// Deleting twice, or deleting what was never there, is not an error.
pub fn deletes_are_idempotent(backend: Arc<dyn Backend>, _stores: Stores) {
    let r = region(backend, Duration::from_secs(3600));
    r.delete("never").unwrap();
    r.set("k", 1u8).unwrap();
    r.delete("k").unwrap();
    r.delete("k").unwrap();
    assert_eq!(r.get::<u8>("k").unwrap(), None);
}

/// A value read after its expiration is regenerated, and the new value is
/// then served.
pub fn expiry_then_regeneration(backend: Arc<dyn Backend>, stores: Stores) {
    let clock = dogpile::MockClock::new();
    let r = Region::builder("conformance")
        .backend_arc(backend)
        .clock(clock.clone())
        .expiration(Duration::from_secs(10))
        .build();
    assert_eq!(r.get_or_create("k", || 1u32).unwrap(), 1);
    clock.advance(Duration::from_secs(11));
    assert_eq!(r.get_or_create("k", || 2u32).unwrap(), 2);
    let want = match stores {
        Stores::Values => 2,
        Stores::Nothing => 3,
    };
    assert_eq!(r.get_or_create("k", || 3u32).unwrap(), want);
}

/// Ten threads loop over one key with a short expiration for several
/// generations: two creators never run at once, and values are regenerated
/// more than once.
pub fn threaded_dogpile(backend: Arc<dyn Backend>, _stores: Stores) {
    let r = region(backend, Duration::from_millis(30));
    let running = Arc::new(AtomicUsize::new(0));
    let creations = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(10));
    let handles = (0..10)
        .map(|_| {
            let (r, running, creations, barrier) = (r.clone(), running.clone(), creations.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let end = Instant::now() + Duration::from_millis(250);
                while Instant::now() < end {
                    let v: u64 = r
                        .get_or_create("k", || {
                            assert_eq!(running.fetch_add(1, Ordering::SeqCst), 0, "two creators at once");
                            std::thread::sleep(Duration::from_millis(5));
                            running.fetch_sub(1, Ordering::SeqCst);
                            creations.fetch_add(1, Ordering::SeqCst) as u64
                        })
                        .unwrap();
                    assert!(v < 1_000_000);
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        })
        .collect();
    join_all(handles);
    assert!(creations.load(Ordering::SeqCst) >= 2, "several generations over several expiry periods");
}

/// Concurrent multi-key callers on overlapping keys: each key is created
/// exactly once, and creators never share a key.
pub fn threaded_multi_key_creates_each_key_once(backend: Arc<dyn Backend>, stores: Stores) {
    let r = region(backend, Duration::from_secs(3600));
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let barrier = Arc::new(Barrier::new(6));
    let handles = (0..6)
        .map(|t| {
            let (r, seen, barrier) = (r.clone(), seen.clone(), barrier.clone());
            std::thread::spawn(move || {
                let keys: Vec<String> = (t..t + 5).map(|k| format!("k{k}")).collect();
                let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
                barrier.wait();
                let got = r
                    .get_or_create_multi(&refs, |missing: &[&str]| {
                        seen.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .extend(missing.iter().map(|k| k.to_string()));
                        std::thread::sleep(Duration::from_millis(10));
                        missing.iter().map(|k| format!("v{k}")).collect::<Vec<String>>()
                    })
                    .unwrap();
                let want: Vec<String> = keys.iter().map(|k| format!("v{k}")).collect();
                assert_eq!(got, want, "results in the caller's order");
            })
        })
        .collect();
    join_all(handles);
    let seen = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
    if stores == Stores::Values {
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "a key was created twice: {seen:?}");
        assert_eq!(unique.len(), 10, "keys k0..k9");
    }
}

/// A creator's error, a creator's panic and an async creator's panic free
/// the key's lock: the in-process lock, and on a backend that issues leases
/// the lease, released rather than left to expire. The region's leases here
/// live an hour, so a lease that another process (a lease asked of the
/// backend directly) takes at once after the failure was released. The
/// next caller creates.
pub fn creator_error_and_panic_free_the_lock(backend: Arc<dyn Backend>, _stores: Stores) {
    let r = Region::builder("conformance")
        .backend_arc(backend.clone())
        .expiration(Duration::from_secs(3600))
        .lock_timeout(Duration::from_secs(3600))
        .build();
    let lease_is_free = |after: &str| {
        if !backend.issues_leases() {
            return;
        }
        let taken = lease(&backend, "k", Duration::from_secs(30))
            .unwrap_or_else(|| panic!("after {after}, the key's lease is still held (it would expire in an hour)"));
        assert!(now(taken.release()).unwrap());
    };
    let failed: Result<u32, _> = r.try_get_or_create("k", || Err::<u32, &str>("no"));
    assert!(failed.is_err());
    assert!(!r.is_locked("k"));
    lease_is_free("a creator's error");
    let r2 = r.clone();
    let panicked = std::thread::spawn(move || r2.get_or_create::<u32, _>("k", || panic!("creator panics"))).join();
    assert!(panicked.is_err(), "the panic reaches the creator's caller");
    assert!(!r.is_locked("k"));
    lease_is_free("a creator's panic");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let r2 = r.clone();
    let task =
        rt.spawn(
            async move { r2.get_or_create_async::<u32, _, _>("k", || async { panic!("async creator panics") }).await },
        );
    assert!(rt.block_on(task).unwrap_err().is_panic(), "the panic reaches the creator's task");
    // The lease of a creator unwinding on an executor thread is released
    // away from it, in the background; its in-process lock goes at once.
    let deadline = Instant::now() + HANG;
    while r.is_locked("k") {
        assert!(Instant::now() < deadline, "the in-process lock of a panicked async creator is never released");
        std::thread::sleep(Duration::from_millis(1));
    }
    if backend.issues_leases() {
        loop {
            if let Some(taken) = lease(&backend, "k", Duration::from_secs(30)) {
                assert!(now(taken.release()).unwrap());
                break;
            }
            assert!(Instant::now() < deadline, "after an async creator's panic, the key's lease is still held");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert_eq!(r.get_or_create("k", || 5u32).unwrap(), 5);
    assert_eq!(r.stats().creation_errors, 3);
}

/// Bytes that are not a valid value for the reader (garbage in a byte
/// backend, another type in an in-process one) are a counted miss.
pub fn undecodable_value_is_a_counted_miss(backend: Arc<dyn Backend>, stores: Stores) {
    let meta = Meta { created_nanos: dogpile::SystemClock.now_nanos(), creation_nanos: 0 };
    let garbage = match backend.value_kind() {
        ValueKind::Bytes => Value::Bytes(b"\xffnot an envelope".to_vec()),
        ValueKind::Object => Value::Object { meta, object: Arc::new(vec![1u8, 2, 3]) },
    };
    backend.blocking().expect("a blocking interface").set("k", garbage, None).unwrap();
    let r = region(backend, Duration::from_secs(3600));
    assert_eq!(r.get::<String>("k").unwrap(), None);
    let failures = r.stats().decode_failures;
    match stores {
        Stores::Values => assert_eq!(failures, 1),
        Stores::Nothing => assert_eq!(failures, 0, "nothing was stored to fail"),
    }
    assert_eq!(r.get_or_create("k", || "fixed".to_string()).unwrap(), "fixed");
}

/// A creator may call the cache for another key (and that key's creator
/// for a third) without deadlocking.
pub fn creator_calls_the_cache_for_another_key(backend: Arc<dyn Backend>, stores: Stores) {
    let r = region(backend, Duration::from_secs(3600));
    let outer: String = r
        .get_or_create("outer", || {
            let inner: String = r
                .get_or_create("inner", || {
                    let deepest: u32 = r.get_or_create("deepest", || 3).unwrap();
                    format!("inner{deepest}")
                })
                .unwrap();
            format!("outer+{inner}")
        })
        .unwrap();
    assert_eq!(outer, "outer+inner3");
    if stores == Stores::Values {
        assert_eq!(r.get::<String>("inner").unwrap().as_deref(), Some("inner3"));
    }
}

/// `should_cache` false: the value is returned, nothing is stored.
pub fn should_cache_false_stores_nothing(backend: Arc<dyn Backend>, _stores: Stores) {
    let r = region(backend, Duration::from_secs(3600));
    let opts = CreateOptions::new().should_cache(|v: &u32| *v != 0);
    assert_eq!(r.get_or_create_with("k", &opts, || 0u32).unwrap(), 0);
    assert_eq!(r.get::<u32>("k").unwrap(), None);
}

/// Two backends standing for two processes sharing one store: of callers
/// in both on one missing key, one creation happens overall.
pub fn two_processes_create_once(a: Arc<dyn Backend>, b: Arc<dyn Backend>) {
    let ra = region(a, Duration::from_secs(3600));
    let rb = region(b, Duration::from_secs(3600));
    let creations = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(8));
    let handles = (0..8)
        .map(|i| {
            let r = if i % 2 == 0 { ra.clone() } else { rb.clone() };
            let (creations, barrier) = (creations.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                r.get_or_create("k", || {
                    creations.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(100));
                    42u32
                })
                .unwrap()
            })
        })
        .collect();
    assert!(join_all(handles).into_iter().all(|v| v == 42));
    assert_eq!(creations.load(Ordering::SeqCst), 1, "one creation across both processes");
}

/// Ten tasks on a two-thread runtime loop over one key with a short
/// expiration, through the async API (which reaches a backend that may
/// block through tokio's blocking pool): two creators never run at once.
pub fn async_dogpile(backend: Arc<dyn Backend>, _stores: Stores) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let r = region(backend, Duration::from_millis(30));
    let running = Arc::new(AtomicUsize::new(0));
    let creations = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let (r, running, creations) = (r.clone(), running.clone(), creations.clone());
                tokio::spawn(async move {
                    let end = Instant::now() + Duration::from_millis(250);
                    while Instant::now() < end {
                        let v: u64 = r
                            .get_or_create_async("k", || async {
                                assert_eq!(running.fetch_add(1, Ordering::SeqCst), 0, "two creators at once");
                                tokio::time::sleep(Duration::from_millis(5)).await;
                                running.fetch_sub(1, Ordering::SeqCst);
                                creations.fetch_add(1, Ordering::SeqCst) as u64
                            })
                            .await
                            .unwrap();
                        assert!(v < 1_000_000);
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            tokio::time::timeout(HANG, t).await.expect("hang").unwrap();
        }
    });
    assert!(creations.load(Ordering::SeqCst) >= 2, "several generations over several expiry periods");
}

/// Polls a lease future of a blocking backend (ready when made).
fn now<T>(fut: dogpile::backend::BoxFuture<'_, T>) -> T {
    let mut fut = fut;
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("a blocking backend's lease future must be ready"),
    }
}

fn lease(backend: &Arc<dyn Backend>, key: &str, ttl: Duration) -> Option<Box<dyn Lease>> {
    let io = backend.blocking().expect("the shared checks use the blocking interface");
    match io.try_lease(key, ttl).expect("try_lease") {
        Acquire::Won(l) => Some(l),
        Acquire::Held => None,
    }
}

/// A lease is exclusive (across handles, and within one), and only its
/// owner releases it.
pub fn leases_are_exclusive_and_owner_released(a: Arc<dyn Backend>, b: Arc<dyn Backend>) {
    assert!(a.issues_leases() && b.issues_leases());
    let la = lease(&a, "lease-k", Duration::from_secs(30)).expect("a free key's lease is won");
    assert!(lease(&b, "lease-k", Duration::from_secs(30)).is_none(), "held by a: refused to b");
    assert!(lease(&a, "lease-k", Duration::from_secs(30)).is_none(), "held by a: refused to a again");
    assert!(lease(&b, "other-k", Duration::from_secs(30)).is_some(), "leases are per key");
    assert!(now(la.release()).unwrap(), "the owner releases");
    assert!(!now(la.release()).unwrap(), "a released lease is not ours any more");
    let lb = lease(&b, "lease-k", Duration::from_secs(30)).expect("free again after release");
    assert!(!now(la.release()).unwrap(), "a's old lease cannot release b's");
    assert!(lease(&a, "lease-k", Duration::from_secs(30)).is_none(), "still held by b");
    assert!(now(lb.extend(Duration::from_secs(30))).unwrap(), "the owner extends");
    assert!(!now(la.extend(Duration::from_secs(30))).unwrap(), "a lost lease is not extended");
    assert!(now(lb.release()).unwrap());
}

/// A lease that is not extended expires, so a crashed owner cannot block
/// the key forever; its first owner can then neither extend nor release
/// the new owner's lease. A lease that needs no keep-alive (a file lock,
/// released by the OS when its holder dies) does not expire while held:
/// that is checked instead, and its backend's tests kill a holder.
pub fn an_unextended_lease_expires(a: Arc<dyn Backend>, b: Arc<dyn Backend>) {
    let la = lease(&a, "expiring", Duration::from_millis(200)).expect("won");
    assert!(lease(&b, "expiring", Duration::from_millis(200)).is_none());
    if !la.needs_keep_alive() {
        std::thread::sleep(Duration::from_millis(600));
        assert!(lease(&b, "expiring", Duration::from_secs(30)).is_none(), "held past its ttl: not taken");
        assert!(now(la.release()).unwrap());
        let lb = lease(&b, "expiring", Duration::from_secs(30)).expect("free once released");
        assert!(now(lb.release()).unwrap());
        return;
    }
    let deadline = Instant::now() + HANG;
    let lb = loop {
        std::thread::sleep(Duration::from_millis(50));
        if let Some(l) = lease(&b, "expiring", Duration::from_secs(30)) {
            break l;
        }
        assert!(Instant::now() < deadline, "the lease never expired");
    };
    assert!(!now(la.extend(Duration::from_secs(30))).unwrap(), "expired: not the old owner's");
    assert!(!now(la.release()).unwrap(), "expired: the old owner cannot release the new lease");
    assert!(lease(&a, "expiring", Duration::from_secs(30)).is_none(), "b holds it");
    assert!(now(lb.release()).unwrap());
}

/// A creator slower than the lease time-to-live keeps its lease (the
/// region's keeper extends it): the other process never wins it meanwhile,
/// and it is free once the creator is done.
pub fn keep_alive_holds_a_slow_creators_lease(a: Arc<dyn Backend>, b: Arc<dyn Backend>) {
    let ra = Region::builder("conformance").backend_arc(a).lock_timeout(Duration::from_millis(300)).build();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let creator = std::thread::spawn(move || {
        ra.get_or_create("slow", || {
            started_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(1200));
            7u32
        })
        .unwrap()
    });
    started_rx.recv_timeout(HANG).expect("creator started");
    let end = Instant::now() + Duration::from_millis(1000);
    let mut checks = 0;
    while Instant::now() < end {
        if let Some(stolen) = lease(&b, "slow", Duration::from_secs(30)) {
            let _ = now(stolen.release());
            panic!("the other process won the lease of a running creator (after {checks} checks)");
        }
        checks += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(join_all(vec![creator]), [7]);
    let after = lease(&b, "slow", Duration::from_secs(30)).expect("released when the creator is done");
    assert!(now(after.release()).unwrap());
}

/// While one process regenerates an expired value, the other gets the
/// stale value at once and does not run its creator.
pub fn stale_served_while_another_process_regenerates(a: Arc<dyn Backend>, b: Arc<dyn Backend>) {
    let ra = region(a, Duration::from_millis(100));
    let rb = region(b, Duration::from_millis(100));
    ra.set("k", 1u32).unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let regenerator = std::thread::spawn(move || {
        ra.get_or_create("k", || {
            started_tx.send(()).unwrap();
            go_rx.recv_timeout(HANG).expect("released by the test");
            2u32
        })
        .unwrap()
    });
    started_rx.recv_timeout(HANG).expect("regeneration started");
    let served = rb.get_or_create("k", || -> u32 { panic!("the other process regenerates already") }).unwrap();
    assert_eq!(served, 1, "the stale value, at once");
    assert_eq!(rb.stats().stale_served, 1);
    go_tx.send(()).unwrap();
    assert_eq!(join_all(vec![regenerator]), [2]);
    assert_eq!(rb.get::<u32>("k").unwrap(), Some(2));
}

/// An invalidation in one process is seen by the other (hard: a miss;
/// soft: regenerated), through the backend.
pub fn invalidation_seen_by_the_other_process(a: Arc<dyn Backend>, b: Arc<dyn Backend>) {
    let build = |backend| {
        Region::builder("conformance")
            .backend_arc(backend)
            .expiration(Duration::from_secs(3600))
            .invalidation_refresh(Duration::ZERO)
            .build()
    };
    let (ra, rb) = (build(a), build(b));
    ra.set("k", 1u32).unwrap();
    assert_eq!(rb.get::<u32>("k").unwrap(), Some(1));
    // Creation times are stamped by the clock: let it move past them.
    std::thread::sleep(Duration::from_millis(5));
    ra.invalidate(Invalidation::Hard);
    assert_eq!(rb.get::<u32>("k").unwrap(), None, "b sees a's hard invalidation");
    rb.set("j", 1u32).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    rb.invalidate(Invalidation::Soft);
    assert_eq!(ra.get_or_create("j", || 2u32).unwrap(), 2, "a sees b's soft invalidation and regenerates");
    assert_eq!(rb.get::<u32>("j").unwrap(), Some(2), "a value created after the invalidation is fresh");
}

/// The checks of a backend shared between processes, for the pair of
/// handles made by `$make` (one store, two "processes").
#[macro_export]
macro_rules! shared_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            use super::*;

            $crate::shared_suite!(@checks $make;
                two_processes_create_once,
                leases_are_exclusive_and_owner_released,
                an_unextended_lease_expires,
                keep_alive_holds_a_slow_creators_lease,
                stale_served_while_another_process_regenerates,
                invalidation_seen_by_the_other_process
            );
        }
    };
    (@checks $make:expr; $($check:ident),*) => {
        $(
            #[test]
            fn $check() {
                let (a, b) = ($make)();
                conformance::$check(a, b);
            }
        )*
    };
}

/// One `#[test]` per check for the backend made by `$make`, in a module
/// named `$name`.
#[macro_export]
macro_rules! conformance_suite {
    ($name:ident, $stores:expr, $make:expr) => {
        mod $name {
            use super::*;

            fn make() -> ::std::sync::Arc<dyn ::dogpile::backend::Backend> {
                ($make)()
            }

            $crate::conformance_suite!(@checks $stores;
                round_trip,
                multi_get_and_set_in_order,
                deletes_are_idempotent,
                expiry_then_regeneration,
                threaded_dogpile,
                threaded_multi_key_creates_each_key_once,
                creator_error_and_panic_free_the_lock,
                undecodable_value_is_a_counted_miss,
                creator_calls_the_cache_for_another_key,
                should_cache_false_stores_nothing,
                async_dogpile
            );
        }
    };
    (@checks $stores:expr; $($check:ident),*) => {
        $(
            #[test]
            fn $check() {
                conformance::$check(make(), $stores);
            }
        )*
    };
}
