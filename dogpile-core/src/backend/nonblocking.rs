//! The async interface of a backend.

use super::{Acquire, BackendError, BoxFuture, Leased, Value};
use std::time::Duration;

/// A backend's storage, called from async code: the twin of
/// [`BlockingBackend`](super::BlockingBackend), method for method.
pub trait AsyncBackend: Send + Sync {
    /// Reads a value.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Value>, BackendError>>;

    /// Stores a value (see [`BlockingBackend::set`](super::BlockingBackend::set)).
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

    /// See [`BlockingBackend::try_lease`](super::BlockingBackend::try_lease).
    fn try_lease<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<Acquire, BackendError>> {
        let _ = (key, ttl);
        super::ready(Ok(Acquire::Won(Box::new(super::blocking::NoLease))))
    }

    /// See [`BlockingBackend::read_and_lease`](super::BlockingBackend::read_and_lease).
    /// An override must not lose a won lease when its future is dropped
    /// midway: hold it in a [`ReleaseOnDrop`](super::ReleaseOnDrop) across
    /// awaits.
    fn read_and_lease<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<Leased, BackendError>> {
        Box::pin(async move {
            // Held so that a future dropped during the read releases it.
            let held = match self.try_lease(key, ttl).await? {
                Acquire::Won(lease) => Some(super::ReleaseOnDrop::new(lease)),
                Acquire::Held => None,
            };
            let value = self.get(key).await?;
            let acquire = match held {
                Some(held) => Acquire::Won(held.into_inner()),
                None => Acquire::Held,
            };
            Ok(Leased { value, acquire })
        })
    }

    /// See [`BlockingBackend::wait_released`](super::BlockingBackend::wait_released).
    fn wait_released<'a>(&'a self, key: &'a str, max: Duration) -> BoxFuture<'a, Result<bool, BackendError>> {
        let _ = (key, max);
        super::ready(Ok(false))
    }

    /// See [`BlockingBackend::load_invalidation`](super::BlockingBackend::load_invalidation).
    fn load_invalidation<'a>(&'a self, region: &'a str) -> BoxFuture<'a, Result<Option<u64>, BackendError>> {
        let _ = region;
        super::ready(Ok(None))
    }

    /// See [`BlockingBackend::store_invalidation`](super::BlockingBackend::store_invalidation).
    fn store_invalidation<'a>(&'a self, region: &'a str, word: u64) -> BoxFuture<'a, Result<(), BackendError>> {
        let _ = (region, word);
        super::ready(Ok(()))
    }

    /// Sleeps for `duration` (the region's back-off while another process
    /// holds a lease). The region's async core has no timer of its own, so
    /// that it stays runtime-agnostic: the default sleeps on a helper
    /// thread; a backend on a runtime should use the runtime's timer.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(crate::timer::sleep(duration))
    }
}
