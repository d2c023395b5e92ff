//! Regression tests for defects of the lock engine, one per defect, named
//! after what broke.
//!
//! Timeouts here are hang guards only; the assertions are on counts and
//! outcomes.

use dogpile::backends::MemoryBackend;
use dogpile::{AsyncBackend, Backend, BackendError, BoxFuture, Error, Region, Value, ValueKind};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

// ----- a backend whose multi-read returns too few slots -----

/// A memory backend whose `get_multi` drops the last slot, through its sync
/// interface and (when `with_async`) its async one.
#[derive(Debug)]
struct DropsLastSlot {
    inner: MemoryBackend,
    with_async: bool,
}

impl DropsLastSlot {
    fn region(with_async: bool) -> Region {
        Region::builder("short-multi").backend(DropsLastSlot { inner: MemoryBackend::new(), with_async }).build()
    }
}

impl Backend for DropsLastSlot {
    fn name(&self) -> &'static str {
        "drops-last-slot"
    }
    fn value_kind(&self) -> ValueKind {
        self.inner.value_kind()
    }
    fn get(&self, key: &str) -> Result<Option<Value>, BackendError> {
        self.inner.get(key)
    }
    fn set(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<(), BackendError> {
        self.inner.set(key, value, ttl)
    }
    fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.inner.delete(key)
    }
    fn get_multi(&self, keys: &[&str]) -> Result<Vec<Option<Value>>, BackendError> {
        let mut slots = self.inner.get_multi(keys)?;
        slots.pop();
        Ok(slots)
    }
    fn is_non_blocking(&self) -> bool {
        true
    }
    fn as_async(&self) -> Option<&dyn AsyncBackend> {
        self.with_async.then_some(self as &dyn AsyncBackend)
    }
}

impl AsyncBackend for DropsLastSlot {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Value>, BackendError>> {
        Box::pin(async move { self.inner.get(key) })
    }
    fn set<'a>(&'a self, key: &'a str, value: Value, ttl: Option<Duration>) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move { self.inner.set(key, value, ttl) })
    }
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move { self.inner.delete(key) })
    }
    fn get_multi<'a>(&'a self, keys: &'a [&'a str]) -> BoxFuture<'a, Result<Vec<Option<Value>>, BackendError>> {
        Box::pin(async move { Backend::get_multi(self, keys) })
    }
}

/// `r` is the backend error naming the short backend and the counts, and
/// it was counted; no key was left locked.
fn assert_short_read<T: std::fmt::Debug>(region: &Region, r: Result<T, Error>, errors_so_far: u64) {
    match r {
        Err(Error::Backend(e)) => {
            assert_eq!(e.backend(), "drops-last-slot");
            assert!(e.to_string().contains("returned 2 values for 3 keys"), "{e}");
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
    assert_eq!(region.stats().backend_errors, errors_so_far, "counted as a backend error");
    assert_eq!(region.lock_entries(), 0);
}

#[test]
fn get_or_create_multi_with_a_backend_returning_too_few_slots_is_a_backend_error() {
    let region = DropsLastSlot::region(false);
    let calls = AtomicUsize::new(0);
    let r = region.get_or_create_multi(&["a", "b", "c"], |missing| {
        calls.fetch_add(1, SeqCst);
        missing.iter().map(|k| k.len() as u32).collect()
    });
    assert_short_read(&region, r, 1);
    assert_eq!(calls.load(SeqCst), 0, "nothing is created from a broken read");
}

#[test]
fn get_multi_with_a_backend_returning_too_few_slots_is_a_backend_error() {
    let region = DropsLastSlot::region(false);
    region.set_multi([("a", 1u32), ("b", 2), ("c", 3)]).unwrap();
    assert_short_read(&region, region.get_multi::<u32, _>(&["a", "b", "c"]), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn async_multi_calls_with_a_backend_returning_too_few_slots_are_backend_errors() {
    for with_async in [false, true] {
        let region = DropsLastSlot::region(with_async);
        let r = region
            .get_or_create_multi_async(&["a", "b", "c"], |missing| async move {
                panic!("nothing is created from a broken read: {missing:?}")
            })
            .await;
        assert_short_read::<Vec<u32>>(&region, r, 1);
        region.set_multi_async([("a", 1u32), ("b", 2), ("c", 3)]).await.unwrap();
        assert_short_read(&region, region.get_multi_async::<u32, _>(&["a", "b", "c"]).await, 2);
    }
}
