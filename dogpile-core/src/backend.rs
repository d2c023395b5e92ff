//! The traits a storage backend implements.
//!
//! A backend stores [`Value`]s under string keys. In-process backends
//! ([`ValueKind::Object`]) keep typed objects; shared backends
//! ([`ValueKind::Bytes`]) keep encoded envelopes. A backend shared between
//! processes also supplies a [`DistributedLock`], so that only one process
//! regenerates a key; the region takes its in-process lock first, so only one
//! caller per process ever contends for it.
//!
//! Async I/O backends implement [`AsyncBackend`] as well and return it from
//! [`Backend::as_async`]; the async region API then never blocks an executor
//! thread. Backends whose calls never block ([`Backend::is_non_blocking`],
//! the memory backends) serve both worlds through the sync trait alone.

use crate::error::BackendError;
use crate::key_limits::KeyLimits;
use crate::value::{Value, ValueKind};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A boxed, sendable future, as returned by the async backend traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A storage backend, called synchronously.
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// A short name for logs and errors (`"memory"`, `"redis"`).
    fn name(&self) -> &'static str;

    /// Whether the backend keeps typed objects or encoded bytes.
    fn value_kind(&self) -> ValueKind;

    /// Reads a value.
    fn get(&self, key: &str) -> Result<Option<Value>, BackendError>;

    /// Calls `f` with a borrowed view of the stored value, if any, and says
    /// whether there was one. In-process backends override this so that a
    /// hit touches no reference count.
    fn peek(&self, key: &str, f: &mut dyn FnMut(&Value)) -> Result<bool, BackendError> {
        match self.get(key)? {
            Some(v) => {
                f(&v);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Stores a value. `ttl` is a storage hint for freeing space (it is
    /// longer than the region's expiration); `None` keeps the value until it
    /// is deleted or evicted.
    fn set(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<(), BackendError>;

    /// Deletes a value; deleting a missing key is not an error.
    fn delete(&self, key: &str) -> Result<(), BackendError>;

    /// Reads several values; the result has one slot per key, in order.
    fn get_multi(&self, keys: &[&str]) -> Result<Vec<Option<Value>>, BackendError> {
        keys.iter().map(|k| self.get(k)).collect()
    }

    /// Stores several values.
    fn set_multi(&self, items: Vec<(&str, Value)>, ttl: Option<Duration>) -> Result<(), BackendError> {
        items.into_iter().try_for_each(|(k, v)| self.set(k, v, ttl))
    }

    /// Deletes several values.
    fn delete_multi(&self, keys: &[&str]) -> Result<(), BackendError> {
        keys.iter().try_for_each(|k| self.delete(k))
    }

    /// The backend's lock shared between processes, if it has one. In-process
    /// backends return `None`: the region's in-process lock is enough.
    fn distributed_lock(&self) -> Option<&dyn DistributedLock> {
        None
    }

    /// True when no call ever blocks on I/O, so async callers may call the
    /// sync methods directly.
    fn is_non_blocking(&self) -> bool {
        false
    }

    /// The in-process map holding this backend's values, if that is all it
    /// is: the region then reads it directly on a hit (the memory backend).
    /// Only a backend whose `get`/`set`/`delete` are exactly this map's may
    /// return it.
    fn object_map(&self) -> Option<std::sync::Arc<crate::ObjectMap>> {
        None
    }

    /// The keys this backend can store as they are, if it cannot store
    /// every string (memcached: [`KeyLimits::MEMCACHED`]). The region maps
    /// every key that does not fit, for storage and lock alike, by a stable
    /// digest (see [`KeyLimits`]); the backend never sees a key beyond its
    /// limits.
    fn key_limits(&self) -> Option<KeyLimits> {
        None
    }

    /// The async interface of this backend, if it has one. The async region
    /// API calls a backend without one through its sync methods, on the
    /// executor thread: fine for backends that never block (the memory
    /// backends), but a backend that does I/O must provide this so that
    /// async callers never block their executor.
    fn as_async(&self) -> Option<&dyn AsyncBackend> {
        None
    }
}

/// An owner token for a distributed lock: only the owner may extend or
/// release it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LockToken(String);

impl LockToken {
    /// A new random token (128 bits, hex).
    pub fn random() -> Self {
        LockToken(format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)))
    }

    /// The token's text, as stored in the backend.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A creation lock shared between processes (Redis `SET NX PX`, memcached
/// `add`, a file lock...). Locks expire after `ttl` so that a crashed owner
/// cannot hold them forever; a long creator extends its lock.
pub trait DistributedLock: Send + Sync {
    /// Tries once to take the lock for `key`; `Ok(false)` if another owner
    /// holds it.
    fn try_acquire(&self, key: &str, token: &LockToken, ttl: Duration) -> Result<bool, BackendError>;

    /// Extends a lock this token owns; `Ok(false)` if it was lost.
    fn extend(&self, key: &str, token: &LockToken, ttl: Duration) -> Result<bool, BackendError>;

    /// Releases a lock this token owns; `Ok(false)` if it was not ours any
    /// more (expired and taken by another).
    fn release(&self, key: &str, token: &LockToken) -> Result<bool, BackendError>;

    /// How long to wait before trying again when the lock is held.
    fn retry_interval(&self) -> Duration {
        Duration::from_millis(10)
    }
}

/// The async twin of [`Backend`], for backends with async clients.
pub trait AsyncBackend: Send + Sync {
    /// Reads a value.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Value>, BackendError>>;

    /// Stores a value (see [`Backend::set`]).
    fn set<'a>(&'a self, key: &'a str, value: Value, ttl: Option<Duration>) -> BoxFuture<'a, Result<(), BackendError>>;

    /// Deletes a value.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BackendError>>;

    /// Reads several values, one slot per key.
    fn get_multi<'a>(&'a self, keys: &'a [&'a str]) -> BoxFuture<'a, Result<Vec<Option<Value>>, BackendError>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                out.push(self.get(k).await?);
            }
            Ok(out)
        })
    }

    /// Stores several values.
    fn set_multi<'a>(
        &'a self,
        items: Vec<(&'a str, Value)>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            for (k, v) in items {
                self.set(k, v, ttl).await?;
            }
            Ok(())
        })
    }

    /// Deletes several values.
    fn delete_multi<'a>(&'a self, keys: &'a [&'a str]) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            for k in keys {
                self.delete(k).await?;
            }
            Ok(())
        })
    }

    /// The async distributed lock, if the backend has one.
    fn distributed_lock(&self) -> Option<&dyn AsyncDistributedLock> {
        None
    }
}

/// The async twin of [`DistributedLock`].
pub trait AsyncDistributedLock: Send + Sync {
    /// Tries once to take the lock.
    fn try_acquire<'a>(
        &'a self,
        key: &'a str,
        token: &'a LockToken,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, BackendError>>;
    /// Extends a lock this token owns.
    fn extend<'a>(
        &'a self,
        key: &'a str,
        token: &'a LockToken,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, BackendError>>;
    /// Releases a lock this token owns.
    fn release<'a>(&'a self, key: &'a str, token: &'a LockToken) -> BoxFuture<'a, Result<bool, BackendError>>;
    /// How long to wait before trying again when the lock is held.
    fn retry_interval(&self) -> Duration {
        Duration::from_millis(10)
    }
    /// Sleeps for `duration` on the backend's runtime (the region's async
    /// core has no timer of its own, so that it stays runtime-agnostic).
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct_and_hex() {
        let a = LockToken::random();
        let b = LockToken::random();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
