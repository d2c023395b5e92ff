//! The dogpile lock on one key: single creation, stale while regenerating,
//! re-read after locking, bounded waits, bounded bookkeeping.

mod support;

use dogpile::backend::Backend;
use dogpile::backends::{BoundedMemoryBackend, MemoryBackend};
use dogpile::{Clock, Expiration, MockClock, Region};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::{Proxy, gate, join, object, wait_until};

fn backends() -> Vec<(&'static str, Arc<dyn Backend>)> {
    vec![
        ("memory", Arc::new(MemoryBackend::new())),
        ("bounded", Arc::new(BoundedMemoryBackend::with_capacity(1000))),
        ("proxy(memory)", Proxy::new(MemoryBackend::new())),
    ]
}

/// Many threads loop over one key with a slow creator for several expiry
/// periods (real time, counts asserted only).
fn stress(
    name: &'static str,
    backend: Arc<dyn Backend>,
    threads: usize,
    expiry: Duration,
    creation: Duration,
    run: Duration,
) {
    let region = Region::builder("stress").backend_arc(backend).expiration(expiry).build();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let overlapped = Arc::new(AtomicBool::new(false));
    let generations = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + run;
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (region, in_flight, overlapped, generations) =
                (region.clone(), in_flight.clone(), overlapped.clone(), generations.clone());
            std::thread::spawn(move || {
                let mut seen = 0usize;
                while Instant::now() < deadline {
                    let v: usize = region
                        .get_or_create("k", || {
                            if in_flight.fetch_add(1, Ordering::SeqCst) != 0 {
                                overlapped.store(true, Ordering::SeqCst);
                            }
                            std::thread::sleep(creation);
                            in_flight.fetch_sub(1, Ordering::SeqCst);
                            generations.fetch_add(1, Ordering::SeqCst) + 1
                        })
                        .unwrap();
                    assert!(v >= 1, "{name}: a value from no generation");
                    seen = seen.max(v);
                    std::thread::sleep(Duration::from_millis(2)); // "use" the value
                }
                seen
            })
        })
        .collect();
    for h in handles {
        join(h);
    }
    let elapsed = start.elapsed();
    let gens = generations.load(Ordering::SeqCst);
    let stats = region.stats();
    assert!(!overlapped.load(Ordering::SeqCst), "{name}: two creators ran at once for one key");
    assert_eq!(stats.creations as usize, gens, "{name}: {stats:?}");
    assert!(gens >= 2, "{name}: the run should span several expiry periods (got {gens} generations)");
    let max_gens = (elapsed.as_secs_f64() / expiry.as_secs_f64()).ceil() as usize + 1;
    assert!(gens <= max_gens, "{name}: {gens} generations in {elapsed:?} with expiry {expiry:?} (max {max_gens})");
    assert!(
        (stats.lock_waits as usize) < gens + threads, // at most generations + threads - 1
        "{name}: {} waits for {gens} generations and {threads} threads",
        stats.lock_waits
    );
    assert_eq!(region.lock_entries(), 0, "{name}: lock bookkeeping left behind");
}

#[test]
fn stress_never_two_creators_and_bounded_waits() {
    for (name, backend) in backends() {
        stress(name, backend, 8, Duration::from_millis(50), Duration::from_millis(15), Duration::from_millis(500));
    }
}

#[test]
fn stress_creation_slower_than_expiry() {
    // Like the original's run where creation (2.5 s) outlasts expiry (2 s).
    stress(
        "memory",
        Arc::new(MemoryBackend::new()),
        6,
        Duration::from_millis(40),
        Duration::from_millis(50),
        Duration::from_millis(500),
    );
}

#[test]
fn missing_key_32_threads_one_creation() {
    for (name, backend) in backends() {
        let region = Region::builder("barrier").backend_arc(backend).build();
        let barrier = Arc::new(Barrier::new(32));
        let calls = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..32)
            .map(|_| {
                let (region, barrier, calls) = (region.clone(), barrier.clone(), calls.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    region
                        .get_or_create("k", || {
                            calls.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(30));
                            "created once".to_string()
                        })
                        .unwrap()
                })
            })
            .collect();
        for h in handles {
            assert_eq!(join(h), "created once", "{name}");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{name}: creator ran more than once");
        let stats = region.stats();
        assert_eq!(stats.creations, 1, "{name}");
        assert_eq!(region.lock_entries(), 0, "{name}");
    }
}

#[test]
fn value_is_read_again_after_acquiring_the_lock() {
    // The first read finds nothing; before the caller takes the (free) lock
    // another caller's value lands. The caller must read again under the lock
    // and return that value instead of creating.
    let clock = MockClock::new();
    let proxy = Proxy::new(MemoryBackend::new());
    let region = Region::builder("reread").backend_arc(proxy.clone()).clock(clock.clone()).build();
    let now = clock.now_nanos();
    proxy.on_next_miss(move |key, inner| inner.set(key, object("landed".to_string(), now), None).unwrap());
    let v: String = region.get_or_create("k", || panic!("must not create: the value landed")).unwrap();
    assert_eq!(v, "landed");
    assert_eq!(proxy.reads("k"), 2, "one read before the lock, one after");
    let stats = region.stats();
    assert_eq!((stats.creations, stats.misses, stats.hits), (0, 0, 1), "{stats:?}");
    assert_eq!(region.lock_entries(), 0);
}

