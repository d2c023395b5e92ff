//! Test doubles shared by the integration tests: a byte backend, a proxy
//! backend that counts reads and can inject values and can issue leases under
//! the test's control, a runner that keeps jobs instead of running them, a
//! gate to hold a creator inside its call, and hang guards.

#![allow(dead_code, unreachable_pub)]

use dogpile::backend::{
    Acquire, Backend, BackendError, BlockingBackend, BoxFuture, Lease, Meta, Value, ValueKind, ready,
};
use dogpile::{Job, Runner};
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long any test may wait for something that should happen promptly
/// before it is declared hung.
pub const HANG: Duration = Duration::from_secs(60);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Joins a thread, failing the test if it has not finished within [`HANG`];
/// a panic in the thread is re-raised here.
pub fn join<T>(handle: JoinHandle<T>) -> T {
    join_within(handle, HANG)
}

/// [`join`] with a custom hang guard.
pub fn join_within<T>(handle: JoinHandle<T>, limit: Duration) -> T {
    let deadline = Instant::now() + limit;
    while !handle.is_finished() {
        assert!(Instant::now() < deadline, "thread did not finish within {limit:?} (hang)");
        std::thread::sleep(Duration::from_millis(1));
    }
    match handle.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Polls `cond` until it holds, failing the test after [`HANG`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + HANG;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Builds a stored in-process value as another caller (or process) would.
pub fn object<T: Send + Sync + 'static>(value: T, created_nanos: u64) -> Value {
    Value::Object { meta: Meta { created_nanos, creation_nanos: 0 }, object: Arc::new(value) }
}

// ----- gate -----

/// The creator's side of a gate: announces it is inside, then waits to be let
/// go.
pub struct Inside {
    entered: Sender<()>,
    release: Receiver<()>,
}

/// The test's side of a gate.
pub struct Outside {
    entered: Receiver<()>,
    release: Sender<()>,
}

/// A gate that holds a creator inside its call until the test opens it.
pub fn gate() -> (Inside, Outside) {
    let (entered_tx, entered_rx) = channel();
    let (release_tx, release_rx) = channel();
    (Inside { entered: entered_tx, release: release_rx }, Outside { entered: entered_rx, release: release_tx })
}

impl Inside {
    /// Says "I am in the creator" and blocks until the test opens the gate.
    pub fn enter_and_wait(&self) {
        self.entered.send(()).expect("test side of the gate is gone");
        self.release.recv_timeout(HANG).expect("gate never opened (hang)");
    }
}

impl Outside {
    /// Blocks until the creator is inside.
    pub fn wait_entered(&self) {
        self.entered.recv_timeout(HANG).expect("creator never entered (hang)");
    }

    /// Lets the creator go on.
    pub fn open(&self) {
        self.release.send(()).expect("creator side of the gate is gone");
    }
}

// ----- byte backend -----

/// A backend keeping encoded envelopes in a map, like a shared cache would.
#[derive(Default)]
pub struct ByteBackend {
    map: Mutex<HashMap<String, Vec<u8>>>,
}

impl ByteBackend {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Stores raw bytes under a storage key, bypassing the region.
    pub fn put_raw(&self, key: &str, bytes: Vec<u8>) {
        lock(&self.map).insert(key.to_owned(), bytes);
    }

    /// The raw bytes under a storage key.
    pub fn raw(&self, key: &str) -> Option<Vec<u8>> {
        lock(&self.map).get(key).cloned()
    }
}

impl fmt::Debug for ByteBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteBackend").finish_non_exhaustive()
    }
}

impl Backend for ByteBackend {
    fn name(&self) -> &'static str {
        "test-bytes"
    }
    fn value_kind(&self) -> ValueKind {
        ValueKind::Bytes
    }
    fn blocking(&self) -> Option<&dyn BlockingBackend> {
        Some(self)
    }
}

impl BlockingBackend for ByteBackend {
    fn get(&self, key: &str) -> Result<Option<Value>, BackendError> {
        Ok(lock(&self.map).get(key).cloned().map(Value::Bytes))
    }
    fn set(&self, key: &str, value: Value, _ttl: Option<Duration>) -> Result<(), BackendError> {
        match value {
            Value::Bytes(b) => {
                lock(&self.map).insert(key.to_owned(), b);
                Ok(())
            }
            Value::Object { .. } => Err(BackendError::new("test-bytes", "byte backend handed an object")),
        }
    }
    fn delete(&self, key: &str) -> Result<(), BackendError> {
        lock(&self.map).remove(key);
        Ok(())
    }
}

// ----- lease-issuing double -----

/// One call the region made on the lease double.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockCall {
    /// A lease request: `token` is the token of the lease it would have
    /// issued (the lease's own when `ok`).
    Acquire { key: String, token: String, ok: bool },
    /// A lease extended by its holder (`ok`: it was still the owner).
    Extend { key: String, token: String, ok: bool },
    /// A lease released by its holder (`ok`: it was still the owner).
    Release { key: String, token: String, ok: bool },
}

