//! The creation lease of one key: a Redis key set with `NX PX` to a random
//! owner token, extended and released only by its owner (Lua scripts that
//! compare the token first).

use super::Inner;
#[cfg(feature = "redis-async")]
use super::connection::error;
use super::scripts::{EXTEND, RELEASE, millis};
use dogpile_core::backend::{BackendError, BoxFuture, Lease, ready};
use std::sync::Arc;
use std::time::Duration;

/// A lease taken through the blocking interface: its calls are made when
/// the method is called, on the blocking pool's connections.
#[derive(Debug)]
pub(crate) struct RedisLease {
    pub(crate) inner: Arc<Inner>,
    pub(crate) lease_key: String,
    pub(crate) token: String,
}

impl Lease for RedisLease {
    fn extend(&self, ttl: Duration) -> BoxFuture<'_, Result<bool, BackendError>> {
        let ms = millis(ttl);
        ready(self.inner.pool.with("could not extend a lease", false, |con| {
            EXTEND.key(&self.lease_key).arg(&self.token).arg(ms).invoke::<i64>(con.cmd()).map(|n| n == 1)
        }))
    }

    fn release(&self) -> BoxFuture<'_, Result<bool, BackendError>> {
        ready(self.inner.pool.with("could not release a lease", false, |con| {
            RELEASE.key(&self.lease_key).arg(&self.token).invoke::<i64>(con.cmd()).map(|n| n == 1)
        }))
    }
}

/// A lease taken through the async interface. Its calls run as tasks on the
/// runtime that took it, so the region's keeper thread (outside any
/// runtime) can extend it.
#[cfg(feature = "redis-async")]
#[derive(Debug)]
pub(crate) struct AsyncRedisLease {
    pub(crate) con: redis::aio::ConnectionManager,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) lease_key: String,
    pub(crate) token: String,
}

#[cfg(feature = "redis-async")]
impl AsyncRedisLease {
    fn run(
        &self,
        doing: &'static str,
        script: &'static redis::Script,
        ms: Option<u64>,
    ) -> BoxFuture<'_, Result<bool, BackendError>> {
        let mut con = self.con.clone();
        let (key, token) = (self.lease_key.clone(), self.token.clone());
        let task = self.runtime.spawn(async move {
            let mut call = script.key(key);
            call.arg(token);
            if let Some(ms) = ms {
                call.arg(ms);
            }
            call.invoke_async::<i64>(&mut con).await.map(|n| n == 1).map_err(|e| error(doing, e))
        });
        Box::pin(async move { task.await.map_err(|e| BackendError::with_source(super::connection::NAME, doing, e))? })
    }
}

#[cfg(feature = "redis-async")]
impl Lease for AsyncRedisLease {
    fn extend(&self, ttl: Duration) -> BoxFuture<'_, Result<bool, BackendError>> {
        self.run("could not extend a lease", &EXTEND, Some(millis(ttl)))
    }

    fn release(&self) -> BoxFuture<'_, Result<bool, BackendError>> {
        self.run("could not release a lease", &RELEASE, None)
    }
}
