//! The blocking interface of a backend.

use super::{Acquire, BackendError, Leased, Value};
use std::time::Duration;

/// A backend's storage, called synchronously. See [`Backend`](super::Backend)
/// for an example.
pub trait BlockingBackend: Send + Sync {
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

    /// Tries once to take the creation lease of `key` for `ttl`. Called only
    /// when [`Backend::issues_leases`](super::Backend::issues_leases); the
    /// default (for backends that do not) always wins a lease that does
    /// nothing.
    fn try_lease(&self, key: &str, ttl: Duration) -> Result<Acquire, BackendError> {
        let _ = (key, ttl);
        Ok(Acquire::Won(Box::new(NoLease)))
    }

    /// Tries the lease of `key` and reads its value, in one round trip where
    /// the backend can (memcached's `mg <key> v N<ttl>`, a Redis script).
    /// The default takes the lease, then reads (so a value stored by the
    /// previous holder before it released is seen); a failed read releases
    /// the lease it took.
    fn read_and_lease(&self, key: &str, ttl: Duration) -> Result<Leased, BackendError> {
        let acquire = self.try_lease(key, ttl)?;
        match self.get(key) {
            Ok(value) => Ok(Leased { value, acquire }),
            Err(e) => {
                if let Acquire::Won(lease) = acquire {
                    let _ = crate::block_on::block_on(lease.release());
                }
                Err(e)
            }
        }
    }

    /// Waits until the lease of `key` held by another process is released,
    /// or at most `max`. `Ok(true)`: woken by a release (or the backend
    /// cannot tell, but waited); `Ok(false)`: the backend has no wake-up,
    /// and the region backs off with jitter instead (the default).
    fn wait_released(&self, key: &str, max: Duration) -> Result<bool, BackendError> {
        let _ = (key, max);
        Ok(false)
    }

    /// The last invalidation of `region` kept by the backend (an opaque
    /// word written by [`store_invalidation`](Self::store_invalidation)),
    /// if any. Called only when
    /// [`Backend::shares_invalidation`](super::Backend::shares_invalidation).
    fn load_invalidation(&self, region: &str) -> Result<Option<u64>, BackendError> {
        let _ = region;
        Ok(None)
    }

    /// Keeps `word` as the last invalidation of `region`, verbatim. The
    /// region loads the stored word and adopts it before it records and
    /// stores its own, so the stored word moves forward; a backend that can
    /// keep the larger of the stored and the new word atomically should.
    fn store_invalidation(&self, region: &str, word: u64) -> Result<(), BackendError> {
        let _ = (region, word);
        Ok(())
    }
}

/// The lease of a backend that issues none.
#[derive(Debug)]
pub(crate) struct NoLease;

impl super::Lease for NoLease {
    fn needs_keep_alive(&self) -> bool {
        false
    }
    fn extend(&self, _: Duration) -> super::BoxFuture<'_, Result<bool, BackendError>> {
        super::ready(Ok(true))
    }
    fn release(&self) -> super::BoxFuture<'_, Result<bool, BackendError>> {
        super::ready(Ok(true))
    }
}
