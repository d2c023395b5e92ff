//! The dogpile lock, async flavour: the same decisions as `create.rs`, but
//! waiting never blocks an executor thread (waiters await the key's
//! release event), and a creating future that is dropped releases the lock
//! so another waiter takes over.
//!
//! Backends with an async client ([`Backend::as_async`](crate::Backend::as_async))
//! are called through it; the others (the memory backends never block) are
//! called directly.

use crate::create::{Held, PanicCounter};
use crate::decision::{Action, Found, Step, after_lock, after_read, after_reread};
use crate::dist::{DistGuard, DistOutcome};
use crate::error::{Error, TryCreateError};
use crate::lock::run_marked;
use crate::options::{CreateOptions, Expiration};
use crate::region::{CacheValue, Lookup, Region};
use crate::stats::Counter;
use crate::value::Meta;
use std::convert::Infallible;
use std::future::Future;

/// Hands an expired key's regeneration to the background (see
/// `background_async.rs`).
pub(crate) type SpawnAsync<'s, T, F> =
    Option<&'s mut (dyn FnMut(F, Held, String, Expiration, CreateOptions<T>) -> Result<(), Error> + Send)>;

impl Region {
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
        self.engine_async(key, opts, creator, Ok::<T, Infallible>, None, first).await.map_err(|e| match e {
            TryCreateError::Cache(e) => e,
            TryCreateError::Creator(never) => match never {},
        })
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

