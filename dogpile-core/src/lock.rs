//! The in-process creation lock, one per key, with a registry that holds an
//! entry only while some caller uses the key.
//!
//! A caller takes a [`KeyHandle`] for its key, then either wins the lock
//! ([`KeyHandle::try_lock`]) or waits until the holder lets go
//! ([`KeyHandle::wait_released`] or its async twin) and looks at the cache
//! again. Releasing wakes every waiter at once: when the value has landed
//! they all read it in parallel instead of taking the lock one by one; when
//! the creator failed, they race for the lock again and one of them creates.
//!
//! The guard releases on drop, so a creator that panics or a creating future
//! that is dropped frees the key.

// The registry's `Arc`s stay std ones under loom (the region holds one, and
// loom's `Arc` cannot be a method receiver); every handle is made and dropped
// under a shard mutex, which loom does model.
#[cfg(loom)]
use loom::sync::{
    Mutex,
    atomic::{AtomicBool, Ordering},
};
use std::sync::Arc;
#[cfg(not(loom))]
use std::sync::{
    Mutex,
    atomic::{AtomicBool, Ordering},
};

use event_listener::{Event, Listener};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

const SHARDS: usize = 32;

type Shard = Mutex<HashMap<Box<str>, Arc<KeyLock>>>;

/// Every key's lock in one region.
pub(crate) struct KeyLocks {
    shards: Box<[Shard]>,
    hasher: RandomState,
    /// How many held locks carry a stale value (see [`KeyGuard::publish_stale`]):
    /// while none does, a read checks nothing here.
    published: std::sync::atomic::AtomicUsize,
}

/// The expired value a lock holder read before regenerating it, with its
/// metadata, for the callers that arrive meanwhile.
pub(crate) type StaleBoard = (crate::value::Meta, Arc<dyn std::any::Any + Send + Sync>);

struct KeyLock {
    locked: AtomicBool,
    released: Event,
    /// The thread running the lock holder's creator (see
    /// [`KeyGuard::mark_thread`]): a blocking caller's for as long as it
    /// holds the lock, an async creator's only while it is being polled;
    /// 0 otherwise.
    holder: std::sync::atomic::AtomicUsize,
    /// The stale value the holder is regenerating (std's mutex even under
    /// loom: it orders nothing the lock relies on).
    stale: std::sync::Mutex<Option<StaleBoard>>,
}

impl KeyLock {
    fn new() -> Self {
        KeyLock {
            locked: AtomicBool::new(false),
            released: Event::new(),
            holder: std::sync::atomic::AtomicUsize::new(0),
            stale: std::sync::Mutex::new(None),
        }
    }

    fn stale(&self) -> std::sync::MutexGuard<'_, Option<StaleBoard>> {
        self.stale.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A small non-zero number unique to the current thread.
fn thread_token() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
    thread_local! {
        static TOKEN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }
    TOKEN.with(|t| {
        if t.get() == 0 {
            t.set(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        }
        t.get()
    })
}

impl KeyLocks {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            published: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    fn shard(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) % SHARDS
    }

    /// A handle on `key`'s lock; the registry keeps the entry while handles
    /// exist.
    pub(crate) fn handle(self: &Arc<Self>, key: &str) -> KeyHandle {
        self.entry(key, |_| true).expect("the filter accepts every entry")
    }

    /// A handle on `key`'s entry (made if missing), unless `keep` rejects
    /// the existing entry; both under the shard's mutex.
    fn entry(self: &Arc<Self>, key: &str, keep: impl FnOnce(&KeyLock) -> bool) -> Option<KeyHandle> {
        let shard = self.shard(key);
        let lock = {
            let mut map = lock_shard(&self.shards[shard]);
            match map.get(key) {
                Some(l) if !keep(l) => return None,
                Some(l) => l.clone(),
                None => {
                    let l = Arc::new(KeyLock::new());
                    map.insert(key.into(), l.clone());
                    l
                }
            }
        };
        Some(KeyHandle { locks: self.clone(), shard, key: key.into(), lock: Some(lock) })
    }

