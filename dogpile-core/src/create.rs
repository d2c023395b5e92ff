//! The dogpile lock, blocking flavour: `get_or_create` and its variants.

use crate::decision::{Action, Found, Step, after_lock, after_read, after_reread};
use crate::dist::{DistGuard, DistOutcome};
use crate::error::{Error, TryCreateError};
use crate::lock::KeyGuard;
use crate::options::{CreateOptions, Expiration};
use crate::region::{CacheValue, Lookup, Region};
use crate::stats::Counter;
use std::convert::Infallible;

/// The locks held while regenerating one key.
///
/// Fields drop in order: the distributed lock goes first, so that an
/// in-process waiter woken by the local release finds it free.
pub(crate) struct Held {
    pub(crate) _dist: Option<DistGuard>,
    pub(crate) _local: KeyGuard,
}

/// The end of [`Region::wait_distributed`].
pub(crate) enum DistWait<T> {
    /// We hold the distributed lock (or the backend has none).
    Locked(Option<DistGuard>),
    /// Another process's value is there to return.
    Landed(T),
}

/// Counts a creator that unwinds as a creation error.
pub(crate) struct PanicCounter<'a>(pub(crate) &'a Region);

impl Drop for PanicCounter<'_> {
    fn drop(&mut self) {
        self.0.count(Counter::CreationErrors);
        tracing::warn!(region = %self.0.inner.name, "creator panicked or was cancelled; the key's lock is released");
    }
}

type Spawn<'s, T, B> = Option<&'s mut dyn FnMut(B, Held, String, Expiration, CreateOptions<T>) -> Result<(), Error>>;

impl Region {
    /// Returns the cached value for `key`, or creates it with `creator`.
    ///
    /// - fresh value: returned, no lock touched;
    /// - expired value: one caller regenerates, every other caller gets the
    ///   stale value at once;
    /// - no value: one caller creates, the others wait for its result.
    ///
    /// A creator that panics releases the key's lock (its caller sees the
    /// panic, waiters go on and one of them creates). Errors are backend
    /// failures on read; a failed write after creation is logged and
    /// counted, and the created value is still returned.
    ///
    /// ```
    /// # use dogpile_core::*;
    /// # let region = Region::builder("r").build();
    /// let v: String = region.get_or_create("greeting", || "hello".to_string())?;
    /// assert_eq!(v, "hello");
    /// # Ok::<(), Error>(())
    /// ```
    pub fn get_or_create<T, F>(&self, key: &str, creator: F) -> Result<T, Error>
    where
        T: CacheValue,
        F: FnOnce() -> T,
    {
        self.get_or_create_with(key, &CreateOptions::new(), creator)
    }

    /// [`get_or_create`](Self::get_or_create) with per-call options
    /// (expiration override, should-cache predicate).
    pub fn get_or_create_with<T, F>(&self, key: &str, opts: &CreateOptions<T>, creator: F) -> Result<T, Error>
    where
        T: CacheValue,
        F: FnOnce() -> T,
    {
        self.engine::<T, Infallible, _>(key, opts, || Ok(creator()), None).map_err(|e| match e {
            TryCreateError::Cache(e) => e,
            TryCreateError::Creator(never) => match never {},
        })
    }

    /// The fallible twin: a creator returning `Err` stores nothing, releases
    /// the lock (waiters go on) and its error comes back as
    /// [`TryCreateError::Creator`]; with
    /// [`stale_if_error`](crate::RegionBuilder::stale_if_error) a stale value
    /// is served instead.
    pub fn try_get_or_create<T, E, F>(&self, key: &str, creator: F) -> Result<T, TryCreateError<E>>
    where
        T: CacheValue,
        F: FnOnce() -> Result<T, E>,
    {
        self.engine(key, &CreateOptions::new(), creator, None)
    }

    /// [`try_get_or_create`](Self::try_get_or_create) with per-call options.
    pub fn try_get_or_create_with<T, E, F>(
        &self,
        key: &str,
        opts: &CreateOptions<T>,
        creator: F,
    ) -> Result<T, TryCreateError<E>>
    where
        T: CacheValue,
        F: FnOnce() -> Result<T, E>,
    {
        self.engine(key, opts, creator, None)
    }

