//! How async callers reach a region's backend without blocking their
//! executor (see the table in [`backend`](crate::backend)).

#[cfg(feature = "tokio")]
use crate::backend::{Acquire, ReleaseOnDrop};
use crate::backend::{Backend, BackendError, BlockingBackend, Leased, Value};
use crate::error::Error;
use crate::held::Origin;
use crate::region::Region;
#[cfg(feature = "tokio")]
use std::sync::Arc;
use std::time::Duration;

/// The backend, as an async caller uses it.
pub(crate) enum AsyncIo<'r> {
    /// A backend that never blocks: its blocking interface, called directly.
    Direct(&'r dyn BlockingBackend),
    /// The async interface.
    Async(&'r dyn crate::backend::AsyncBackend),
    /// A blocking interface that may block: run on tokio's blocking pool.
    #[cfg(feature = "tokio")]
    Offload(&'r Arc<dyn Backend>),
}

impl Region {
    /// The way async calls reach the backend, or why they cannot.
    pub(crate) fn async_io(&self) -> Result<AsyncIo<'_>, Error> {
        let b = &self.inner.backend;
        if let Some(a) = b.nonblocking() {
            return Ok(AsyncIo::Async(a));
        }
        match b.blocking() {
            Some(s) if b.never_blocks() => Ok(AsyncIo::Direct(s)),
            #[cfg(feature = "tokio")]
            Some(_) if tokio::runtime::Handle::try_current().is_ok() => Ok(AsyncIo::Offload(b)),
            #[cfg(feature = "tokio")]
            Some(_) => Err(Error::Unsupported(format!(
                "region `{}`: the `{}` backend has only a blocking interface, which async calls run on tokio's \
                 blocking pool, but this call is not inside a tokio runtime; call it from a tokio task or use the \
                 blocking API",
                self.inner.name,
                b.name()
            ))),
            #[cfg(not(feature = "tokio"))]
            Some(_) => Err(Error::Unsupported(format!(
                "region `{}`: the `{}` backend has only a blocking interface, and calling it from async code would \
                 block the executor; enable dogpile's `tokio` feature (its calls then run on tokio's blocking pool) \
                 or use the blocking API",
                self.inner.name,
                b.name()
            ))),
            None => Err(Error::Unsupported(format!(
                "region `{}`: the `{}` backend has neither a blocking nor an async interface",
                self.inner.name,
                b.name()
            ))),
        }
    }

    /// The blocking interface, or why the blocking API cannot be used.
    pub(crate) fn blocking_io(&self) -> Result<&dyn BlockingBackend, Error> {
        self.inner.backend.blocking().ok_or_else(|| {
            Error::Unsupported(format!(
                "region `{}`: the `{}` backend has only an async interface; use the `_async` methods",
                self.inner.name,
                self.inner.backend.name()
            ))
        })
    }
}

/// Runs `f` with the backend's blocking interface on tokio's blocking pool.
#[cfg(feature = "tokio")]
async fn offload<R: Send + 'static>(
    backend: &Arc<dyn Backend>,
    f: impl FnOnce(&dyn BlockingBackend) -> Result<R, BackendError> + Send + 'static,
) -> Result<R, BackendError> {
    let b = backend.clone();
    let name = b.name();
    tokio::task::spawn_blocking(move || match b.blocking() {
        Some(s) => f(s),
        None => Err(BackendError::new(name, "no blocking interface")),
    })
    .await
    .unwrap_or_else(|e| Err(BackendError::new(name, format!("blocking backend call failed: {e}"))))
}

