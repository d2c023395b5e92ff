//! A cache built around the **dogpile lock**: when a cached value expires,
//! exactly one caller regenerates it while every other caller keeps getting
//! the old value at once; when there is no value, exactly one caller creates
//! it and the rest wait for that result.
//!
//! ```
//! use std::time::Duration;
//! use dogpile::{Region, Invalidation, backends::MemoryBackend};
//!
//! let region = Region::builder("users")
//!     .backend(MemoryBackend::new())
//!     .expiration(Duration::from_secs(60))
//!     .build();
//!
//! let name: String = region.get_or_create("user:7", || "Ada".to_string())?;
//! assert_eq!(name, "Ada");
//! // Cached: the creator is not called again.
//! let again: String = region.get_or_create("user:7", || unreachable!())?;
//! assert_eq!(again, "Ada");
//!
//! region.invalidate(Invalidation::Hard);
//! let fresh: String = region.get_or_create("user:7", || "Ada L.".to_string())?;
//! assert_eq!(fresh, "Ada L.");
//! assert_eq!(region.stats().creations, 2);
//! # Ok::<(), dogpile::Error>(())
//! ```
//!
//! The semantics, per key:
//!
//! | stored value | what a caller does |
//! |---|---|
//! | fresh | returns it; no lock is touched |
//! | expired, lock free | takes the lock, regenerates, stores, returns the new value |
//! | expired, lock held | returns the stale value immediately |
//! | absent | waits for the lock; after getting it reads again, creates only if still missing |
//!
//! ## Caching functions, regions configured by name
//!
//! Modules declare their regions with [`region!`](macro@region) and cache
//! functions with [`#[cached]`](cached); `main` configures every region by
//! name once all modules are loaded (in code, from a TOML file with
//! [`configure_from_toml`], or from any serde source), and [`check`]
//! verifies that every cached function has a configured region:
//!
//! ```rust,standalone_crate
//! dogpile::region!(USERS, "users");
//!
//! #[dogpile::cached(region = "users", expiration = "5m")]
//! fn load_user(id: u64) -> String {
//!     format!("user {id}") // the expensive part
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     dogpile::configure_from_toml(r#"
//!         [regions.users]
//!         backend = "memory"
//!         expiration = "1h"
//!     "#)?;
//!     dogpile::check()?;
//!     assert_eq!(load_user(7), "user 7");
//!     assert_eq!(load_user::get(7).as_deref(), Some("user 7")); // a companion
//!     load_user::invalidate(7);
//!     Ok(())
//! }
//! ```

pub use dogpile_core::{
    CacheValue, Clock, Codec, CreateOptions, Entry, Error, Expiration, FORMAT_VERSION, Invalidation, Job, KeyMangler,
    MockClock, Region, RegionBuilder, Runner, Stats, SystemClock, ThreadRunner, TryCreateError,
};

/// The backend-author API: the traits a storage backend implements (see
/// [`backend::Backend`]) and what they exchange with the region.
pub mod backend {
    pub use dogpile_core::backend::*;
}

pub use dogpile_core::{CacheKey, write_key_seq, write_key_str};

mod companions;
mod config;
mod handle;
mod registry;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use config::{
    BackendConfig, CacheConfig, RegionConfig, configure, configure_all, configure_from_toml, configure_region,
    configure_replace, parse_duration, replace_region,
};
pub use handle::RegionHandle;
pub use registry::{CheckError, FunctionInfo, RegionInfo, cached_functions, check, region, regions};

/// Derives [`CacheKey`](trait@CacheKey) for a struct or enum.
///
/// Structs with named fields are written `{field=value,...}`, tuple structs
/// `(a,b)` (a one-field tuple struct is its field), unit structs `()`, and
/// enum variants by their name followed by their fields: `Active`,
/// `Team(3)`, `Range{from=1,to=9}`. Type parameters get a `CacheKey`
/// bound. `#[cache_key(skip)]` leaves a field out;
/// `#[cache_key(crate = "path")]` on the type names a re-exported dogpile.
///
/// ```
/// use dogpile::CacheKey;
///
/// #[derive(CacheKey)]
/// enum Scope {
///     All,
///     Team(u32),
///     Range { from: u32, to: u32 },
/// }
///
/// assert_eq!(Scope::Range { from: 1, to: 9 }.to_key(), "Range{from=1,to=9}");
/// ```
#[cfg(feature = "macros")]
pub use dogpile_macros::CacheKey;
#[cfg(feature = "macros")]
#[doc = include_str!("docs/cached.md")]
pub use dogpile_macros::cached;

/// Storage backends, one per module of `dogpile-backends`.
pub mod backends {
    pub use dogpile_backends::*;
}

#[cfg(feature = "tokio")]
pub use dogpile_core::TokioRunner;

#[cfg(feature = "minijinja")]
pub mod minijinja;

// The README's examples are compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
