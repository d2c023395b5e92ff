//! Leases: the creation lock of one key, issued by a backend shared between
//! processes.

use super::{BackendError, BoxFuture, Value};
use std::fmt;
use std::time::Duration;

/// The creation lock of one key, held by this process until released or
/// expired.
///
/// Issued by [`BlockingBackend::try_lease`](super::BlockingBackend::try_lease)
/// or [`AsyncBackend::try_lease`](super::AsyncBackend::try_lease). Its
/// methods return futures so that one type serves both worlds: a blocking
/// backend does its work when the method is called and returns [`ready`].
/// The region's keeper thread polls `extend` outside any async runtime, so
/// the futures of an async client must not need to be polled on its
/// runtime (requests sent over a channel to a connection task are fine).
///
/// Only the owner may extend or release: a lease that expired and was taken
/// by another process is not released by its first owner (`Ok(false)`).
pub trait Lease: Send + Sync + fmt::Debug + 'static {
    /// Whether the lease expires unless extended (Redis, memcached: yes). A
    /// lock held by an open file is released when the file is closed, even by
    /// a crash, and needs no keep-alive.
    fn needs_keep_alive(&self) -> bool {
        true
    }

    /// Extends the lease to `ttl` from now; `Ok(false)` if it was lost.
    fn extend(&self, ttl: Duration) -> BoxFuture<'_, Result<bool, BackendError>>;

    /// Releases the lease; `Ok(false)` if it was not ours any more. Called
    /// once.
    fn release(&self) -> BoxFuture<'_, Result<bool, BackendError>>;
}

/// The answer to a lease request.
#[derive(Debug)]
pub enum Acquire {
    /// This process holds the key's lease now.
    Won(Box<dyn Lease>),
    /// Another process holds it.
    Held,
}

/// What [`read_and_lease`](super::BlockingBackend::read_and_lease) found:
/// the stored value, read *after* the lease was decided (so a value stored
/// by a holder that just released is seen), and the lease.
#[derive(Debug)]
pub struct Leased {
    /// The stored value, if any.
    pub value: Option<Value>,
    /// Whether this process won the lease.
    pub acquire: Acquire,
}

/// A future that is ready with `value`: what a blocking backend's [`Lease`]
/// returns.
pub fn ready<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(value))
}
