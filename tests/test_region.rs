//! Region behaviour under a mock clock: invalidation, per-call options,
//! metadata, early refresh, background regeneration and the key mangler.

mod support;

use dogpile::backends::MemoryBackend;
use dogpile::{CreateOptions, Expiration, Invalidation, MockClock, Region};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use support::{Proxy, RecordingRunner, RefusingRunner, gate, join, wait_until};

const SEC: Duration = Duration::from_secs(1);

fn region(clock: &Arc<MockClock>, expiration: impl Into<Expiration>) -> Region {
    Region::builder("r").backend(MemoryBackend::new()).expiration(expiration).clock(clock.clone()).build()
}

/// A creator returning 1, 2, 3... on successive calls.
fn counter() -> impl Fn() -> u32 + Clone {
    let n = Arc::new(AtomicU32::new(0));
    move || n.fetch_add(1, Ordering::SeqCst) + 1
}

#[test]
fn hard_invalidation_sequence_1_2_2_3_3() {
    let clock = MockClock::new();
    let region = region(&clock, Duration::from_secs(3600));
    let next = counter();
    let mut seen = vec![region.get_or_create("k", &next).unwrap()];
    clock.advance(Duration::from_millis(100));
    region.invalidate(Invalidation::Hard);
    assert_eq!(region.get::<u32>("k").unwrap(), None, "hard-invalidated values are misses");
    assert!(region.get_entry::<u32>("k").unwrap().is_none());
    seen.push(region.get_or_create("k", &next).unwrap());
    seen.push(region.get_or_create("k", &next).unwrap());
    clock.advance(Duration::from_millis(100));
    region.invalidate(Invalidation::Hard);
    seen.push(region.get_or_create("k", &next).unwrap());
    seen.push(region.get_or_create("k", &next).unwrap());
    assert_eq!(seen, [1, 2, 2, 3, 3]);
    assert_eq!(region.stats().stale_served, 0, "hard invalidation never serves stale");
}

#[test]
fn invalidation_reaches_clones_and_the_last_call_decides() {
    let clock = MockClock::new();
    let region = region(&clock, Duration::from_secs(3600));
    let clone = region.clone();
    region.set("k", 1u32).unwrap();
    clock.advance(SEC);
    clone.invalidate(Invalidation::Soft);
    region.invalidate(Invalidation::Hard);
    assert!(region.get_entry::<u32>("k").unwrap().is_none(), "hard was last");
    region.invalidate(Invalidation::Soft);
    let entry = region.get_entry::<u32>("k").unwrap().expect("soft keeps the value as stale");
    assert!(entry.expired);
}

#[test]
fn soft_invalidation_regenerates_once_then_fresh() {
    let clock = MockClock::new();
    let region = region(&clock, Duration::from_secs(3600));
    let next = counter();
    assert_eq!(region.get_or_create("k", &next).unwrap(), 1);
    clock.advance(SEC);
    region.invalidate(Invalidation::Soft);
    assert_eq!(region.get::<u32>("k").unwrap(), None, "soft-invalidated values are not fresh");
    assert!(region.get_entry::<u32>("k").unwrap().unwrap().expired);
    assert_eq!(region.get_or_create("k", &next).unwrap(), 2, "the lock winner regenerates");
    assert_eq!(region.get_or_create("k", &next).unwrap(), 2, "a value created after invalidation is fresh");
    assert_eq!(region.stats().creations, 2);
}

#[test]
fn soft_invalidation_serves_stale_while_one_regenerates() {
    let clock = MockClock::new();
    let region = region(&clock, Expiration::Never);
    region.set("k", "old".to_string()).unwrap();
    clock.advance(SEC);
    region.invalidate(Invalidation::Soft);
    let (inside, outside) = gate();
    let r = region.clone();
    let regen = std::thread::spawn(move || {
        r.get_or_create("k", || {
            inside.enter_and_wait();
            "new".to_string()
        })
        .unwrap()
    });
    outside.wait_entered();
    assert!(region.is_locked("k"));
    let v: String = region.get_or_create("k", || panic!("only one caller regenerates")).unwrap();
    assert_eq!(v, "old");
    assert_eq!(region.stats().stale_served, 1);
    outside.open();
    assert_eq!(join(regen), "new");
    assert_eq!(region.get::<String>("k").unwrap().as_deref(), Some("new"));
}

