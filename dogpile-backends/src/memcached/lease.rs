//! The creation lease of one key: an item `<namespace>l:<key>` added with
//! an expiry (an add: `ms ... ME` in the meta protocol, `ADD` in the binary
//! one), on the server of the key's value. The CAS the server returned
//! identifies the owner: only it extends (a compare-and-swap store) or
//! releases (a delete conditional on the CAS) the lease, so a lease that
//! expired and was taken by another process is never touched by its first
//! owner.

use super::conn::{Reply, SetMode, lease_exptime};
use super::pool::Pool;
use dogpile_core::backend::{BackendError, BoxFuture, Lease, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A lease won on a memcached server.
#[derive(Debug)]
pub(crate) struct MemcachedLease {
    pub(crate) pool: Arc<Pool>,
    /// The value's key: the lease lives on its server.
    pub(crate) route: String,
    pub(crate) key: String,
    /// A random owner token, stored as the lease's value (for people
    /// reading the server; the CAS is what is compared).
    pub(crate) token: String,
    pub(crate) cas: AtomicU64,
}

/// The token stored in a new lease.
pub(crate) fn new_token() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

impl MemcachedLease {
    fn extend_now(&self, ttl: Duration) -> Result<bool, BackendError> {
        let cas = self.cas.load(Ordering::Acquire);
        let reply = self.pool.run(&self.route, |c| {
            c.push_set(&self.key, self.token.as_bytes(), lease_exptime(ttl), SetMode::Cas(cas));
            c.round_trip(1)
        })?;
        match reply.first() {
            Some(Reply::Done { cas: Some(new) }) => {
                self.cas.store(*new, Ordering::Release);
                Ok(true)
            }
            Some(Reply::Done { cas: None }) => Ok(true),
            _ => Ok(false),
        }
    }

    pub(crate) fn release_now(&self) -> Result<bool, BackendError> {
        let cas = self.cas.load(Ordering::Acquire);
        let reply = self.pool.run(&self.route, |c| {
            c.push_delete(&self.key, Some(cas));
            c.round_trip(1)
        })?;
        Ok(matches!(reply.first(), Some(Reply::Done { .. })))
    }
}

impl Lease for MemcachedLease {
    fn needs_keep_alive(&self) -> bool {
        true
    }

    fn extend(&self, ttl: Duration) -> BoxFuture<'_, Result<bool, BackendError>> {
        ready(self.extend_now(ttl))
    }

    fn release(&self) -> BoxFuture<'_, Result<bool, BackendError>> {
        ready(self.release_now())
    }
}
