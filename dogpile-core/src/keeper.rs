//! Keeps a distributed lock alive while a long creator runs.
//!
//! A distributed lock expires after the region's `lock_timeout` so that a
//! crashed owner cannot hold it forever. A creator that legitimately runs
//! longer must not lose it, so while the lock is held a small thread extends
//! it every third of the timeout. The thread stops as soon as the guard is
//! dropped, or when an extension reports the lock lost.

use crate::backend::LockToken;
use crate::region::Region;
use crate::stats::Counter;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

/// Stops its thread on drop.
pub(crate) struct LockKeeper {
    stop: Arc<(Mutex<bool>, Condvar)>,
}

impl LockKeeper {
    pub(crate) fn start(region: &Region, key: &str, token: &LockToken) -> Option<LockKeeper> {
        region.inner.backend.distributed_lock()?;
        let ttl = region.inner.lock_timeout;
        let interval = (ttl / 3).max(Duration::from_millis(1));
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let (region, key, token, thread_stop) = (region.clone(), key.to_owned(), token.clone(), stop.clone());
        let spawned = std::thread::Builder::new().name("dogpile-lock-keeper".into()).spawn(move || {
            let (stopped, cv) = &*thread_stop;
            let mut guard = stopped.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                let (g, _) = cv.wait_timeout(guard, interval).unwrap_or_else(PoisonError::into_inner);
                guard = g;
                if *guard {
                    return;
                }
                let Some(lock) = region.inner.backend.distributed_lock() else { return };
                match lock.extend(&key, &token, ttl) {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(region = %region.inner.name, key = %key, "distributed lock lost while its creator still runs");
                        return;
                    }
                    Err(e) => {
                        region.count(Counter::BackendErrors);
                        tracing::warn!(region = %region.inner.name, key = %key, error = %e, "could not extend distributed lock");
                    }
                }
            }
        });
        match spawned {
            Ok(_) => Some(LockKeeper { stop }),
            Err(e) => {
                tracing::warn!(error = %e, "could not start the lock keeper; a creator slower than lock_timeout may lose its lock");
                None
            }
        }
    }
}

impl Drop for LockKeeper {
    fn drop(&mut self) {
        let (stopped, cv) = &*self.stop;
        *stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        cv.notify_all();
    }
}
