//! Leases: the creation lock of one key, issued by a backend shared between
//! processes.

use super::{BackendError, BoxFuture, Value};
use crate::block_on::block_on;
use std::fmt;
use std::sync::Arc;
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
///
/// The region releases every lease it is handed, however the creation ends.
/// A lease dropped before it reaches the region (a `read_and_lease` whose
/// future is dropped after the lease was won) is not released by dropping
/// it, unless it is held in a [`ReleaseOnDrop`] meanwhile, as the default
/// `read_and_lease` does.
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

/// Holds a won lease until it is handed on, and releases it if it is
/// dropped instead (the future carrying it was cancelled): from a task on
/// tokio's blocking pool when there is a runtime, else from a helper
/// thread, so the dropping thread never blocks.
///
/// ```
/// # use dogpile_core::backend::{Acquire, Lease, ReleaseOnDrop};
/// # fn hand_on(lease: Box<dyn Lease>) -> Acquire {
/// let held = ReleaseOnDrop::new(lease);
/// // ... an await that may be cancelled: the lease is released if so ...
/// Acquire::Won(held.into_inner())
/// # }
/// ```
#[derive(Debug)]
pub struct ReleaseOnDrop(Option<Box<dyn Lease>>);

impl ReleaseOnDrop {
    /// Holds `lease`.
    pub fn new(lease: Box<dyn Lease>) -> Self {
        ReleaseOnDrop(Some(lease))
    }

    /// The lease, no longer released on drop.
    pub fn into_inner(mut self) -> Box<dyn Lease> {
        self.0.take().expect("present until taken")
    }
}

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        if let Some(lease) = self.0.take() {
            release_detached(Arc::from(lease), |result| {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "could not release a dropped lease; it expires on its own");
                }
            });
        }
    }
}

/// Releases `lease` away from the current thread (tokio's blocking pool if
/// there is a runtime, else a helper thread) and hands the result to `done`.
pub(crate) fn release_detached(lease: Arc<dyn Lease>, done: impl FnOnce(Result<bool, BackendError>) + Send + 'static) {
    let job = move || done(block_on(lease.release()));
    #[cfg(feature = "tokio")]
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        drop(handle.spawn_blocking(job));
        return;
    }
    if let Err(e) = std::thread::Builder::new().name("dogpile-release".into()).spawn(job) {
        tracing::warn!(error = %e, "could not start a thread to release a lease; it expires on its own");
    }
}

/// A future that is ready with `value`: what a blocking backend's [`Lease`]
/// returns.
pub fn ready<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(value))
}
