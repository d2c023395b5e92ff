//! The size-bounded in-process backend.
//!
//! Built on quick_cache rather than moka: its lookups take a shared lock on
//! one shard and touch no global structure, so hits cost about a third of
//! moka's (measured in `benches/`), it supports weights, it is small (no
//! background threads, few dependencies), and its S3-FIFO eviction keeps
//! frequently used keys under scans. The region does expiry itself, so
//! moka's TTL machinery would be unused weight.

use crate::config::{BackendSettings, ConfigError};
use dogpile_core::backend::{Backend, BackendError, BlockingBackend, Value, ValueKind};
use quick_cache::Weighter;
use quick_cache::sync::Cache;
use serde::Deserialize;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

type WeighFn = Arc<dyn Fn(&str, &Value) -> u64 + Send + Sync>;

#[derive(Clone)]
struct KeyValueWeighter(Option<WeighFn>);

impl Weighter<Box<str>, Value> for KeyValueWeighter {
    fn weight(&self, key: &Box<str>, value: &Value) -> u64 {
        match &self.0 {
            None => 1,
            // quick_cache never evicts an entry of weight 0, so a weigher
            // returning 0 (an empty string weighed by its length, say)
            // would let the map grow without bound: count it as 1.
            Some(f) => f(key, value).max(1),
        }
    }
}

/// An in-process map that evicts when full, by entry count or by a weight
/// you compute per entry. Like [`MemoryBackend`](crate::MemoryBackend),
/// values are stored unencoded.
///
/// ```
/// use dogpile_core::Region;
/// use dogpile_backends::BoundedMemoryBackend;
///
/// let by_count = BoundedMemoryBackend::with_capacity(10_000);
/// // Weight strings by their length; a total of 64 MiB.
/// let by_size = BoundedMemoryBackend::with_weigher(64 << 20, |key, value| {
///     (key.len() + value.downcast_ref::<String>().map_or(64, |s| s.len())) as u64
/// });
/// let region = Region::builder("bounded").backend(by_count).build();
/// assert_eq!(region.get_or_create("k", || 1u8)?, 1);
/// # let _ = by_size;
/// # Ok::<(), dogpile_core::Error>(())
/// ```
pub struct BoundedMemoryBackend {
    cache: Cache<Box<str>, Value, KeyValueWeighter>,
    capacity: u64,
}

impl BoundedMemoryBackend {
    /// Holds at most about `entries` entries (at least one: 0 is taken as
    /// 1).
    pub fn with_capacity(entries: usize) -> Self {
        let capacity = entries.max(1) as u64;
        Self { cache: Cache::with_weighter(entries.max(1), capacity, KeyValueWeighter(None)), capacity }
    }

    /// Holds entries whose weights sum to at most `max_weight`; `weigher`
    /// gives an entry's weight (a weight of 0 counts as 1, so that
    /// weightless entries still take a place). Any entry weighing up to a quarter of
    /// `max_weight` can be stored; use
    /// [`with_weigher_and_max_entry`](Self::with_weigher_and_max_entry) for
    /// larger entries.
    pub fn with_weigher(max_weight: u64, weigher: impl Fn(&str, &Value) -> u64 + Send + Sync + 'static) -> Self {
        Self::with_weigher_and_max_entry(max_weight, max_weight / 4, weigher)
    }

    /// Like [`with_weigher`](Self::with_weigher), guaranteeing that an entry
    /// weighing up to `max_entry_weight` can be stored. The map is split in
    /// fewer shards for larger entries (each shard holds its share of the
    /// total weight), which costs some concurrency; an entry heavier than
    /// its shard's share is not stored (the value is still returned).
    pub fn with_weigher_and_max_entry(
        max_weight: u64,
        max_entry_weight: u64,
        weigher: impl Fn(&str, &Value) -> u64 + Send + Sync + 'static,
    ) -> Self {
        let max_weight = max_weight.max(1);
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        // Shards a power of two, each keeping a margin below its share.
        let fit = (max_weight as f64 * 0.9 / max_entry_weight.max(1) as f64).floor().max(1.0) as usize;
        let shards = prev_power_of_two(fit.min(4 * cores).max(1));
        let estimated_items = usize::try_from(max_weight.clamp(1, 1 << 20)).unwrap_or(1 << 20);
        let options = quick_cache::OptionsBuilder::new()
            .shards(shards)
            .estimated_items_capacity(estimated_items)
            .weight_capacity(max_weight)
            .build()
            .expect("shards, capacity and weight are all non-zero");
        Self {
            cache: Cache::with_options(
                options,
                KeyValueWeighter(Some(Arc::new(weigher))),
                Default::default(),
                Default::default(),
            ),
            capacity: max_weight,
        }
    }

