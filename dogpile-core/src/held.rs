//! The locks a creator holds: the key's in-process lock and, on a backend
//! shared between processes, its lease. Both are released when the creation
//! ends, however it ends (return, error, panic, a dropped future): the lease
//! first, so that an in-process waiter woken by the local release finds it
//! free. Except when an async creator is dropped (cancelled, or panicking):
//! its lease is released away from the dropping thread and its in-process
//! lock goes at once (see `LeaseGuard::release_on_drop`), as does a lease
//! still on its way in `read_and_lease` when its caller is cancelled
//! (released by the backend's `ReleaseOnDrop`).

use crate::backend::lease::release_detached;
use crate::backend::{BackendError, Lease};
use crate::block_on::block_on;
use crate::keeper::Keeper;
use crate::lock::KeyGuard;
use crate::region::Region;
use crate::stats::Counter;
use std::sync::Arc;

/// Where a lease came from, which decides how it is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The blocking interface: its futures are ready when made.
    Blocking,
    /// The blocking interface of a backend that may block, used from async
    /// code: released on tokio's blocking pool.
    #[cfg(feature = "tokio")]
    Offloaded,
    /// The async interface.
    Async,
}

/// A lease held by this process; released on drop.
pub(crate) struct LeaseGuard {
    region: Region,
    key: String,
    lease: Option<Arc<dyn Lease>>,
    ticket: Option<u64>,
    origin: Origin,
}

impl LeaseGuard {
    pub(crate) fn new(region: &Region, key: &str, lease: Box<dyn Lease>, origin: Origin) -> Self {
        let lease: Arc<dyn Lease> = Arc::from(lease);
        let ticket = lease.needs_keep_alive().then(|| Keeper::keep(&region.inner, key, lease.clone()));
        LeaseGuard { region: region.clone(), key: key.to_owned(), lease: Some(lease), ticket, origin }
    }

    /// Stops the keep-alive (before the release).
    fn stop_keep_alive(&mut self) {
        if let Some(t) = self.ticket.take() {
            self.region.inner.keeper.forget(t);
        }
    }

    /// Releases the lease without blocking the executor. The guard keeps the
    /// lease until the release is done, so a future dropped during it still
    /// releases it on drop.
    async fn release_async(&mut self) {
        self.stop_keep_alive();
        let Some(lease) = self.lease.clone() else { return };
        let result = match self.origin {
            Origin::Async => lease.release().await,
            Origin::Blocking => block_on(lease.release()),
            #[cfg(feature = "tokio")]
            Origin::Offloaded => offload_release(lease).await,
        };
        self.lease = None;
        self.report(result);
    }

    /// Releases the lease from a drop, then lets `then` (the key's
    /// in-process lock) go: here and now for a lease of the blocking
    /// interface. Otherwise (an async creator cancelled or panicking) the
    /// lease is released away from this thread, perhaps an executor's, and
    /// the in-process lock goes at once: carried along, it would wait for a
    /// release task that may never run (a runtime no longer driven while a
    /// blocking caller on its thread waits for that lock). A caller woken
    /// meanwhile may find the lease held a moment longer and wait for it.
    fn release_on_drop(&mut self, then: Option<KeyGuard>) {
        self.stop_keep_alive();
        // Released already: `then` goes now.
        let Some(lease) = self.lease.take() else { return };
        if self.origin == Origin::Blocking {
            let result = block_on(lease.release());
            self.report(result);
            drop(then);
            return;
        }
        let (region, key) = (self.region.clone(), std::mem::take(&mut self.key));
        release_detached(lease, move |result| report(&region, &key, result));
        drop(then);
    }

    fn report(&self, result: Result<bool, BackendError>) {
        report(&self.region, &self.key, result);
    }
}

fn report(region: &Region, key: &str, result: Result<bool, BackendError>) {
    match result {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            region = %region.inner.name,
            key = %key,
            "lease had expired before release (creator slower than lock_timeout?)"
        ),
        Err(e) => {
            region.count(Counter::BackendErrors);
            tracing::warn!(region = %region.inner.name, key = %key, error = %e, "could not release a lease; it expires on its own");
        }
    }
}

#[cfg(feature = "tokio")]
async fn offload_release(lease: Arc<dyn Lease>) -> Result<bool, BackendError> {
    tokio::task::spawn_blocking(move || block_on(lease.release()))
        .await
        .unwrap_or_else(|e| Err(BackendError::new("dogpile", format!("lease release task failed: {e}"))))
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.release_on_drop(None);
    }
}

/// The locks held while creating one key, released the lease first however
/// the creation ends (see the module docs).
pub(crate) struct Held {
    lease: Option<LeaseGuard>,
    /// `Some` until the drop.
    local: Option<KeyGuard>,
}

impl Held {
    pub(crate) fn new(lease: Option<LeaseGuard>, local: KeyGuard) -> Self {
        Held { lease, local: Some(local) }
    }

    /// The key's in-process lock.
    pub(crate) fn local(&self) -> &KeyGuard {
        self.local.as_ref().expect("held until dropped")
    }

    /// Releases both, the lease through the async path. Dropped during the
    /// release (a cancelled caller), the guard finishes it on drop, the
    /// in-process lock still second.
    pub(crate) async fn release_async(mut self) {
        if let Some(lease) = &mut self.lease {
            lease.release_async().await;
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let local = self.local.take();
        match &mut self.lease {
            Some(lease) => lease.release_on_drop(local),
            None => drop(local),
        }
    }
}

/// Counts a creator that unwinds (or whose future is dropped) as a creation
/// error; forgotten when the creator returns.
pub(crate) struct PanicCounter<'a>(pub(crate) &'a Region);

impl Drop for PanicCounter<'_> {
    fn drop(&mut self) {
        self.0.count(Counter::CreationErrors);
        tracing::warn!(region = %self.0.inner.name, "creator panicked or was cancelled; the key's lock is released");
    }
}
