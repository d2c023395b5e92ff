//! Taking the backend's distributed lock after the in-process one.

use crate::backend::LockToken;
use crate::error::Error;
use crate::region::Region;
use crate::stats::Counter;

/// Holds a backend's distributed lock; releases it on drop (owner-checked).
pub(crate) struct DistGuard {
    region: Region,
    key: String,
    token: LockToken,
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
        let acquired = self.backend_call(lock.try_acquire(skey, &token, self.inner.lock_timeout))?;
        Ok(if acquired {
            DistOutcome::Acquired(DistGuard { region: self.clone(), key: skey.to_owned(), token })
        } else {
            DistOutcome::Held
        })
    }

    /// The delay before trying a held distributed lock again, growing from
    /// the backend's interval by half each time up to 16 times it.
    pub(crate) fn dist_backoff(&self, attempt: u32) -> std::time::Duration {
        let base = self.inner.backend.distributed_lock().map(|l| l.retry_interval()).unwrap_or_default();
        let factor = 1.5f64.powi(attempt.min(7) as i32).min(16.0);
        base.mul_f64(factor)
    }
}

impl Drop for DistGuard {
    fn drop(&mut self) {
        let Some(lock) = self.region.inner.backend.distributed_lock() else { return };
        match lock.release(&self.key, &self.token) {
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