#[test]
fn should_cache_stores_only_accepted_values() {
    let clock = MockClock::new();
    let region = region(&clock, Expiration::Never);
    let even = CreateOptions::new().should_cache(|v: &u32| v.is_multiple_of(2));
    assert_eq!(region.get_or_create_with("k", &even, || 1).unwrap(), 1, "a rejected value is still returned");
    assert_eq!(region.get::<u32>("k").unwrap(), None, "a rejected value is not stored");
    assert_eq!(region.get_or_create_with("k", &even, || 2).unwrap(), 2);
    assert_eq!(region.get::<u32>("k").unwrap(), Some(2));
    assert_eq!(region.get_or_create_with("k", &even, || 4).unwrap(), 2, "cached");
    let r: Result<u32, dogpile::TryCreateError<String>> = region.try_get_or_create_with("t", &even, || Ok(3));
    assert_eq!(r.unwrap(), 3);
    assert_eq!(region.get::<u32>("t").unwrap(), None);
    assert_eq!(region.stats().creations, 3);
}

#[test]
fn per_call_expiration_overrides_the_region() {
    let clock = MockClock::new();
    let region = region(&clock, Duration::from_secs(10));
    let short = CreateOptions::new().expiration(SEC);
    let long = CreateOptions::new().expiration(Duration::from_secs(100));
    let next = counter();
    assert_eq!(region.get_or_create_with("k", &short, &next).unwrap(), 1);
    clock.advance(Duration::from_secs(2));
    assert_eq!(region.get_or_create("k", &next).unwrap(), 1, "2 s old is fresh for the region's 10 s");
    assert_eq!(region.get_or_create_with("k", &short, &next).unwrap(), 2, "2 s old is expired for 1 s");
    clock.advance(Duration::from_secs(20));
    assert_eq!(region.get_or_create_with("k", &long, &next).unwrap(), 2, "20 s old is fresh for 100 s");
    assert_eq!(region.get_or_create("k", &next).unwrap(), 3, "20 s old is expired for the region's 10 s");
}

#[test]
fn never_expire_returns_the_old_value_without_regenerating() {
    let clock = MockClock::new();
    let region = region(&clock, SEC);
    let never = CreateOptions::new().expiration(Expiration::Never);
    assert_eq!(region.get_or_create("k", || 1u32).unwrap(), 1);
    clock.advance(Duration::from_secs(86_400 * 365));
    assert_eq!(region.get_or_create_with("k", &never, || 2u32).unwrap(), 1);
    let stats = region.stats();
    assert_eq!((stats.creations, stats.stale_served, stats.hits), (1, 0, 1), "{stats:?}");
    // The region's own Never.
    let forever = self::region(&clock, Expiration::Never);
    forever.set("k", 5u32).unwrap();
    clock.advance(Duration::from_secs(86_400 * 10_000));
    assert_eq!(forever.get_or_create("k", || 6u32).unwrap(), 5);
}

#[test]
fn zero_expiration_always_regenerates() {
    let clock = MockClock::new();
    let region = region(&clock, Duration::ZERO);
    let next = counter();
    let seen: Vec<u32> = (0..5).map(|_| region.get_or_create("k", &next).unwrap()).collect();
    assert_eq!(seen, [1, 2, 3, 4, 5]);
    let per_call = self::region(&clock, Expiration::Never);
    let zero = CreateOptions::new().expiration(Duration::ZERO);
    let next = counter();
    let seen: Vec<u32> = (0..3).map(|_| per_call.get_or_create_with("k", &zero, &next).unwrap()).collect();
    assert_eq!(seen, [1, 2, 3]);
    assert_eq!(per_call.get_or_create("k", &next).unwrap(), 3, "without the override it never expires");
}

#[test]
fn metadata_created_age_expired_under_mock_clock() {
    let clock = MockClock::new();
    let t0 = clock.now();
    let region = region(&clock, Duration::from_secs(10));
    // The creation time is when the creator started (an invalidation while
    // it runs must catch the value it stores).
    let c = clock.clone();
    region
        .get_or_create("k", move || {
            c.advance(Duration::from_secs(2));
            5u32
        })
        .unwrap();
    clock.advance(Duration::from_secs(3));
    let e = region.get_entry::<u32>("k").unwrap().unwrap();
    assert_eq!((e.value, e.created, e.age, e.expired), (5, t0, Duration::from_secs(5), false));
    clock.advance(Duration::from_secs(5));
    let e = region.get_entry::<u32>("k").unwrap().unwrap();
    assert_eq!((e.age, e.expired), (Duration::from_secs(10), false), "expired means strictly older");
    clock.advance(Duration::from_nanos(1));
    let e = region.get_entry::<u32>("k").unwrap().unwrap();
    assert!(e.expired);
    assert_eq!(region.get::<u32>("k").unwrap(), None, "get returns fresh values only");
    assert!(region.get_entry::<u32>("missing").unwrap().is_none());
    region.set("s", 1u8).unwrap();
    assert_eq!(region.get_entry::<u8>("s").unwrap().unwrap().created, clock.now());
}

