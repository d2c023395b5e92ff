//! The core of [dogpile](https://docs.rs/dogpile): regions, the dogpile
//! lock, backend traits, the stored-value envelope, codecs and statistics.
//!
//! Users depend on the `dogpile` facade crate; backend authors implement
//! the traits of [`backend`].
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

mod async_io;
pub mod backend;
#[cfg(feature = "tokio")]
mod background_async;
mod block_on;
mod blocking;
mod builder;
mod clock;
mod coarse;
mod codec;
mod depth;
mod envelope;
mod error;
mod flow;
mod held;
mod invalidation;
mod keeper;
mod key;
mod lock;
mod multi;
mod nonblocking;
mod object_map;
mod options;
mod region;
mod runner;
mod stats;
mod timer;
mod value;

#[cfg(feature = "tokio")]
pub use background_async::TokioRunner;
pub use builder::{KeyMangler, NoBackendYet, RegionBuilder};
pub use clock::{Clock, MockClock, SystemClock};
pub use codec::Codec;
pub use envelope::FORMAT_VERSION;
pub use error::{Error, TryCreateError};
pub use key::{CacheKey, KEY_SPECIAL_CHARS, write_key_seq, write_key_str};
pub use options::{CreateOptions, Expiration, Invalidation};
pub use region::{CacheValue, Entry, Region};
pub use runner::{Job, Runner, ThreadRunner};
pub use stats::Stats;
