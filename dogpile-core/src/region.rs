//! The region: a named cache with a backend, an expiration and a lock per
//! key. This file holds the type, what it is configured with, and how it
//! judges, encodes and decodes values; its API is in `blocking.rs` and
//! `nonblocking.rs` (both driving the lock flow of `flow.rs`), the
//! multi-key planning in `multi.rs`.

use crate::backend::Backend;
use crate::builder::{KeyMangler, RegionBuilder};
use crate::clock::{RegionClock, duration_nanos, from_nanos};
use crate::codec::Codec;
use crate::envelope::{self, Identity};
use crate::error::{BackendError, Error};
use crate::flow::Found;
use crate::invalidation::{Invalidations, Verdict};
use crate::lock::KeyLocks;
use crate::options::{Expiration, Invalidation};
use crate::runner::Runner;
use crate::stats::{Counter, Stats, StatsCells};
use crate::value::{Meta, Value, ValueKind};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What a region can store: cloneable, shareable between threads, and
/// serializable (so the same code works on in-process and shared backends).
pub trait CacheValue: Clone + Send + Sync + Serialize + DeserializeOwned + 'static {}
impl<T: Clone + Send + Sync + Serialize + DeserializeOwned + 'static> CacheValue for T {}

/// A named cache: a backend, an expiration time, and the dogpile lock.
///
/// Cloning is cheap (an `Arc`); clones share everything.
#[derive(Clone)]
pub struct Region {
    pub(crate) inner: Arc<Inner>,
}

// A panic inside a creator leaves the region consistent: the key's lock is
// released by its guard and nothing half-written is stored.
impl std::panic::UnwindSafe for Region {}
impl std::panic::RefUnwindSafe for Region {}

pub(crate) struct Inner {
    pub(crate) name: String,
    pub(crate) backend: Arc<dyn Backend>,
    /// The backend's own map when it is an in-process map: hits read it
    /// directly.
    pub(crate) fast_map: Option<Arc<crate::backend::ObjectMap>>,
    pub(crate) expiration: Expiration,
    pub(crate) clock: RegionClock,
    pub(crate) codec: Codec,
    pub(crate) locks: Arc<KeyLocks>,
    pub(crate) stats: StatsCells,
    /// The last invalidation and the creation times it covers.
    pub(crate) invalidations: Invalidations,
    /// How far ahead of our clock a creation time may be before the value
    /// counts as expired, in ns.
    pub(crate) skew_tolerance: u64,
    /// Written into every envelope; envelopes of another version are misses.
    pub(crate) value_version: u32,
    /// The largest envelope written or decoded, in bytes.
    pub(crate) max_value_size: usize,
    pub(crate) key_mangler: Option<KeyMangler>,
    /// The backend's key limits, applied after the mangler.
    pub(crate) key_limits: Option<crate::backend::KeyLimits>,
    pub(crate) runner: Arc<dyn Runner>,
    pub(crate) early_refresh: Option<f64>,
    pub(crate) stale_if_error: bool,
    /// The lease time-to-live on backends shared between processes.
    pub(crate) lock_timeout: Duration,
    /// How often the keeper extends a lease.
    pub(crate) keep_alive: Duration,
    pub(crate) keeper: crate::keeper::Keeper,
    /// The backend issues leases.
    pub(crate) leases: bool,
    /// The backend never blocks and has no async interface: async calls
    /// read it before building their future (the hit path).
    pub(crate) reads_in_process: bool,
    /// Set when the backend shares invalidations between processes.
    pub(crate) shared_invalidation: Option<SharedInvalidation>,
    pub(crate) storage_grace: Option<Duration>,
}

/// When to read the invalidation another process may have stored.
pub(crate) struct SharedInvalidation {
    /// The refresh interval, in ns.
    pub(crate) every: u64,
    /// The coarse clock time of the next refresh.
    pub(crate) next: std::sync::atomic::AtomicU64,
}

/// A value read with its metadata ([`Region::get_entry`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<T> {
    /// The value.
    pub value: T,
    /// When its creation started (by the region's clock; see
    /// [`Region::invalidate`] for why the start).
    pub created: SystemTime,
    /// How old it is now (by the region's clock).
    pub age: Duration,
    /// Whether it is past its expiration or soft-invalidated.
    pub expired: bool,
}

/// The outcome of one read of one key.
pub(crate) enum Lookup<T> {
    Fresh(T),
    /// Usable but expired (or picked for early refresh), with its metadata.
    Expired(T, Meta),
    Absent,
}

impl Region {
    /// Starts configuring a region named `name`.
    pub fn builder(name: impl Into<String>) -> RegionBuilder {
        RegionBuilder::new(name)
    }

