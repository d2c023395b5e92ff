//! The scenarios every backend must pass (memory, bounded memory, a byte
//! backend, a proxy), the bounded and null backends' own behaviour, and the
//! region against a backend with a distributed lock.

mod support;

use dogpile::backend::{Backend, BlockingBackend};
use dogpile::backends::{BoundedMemoryBackend, MemoryBackend, NullBackend};
use dogpile::{Clock, MockClock, Region};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;
use support::{ByteBackend, LockCall, Proxy, join, object, wait_until};

fn backends() -> Vec<(&'static str, Arc<dyn Backend>)> {
    vec![
        ("memory", Arc::new(MemoryBackend::new())),
        ("bounded", Arc::new(BoundedMemoryBackend::with_capacity(1000))),
        ("bytes", ByteBackend::new()),
        ("proxy(memory)", Proxy::new(MemoryBackend::new())),
        ("proxy(bytes)", Proxy::new(ByteBackendOwned::default())),
    ]
}

/// [`ByteBackend`] by value, for wrapping in a proxy.
#[derive(Debug, Default)]
struct ByteBackendOwned(Arc<ByteBackend>);

impl Backend for ByteBackendOwned {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn value_kind(&self) -> dogpile::backend::ValueKind {
        self.0.value_kind()
    }
    fn blocking(&self) -> Option<&dyn BlockingBackend> {
        Some(self)
    }
}

