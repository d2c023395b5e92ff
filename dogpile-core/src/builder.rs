//! Building a region.

use crate::backend::Backend;
use crate::clock::{Clock, RegionClock};
use crate::codec::Codec;
use crate::invalidation::Invalidations;
use crate::lock::KeyLocks;
use crate::options::Expiration;
use crate::region::{Inner, Region};
use crate::runner::{Runner, ThreadRunner};
use crate::stats::StatsCells;
use std::sync::Arc;
use std::time::Duration;

/// A key mangler: turns a caller's key into the key stored in the backend
/// (and used for its lock).
pub type KeyMangler = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// Configures a [`Region`]. Made by [`Region::builder`].
///
/// ```
/// use std::time::Duration;
/// use dogpile_core::{Region, NoBackendYet};
/// # #[derive(Debug)] struct Mem;
/// # impl dogpile_core::Backend for Mem {
/// #   fn name(&self) -> &'static str { "mem" }
/// #   fn value_kind(&self) -> dogpile_core::ValueKind { dogpile_core::ValueKind::Object }
/// #   fn get(&self, _: &str) -> Result<Option<dogpile_core::Value>, dogpile_core::BackendError> { Ok(None) }
/// #   fn set(&self, _: &str, _: dogpile_core::Value, _: Option<Duration>) -> Result<(), dogpile_core::BackendError> { Ok(()) }
/// #   fn delete(&self, _: &str) -> Result<(), dogpile_core::BackendError> { Ok(()) }
/// # }
/// let region = Region::builder("users")
///     .backend(Mem)
///     .expiration(Duration::from_secs(60))
///     .build();
/// assert_eq!(region.name(), "users");
/// # let _ = NoBackendYet;
/// ```
#[must_use]
pub struct RegionBuilder {
    name: String,
    backend: Option<Arc<dyn Backend>>,
    expiration: Expiration,
    clock: RegionClock,
    codec: Codec,
    key_mangler: Option<KeyMangler>,
    runner: Arc<dyn Runner>,
    early_refresh: Option<f64>,
    stale_if_error: bool,
    lock_timeout: Duration,
    storage_grace: Option<Duration>,
    clock_skew_tolerance: Duration,
    value_version: u32,
    max_value_size: usize,
}

/// The backend a region built without [`RegionBuilder::backend`] uses: it
/// stores nothing, so every call creates.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoBackendYet;

impl Backend for NoBackendYet {
    fn name(&self) -> &'static str {
        "none"
    }
    fn value_kind(&self) -> crate::ValueKind {
        crate::ValueKind::Object
    }
    fn get(&self, _: &str) -> Result<Option<crate::Value>, crate::BackendError> {
        Ok(None)
    }
    fn set(&self, _: &str, _: crate::Value, _: Option<Duration>) -> Result<(), crate::BackendError> {
        Ok(())
    }
    fn delete(&self, _: &str) -> Result<(), crate::BackendError> {
        Ok(())
    }
    fn is_non_blocking(&self) -> bool {
        true
    }
}

impl RegionBuilder {
    /// The default [`max_value_size`](Self::max_value_size): 32 MiB.
    pub const DEFAULT_MAX_VALUE_SIZE: usize = 32 << 20;