    /// The region's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The region's default expiration.
    pub fn expiration(&self) -> Expiration {
        self.inner.expiration
    }

    /// The backend's name (`"memory"`, `"redis"`...).
    pub fn backend_name(&self) -> &'static str {
        self.inner.backend.name()
    }

    /// A snapshot of the region's counters.
    pub fn stats(&self) -> Stats {
        self.inner.stats.snapshot()
    }

    pub(crate) fn count_get<T>(&self, found: Lookup<T>) -> Option<T> {
        match found {
            Lookup::Fresh(v) => {
                self.count(Counter::Hits);
                Some(v)
            }
            Lookup::Expired(..) | Lookup::Absent => {
                self.count(Counter::Misses);
                None
            }
        }
    }

    /// A value with its metadata, expired or not (see [`get_entry`](Self::get_entry)).
    pub(crate) fn entry_of<T: CacheValue>(&self, skey: &str) -> Result<Option<Entry<T>>, Error> {
        let now = self.inner.clock.now();
        let mut out = None;
        self.peek(skey, &mut |value| {
            if let Some((v, meta)) = self.decode::<T>(skey, value) {
                let found = self.judge(&meta, now, self.inner.expiration, false);
                if found != Found::Absent {
                    out = Some(Entry {
                        value: v,
                        created: from_nanos(meta.created_nanos),
                        age: Duration::from_nanos(now.saturating_sub(meta.created_nanos)),
                        expired: found == Found::Expired,
                    });
                }
            }
        })?;
        Ok(out)
    }

    /// Invalidates every value created before now, in this region object and
    /// its clones. [`Invalidation::Hard`]: they are misses;
    /// [`Invalidation::Soft`]: they count as expired. The last call decides.
    ///
    /// A value's creation time is when its creation *started*: a creator
    /// still running when `invalidate` is called stores a value that is
    /// already invalidated (it may have read data from before the
    /// invalidation), so the next caller creates again. "Now" is the later of
    /// the clock and every creation time this region has stamped or read, so
    /// a clock that stepped back does not leave newer-stamped values valid.
    ///
    /// On a backend that shares invalidations
    /// ([`Backend::shares_invalidation`](crate::backend::Backend::shares_invalidation))
    /// the invalidation is also stored there, and every process sharing the
    /// backend adopts it within its
    /// [`invalidation_refresh`](crate::RegionBuilder::invalidation_refresh)
    /// interval. A failure to store it is logged and counted; use
    /// [`invalidate_async`](Self::invalidate_async) to see it (and from async
    /// code).
    pub fn invalidate(&self, how: Invalidation) {
        let io = self.inner.shared_invalidation.as_ref().and(self.inner.backend.blocking());
        // The stored word first, so ours is later than it and the stored
        // word only moves forward.
        if let Some(io) = io {
            match io.load_invalidation(&self.inner.name) {
                Ok(word) => self.adopt_invalidation(word),
                Err(e) => drop(self.backend_error(e)),
            }
        }
        self.inner.invalidations.record(self.inner.clock.now(), how);
        if self.inner.shared_invalidation.is_none() {
            return;
        }
        let word = self.inner.invalidations.word();
        match io {
            Some(io) => {
                let _ = self.backend_call(io.store_invalidation(&self.inner.name, word));
            }
            None => self.store_invalidation_detached(word),
        }
    }

    /// Stores the invalidation through an async-only backend from a task.
    #[cfg(feature = "tokio")]
    fn store_invalidation_detached(&self, word: u64) {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let region = self.clone();
            drop(handle.spawn(async move {
                if let Some(io) = region.inner.backend.nonblocking() {
                    let r = io.store_invalidation(&region.inner.name, word).await;
                    let _ = region.backend_call(r);
                }
            }));
            return;
        }
        self.invalidation_not_shared();
    }

    #[cfg(not(feature = "tokio"))]
    fn store_invalidation_detached(&self, _word: u64) {
        self.invalidation_not_shared();
    }

    fn invalidation_not_shared(&self) {
        self.count(Counter::BackendErrors);
        tracing::warn!(
            region = %self.inner.name,
            "invalidation not stored in the async-only backend (no tokio runtime here): use invalidate_async; \
             other processes do not see it"
        );
    }

    /// Whether it is time to read the invalidation kept by the backend; true
    /// for one caller per interval.
    pub(crate) fn invalidation_refresh_due(&self) -> bool {
        use std::sync::atomic::Ordering;
        let Some(shared) = &self.inner.shared_invalidation else { return false };
        let now = self.inner.clock.now_coarse();
        let next = shared.next.load(Ordering::Relaxed);
        now >= next
            && shared
                .next
                .compare_exchange(next, now.saturating_add(shared.every), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Adopts an invalidation read from the backend.
    pub(crate) fn adopt_invalidation(&self, word: Option<u64>) {
        if let Some(word) = word {
            self.inner.invalidations.merge(word);
        }
    }

    /// Reads the backend's invalidation if due (blocking callers).
    pub(crate) fn refresh_invalidation(&self, io: &dyn crate::backend::BlockingBackend) {
        if self.invalidation_refresh_due() {
            match io.load_invalidation(&self.inner.name) {
                Ok(word) => self.adopt_invalidation(word),
                Err(e) => drop(self.backend_error(e)),
            }
        }
    }

    /// Whether some caller in this process holds `key`'s creation lock now
    /// (the key mangler applies, as for every other call).
    pub fn is_locked(&self, key: &str) -> bool {
        self.inner.locks.is_locked(&self.storage_key(key))
    }

    /// How many keys have lock bookkeeping right now (entries exist only
    /// while some caller uses the key).
    pub fn lock_entries(&self) -> usize {
        self.inner.locks.len()
    }

    // ----- internals shared by the creation paths -----

    /// The key as the backend's storage and lock see it: through the key
    /// mangler, then mapped if the backend's key limits refuse it.
    #[inline]
    pub(crate) fn storage_key<'k>(&self, key: &'k str) -> Cow<'k, str> {
        if self.inner.key_mangler.is_none() && self.inner.key_limits.is_none() {
            return Cow::Borrowed(key);
        }
        self.mapped_key(key)
    }

    /// [`storage_key`](Self::storage_key) with a mangler or key limits.
    #[inline(never)]
    fn mapped_key<'k>(&self, key: &'k str) -> Cow<'k, str> {
        let key = match &self.inner.key_mangler {
            None => Cow::Borrowed(key),
            Some(m) => Cow::Owned(m(key)),
        };
        let Some(limits) = &self.inner.key_limits else { return key };
        match key {
            Cow::Borrowed(k) => limits.apply(k),
            Cow::Owned(k) => match limits.apply(&k) {
                Cow::Borrowed(_) => Cow::Owned(k),
                Cow::Owned(mapped) => Cow::Owned(mapped),
            },
        }
    }

    #[inline]
    pub(crate) fn count(&self, c: Counter) {
        self.inner.stats.incr(c);
    }

    pub(crate) fn backend_call<R>(&self, r: Result<R, BackendError>) -> Result<R, Error> {
        r.map_err(|e| {
            self.count(Counter::BackendErrors);
            tracing::warn!(region = %self.inner.name, error = %e, "cache backend call failed");
            Error::Backend(e)
        })
    }

    fn peek(&self, skey: &str, f: &mut dyn FnMut(&Value)) -> Result<bool, Error> {
        let io = self.blocking_io()?;
        self.refresh_invalidation(io);
        self.backend_call(io.peek(skey, f))
    }

    /// Reads and judges one key.
    #[inline]
    pub(crate) fn lookup<T: CacheValue>(&self, skey: &str, exp: Expiration, early: bool) -> Result<Lookup<T>, Error> {
        let now = self.inner.clock.now_coarse();
        if let Some(map) = &self.inner.fast_map {
            return Ok(map.with(skey, |value| match value {
                Some(value) => self.judge_at(skey, value, now, exp, early),
                None => Lookup::Absent,
            }));
        }
        let mut out = Lookup::Absent;
        self.peek(skey, &mut |value| out = self.judge_at(skey, value, now, exp, early))?;
        Ok(out)
    }

    /// The hit path of an in-process map: a fresh value of type `T`,
    /// cloned under the map's read guard, or `None` (absent, expired,
    /// another type, or no in-process map) for the caller to take the long
    /// way, which reads again, judges and counts. Everything here inlines
    /// into the caller, so the value comes back in registers.
    #[inline(always)]
    pub(crate) fn fresh_in_process<T: CacheValue>(&self, skey: &str, exp: Expiration, early: bool) -> Option<T> {
        if early && self.inner.early_refresh.is_some() {
            // Early refresh draws once per call, in the read that follows
            // (`lookup`): a draw here too would square its odds.
            return None;
        }
        let map = self.inner.fast_map.as_deref()?;
        let now = self.inner.clock.now_coarse();
        map.with(skey, |value| {
            let Some(Value::Object { meta, object }) = value else { return None };
            let v = object.downcast_ref::<T>()?;
            (self.judge(meta, now, exp, early) == Found::Fresh).then(|| v.clone())
        })
    }

    /// The value another caller of this process is regenerating under the
    /// key's lock (published with [`KeyGuard::publish_stale`](crate::lock::KeyGuard::publish_stale)),
    /// judged now and counted: a remote backend is not read once per caller
    /// while one regenerates. `None` (and nothing counted) when no lock
    /// holder published a value of type `T` that is still usable.
    pub(crate) fn stale_while_creating<T: CacheValue>(&self, skey: &str, exp: Expiration) -> Option<T> {
        let (meta, object) = self.inner.locks.published_stale(skey)?;
        let v = object.downcast_ref::<T>()?;
        match self.judge(&meta, self.inner.clock.now_coarse(), exp, false) {
            Found::Fresh => self.count(Counter::Hits),
            Found::Expired => self.count(Counter::StaleServed),
            Found::Absent => return None,
        }
        Some(v.clone())
    }

    /// Publishes the stale value a caller holding `guard` read, for the
    /// callers that come meanwhile (remote backends only: an in-process
    /// read costs less than the publishing).
    pub(crate) fn publish_stale<T: CacheValue>(&self, guard: &crate::lock::KeyGuard, stale: &Option<(T, Meta)>) {
        if let (None, Some((v, meta))) = (&self.inner.fast_map, stale) {
            guard.publish_stale((*meta, Arc::new(v.clone())));
        }
    }

    /// Withdraws the stale values published for `keys`: after a `set` or a
    /// `delete` of a key, callers in this process read the backend again
    /// rather than get the value being regenerated.
    pub(crate) fn withdraw_stale<'k>(&self, keys: impl IntoIterator<Item = &'k str>) {
        for key in keys {
            self.inner.locks.withdraw_stale(key);
        }
    }

    /// Judges a stored value by the region's rules, now.
    pub(crate) fn judge_value<T: CacheValue>(
        &self,
        skey: &str,
        value: &Value,
        exp: Expiration,
        early: bool,
    ) -> Lookup<T> {
        self.judge_at(skey, value, self.inner.clock.now_coarse(), exp, early)
    }

    /// Judges what a read returned (`early`: XFetch early refresh applies,
    /// for a caller's first read; not for reads under the lock).
    pub(crate) fn judge_read<T: CacheValue>(
        &self,
        skey: &str,
        value: Option<Value>,
        exp: Expiration,
        early: bool,
    ) -> Lookup<T> {
        match value {
            Some(v) => self.judge_value(skey, &v, exp, early),
            None => Lookup::Absent,
        }
    }

    #[inline]
    fn judge_at<T: CacheValue>(&self, skey: &str, value: &Value, now: u64, exp: Expiration, early: bool) -> Lookup<T> {
        match self.decode::<T>(skey, value) {
            Some((v, meta)) => match self.judge(&meta, now, exp, early) {
                Found::Fresh => Lookup::Fresh(v),
                Found::Expired => Lookup::Expired(v, meta),
                Found::Absent => Lookup::Absent,
            },
            None => Lookup::Absent,
        }
    }

    /// Freshness by creation time, expiration and invalidation.
    #[inline]
    pub(crate) fn judge(&self, meta: &Meta, now: u64, exp: Expiration, early: bool) -> Found {
        if meta.created_nanos > now {
            // Created "in the future": by our own precise clock a moment
            // ago (the judging clock is coarse), or by a clock ahead of ours.
            if meta.created_nanos - now > self.inner.skew_tolerance {
                return self.judge_unknown_age();
            }
            self.inner.invalidations.saw(meta.created_nanos);
        }
        match self.inner.invalidations.verdict(meta.created_nanos) {
            Verdict::Valid => {}
            Verdict::Soft => return Found::Expired,
            Verdict::Hard => return Found::Absent,
        }
        let Expiration::After(d) = exp else {
            return Found::Fresh;
        };
        let d = duration_nanos(d);
        let age = now.saturating_sub(meta.created_nanos);
        if d == 0 || age > d {
            return Found::Expired;
        }
        if early && let Some(beta) = self.inner.early_refresh {
            // XFetch: refresh when creation_time * beta * -ln(U) reaches the
            // time left, U uniform in (0, 1].
            let left = (d - age) as f64;
            let u = 1.0 - fastrand::f64();
            if meta.creation_nanos as f64 * beta * -u.ln() >= left {
                return Found::Expired;
            }
        }
        Found::Fresh
    }

    /// Turns a stored value into `T` and its metadata. Undecodable bytes or a
    /// value of another type are a miss (`None`), counted and logged.
    #[inline]
    fn decode<T: CacheValue>(&self, skey: &str, value: &Value) -> Option<(T, Meta)> {
        match value {
            Value::Object { meta, object } => match object.downcast_ref::<T>() {
                Some(v) => Some((v.clone(), *meta)),
                None => {
                    self.decode_failure(skey, &format!("stored value is not a {}", std::any::type_name::<T>()));
                    None
                }
            },
            Value::Bytes(bytes) => {
                let decoded = if bytes.len() > self.inner.max_value_size {
                    Err(format!(
                        "{} bytes is over the region's max_value_size of {}",
                        bytes.len(),
                        self.inner.max_value_size
                    ))
                } else {
                    envelope::decode(bytes, self.identity::<T>())
                        .and_then(|(meta, codec, payload)| codec.decode::<T>(payload).map(|v| (v, meta)))
                };
                match decoded {
                    Ok(pair) => Some(pair),
                    Err(reason) => {
                        self.decode_failure(skey, &reason);
                        None
                    }
                }
            }
        }
    }

    /// A value whose creation time is further ahead of our clock than the
    /// skew tolerance (a host with a wrong clock, our clock stepped back): its
    /// age is unknown, so it is expired (served stale while one caller
    /// regenerates), and a miss once the region was hard-invalidated (it
    /// cannot be shown to postdate the invalidation).
    #[cold]
    fn judge_unknown_age(&self) -> Found {
        if self.inner.invalidations.last_was_hard() { Found::Absent } else { Found::Expired }
    }

    #[cold]
    fn decode_failure(&self, skey: &str, reason: &str) {
        self.count(Counter::DecodeFailures);
        tracing::warn!(region = %self.inner.name, key = %skey, reason, "cached value could not be decoded; treated as a miss");
    }

    /// The creation time of a value whose creator starts now: read before
    /// the creator runs, so that an invalidation while it runs catches the
    /// value it stores (see [`Invalidations::creation_start`]).
    pub(crate) fn creation_start(&self) -> u64 {
        self.inner.invalidations.creation_start(self.inner.clock.now())
    }

    /// Metadata for a value whose creator started at `start` (from
    /// [`creation_start`](Self::creation_start)), or, without one, for a
    /// value set now.
    pub(crate) fn stamp(&self, start: Option<u64>) -> Meta {
        match start {
            Some(start) => Meta { created_nanos: start, creation_nanos: self.inner.clock.now().saturating_sub(start) },
            None => Meta { created_nanos: self.creation_start(), creation_nanos: 0 },
        }
    }

    /// Who may read this region's envelopes of type `T`.
    fn identity<T: CacheValue>(&self) -> Identity {
        Identity::of::<T>(self.inner.value_version)
    }

    /// Wraps `value` for the backend.
    pub(crate) fn encode<T: CacheValue>(&self, skey: &str, value: &T, meta: Meta) -> Result<Value, Error> {
        match self.inner.backend.value_kind() {
            ValueKind::Object => Ok(Value::Object { meta, object: Arc::new(value.clone()) }),
            ValueKind::Bytes => {
                let bytes = envelope::encode(meta, self.inner.codec, self.identity::<T>(), value)
                    .map_err(|message| Error::Encode { key: skey.to_owned(), message })?;
                if bytes.len() > self.inner.max_value_size {
                    return Err(Error::Encode {
                        key: skey.to_owned(),
                        message: format!(
                            "the encoded value is {} bytes, over the region's max_value_size of {}",
                            bytes.len(),
                            self.inner.max_value_size
                        ),
                    });
                }
                Ok(Value::Bytes(bytes))
            }
        }
    }

    /// The backend TTL for a value with this expiration: longer than the
    /// expiration so stale values stay available.
    pub(crate) fn storage_ttl(&self, exp: Expiration) -> Option<Duration> {
        match exp {
            Expiration::Never => None,
            Expiration::After(d) => {
                let grace = self.inner.storage_grace.unwrap_or_else(|| d.max(Duration::from_secs(60)));
                Some(d.saturating_add(grace))
            }
        }
    }

    /// Encodes a created value to store; a failure is logged and counted
    /// (the caller still gets its value).
    pub(crate) fn encode_created<T: CacheValue>(&self, skey: &str, value: &T, meta: Meta) -> Option<Value> {
        match self.encode(skey, value, meta) {
            Ok(s) => Some(s),
            Err(e) => {
                self.count(Counter::BackendErrors);
                tracing::warn!(region = %self.inner.name, key = %skey, error = %e, "created value not stored");
                None
            }
        }
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("name", &self.inner.name)
            .field("backend", &self.inner.backend)
            .field("expiration", &self.inner.expiration)
            .field("codec", &self.inner.codec)
            .finish_non_exhaustive()
    }
}
