//! The conformance suite (tests/conformance) against the in-process
//! backends, a byte backend, and a shared store standing for a remote
//! backend seen from two processes.

mod conformance;
mod support;

use dogpile::Region;
use dogpile::backend::{
    Acquire, Backend, BackendError, BlockingBackend, BoxFuture, KeyLimits, Lease, Value, ValueKind, ready,
};
use dogpile::backends::{BoundedMemoryBackend, MemoryBackend, NullBackend};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use conformance::Stores;

conformance_suite!(memory, Stores::Values, || Arc::new(MemoryBackend::new()));
conformance_suite!(bounded_memory, Stores::Values, || Arc::new(BoundedMemoryBackend::with_capacity(10_000)));
conformance_suite!(null, Stores::Nothing, || Arc::new(NullBackend));
conformance_suite!(bytes, Stores::Values, support::ByteBackend::new);
conformance_suite!(shared_store, Stores::Values, || SharedStore::handle(&SharedStore::new()));
conformance_suite!(key_limited, Stores::Values, || SharedStore::strict(&SharedStore::new()));

/// A store with leases and a shared invalidation, reached through several
/// handles: each handle's region has its own in-process lock, as another
/// process would. Leases expire after their time-to-live unless extended;
/// with `wake`, waiters block until a release instead of backing off.
#[derive(Debug, Default)]
struct SharedStore {
    values: Mutex<HashMap<String, Value>>,
    /// key -> (owner token, expiry)
    leases: Mutex<HashMap<String, (u64, Instant)>>,
    released: Condvar,
    invalidation: Mutex<Option<u64>>,
    next_token: AtomicU64,
    wake: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SharedStore {
    fn new() -> Arc<Self> {
        Arc::default()
    }

    /// A store whose handles wake lease waiters on release.
    fn waking() -> Arc<Self> {
        Arc::new(SharedStore { wake: true, ..SharedStore::default() })
    }

    fn handle(store: &Arc<Self>) -> Arc<dyn Backend> {
        Arc::new(Handle(store.clone(), None))
    }

    /// A handle that declares memcached's key limits and fails every call
    /// with a key beyond them.
    fn strict(store: &Arc<Self>) -> Arc<dyn Backend> {
        Arc::new(Handle(store.clone(), Some(KeyLimits::MEMCACHED)))
    }

    fn pair() -> (Arc<dyn Backend>, Arc<dyn Backend>) {
        let store = SharedStore::new();
        (SharedStore::handle(&store), SharedStore::handle(&store))
    }

    fn waking_pair() -> (Arc<dyn Backend>, Arc<dyn Backend>) {
        let store = SharedStore::waking();
        (SharedStore::handle(&store), SharedStore::handle(&store))
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
    fn blocking(&self) -> Option<&dyn BlockingBackend> {
        Some(self)
    }
    fn issues_leases(&self) -> bool {
        true
    }
    fn shares_invalidation(&self) -> bool {
        true
    }
    fn key_limits(&self) -> Option<KeyLimits> {
        self.1
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
    fn try_lease(&self, key: &str, ttl: Duration) -> Result<Acquire, BackendError> {
        self.check(key)?;
        let mut leases = lock(&self.0.leases);
        let now = Instant::now();
        if leases.get(key).is_some_and(|(_, expiry)| *expiry > now) {
            return Ok(Acquire::Held);
        }
        let token = self.0.next_token.fetch_add(1, Ordering::SeqCst);
        leases.insert(key.to_owned(), (token, now + ttl));
        Ok(Acquire::Won(Box::new(StoreLease { store: self.0.clone(), key: key.to_owned(), token })))
    }
    fn wait_released(&self, key: &str, max: Duration) -> Result<bool, BackendError> {
        if !self.0.wake {
            return Ok(false);
        }
        let deadline = Instant::now() + max;
        let mut leases = lock(&self.0.leases);
        loop {
            let now = Instant::now();
            match leases.get(key) {
                Some((_, expiry)) if *expiry > now && now < deadline => {
                    let wait = (*expiry).min(deadline) - now;
                    leases = self.0.released.wait_timeout(leases, wait).unwrap_or_else(PoisonError::into_inner).0;
                }
                _ => return Ok(true),
            }
        }
    }
    fn load_invalidation(&self, _region: &str) -> Result<Option<u64>, BackendError> {
        Ok(*lock(&self.0.invalidation))
    }
    fn store_invalidation(&self, _region: &str, word: u64) -> Result<(), BackendError> {
        *lock(&self.0.invalidation) = Some(word);
        Ok(())
    }
}

/// A lease on the shared store: only its token releases or extends it.
#[derive(Debug)]
struct StoreLease {
    store: Arc<SharedStore>,
    key: String,
    token: u64,
}

impl Lease for StoreLease {
    fn extend(&self, ttl: Duration) -> BoxFuture<'_, Result<bool, BackendError>> {
        let mut leases = lock(&self.store.leases);
        let ours = match leases.get_mut(&self.key) {
            Some((token, expiry)) if *token == self.token && *expiry > Instant::now() => {
                *expiry = Instant::now() + ttl;
                true
            }
            _ => false,
        };
        ready(Ok(ours))
    }
    fn release(&self) -> BoxFuture<'_, Result<bool, BackendError>> {
        let mut leases = lock(&self.store.leases);
        let ours = leases.get(&self.key).is_some_and(|(token, _)| *token == self.token);
        if ours {
            leases.remove(&self.key);
            self.store.released.notify_all();
        }
        ready(Ok(ours))
    }
}

shared_suite!(shared_store_pair, SharedStore::pair);
shared_suite!(shared_store_waking_pair, SharedStore::waking_pair);

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
