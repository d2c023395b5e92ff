//! Declaring regions: the [`region!`](macro@crate::region) macro and the static
//! [`RegionHandle`] it defines.

use crate::config::RegionConfig;
use crate::registry::{self, Slot};
use dogpile_core::backend::Backend;
use dogpile_core::{CacheValue, Error, Expiration, Invalidation, Region, Stats, TryCreateError};
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

/// Declares a region at module level: a `static` [`RegionHandle`] named
/// `IDENT` for the region `"name"`, known to the registry before `main`
/// runs, so it can be configured by name later (from a file, say) and
/// checked with [`check`](crate::check).
///
/// ```
/// use std::time::Duration;
/// use dogpile::backends::MemoryBackend;
///
/// // Configured later with dogpile::configure("users", ...).
/// dogpile::region!(pub USERS, "users");
///
/// // With defaults: usable at once, and a configuration may still replace them.
/// dogpile::region!(
///     /// Rendered pages, kept five minutes.
///     PAGES, "pages",
///     backend = MemoryBackend::new(),
///     expiration = Duration::from_secs(300),
/// );
///
/// assert!(!USERS.is_configured());
/// let page: String = PAGES.get_or_create("/home", || "<html>".to_string())?;
/// assert_eq!(page, "<html>");
/// # Ok::<(), dogpile::Error>(())
/// ```
///
/// Options (each optional, any order): `backend = <expr>` (any
/// [`Backend`]) and `expiration = <expr>` (a `Duration` or an
/// [`Expiration`]). They are evaluated when the region is first used, not
/// at declaration.
///
/// **A declared region without a backend does nothing until configured**:
/// the handle's methods return [`Error::NotConfigured`], and `#[cached]`
/// functions using it run their body on every call (uncached, counted in
/// [`RegionHandle::uncached_calls`], with one warning logged per function).
/// [`check`](crate::check) reports such regions.
///
/// Declaring the same name twice (in two modules, say) gives two handles to
/// one region.
#[macro_export]
macro_rules! region {
    ($(#[$attr:meta])* $vis:vis $ident:ident, $name:literal $(, $key:ident = $value:expr)* $(,)?) => {
        $(#[$attr])*
        $vis static $ident: $crate::RegionHandle = $crate::RegionHandle::__declare(
            $name,
            ::core::module_path!(),
            ::core::file!(),
            ::core::line!(),
            $crate::__private::RegionDefaults::NONE
                $( .with($crate::region!(@option $key $value)) )*,
        );
        $crate::__private::inventory::submit! {
            $crate::__private::Registration::Region(&$ident)
        }
    };
    (@option backend $value:expr) => {
        $crate::__private::RegionDefault::Backend(|| $crate::__private::arc_backend($value))
    };
    (@option expiration $value:expr) => {
        $crate::__private::RegionDefault::Expiration(|| $crate::__private::into_expiration($value))
    };
    (@option $other:ident $value:expr) => {
        ::core::compile_error!(::core::concat!(
            "unknown region! option `", ::core::stringify!($other), "`; expected `backend` or `expiration`"
        ))
    };
}

/// What a `region!` declaration sets up front. Not a stable API.
#[doc(hidden)]
#[derive(Clone, Copy)]
pub struct RegionDefaults {
    pub backend: Option<fn() -> Arc<dyn Backend>>,
    pub expiration: Option<fn() -> Expiration>,
}

impl RegionDefaults {
    /// No defaults.
    pub const NONE: RegionDefaults = RegionDefaults { backend: None, expiration: None };

    /// Adds one default.
    pub const fn with(self, default: RegionDefault) -> Self {
        match default {
            RegionDefault::Backend(b) => RegionDefaults { backend: Some(b), ..self },
            RegionDefault::Expiration(e) => RegionDefaults { expiration: Some(e), ..self },
        }
    }
}

/// One option of a `region!` declaration. Not a stable API.
#[doc(hidden)]
pub enum RegionDefault {
    Backend(fn() -> Arc<dyn Backend>),
    Expiration(fn() -> Expiration),
}

/// A region declared with [`region!`](macro@crate::region): a static handle that
/// finds the region configured under its name.
///
/// Its methods mirror the [`Region`] API and return
/// [`Error::NotConfigured`] until the region is configured (or at once, if
/// it was declared with a default backend, they work on that).
pub struct RegionHandle {
    name: &'static str,
    pub(crate) module: &'static str,
    pub(crate) file: &'static str,
    pub(crate) line: u32,
    pub(crate) defaults: RegionDefaults,
    slot: OnceLock<&'static Slot>,
}

impl RegionHandle {
    /// Used by [`region!`](macro@crate::region). Not a stable API.
    #[doc(hidden)]
    pub const fn __declare(
        name: &'static str,
        module: &'static str,
        file: &'static str,
        line: u32,
        defaults: RegionDefaults,
    ) -> Self {
        RegionHandle { name, module, file, line, defaults, slot: OnceLock::new() }
    }

    /// The region's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    pub(crate) fn slot(&self) -> &'static Slot {
        self.slot.get_or_init(|| {
            // Every `region!` submits itself to the registry, so its name
            // is always there.
            registry::slot(self.name).expect("every region! registers its name before main")
        })
    }

    /// Whether the region has a backend (configured, or declared with a
    /// default one).
    pub fn is_configured(&self) -> bool {
        self.slot().is_configured()
    }

    /// The configured region (cheap: an `Arc` clone).
    pub fn region(&self) -> Result<Region, Error> {
        self.slot().region().ok_or_else(|| Error::NotConfigured { region: self.name.to_owned() })
    }

    /// Configures this region; the same as
    /// [`dogpile::configure(self.name(), config)`](crate::configure).
    pub fn configure(&self, config: RegionConfig) -> Result<(), Error> {
        crate::config::configure(self.name, config)
    }

    /// How many calls of `#[cached]` functions ran uncached because this
    /// region was not configured.
    pub fn uncached_calls(&self) -> u64 {
        self.slot().uncached.load(Ordering::Relaxed)
    }

    /// [`Region::get_or_create`] on the configured region.
    pub fn get_or_create<T: CacheValue>(&self, key: &str, creator: impl FnOnce() -> T) -> Result<T, Error> {
        self.region()?.get_or_create(key, creator)
    }

    /// [`Region::try_get_or_create`] on the configured region.
    pub fn try_get_or_create<T: CacheValue, E>(
        &self,
        key: &str,
        creator: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, TryCreateError<E>> {
        self.region()?.try_get_or_create(key, creator)
    }

    /// [`Region::get`] on the configured region.
    pub fn get<T: CacheValue>(&self, key: &str) -> Result<Option<T>, Error> {
        self.region()?.get(key)
    }

    /// [`Region::set`] on the configured region.
    pub fn set<T: CacheValue>(&self, key: &str, value: T) -> Result<(), Error> {
        self.region()?.set(key, value)
    }

    /// [`Region::delete`] on the configured region.
    pub fn delete(&self, key: &str) -> Result<(), Error> {
        self.region()?.delete(key)
    }

    /// [`Region::invalidate`] on the configured region.
    pub fn invalidate(&self, how: Invalidation) -> Result<(), Error> {
        self.region()?.invalidate(how);
        Ok(())
    }

    /// [`Region::stats`] of the configured region.
    pub fn stats(&self) -> Result<Stats, Error> {
        Ok(self.region()?.stats())
    }
}

impl fmt::Debug for RegionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegionHandle")
            .field("name", &self.name)
            .field("declared_in", &self.module)
            .field("configured", &self.slot.get().map(|s| s.is_configured()))
            .finish()
    }
}