#[test]
fn waiter_on_missing_key_gets_the_creators_value() {
    let region = Region::builder("wait").backend(MemoryBackend::new()).build();
    let (inside, outside) = gate();
    let r = region.clone();
    let creator = std::thread::spawn(move || {
        r.get_or_create("k", || {
            inside.enter_and_wait();
            7u32
        })
        .unwrap()
    });
    outside.wait_entered();
    assert!(region.is_locked("k"));
    let r = region.clone();
    let waiter = std::thread::spawn(move || r.get_or_create("k", || 99u32).unwrap());
    wait_until("the second caller waits on the lock", || region.stats().lock_waits == 1);
    assert!(!waiter.is_finished(), "a caller of a missing, locked key must wait");
    outside.open();
    assert_eq!(join(creator), 7);
    assert_eq!(join(waiter), 7, "the waiter must get the creator's value, not create its own");
    assert_eq!(region.stats().creations, 1);
    assert!(!region.is_locked("k"));
    assert_eq!(region.lock_entries(), 0);
}

#[test]
fn expired_key_locked_by_another_returns_stale_at_once() {
    let clock = MockClock::new();
    let region = Region::builder("stale")
        .backend(MemoryBackend::new())
        .expiration(Duration::from_secs(10))
        .clock(clock.clone())
        .build();
    assert_eq!(region.get_or_create("k", || "old".to_string()).unwrap(), "old");
    clock.advance(Duration::from_secs(11));

    let (inside, outside) = gate();
    let r = region.clone();
    let regenerating = std::thread::spawn(move || {
        r.get_or_create("k", || {
            inside.enter_and_wait();
            "new".to_string()
        })
        .unwrap()
    });
    outside.wait_entered();
    assert!(region.is_locked("k"), "the regenerating caller holds the key's lock");
    // Several callers while the creator is held inside: all stale, none waits.
    for _ in 0..5 {
        let v: String = region.get_or_create("k", || panic!("must not regenerate twice")).unwrap();
        assert_eq!(v, "old");
    }
    let before = region.stats();
    assert_eq!(before.stale_served, 5, "{before:?}");
    assert_eq!(before.lock_waits, 0, "{before:?}");
    assert!(!regenerating.is_finished());
    outside.open();
    assert_eq!(join(regenerating), "new");
    assert_eq!(region.get_or_create("k", || "newer".to_string()).unwrap(), "new");
    assert_eq!(region.stats().creations, 2);
    assert_eq!(region.lock_entries(), 0);
}

#[test]
fn expired_path_reads_the_value_once() {
    let clock = MockClock::new();
    let proxy = Proxy::new(MemoryBackend::new());
    let region = Region::builder("once")
        .backend_arc(proxy.clone())
        .expiration(Duration::from_secs(1))
        .clock(clock.clone())
        .build();
    region.set("k", 1u8).unwrap();
    clock.advance(Duration::from_secs(2));
    let before = proxy.reads("k");
    assert_eq!(region.get_or_create("k", || 2u8).unwrap(), 2);
    assert_eq!(proxy.reads("k") - before, 1, "the expired value must not be read a second time under the lock");
}

#[test]
fn never_expiring_region_creates_once_across_threads_and_keys() {
    let region = Region::builder("keys").backend(MemoryBackend::new()).expiration(Expiration::Never).build();
    let calls = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let (region, calls) = (region.clone(), calls.clone());
            std::thread::spawn(move || {
                for i in 0..500 {
                    let key = format!("k{}", (i * 7 + t) % 250);
                    let v: String = region
                        .get_or_create(&key, || {
                            calls.fetch_add(1, Ordering::SeqCst);
                            key.clone()
                        })
                        .unwrap();
                    assert_eq!(v, key);
                }
            })
        })
        .collect();
    for h in handles {
        join(h);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 250, "each of 250 keys created exactly once");
    assert_eq!(region.lock_entries(), 0, "lock bookkeeping must not grow with the number of keys");
}

#[test]
fn region_is_clone_send_sync() {
    fn check<T: Clone + Send + Sync + 'static>() {}
    check::<Region>();
}

/// A region whose key `k` holds 1, expired, and a caller regenerating it
/// (to 2) held inside its creator until `outside` opens.
fn regenerating(name: &str, backend: Arc<dyn Backend>) -> (Region, Arc<MockClock>, support::Outside, JoinHandle<u32>) {
    let clock = MockClock::new();
    let region =
        Region::builder(name).backend_arc(backend).expiration(Duration::from_secs(1)).clock(clock.clone()).build();
    region.set("k", 1u32).unwrap();
    clock.advance(Duration::from_secs(2));
    let (inside, outside) = gate();
    let r = region.clone();
    let creator = std::thread::spawn(move || {
        r.get_or_create("k", || {
            inside.enter_and_wait();
            2u32
        })
        .unwrap()
    });
    outside.wait_entered();
    (region, clock, outside, creator)
}