    /// For in-process backends (no async interface), reads the key before
    /// the engine's future is built: a fresh hit returns at once (`Ok(Ok)`),
    /// anything else is handed to the engine as its first read (`Ok(Err)`).
    /// Async backends get `Ok(Err(None))`: the engine reads them itself.
    #[inline]
    pub(crate) fn read_in_process<T: CacheValue>(
        &self,
        key: &str,
        opts: &CreateOptions<T>,
    ) -> Result<Result<T, Option<Lookup<T>>>, Error> {
        if self.inner.backend.as_async().is_some() {
            return Ok(Err(None));
        }
        let exp = opts.expiration.unwrap_or(self.inner.expiration);
        match self.lookup::<T>(&self.storage_key(key), exp, true)? {
            Lookup::Fresh(v) => {
                self.count(Counter::Hits);
                Ok(Ok(v))
            }
            other => Ok(Err(Some(other))),
        }
    }

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
        let found = self.lookup_async::<T>(&skey, exp, false).await?;
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
        let exp = expiration.into();
        let Some(ab) = self.inner.backend.as_async() else { return self.set_with(key, value, exp) };
        let skey = self.storage_key(key);
        let stored = self.encode(&skey, &value, self.stamp(None))?;
        let r = ab.set(&skey, stored, self.storage_ttl(exp)).await;
        self.backend_call(r)
    }

    /// The async twin of [`delete`](Self::delete).
    pub async fn delete_async(&self, key: &str) -> Result<(), Error> {
        let Some(ab) = self.inner.backend.as_async() else { return self.delete(key) };
        let skey = self.storage_key(key);
        let r = ab.delete(&skey).await;
        self.backend_call(r)
    }

    pub(crate) async fn lookup_async<T: CacheValue>(
        &self,
        skey: &str,
        exp: Expiration,
        early: bool,
    ) -> Result<Lookup<T>, Error> {
        let Some(ab) = self.inner.backend.as_async() else { return self.lookup(skey, exp, early) };
        let value = self.backend_call(ab.get(skey).await)?;
        Ok(match value {
            Some(v) => self.judge_value(skey, &v, exp, early),
            None => Lookup::Absent,
        })
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
        mut spawn: SpawnAsync<'_, T, F>,
        mut first: Option<Lookup<T>>,
    ) -> Result<T, TryCreateError<E>>
    where
        T: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = R>,
        M: FnOnce(R) -> Result<T, E>,
    {
        let skey = self.storage_key(key);
        let exp = opts.expiration.unwrap_or(self.inner.expiration);
        // Set once this call has waited for another caller's creation (see
        // `create.rs`).
        let mut waited = false;
        loop {
            let lookup = match first.take() {
                Some(lookup) => lookup,
                None => self.lookup_async::<T>(&skey, exp, true).await?,
            };
            let found = lookup.found();
            match (after_read(found), lookup) {
                (Step::ReturnFresh, Lookup::Fresh(v)) => {
                    self.count(Counter::Hits);
                    return Ok(v);
                }
                (Step::TryLockForRegeneration, Lookup::Expired(stale)) => {
                    let held = match self.inner.locks.try_lock(&skey) {
                        None => None,
                        Some(local) => match self.try_distributed_async(&skey).await {
                            Ok(DistOutcome::Held) | Err(_) => None,
                            Ok(dist) => Some(Held { _local: local, _dist: dist.into_guard() }),
                        },
                    };
                    // With a distributed lock, another process may have just
                    // regenerated the value: read it again under the lock.
                    if let Some(Held { _dist: Some(_), .. }) = &held
                        && let Lookup::Fresh(v) = self.lookup_async::<T>(&skey, exp, false).await?
                    {
                        self.count(Counter::Hits);
                        if let Some(Held { _dist: Some(dist), _local }) = held {
                            dist.release_async().await;
                            drop(_local);
                        }
                        return Ok(v);
                    }
                    return match (after_lock(found, held.is_some(), spawn.is_some()), held) {
                        (Action::RegenerateInBackground, Some(held)) => {
                            let spawn = spawn.as_mut().expect("background implies a spawner");
                            if let Err(e) = spawn(creator, held, skey.into_owned(), exp, opts.clone()) {
                                tracing::warn!(region = %self.inner.name, error = %e, "background regeneration not started");
                            }
                            self.count(Counter::StaleServed);
                            Ok(stale)
                        }
                        (Action::Regenerate, Some(held)) => {
                            self.regenerate_async(&skey, exp, opts, creator, map, Some(stale), held).await
                        }
                        _ => {
                            self.count(Counter::StaleServed);
                            Ok(stale)
                        }
                    };
                }
                (_, _) => {
                    let local = match self.inner.locks.handle(&skey).try_lock() {
                        Ok(local) => local,
                        Err(handle) => {
                            // Our own creator, being polled on this thread,
                            // holds the key: it would wait for itself.
                            if handle.held_by_this_thread() {
                                return Err(Error::Reentrant { key: skey.into_owned() }.into());
                            }
                            self.count(Counter::LockWaits);
                            handle.wait_released_async().await;
                            drop(handle);
                            waited = true;
                            match self.lookup_async::<T>(&skey, exp, true).await? {
                                Lookup::Fresh(v) => {
                                    self.count(Counter::Waited);
                                    return Ok(v);
                                }
                                other => first = Some(other),
                            }
                            continue;
                        }
                    };
                    let stale = match self.lookup_async::<T>(&skey, exp, false).await? {
                        Lookup::Fresh(v) => {
                            debug_assert!(!after_reread(Found::Fresh));
                            self.count(if waited { Counter::Waited } else { Counter::Hits });
                            return Ok(v);
                        }
                        Lookup::Expired(v) => Some(v),
                        Lookup::Absent => None,
                    };
                    let dist = match self.wait_distributed_async::<T>(&skey, exp, stale.is_some(), waited).await? {
                        Ok(dist) => dist,
                        Err(landed) => return Ok(landed),
                    };
                    let held = Held { _local: local, _dist: dist };
                    return self.regenerate_async(&skey, exp, opts, creator, map, stale, held).await;
                }
            }
        }
    }

    /// The async twin of `wait_distributed`: `Ok(guard)` once we hold the
    /// backend's lock (or it has none), `Err(value)` when another process's
    /// value landed meanwhile.
    pub(crate) async fn wait_distributed_async<T: CacheValue>(
        &self,
        skey: &str,
        exp: Expiration,
        mut have_stale: bool,
        mut waited: bool,
    ) -> Result<Result<Option<DistGuard>, T>, Error> {
        let mut attempt = 0;
        loop {
            match self.try_distributed_async(skey).await? {
                DistOutcome::NotNeeded => return Ok(Ok(None)),
                DistOutcome::Acquired(g) => {
                    // Another process may have stored its value and released
                    // between our last read and our acquire: read once more.
                    if let Lookup::Fresh(v) = self.lookup_async::<T>(skey, exp, false).await? {
                        self.count(if waited { Counter::Waited } else { Counter::Hits });
                        g.release_async().await;
                        return Ok(Err(v));
                    }
                    return Ok(Ok(Some(g)));
                }
                DistOutcome::Held => {
                    if !have_stale {
                        if attempt == 0 {
                            self.count(Counter::LockWaits);
                        }
                        self.sleep_async(self.dist_backoff(attempt)).await;
                        attempt += 1;
                        waited = true;
                    }
                    match self.lookup_async::<T>(skey, exp, false).await? {
                        Lookup::Fresh(v) => {
                            self.count(if waited { Counter::Waited } else { Counter::Hits });
                            return Ok(Err(v));
                        }
                        Lookup::Expired(v) => {
                            self.count(Counter::StaleServed);
                            return Ok(Err(v));
                        }
                        Lookup::Absent => have_stale = false,
                    }
                }
            }
        }
    }

    async fn sleep_async(&self, duration: std::time::Duration) {
        match self.inner.backend.as_async().and_then(|a| a.distributed_lock()) {
            Some(lock) => lock.sleep(duration).await,
            // A sync-only distributed lock on the async path: sleep on a
            // helper thread so the executor thread stays free.
            None => crate::timer::sleep(duration).await,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn regenerate_async<T, E, R, F, Fut, M>(
        &self,
        skey: &str,
        exp: Expiration,
        opts: &CreateOptions<T>,
        creator: F,
        map: M,
        stale: Option<T>,
        held: Held,
    ) -> Result<T, TryCreateError<E>>
    where
        T: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = R>,
        M: FnOnce(R) -> Result<T, E>,
    {
        let start = self.creation_start();
        // Counts a panic or a cancellation (the future dropped at this await).
        let counter = PanicCounter(self);
        let result = map(run_marked(&[&held._local], creator).await);
        std::mem::forget(counter);
        let Held { _local: local, _dist: dist } = held;
        let out = match result {
            Ok(value) => {
                self.count(Counter::Misses);
                self.count(Counter::Creations);
                if opts.accepts(&value) {
                    let meta = self.stamp(Some(start));
                    self.store_created_async(skey, &value, meta, exp).await;
                }
                Ok(value)
            }
            Err(e) => {
                self.count(Counter::CreationErrors);
                self.creator_failed(skey, stale, e)
            }
        };
        if let Some(dist) = dist {
            dist.release_async().await;
        }
        drop(local);
        out
    }

    pub(crate) async fn store_created_async<T: CacheValue>(&self, skey: &str, value: &T, meta: Meta, exp: Expiration) {
        let Some(ab) = self.inner.backend.as_async() else {
            return self.store_created(skey, value, meta, exp);
        };
        match self.encode(skey, value, meta) {
            Ok(stored) => {
                let r = ab.set(skey, stored, self.storage_ttl(exp)).await;
                let _ = self.backend_call(r);
            }
            Err(e) => {
                self.count(Counter::BackendErrors);
                tracing::warn!(region = %self.inner.name, key = %skey, error = %e, "created value not stored");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
