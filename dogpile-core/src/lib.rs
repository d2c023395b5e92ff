//! The core of [dogpile](https://docs.rs/dogpile): regions, the dogpile
//! lock, backend traits, the stored-value envelope, codecs and statistics.
//!
//! Users depend on the `dogpile` facade crate; backend authors implement
//! [`Backend`] (and [`AsyncBackend`], [`DistributedLock`]) from here.
//!
//! ```
//! use dogpile_core::{Region, Invalidation};
//!
//! let region = Region::builder("example").build(); // no backend: nothing is stored
//! let n: u64 = region.get_or_create("answer", || 42)?;
//! assert_eq!(n, 42);
//! region.invalidate(Invalidation::Hard);
//! # Ok::<(), dogpile_core::Error>(())
//! ```

mod backend;
#[cfg(feature = "tokio")]
mod background_async;
mod builder;
mod clock;
mod coarse;
mod codec;
mod create;
mod create_async;
mod decision;
mod depth;
mod dist;
mod envelope;
mod error;
mod invalidation;
mod keeper;
mod key;
mod key_limits;
mod lock;
mod multi;
mod multi_async;
mod object_map;
mod options;
mod region;
mod runner;
mod stats;
mod timer;
mod value;

pub use backend::{AsyncBackend, AsyncDistributedLock, Backend, BoxFuture, DistributedLock, LockToken};
#[cfg(feature = "tokio")]
pub use background_async::TokioRunner;
pub use builder::{KeyMangler, NoBackendYet, RegionBuilder};
pub use clock::{Clock, MockClock, SystemClock};
pub use codec::Codec;
pub use envelope::FORMAT_VERSION;
pub use error::{BackendError, Error, TryCreateError};
pub use key::{CacheKey, KEY_SPECIAL_CHARS, write_key_seq, write_key_str};
pub use key_limits::KeyLimits;
pub use object_map::ObjectMap;
pub use options::{CreateOptions, Expiration, Invalidation};
pub use region::{CacheValue, Entry, Region};
pub use runner::{Job, Runner, ThreadRunner};
pub use stats::Stats;
pub use value::{Meta, Value, ValueKind};
