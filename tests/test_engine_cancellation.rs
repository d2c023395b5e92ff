//! Regression tests from the review of the one-engine rewrite: leases won
//! by a call that is cancelled (during an offloaded read-and-lease, during
//! an async backend's default read-and-lease, during the release itself)
//! are released; multi-key calls count a key read fresh before any wait as
//! a hit, and apply early refresh to their first read.

use dogpile::backend::{
    Acquire, AsyncBackend, Backend, BackendError, BlockingBackend, BoxFuture, Lease, Value, ValueKind, ready,
};
use dogpile::{Expiration, Region};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A store shared by "processes", with leases keyed by owner token.
#[derive(Debug, Default)]
struct Store {
    values: Mutex<HashMap<String, Value>>,
    owners: Mutex<HashMap<String, u64>>,
    next: AtomicU64,
    get_delay_ms: AtomicU64,
    release_delay_ms: AtomicU64,
}

impl Store {
    fn lease(self: &Arc<Self>, key: &str) -> Acquire {
        let mut owners = self.owners.lock().unwrap();
        if owners.contains_key(key) {
            return Acquire::Held;
        }
        let token = self.next.fetch_add(1, Ordering::SeqCst);
        owners.insert(key.to_owned(), token);
        Acquire::Won(Box::new(L(self.clone(), key.to_owned(), token)))
    }
    fn held(&self, key: &str) -> bool {
        self.owners.lock().unwrap().contains_key(key)
    }
}

#[derive(Debug)]
struct L(Arc<Store>, String, u64);

impl L {
    fn release_now(&self) -> bool {
        let mut owners = self.0.owners.lock().unwrap();
        if owners.get(&self.1) == Some(&self.2) {
            owners.remove(&self.1);
            true
        } else {
            false
        }
    }
}

impl Lease for L {
    fn needs_keep_alive(&self) -> bool {
        false
    }
    fn extend(&self, _: Duration) -> BoxFuture<'_, Result<bool, BackendError>> {
        ready(Ok(true))
    }
    fn release(&self) -> BoxFuture<'_, Result<bool, BackendError>> {
        let delay = self.0.release_delay_ms.load(Ordering::SeqCst);
        if delay == 0 {
            return ready(Ok(self.release_now()));
        }
        // An async client: the release is a network round trip.
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            Ok(self.release_now())
        })
    }
}

/// Blocking-only, may block (so async calls are offloaded), issues leases.
#[derive(Debug)]
struct SlowBlocking(Arc<Store>);

impl Backend for SlowBlocking {
    fn name(&self) -> &'static str {
        "slow-blocking"
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
}

impl BlockingBackend for SlowBlocking {
    fn get(&self, key: &str) -> Result<Option<Value>, BackendError> {
        std::thread::sleep(Duration::from_millis(self.0.get_delay_ms.load(Ordering::SeqCst)));
        Ok(self.0.values.lock().unwrap().get(key).cloned())
    }
    fn set(&self, key: &str, value: Value, _: Option<Duration>) -> Result<(), BackendError> {
        self.0.values.lock().unwrap().insert(key.to_owned(), value);
        Ok(())
    }
    fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.0.values.lock().unwrap().remove(key);
        Ok(())
    }
    fn try_lease(&self, key: &str, _: Duration) -> Result<Acquire, BackendError> {
        Ok(self.0.lease(key))
    }
}

/// Async-only, issues leases.
#[derive(Debug)]
struct AsyncOnly(Arc<Store>);

impl Backend for AsyncOnly {
    fn name(&self) -> &'static str {
        "async-only"
    }
    fn value_kind(&self) -> ValueKind {
        ValueKind::Bytes
    }
    fn nonblocking(&self) -> Option<&dyn AsyncBackend> {
        Some(self)
    }
    fn issues_leases(&self) -> bool {
        true
    }
}

impl AsyncBackend for AsyncOnly {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Value>, BackendError>> {
        Box::pin(async move {
            let d = self.0.get_delay_ms.load(Ordering::SeqCst);
            if d > 0 {
                tokio::time::sleep(Duration::from_millis(d)).await;
            }
            Ok(self.0.values.lock().unwrap().get(key).cloned())
        })
    }
    fn set<'a>(&'a self, key: &'a str, value: Value, _: Option<Duration>) -> BoxFuture<'a, Result<(), BackendError>> {
        self.0.values.lock().unwrap().insert(key.to_owned(), value);
        ready(Ok(()))
    }
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        self.0.values.lock().unwrap().remove(key);
        ready(Ok(()))
    }
    fn try_lease<'a>(&'a self, key: &'a str, _: Duration) -> BoxFuture<'a, Result<Acquire, BackendError>> {
        ready(Ok(self.0.lease(key)))
    }
}

