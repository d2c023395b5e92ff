//! Failures: creators that panic or return errors, stale-if-error, bytes
//! that do not decode, values of another type, failing backends.

mod support;

use dogpile::backend::{Backend, BackendError, BlockingBackend, Value, ValueKind};
use dogpile::backends::{BoundedMemoryBackend, MemoryBackend};
use dogpile::{Codec, Error, FORMAT_VERSION, MockClock, Region, TryCreateError};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::{ByteBackend, gate, join, wait_until};

/// Starts a caller of `key` whose creator waits at a gate and then fails
/// (panics or returns `Err`), plus `waiters` callers that queue behind it
/// with a creator counting its calls and returning 42. Returns the failing
/// caller's outcome (true if it saw its failure), the waiters' values and the
/// count.
fn fail_with_waiters(region: &Region, panics: bool, waiters: usize) -> (bool, Vec<u32>, usize) {
    let (inside, outside) = gate();
    let r = region.clone();
    let failing = std::thread::spawn(move || {
        let creator = || -> Result<u32, String> {
            inside.enter_and_wait();
            if panics { panic!("creator panics") } else { Err("boom".to_string()) }
        };
        match catch_unwind(AssertUnwindSafe(|| r.try_get_or_create("k", creator))) {
            Err(_) => panics,
            Ok(Err(TryCreateError::Creator(e))) => !panics && e == "boom",
            Ok(other) => panic!("unexpected outcome {other:?}"),
        }
    });
    outside.wait_entered();
    let calls = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..waiters)
        .map(|_| {
            let (r, calls) = (region.clone(), calls.clone());
            std::thread::spawn(move || {
                r.get_or_create("k", || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    42u32
                })
                .unwrap()
            })
        })
        .collect();
    wait_until("every waiter waits", || region.stats().lock_waits == waiters as u64);
    outside.open();
    let saw = join(failing);
    let values = handles.into_iter().map(join).collect();
    (saw, values, calls.load(Ordering::SeqCst))
}

#[test]
fn panicking_creator_caller_sees_it_waiters_finish_next_call_works() {
    let region = Region::builder("panic").backend(MemoryBackend::new()).build();
    let (saw, values, calls) = fail_with_waiters(&region, true, 4);
    assert!(saw, "the panic reaches the creator's own caller");
    assert_eq!(values, [42; 4], "every waiter finishes with a value");
    assert_eq!(calls, 1, "one waiter creates, the others get its value");
    assert_eq!(region.lock_entries(), 0);
    assert!(!region.is_locked("k"));
    assert_eq!(region.get_or_create("k", || 7u32).unwrap(), 42);
    let stats = region.stats();
    assert_eq!((stats.creations, stats.creation_errors), (1, 1), "{stats:?}");
}

#[test]
fn erroring_creator_stores_nothing_and_waiters_go_on() {
    let region = Region::builder("err").backend(MemoryBackend::new()).build();
    let (saw, values, calls) = fail_with_waiters(&region, false, 4);
    assert!(saw, "the creator's error comes back as TryCreateError::Creator");
    assert_eq!(values, [42; 4]);
    assert_eq!(calls, 1);
    assert_eq!(region.lock_entries(), 0);
    assert_eq!(region.stats().creation_errors, 1);
}

#[test]
fn erroring_creator_alone_stores_nothing() {
    let region = Region::builder("err").backend(MemoryBackend::new()).build();
    let r: Result<u32, _> = region.try_get_or_create("k", || Err::<u32, _>("boom"));
    assert!(matches!(r, Err(TryCreateError::Creator("boom"))));
    assert_eq!(region.get::<u32>("k").unwrap(), None, "nothing stored");
    assert!(!region.is_locked("k"));
    let ok: Result<u32, TryCreateError<&str>> = region.try_get_or_create("k", || Ok(3));
    assert_eq!(ok.unwrap(), 3);
    assert_eq!(region.get::<u32>("k").unwrap(), Some(3));
}

