//! The map behind the in-process memory backend, known to the region so
//! that a hit on it is a direct, inlined lookup: no virtual call into the
//! backend and none back into a callback.

use crate::value::Value;
use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};

/// A concurrent map of typed values (papaya, lock-free reads; foldhash, a
/// fast hash with per-map random seeds, fine since keys never leave the
/// process). Keys of up to 30 bytes live inside the entry.
///
/// Measured against a sharded `RwLock<hashbrown::HashTable>` with entries
/// inline in the table (BENCHMARKS.md, issue 13): papaya was faster on the
/// one-thread hit, and its reads write nothing another core reads.
#[derive(Default)]
pub struct ObjectMap {
    map: papaya::HashMap<StoredKey, Value, foldhash::fast::RandomState>,
}

/// The longest key kept inside the map's entry itself.
const INLINE: usize = 30;

/// A key as the map keeps it: short keys inside the entry (a hit compares
/// them without another pointer hop), longer ones on the heap. Hashed and
/// compared as bytes, so a lookup by `&[u8]` finds it.
#[derive(Clone)]
enum StoredKey {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl StoredKey {
    fn new(key: &str) -> Self {
        let b = key.as_bytes();
        if b.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..b.len()].copy_from_slice(b);
            // `b.len() <= INLINE < 256`.
            StoredKey::Inline { len: b.len() as u8, bytes }
        } else {
            StoredKey::Heap(b.into())
        }
    }

    #[inline]
    fn as_bytes(&self) -> &[u8] {
        match self {
            StoredKey::Inline { len, bytes } => &bytes[..usize::from(*len).min(INLINE)],
            StoredKey::Heap(b) => b,
        }
    }
}

impl Borrow<[u8]> for StoredKey {
    #[inline]
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Hash for StoredKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl PartialEq for StoredKey {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for StoredKey {}

impl ObjectMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls `f` with the value under `key`, borrowed.
    #[inline]
    pub fn with<R>(&self, key: &str, f: impl FnOnce(Option<&Value>) -> R) -> R {
        let map = self.map.pin();
        f(map.get(key.as_bytes()))
    }

    /// A clone of the value under `key`.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.map.pin().get(key.as_bytes()).cloned()
    }

    /// Stores `value` under `key`.
    pub fn insert(&self, key: &str, value: Value) {
        self.map.pin().insert(StoredKey::new(key), value);
    }

    /// Removes `key`.
    pub fn remove(&self, key: &str) {
        self.map.pin().remove(key.as_bytes());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Meta;
    use std::sync::Arc;

    fn object(n: u32) -> Value {
        Value::Object { meta: Meta { created_nanos: u64::from(n), creation_nanos: 0 }, object: Arc::new(n) }
    }

    fn read(map: &ObjectMap, key: &str) -> Option<u32> {
        map.with(key, |v| v.and_then(|v| v.downcast_ref::<u32>().copied()))
    }

    #[test]
    fn keys_inside_and_outside_the_entry_are_found_by_their_bytes() {
        let map = ObjectMap::new();
        let inline = "k".repeat(INLINE);
        let heap = "k".repeat(INLINE + 1);
        let keys = ["", "a", "ab", "é|ü", inline.as_str(), heap.as_str()];
        for (n, k) in keys.iter().enumerate() {
            map.insert(k, object(n as u32));
        }
        assert_eq!(map.len(), keys.len());
        for (n, k) in keys.iter().enumerate() {
            assert_eq!(read(&map, k), Some(n as u32), "{k:?}");
        }
        // A prefix or an extension of a stored key is another key.
        assert_eq!(read(&map, &"k".repeat(INLINE - 1)), None);
        assert_eq!(read(&map, &"k".repeat(INLINE + 2)), None);
        map.insert(&heap, object(99));
        assert_eq!(read(&map, &heap), Some(99));
        assert_eq!(map.len(), keys.len());
        map.remove(&inline);
        map.remove(&heap);
        assert_eq!((read(&map, &inline), read(&map, &heap)), (None, None));
        assert_eq!(map.get("a").and_then(|v| v.downcast_ref::<u32>().copied()), Some(1));
        map.clear();
        assert!(map.is_empty());
    }
}