    /// Like [`get_or_create_with`](Self::get_or_create_with), but an expired
    /// value is regenerated on the region's [`Runner`](crate::Runner): every
    /// caller, the one that won the lock included, gets the stale value at
    /// once. A missing value is still created in the caller.
    pub fn get_or_create_background<T, F>(&self, key: &str, opts: &CreateOptions<T>, creator: F) -> Result<T, Error>
    where
        T: CacheValue,
        F: FnOnce() -> T + Send + 'static,
    {
        let mut spawn = |creator: F, held: Held, skey: String, exp: Expiration, opts: CreateOptions<T>| {
            held._local.clear_thread();
            let region = self.clone();
            let job = Box::new(move || {
                // Now the runner's thread runs the creator.
                held._local.mark_thread();
                let start = region.creation_start();
                let counter = PanicCounter(&region);
                let value = creator();
                std::mem::forget(counter);
                region.count(Counter::Creations);
                if opts.accepts(&value) {
                    let meta = region.stamp(Some(start));
                    region.store_created(&skey, &value, meta, exp);
                }
                drop(held);
            });
            self.inner.runner.spawn(job).map_err(Error::Runner)
        };
        self.engine::<T, Infallible, _>(key, opts, CreatorSlot(creator), Some(&mut spawn)).map_err(|e| match e {
            TryCreateError::Cache(e) => e,
            TryCreateError::Creator(never) => match never {},
        })
    }

    fn engine<T, E, F>(
        &self,
        key: &str,
        opts: &CreateOptions<T>,
        creator: F,
        mut spawn: Spawn<'_, T, F::Background>,
    ) -> Result<T, TryCreateError<E>>
    where
        T: CacheValue,
        F: IntoCreator<T, E>,
    {
        let skey = self.storage_key(key);
        let exp = opts.expiration.unwrap_or(self.inner.expiration);
        let mut lookup = self.lookup::<T>(&skey, exp, true)?;
        // Set once this call has waited for another caller's creation: a
        // value that turns up after that is that caller's (see `Stats`).
        let mut waited = false;
        loop {
            let found = lookup.found();
            match (after_read(found), lookup) {
                (Step::ReturnFresh, Lookup::Fresh(v)) => {
                    self.count(Counter::Hits);
                    return Ok(v);
                }
                (Step::TryLockForRegeneration, Lookup::Expired(stale)) => {
                    let held = match self.inner.locks.try_lock(&skey) {
                        None => None,
                        // A backend error while trying the distributed lock:
                        // serve the stale value we already have.
                        Some(local) => {
                            local.mark_thread();
                            match self.try_distributed(&skey) {
                                Ok(DistOutcome::Held) | Err(_) => None,
                                Ok(dist) => Some(Held { _local: local, _dist: dist.into_guard() }),
                            }
                        }
                    };
                    // With a distributed lock, another process may have just
                    // regenerated the value: read it again under the lock.
                    if held.as_ref().is_some_and(|h| h._dist.is_some())
                        && let Lookup::Fresh(v) = self.lookup::<T>(&skey, exp, false)?
                    {
                        self.count(Counter::Hits);
                        return Ok(v);
                    }
                    match (after_lock(found, held.is_some(), spawn.is_some()), held) {
                        (Action::RegenerateInBackground, Some(held)) => {
                            let spawn = spawn.as_mut().expect("background implies a spawner");
                            let creator = creator.into_background();
                            if let Err(e) = spawn(creator, held, skey.into_owned(), exp, opts.clone()) {
                                // The job was dropped with its locks; the
                                // next caller tries again.
                                tracing::warn!(region = %self.inner.name, error = %e, "background regeneration not started");
                            }
                            self.count(Counter::StaleServed);
                            return Ok(stale);
                        }
                        (Action::Regenerate, Some(held)) => {
                            return self.regenerate(&skey, exp, opts, creator, Some(stale), held);
                        }
                        _ => {
                            self.count(Counter::StaleServed);
                            return Ok(stale);
                        }
                    }
                }
                (_, _) => {
                    let local = match self.inner.locks.handle(&skey).try_lock() {
                        Ok(local) => {
                            local.mark_thread();
                            local
                        }
                        Err(handle) => {
                            debug_assert_eq!(after_lock(found, false, false), Action::WaitAndReread);
                            if handle.held_by_this_thread() {
                                return Err(Error::Reentrant { key: skey.into_owned() }.into());
                            }
                            self.count(Counter::LockWaits);
                            handle.wait_released();
                            drop(handle);
                            waited = true;
                            lookup = match self.lookup::<T>(&skey, exp, true)? {
                                Lookup::Fresh(v) => {
                                    self.count(Counter::Waited);
                                    return Ok(v);
                                }
                                // The creator failed (or its value was not
                                // cached, or is expired already): go again.
                                other => other,
                            };
                            continue;
                        }
                    };
                    // RereadThenCreate: another caller may have created it
                    // between our read and our lock.
                    let reread = self.lookup::<T>(&skey, exp, false)?;
                    let stale = match reread {
                        Lookup::Fresh(v) => {
                            debug_assert!(!after_reread(Found::Fresh));
                            self.count(if waited { Counter::Waited } else { Counter::Hits });
                            return Ok(v);
                        }
                        Lookup::Expired(v) => Some(v),
                        Lookup::Absent => None,
                    };
                    let dist = match self.wait_distributed::<T>(&skey, exp, stale.is_some(), waited)? {
                        DistWait::Locked(dist) => dist,
                        DistWait::Landed(v) => return Ok(v),
                    };
                    return self.regenerate(&skey, exp, opts, creator, stale, Held { _local: local, _dist: dist });
                }
            }
        }
    }