#[test]
fn panicking_regenerator_leaves_the_stale_value_for_the_next_caller() {
    let clock = MockClock::new();
    let region = Region::builder("regen")
        .backend(MemoryBackend::new())
        .expiration(Duration::from_secs(1))
        .clock(clock.clone())
        .build();
    region.set("k", 1u32).unwrap();
    clock.advance(Duration::from_secs(2));
    let r = region.clone();
    assert!(catch_unwind(AssertUnwindSafe(move || r.get_or_create("k", || -> u32 { panic!("regen fails") }))).is_err());
    assert!(!region.is_locked("k"));
    assert_eq!(region.get_entry::<u32>("k").unwrap().unwrap().value, 1, "the stale value is still there");
    assert_eq!(region.get_or_create("k", || 2u32).unwrap(), 2, "the next caller regenerates");
}

#[test]
fn stale_if_error_serves_and_keeps_the_stale_value() {
    let clock = MockClock::new();
    let build = |stale_if_error| {
        Region::builder("sie")
            .backend(MemoryBackend::new())
            .expiration(Duration::from_secs(1))
            .clock(clock.clone())
            .stale_if_error(stale_if_error)
            .build()
    };
    let (on, off) = (build(true), build(false));
    for r in [&on, &off] {
        r.set("k", 1u32).unwrap();
    }
    clock.advance(Duration::from_secs(2));
    let v: Result<u32, TryCreateError<&str>> = on.try_get_or_create("k", || Err("down"));
    assert_eq!(v.unwrap(), 1, "stale served instead of the error");
    let e = on.get_entry::<u32>("k").unwrap().expect("kept stored");
    assert_eq!((e.value, e.expired), (1, true));
    let stats = on.stats();
    assert_eq!((stats.creation_errors, stats.stale_served), (1, 1), "{stats:?}");
    let missing: Result<u32, TryCreateError<&str>> = on.try_get_or_create("absent", || Err("down"));
    assert!(matches!(missing, Err(TryCreateError::Creator("down"))), "nothing stale to serve");

    let v: Result<u32, TryCreateError<&str>> = off.try_get_or_create("k", || Err("down"));
    assert!(matches!(v, Err(TryCreateError::Creator("down"))));
    assert_eq!(off.get_entry::<u32>("k").unwrap().unwrap().value, 1, "an error deletes nothing");
}

/// A valid envelope for `value`, as the region writes it.
fn envelope<T: dogpile::CacheValue>(codec: Codec, value: T) -> Vec<u8> {
    let bytes = ByteBackend::new();
    let region = Region::builder("enc").backend_arc(bytes.clone()).codec(codec).build();
    region.set("x", value).unwrap();
    bytes.raw("x").unwrap()
}

#[test]
fn undecodable_bytes_are_a_counted_miss_never_a_panic() {
    let good = envelope(Codec::Postcard, "hello".to_string());
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("garbage", vec![0xff; 64]),
        ("text", b"not an envelope at all, just some text".to_vec()),
        ("truncated header", good[..10].to_vec()),
        ("truncated payload", good[..good.len() - 2].to_vec()),
    ];
    let mut version = good.clone();
    version[2] = FORMAT_VERSION.wrapping_add(1);
    cases.push(("unknown format version", version));
    let mut codec = good.clone();
    codec[3] = 200;
    cases.push(("unknown codec", codec));
    let mut magic = good.clone();
    magic[0] ^= 0xff;
    cases.push(("bad magic", magic));
    let mut trailing = good.clone();
    trailing.push(0);
    cases.push(("trailing byte", trailing));

    for (what, raw) in cases {
        let bytes = ByteBackend::new();
        let region = Region::builder("garbage").backend_arc(bytes.clone()).build();
        bytes.put_raw("k", raw);
        assert_eq!(region.get::<String>("k").unwrap(), None, "{what}");
        let stats = region.stats();
        assert_eq!((stats.decode_failures, stats.misses), (1, 1), "{what}: counted as a failure and a miss");
        assert!(region.get_entry::<String>("k").unwrap().is_none(), "{what}");
        assert_eq!(region.get_multi::<String, _>(&["k"]).unwrap(), [None], "{what}");
        assert_eq!(region.stats().decode_failures, 3, "{what}");
        let v: String = region.get_or_create("k", || "recreated".to_string()).unwrap();
        assert_eq!(v, "recreated", "{what}: a miss, so the creator runs");
        let failures = region.stats().decode_failures;
        assert!(failures >= 4, "{what}");
        assert_eq!(region.get::<String>("k").unwrap().as_deref(), Some("recreated"), "{what}: overwritten");
        assert_eq!(region.stats().decode_failures, failures, "{what}");
    }
}