impl AsyncIo<'_> {
    pub(crate) async fn get(&self, key: &str) -> Result<Option<Value>, BackendError> {
        match self {
            AsyncIo::Direct(s) => s.get(key),
            AsyncIo::Async(a) => a.get(key).await,
            #[cfg(feature = "tokio")]
            AsyncIo::Offload(b) => {
                let key = key.to_owned();
                offload(b, move |s| s.get(&key)).await
            }
        }
    }

    pub(crate) async fn set(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<(), BackendError> {
        match self {
            AsyncIo::Direct(s) => s.set(key, value, ttl),
            AsyncIo::Async(a) => a.set(key, value, ttl).await,
            #[cfg(feature = "tokio")]
            AsyncIo::Offload(b) => {
                let key = key.to_owned();
                offload(b, move |s| s.set(&key, value, ttl)).await
            }
        }
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), BackendError> {
        match self {
            AsyncIo::Direct(s) => s.delete(key),
            AsyncIo::Async(a) => a.delete(key).await,
            #[cfg(feature = "tokio")]
            AsyncIo::Offload(b) => {
                let key = key.to_owned();
                offload(b, move |s| s.delete(&key)).await
            }
        }
    }

    pub(crate) async fn get_multi(&self, keys: &[&str]) -> Result<Vec<Option<Value>>, BackendError> {
        match self {
            AsyncIo::Direct(s) => s.get_multi(keys),
            AsyncIo::Async(a) => a.get_multi(keys).await,
            #[cfg(feature = "tokio")]
            AsyncIo::Offload(b) => {
                let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
                offload(b, move |s| s.get_multi(&keys.iter().map(String::as_str).collect::<Vec<_>>())).await
            }
        }
    }

    pub(crate) async fn set_multi(&self, items: Vec<(&str, Value)>, ttl: Option<Duration>) -> Result<(), BackendError> {
        match self {
            AsyncIo::Direct(s) => s.set_multi(items, ttl),
            AsyncIo::Async(a) => a.set_multi(items, ttl).await,
            #[cfg(feature = "tokio")]
            AsyncIo::Offload(b) => {
                let (keys, values): (Vec<String>, Vec<Value>) =
                    items.into_iter().map(|(k, v)| (k.to_owned(), v)).unzip();
                offload(b, move |s| s.set_multi(keys.iter().map(String::as_str).zip(values).collect(), ttl)).await
            }
        }
    }

    pub(crate) async fn delete_multi(&self, keys: &[&str]) -> Result<(), BackendError> {
        match self {
            AsyncIo::Direct(s) => s.delete_multi(keys),
            AsyncIo::Async(a) => a.delete_multi(keys).await,
            #[cfg(feature = "tokio")]
            AsyncIo::Offload(b) => {
                let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
                offload(b, move |s| s.delete_multi(&keys.iter().map(String::as_str).collect::<Vec<_>>())).await
            }
        }
    }

    /// Reads and asks for the lease; says where the lease came from.
    pub(crate) async fn read_and_lease(&self, key: &str, ttl: Duration) -> Result<(Leased, Origin), BackendError> {
        match self {
            AsyncIo::Direct(s) => Ok((s.read_and_lease(key, ttl)?, Origin::Blocking)),
            AsyncIo::Async(a) => Ok((a.read_and_lease(key, ttl).await?, Origin::Async)),
            #[cfg(feature = "tokio")]
            AsyncIo::Offload(b) => {
                let key = key.to_owned();
                // A won lease crosses the task boundary held, so that it is
                // released if this future is dropped before taking it.
                let (value, held) = offload(b, move |s| {
                    let Leased { value, acquire } = s.read_and_lease(&key, ttl)?;
                    let held = match acquire {
                        Acquire::Won(lease) => Some(ReleaseOnDrop::new(lease)),
                        Acquire::Held => None,
                    };
                    Ok((value, held))
                })
                .await?;
                let acquire = match held {
                    Some(held) => Acquire::Won(held.into_inner()),
                    None => Acquire::Held,
                };
                Ok((Leased { value, acquire }, Origin::Offloaded))
            }
        }
    }

    /// Waits for another process's release where the backend can tell;
    /// `Ok(false)` when the caller should back off instead.
    pub(crate) async fn wait_released(&self, key: &str, max: Duration) -> Result<bool, BackendError> {
        match self {
            // Waiting is blocking by nature: back off instead.
            AsyncIo::Direct(_) => Ok(false),
            AsyncIo::Async(a) => a.wait_released(key, max).await,
            #[cfg(feature = "tokio")]
            AsyncIo::Offload(b) => {
                let key = key.to_owned();
                offload(b, move |s| s.wait_released(&key, max)).await
            }
        }
    }

    pub(crate) async fn sleep(&self, duration: Duration) {
        match self {
            AsyncIo::Async(a) => a.sleep(duration).await,
            _ => crate::timer::sleep(duration).await,
        }
    }

    pub(crate) async fn load_invalidation(&self, region: &str) -> Result<Option<u64>, BackendError> {
        match self {
            AsyncIo::Direct(s) => s.load_invalidation(region),
            AsyncIo::Async(a) => a.load_invalidation(region).await,
            #[cfg(feature = "tokio")]
            AsyncIo::Offload(b) => {
                let region = region.to_owned();
                offload(b, move |s| s.load_invalidation(&region)).await
            }
        }
    }

    pub(crate) async fn store_invalidation(&self, region: &str, word: u64) -> Result<(), BackendError> {
        match self {
            AsyncIo::Direct(s) => s.store_invalidation(region, word),
            AsyncIo::Async(a) => a.store_invalidation(region, word).await,
            #[cfg(feature = "tokio")]
            AsyncIo::Offload(b) => {
                let region = region.to_owned();
                offload(b, move |s| s.store_invalidation(&region, word)).await
            }
        }
    }
}