    /// With the in-process lock held, takes the backend's distributed lock,
    /// polling with back-off while another process holds it, until either we
    /// get it or that process's value lands. `waited` says whether the call
    /// has waited for another caller already (it decides how a value found
    /// here is counted).
    pub(crate) fn wait_distributed<T: CacheValue>(
        &self,
        skey: &str,
        exp: Expiration,
        mut have_stale: bool,
        mut waited: bool,
    ) -> Result<DistWait<T>, Error> {
        let mut attempt = 0;
        loop {
            match self.try_distributed(skey)? {
                DistOutcome::NotNeeded => return Ok(DistWait::Locked(None)),
                DistOutcome::Acquired(g) => {
                    // Another process may have stored its value and released
                    // between our last read and our acquire: read once more.
                    if let Lookup::Fresh(v) = self.lookup::<T>(skey, exp, false)? {
                        self.count(if waited { Counter::Waited } else { Counter::Hits });
                        drop(g);
                        return Ok(DistWait::Landed(v));
                    }
                    return Ok(DistWait::Locked(Some(g)));
                }
                DistOutcome::Held => {
                    // With a stale value there is nothing to wait for: another
                    // process regenerates it. Without one, wait with back-off.
                    if !have_stale {
                        if attempt == 0 {
                            self.count(Counter::LockWaits);
                        }
                        std::thread::sleep(self.dist_backoff(attempt));
                        attempt += 1;
                        waited = true;
                    }
                    match self.lookup::<T>(skey, exp, false)? {
                        Lookup::Fresh(v) => {
                            self.count(if waited { Counter::Waited } else { Counter::Hits });
                            return Ok(DistWait::Landed(v));
                        }
                        Lookup::Expired(v) => {
                            self.count(Counter::StaleServed);
                            return Ok(DistWait::Landed(v));
                        }
                        Lookup::Absent => have_stale = false,
                    }
                }
            }
        }
    }

    /// Runs the creator while holding the key's locks, stores the result,
    /// releases the locks.
    fn regenerate<T, E, F>(
        &self,
        skey: &str,
        exp: Expiration,
        opts: &CreateOptions<T>,
        creator: F,
        stale: Option<T>,
        held: Held,
    ) -> Result<T, TryCreateError<E>>
    where
        T: CacheValue,
        F: IntoCreator<T, E>,
    {
        let start = self.creation_start();
        let counter = PanicCounter(self);
        let result = creator.call();
        std::mem::forget(counter);
        match result {
            Ok(value) => {
                self.count(Counter::Misses);
                self.count(Counter::Creations);
                if opts.accepts(&value) {
                    let meta = self.stamp(Some(start));
                    self.store_created(skey, &value, meta, exp);
                }
                drop(held);
                Ok(value)
            }
            Err(e) => {
                self.count(Counter::CreationErrors);
                drop(held);
                self.creator_failed(skey, stale, e)
            }
        }
    }

    /// The outcome of a call whose creator returned `error`: the stale value
    /// under stale-if-error, else the error (a miss: the call ran its
    /// creator).
    pub(crate) fn creator_failed<T, E>(&self, skey: &str, stale: Option<T>, error: E) -> Result<T, TryCreateError<E>> {
        match stale {
            Some(stale) if self.inner.stale_if_error => {
                self.count(Counter::StaleServed);
                tracing::warn!(region = %self.inner.name, key = %skey, "creator failed; serving the stale value (stale_if_error)");
                Ok(stale)
            }
            _ => {
                self.count(Counter::Misses);
                Err(TryCreateError::Creator(error))
            }
        }
    }
}

/// A creator the engine can call inline or, for background regeneration,
/// hand over whole.
pub(crate) trait IntoCreator<T, E>: Sized {
    type Background;
    fn call(self) -> Result<T, E>;
    fn into_background(self) -> Self::Background;
}

impl<T, E, F: FnOnce() -> Result<T, E>> IntoCreator<T, E> for F {
    type Background = Self;
    fn call(self) -> Result<T, E> {
        self()
    }
    fn into_background(self) -> Self {
        self
    }
}

/// The creator of a background call: called inline when a value is
/// missing, or handed to the runner whole when one is expired.
pub(crate) struct CreatorSlot<G>(G);

impl<T, G: FnOnce() -> T> IntoCreator<T, Infallible> for CreatorSlot<G> {
    type Background = G;
    fn call(self) -> Result<T, Infallible> {
        Ok((self.0)())
    }
    fn into_background(self) -> G {
        self.0
    }
}
