//! The region's blocking API and the driver that runs the lock flow
//! (`flow.rs`) with blocking calls: reads, writes, `get_or_create` and its
//! variants, and their multi-key forms.

use crate::backend::{Acquire, Leased, Value};
use crate::error::{BackendError, Error, TryCreateError};
use crate::flow::{Event, Flow, Found, Step, after_failure};
use crate::held::{Held, LeaseGuard, Origin, PanicCounter};
use crate::lock::{KeyGuard, KeyHandle};
use crate::multi::{Claim, Plan, assemble};
use crate::options::{CreateOptions, Expiration};
use crate::region::{CacheValue, Entry, Lookup, Region};
use crate::stats::Counter;
use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

/// The end of one key's flow: a value to return, or the locks to create it.
pub(crate) enum Settled<T> {
    Ready(T),
    Create(Creating<T>),
}

/// A key this caller creates, with its locks and the stale value (if any)
/// to serve meanwhile or on failure.
pub(crate) struct Creating<T> {
    pub(crate) held: Held,
    pub(crate) stale: Option<T>,
    pub(crate) background: bool,
}

/// Keeps what a read found: the fresh value to return, or the stale one to
/// serve (the latest read's: a value gone since is not served); the flow
/// gets the verdict.
pub(crate) fn keep<T>(lookup: Lookup<T>, last: &mut Option<T>, stale: &mut Option<(T, crate::value::Meta)>) -> Found {
    match lookup {
        Lookup::Fresh(v) => {
            *last = Some(v);
            Found::Fresh
        }
        Lookup::Expired(v, meta) => {
            *stale = Some((v, meta));
            Found::Expired
        }
        Lookup::Absent => {
            *stale = None;
            Found::Absent
        }
    }
}

type Spawn<'s, T, B> = Option<&'s mut dyn FnMut(B, Held, String, Expiration, CreateOptions<T>) -> Result<(), Error>>;

impl Region {
    /// Reads a fresh value: `None` if absent, expired, invalidated, or not
    /// decodable as `T`.
    pub fn get<T: CacheValue>(&self, key: &str) -> Result<Option<T>, Error> {
        self.get_with(key, self.inner.expiration)
    }

    /// Like [`get`](Self::get), judging freshness by `expiration` instead of
    /// the region's (for values stored with a per-call expiration).
    pub fn get_with<T: CacheValue>(&self, key: &str, expiration: impl Into<Expiration>) -> Result<Option<T>, Error> {
        let skey = self.storage_key(key);
        let expiration = expiration.into();
        if let Some(v) = self.fresh_in_process::<T>(&skey, expiration, false) {
            self.count(Counter::Hits);
            return Ok(Some(v));
        }
        let found = self.lookup::<T>(&skey, expiration, false)?;
        Ok(self.count_get(found))
    }

    /// Reads a value with its metadata, expired or not (hard-invalidated
    /// values are `None`).
    pub fn get_entry<T: CacheValue>(&self, key: &str) -> Result<Option<Entry<T>>, Error> {
        let skey = self.storage_key(key);
        self.entry_of(&skey)
    }

    /// Stores `value` under `key`, created now.
    pub fn set<T: CacheValue>(&self, key: &str, value: T) -> Result<(), Error> {
        self.set_with(key, value, self.inner.expiration)
    }

    /// Like [`set`](Self::set), for a value judged by `expiration` rather
    /// than the region's: the backend keeps it as long as that expiration
    /// needs (plus the storage grace).
    pub fn set_with<T: CacheValue>(&self, key: &str, value: T, expiration: impl Into<Expiration>) -> Result<(), Error> {
        let skey = self.storage_key(key);
        let stored = self.encode(&skey, &value, self.stamp(None))?;
        let ttl = self.storage_ttl(expiration.into());
        let io = self.blocking_io()?;
        let r = self.backend_call(io.set(&skey, stored, ttl));
        self.withdraw_stale([&*skey]);
        r
    }

    /// Deletes `key`; deleting a missing key is not an error.
    pub fn delete(&self, key: &str) -> Result<(), Error> {
        let skey = self.storage_key(key);
        let io = self.blocking_io()?;
        let r = self.backend_call(io.delete(&skey));
        self.withdraw_stale([&*skey]);
        r
    }

