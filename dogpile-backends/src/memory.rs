//! The unbounded in-process backend.

use crate::config::{BackendSettings, ConfigError};
use dogpile_core::backend::{Backend, BackendError, BlockingBackend, ObjectMap, Value, ValueKind};
use serde::Deserialize;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// An unbounded concurrent map in this process. Values are stored as the
/// region's typed objects behind an `Arc`, never encoded; a hit is one
/// lock-free lookup plus a clone of the value.
///
/// Entries stay until deleted (backend TTLs are ignored: the region judges
/// expiry itself and serves stale values while regenerating). Use
/// [`BoundedMemoryBackend`](crate::BoundedMemoryBackend) to cap memory.
///
/// ```
/// use dogpile_core::Region;
/// use dogpile_backends::MemoryBackend;
///
/// let region = Region::builder("mem").backend(MemoryBackend::new()).build();
/// assert_eq!(region.get_or_create("k", || 1u8)?, 1);
/// assert_eq!(region.get_or_create("k", || 2u8)?, 1);
/// # Ok::<(), dogpile_core::Error>(())
/// ```
#[derive(Default)]
pub struct MemoryBackend {
    // Shared with the regions using it, which read it directly on a hit.
    map: Arc<ObjectMap>,
}

impl MemoryBackend {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many entries the map holds.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Removes every entry.
    pub fn clear(&self) {
        self.map.clear();
    }
}

impl fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBackend").field("len", &self.map.len()).finish()
    }
}

impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn value_kind(&self) -> ValueKind {
        ValueKind::Object
    }

    fn never_blocks(&self) -> bool {
        true
    }

    fn object_map(&self) -> Option<Arc<ObjectMap>> {
        Some(self.map.clone())
    }
    fn blocking(&self) -> Option<&dyn BlockingBackend> {
        Some(self)
    }
}

impl BlockingBackend for MemoryBackend {
    fn get(&self, key: &str) -> Result<Option<Value>, BackendError> {
        Ok(self.map.get(key))
    }

    #[inline]
    fn peek(&self, key: &str, f: &mut dyn FnMut(&Value)) -> Result<bool, BackendError> {
        Ok(self.map.with(key, |v| v.map(f).is_some()))
    }

    fn set(&self, key: &str, value: Value, _ttl: Option<Duration>) -> Result<(), BackendError> {
        self.map.insert(key, value);
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.map.remove(key);
        Ok(())
    }
}

/// The settings of the `memory` backend: none today.
///
/// In a configuration file:
///
/// ```toml
/// [regions.sessions]
/// backend = "memory"
/// ```
///
/// ```
/// use dogpile_backends::MemoryConfig;
///
/// let backend = MemoryConfig::default().build()?;
/// # let _ = backend;
/// # Ok::<(), dogpile_backends::config::ConfigError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MemoryConfig {}

impl MemoryConfig {
    /// A [`MemoryBackend`].
    pub fn build(&self) -> Result<Arc<dyn Backend>, ConfigError> {
        Ok(Arc::new(MemoryBackend::new()))
    }
}

impl BackendSettings for MemoryConfig {
    const NAME: &'static str = "memory";

    fn build_backend(&self) -> Result<Arc<dyn Backend>, ConfigError> {
        self.build()
    }
}
