//! A store shared by regions that stand for processes, reached through one
//! handle per region, each counting the calls it gets: what the tests of
//! the drivers' use of the backend contract need to see (which hook was
//! called, which thread released a lease, what the in-process lock was
//! doing at that moment).
//!
//! A handle offers the blocking interface, the async one, or both. It
//! issues leases (owner tokens, no expiry: a lease is free only once its
//! owner releases it, so a lease that is free proves a release), keeps the
//! region's invalidation word, may wake lease waiters on release instead of
//! letting the region back off, may answer `read_and_lease` itself in one
//! step, and may run a hook inside every release of one of its leases.

#![allow(dead_code, unreachable_pub)]

use dogpile::backend::{
    Acquire, AsyncBackend, Backend, BackendError, BlockingBackend, BoxFuture, Lease, Leased, Value, ValueKind, ready,
};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{Thread, ThreadId};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The storage, leases and invalidation word every handle shares.
#[derive(Debug, Default)]
pub struct Store {
    values: Mutex<HashMap<String, Value>>,
    /// key -> the owner token of its lease ([`OTHER`] for "another process").
    leases: Mutex<HashMap<String, u64>>,
    /// Wakes blocking waiters on a release.
    released: Condvar,
    /// Wakes async waiters on a release.
    released_async: Notify,
    invalidation: Mutex<Option<u64>>,
    next_token: AtomicU64,
}

/// The owner token of a lease held by the test itself, as another process.
const OTHER: u64 = u64::MAX;

impl Store {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Whether someone holds `key`'s lease.
    pub fn held(&self, key: &str) -> bool {
        lock(&self.leases).contains_key(key)
    }

    /// Whether a value is stored under `key`.
    pub fn has_value(&self, key: &str) -> bool {
        lock(&self.values).contains_key(key)
    }

    /// "Another process" takes `key`'s lease; `false` if it is held.
    pub fn hold_as_other(&self, key: &str) -> bool {
        let mut leases = lock(&self.leases);
        if leases.contains_key(key) {
            return false;
        }
        leases.insert(key.to_owned(), OTHER);
        true
    }

    /// "Another process" lets `key`'s lease go.
    pub fn release_other(&self, key: &str) {
        let mut leases = lock(&self.leases);
        if leases.get(key) == Some(&OTHER) {
            leases.remove(key);
            self.wake_waiters();
        }
    }

    fn wake_waiters(&self) {
        self.released.notify_all();
        self.released_async.notify_waiters();
    }

    fn try_lease(&self, key: &str) -> Option<u64> {
        let mut leases = lock(&self.leases);
        if leases.contains_key(key) {
            return None;
        }
        let token = self.next_token.fetch_add(1, Ordering::SeqCst);
        leases.insert(key.to_owned(), token);
        Some(token)
    }
}

/// Which interfaces a handle offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interface {
    /// Blocking only, and it may block: async callers go through tokio's
    /// blocking pool.
    Blocking,
    /// Async only.
    Async,
    /// Both: async callers use the async one.
    Both,
}

/// How many times a handle got each call.
#[derive(Debug, Default)]
pub struct Calls {
    pub get: AtomicUsize,
    pub try_lease: AtomicUsize,
    pub read_and_lease: AtomicUsize,
    /// Lease requests answered "held elsewhere" (either way of asking).
    pub refused: AtomicUsize,
    pub wait_released: AtomicUsize,
    /// `wait_released` calls that ended because the lease was free.
    pub woken: AtomicUsize,
    /// Back-off sleeps of the async driver (`AsyncBackend::sleep`).
    pub sleep: AtomicUsize,
    pub load_invalidation: AtomicUsize,
    pub release: AtomicUsize,
}

impl Calls {
    pub fn n(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::SeqCst)
    }
}

type ReleaseHook = Arc<dyn Fn(&str) + Send + Sync>;

/// One region's way into the [`Store`].
pub struct Handle {
    store: Arc<Store>,
    interface: Interface,
    wakes: bool,
    reads_and_leases: bool,
    calls: Arc<Calls>,
    /// Threads that released this handle's leases, in order.
    releasers: Arc<Mutex<Vec<ThreadId>>>,
    on_release: Arc<Mutex<Option<ReleaseHook>>>,
    /// A value stored by "another process" just before the next lease
    /// request for its key is answered.
    landing: Mutex<Option<(String, Value)>>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").field("interface", &self.interface).finish_non_exhaustive()
    }
}

impl Handle {
    /// A handle on `store` offering `interface`, without wake-up or a
    /// `read_and_lease` of its own.
    pub fn new(store: &Arc<Store>, interface: Interface) -> Self {
        Handle {
            store: store.clone(),
            interface,
            wakes: false,
            reads_and_leases: false,
            calls: Arc::default(),
            releasers: Arc::default(),
            on_release: Arc::default(),
            landing: Mutex::default(),
        }
    }

