//! The conformance suite (tests/conformance) against the in-process
//! backends, a byte backend, and a shared store standing for a remote
//! backend seen from two processes.

mod conformance;
mod support;

use dogpile::backends::{BoundedMemoryBackend, MemoryBackend, NullBackend};
use dogpile::{Backend, BackendError, DistributedLock, KeyLimits, LockToken, Region, Value, ValueKind};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use conformance::Stores;

conformance_suite!(memory, Stores::Values, || Arc::new(MemoryBackend::new()));
conformance_suite!(bounded_memory, Stores::Values, || Arc::new(BoundedMemoryBackend::with_capacity(10_000)));
conformance_suite!(null, Stores::Nothing, || Arc::new(NullBackend));
conformance_suite!(bytes, Stores::Values, support::ByteBackend::new);
conformance_suite!(shared_store, Stores::Values, || SharedStore::handle(&SharedStore::new()));
conformance_suite!(key_limited, Stores::Values, || SharedStore::strict(&SharedStore::new()));

/// A store with a distributed lock, reached through several handles: each
/// handle's region has its own in-process lock, as another process would.
#[derive(Debug, Default)]
struct SharedStore {
    values: Mutex<HashMap<String, Value>>,
    locks: Mutex<HashMap<String, String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SharedStore {
    fn new() -> Arc<Self> {
        Arc::default()
    }

    fn handle(store: &Arc<Self>) -> Arc<dyn Backend> {
        Arc::new(Handle(store.clone(), None))
    }

    /// A handle that declares memcached's key limits and fails every call
    /// with a key beyond them.
    fn strict(store: &Arc<Self>) -> Arc<dyn Backend> {
        Arc::new(Handle(store.clone(), Some(KeyLimits::MEMCACHED)))
    }
}

#[derive(Debug)]
struct Handle(Arc<SharedStore>, Option<KeyLimits>);

impl Handle {
    fn check(&self, key: &str) -> Result<(), BackendError> {
        let bad = self.1.is_some_and(|l| key.len() > l.max_len || key.bytes().any(|b| b <= b' ' || b == 0x7f));
        if bad { Err(BackendError::new("strict", format!("key refused: {key:?}"))) } else { Ok(()) }
    }
}

impl Backend for Handle {
    fn name(&self) -> &'static str {
        "shared-store"
    }
    fn value_kind(&self) -> ValueKind {
        ValueKind::Bytes
    }
    fn distributed_lock(&self) -> Option<&dyn DistributedLock> {
        Some(self)
    }
    fn key_limits(&self) -> Option<KeyLimits> {
        self.1
    }
    fn blocking(&self) -> Option<&dyn BlockingBackend> {
        Some(self)
    }

}

impl BlockingBackend for Handle {
    fn get(&self, key: &str) -> Result<Option<Value>, BackendError> {
        self.check(key)?;
        Ok(lock(&self.0.values).get(key).cloned())
    }
    fn set(&self, key: &str, value: Value, _ttl: Option<Duration>) -> Result<(), BackendError> {
        self.check(key)?;
        lock(&self.0.values).insert(key.to_owned(), value);
        Ok(())
    }
    fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.check(key)?;
        lock(&self.0.values).remove(key);
        Ok(())
    }
}

impl DistributedLock for Handle {
    fn try_acquire(&self, key: &str, token: &LockToken, _ttl: Duration) -> Result<bool, BackendError> {
        self.check(key)?;
        let mut locks = lock(&self.0.locks);
        if locks.contains_key(key) {
            return Ok(false);
        }
        locks.insert(key.to_owned(), token.as_str().to_owned());
        Ok(true)
    }
    fn extend(&self, key: &str, token: &LockToken, _ttl: Duration) -> Result<bool, BackendError> {
        Ok(lock(&self.0.locks).get(key).is_some_and(|t| t == token.as_str()))
    }
    fn release(&self, key: &str, token: &LockToken) -> Result<bool, BackendError> {
        let mut locks = lock(&self.0.locks);
        if locks.get(key).is_some_and(|t| t == token.as_str()) {
            locks.remove(key);
            return Ok(true);
        }
        Ok(false)
    }
    fn retry_interval(&self) -> Duration {
        Duration::from_millis(2)
    }
}

#[test]
fn shared_store_two_processes_create_once() {
    let store = SharedStore::new();
    conformance::two_processes_create_once(SharedStore::handle(&store), SharedStore::handle(&store));
}

/// The check must be able to fail: two memory backends share nothing, so
/// each "process" creates its own value.
#[test]
#[should_panic(expected = "one creation across both processes")]
fn two_unshared_memory_backends_create_twice() {
    conformance::two_processes_create_once(Arc::new(MemoryBackend::new()), Arc::new(MemoryBackend::new()));
}

/// Keys memcached would refuse (long, spaces, control characters, unicode
/// spread over the cut) reach the backend's storage and lock mapped, round
/// trip, and stay apart.
#[test]
fn keys_beyond_the_backends_limits_are_mapped_for_storage_and_lock() {
    let store = SharedStore::new();
    let region = Region::builder("limits").backend_arc(SharedStore::strict(&store)).build();
    let long_a = format!("{}a", "k".repeat(10_000));
    let long_b = format!("{}b", "k".repeat(10_000));
    let keys = [long_a.as_str(), long_b.as_str(), "with space", "new\nline", "nul\0", &"é".repeat(300), "dpk:x"];
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(region.get_or_create(key, || i).unwrap(), i, "{key:?}");
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(region.get::<usize>(key).unwrap(), Some(i), "{key:?}: read back, not another key's value");
    }
    let stored: Vec<String> = lock(&store.values).keys().cloned().collect();
    assert_eq!(stored.len(), keys.len());
    assert!(stored.iter().all(|k| k.len() <= 250 && k.starts_with("dpk:")), "{stored:?}");
    // A key that fits is stored as it is.
    region.set("plain", 1u8).unwrap();
    assert!(lock(&store.values).contains_key("plain"));
    region.delete(&long_a).unwrap();
    assert_eq!(region.get::<usize>(&long_a).unwrap(), None);
    assert_eq!(region.stats().backend_errors, 0, "the backend never saw a key beyond its limits");
}