/// While one caller regenerates an expired value, the other callers of the
/// process get the stale value it read, without reading the backend again
/// (on a remote backend each read is a round trip).
#[test]
fn callers_during_a_regeneration_get_the_stale_value_without_reading() {
    let proxy = Proxy::new(MemoryBackend::new());
    let (region, _clock, outside, creator) = regenerating("board", proxy.clone());
    assert_eq!(proxy.reads("k"), 1, "the creator's own read");
    let others: Vec<_> = (0..8)
        .map(|_| {
            let r = region.clone();
            std::thread::spawn(move || r.get_or_create("k", || 99u32).unwrap())
        })
        .collect();
    for o in others {
        assert_eq!(join(o), 1, "the stale value while the creator runs");
    }
    assert_eq!(proxy.reads("k"), 1, "the other callers did not read the backend");
    outside.open();
    assert_eq!(join(creator), 2);
    let stats = region.stats();
    assert_eq!((stats.stale_served, stats.creations), (8, 1), "{stats:?}");
    // Released: the board is gone, the next call reads the new value.
    let before = proxy.reads("k");
    assert_eq!(region.get_or_create("k", || 99u32).unwrap(), 2);
    assert_eq!(proxy.reads("k"), before + 1);
}

/// The board serves async callers as well: while an async creator
/// regenerates, the other callers get the stale value without a read (a
/// backend of bytes that may block: its calls run on tokio's blocking pool,
/// hence the `tokio` feature).
#[cfg(feature = "tokio")]
#[test]
fn async_callers_during_a_regeneration_get_the_stale_value_without_reading() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let clock = MockClock::new();
        let proxy = Proxy::new(support::ByteBackend::new());
        let region = Region::builder("board-async")
            .backend_arc(proxy.clone())
            .expiration(Duration::from_secs(1))
            .clock(clock.clone())
            .build();
        region.set("k", 1u32).unwrap();
        clock.advance(Duration::from_secs(2));
        let (entered, creating) = tokio::sync::oneshot::channel();
        let release = Arc::new(tokio::sync::Notify::new());
        let (r, go) = (region.clone(), release.clone());
        let creator = tokio::spawn(async move {
            r.get_or_create_async("k", move || async move {
                entered.send(()).unwrap();
                go.notified().await;
                2u32
            })
            .await
            .unwrap()
        });
        tokio::time::timeout(Duration::from_secs(60), creating).await.expect("hang guard").unwrap();
        assert_eq!(proxy.reads("k"), 1, "the creator's own read");
        for _ in 0..8 {
            assert_eq!(region.get_or_create_async("k", || async { 99u32 }).await.unwrap(), 1);
        }
        assert_eq!(proxy.reads("k"), 1, "the other callers did not read the backend");
        release.notify_one();
        assert_eq!(creator.await.unwrap(), 2);
        let stats = region.stats();
        assert_eq!((stats.stale_served, stats.creations), (8, 1), "{stats:?}");
    });
}

/// A `delete` or `set` of the key during a regeneration takes the stale
/// value off the board: the next caller does not get the deleted value.
#[test]
fn a_delete_during_a_regeneration_is_not_undone_by_the_board() {
    for write in ["delete", "set"] {
        let (region, _clock, outside, creator) = regenerating("board-delete", Proxy::new(MemoryBackend::new()));
        assert_eq!(region.get_or_create("k", || 99u32).unwrap(), 1, "{write}: stale from the board");
        match write {
            "delete" => {
                region.delete("k").unwrap();
                // No value now: this caller waits for the creator's.
                let r = region.clone();
                let waiter = std::thread::spawn(move || r.get_or_create("k", || 99u32).unwrap());
                wait_until("the caller waits on the lock", || region.stats().lock_waits == 1);
                outside.open();
                assert_eq!(join(waiter), 2, "delete: the creator's value, not the deleted one");
            }
            _ => {
                region.set("k", 3u32).unwrap();
                assert_eq!(region.get_or_create("k", || 99u32).unwrap(), 3, "set: the value just set");
                outside.open();
            }
        }
        assert_eq!(join(creator), 2);
    }
}

/// A hard invalidation while a value is regenerated: the board's value is a
/// miss like any other value created before it.
#[test]
fn the_board_respects_a_hard_invalidation() {
    let (region, clock, outside, creator) = regenerating("board-invalidate", Proxy::new(MemoryBackend::new()));
    clock.advance(Duration::from_millis(10));
    region.invalidate(dogpile::Invalidation::Hard);
    let r = region.clone();
    let waiter = std::thread::spawn(move || r.get_or_create("k", || 99u32).unwrap());
    wait_until("the caller waits on the lock", || region.stats().lock_waits == 1);
    outside.open();
    assert_eq!(join(creator), 2);
    // The creator started before the invalidation, so its value is
    // invalidated too: the waiter creates.
    assert_eq!(join(waiter), 99, "not the invalidated stale value");
}