    /// Takes `key`'s lock if it is free. When another caller holds it, this
    /// costs one shard-mutex round trip and leaves the registry untouched
    /// (the expired-value path of every non-creator goes through here).
    pub(crate) fn try_lock(self: &Arc<Self>, key: &str) -> Option<KeyGuard> {
        self.entry(key, |l| !l.locked.load(Ordering::SeqCst))?.try_lock().ok()
    }

    /// How many keys currently have an entry (for tests of the bound).
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock_shard(s).len()).sum()
    }

    /// The stale value published by the caller holding `key`'s lock while
    /// it regenerates it, if any. Costs one atomic load while no lock of the
    /// region carries one.
    pub(crate) fn published_stale(&self, key: &str) -> Option<StaleBoard> {
        if self.published.load(std::sync::atomic::Ordering::Acquire) == 0 {
            return None;
        }
        let lock = lock_shard(&self.shards[self.shard(key)]).get(key)?.clone();
        if !lock.locked.load(Ordering::SeqCst) {
            return None;
        }
        lock.stale().clone()
    }

    /// Takes back the stale value published under `key`'s lock, if any.
    pub(crate) fn withdraw_stale(&self, key: &str) {
        if self.published.load(std::sync::atomic::Ordering::Acquire) == 0 {
            return;
        }
        let Some(lock) = lock_shard(&self.shards[self.shard(key)]).get(key).cloned() else { return };
        let withdrawn = lock.stale().take();
        if withdrawn.is_some() {
            self.published.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
    }

    /// Whether some caller holds `key`'s lock right now.
    pub(crate) fn is_locked(&self, key: &str) -> bool {
        let map = lock_shard(&self.shards[self.shard(key)]);
        map.get(key).is_some_and(|l| l.locked.load(Ordering::SeqCst))
    }
}

fn lock_shard(shard: &Shard) -> impl std::ops::DerefMut<Target = HashMap<Box<str>, Arc<KeyLock>>> + '_ {
    // The map is never left half-updated by a panic (no user code runs under
    // it), so a poisoned shard is still consistent.
    shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One caller's interest in one key's lock.
pub(crate) struct KeyHandle {
    locks: Arc<KeyLocks>,
    shard: usize,
    key: Box<str>,
    lock: Option<Arc<KeyLock>>,
}

impl KeyHandle {
    fn lock(&self) -> &KeyLock {
        self.lock.as_deref().expect("present until drop")
    }

    /// Takes the lock if it is free; gives the handle back if not.
    pub(crate) fn try_lock(self) -> Result<KeyGuard, KeyHandle> {
        if self.lock().locked.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            Ok(KeyGuard { handle: self })
        } else {
            Err(self)
        }
    }

    /// Blocks until the lock is not held (it may be taken again at once).
    pub(crate) fn wait_released(&self) {
        let lock = self.lock();
        loop {
            if !lock.locked.load(Ordering::SeqCst) {
                return;
            }
            let listener = lock.released.listen();
            // Checked again after registering, so a release between the first
            // check and `listen` is not lost.
            if !lock.locked.load(Ordering::SeqCst) {
                return;
            }
            listener.wait();
        }
    }

    /// Waits until the lock is not held, without blocking the thread.
    pub(crate) async fn wait_released_async(&self) {
        let lock = self.lock();
        loop {
            if !lock.locked.load(Ordering::SeqCst) {
                return;
            }
            let listener = lock.released.listen();
            if !lock.locked.load(Ordering::SeqCst) {
                return;
            }
            listener.await;
        }
    }
}

impl Drop for KeyHandle {
    fn drop(&mut self) {
        let mut map = lock_shard(&self.locks.shards[self.shard]);
        let lock = self.lock.take().expect("dropped once");
        // Handles are only made and dropped under the shard's mutex, so the
        // count is stable here: the map's reference plus ours means we are
        // the last user.
        if Arc::strong_count(&lock) == 2 {
            map.remove(&*self.key);
        }
        drop(lock);
    }
}

