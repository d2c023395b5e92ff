//! The map behind the in-process memory backend, known to the region so
//! that a hit on it is a direct, inlined lookup: no virtual call into the
//! backend and none back into a callback.

use crate::value::Value;
use std::fmt;

/// A concurrent map of typed values (papaya, lock-free reads; foldhash, a
/// fast hash with per-map random seeds, fine since keys never leave the
/// process).
#[derive(Default)]
pub struct ObjectMap {
    map: papaya::HashMap<Box<str>, Value, foldhash::fast::RandomState>,
}

impl ObjectMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls `f` with the value under `key`, borrowed.
    #[inline]
    pub fn with<R>(&self, key: &str, f: impl FnOnce(Option<&Value>) -> R) -> R {
        let map = self.map.pin();
        f(map.get(key))
    }

    /// A clone of the value under `key`.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.map.pin().get(key).cloned()
    }

    /// Stores `value` under `key`.
    pub fn insert(&self, key: &str, value: Value) {
        self.map.pin().insert(key.into(), value);
    }

    /// Removes `key`.
    pub fn remove(&self, key: &str) {
        self.map.pin().remove(key);
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Removes every entry.
    pub fn clear(&self) {
        self.map.pin().clear();
    }
}

impl fmt::Debug for ObjectMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectMap").field("len", &self.map.len()).finish()
    }
}