    /// Waiters for another process's lease are woken by its release.
    pub fn waking(mut self) -> Self {
        self.wakes = true;
        self
    }

    /// Answers `read_and_lease` itself (one step), never through the
    /// default's `try_lease` then `get`.
    pub fn reading_and_leasing(mut self) -> Self {
        self.reads_and_leases = true;
        self
    }

    pub fn build(self) -> Arc<Self> {
        Arc::new(self)
    }

    pub fn calls(&self) -> &Calls {
        &self.calls
    }

    /// The threads that released this handle's leases so far.
    pub fn releasers(&self) -> Vec<ThreadId> {
        lock(&self.releasers).clone()
    }

    /// Runs `hook(key)` inside every release of one of this handle's
    /// leases, before the lease is let go.
    pub fn on_release(&self, hook: impl Fn(&str) + Send + Sync + 'static) {
        *lock(&self.on_release) = Some(Arc::new(hook));
    }

    /// Removes the release hook (and what it holds).
    pub fn clear_on_release(&self) {
        *lock(&self.on_release) = None;
    }

    /// "Another process" stores `value` under `key` just before the next
    /// lease request for `key` is answered (the lease is then won, with a
    /// value already there).
    pub fn land_on_next_lease(&self, key: &str, value: Value) {
        *lock(&self.landing) = Some((key.to_owned(), value));
    }

    fn get_now(&self, key: &str) -> Option<Value> {
        self.calls.get.fetch_add(1, Ordering::SeqCst);
        lock(&self.store.values).get(key).cloned()
    }

    fn lease_now(&self, key: &str) -> Acquire {
        let landing = {
            let mut landing = lock(&self.landing);
            if landing.as_ref().is_some_and(|(k, _)| k == key) { landing.take() } else { None }
        };
        if let Some((key, value)) = landing {
            lock(&self.store.values).insert(key, value);
        }
        match self.store.try_lease(key) {
            Some(token) => Acquire::Won(Box::new(StoreLease {
                store: self.store.clone(),
                key: key.to_owned(),
                token,
                is_async: self.interface != Interface::Blocking,
                calls: self.calls.clone(),
                releasers: self.releasers.clone(),
                on_release: lock(&self.on_release).clone(),
            })),
            None => {
                self.calls.refused.fetch_add(1, Ordering::SeqCst);
                Acquire::Held
            }
        }
    }

    fn try_lease_now(&self, key: &str) -> Acquire {
        self.calls.try_lease.fetch_add(1, Ordering::SeqCst);
        self.lease_now(key)
    }

    /// The handle's own one-step read-and-lease: lease, then value, with no
    /// `get` or `try_lease` call counted.
    fn read_and_lease_now(&self, key: &str) -> Leased {
        self.calls.read_and_lease.fetch_add(1, Ordering::SeqCst);
        let acquire = self.lease_now(key);
        let value = lock(&self.store.values).get(key).cloned();
        Leased { value, acquire }
    }

    fn load_invalidation_now(&self) -> Option<u64> {
        self.calls.load_invalidation.fetch_add(1, Ordering::SeqCst);
        *lock(&self.store.invalidation)
    }
}

impl Backend for Handle {
    fn name(&self) -> &'static str {
        "test-store"
    }
    fn value_kind(&self) -> ValueKind {
        ValueKind::Object
    }
    fn blocking(&self) -> Option<&dyn BlockingBackend> {
        (self.interface != Interface::Async).then_some(self as &dyn BlockingBackend)
    }
    fn nonblocking(&self) -> Option<&dyn AsyncBackend> {
        (self.interface != Interface::Blocking).then_some(self as &dyn AsyncBackend)
    }
    fn issues_leases(&self) -> bool {
        true
    }
    fn shares_invalidation(&self) -> bool {
        true
    }
}