impl BlockingBackend for ByteBackendOwned {
    fn get(&self, key: &str) -> Result<Option<dogpile::backend::Value>, dogpile::backend::BackendError> {
        self.0.get(key)
    }
    fn set(
        &self,
        key: &str,
        value: dogpile::backend::Value,
        ttl: Option<Duration>,
    ) -> Result<(), dogpile::backend::BackendError> {
        self.0.set(key, value, ttl)
    }
    fn delete(&self, key: &str) -> Result<(), dogpile::backend::BackendError> {
        self.0.delete(key)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
    tags: Vec<String>,
    score: Option<f64>,
}

#[test]
fn round_trip_of_several_types() {
    for (name, backend) in backends() {
        let region = Region::builder("rt").backend_arc(backend).build();
        let user = User { id: 7, name: "Ada".into(), tags: vec!["a".into(), "b".into()], score: Some(1.5) };
        region.set("user", user.clone()).unwrap();
        region.set("list", vec![1u32, 2, 3]).unwrap();
        region.set("pair", ("x".to_string(), -4i64)).unwrap();
        region.set("none", None::<u8>).unwrap();
        assert_eq!(region.get::<User>("user").unwrap(), Some(user), "{name}");
        assert_eq!(region.get::<Vec<u32>>("list").unwrap(), Some(vec![1, 2, 3]), "{name}");
        assert_eq!(region.get::<(String, i64)>("pair").unwrap(), Some(("x".to_string(), -4)), "{name}");
        assert_eq!(region.get::<Option<u8>>("none").unwrap(), Some(None), "{name}");
        assert_eq!(region.get::<u32>("absent").unwrap(), None, "{name}");
        region.set("list", vec![9u32]).unwrap();
        assert_eq!(region.get::<Vec<u32>>("list").unwrap(), Some(vec![9]), "{name}: overwritten");
    }
}

#[test]
fn deletes_are_idempotent() {
    for (name, backend) in backends() {
        let region = Region::builder("del").backend_arc(backend).build();
        region.set("k", 1u8).unwrap();
        region.delete("k").unwrap();
        region.delete("k").unwrap();
        region.delete("never-there").unwrap();
        assert_eq!(region.get::<u8>("k").unwrap(), None, "{name}");
        assert_eq!(region.get_or_create("k", || 2u8).unwrap(), 2, "{name}: a deleted key is created again");
    }
}

#[test]
fn expiry_then_regeneration() {
    for (name, backend) in backends() {
        let clock = MockClock::new();
        let region =
            Region::builder("exp").backend_arc(backend).expiration(Duration::from_secs(5)).clock(clock.clone()).build();
        assert_eq!(region.get_or_create("k", || 1u32).unwrap(), 1, "{name}");
        clock.advance(Duration::from_secs(5));
        assert_eq!(region.get_or_create("k", || 2u32).unwrap(), 1, "{name}: exactly 5 s old is still fresh");
        clock.advance(Duration::from_millis(1));
        assert_eq!(region.get_or_create("k", || 3u32).unwrap(), 3, "{name}: expired, regenerated");
        assert_eq!(region.get_or_create("k", || 4u32).unwrap(), 3, "{name}");
        assert_eq!(region.stats().creations, 2, "{name}");
    }
}

#[test]
fn a_creator_may_call_the_cache_for_another_key() {
    for (name, backend) in backends() {
        let region = Region::builder("nested").backend_arc(backend).build();
        let r = region.clone();
        let outer: String = region
            .get_or_create("outer", || {
                let inner: String = r.get_or_create("inner", || "in".to_string()).unwrap();
                let multi: Vec<String> =
                    r.get_or_create_multi(&["m1", "m2"], |m| vec!["m".to_string(); m.len()]).unwrap();
                format!("{inner}+{}", multi.join(""))
            })
            .unwrap();
        assert_eq!(outer, "in+mm", "{name}");
        assert_eq!(region.get::<String>("inner").unwrap().as_deref(), Some("in"), "{name}");
        assert_eq!(region.lock_entries(), 0, "{name}");
    }
}

#[test]
fn bounded_backend_evicts_beyond_its_capacity() {
    let bounded = Arc::new(BoundedMemoryBackend::with_capacity(10));
    let region = Region::builder("bounded").backend_arc(bounded.clone()).build();
    for i in 0..200u32 {
        region.set(&format!("k{i}"), i).unwrap();
    }
    let present = (0..200u32).filter(|i| region.get::<u32>(&format!("k{i}")).unwrap().is_some()).count();
    assert!(bounded.len() <= 10, "{} entries for a capacity of 10", bounded.len());
    assert!(present <= 10 && present > 0, "{present} readable entries");
    assert!(bounded.weight() <= bounded.capacity());

    let by_len = Arc::new(BoundedMemoryBackend::with_weigher(100, |_, v| {
        v.downcast_ref::<String>().map_or(1, |s| s.len() as u64)
    }));
    let region = Region::builder("weighted").backend_arc(by_len.clone()).build();
    for i in 0..20 {
        region.set(&format!("w{i}"), "x".repeat(30)).unwrap();
    }
    assert!(by_len.weight() <= 100, "weight {}", by_len.weight());
    assert!(by_len.len() <= 3, "{} strings of 30 in a weight of 100", by_len.len());
    region.set("huge", "x".repeat(500)).unwrap();
    assert_eq!(region.get::<String>("huge").unwrap(), None, "heavier than the whole capacity: not kept");
}

#[test]
fn null_backend_creates_every_time_one_creator_at_a_time() {
    let region = Region::builder("null").backend(NullBackend).build();
    let seen: Vec<u32> = (1..=3).map(|i| region.get_or_create("k", || i).unwrap()).collect();
    assert_eq!(seen, [1, 2, 3]);
    region.set("k", 1u32).unwrap();
    assert_eq!(region.get::<u32>("k").unwrap(), None);

    let in_flight = Arc::new(AtomicUsize::new(0));
    let overlapped = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(6));
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let (r, in_flight, overlapped, barrier) =
                (region.clone(), in_flight.clone(), overlapped.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                r.get_or_create("shared", || {
                    if in_flight.fetch_add(1, Ordering::SeqCst) != 0 {
                        overlapped.store(true, Ordering::SeqCst);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    1u32
                })
                .unwrap()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(join(h), 1);
    }
    assert!(!overlapped.load(Ordering::SeqCst), "the in-process lock serializes creators even without storage");
    assert_eq!(region.stats().creations, 3 + 6);
}

// ----- a backend with a distributed lock -----

fn dist_region(proxy: &Arc<Proxy>, clock: &Arc<MockClock>) -> Region {
    Region::builder("dist").backend_arc(proxy.clone()).expiration(Duration::from_secs(10)).clock(clock.clone()).build()
}

#[test]
fn expired_value_with_distributed_lock_held_elsewhere_is_served_stale() {
    let (proxy, clock) = (Proxy::with_lock(MemoryBackend::new()), MockClock::new());
    let region = dist_region(&proxy, &clock);
    region.set("k", "old".to_string()).unwrap();
    clock.advance(Duration::from_secs(11));
    proxy.lock().hold_as_other("k");
    let v: String = region.get_or_create("k", || panic!("another process regenerates")).unwrap();
    assert_eq!(v, "old");
    assert_eq!(region.stats().stale_served, 1);
    assert!(!region.is_locked("k"), "the in-process lock is let go");
    assert_eq!(proxy.lock().holder("k").as_deref(), Some("other-process"), "not released by us");
    assert!(proxy.lock().calls().iter().all(|c| !matches!(c, LockCall::Release { .. })));
}

#[test]
fn missing_value_with_distributed_lock_held_elsewhere_polls_until_it_lands() {
    let (proxy, clock) = (Proxy::with_lock(MemoryBackend::new()), MockClock::new());
    let region = dist_region(&proxy, &clock);
    proxy.lock().hold_as_other("k");
    let r = region.clone();
    let caller = std::thread::spawn(move || r.get_or_create("k", || "mine".to_string()).unwrap());
    let r = region.clone();
    let second = std::thread::spawn(move || r.get_or_create("k", || "second".to_string()).unwrap());
    wait_until("the caller polls the distributed lock", || proxy.lock().acquire_attempts("k") >= 3);
    assert!(!caller.is_finished() && !second.is_finished());
    proxy.inner().set("k", object("theirs".to_string(), clock.now_nanos()), None).unwrap();
    assert_eq!(join(caller), "theirs");
    assert_eq!(join(second), "theirs");
    assert_eq!(region.stats().creations, 0);
    assert_eq!(proxy.lock().holder("k").as_deref(), Some("other-process"));
    assert!(proxy.lock().calls().iter().all(|c| matches!(c, LockCall::Acquire { ok: false, .. })));
    assert_eq!(region.lock_entries(), 0);
}

#[test]
fn missing_value_whose_other_creator_gave_up_is_created_here() {
    let (proxy, clock) = (Proxy::with_lock(MemoryBackend::new()), MockClock::new());
    let region = dist_region(&proxy, &clock);
    proxy.lock().hold_as_other("k");
    let r = region.clone();
    let caller = std::thread::spawn(move || r.get_or_create("k", || "mine".to_string()).unwrap());
    wait_until("the caller polls", || proxy.lock().acquire_attempts("k") >= 2);
    proxy.lock().release_other("k");
    assert_eq!(join(caller), "mine");
    assert_eq!(proxy.lock().holder("k"), None, "released after creating");
}

fn tokens(calls: &[LockCall]) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut acquired, mut extended, mut released) = (vec![], vec![], vec![]);
    for c in calls {
        match c {
            LockCall::Acquire { token, ok: true, .. } => acquired.push(token.clone()),
            LockCall::Acquire { .. } => {}
            LockCall::Extend { token, .. } => extended.push(token.clone()),
            LockCall::Release { token, ok, .. } => {
                assert!(ok, "released a lock we did not own: {calls:?}");
                released.push(token.clone());
            }
        }
    }
    (acquired, extended, released)
}

