//! The async interface (feature `redis-async`): a managed multiplexed
//! connection on tokio, which reconnects by itself after Redis restarts.

use super::RedisBackend;
use super::blocking::{bytes, set_cmd, value, word};
use super::connection::{CONNECT_TLS, NAME, Timeouts, error, is_tls};
use super::lease::AsyncRedisLease;
use super::scripts::{READ_AND_LEASE, STORE_MAX, millis, padded, token};
use dogpile_core::backend::{Acquire, AsyncBackend, BackendError, BoxFuture, Lease, Leased, ReleaseOnDrop, Value};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The async connections: one per tokio runtime that makes async calls,
/// made on its first call (the backend may have been built outside any
/// runtime). A managed connection lives on the runtime that made it (its
/// I/O is one of that runtime's tasks), so sharing one across runtimes
/// would break every call once its runtime shut down, and stall calls from
/// other runtimes while its own is not driven; connections of runtimes that
/// have shut down are dropped.
#[derive(Debug)]
pub(crate) struct Aio {
    client: redis::Client,
    timeouts: Timeouts,
    homes: Mutex<Vec<Home>>,
    /// Whether the connections speak TLS (for errors).
    tls: bool,
}

/// A runtime's connection.
#[derive(Debug)]
struct Home {
    manager: ConnectionManager,
    runtime: Handle,
    /// Closed when the runtime shuts down: the sender is held by a task on
    /// it, which the shutdown drops (and which ends when this is dropped).
    alive: oneshot::Receiver<()>,
}

impl Home {
    fn runtime_is_running(&mut self) -> bool {
        matches!(self.alive.try_recv(), Err(oneshot::error::TryRecvError::Empty))
    }
}

impl Aio {
    pub(crate) fn new(client: redis::Client, timeouts: Timeouts) -> Self {
        Self { tls: is_tls(&client), client, timeouts, homes: Mutex::new(Vec::new()) }
    }

    /// The connection of the caller's runtime, and that runtime.
    fn connection(&self) -> Result<(ConnectionManager, Handle), BackendError> {
        let runtime = Handle::try_current().map_err(|e| {
            BackendError::with_source(NAME, "the async interface of the Redis backend needs a tokio runtime", e)
        })?;
        let id = runtime.id();
        let mut homes = self.homes.lock().unwrap_or_else(PoisonError::into_inner);
        // The caller runs on this runtime, so it has not shut down.
        if let Some(home) = homes.iter().find(|h| h.runtime.id() == id) {
            return Ok((home.manager.clone(), home.runtime.clone()));
        }
        homes.retain_mut(Home::runtime_is_running);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeouts.connect))
            .set_response_timeout(Some(self.timeouts.io))
            // Reconnect attempts run in the background; a call made while
            // Redis is down fails at once rather than waiting for them.
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            .map_err(|e| error("could not set up the async connection", e))?;
        let (mut beacon, alive) = oneshot::channel::<()>();
        drop(runtime.spawn(async move { beacon.closed().await }));
        homes.push(Home { manager: manager.clone(), runtime: runtime.clone(), alive });
        Ok((manager, runtime))
    }
}

impl RedisBackend {
    fn aio(&self) -> Result<(ConnectionManager, Handle), BackendError> {
        match &self.inner.aio {
            Some(aio) => aio.connection(),
            None => Err(BackendError::new(NAME, "this Redis deployment has no async interface")),
        }
    }

    fn manager(&self) -> Result<ConnectionManager, BackendError> {
        self.aio().map(|(m, _)| m)
    }

    /// The error of a call: over TLS, an I/O or client error may be a
    /// failed handshake (the managed connection connects within the call;
    /// the redis client reports native-tls errors as client errors), so it
    /// says what to check.
    fn failed(&self, doing: &str, e: redis::RedisError) -> BackendError {
        let tls = self.inner.aio.as_ref().is_some_and(|aio| aio.tls);
        if tls && matches!(e.kind(), redis::ErrorKind::Io | redis::ErrorKind::Client) {
            error(&format!("{doing}; {CONNECT_TLS}"), e)
        } else {
            error(doing, e)
        }
    }
}

impl AsyncBackend for RedisBackend {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Value>, BackendError>> {
        Box::pin(async move {
            let mut con = self.manager()?;
            let found = redis::cmd("GET").arg(self.inner.keys.value(key)).query_async(&mut con).await;
            found.map(value).map_err(|e| self.failed("could not read", e))
        })
    }