impl BlockingBackend for Handle {
    fn get(&self, key: &str) -> Result<Option<Value>, BackendError> {
        Ok(self.get_now(key))
    }
    fn set(&self, key: &str, value: Value, _ttl: Option<Duration>) -> Result<(), BackendError> {
        lock(&self.store.values).insert(key.to_owned(), value);
        Ok(())
    }
    fn delete(&self, key: &str) -> Result<(), BackendError> {
        lock(&self.store.values).remove(key);
        Ok(())
    }
    fn try_lease(&self, key: &str, _ttl: Duration) -> Result<Acquire, BackendError> {
        Ok(self.try_lease_now(key))
    }
    fn read_and_lease(&self, key: &str, _ttl: Duration) -> Result<Leased, BackendError> {
        if !self.reads_and_leases {
            // The default's way: lease, then read.
            let acquire = self.try_lease_now(key);
            return Ok(Leased { value: self.get_now(key), acquire });
        }
        Ok(self.read_and_lease_now(key))
    }
    fn wait_released(&self, key: &str, max: Duration) -> Result<bool, BackendError> {
        if !self.wakes {
            return Ok(false);
        }
        self.calls.wait_released.fetch_add(1, Ordering::SeqCst);
        let deadline = Instant::now() + max;
        let mut leases = lock(&self.store.leases);
        while leases.contains_key(key) {
            let now = Instant::now();
            if now >= deadline {
                return Ok(true);
            }
            leases = self.store.released.wait_timeout(leases, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
        self.calls.woken.fetch_add(1, Ordering::SeqCst);
        Ok(true)
    }
    fn load_invalidation(&self, _region: &str) -> Result<Option<u64>, BackendError> {
        Ok(self.load_invalidation_now())
    }
    fn store_invalidation(&self, _region: &str, word: u64) -> Result<(), BackendError> {
        *lock(&self.store.invalidation) = Some(word);
        Ok(())
    }
}

impl AsyncBackend for Handle {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Value>, BackendError>> {
        Box::pin(async move { Ok(self.get_now(key)) })
    }
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Value,
        _ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            lock(&self.store.values).insert(key.to_owned(), value);
            Ok(())
        })
    }
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            lock(&self.store.values).remove(key);
            Ok(())
        })
    }
    fn try_lease<'a>(&'a self, key: &'a str, _ttl: Duration) -> BoxFuture<'a, Result<Acquire, BackendError>> {
        Box::pin(async move { Ok(self.try_lease_now(key)) })
    }
    fn read_and_lease<'a>(&'a self, key: &'a str, _ttl: Duration) -> BoxFuture<'a, Result<Leased, BackendError>> {
        Box::pin(async move {
            if !self.reads_and_leases {
                let acquire = self.try_lease_now(key);
                return Ok(Leased { value: self.get_now(key), acquire });
            }
            Ok(self.read_and_lease_now(key))
        })
    }
    fn wait_released<'a>(&'a self, key: &'a str, _max: Duration) -> BoxFuture<'a, Result<bool, BackendError>> {
        Box::pin(async move {
            if !self.wakes {
                return Ok(false);
            }
            self.calls.wait_released.fetch_add(1, Ordering::SeqCst);
            loop {
                // Registered before the check, so a release in between wakes it.
                let mut notified = pin!(self.store.released_async.notified());
                notified.as_mut().enable();
                if !self.store.held(key) {
                    self.calls.woken.fetch_add(1, Ordering::SeqCst);
                    return Ok(true);
                }
                notified.await;
            }
        })
    }
    fn load_invalidation<'a>(&'a self, _region: &'a str) -> BoxFuture<'a, Result<Option<u64>, BackendError>> {
        Box::pin(async move { Ok(self.load_invalidation_now()) })
    }
    fn store_invalidation<'a>(&'a self, _region: &'a str, word: u64) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            *lock(&self.store.invalidation) = Some(word);
            Ok(())
        })
    }
    fn sleep(&self, _duration: Duration) -> BoxFuture<'static, ()> {
        self.calls.sleep.fetch_add(1, Ordering::SeqCst);
        // No timer needed: the lease is asked for again at once.
        Box::pin(async {})
    }
}

/// A lease of the [`Store`]: only its token releases it. An async handle's
/// lease does its work when its future is polled, as an async client's
/// request would.
struct StoreLease {
    store: Arc<Store>,
    key: String,
    token: u64,
    is_async: bool,
    calls: Arc<Calls>,
    releasers: Arc<Mutex<Vec<ThreadId>>>,
    on_release: Option<ReleaseHook>,
}

impl fmt::Debug for StoreLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreLease").field("key", &self.key).field("token", &self.token).finish()
    }
}

impl StoreLease {
    fn release_now(&self) -> bool {
        self.calls.release.fetch_add(1, Ordering::SeqCst);
        lock(&self.releasers).push(std::thread::current().id());
        if let Some(hook) = &self.on_release {
            hook(&self.key);
        }
        let mut leases = lock(&self.store.leases);
        let ours = leases.get(&self.key) == Some(&self.token);
        if ours {
            leases.remove(&self.key);
            drop(leases);
            self.store.wake_waiters();
        }
        ours
    }
}

impl Lease for StoreLease {
    fn needs_keep_alive(&self) -> bool {
        false
    }
    fn extend(&self, _ttl: Duration) -> BoxFuture<'_, Result<bool, BackendError>> {
        ready(Ok(lock(&self.store.leases).get(&self.key) == Some(&self.token)))
    }
    fn release(&self) -> BoxFuture<'_, Result<bool, BackendError>> {
        if self.is_async {
            return Box::pin(async move { Ok(self.release_now()) });
        }
        ready(Ok(self.release_now()))
    }
}

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `fut` to completion on this thread, outside any tokio runtime.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

/// Polls `cond` until it holds, failing after `limit` (a hang guard).
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}