#[test]
fn distributed_lock_released_with_the_token_that_acquired_it() {
    let (proxy, clock) = (Proxy::with_lock(MemoryBackend::new()), MockClock::new());
    let region = Region::builder("dist")
        .backend_arc(proxy.clone())
        .expiration(Duration::from_secs(10))
        .clock(clock.clone())
        .key_mangler(|k| format!("app:{k}"))
        .build();
    let p = proxy.clone();
    let v = region
        .get_or_create("k", move || {
            assert!(p.lock().holder("app:k").is_some(), "created under the distributed lock");
            1u32
        })
        .unwrap();
    assert_eq!(v, 1);
    clock.advance(Duration::from_secs(11));
    assert_eq!(region.get_or_create("k", || 2u32).unwrap(), 2, "expired path: regenerated under the lock");
    let calls = proxy.lock().calls();
    assert!(calls.iter().all(|c| matches!(c, LockCall::Acquire { key, .. } | LockCall::Release { key, .. } | LockCall::Extend { key, .. } if key == "app:k")), "the lock's key is mangled: {calls:?}");
    let (acquired, _, released) = tokens(&calls);
    assert_eq!(acquired.len(), 2, "{calls:?}");
    assert_eq!(acquired, released, "each release uses the token of its acquisition");
    assert_ne!(acquired[0], acquired[1], "a fresh token per acquisition");
    assert_eq!(proxy.lock().holder("app:k"), None);
}

#[test]
fn long_creator_extends_its_distributed_lock_with_its_token() {
    let proxy = Proxy::with_lock(MemoryBackend::new());
    let region = Region::builder("keeper").backend_arc(proxy.clone()).lock_timeout(Duration::from_millis(30)).build();
    let p = proxy.clone();
    region
        .get_or_create("k", move || {
            wait_until("the lock is extended", || {
                p.lock().calls().iter().any(|c| matches!(c, LockCall::Extend { .. }))
            });
            1u32
        })
        .unwrap();
    let calls = proxy.lock().calls();
    let (acquired, extended, released) = tokens(&calls);
    assert_eq!(acquired.len(), 1);
    assert!(!extended.is_empty() && extended.iter().all(|t| *t == acquired[0]), "{calls:?}");
    assert_eq!(released, acquired);
    assert!(calls.iter().all(|c| !matches!(c, LockCall::Extend { ok: false, .. })), "{calls:?}");
}

