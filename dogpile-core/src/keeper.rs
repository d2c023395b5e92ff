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
            loop {
                {
                    let guard = stopped.lock().unwrap_or_else(PoisonError::into_inner);
                    if *guard {
                        return;
                    }
                    let (guard, _) = cv.wait_timeout(guard, interval).unwrap_or_else(PoisonError::into_inner);
                    if *guard {
                        return;
                    }
                    // The mutex is not held across the network call below, so
                    // dropping the guard never waits for an extension.
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

#[cfg(test)]
mod tests {
    use crate::backend::{Backend, DistributedLock, LockToken};
    use crate::error::BackendError;
    use crate::value::{Value, ValueKind};
    use crate::{Expiration, Region};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    /// Stores nothing; its lock records who holds it and counts extensions.
    #[derive(Debug, Default)]
    struct LockOnly {
        owner: Mutex<Option<String>>,
        extends: AtomicUsize,
        released_by: Mutex<Vec<String>>,
    }

    impl Backend for Arc<LockOnly> {
        fn name(&self) -> &'static str {
            "lock-only"
        }
        fn value_kind(&self) -> ValueKind {
            ValueKind::Bytes
        }
        fn get(&self, _: &str) -> Result<Option<Value>, BackendError> {
            Ok(None)
        }
        fn set(&self, _: &str, _: Value, _: Option<Duration>) -> Result<(), BackendError> {
            Ok(())
        }
        fn delete(&self, _: &str) -> Result<(), BackendError> {
            Ok(())
        }
        fn distributed_lock(&self) -> Option<&dyn DistributedLock> {
            Some(&**self)
        }
    }

    impl DistributedLock for LockOnly {
        fn try_acquire(&self, _: &str, token: &LockToken, _: Duration) -> Result<bool, BackendError> {
            let mut owner = self.owner.lock().unwrap();
            if owner.is_some() {
                return Ok(false);
            }
            *owner = Some(token.as_str().to_owned());
            Ok(true)
        }
        fn extend(&self, _: &str, token: &LockToken, _: Duration) -> Result<bool, BackendError> {
            let ours = self.owner.lock().unwrap().as_deref() == Some(token.as_str());
            if ours {
                self.extends.fetch_add(1, Ordering::SeqCst);
            }
            Ok(ours)
        }
        fn release(&self, _: &str, token: &LockToken) -> Result<bool, BackendError> {
            let mut owner = self.owner.lock().unwrap();
            self.released_by.lock().unwrap().push(token.as_str().to_owned());
            let ours = owner.as_deref() == Some(token.as_str());
            if ours {
                *owner = None;
            }
            Ok(ours)
        }
    }

    #[test]
    fn a_long_creator_keeps_its_lock_and_releases_it_with_its_own_token() {
        let backend = Arc::new(LockOnly::default());
        let region = Region::builder("keeper")
            .backend(backend.clone())
            .expiration(Expiration::Never)
            .lock_timeout(Duration::from_millis(30))
            .build();
        let v: u32 = region
            .get_or_create("k", || {
                // Runs until the keeper has extended the lock twice (hang guard: 10 s).
                let start = Instant::now();
                while backend.extends.load(Ordering::SeqCst) < 2 {
                    assert!(start.elapsed() < Duration::from_secs(10), "lock never extended");
                    std::thread::sleep(Duration::from_millis(1));
                }
                7
            })
            .unwrap();
        assert_eq!(v, 7);
        assert!(backend.owner.lock().unwrap().is_none(), "lock released");
        let released = backend.released_by.lock().unwrap().clone();
        assert_eq!(released.len(), 1);
    }
}