    /// How many entries it holds now.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// The total weight of its entries now (the entry count when unweighted).
    pub fn weight(&self) -> u64 {
        self.cache.weight()
    }

    /// The capacity: entries, or total weight.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }
}

fn prev_power_of_two(n: usize) -> usize {
    if n.is_power_of_two() { n } else { n.next_power_of_two() / 2 }
}

impl fmt::Debug for BoundedMemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedMemoryBackend")
            .field("len", &self.cache.len())
            .field("weight", &self.cache.weight())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Backend for BoundedMemoryBackend {
    fn name(&self) -> &'static str {
        "bounded_memory"
    }

    fn value_kind(&self) -> ValueKind {
        ValueKind::Object
    }

    fn never_blocks(&self) -> bool {
        true
    }
    fn blocking(&self) -> Option<&dyn BlockingBackend> {
        Some(self)
    }
}

impl BlockingBackend for BoundedMemoryBackend {
    fn get(&self, key: &str) -> Result<Option<Value>, BackendError> {
        Ok(self.cache.get(key))
    }

    fn set(&self, key: &str, value: Value, _ttl: Option<Duration>) -> Result<(), BackendError> {
        self.cache.insert(key.into(), value);
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.cache.remove(key);
        Ok(())
    }
}

/// The settings of the `bounded_memory` backend: how many entries it keeps.
/// (A weigher is code, so a weighted map is built in code with
/// [`BoundedMemoryBackend::with_weigher`].)
///
/// In a configuration file:
///
/// ```toml
/// [regions.users]
/// backend = "bounded_memory"
/// capacity = 10_000
/// ```
///
/// ```
/// use dogpile_backends::BoundedMemoryConfig;
///
/// let backend = BoundedMemoryConfig::new(10_000).build()?;
/// # let _ = backend;
/// let err = BoundedMemoryConfig::new(0).build().unwrap_err();
/// assert!(err.to_string().contains("capacity 0 would keep no entries"));
/// # Ok::<(), dogpile_backends::config::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BoundedMemoryConfig {
    /// The number of entries kept, at least 1.
    pub capacity: u64,
}

impl BoundedMemoryConfig {
    /// Keeps at most `capacity` entries.
    pub fn new(capacity: u64) -> Self {
        Self { capacity }
    }

    /// A [`BoundedMemoryBackend`]; a capacity of 0 is refused (the
    /// backend would take it as 1, which is surely not what was meant).
    pub fn build(&self) -> Result<Arc<dyn Backend>, ConfigError> {
        Ok(Arc::new(BoundedMemoryBackend::with_capacity(self.entries()?)))
    }

    /// The capacity as a number of entries, if it is one.
    fn entries(&self) -> Result<usize, ConfigError> {
        if self.capacity == 0 {
            return Err(ConfigError::invalid(
                Self::NAME,
                "capacity",
                "capacity 0 would keep no entries: give at least 1, or use backend = \"null\" to cache nothing",
            ));
        }
        usize::try_from(self.capacity).map_err(|_| {
            ConfigError::invalid(
                Self::NAME,
                "capacity",
                format!("capacity {} is too large for this machine", self.capacity),
            )
        })
    }
}

impl BackendSettings for BoundedMemoryConfig {
    const NAME: &'static str = "bounded_memory";

    fn validate(&self) -> Result<(), ConfigError> {
        self.entries().map(drop)
    }

    fn build_backend(&self) -> Result<Arc<dyn Backend>, ConfigError> {
        self.build()
    }
}