    pub(crate) fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            backend: None,
            expiration: Expiration::Never,
            clock: RegionClock::System,
            codec: Codec::default(),
            key_mangler: None,
            runner: Arc::new(ThreadRunner),
            early_refresh: None,
            stale_if_error: false,
            lock_timeout: Duration::from_secs(30),
            storage_grace: None,
            clock_skew_tolerance: Duration::from_secs(1),
            value_version: 0,
            max_value_size: Self::DEFAULT_MAX_VALUE_SIZE,
        }
    }

    /// The storage backend (required in practice: without one nothing is
    /// stored).
    pub fn backend(mut self, backend: impl Backend) -> Self {
        self.backend = Some(Arc::new(backend));
        self
    }

    /// A backend already behind an `Arc` (shared between regions).
    pub fn backend_arc(mut self, backend: Arc<dyn Backend>) -> Self {
        self.backend = Some(backend);
        self
    }

    /// How long values stay fresh. Default: [`Expiration::Never`].
    pub fn expiration(mut self, expiration: impl Into<Expiration>) -> Self {
        self.expiration = expiration.into();
        self
    }

    /// Reads time from `clock` instead of the system clock (tests use a
    /// [`MockClock`](crate::MockClock)).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = RegionClock::Custom(clock);
        self
    }

    /// The codec for byte backends. Default: postcard.
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// Transforms every key before it reaches the backend and the lock.
    pub fn key_mangler(mut self, mangler: impl Fn(&str) -> String + Send + Sync + 'static) -> Self {
        self.key_mangler = Some(Arc::new(mangler));
        self
    }

    /// Where background regeneration runs. Default: [`ThreadRunner`].
    pub fn runner(mut self, runner: impl Runner) -> Self {
        self.runner = Arc::new(runner);
        self
    }

    /// Probabilistic early refresh (XFetch, Vattani et al., VLDB 2015): a
    /// fresh value is regenerated before it expires with a probability that
    /// grows as expiry nears, scaled by how long its creation took and by
    /// `beta` (1.0 is the paper's default; larger refreshes earlier).
    /// Non-finite or non-positive values turn it off.
    pub fn early_refresh(mut self, beta: f64) -> Self {
        self.early_refresh = (beta.is_finite() && beta > 0.0).then_some(beta);
        self
    }

    /// When regeneration fails (creator error) and a stale value exists,
    /// serve the stale value and keep it stored instead of returning the
    /// error.
    pub fn stale_if_error(mut self, enabled: bool) -> Self {
        self.stale_if_error = enabled;
        self
    }

    /// How long a distributed lock lives before it expires on its own if its
    /// owner dies. Default: 30 s.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// How long past expiration a backend keeps a value (so that stale values
    /// can be served). Default: the expiration itself, at least 60 s.
    pub fn storage_grace(mut self, grace: Duration) -> Self {
        self.storage_grace = Some(grace);
        self
    }

    /// How far ahead of this region's clock a stored creation time may be
    /// and still count as written "now" (clocks of hosts sharing a backend
    /// differ a little). A value stamped further ahead (a host with a wrong
    /// clock, or our clock stepped back by an NTP correction or a restored
    /// VM) has no trustworthy age: it counts as expired, and as a miss once
    /// the region has been hard-invalidated. Default: 1 s.
    pub fn clock_skew_tolerance(mut self, tolerance: Duration) -> Self {
        self.clock_skew_tolerance = tolerance;
        self
    }

    /// A version number written with every value in byte backends; values
    /// written under another version are misses. Raise it when a deploy
    /// changes a cached type's fields but not its name (byte backends tell
    /// types apart by name, not by shape). Default: 0.
    pub fn value_version(mut self, version: u32) -> Self {
        self.value_version = version;
        self
    }

    /// The largest encoded value (envelope included) a byte backend may hold
    /// for this region, in bytes. Larger values are not stored (the creator's
    /// value is still returned; [`Region::set`] returns
    /// [`Error::Encode`](crate::Error::Encode)), and larger stored bytes are
    /// misses without being decoded. Default:
    /// [`DEFAULT_MAX_VALUE_SIZE`](Self::DEFAULT_MAX_VALUE_SIZE).
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_size = bytes;
        self
    }

    /// Builds the region.
    pub fn build(self) -> Region {
        let backend = self.backend.unwrap_or_else(|| Arc::new(NoBackendYet));
        let key_limits = backend.key_limits();
        Region {
            inner: Arc::new(Inner {
                name: self.name,
                fast_map: backend.object_map(),
                backend,
                expiration: self.expiration,
                clock: self.clock,
                codec: self.codec,
                locks: KeyLocks::new(),
                stats: StatsCells::default(),
                invalidations: Invalidations::new(),
                skew_tolerance: crate::clock::duration_nanos(self.clock_skew_tolerance),
                value_version: self.value_version,
                max_value_size: self.max_value_size,
                key_mangler: self.key_mangler,
                key_limits,
                runner: self.runner,
                early_refresh: self.early_refresh,
                stale_if_error: self.stale_if_error,
                lock_timeout: self.lock_timeout,
                storage_grace: self.storage_grace,
            }),
        }
    }
}
