//! Building a region.

use crate::backend::{Backend, BlockingBackend};
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
/// let region = Region::builder("users")
///     .backend(NoBackendYet)
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
    keep_alive: Option<Duration>,
    invalidation_refresh: Duration,
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
    fn value_kind(&self) -> crate::backend::ValueKind {
        crate::backend::ValueKind::Object
    }
    fn blocking(&self) -> Option<&dyn BlockingBackend> {
        Some(self)
    }
    fn never_blocks(&self) -> bool {
        true
    }
}

impl BlockingBackend for NoBackendYet {
    fn get(&self, _: &str) -> Result<Option<crate::backend::Value>, crate::backend::BackendError> {
        Ok(None)
    }
    fn set(&self, _: &str, _: crate::backend::Value, _: Option<Duration>) -> Result<(), crate::backend::BackendError> {
        Ok(())
    }
    fn delete(&self, _: &str) -> Result<(), crate::backend::BackendError> {
        Ok(())
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
            keep_alive: None,
            invalidation_refresh: Duration::from_secs(1),
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

    /// How long a lease (the creation lock on a backend shared between
    /// processes) lives before it expires on its own if its owner dies.
    /// Default: 30 s.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// How often the region's keeper extends a lease while its creator
    /// runs (leases that need keep-alive only). It must be shorter than
    /// [`lock_timeout`](Self::lock_timeout). Default: a third of it.
    pub fn lease_keep_alive(mut self, interval: Duration) -> Self {
        self.keep_alive = Some(interval);
        self
    }

    /// On a backend that shares invalidations between processes, how often
    /// the region reads the invalidation another process stored (at most
    /// one read per interval, by whichever call comes first). Default: 1 s.
    pub fn invalidation_refresh(mut self, interval: Duration) -> Self {
        self.invalidation_refresh = interval;
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
    ///
    /// # Panics
    /// On a configuration that [`try_build`](Self::try_build) refuses (the
    /// message says why).
    pub fn build(self) -> Region {
        self.try_build().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Builds the region, or says what is wrong with its configuration: a
    /// backend with neither a blocking nor an async interface, or a lease
    /// keep-alive interval not shorter than the lease time-to-live.
    pub fn try_build(self) -> Result<Region, crate::Error> {
        let backend = self.backend.unwrap_or_else(|| Arc::new(NoBackendYet));
        let name = self.name;
        let bad = |message: String| Err(crate::Error::Config(format!("region `{name}`: {message}")));
        if backend.blocking().is_none() && backend.nonblocking().is_none() {
            return bad(format!("the `{}` backend has neither a blocking nor an async interface", backend.name()));
        }
        if self.lock_timeout.is_zero() {
            return bad("lock_timeout must be longer than zero".into());
        }
        let keep_alive = self.keep_alive.unwrap_or_else(|| crate::keeper::default_interval(self.lock_timeout));
        if keep_alive.is_zero() || keep_alive >= self.lock_timeout {
            return bad(format!(
                "the lease keep-alive interval ({keep_alive:?}) must be longer than zero and shorter than \
                 lock_timeout ({:?}), or leases expire while their creators run",
                self.lock_timeout
            ));
        }
        let shared_invalidation = backend.shares_invalidation().then(|| crate::region::SharedInvalidation {
            every: crate::clock::duration_nanos(self.invalidation_refresh),
            next: std::sync::atomic::AtomicU64::new(0),
        });
        let key_limits = backend.key_limits();
        Ok(Region {
            inner: Arc::new(Inner {
                name,
                fast_map: backend.object_map(),
                leases: backend.issues_leases(),
                reads_in_process: backend.never_blocks()
                    && backend.blocking().is_some()
                    && backend.nonblocking().is_none(),
                shared_invalidation,
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
                keep_alive,
                keeper: crate::keeper::Keeper::default(),
                storage_grace: self.storage_grace,
            }),
        })
    }
}