#[test]
fn early_refresh_regenerates_a_fresh_value_whose_creation_took_long() {
    let clock = MockClock::new();
    let region = Region::builder("early")
        .backend(MemoryBackend::new())
        .expiration(Duration::from_secs(100))
        .clock(clock.clone())
        .early_refresh(1e12)
        .build();
    let slow = |n: u32| {
        let c = clock.clone();
        move || {
            c.advance(SEC); // the creation "took" a second
            n
        }
    };
    assert_eq!(region.get_or_create("k", slow(1)).unwrap(), 1);
    assert_eq!(region.get::<u32>("k").unwrap(), Some(1), "plain reads never refresh early");
    assert_eq!(region.get_or_create("k", slow(2)).unwrap(), 2, "refreshed long before expiry");
    // A creator that took no time is never refreshed early.
    assert_eq!(region.get_or_create("quick", || 1u32).unwrap(), 1);
    clock.advance(Duration::from_secs(99));
    for _ in 0..100 {
        assert_eq!(region.get_or_create("quick", || 2u32).unwrap(), 1);
    }
}

/// The share of early refreshes of a value whose XFetch odds are one half:
/// created in 10 s, looked at 6.93 s (10 s x ln 2, beta 1) before it
/// expires, `TRIALS` times. Each call must draw once: a second draw on the
/// way through the region would square the odds (one quarter).
fn early_refresh_share(async_calls: bool) -> f64 {
    const TRIALS: u32 = 2000;
    let clock = MockClock::new();
    let region = Region::builder("early-odds")
        .backend(MemoryBackend::new())
        .expiration(Duration::from_secs(100))
        .clock(clock.clone())
        .early_refresh(1.0)
        .build();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut refreshed = 0;
    for _ in 0..TRIALS {
        region.delete("k").unwrap();
        let c = clock.clone();
        region
            .get_or_create("k", move || {
                c.advance(Duration::from_secs(10));
                1u32
            })
            .unwrap();
        // Created at t, now t + 10 s; expires at t + 100 s. Left: 6.93 s.
        clock.advance(Duration::from_secs(90) - Duration::from_secs_f64(10.0 * std::f64::consts::LN_2));
        let v = if async_calls {
            runtime.block_on(region.get_or_create_async("k", || async { 2u32 })).unwrap()
        } else {
            region.get_or_create("k", || 2u32).unwrap()
        };
        refreshed += u32::from(v == 2);
    }
    f64::from(refreshed) / f64::from(TRIALS)
}

#[test]
fn early_refresh_draws_once_per_call_so_its_odds_are_xfetchs() {
    for async_calls in [false, true] {
        let share = early_refresh_share(async_calls);
        assert!(
            (0.4..0.6).contains(&share),
            "async {async_calls}: {share} of the calls refreshed early, expected about one half"
        );
    }
}

#[test]
fn without_early_refresh_a_fresh_value_is_never_regenerated() {
    let clock = MockClock::new();
    let region = region(&clock, Duration::from_secs(100));
    let c = clock.clone();
    region
        .get_or_create("k", move || {
            c.advance(Duration::from_secs(50));
            1u32
        })
        .unwrap();
    // Aged from the creator's start: 50 s of creation + 49 s = 99 s.
    clock.advance(Duration::from_secs(49));
    for _ in 0..1000 {
        assert_eq!(region.get_or_create("k", || 2u32).unwrap(), 1);
    }
    assert_eq!(region.stats().creations, 1);
}

#[test]
fn background_regeneration_serves_stale_to_the_winner_too() {
    let clock = MockClock::new();
    let runner = RecordingRunner::default();
    let region = Region::builder("bg")
        .backend(MemoryBackend::new())
        .expiration(Duration::from_secs(10))
        .clock(clock.clone())
        .runner(runner.clone())
        .build();
    let opts = CreateOptions::new();
    assert_eq!(region.get_or_create_background("k", &opts, || 1u32).unwrap(), 1, "missing: created inline");
    assert_eq!(runner.pending(), 0);
    clock.advance(Duration::from_secs(11));
    assert_eq!(region.get_or_create_background("k", &opts, || 2u32).unwrap(), 1, "the winner gets the stale value");
    assert_eq!(runner.pending(), 1);
    assert!(region.is_locked("k"), "the job holds the key's lock");
    assert_eq!(region.get_or_create_background("k", &opts, || -> u32 { panic!("second job") }).unwrap(), 1);
    assert_eq!(region.get_or_create("k", || -> u32 { panic!("locked: stale") }).unwrap(), 1);
    assert_eq!(runner.pending(), 1, "exactly one job");
    for job in runner.take() {
        job();
    }
    assert!(!region.is_locked("k"), "the job released the lock");
    assert_eq!(region.lock_entries(), 0);
    assert_eq!(region.get::<u32>("k").unwrap(), Some(2), "the job stored the new value");
    assert_eq!(region.get_or_create_background("k", &opts, || 3u32).unwrap(), 2);
    let stats = region.stats();
    assert_eq!((stats.creations, stats.stale_served), (2, 3), "{stats:?}");
}

