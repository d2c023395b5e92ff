//! The backend-author API: what a storage backend implements.
//!
//! A backend is described by [`Backend`] (its name, what it stores, its key
//! limits) and offers its storage through a blocking interface
//! ([`BlockingBackend`]), an async one ([`AsyncBackend`]), or both:
//!
//! | the region is used from | blocking interface | async interface |
//! |---|---|---|
//! | blocking code | called directly | refused: [`Error::Unsupported`](crate::Error::Unsupported) |
//! | async code | called directly if [`Backend::never_blocks`], else on tokio's blocking pool (feature `tokio`), else refused | awaited |
//!
//! so an async caller never blocks its executor thread on a backend's I/O.
//!
//! A backend shared between processes also issues **leases**: the creation
//! lock for one key, taken with a time to live ([`BlockingBackend::try_lease`]
//! returns [`Acquire::Won`] with a [`Lease`], or [`Acquire::Held`]). The
//! region takes its in-process lock first, so one caller per process at most
//! contends for a lease. A lease that [needs keep-alive](Lease::needs_keep_alive)
//! is extended by the region's one keeper thread while its creator runs;
//! only its owner releases it, and the region releases it when the creation
//! ends, panics or is cancelled.
//!
//! Optional parts, each with a default that works:
//! - read and lease in one round trip ([`BlockingBackend::read_and_lease`];
//!   default: lease, then read);
//! - a wake-up when another process releases a lease
//!   ([`BlockingBackend::wait_released`]; default: the region backs off
//!   with jitter from 2 ms);
//! - the region's invalidation shared with every process
//!   ([`Backend::shares_invalidation`], [`BlockingBackend::load_invalidation`]);
//! - key limits ([`Backend::key_limits`]): keys that do not fit are mapped
//!   by a stable digest, for storage and lease alike.
//!
//! In-process backends ([`ValueKind::Object`]) keep typed objects and need
//! none of this; backends shared between processes ([`ValueKind::Bytes`])
//! keep encoded envelopes.

mod blocking;
mod key_limits;
pub(crate) mod lease;
mod nonblocking;

pub use crate::error::BackendError;
pub use crate::object_map::ObjectMap;
pub use crate::value::{Meta, Value, ValueKind};
pub use blocking::BlockingBackend;
pub use key_limits::KeyLimits;
pub use lease::{Acquire, Lease, Leased, ReleaseOnDrop, ready};
pub use nonblocking::AsyncBackend;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed, sendable future, as returned by the async traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A storage backend: what it is and which interfaces it offers.
///
/// ```
/// use dogpile_core::backend::{Backend, BackendError, BlockingBackend, Value, ValueKind};
/// use std::collections::HashMap;
/// use std::sync::Mutex;
/// use std::time::Duration;
///
/// /// A toy byte store (the real memory backends are in `dogpile::backends`).
/// #[derive(Debug, Default)]
/// struct Toy(Mutex<HashMap<String, Value>>);
///
/// impl Backend for Toy {
///     fn name(&self) -> &'static str { "toy" }
///     fn value_kind(&self) -> ValueKind { ValueKind::Bytes }
///     fn blocking(&self) -> Option<&dyn BlockingBackend> { Some(self) }
///     fn never_blocks(&self) -> bool { true }
/// }
///
/// impl BlockingBackend for Toy {
///     fn get(&self, key: &str) -> Result<Option<Value>, BackendError> {
///         Ok(self.0.lock().unwrap().get(key).cloned())
///     }
///     fn set(&self, key: &str, value: Value, _ttl: Option<Duration>) -> Result<(), BackendError> {
///         self.0.lock().unwrap().insert(key.to_owned(), value);
///         Ok(())
///     }
///     fn delete(&self, key: &str) -> Result<(), BackendError> {
///         self.0.lock().unwrap().remove(key);
///         Ok(())
///     }
/// }
///
/// let region = dogpile_core::Region::builder("toy").backend(Toy::default()).build();
/// assert_eq!(region.get_or_create("k", || 7u32)?, 7);
/// # Ok::<(), dogpile_core::Error>(())
/// ```
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// A short name for logs and errors (`"memory"`, `"redis"`).
    fn name(&self) -> &'static str;

    /// Whether the backend keeps typed objects or encoded bytes.
    fn value_kind(&self) -> ValueKind;

    /// The blocking interface, if the backend has one.
    fn blocking(&self) -> Option<&dyn BlockingBackend> {
        None
    }

    /// The async interface, if the backend has one.
    fn nonblocking(&self) -> Option<&dyn AsyncBackend> {
        None
    }

    /// True when no call of the blocking interface ever waits on I/O (the
    /// memory backends): async callers then call it directly.
    fn never_blocks(&self) -> bool {
        false
    }

    /// Whether the backend is shared between processes and issues leases
    /// ([`BlockingBackend::try_lease`], [`AsyncBackend::try_lease`]). The
    /// in-process lock is enough for the others.
    fn issues_leases(&self) -> bool {
        false
    }

    /// Whether the backend keeps each region's last invalidation, so that
    /// `invalidate` in one process is seen by every process sharing it
    /// ([`BlockingBackend::load_invalidation`]).
    fn shares_invalidation(&self) -> bool {
        false
    }

    /// The in-process map holding this backend's values, if that is all it
    /// is: the region then reads it directly on a hit (the memory backend).
    /// Only a backend whose blocking `get`/`set`/`delete` are exactly this
    /// map's may return it.
    fn object_map(&self) -> Option<Arc<ObjectMap>> {
        None
    }

    /// The keys this backend can store as they are, if it cannot store
    /// every string (memcached: [`KeyLimits::MEMCACHED`]). The region maps
    /// every key that does not fit, for storage and lease alike, by a stable
    /// digest (see [`KeyLimits`]); the backend never sees a key beyond its
    /// limits.
    fn key_limits(&self) -> Option<KeyLimits> {
        None
    }
}

impl<B: Backend + ?Sized> Backend for Arc<B> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn value_kind(&self) -> ValueKind {
        (**self).value_kind()
    }
    fn blocking(&self) -> Option<&dyn BlockingBackend> {
        (**self).blocking()
    }
    fn nonblocking(&self) -> Option<&dyn AsyncBackend> {
        (**self).nonblocking()
    }
    fn never_blocks(&self) -> bool {
        (**self).never_blocks()
    }
    fn issues_leases(&self) -> bool {
        (**self).issues_leases()
    }
    fn shares_invalidation(&self) -> bool {
        (**self).shares_invalidation()
    }
    fn object_map(&self) -> Option<Arc<ObjectMap>> {
        (**self).object_map()
    }
    fn key_limits(&self) -> Option<KeyLimits> {
        (**self).key_limits()
    }
}
