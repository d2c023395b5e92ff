//! The conformance suite (tests/conformance) against the in-process
//! backends, a byte backend, and a shared store standing for a remote
//! backend seen from two processes.

mod conformance;
mod support;

use dogpile::backends::{BoundedMemoryBackend, MemoryBackend, NullBackend};
use dogpile::{Backend, BackendError, DistributedLock, LockToken, Value, ValueKind};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use conformance::Stores;

conformance_suite!(memory, Stores::Values, || Arc::new(MemoryBackend::new()));
conformance_suite!(bounded_memory, Stores::Values, || Arc::new(BoundedMemoryBackend::with_capacity(10_000)));
conformance_suite!(null, Stores::Nothing, || Arc::new(NullBackend));
conformance_suite!(bytes, Stores::Values, support::ByteBackend::new);
conformance_suite!(shared_store, Stores::Values, || SharedStore::handle(&SharedStore::new()));

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
        Arc::new(Handle(store.clone()))
    }
}

#[derive(Debug)]
struct Handle(Arc<SharedStore>);

impl Backend for Handle {
    fn name(&self) -> &'static str {
        "shared-store"
    }
    fn value_kind(&self) -> ValueKind {
        ValueKind::Bytes
    }
    fn get(&self, key: &str) -> Result<Option<Value>, BackendError> {
        Ok(lock(&self.0.values).get(key).cloned())
    }
    fn set(&self, key: &str, value: Value, _ttl: Option<Duration>) -> Result<(), BackendError> {
        lock(&self.0.values).insert(key.to_owned(), value);
        Ok(())
    }
    fn delete(&self, key: &str) -> Result<(), BackendError> {
        lock(&self.0.values).remove(key);
        Ok(())
    }
    fn distributed_lock(&self) -> Option<&dyn DistributedLock> {
        Some(self)
    }
}

impl DistributedLock for Handle {
    fn try_acquire(&self, key: &str, token: &LockToken, _ttl: Duration) -> Result<bool, BackendError> {
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