    /// Returns the cached value for `key`, or creates it with `creator`.
    ///
    /// - fresh value: returned, no lock touched;
    /// - expired value: one caller regenerates, every other caller gets the
    ///   stale value at once;
    /// - no value: one caller creates, the others wait for its result.
    ///
    /// On a backend shared between processes this holds across processes
    /// too (see [`backend`](crate::backend)). A creator that panics releases
    /// the key's lock (its caller sees the panic, waiters go on and one of
    /// them creates). Errors are backend failures on read; a failed write
    /// after creation is logged and counted, and the created value is still
    /// returned.
    ///
    /// ```
    /// # use dogpile_core::*;
    /// # let region = Region::builder("r").build();
    /// let v: String = region.get_or_create("greeting", || "hello".to_string())?;
    /// assert_eq!(v, "hello");
    /// # Ok::<(), Error>(())
    /// ```
    #[inline]
    pub fn get_or_create<T, F>(&self, key: &str, creator: F) -> Result<T, Error>
    where
        T: CacheValue,
        F: FnOnce() -> T,
    {
        if let Some(v) = self.hit(key, self.inner.expiration) {
            return Ok(v);
        }
        self.get_or_create_with(key, &CreateOptions::new(), creator)
    }

    /// [`get_or_create`](Self::get_or_create) with per-call options
    /// (expiration override, should-cache predicate).
    #[inline]
    pub fn get_or_create_with<T, F>(&self, key: &str, opts: &CreateOptions<T>, creator: F) -> Result<T, Error>
    where
        T: CacheValue,
        F: FnOnce() -> T,
    {
        if let Some(v) = self.hit(key, opts.expiration.unwrap_or(self.inner.expiration)) {
            return Ok(v);
        }
        self.create_or_wait(key, opts, creator)
    }

    /// The rest of [`get_or_create_with`](Self::get_or_create_with) after
    /// its hit step, kept out of line so that the hit inlines small.
    #[inline(never)]
    fn create_or_wait<T, F>(&self, key: &str, opts: &CreateOptions<T>, creator: F) -> Result<T, Error>
    where
        T: CacheValue,
        F: FnOnce() -> T,
    {
        self.engine::<T, Infallible, _>(key, opts, || Ok(creator()), None).map_err(TryCreateError::into_cache)
    }

    /// The hit step the public calls inline into their caller: a fresh value
    /// of an in-process map, counted, returned in registers (a `Result`
    /// carrying an `Error` comes back through memory, and reading a value
    /// back from there right after it was written stalls the caller). `None`
    /// for everything else, which takes the engine (which looks again).
    #[inline(always)]
    fn hit<T: CacheValue>(&self, key: &str, exp: Expiration) -> Option<T> {
        // Only plain keys of an in-process map: a key the region maps (a
        // mangler, key limits) is mapped once, by the engine, and so are
        // byte backends' keys.
        self.inner.fast_map.as_ref()?;
        if self.inner.key_mangler.is_some() || self.inner.key_limits.is_some() {
            return None;
        }
        let v = self.fresh_in_process::<T>(key, exp, true)?;
        self.count(Counter::Hits);
        Some(v)
    }

    /// The fallible twin: a creator returning `Err` stores nothing, releases
    /// the lock (waiters go on) and its error comes back as
    /// [`TryCreateError::Creator`]; with
    /// [`stale_if_error`](crate::RegionBuilder::stale_if_error) a stale value
    /// is served instead.
    #[inline]
    pub fn try_get_or_create<T, E, F>(&self, key: &str, creator: F) -> Result<T, TryCreateError<E>>
    where
        T: CacheValue,
        F: FnOnce() -> Result<T, E>,
    {
        if let Some(v) = self.hit(key, self.inner.expiration) {
            return Ok(v);
        }
        self.engine(key, &CreateOptions::new(), creator, None)
    }