#[test]
fn background_job_dropped_or_refused_releases_the_lock() {
    let clock = MockClock::new();
    let runner = RecordingRunner::default();
    let region = Region::builder("bg")
        .backend(MemoryBackend::new())
        .expiration(SEC)
        .clock(clock.clone())
        .runner(runner.clone())
        .build();
    let opts = CreateOptions::new();
    region.set("k", 1u32).unwrap();
    clock.advance(Duration::from_secs(2));
    assert_eq!(region.get_or_create_background("k", &opts, || 2u32).unwrap(), 1);
    assert!(region.is_locked("k"));
    drop(runner.take());
    assert!(!region.is_locked("k"), "a job dropped unrun releases the lock");
    assert_eq!(region.lock_entries(), 0);

    let refusing = Region::builder("bg2")
        .backend(MemoryBackend::new())
        .expiration(SEC)
        .clock(clock.clone())
        .runner(RefusingRunner)
        .build();
    refusing.set("k", 1u32).unwrap();
    clock.advance(Duration::from_secs(2));
    let v = refusing.get_or_create_background("k", &opts, || 2u32);
    assert_eq!(v.unwrap(), 1, "a refused job still serves the stale value");
    assert!(!refusing.is_locked("k"));
    assert_eq!(refusing.lock_entries(), 0);
}

#[test]
fn background_job_that_panics_releases_the_lock_and_keeps_the_stale_value() {
    let clock = MockClock::new();
    let runner = RecordingRunner::default();
    let region = Region::builder("bg")
        .backend(MemoryBackend::new())
        .expiration(SEC)
        .clock(clock.clone())
        .runner(runner.clone())
        .build();
    region.set("k", 1u32).unwrap();
    clock.advance(Duration::from_secs(2));
    let v = region.get_or_create_background("k", &CreateOptions::new(), || -> u32 { panic!("job fails") });
    assert_eq!(v.unwrap(), 1);
    let job = runner.take().pop().unwrap();
    assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err());
    assert!(!region.is_locked("k"));
    assert_eq!(region.stats().creation_errors, 1);
    assert_eq!(region.get_entry::<u32>("k").unwrap().unwrap().value, 1);
}

#[test]
fn key_mangler_applies_to_storage_and_to_the_lock() {
    let proxy = Proxy::new(MemoryBackend::new());
    let region =
        Region::builder("m").backend_arc(proxy.clone()).key_mangler(|k| format!("ns:{}", k.to_lowercase())).build();
    region.set("Set", 1u32).unwrap();
    assert!(proxy.inner().get("ns:set").unwrap().is_some());
    assert!(proxy.inner().get("Set").unwrap().is_none());
    assert_eq!(region.get::<u32>("SET").unwrap(), Some(1), "same mangled key");
    region.delete("set").unwrap();
    assert!(proxy.inner().get("ns:set").unwrap().is_none());

    let (inside, outside) = gate();
    let r = region.clone();
    let creator = std::thread::spawn(move || {
        r.get_or_create("Key", || {
            inside.enter_and_wait();
            7u32
        })
        .unwrap()
    });
    outside.wait_entered();
    assert!(region.is_locked("Key"), "is_locked takes the caller's key");
    assert!(region.is_locked("key"), "keys mangled alike share one lock");
    assert!(!region.is_locked("ns:key"), "the mangler applies to is_locked too");
    let r = region.clone();
    let waiter = std::thread::spawn(move || r.get_or_create("KEY", || 8u32).unwrap());
    wait_until("the waiter waits on the shared lock", || region.stats().lock_waits == 1);
    outside.open();
    assert_eq!(join(creator), 7);
    assert_eq!(join(waiter), 7);
    assert!(proxy.keys_seen().iter().all(|k| k.starts_with("ns:")), "{:?}", proxy.keys_seen());
    assert!(proxy.keys_seen().contains(&"ns:key".to_string()));

    let v: Vec<u32> = region
        .get_or_create_multi(&["B", "key", "a"], |missing| {
            assert_eq!(missing, ["B", "a"], "the creator gets the caller's keys");
            vec![20, 10]
        })
        .unwrap();
    assert_eq!(v, [20, 7, 10]);
    assert!(proxy.inner().get("ns:b").unwrap().is_some());
    assert!(proxy.keys_seen().iter().all(|k| k.starts_with("ns:")));
}