#[test]
fn a_value_of_another_type_is_a_counted_miss() {
    for codec in [Codec::Postcard, Codec::Json] {
        let bytes = ByteBackend::new();
        let region = Region::builder("types").backend_arc(bytes.clone()).codec(codec).build();
        region.set("k", "abc".to_string()).unwrap();
        assert_eq!(region.get::<u64>("k").unwrap(), None, "{codec:?}");
        assert_eq!(region.get::<bool>("k").unwrap(), None, "{codec:?}");
        assert_eq!(region.stats().decode_failures, 2, "{codec:?}");
        assert_eq!(region.get::<String>("k").unwrap().as_deref(), Some("abc"), "{codec:?}: the right type still reads");
        assert_eq!(region.get_or_create("k", || 9u64).unwrap(), 9, "{codec:?}");
        assert_eq!(region.get::<u64>("k").unwrap(), Some(9), "{codec:?}");
    }
    let backends: [Arc<dyn Backend>; 2] =
        [Arc::new(MemoryBackend::new()), Arc::new(BoundedMemoryBackend::with_capacity(10))];
    for backend in backends {
        let region = Region::builder("objects").backend_arc(backend).build();
        region.set("k", "abc".to_string()).unwrap();
        assert_eq!(region.get::<u64>("k").unwrap(), None);
        assert_eq!(region.get::<Vec<u8>>("k").unwrap(), None);
        assert_eq!(region.stats().decode_failures, 2);
        assert_eq!(region.get_or_create("k", || 9u64).unwrap(), 9);
        assert_eq!(region.get::<u64>("k").unwrap(), Some(9));
    }
}

/// A backend whose reads or writes fail.
#[derive(Debug)]
struct Failing {
    reads: bool,
    writes: bool,
}

impl Backend for Failing {
    fn name(&self) -> &'static str {
        "failing"
    }
    fn value_kind(&self) -> ValueKind {
        ValueKind::Object
    }
    fn blocking(&self) -> Option<&dyn BlockingBackend> {
        Some(self)
    }
}

impl BlockingBackend for Failing {
    fn get(&self, _: &str) -> Result<Option<Value>, BackendError> {
        if self.reads { Err(BackendError::new("failing", "read refused")) } else { Ok(None) }
    }
    fn set(&self, _: &str, _: Value, _: Option<Duration>) -> Result<(), BackendError> {
        if self.writes { Err(BackendError::new("failing", "write refused")) } else { Ok(()) }
    }
    fn delete(&self, _: &str) -> Result<(), BackendError> {
        Ok(())
    }
}

#[test]
fn backend_failures_are_errors_on_read_and_counted_on_write() {
    let region = Region::builder("down").backend(Failing { reads: true, writes: false }).build();
    let r = region.get_or_create("k", || -> u32 { panic!("not called when the cache cannot be read") });
    assert!(matches!(r, Err(Error::Backend(ref e)) if e.backend() == "failing"), "{r:?}");
    assert_eq!(region.stats().backend_errors, 1);
    assert!(!region.is_locked("k"));

    let region = Region::builder("ro").backend(Failing { reads: false, writes: true }).build();
    assert_eq!(region.get_or_create("k", || 5u32).unwrap(), 5, "a failed store still returns the value");
    assert_eq!(region.stats().backend_errors, 1);
    assert!(region.set("k", 1u32).is_err());
    assert_eq!(region.lock_entries(), 0);
}

/// A creator that asks the cache for its own key on the same thread used to
/// wait for itself forever; it now gets `Error::Reentrant`, and the outer
/// call still completes with its own value.
#[test]
fn creator_asking_for_its_own_key_is_an_error_not_a_deadlock() {
    use dogpile::backends::MemoryBackend;
    let region = dogpile::Region::builder("reentrant").backend(MemoryBackend::new()).build();
    let inner_region = region.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let outer: Result<u32, dogpile::Error> = region.get_or_create("k", || {
            let inner = inner_region.get_or_create::<u32, _>("k", || 2);
            assert!(matches!(inner, Err(dogpile::Error::Reentrant { ref key }) if key == "k"), "{inner:?}");
            1
        });
        tx.send(outer.map_err(|e| e.to_string())).unwrap();
    });
    let outer = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("deadlocked");
    assert_eq!(outer, Ok(1));
}
