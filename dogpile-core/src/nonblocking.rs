//! The region's async API and the driver that runs the lock flow
//! (`flow.rs`) with async calls: waiting never blocks an executor thread
//! (waiters await the key's release event), and a creating future that is
//! dropped releases its locks so another waiter takes over.
//!
//! The backend is reached as [`AsyncIo`] says: its async interface, its
//! blocking one directly when it never blocks, or on tokio's blocking pool.

use crate::async_io::AsyncIo;
use crate::backend::{Acquire, Leased, Value};
use crate::blocking::{Creating, Settled, keep};
use crate::error::{Error, TryCreateError};
use crate::flow::{Event, Flow, Step};
use crate::held::{Held, LeaseGuard, PanicCounter};
use crate::lock::{KeyGuard, KeyHandle, run_marked};
use crate::multi::{Claim, Plan, assemble};
use crate::options::{CreateOptions, Expiration, Invalidation};
use crate::region::{CacheValue, Lookup, Region};
use crate::stats::Counter;
use crate::value::Meta;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;

/// Hands an expired key's regeneration to the background (see
/// `background_async.rs`).
pub(crate) type SpawnAsync<'s, T, F> =
    Option<&'s mut (dyn FnMut(F, Held, String, Expiration, CreateOptions<T>) -> Result<(), Error> + Send)>;

impl Region {
    /// The async twin of [`get`](Self::get).
    pub async fn get_async<T: CacheValue>(&self, key: &str) -> Result<Option<T>, Error> {
        self.get_with_async(key, self.inner.expiration).await
    }

    /// The async twin of [`get_with`](Self::get_with).
    pub async fn get_with_async<T: CacheValue>(
        &self,
        key: &str,
        expiration: impl Into<Expiration>,
    ) -> Result<Option<T>, Error> {
        let exp = expiration.into();
        let skey = self.storage_key(key);
        let io = self.async_io()?;
        let found = self.lookup_async::<T>(&io, &skey, exp, false).await?;
        Ok(self.count_get(found))
    }

    /// The async twin of [`set`](Self::set).
    pub async fn set_async<T: CacheValue>(&self, key: &str, value: T) -> Result<(), Error> {
        self.set_with_async(key, value, self.inner.expiration).await
    }

    /// The async twin of [`set_with`](Self::set_with).
    pub async fn set_with_async<T: CacheValue>(
        &self,
        key: &str,
        value: T,
        expiration: impl Into<Expiration>,
    ) -> Result<(), Error> {
        let io = self.async_io()?;
        let skey = self.storage_key(key);
        let stored = self.encode(&skey, &value, self.stamp(None))?;
        let r = io.set(&skey, stored, self.storage_ttl(expiration.into())).await;
        self.withdraw_stale([&*skey]);
        self.backend_call(r)
    }

    /// The async twin of [`delete`](Self::delete).
    pub async fn delete_async(&self, key: &str) -> Result<(), Error> {
        let io = self.async_io()?;
        let skey = self.storage_key(key);
        let r = io.delete(&skey).await;
        self.withdraw_stale([&*skey]);
        self.backend_call(r)
    }

    /// The async twin of [`invalidate`](Self::invalidate): on a backend that
    /// shares invalidations, returns once the backend keeps it (or with its
    /// error; this process's invalidation holds either way).
    pub async fn invalidate_async(&self, how: Invalidation) -> Result<(), Error> {
        if self.inner.shared_invalidation.is_none() {
            self.inner.invalidations.record(self.inner.clock.now(), how);
            return Ok(());
        }
        let io = match self.async_io() {
            Ok(io) => io,
            Err(e) => {
                // This process's invalidation holds even when it cannot be shared.
                self.inner.invalidations.record(self.inner.clock.now(), how);
                return Err(e);
            }
        };
        // The stored word first, so ours is later than it (see `invalidate`).
        match io.load_invalidation(&self.inner.name).await {
            Ok(word) => self.adopt_invalidation(word),
            Err(e) => drop(self.backend_error(e)),
        }
        self.inner.invalidations.record(self.inner.clock.now(), how);
        let r = io.store_invalidation(&self.inner.name, self.inner.invalidations.word()).await;
        self.backend_call(r)
    }