/// Proof of holding a key's lock; releases it and wakes all waiters on drop.
pub(crate) struct KeyGuard {
    handle: KeyHandle,
}

impl KeyGuard {
    /// Records that a blocking caller on this thread holds the lock, so that
    /// the same thread asking for the key again (a creator calling the cache
    /// for its own key) is told so instead of waiting for itself forever.
    /// Async creators are marked only while polled ([`run_marked`]).
    pub(crate) fn mark_thread(&self) {
        self.handle.lock().holder.store(thread_token(), std::sync::atomic::Ordering::Relaxed);
    }
}

impl KeyGuard {
    /// Publishes the expired value this holder read and is regenerating:
    /// callers of this process that come for the key before the lock is
    /// released get it without reading the backend (on a remote backend, a
    /// round trip each). Withdrawn on release, before the lock is free.
    pub(crate) fn publish_stale(&self, board: StaleBoard) {
        let mut slot = self.handle.lock().stale();
        if slot.replace(board).is_none() {
            self.handle.locks.published.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
    }

    /// Forgets the holding thread (the guard moves to a background job).
    pub(crate) fn clear_thread(&self) {
        self.handle.lock().holder.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

impl KeyHandle {
    /// Whether the lock is held by a blocking caller on this very thread, or
    /// by an async creator that this thread is polling right now (see
    /// [`run_marked`]): either way, waiting would never end.
    pub(crate) fn held_by_this_thread(&self) -> bool {
        self.lock().holder.load(std::sync::atomic::Ordering::Relaxed) == thread_token()
    }
}

/// Awaits the future that `creator` makes, with every one of `guards`
/// marked as held by the current thread while `creator` runs and during each
/// poll of its future, and unmarked in between.
///
/// A call for one of these keys made from inside the creator (async or
/// blocking, at any depth) runs within such a poll, on the polling thread,
/// so it is told it is re-entrant instead of waiting for itself forever.
/// Other tasks on the same thread run between polls, when the marks are
/// off, and wait for the value as usual. No runtime is needed.
pub(crate) async fn run_marked<Fut: std::future::Future>(
    guards: &[&KeyGuard],
    creator: impl FnOnce() -> Fut,
) -> Fut::Output {
    let fut = marked(guards, creator);
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| marked(guards, || fut.as_mut().poll(cx))).await
}

/// Runs `f` with `guards` marked as held by this thread; unmarks them
/// afterwards, also when `f` unwinds.
fn marked<R>(guards: &[&KeyGuard], f: impl FnOnce() -> R) -> R {
    struct Unmark<'a, 'g>(&'a [&'g KeyGuard]);
    impl Drop for Unmark<'_, '_> {
        fn drop(&mut self) {
            self.0.iter().for_each(|g| g.clear_thread());
        }
    }
    guards.iter().for_each(|g| g.mark_thread());
    let _unmark = Unmark(guards);
    f()
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        let lock = self.handle.lock();
        let withdrawn = lock.stale().take();
        if withdrawn.is_some() {
            self.handle.locks.published.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
        lock.holder.store(0, std::sync::atomic::Ordering::Relaxed);
        lock.locked.store(false, Ordering::SeqCst);
        lock.released.notify(usize::MAX);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn try_lock_excludes_and_release_frees() {
        let locks = KeyLocks::new();
        let g = locks.handle("a").try_lock().ok().unwrap();
        assert!(locks.is_locked("a"));
        assert!(locks.handle("a").try_lock().is_err());
        assert!(locks.handle("b").try_lock().is_ok());
        drop(g);
        assert!(!locks.is_locked("a"));
        assert!(locks.handle("a").try_lock().is_ok());
    }

    #[test]
    fn entries_go_when_unused() {
        let locks = KeyLocks::new();
        {
            let _g = locks.handle("a").try_lock().ok().unwrap();
            let _h = locks.handle("a");
            let _h2 = locks.handle("b");
            assert_eq!(locks.len(), 2);
        }
        assert_eq!(locks.len(), 0);
    }

    #[test]
    fn many_threads_few_names_never_hold_one_name_twice() {
        let locks = KeyLocks::new();
        let holders: Arc<Vec<AtomicUsize>> = Arc::new((0..3).map(|_| AtomicUsize::new(0)).collect());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let locks = locks.clone();
                let holders = holders.clone();
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        let name = (t + i) % 3;
                        let mut h = locks.handle(&name.to_string());
                        let guard = loop {
                            match h.try_lock() {
                                Ok(g) => break g,
                                Err(back) => {
                                    back.wait_released();
                                    h = back;
                                }
                            }
                        };
                        assert_eq!(holders[name].fetch_add(1, Ordering::SeqCst), 0, "two holders of one name");
                        std::hint::spin_loop();
                        holders[name].fetch_sub(1, Ordering::SeqCst);
                        drop(guard);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(locks.len(), 0, "registry must be empty when nobody uses it");
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicUsize;

    /// Of three threads on one missing key, exactly one creates, and every
    /// waiter is woken (loom reports a deadlock if a wake-up is lost).
    #[test]
    fn single_creator_no_lost_wakeup() {
        // Unbounded, three threads through event-listener's internals do not
        // finish in 18 minutes; 3 preemptions take seconds, 4 about a minute.
        // LOOM_MAX_PREEMPTIONS overrides.
        let mut model = loom::model::Builder::new();
        model.preemption_bound.get_or_insert(3);
        model.check(|| {
            let locks = KeyLocks::new();
            let created = Arc::new(AtomicBool::new(false));
            let creations = Arc::new(AtomicUsize::new(0));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let (locks, created, creations) = (locks.clone(), created.clone(), creations.clone());
                    loom::thread::spawn(move || caller(&locks, &created, &creations))
                })
                .collect();
            caller(&locks, &created, &creations);
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(creations.load(Ordering::SeqCst), 1);
            assert_eq!(locks.len(), 0);
        });
    }

    fn caller(locks: &Arc<KeyLocks>, created: &AtomicBool, creations: &AtomicUsize) {
        loop {
            if created.load(Ordering::SeqCst) {
                return;
            }
            match locks.handle("k").try_lock() {
                Ok(guard) => {
                    // Read again under the lock: another caller may have created.
                    if !created.load(Ordering::SeqCst) {
                        creations.fetch_add(1, Ordering::SeqCst);
                        created.store(true, Ordering::SeqCst);
                    }
                    drop(guard);
                    return;
                }
                Err(handle) => handle.wait_released(),
            }
        }
    }

    /// The async wait under loom: of two callers on one missing key, each on
    /// its own thread awaiting with `loom::future::block_on`, exactly one
    /// creates and the other's await is woken (a lost wake-up between its
    /// check and its `listen` would leave it parked: loom reports that as a
    /// deadlock).
    #[test]
    fn async_single_creator_no_lost_wakeup() {
        loom::model(|| {
            let locks = KeyLocks::new();
            let created = Arc::new(AtomicBool::new(false));
            let creations = Arc::new(AtomicUsize::new(0));
            let other = {
                let (locks, created, creations) = (locks.clone(), created.clone(), creations.clone());
                loom::thread::spawn(move || loom::future::block_on(caller_async(&locks, &created, &creations)))
            };
            loom::future::block_on(caller_async(&locks, &created, &creations));
            other.join().unwrap();
            assert_eq!(creations.load(Ordering::SeqCst), 1);
            assert_eq!(locks.len(), 0);
        });
    }

    async fn caller_async(locks: &Arc<KeyLocks>, created: &AtomicBool, creations: &AtomicUsize) {
        loop {
            if created.load(Ordering::SeqCst) {
                return;
            }
            match locks.handle("k").try_lock() {
                Ok(guard) => {
                    if !created.load(Ordering::SeqCst) {
                        creations.fetch_add(1, Ordering::SeqCst);
                        created.store(true, Ordering::SeqCst);
                    }
                    drop(guard);
                    return;
                }
                Err(handle) => handle.wait_released_async().await,
            }
        }
    }
}