#[test]
fn in_process_single_flight_before_the_distributed_lock() {
    let proxy = Proxy::with_lock(MemoryBackend::new());
    let region = Region::builder("flight").backend_arc(proxy.clone()).build();
    let barrier = Arc::new(Barrier::new(16));
    let calls = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let (r, barrier, calls) = (region.clone(), barrier.clone(), calls.clone());
            std::thread::spawn(move || {
                barrier.wait();
                r.get_or_create("k", || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    5u32
                })
                .unwrap()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(join(h), 5);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        proxy.lock().acquire_attempts("k"),
        1,
        "only one caller in the process contends for the distributed lock"
    );
}

#[test]
fn lease_lost_during_creation_is_not_released_over_its_new_owner() {
    let proxy = Proxy::with_lock(MemoryBackend::new());
    let region = Region::builder("lost").backend_arc(proxy.clone()).build();
    let p = proxy.clone();
    let v = region
        .get_or_create("k", move || {
            // Our lease expires and another process takes the key.
            p.lock().expire("k");
            p.lock().hold_as_other("k");
            1u32
        })
        .unwrap();
    assert_eq!(v, 1);
    assert_eq!(proxy.lock().holder("k").as_deref(), Some("other-process"), "released the new owner's lease");
    let calls = proxy.lock().calls();
    let releases: Vec<_> = calls.iter().filter(|c| matches!(c, LockCall::Release { .. })).collect();
    assert!(matches!(releases[..], [LockCall::Release { ok: false, .. }]), "one release, refused: {calls:?}");
    assert!(!region.is_locked("k"), "the in-process lock is let go all the same");
}

#[test]
fn one_keeper_extends_every_lease_of_the_region() {
    let proxy = Proxy::with_lock(MemoryBackend::new());
    let region = Region::builder("keepers").backend_arc(proxy.clone()).lock_timeout(Duration::from_millis(30)).build();
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|key| {
            let (r, p, barrier) = (region.clone(), proxy.clone(), barrier.clone());
            std::thread::spawn(move || {
                r.get_or_create(key, move || {
                    barrier.wait();
                    let extended = |k: &str| {
                        p.lock()
                            .calls()
                            .iter()
                            .filter(|c| matches!(c, LockCall::Extend { key, .. } if key == k))
                            .count()
                    };
                    wait_until("both leases are extended, twice", || extended("a") >= 2 && extended("b") >= 2);
                    barrier.wait();
                    1u32
                })
                .unwrap()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(join(h), 1);
    }
    let calls = proxy.lock().calls();
    let (acquired, extended, released) = tokens(&calls);
    assert_eq!(acquired.len(), 2);
    assert!(extended.iter().all(|t| acquired.contains(t)), "extended with its own token: {calls:?}");
    assert!(calls.iter().all(|c| !matches!(c, LockCall::Extend { ok: false, .. })), "{calls:?}");
    released.iter().for_each(|t| assert!(acquired.contains(t)));
    assert_eq!(released.len(), 2);
    assert_eq!((proxy.lock().holder("a"), proxy.lock().holder("b")), (None, None));
}

#[test]
fn lease_without_keep_alive_is_never_extended() {
    let proxy = Proxy::with_lock(MemoryBackend::new());
    proxy.lock().without_keep_alive();
    let region =
        Region::builder("file-like").backend_arc(proxy.clone()).lock_timeout(Duration::from_millis(30)).build();
    let v = region
        .get_or_create("k", || {
            std::thread::sleep(Duration::from_millis(100));
            1u32
        })
        .unwrap();
    assert_eq!(v, 1);
    let calls = proxy.lock().calls();
    assert!(calls.iter().all(|c| !matches!(c, LockCall::Extend { .. })), "{calls:?}");
    assert_eq!(proxy.lock().holder("k"), None, "released after creating");
}

// Was: the waiter polled every `retry_interval` of the distributed lock. Now
// a backend without a wake-up gets a back-off with jitter from 2 ms, capped
// at 50 ms: neither a tight loop nor fixed 100 ms sleeps.
#[test]
fn waiting_for_another_process_backs_off_from_a_few_milliseconds() {
    let (proxy, clock) = (Proxy::with_lock(MemoryBackend::new()), MockClock::new());
    let region = dist_region(&proxy, &clock);
    proxy.lock().hold_as_other("k");
    let r = region.clone();
    let caller = std::thread::spawn(move || r.get_or_create("k", || "mine".to_string()).unwrap());
    std::thread::sleep(Duration::from_millis(300));
    let attempts = proxy.lock().acquire_attempts("k");
    proxy.lock().release_other("k");
    assert_eq!(join(caller), "mine");
    // 300 ms of back-off: 1-2 ms, then x1.5 each time up to 25-50 ms.
    assert!(attempts >= 3, "only {attempts} lease requests in 300 ms: sleeps too long at first");
    assert!(attempts <= 60, "{attempts} lease requests in 300 ms: the back-off does not grow");
}
