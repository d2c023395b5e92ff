//! The contenders, each behind the same small `get_or_create` shape:
//! dogpile (`Region` + `MemoryBackend`), moka 0.12 (`sync::Cache::get_with`),
//! cached 4.x (`#[cached(sync_writes = "by_key")]` functions), quick_cache 0.7
//! (`get_or_insert_with` storing the creation `Instant`, expiry checked on
//! read) and plain quick_cache `get` as a reference.

use super::Creator;
use cached::macros::cached;
use dogpile::Region;
use dogpile::backends::MemoryBackend;
use quick_cache::Equivalent;
use std::convert::Infallible;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A dogpile region on the unbounded memory backend.
pub(crate) struct Dogpile {
    region: Region,
}

impl Dogpile {
    /// A region whose values stay fresh for `expiration`.
    pub(crate) fn new(expiration: Duration) -> Self {
        Self { region: Region::builder("bench").backend(MemoryBackend::new()).expiration(expiration).build() }
    }

    /// `Region::get_or_create` with a `&str` key.
    #[inline]
    pub(crate) fn get_or_create(&self, key: &str, create: impl FnOnce() -> String) -> String {
        self.region.get_or_create(key, create).expect("memory backend does not fail")
    }

    /// `Region::get` (a plain read, no lock path), for reference.
    #[inline]
    pub(crate) fn get(&self, key: &str) -> Option<String> {
        self.region.get(key).expect("memory backend does not fail")
    }

    /// The region's counters.
    pub(crate) fn stats(&self) -> dogpile::Stats {
        self.region.stats()
    }
}

/// moka's synchronous cache with a time-to-live.
pub(crate) struct Moka {
    cache: moka::sync::Cache<u64, String>,
}

impl Moka {
    /// A cache whose entries live for `ttl`.
    pub(crate) fn new(ttl: Duration) -> Self {
        Self { cache: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(ttl).build() }
    }

    /// `Cache::get_with`: one caller runs `create`, concurrent callers for
    /// the same key wait for it.
    #[inline]
    pub(crate) fn get_or_create(&self, k: u64, create: impl FnOnce() -> String) -> String {
        self.cache.get_with(k, create)
    }
}

/// quick_cache storing `(created, value)`; a read checks the age and treats
/// an old entry as missing (removes exactly that entry, then goes through
/// `get_or_insert_with` again, so one caller creates and the rest wait).
pub(crate) struct QuickCacheExpiry<K> {
    cache: quick_cache::sync::Cache<K, (Instant, String)>,
    ttl: Duration,
}

impl<K: Eq + Hash + Clone> QuickCacheExpiry<K> {
    /// A cache of about 100,000 items whose entries are fresh for `ttl`.
    pub(crate) fn new(ttl: Duration) -> Self {
        Self { cache: quick_cache::sync::Cache::new(100_000), ttl }
    }

    /// `get_or_insert_with` plus the expiry check.
    #[inline]
    pub(crate) fn get_or_create<Q>(&self, key: &Q, create: impl FnOnce() -> String) -> String
    where
        Q: Hash + Equivalent<K> + ToOwned<Owned = K> + ?Sized,
    {
        let mut create = Some(create);
        loop {
            let mut created_here = false;
            let (at, value) = self
                .cache
                .get_or_insert_with(key, || {
                    created_here = true;
                    let make = create.take().expect("creator runs at most once");
                    let v = make();
                    Ok::<_, Infallible>((Instant::now(), v))
                })
                .unwrap_or_else(|never| match never {});
            if created_here || at.elapsed() < self.ttl {
                return value;
            }
            self.cache.remove_if(key, |(stored_at, _)| *stored_at == at);
        }
    }
}

/// Plain quick_cache `get` on prefilled keys (no expiry, no creation): a
/// floor for what a concurrent map read plus a `String` clone costs.
pub(crate) struct QuickCachePlain {
    cache: quick_cache::sync::Cache<u64, String>,
}

impl QuickCachePlain {
    /// An empty cache of about 100,000 items.
    pub(crate) fn new() -> Self {
        Self { cache: quick_cache::sync::Cache::new(100_000) }
    }

    /// Stores a value.
    pub(crate) fn insert(&self, k: u64, v: String) {
        self.cache.insert(k, v);
    }

    /// Reads a value.
    #[inline]
    pub(crate) fn get(&self, k: u64) -> Option<String> {
        self.cache.get(&k)
    }
}

// ----- cached 4.x: the cache is the function's own static -----

/// The creator behind [`cached_cold`].
pub(crate) static CACHED_COLD_CREATOR: Creator = Creator::new();
/// The creator behind [`cached_ttl`].
pub(crate) static CACHED_TTL_CREATOR: Creator = Creator::new();
/// The time-to-live of [`cached_ttl`], in milliseconds (also used for the
/// other contenders in W4).
pub(crate) const TTL_MILLIS: u64 = 200;

/// W1/W2: a memoized function whose entries live an hour.
#[cached(ttl_secs = 3600, sync_writes = "by_key")]
pub(crate) fn cached_hit(k: u64) -> String {
    super::value_for("v", k)
}

/// W3: a memoized function without expiry whose body is the slow creator.
#[cached(sync_writes = "by_key")]
pub(crate) fn cached_cold(k: u64) -> String {
    CACHED_COLD_CREATOR.create(k)
}

/// W4: a memoized function whose entries live [`TTL_MILLIS`].
#[cached(ttl_millis = 200, sync_writes = "by_key")]
pub(crate) fn cached_ttl(k: u64) -> String {
    CACHED_TTL_CREATOR.create(k)
}