    /// The async twin of [`get_or_create`](Self::get_or_create): one task
    /// creates a missing value while the others await it (without blocking
    /// their threads); an expired value is served stale to every task but
    /// the one regenerating it.
    ///
    /// ```
    /// # use dogpile_core::*;
    /// # let region = Region::builder("r").build();
    /// # let fut = async {
    /// let v: u64 = region.get_or_create_async("k", || async { 42 }).await?;
    /// # assert_eq!(v, 42);
    /// # Ok::<(), Error>(())
    /// # };
    /// ```
    pub async fn get_or_create_async<T, F, Fut>(&self, key: &str, creator: F) -> Result<T, Error>
    where
        T: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        self.get_or_create_async_with(key, &CreateOptions::new(), creator).await
    }

    /// [`get_or_create_async`](Self::get_or_create_async) with per-call options.
    pub async fn get_or_create_async_with<T, F, Fut>(
        &self,
        key: &str,
        opts: &CreateOptions<T>,
        creator: F,
    ) -> Result<T, Error>
    where
        T: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let first = match self.read_in_process(key, opts) {
            Ok(Ok(fresh)) => return Ok(fresh),
            Ok(Err(first)) => first,
            Err(e) => return Err(e),
        };
        self.engine_async(key, opts, creator, Ok::<T, Infallible>, None, first)
            .await
            .map_err(TryCreateError::into_cache)
    }

    /// The async twin of [`try_get_or_create`](Self::try_get_or_create).
    pub async fn try_get_or_create_async<T, E, F, Fut>(&self, key: &str, creator: F) -> Result<T, TryCreateError<E>>
    where
        T: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.try_get_or_create_async_with(key, &CreateOptions::new(), creator).await
    }

    /// [`try_get_or_create_async`](Self::try_get_or_create_async) with per-call options.
    pub async fn try_get_or_create_async_with<T, E, F, Fut>(
        &self,
        key: &str,
        opts: &CreateOptions<T>,
        creator: F,
    ) -> Result<T, TryCreateError<E>>
    where
        T: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let first = match self.read_in_process(key, opts) {
            Ok(Ok(fresh)) => return Ok(fresh),
            Ok(Err(first)) => first,
            Err(e) => return Err(e.into()),
        };
        self.engine_async(key, opts, creator, |r| r, None, first).await
    }

    /// For backends that never block, reads the key before the engine's
    /// future is built: a fresh hit returns at once (`Ok(Ok)`), anything
    /// else is handed to the engine as its first read (`Ok(Err)`). Other
    /// backends get `Ok(Err(None))`: the engine reads them itself.
    #[inline]
    pub(crate) fn read_in_process<T: CacheValue>(
        &self,
        key: &str,
        opts: &CreateOptions<T>,
    ) -> Result<Result<T, Option<Lookup<T>>>, Error> {
        if !self.inner.reads_in_process {
            return Ok(Err(None));
        }
        let exp = opts.expiration.unwrap_or(self.inner.expiration);
        let skey = self.storage_key(key);
        if let Some(v) = self.fresh_in_process::<T>(&skey, exp, true) {
            self.count(Counter::Hits);
            return Ok(Ok(v));
        }
        match self.lookup::<T>(&skey, exp, true)? {
            Lookup::Fresh(v) => {
                self.count(Counter::Hits);
                Ok(Ok(v))
            }
            other => Ok(Err(Some(other))),
        }
    }

    /// Reads and judges one key through `io`.
    pub(crate) async fn lookup_async<T: CacheValue>(
        &self,
        io: &AsyncIo<'_>,
        skey: &str,
        exp: Expiration,
        early: bool,
    ) -> Result<Lookup<T>, Error> {
        if let AsyncIo::Direct(_) = io {
            return self.lookup(skey, exp, early);
        }
        self.refresh_invalidation_async(io).await;
        let value = self.backend_call(io.get(skey).await)?;
        Ok(self.judge_read(skey, value, exp, early))
    }

    /// Adopts the invalidation another process stored in the backend, at
    /// most once per refresh interval.
    async fn refresh_invalidation_async(&self, io: &AsyncIo<'_>) {
        if self.invalidation_refresh_due() {
            match io.load_invalidation(&self.inner.name).await {
                Ok(word) => self.adopt_invalidation(word),
                Err(e) => drop(self.backend_error(e)),
            }
        }
    }

    /// The async engine. `map` turns the creator's output into a result
    /// (`Ok` for infallible creators); `spawn`, when given, hands an expired
    /// key's regeneration to the background with its locks.
    pub(crate) async fn engine_async<T, E, R, F, Fut, M>(
        &self,
        key: &str,
        opts: &CreateOptions<T>,
        creator: F,
        map: M,
        spawn: SpawnAsync<'_, T, F>,
        first: Option<Lookup<T>>,
    ) -> Result<T, TryCreateError<E>>
    where
        T: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = R>,
        M: FnOnce(R) -> Result<T, E>,
    {
        let io = self.async_io()?;
        let skey = self.storage_key(key);
        let exp = opts.expiration.unwrap_or(self.inner.expiration);
        let first = match first {
            Some(first) => first,
            None if let Some(v) = self.stale_while_creating::<T>(&skey, exp) => return Ok(v),
            None => match self.lookup_async::<T>(&io, &skey, exp, true).await? {
                Lookup::Fresh(v) => {
                    self.count(Counter::Hits);
                    return Ok(v);
                }
                other => other,
            },
        };
        let mut flow = Flow::new(self.inner.leases, spawn.is_some(), false);
        let creating = match self.settle_async(&io, &skey, exp, first, &mut flow).await? {
            Settled::Ready(v) => return Ok(v),
            Settled::Create(c) => c,
        };
        if let (true, Some(spawn)) = (creating.background, spawn) {
            let Creating { held, stale, .. } = creating;
            let stale = stale.expect("the flow regenerates in the background only with a stale value");
            if let Err(e) = spawn(creator, held, skey.into_owned(), exp, opts.clone()) {
                tracing::warn!(region = %self.inner.name, error = %e, "background regeneration not started");
            }
            self.count(Counter::StaleServed);
            return Ok(stale);
        }
        let Creating { held, stale, .. } = creating;
        let start = self.creation_start();
        // Counts a panic or a cancellation (the future dropped at this await).
        let counter = PanicCounter(self);
        let result = map(run_marked(&[held.local()], creator).await);
        std::mem::forget(counter);
        let out = match result {
            Ok(value) => {
                self.count(Counter::Misses);
                self.count(Counter::Creations);
                if opts.accepts(&value) {
                    let meta = self.stamp(Some(start));
                    self.store_created_async(&io, &skey, &value, meta, exp).await;
                }
                Ok(value)
            }
            Err(e) => {
                self.count(Counter::CreationErrors);
                Err(e)
            }
        };
        held.release_async().await;
        match out {
            Ok(v) => Ok(v),
            Err(e) => self.creator_failed(&skey, stale, e),
        }
    }

    /// The async twin of `settle` (`blocking.rs`): the same flow, every wait
    /// awaited.
    pub(crate) async fn settle_async<T: CacheValue>(
        &self,
        io: &AsyncIo<'_>,
        skey: &str,
        exp: Expiration,
        first: Lookup<T>,
        flow: &mut Flow,
    ) -> Result<Settled<T>, Error> {
        let (mut last, mut stale) = (None, None);
        // Declared before `lease`, so an early return drops the lease first.
        let mut local: Option<KeyGuard> = None;
        let mut waiting: Option<KeyHandle> = None;
        let mut lease: Option<LeaseGuard> = None;
        let mut lease_error = None;
        let mut step = flow.on(Event::Read(keep(first, &mut last, &mut stale)));
        loop {
            let event = match step {
                Step::Read { early } => {
                    Event::Read(keep(self.lookup_async::<T>(io, skey, exp, early).await?, &mut last, &mut stale))
                }
                Step::TryLocal { wait } => {
                    local = if wait {
                        self.inner.locks.handle(skey).try_lock().map_err(|h| waiting = Some(h)).ok()
                    } else {
                        self.inner.locks.try_lock(skey)
                    };
                    if let Some(g) = &local {
                        self.publish_stale(g, &stale);
                    }
                    Event::Local(local.is_some())
                }
                Step::WaitLocal => {
                    let handle = waiting.take().expect("the flow waits only after a failed try");
                    // Our own creator, being polled on this thread, holds the
                    // key: it would wait for itself.
                    if handle.held_by_this_thread() {
                        return Err(Error::Reentrant { key: skey.to_owned() });
                    }
                    self.count(Counter::LockWaits);
                    handle.wait_released_async().await;
                    Event::LocalReleased
                }
                Step::Lease => match io.read_and_lease(skey, self.inner.lock_timeout).await {
                    Ok((Leased { value, acquire }, origin)) => {
                        let found = keep(self.judge_read(skey, value, exp, false), &mut last, &mut stale);
                        let won = match acquire {
                            Acquire::Won(l) => {
                                lease = Some(LeaseGuard::new(self, skey, l, origin));
                                true
                            }
                            Acquire::Held => false,
                        };
                        Event::Leased { won, found }
                    }
                    Err(e) => {
                        lease_error = Some(self.backend_error(e));
                        Event::LeaseFailed
                    }
                },
                Step::WaitRelease { attempt } => {
                    if attempt == 0 {
                        self.count(Counter::LockWaits);
                    }
                    let woken = match io.wait_released(skey, self.inner.lock_timeout).await {
                        Ok(woken) => woken,
                        Err(e) => {
                            drop(self.backend_error(e));
                            false
                        }
                    };
                    if !woken {
                        io.sleep(self.backoff(attempt)).await;
                    }
                    Event::Waited
                }
                Step::Create { background } => {
                    let local = local.take().expect("the flow creates under the in-process lock");
                    return Ok(Settled::Create(Creating {
                        held: Held::new(lease, local),
                        stale: stale.map(|(v, _)| v),
                        background,
                    }));
                }
                Step::Return(counter) => {
                    self.count(counter);
                    Self::release_unused(&mut lease, &mut local).await;
                    return Ok(Settled::Ready(last.expect("the flow returns a value it was told of")));
                }
                Step::ReturnStale => {
                    self.count(Counter::StaleServed);
                    Self::release_unused(&mut lease, &mut local).await;
                    return Ok(Settled::Ready(stale.expect("the flow serves a stale value it was told of").0));
                }
                Step::Fail => return Err(lease_error.take().expect("the flow fails on a lease error")),
            };
            step = flow.on(event);
        }
    }

    /// Releases a lease won for nothing (the value was there), the
    /// in-process lock after it, also if this future is dropped meanwhile.
    async fn release_unused(lease: &mut Option<LeaseGuard>, local: &mut Option<KeyGuard>) {
        if let (Some(lease), Some(local)) = (lease.take(), local.take()) {
            Held::new(Some(lease), local).release_async().await;
        }
    }

    pub(crate) async fn store_created_async<T: CacheValue>(
        &self,
        io: &AsyncIo<'_>,
        skey: &str,
        value: &T,
        meta: Meta,
        exp: Expiration,
    ) {
        let Some(stored) = self.encode_created(skey, value, meta) else { return };
        let r = io.set(skey, stored, self.storage_ttl(exp)).await;
        let _ = self.backend_call(r);
    }

    // ----- several keys at once -----

    /// The async twin of [`get_multi`](Self::get_multi).
    pub async fn get_multi_async<T: CacheValue, K: AsRef<str>>(&self, keys: &[K]) -> Result<Vec<Option<T>>, Error> {
        let io = self.async_io()?;
        let skeys = self.storage_keys(keys);
        let refs: Vec<&str> = skeys.iter().map(|k| &**k).collect();
        self.refresh_invalidation_async(&io).await;
        let values = self.checked_slots(refs.len(), io.get_multi(&refs).await)?;
        Ok(self.fresh_slots(&refs, values))
    }

    /// The async twin of [`set_multi`](Self::set_multi).
    pub async fn set_multi_async<T: CacheValue, K: AsRef<str>>(
        &self,
        items: impl IntoIterator<Item = (K, T)>,
    ) -> Result<(), Error> {
        let io = self.async_io()?;
        let encoded = self.encode_items(items)?;
        if encoded.is_empty() {
            return Ok(());
        }
        let (keys, values): (Vec<String>, Vec<Value>) = encoded.into_iter().unzip();
        let batch = keys.iter().map(String::as_str).zip(values).collect();
        let r = io.set_multi(batch, self.storage_ttl(self.inner.expiration)).await;
        self.withdraw_stale(keys.iter().map(String::as_str));
        self.backend_call(r)
    }

    /// The async twin of [`delete_multi`](Self::delete_multi).
    pub async fn delete_multi_async<K: AsRef<str>>(&self, keys: &[K]) -> Result<(), Error> {
        let io = self.async_io()?;
        if keys.is_empty() {
            return Ok(());
        }
        let skeys = self.storage_keys(keys);
        let refs: Vec<&str> = skeys.iter().map(|k| &**k).collect();
        let r = io.delete_multi(&refs).await;
        self.withdraw_stale(refs.iter().copied());
        self.backend_call(r)
    }

    /// The async twin of [`get_or_create_multi`](Self::get_or_create_multi).
    /// The creator gets the keys to create (sorted, de-duplicated, owned so
    /// its future may keep them) and returns one value per key in that order.
    ///
    /// ```
    /// # use dogpile_core::*;
    /// # let region = Region::builder("r").build();
    /// # let fut = async {
    /// let v: Vec<usize> = region
    ///     .get_or_create_multi_async(&["bb", "a"], |missing| async move {
    ///         missing.iter().map(|k| k.len()).collect()
    ///     })
    ///     .await?;
    /// assert_eq!(v, [2, 1]);
    /// # Ok::<(), Error>(())
    /// # };
    /// ```
    pub async fn get_or_create_multi_async<T, K, F, Fut>(&self, keys: &[K], creator: F) -> Result<Vec<T>, Error>
    where
        T: CacheValue,
        K: AsRef<str>,
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = Vec<T>>,
    {
        self.get_or_create_multi_async_with(keys, &CreateOptions::new(), creator).await
    }

    /// [`get_or_create_multi_async`](Self::get_or_create_multi_async) with
    /// per-call options.
    pub async fn get_or_create_multi_async_with<T, K, F, Fut>(
        &self,
        keys: &[K],
        opts: &CreateOptions<T>,
        creator: F,
    ) -> Result<Vec<T>, Error>
    where
        T: CacheValue,
        K: AsRef<str>,
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = Vec<T>>,
    {
        let io = self.async_io()?;
        let exp = opts.expiration.unwrap_or(self.inner.expiration);
        let Plan { unique, skeys, order, aliases } = self.plan(keys);
        let mut ready: HashMap<&str, T> = HashMap::with_capacity(unique.len());
        let refs: Vec<&str> = order.iter().map(|&i| &*skeys[i]).collect();
        self.refresh_invalidation_async(&io).await;
        let first = self.checked_slots(refs.len(), io.get_multi(&refs).await)?;

        let mut claims: Vec<Claim<'_>> = Vec::new();
        let mut waited = false;
        for (&i, value) in order.iter().zip(first) {
            let (key, skey) = (unique[i], skeys[i].clone());
            let lookup = self.judge_read(&skey, value, exp, true);
            let mut flow = Flow::new(self.inner.leases, false, waited);
            let settled = self.settle_async::<T>(&io, &skey, exp, lookup, &mut flow).await?;
            waited = flow.waited();
            match settled {
                Settled::Ready(v) => {
                    ready.insert(key, v);
                }
                Settled::Create(c) => claims.push(Claim { key, skey, held: c.held }),
            }
        }
        claims.sort_by(|a, b| a.key.cmp(b.key));

        if !claims.is_empty() {
            let to_create: Vec<String> = claims.iter().map(|c| c.key.to_owned()).collect();
            let start = self.creation_start();
            // Counts a panic or a cancellation of the creator.
            let counter = PanicCounter(self);
            let guards: Vec<&KeyGuard> = claims.iter().map(|c| c.held.local()).collect();
            let created = run_marked(&guards, || creator(to_create)).await;
            std::mem::forget(counter);
            let stored = match self.created_batch(&claims, &created, opts, start) {
                Ok(batch) if batch.is_empty() => Ok(()),
                Ok(batch) => {
                    let r = io.set_multi(batch, self.storage_ttl(exp)).await;
                    let _ = self.backend_call(r);
                    Ok(())
                }
                Err(e) => Err(e),
            };
            let claimed: Vec<&str> = claims.iter().map(|c| c.key).collect();
            for claim in claims {
                claim.held.release_async().await;
            }
            stored?;
            for (key, value) in claimed.into_iter().zip(created) {
                ready.insert(key, value);
            }
        }
        Ok(assemble(keys, ready, aliases))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn assert_send<F: Future + Send>(f: F) -> F {
        f
    }

    #[test]
    fn futures_are_send() {
        let region = Region::builder("r").build();
        drop(assert_send(region.get_or_create_async("k", || async { 1u8 })));
        drop(assert_send(region.try_get_or_create_async("k", || async { Ok::<u8, String>(1) })));
        drop(assert_send(region.get_async::<u8>("k")));
        drop(assert_send(region.set_async("k", 1u8)));
        drop(assert_send(region.delete_async("k")));
        drop(assert_send(region.invalidate_async(Invalidation::Soft)));
        drop(assert_send(region.get_multi_async::<u8, _>(&["a"])));
        drop(assert_send(region.set_multi_async([("a", 1u8)])));
        drop(assert_send(region.delete_multi_async(&["a"])));
        drop(assert_send(region.get_or_create_multi_async(&["a"], |k| async move { vec![k.len() as u8] })));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn concurrent_multi_key_tasks_create_each_key_once() {
        #[derive(Debug)]
        struct Map(std::sync::Mutex<HashMap<String, crate::backend::Value>>);
        impl crate::backend::Backend for Map {
            fn name(&self) -> &'static str {
                "map"
            }
            fn value_kind(&self) -> crate::backend::ValueKind {
                crate::backend::ValueKind::Object
            }
            fn blocking(&self) -> Option<&dyn crate::backend::BlockingBackend> {
                Some(self)
            }
            fn never_blocks(&self) -> bool {
                true
            }
        }
        impl crate::backend::BlockingBackend for Map {
            fn get(&self, key: &str) -> Result<Option<crate::backend::Value>, crate::backend::BackendError> {
                Ok(self.0.lock().unwrap().get(key).cloned())
            }
            fn set(
                &self,
                key: &str,
                v: crate::backend::Value,
                _: Option<std::time::Duration>,
            ) -> Result<(), crate::backend::BackendError> {
                self.0.lock().unwrap().insert(key.to_owned(), v);
                Ok(())
            }
            fn delete(&self, key: &str) -> Result<(), crate::backend::BackendError> {
                self.0.lock().unwrap().remove(key);
                Ok(())
            }
        }
        let region = Region::builder("multi-async").backend(Map(Default::default())).build();
        let per_key: Arc<std::sync::Mutex<HashMap<String, usize>>> = Arc::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let (region, per_key, calls) = (region.clone(), per_key.clone(), calls.clone());
                tokio::spawn(async move {
                    let keys = [format!("k{}", t % 3), "shared".to_string(), format!("k{}", (t + 1) % 3)];
                    region
                        .get_or_create_multi_async(&keys, |missing| async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            tokio::task::yield_now().await;
                            for k in &missing {
                                *per_key.lock().unwrap().entry(k.clone()).or_default() += 1;
                            }
                            missing.iter().map(|k| format!("v-{k}")).collect::<Vec<String>>()
                        })
                        .await
                        .unwrap()
                })
            })
            .collect();
        for (t, task) in tasks.into_iter().enumerate() {
            let got = task.await.unwrap();
            assert_eq!(got, [format!("v-k{}", t % 3), "v-shared".into(), format!("v-k{}", (t + 1) % 3)]);
        }
        let per_key = per_key.lock().unwrap();
        assert_eq!(per_key.len(), 4, "{per_key:?}");
        assert!(per_key.values().all(|&n| n == 1), "a key was created twice: {per_key:?}");
    }
}