/// The owner table of [`TestLock`]: key → the token of its lease.
#[derive(Default)]
struct LeaseTable {
    holders: Mutex<HashMap<String, String>>,
    calls: Mutex<Vec<LockCall>>,
    /// The leases issued say they need no keep-alive (a file lock's).
    no_keep_alive: AtomicBool,
}

impl LeaseTable {
    fn record(&self, call: LockCall) {
        lock(&self.calls).push(call);
    }
}

/// A fresh, unguessable lease token.
fn new_token() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:016x}-{n}", RandomState::new().hash_one(n))
}

/// A backend's lease service whose holders the test controls ("another
/// process" can hold a key), recording every call. Leases it issues carry
/// their own token: only the owner extends or releases.
#[derive(Default)]
pub struct TestLock {
    table: Arc<LeaseTable>,
}

impl TestLock {
    /// Makes "another process" hold `key`.
    pub fn hold_as_other(&self, key: &str) {
        lock(&self.table.holders).insert(key.to_owned(), "other-process".to_owned());
    }

    /// "Another process" lets go of `key`.
    pub fn release_other(&self, key: &str) {
        let mut h = lock(&self.table.holders);
        if h.get(key).is_some_and(|t| t == "other-process") {
            h.remove(key);
        }
    }

    /// The lease of `key` expires (its owner, if any, no longer holds it).
    pub fn expire(&self, key: &str) {
        lock(&self.table.holders).remove(key);
    }

    /// Issues leases that need no keep-alive from now on (like a lock held
    /// by an open file).
    pub fn without_keep_alive(&self) {
        self.table.no_keep_alive.store(true, Ordering::SeqCst);
    }

    /// Who holds `key` now (the lease's token, or `"other-process"`).
    pub fn holder(&self, key: &str) -> Option<String> {
        lock(&self.table.holders).get(key).cloned()
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<LockCall> {
        lock(&self.table.calls).clone()
    }

    /// How many lease requests were made for `key`.
    pub fn acquire_attempts(&self, key: &str) -> usize {
        lock(&self.table.calls).iter().filter(|c| matches!(c, LockCall::Acquire { key: k, .. } if k == key)).count()
    }

    /// Tries to take `key`'s lease.
    pub fn try_lease(&self, key: &str, _ttl: Duration) -> Acquire {
        let token = new_token();
        let ok = {
            let mut h = lock(&self.table.holders);
            let free = !h.contains_key(key);
            if free {
                h.insert(key.to_owned(), token.clone());
            }
            free
        };
        self.table.record(LockCall::Acquire { key: key.to_owned(), token: token.clone(), ok });
        if ok {
            Acquire::Won(Box::new(TestLease { table: self.table.clone(), key: key.to_owned(), token }))
        } else {
            Acquire::Held
        }
    }
}

/// A lease issued by [`TestLock`].
pub struct TestLease {
    table: Arc<LeaseTable>,
    key: String,
    token: String,
}

impl fmt::Debug for TestLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestLease").field("key", &self.key).field("token", &self.token).finish()
    }
}

impl TestLease {
    fn owned(&self, holders: &HashMap<String, String>) -> bool {
        holders.get(&self.key).is_some_and(|t| *t == self.token)
    }
}

impl Lease for TestLease {
    fn needs_keep_alive(&self) -> bool {
        !self.table.no_keep_alive.load(Ordering::SeqCst)
    }
    fn extend(&self, _ttl: Duration) -> BoxFuture<'_, Result<bool, BackendError>> {
        let ok = self.owned(&lock(&self.table.holders));
        self.table.record(LockCall::Extend { key: self.key.clone(), token: self.token.clone(), ok });
        ready(Ok(ok))
    }

    fn release(&self) -> BoxFuture<'_, Result<bool, BackendError>> {
        let ok = {
            let mut h = lock(&self.table.holders);
            let ok = self.owned(&h);
            if ok {
                h.remove(&self.key);
            }
            ok
        };
        self.table.record(LockCall::Release { key: self.key.clone(), token: self.token.clone(), ok });
        ready(Ok(ok))
    }
}

// ----- proxy backend -----

type MissHook = Box<dyn FnOnce(&str, &dyn BlockingBackend) + Send>;

/// Wraps another backend: counts reads per key, records every key it is
/// handed, can run a one-shot hook when a read finds nothing, and can carry
/// a [`TestLock`] as its lease service (it then issues leases).
pub struct Proxy {
    inner: Arc<dyn Backend>,
    reads: Mutex<HashMap<String, usize>>,
    keys_seen: Mutex<Vec<String>>,
    on_miss: Mutex<Option<MissHook>>,
    dist: Option<TestLock>,
}

impl Proxy {
    pub fn new(inner: impl Backend) -> Arc<Self> {
        Arc::new(Self::build(Arc::new(inner), None))
    }

    /// A proxy whose backend issues leases under the test's control.
    pub fn with_lock(inner: impl Backend) -> Arc<Self> {
        Arc::new(Self::build(Arc::new(inner), Some(TestLock::default())))
    }

    fn build(inner: Arc<dyn Backend>, dist: Option<TestLock>) -> Self {
        assert!(inner.blocking().is_some(), "the proxy wraps a backend with a blocking interface");
        Self { inner, reads: Mutex::default(), keys_seen: Mutex::default(), on_miss: Mutex::default(), dist }
    }