    fn set<'a>(&'a self, key: &'a str, v: Value, ttl: Option<Duration>) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let mut con = self.manager()?;
            let cmd = set_cmd(&self.inner.keys.value(key), bytes(&v)?, ttl);
            cmd.query_async::<()>(&mut con).await.map_err(|e| self.failed("could not write", e))
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let mut con = self.manager()?;
            let cmd = redis::cmd("DEL").arg(self.inner.keys.value(key)).clone();
            cmd.query_async::<()>(&mut con).await.map_err(|e| self.failed("could not delete", e))
        })
    }

    fn get_multi<'a>(&'a self, keys: &'a [&'a str]) -> BoxFuture<'a, Result<Vec<Option<Value>>, BackendError>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let mut con = self.manager()?;
            let mut cmd = redis::cmd("MGET");
            for k in keys {
                cmd.arg(self.inner.keys.value(k));
            }
            let found: Vec<Option<Vec<u8>>> =
                cmd.query_async(&mut con).await.map_err(|e| self.failed("could not read", e))?;
            Ok(found.into_iter().map(value).collect())
        })
    }

    fn set_multi<'a>(
        &'a self,
        items: Vec<(&'a str, Value)>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            if items.is_empty() {
                return Ok(());
            }
            let mut con = self.manager()?;
            let mut pipe = redis::pipe();
            for (k, v) in &items {
                pipe.add_command(set_cmd(&self.inner.keys.value(k), bytes(v)?, ttl)).ignore();
            }
            pipe.query_async::<()>(&mut con).await.map_err(|e| self.failed("could not write", e))
        })
    }

    fn delete_multi<'a>(&'a self, keys: &'a [&'a str]) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(());
            }
            let mut con = self.manager()?;
            let mut pipe = redis::pipe();
            for k in keys {
                pipe.cmd("DEL").arg(self.inner.keys.value(k)).ignore();
            }
            pipe.query_async::<()>(&mut con).await.map_err(|e| self.failed("could not delete", e))
        })
    }

    fn try_lease<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<Acquire, BackendError>> {
        Box::pin(async move {
            let (con, runtime) = self.aio()?;
            let (lease_key, token) = (self.inner.keys.lease(key), token());
            let cmd = redis::cmd("SET").arg(&lease_key).arg(&token).arg("NX").arg("PX").arg(millis(ttl)).clone();
            let request = {
                let mut con = con.clone();
                async move { cmd.query_async::<Option<String>>(&mut con).await.map(|won| (won.is_some(), ())) }
            };
            let (lease, ()) = lease_request(AsyncRedisLease { con, runtime, lease_key, token }, request)
                .await
                .map_err(|e| self.failed("could not ask for a lease", e))?;
            Ok(lease.map_or(Acquire::Held, Acquire::Won))
        })
    }

    fn read_and_lease<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<Leased, BackendError>> {
        Box::pin(async move {
            let (con, runtime) = self.aio()?;
            let (value_key, lease_key, token) = (self.inner.keys.value(key), self.inner.keys.lease(key), token());
            let request = {
                let (mut con, lease_key, token) = (con.clone(), lease_key.clone(), token.clone());
                async move {
                    let mut call = READ_AND_LEASE.key(&value_key);
                    call.key(&lease_key).arg(&token).arg(millis(ttl));
                    let (won, stored): (i64, Option<Vec<u8>>) = call.invoke_async(&mut con).await?;
                    Ok((won == 1, stored))
                }
            };
            let (lease, stored) = lease_request(AsyncRedisLease { con, runtime, lease_key, token }, request)
                .await
                .map_err(|e| self.failed("could not read and ask for a lease", e))?;
            let acquire = lease.map_or(Acquire::Held, Acquire::Won);
            Ok(Leased { value: value(stored), acquire })
        })
    }

    fn load_invalidation<'a>(&'a self, region: &'a str) -> BoxFuture<'a, Result<Option<u64>, BackendError>> {
        Box::pin(async move {
            let mut con = self.manager()?;
            let cmd = redis::cmd("GET").arg(self.inner.keys.invalidation(region)).clone();
            word(cmd.query_async(&mut con).await.map_err(|e| self.failed("could not read the invalidation", e))?)
        })
    }

    fn store_invalidation<'a>(&'a self, region: &'a str, w: u64) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let mut con = self.manager()?;
            let mut call = STORE_MAX.key(self.inner.keys.invalidation(region));
            call.arg(padded(w));
            call.invoke_async::<()>(&mut con).await.map_err(|e| self.failed("could not write the invalidation", e))
        })
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        if Handle::try_current().is_ok() {
            Box::pin(tokio::time::sleep(duration))
        } else {
            Box::pin(async move { std::thread::sleep(duration) })
        }
    }
}

/// Runs a lease request as a task of its own on the lease's runtime, so that
/// a caller cancelled midway cannot lose a lease the request won: a won
/// lease travels back held in a [`ReleaseOnDrop`], so whether nobody is
/// left to take the answer or the answer is dropped unread, the lease is
/// released rather than left to expire. Returns the lease if it was won,
/// and what else the request read.
async fn lease_request<T: Send + 'static>(
    lease: AsyncRedisLease,
    request: impl Future<Output = redis::RedisResult<(bool, T)>> + Send + 'static,
) -> redis::RedisResult<(Option<Box<dyn Lease>>, T)> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let runtime = lease.runtime.clone();
    drop(runtime.spawn(async move {
        let answer =
            request.await.map(|(won, read)| (won.then(|| ReleaseOnDrop::new(Box::new(lease) as Box<dyn Lease>)), read));
        // A failed send drops the answer, and with it releases a won lease.
        let _ = tx.send(answer);
    }));
    let (held, read) = rx.await.map_err(|_| {
        redis::RedisError::from((redis::ErrorKind::Io, "the lease request's task ended without an answer"))
    })??;
    Ok((held.map(ReleaseOnDrop::into_inner), read))
}