/// Waits (hang guard: 60 s) until nobody holds `key`'s lease; the release
/// of a cancelled call runs detached, a moment later.
fn wait_free(store: &Store, key: &str, why: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while store.held(key) {
        assert!(std::time::Instant::now() < deadline, "{why}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn region(name: &str, backend: impl Backend) -> Region {
    Region::builder(name).backend(backend).expiration(Expiration::Never).lock_timeout(Duration::from_secs(30)).build()
}

/// A task cancelled (timeout) while the blocking backend's
/// read_and_lease runs on the blocking pool: the lease it wins is dropped
/// with the JoinHandle's output and never released. Every caller of the key,
/// in every process, then waits out lock_timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_offloaded_read_and_lease_releases_the_lease() {
    let store = Arc::new(Store::default());
    store.get_delay_ms.store(300, Ordering::SeqCst);
    let r = region("offload", SlowBlocking(store.clone()));
    let call = r.get_or_create_async("k", || async { 1u32 });
    // The first read and the read under the in-process lock take 300 ms
    // each; then read_and_lease (try_lease, then a 300 ms get): cancel there.
    let _ = tokio::time::timeout(Duration::from_millis(750), call).await;
    wait_free(&store, "k", "lease of a cancelled call still held: other callers wait lock_timeout (30 s)");
}

/// Same with an async-only backend and the default read_and_lease:
/// cancelled between try_lease and get.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_async_read_and_lease_releases_the_lease() {
    let store = Arc::new(Store::default());
    store.get_delay_ms.store(200, Ordering::SeqCst);
    let r = region("async-lease", AsyncOnly(store.clone()));
    let call = r.get_or_create_async("k", || async { 1u32 });
    // first read 200 ms, read under the local lock 200 ms, then try_lease
    // (won) and a 200 ms get: cancel there.
    let _ = tokio::time::timeout(Duration::from_millis(500), call).await;
    wait_free(&store, "k", "lease of a cancelled call still held until lock_timeout");
}

/// Cancelled while the creator's lease is being released
/// (LeaseGuard::release_async takes the lease out before awaiting): the
/// lease is never released. The old DistGuard set `released` only after the
/// await, so its Drop released a lease whose release was cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_release_still_releases() {
    let store = Arc::new(Store::default());
    store.release_delay_ms.store(300, Ordering::SeqCst);
    let r = region("async-release", AsyncOnly(store.clone()));
    let call = r.get_or_create_async("k", || async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        1u32
    });
    // creator 100 ms, release 300 ms: cancel during the release.
    let _ = tokio::time::timeout(Duration::from_millis(250), call).await;
    wait_free(&store, "k", "lease whose release was cancelled is never released");
}

/// Counters: in a multi-key call, a key found fresh by the first
/// multi-read (before any waiting) is a hit; the new engine counts it as
/// `waited` when an earlier key (in lock order) was waited for.
#[test]
fn multi_key_fresh_key_after_a_wait_is_a_hit() {
    let r = Region::builder("multi-count").backend(dogpile::backends::MemoryBackend::new()).build();
    r.set("b", 2u32).unwrap();
    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    let creator = {
        let r = r.clone();
        std::thread::spawn(move || {
            r.get_or_create("a", || {
                entered_tx.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(300));
                1u32
            })
            .unwrap()
        })
    };
    entered_rx.recv().unwrap();
    let before = r.stats();
    let v: Vec<u32> = r.get_or_create_multi(&["a", "b"], |_| panic!("nothing to create")).unwrap();
    assert_eq!(v, [1, 2]);
    creator.join().unwrap();
    let s = r.stats();
    assert_eq!(s.waited - before.waited, 1, "only `a` was waited for: {s:?}");
    assert_eq!(s.hits - before.hits, 1, "`b` was read fresh before any wait: {s:?}");
}

/// XFetch early refresh no longer applies to get_or_create_multi: the
/// old engine judged the multi-read with early refresh on
/// (`judge_value(.., true)`), the new one with `judge_read` (off).
#[test]
fn multi_key_honours_early_refresh() {
    let r = Region::builder("multi-early")
        .backend(dogpile::backends::MemoryBackend::new())
        .expiration(Duration::from_secs(3600))
        .early_refresh(1e12)
        .build();
    // Created with a measurable creation time.
    let _: Vec<u32> = r
        .get_or_create_multi(&["a"], |_| {
            std::thread::sleep(Duration::from_millis(5));
            vec![1]
        })
        .unwrap();
    // Single-key call: regenerated early (beta huge).
    let mut single = 0;
    let _: u32 = r
        .get_or_create("a", || {
            single += 1;
            2
        })
        .unwrap();
    assert_eq!(single, 1, "single-key early refresh applies (control)");
    let mut multi = 0;
    let _: Vec<u32> = r
        .get_or_create_multi(&["a"], |k| {
            multi += 1;
            vec![3; k.len()]
        })
        .unwrap();
    assert_eq!(multi, 1, "multi-key call ignored early refresh");
}