    /// [`try_get_or_create`](Self::try_get_or_create) with per-call options.
    #[inline]
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
        if let Some(v) = self.hit(key, opts.expiration.unwrap_or(self.inner.expiration)) {
            return Ok(v);
        }
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
            held.local().clear_thread();
            let region = self.clone();
            let job = Box::new(move || {
                // Now the runner's thread runs the creator.
                held.local().mark_thread();
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
        self.engine::<T, Infallible, _>(key, opts, CreatorSlot(creator), Some(&mut spawn))
            .map_err(TryCreateError::into_cache)
    }

    fn engine<T, E, F>(
        &self,
        key: &str,
        opts: &CreateOptions<T>,
        creator: F,
        spawn: Spawn<'_, T, F::Background>,
    ) -> Result<T, TryCreateError<E>>
    where
        T: CacheValue,
        F: IntoCreator<T, E>,
    {
        let skey = self.storage_key(key);
        let exp = opts.expiration.unwrap_or(self.inner.expiration);
        // The hit path: no flow, no lock.
        if let Some(v) = self.fresh_in_process::<T>(&skey, exp, true) {
            self.count(Counter::Hits);
            return Ok(v);
        }
        if let Some(v) = self.stale_while_creating::<T>(&skey, exp) {
            return Ok(v);
        }
        let first = match self.lookup::<T>(&skey, exp, true)? {
            Lookup::Fresh(v) => {
                self.count(Counter::Hits);
                return Ok(v);
            }
            other => other,
        };
        let mut flow = Flow::new(self.inner.leases, spawn.is_some(), false);
        let creating = match self.settle(&skey, exp, first, &mut flow)? {
            Settled::Ready(v) => return Ok(v),
            Settled::Create(c) => c,
        };
        if let (true, Some(spawn)) = (creating.background, spawn) {
            let Creating { held, stale, .. } = creating;
            let stale = stale.expect("the flow regenerates in the background only with a stale value");
            if let Err(e) = spawn(creator.into_background(), held, skey.into_owned(), exp, opts.clone()) {
                // The job was dropped with its locks; the next caller tries again.
                tracing::warn!(region = %self.inner.name, error = %e, "background regeneration not started");
            }
            self.count(Counter::StaleServed);
            return Ok(stale);
        }
        let Creating { held, stale, .. } = creating;
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
                    self.store_created(&skey, &value, meta, exp);
                }
                drop(held);
                Ok(value)
            }
            Err(e) => {
                self.count(Counter::CreationErrors);
                drop(held);
                self.creator_failed(&skey, stale, e)
            }
        }
    }

    /// Runs the lock flow for one key, from its first read, until it yields
    /// a value to return or the locks to create it.
    pub(crate) fn settle<T: CacheValue>(
        &self,
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
                Step::Read { early } => Event::Read(keep(self.lookup::<T>(skey, exp, early)?, &mut last, &mut stale)),
                Step::TryLocal { wait } => {
                    let guard = if wait {
                        self.inner.locks.handle(skey).try_lock().map_err(|h| waiting = Some(h)).ok()
                    } else {
                        self.inner.locks.try_lock(skey)
                    };
                    if let Some(g) = &guard {
                        g.mark_thread();
                        self.publish_stale(g, &stale);
                    }
                    local = guard;
                    Event::Local(local.is_some())
                }
                Step::WaitLocal => {
                    let handle = waiting.take().expect("the flow waits only after a failed try");
                    if handle.held_by_this_thread() {
                        return Err(Error::Reentrant { key: skey.to_owned() });
                    }
                    self.count(Counter::LockWaits);
                    handle.wait_released();
                    Event::LocalReleased
                }
                Step::Lease => match self.blocking_io()?.read_and_lease(skey, self.inner.lock_timeout) {
                    Ok(Leased { value, acquire }) => {
                        let found = keep(self.judge_read(skey, value, exp, false), &mut last, &mut stale);
                        let won = match acquire {
                            Acquire::Won(l) => {
                                lease = Some(LeaseGuard::new(self, skey, l, Origin::Blocking));
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
                    self.wait_for_release(skey, attempt);
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
                    drop(lease);
                    return Ok(Settled::Ready(last.expect("the flow returns a value it was told of")));
                }
                Step::ReturnStale => {
                    self.count(Counter::StaleServed);
                    drop(lease);
                    return Ok(Settled::Ready(stale.expect("the flow serves a stale value it was told of").0));
                }
                Step::Fail => return Err(lease_error.take().expect("the flow fails on a lease error")),
            };
            step = flow.on(event);
        }
    }

    /// Waits while another process holds `skey`'s lease: the backend's
    /// wake-up if it has one, else a back-off with jitter.
    fn wait_for_release(&self, skey: &str, attempt: u32) {
        let woken = match self.blocking_io().map(|io| io.wait_released(skey, self.inner.lock_timeout)) {
            Ok(Ok(woken)) => woken,
            Ok(Err(e)) => {
                let _ = self.backend_error(e);
                false
            }
            Err(_) => false,
        };
        if !woken {
            std::thread::sleep(self.backoff(attempt));
        }
    }

    /// The outcome of a call whose creator returned `error`: the stale value
    /// under stale-if-error, else the error (a miss: the call ran its
    /// creator).
    pub(crate) fn creator_failed<T, E>(&self, skey: &str, stale: Option<T>, error: E) -> Result<T, TryCreateError<E>> {
        match (after_failure(stale.is_some(), self.inner.stale_if_error), stale) {
            (Step::ReturnStale, Some(stale)) => {
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

    /// Stores a created value; a failure is logged and counted but not
    /// returned (the caller still gets its value).
    pub(crate) fn store_created<T: CacheValue>(
        &self,
        skey: &str,
        value: &T,
        meta: crate::backend::Meta,
        exp: Expiration,
    ) {
        let Some(stored) = self.encode_created(skey, value, meta) else { return };
        let r = self.blocking_io().and_then(|io| self.backend_call(io.set(skey, stored, self.storage_ttl(exp))));
        if let Err(e) = r {
            tracing::warn!(region = %self.inner.name, key = %skey, error = %e, "created value not stored");
        }
    }

    // ----- several keys at once -----

    /// Reads fresh values for several keys; `None` in the slots of keys that
    /// are absent, expired or undecodable.
    pub fn get_multi<T: CacheValue, K: AsRef<str>>(&self, keys: &[K]) -> Result<Vec<Option<T>>, Error> {
        let skeys = self.storage_keys(keys);
        let refs: Vec<&str> = skeys.iter().map(|k| &**k).collect();
        let io = self.blocking_io()?;
        self.refresh_invalidation(io);
        let values = self.checked_slots(refs.len(), io.get_multi(&refs))?;
        Ok(self.fresh_slots(&refs, values))
    }

    /// Stores several values, all created now.
    pub fn set_multi<T: CacheValue, K: AsRef<str>>(
        &self,
        items: impl IntoIterator<Item = (K, T)>,
    ) -> Result<(), Error> {
        let encoded = self.encode_items(items)?;
        if encoded.is_empty() {
            return Ok(());
        }
        let io = self.blocking_io()?;
        // Keys owned here, values moved into the batch (no copy of the bytes).
        let (keys, values): (Vec<String>, Vec<Value>) = encoded.into_iter().unzip();
        let batch = keys.iter().map(String::as_str).zip(values).collect();
        let r = self.backend_call(io.set_multi(batch, self.storage_ttl(self.inner.expiration)));
        self.withdraw_stale(keys.iter().map(String::as_str));
        r
    }

    /// Deletes several keys.
    pub fn delete_multi<K: AsRef<str>>(&self, keys: &[K]) -> Result<(), Error> {
        if keys.is_empty() {
            return Ok(());
        }
        let skeys = self.storage_keys(keys);
        let refs: Vec<&str> = skeys.iter().map(|k| &**k).collect();
        let io = self.blocking_io()?;
        let r = self.backend_call(io.delete_multi(&refs));
        self.withdraw_stale(refs.iter().copied());
        r
    }

    /// Returns a value for every key, creating the missing and expired ones
    /// with one call of `creator`.
    ///
    /// The creator gets the keys to create, de-duplicated and sorted, and
    /// returns one value per key in that order. The result has one value per
    /// input key, in input order, duplicates included. Expired keys locked by
    /// another caller are served stale; missing keys locked by another
    /// caller are waited for and read again, never created twice. Keys that
    /// the key mangler maps to one storage key are one entry: created once,
    /// under the first of them.
    ///
    /// ```
    /// # use dogpile_core::*;
    /// # let region = Region::builder("r").build();
    /// let v: Vec<u64> = region.get_or_create_multi(&["b", "a", "b"], |missing| {
    ///     assert_eq!(missing, ["a", "b"]);
    ///     missing.iter().map(|k| k.len() as u64).collect()
    /// })?;
    /// assert_eq!(v, [1, 1, 1]);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn get_or_create_multi<T, K, F>(&self, keys: &[K], creator: F) -> Result<Vec<T>, Error>
    where
        T: CacheValue,
        K: AsRef<str>,
        F: FnOnce(&[&str]) -> Vec<T>,
    {
        self.get_or_create_multi_with(keys, &CreateOptions::new(), creator)
    }

    /// [`get_or_create_multi`](Self::get_or_create_multi) with per-call
    /// options; the should-cache predicate is applied to each value.
    pub fn get_or_create_multi_with<T, K, F>(
        &self,
        keys: &[K],
        opts: &CreateOptions<T>,
        creator: F,
    ) -> Result<Vec<T>, Error>
    where
        T: CacheValue,
        K: AsRef<str>,
        F: FnOnce(&[&str]) -> Vec<T>,
    {
        let exp = opts.expiration.unwrap_or(self.inner.expiration);
        let Plan { unique, skeys, order, aliases } = self.plan(keys);
        let mut ready: HashMap<&str, T> = HashMap::with_capacity(unique.len());
        let refs: Vec<&str> = order.iter().map(|&i| &*skeys[i]).collect();
        let io = self.blocking_io()?;
        self.refresh_invalidation(io);
        let first = self.checked_slots(refs.len(), io.get_multi(&refs))?;

        // One flow per key, in storage-key order (so two multi-key callers
        // cannot deadlock).
        let mut claims: Vec<Claim<'_>> = Vec::new();
        let mut waited = false;
        for (&i, value) in order.iter().zip(first) {
            let (key, skey) = (unique[i], skeys[i].clone());
            let lookup = self.judge_read(&skey, value, exp, true);
            let mut flow = Flow::new(self.inner.leases, false, waited);
            let settled = self.settle::<T>(&skey, exp, lookup, &mut flow)?;
            waited = flow.waited();
            match settled {
                Settled::Ready(v) => {
                    ready.insert(key, v);
                }
                Settled::Create(c) => claims.push(Claim { key, skey, held: c.held }),
            }
        }
        // The creator gets its keys sorted by caller key.
        claims.sort_by(|a, b| a.key.cmp(b.key));

        if !claims.is_empty() {
            let to_create: Vec<&str> = claims.iter().map(|c| c.key).collect();
            let start = self.creation_start();
            let counter = PanicCounter(self);
            let created = creator(&to_create);
            std::mem::forget(counter);
            let batch = self.created_batch(&claims, &created, opts, start)?;
            if !batch.is_empty() {
                let _ = self.backend_call(io.set_multi(batch, self.storage_ttl(exp)));
            }
            for (claim, value) in claims.iter().zip(created) {
                ready.insert(claim.key, value);
            }
            drop(claims);
        }
        Ok(assemble(keys, ready, aliases))
    }

    /// A backend error, counted and logged.
    pub(crate) fn backend_error(&self, e: BackendError) -> Error {
        match self.backend_call::<()>(Err(e)) {
            Err(e) => e,
            Ok(()) => unreachable!("an error stays an error"),
        }
    }

    /// The pause before asking for a lease again while another process
    /// holds it: from 2 ms, growing by half each time up to 50 ms (or the
    /// lease time-to-live, if shorter), each picked at random between half
    /// and all of that, so waiters in many processes do not ask in step.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let base = 2e-3 * 1.5f64.powi(attempt.min(16) as i32);
        let cap = self.inner.lock_timeout.as_secs_f64().min(0.05);
        let d = base.min(cap);
        Duration::from_secs_f64(d * (0.5 + fastrand::f64() * 0.5))
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