    /// The wrapped backend's storage.
    pub fn inner(&self) -> &dyn BlockingBackend {
        self.inner.blocking().expect("checked when built")
    }

    /// The lease double.
    pub fn lock(&self) -> &TestLock {
        self.dist.as_ref().expect("proxy built without a lock")
    }

    /// How many times `key` was read (get, peek or within a multi-get).
    pub fn reads(&self, key: &str) -> usize {
        lock(&self.reads).get(key).copied().unwrap_or(0)
    }

    /// Every key handed to the backend, in order.
    pub fn keys_seen(&self) -> Vec<String> {
        lock(&self.keys_seen).clone()
    }

    /// Runs `hook` (once) the next time a read finds nothing, after the read.
    pub fn on_next_miss(&self, hook: impl FnOnce(&str, &dyn BlockingBackend) + Send + 'static) {
        *lock(&self.on_miss) = Some(Box::new(hook));
    }

    fn saw(&self, key: &str, read: bool) {
        lock(&self.keys_seen).push(key.to_owned());
        if read {
            *lock(&self.reads).entry(key.to_owned()).or_default() += 1;
        }
    }

    fn missed(&self, key: &str) {
        let hook = lock(&self.on_miss).take();
        if let Some(hook) = hook {
            hook(key, self.inner());
        }
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl Backend for Proxy {
    fn name(&self) -> &'static str {
        "proxy"
    }
    fn value_kind(&self) -> ValueKind {
        self.inner.value_kind()
    }
    fn blocking(&self) -> Option<&dyn BlockingBackend> {
        Some(self)
    }
    fn never_blocks(&self) -> bool {
        self.inner.never_blocks()
    }
    fn issues_leases(&self) -> bool {
        self.dist.is_some()
    }
}

impl BlockingBackend for Proxy {
    fn get(&self, key: &str) -> Result<Option<Value>, BackendError> {
        self.saw(key, true);
        let v = self.inner().get(key)?;
        if v.is_none() {
            self.missed(key);
        }
        Ok(v)
    }
    fn peek(&self, key: &str, f: &mut dyn FnMut(&Value)) -> Result<bool, BackendError> {
        self.saw(key, true);
        let found = self.inner().peek(key, f)?;
        if !found {
            self.missed(key);
        }
        Ok(found)
    }
    fn set(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<(), BackendError> {
        self.saw(key, false);
        self.inner().set(key, value, ttl)
    }
    fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.saw(key, false);
        self.inner().delete(key)
    }
    fn get_multi(&self, keys: &[&str]) -> Result<Vec<Option<Value>>, BackendError> {
        keys.iter().for_each(|k| self.saw(k, true));
        self.inner().get_multi(keys)
    }
    fn set_multi(&self, items: Vec<(&str, Value)>, ttl: Option<Duration>) -> Result<(), BackendError> {
        items.iter().for_each(|(k, _)| self.saw(k, false));
        self.inner().set_multi(items, ttl)
    }
    fn delete_multi(&self, keys: &[&str]) -> Result<(), BackendError> {
        keys.iter().for_each(|k| self.saw(k, false));
        self.inner().delete_multi(keys)
    }
    fn try_lease(&self, key: &str, ttl: Duration) -> Result<Acquire, BackendError> {
        Ok(self.dist.as_ref().map_or_else(|| Acquire::Won(Box::new(NoopLease)), |l| l.try_lease(key, ttl)))
    }
}

/// The lease of a proxy without a [`TestLock`] (never asked for: such a
/// proxy issues no leases).
#[derive(Debug)]
struct NoopLease;

impl Lease for NoopLease {
    fn needs_keep_alive(&self) -> bool {
        false
    }
    fn extend(&self, _ttl: Duration) -> BoxFuture<'_, Result<bool, BackendError>> {
        ready(Ok(true))
    }
    fn release(&self) -> BoxFuture<'_, Result<bool, BackendError>> {
        ready(Ok(true))
    }
}

// ----- runner -----

/// A runner that keeps the jobs it is given, for the test to run (or drop).
#[derive(Clone, Default)]
pub struct RecordingRunner {
    jobs: Arc<Mutex<Vec<Job>>>,
}

impl RecordingRunner {
    /// How many jobs are waiting.
    pub fn pending(&self) -> usize {
        lock(&self.jobs).len()
    }

    /// Takes every waiting job.
    pub fn take(&self) -> Vec<Job> {
        std::mem::take(&mut *lock(&self.jobs))
    }
}

impl fmt::Debug for RecordingRunner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingRunner").field("pending", &self.pending()).finish()
    }
}

impl Runner for RecordingRunner {
    fn spawn(&self, job: Job) -> Result<(), String> {
        lock(&self.jobs).push(job);
        Ok(())
    }
}

/// A runner that refuses every job.
#[derive(Debug, Clone, Copy, Default)]
pub struct RefusingRunner;

impl Runner for RefusingRunner {
    fn spawn(&self, _job: Job) -> Result<(), String> {
        Err("refused by the test".to_owned())
    }
}
