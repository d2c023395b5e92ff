//! Taking the backend's distributed lock after the in-process one.

use crate::backend::LockToken;
use crate::error::Error;
use crate::keeper::LockKeeper;
use crate::region::Region;
use crate::stats::Counter;

/// Holds a backend's distributed lock; releases it on drop (owner-checked).
pub(crate) struct DistGuard {
    region: Region,
    key: String,
    token: LockToken,
    /// Taken through the async lock: released through it when the async path
    /// ends normally; a guard dropped by cancellation releases through the
    /// sync lock instead.
    released: bool,
    /// Extends the lock while we hold it; stopped before the release.
    keeper: Option<LockKeeper>,
}

impl DistGuard {
    fn new(region: &Region, key: &str, token: LockToken) -> Self {
        let keeper = LockKeeper::start(region, key, &token);
        DistGuard { region: region.clone(), key: key.to_owned(), token, released: false, keeper }
    }
}

pub(crate) enum DistOutcome {
    /// The backend has no distributed lock: the in-process lock suffices.
    NotNeeded,
    Acquired(DistGuard),
    /// Another process holds it.
    Held,
}

impl DistOutcome {
    pub(crate) fn into_guard(self) -> Option<DistGuard> {
        match self {
            DistOutcome::Acquired(g) => Some(g),
            _ => None,
        }
    }
}

impl Region {
    /// Tries once to take the backend's lock for `skey`.
    pub(crate) fn try_distributed(&self, skey: &str) -> Result<DistOutcome, Error> {
        let Some(lock) = self.inner.backend.distributed_lock() else {
            return Ok(DistOutcome::NotNeeded);
        };
        let token = LockToken::random();
        let acquired = lock.try_acquire(skey, &token, self.inner.lock_timeout);
        self.dist_outcome(skey, token, acquired)
    }

    /// Tries once to take the backend's lock for `skey` through its async
    /// interface (or the sync one for backends without).
    pub(crate) async fn try_distributed_async(&self, skey: &str) -> Result<DistOutcome, Error> {
        let Some(lock) = self.inner.backend.as_async().and_then(|a| a.distributed_lock()) else {
            return self.try_distributed(skey);
        };
        let token = LockToken::random();
        let acquired = lock.try_acquire(skey, &token, self.inner.lock_timeout).await;
        self.dist_outcome(skey, token, acquired)
    }

    fn dist_outcome(
        &self,
        skey: &str,
        token: LockToken,
        acquired: Result<bool, crate::BackendError>,
    ) -> Result<DistOutcome, Error> {
        Ok(if self.backend_call(acquired)? {
            DistOutcome::Acquired(DistGuard::new(self, skey, token))
        } else {
            DistOutcome::Held
        })
    }

    /// The delay before trying a held distributed lock again, growing from
    /// the backend's interval by half each time up to 16 times it.
    pub(crate) fn dist_backoff(&self, attempt: u32) -> std::time::Duration {
        let backend = &self.inner.backend;
        let base = match backend.distributed_lock() {
            Some(l) => l.retry_interval(),
            None => {
                backend.as_async().and_then(|a| a.distributed_lock()).map(|l| l.retry_interval()).unwrap_or_default()
            }
        };
        let factor = 1.5f64.powi(attempt.min(7) as i32).min(16.0);
        // Capped at a minute, so a huge interval cannot overflow.
        std::time::Duration::from_secs_f64((base.as_secs_f64() * factor).min(60.0))
    }
}

impl DistGuard {
    /// Releases through the backend's async lock (if it has one), without
    /// blocking the executor.
    pub(crate) async fn release_async(mut self) {
        drop(self.keeper.take());
        let Some(lock) = self.region.inner.backend.as_async().and_then(|a| a.distributed_lock()) else {
            return; // the sync release in Drop does it
        };
        let result = lock.release(&self.key, &self.token).await;
        self.released = true;
        self.report(result);
    }

    fn report(&self, result: Result<bool, crate::BackendError>) {
        match result {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                region = %self.region.inner.name,
                key = %self.key,
                "distributed lock had expired before release (creator slower than lock_timeout?)"
            ),
            Err(e) => {
                self.region.count(Counter::BackendErrors);
                tracing::warn!(region = %self.region.inner.name, key = %self.key, error = %e, "could not release distributed lock; it expires on its own");
            }
        }
    }
}

impl DistGuard {
    /// A guard of an async-only lock dropped without `release_async` (its
    /// creator was cancelled): release it from a spawned task.
    #[cfg(feature = "tokio")]
    fn release_detached(&mut self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return self.report_unreleased();
        };
        let (region, key, token) = (self.region.clone(), std::mem::take(&mut self.key), self.token.clone());
        drop(handle.spawn(async move {
            if let Some(lock) = region.inner.backend.as_async().and_then(|a| a.distributed_lock()) {
                let result = lock.release(&key, &token).await;
                DistGuard { region, key, token, released: true, keeper: None }.report(result);
            }
        }));
    }

    #[cfg(not(feature = "tokio"))]
    fn release_detached(&mut self) {
        self.report_unreleased();
    }

    fn report_unreleased(&self) {
        if self.region.inner.backend.as_async().and_then(|a| a.distributed_lock()).is_some() {
            tracing::warn!(
                region = %self.region.inner.name,
                key = %self.key,
                "async-only distributed lock of a cancelled creator not released (no tokio runtime); it expires after lock_timeout"
            );
        }
    }
}

impl Drop for DistGuard {
    fn drop(&mut self) {
        drop(self.keeper.take());
        if self.released {
            return;
        }
        let Some(lock) = self.region.inner.backend.distributed_lock() else {
            self.release_detached();
            return;
        };
        let result = lock.release(&self.key, &self.token);
        self.report(result);
    }
}
