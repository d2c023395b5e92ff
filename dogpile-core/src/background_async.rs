//! Background regeneration on tokio (feature `tokio`).

use crate::error::{Error, TryCreateError};
use crate::held::{Held, PanicCounter};
use crate::lock::run_marked;
use crate::options::{CreateOptions, Expiration};
use crate::region::{CacheValue, Region};
use crate::runner::{Job, Runner};
use crate::stats::Counter;
use std::convert::Infallible;
use std::future::Future;

/// Runs sync regeneration jobs ([`Region::get_or_create_background`]) on
/// tokio's blocking pool. Must be used from within a tokio runtime, or built
/// with [`TokioRunner::with_handle`].
#[derive(Debug, Clone, Default)]
pub struct TokioRunner {
    handle: Option<tokio::runtime::Handle>,
}

impl TokioRunner {
    /// Spawns on the runtime current at each call.
    pub fn new() -> Self {
        Self { handle: None }
    }

    /// Spawns on `handle`'s runtime.
    pub fn with_handle(handle: tokio::runtime::Handle) -> Self {
        Self { handle: Some(handle) }
    }
}

impl Runner for TokioRunner {
    fn spawn(&self, job: Job) -> Result<(), String> {
        let handle = match &self.handle {
            Some(h) => h.clone(),
            None => tokio::runtime::Handle::try_current()
                .map_err(|e| format!("TokioRunner used outside a tokio runtime: {e}"))?,
        };
        drop(handle.spawn_blocking(job));
        Ok(())
    }
}

impl Region {
    /// Like [`get_or_create_async_with`](Self::get_or_create_async_with), but
    /// an expired value is regenerated in a spawned tokio task: every caller,
    /// the one that won the lock included, gets the stale value at once. A
    /// missing value is still created by the caller (there is nothing to
    /// serve meanwhile). Must be called within a tokio runtime.
    pub async fn get_or_create_async_background<T, F, Fut>(
        &self,
        key: &str,
        opts: &CreateOptions<T>,
        creator: F,
    ) -> Result<T, Error>
    where
        T: CacheValue,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let mut spawn = |creator: F, held: Held, skey: String, exp: Expiration, opts: CreateOptions<T>| {
            let handle = tokio::runtime::Handle::try_current()
                .map_err(|e| Error::Runner(format!("get_or_create_async_background outside a tokio runtime: {e}")))?;
            let region = self.clone();
            drop(handle.spawn(async move { region.regenerate_detached(skey, exp, opts, creator, held).await }));
            Ok(())
        };
        let first = match self.read_in_process(key, opts) {
            Ok(Ok(fresh)) => return Ok(fresh),
            Ok(Err(first)) => first,
            Err(e) => return Err(e),
        };
        self.engine_async(key, opts, creator, Ok::<T, Infallible>, Some(&mut spawn), first)
            .await
            .map_err(TryCreateError::into_cache)
    }

    async fn regenerate_detached<T, F, Fut>(
        self,
        skey: String,
        exp: Expiration,
        opts: CreateOptions<T>,
        creator: F,
        held: Held,
    ) where
        T: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let start = self.creation_start();
        let counter = PanicCounter(&self);
        let value = run_marked(&[held.local()], creator).await;
        std::mem::forget(counter);
        self.count(Counter::Creations);
        if opts.accepts(&value) {
            let meta = self.stamp(Some(start));
            match self.async_io() {
                Ok(io) => self.store_created_async(&io, &skey, &value, meta, exp).await,
                Err(e) => tracing::warn!(region = %self.inner.name, error = %e, "regenerated value not stored"),
            }
        }
        held.release_async().await;
    }
}
