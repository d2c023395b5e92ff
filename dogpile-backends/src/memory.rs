//! The unbounded in-process backend.

use dogpile_core::{Backend, BackendError, Value, ValueKind};
use std::fmt;
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
    // foldhash: a fast non-cryptographic hash with per-map random seeds; keys
    // never leave the process, so its output need not be stable.
    map: papaya::HashMap<Box<str>, Value, foldhash::fast::RandomState>,
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
        self.map.pin().clear();
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

    fn get(&self, key: &str) -> Result<Option<Value>, BackendError> {
        Ok(self.map.pin().get(key).cloned())
    }

    #[inline]
    fn peek(&self, key: &str, f: &mut dyn FnMut(&Value)) -> Result<bool, BackendError> {
        let map = self.map.pin();
        match map.get(key) {
            Some(v) => {
                f(v);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn set(&self, key: &str, value: Value, _ttl: Option<Duration>) -> Result<(), BackendError> {
        self.map.pin().insert(key.into(), value);
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.map.pin().remove(key);
        Ok(())
    }

    fn get_multi(&self, keys: &[&str]) -> Result<Vec<Option<Value>>, BackendError> {
        let map = self.map.pin();
        Ok(keys.iter().map(|k| map.get(*k).cloned()).collect())
    }

    fn set_multi(&self, items: Vec<(&str, Value)>, _ttl: Option<Duration>) -> Result<(), BackendError> {
        let map = self.map.pin();
        for (k, v) in items {
            map.insert(k.into(), v);
        }
        Ok(())
    }

    fn delete_multi(&self, keys: &[&str]) -> Result<(), BackendError> {
        let map = self.map.pin();
        for k in keys {
            map.remove(*k);
        }
        Ok(())
    }

    fn is_non_blocking(&self) -> bool {
        true
    }
}
