//! Expiration, invalidation and per-call options.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How long a value stays fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiration {
    /// Fresh for this long after creation, then expired (served stale while
    /// one caller regenerates). `Duration::ZERO` means always expired.
    After(Duration),
    /// Never expires (only invalidation or deletion replaces it).
    Never,
}

impl From<Duration> for Expiration {
    fn from(d: Duration) -> Self {
        Expiration::After(d)
    }
}

/// How [`Region::invalidate`](crate::Region::invalidate) treats values
/// created before the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalidation {
    /// They are misses: the next caller creates, the others wait.
    Hard,
    /// They count as expired: served stale while one caller regenerates.
    Soft,
}

/// Options for one `get_or_create` call.
///
/// ```
/// use std::time::Duration;
/// use dogpile_core::{CreateOptions, Expiration};
///
/// let opts = CreateOptions::<String>::new()
///     .expiration(Expiration::After(Duration::from_secs(5)))
///     .should_cache(|v: &String| !v.is_empty());
/// # let _ = opts;
/// ```
pub struct CreateOptions<T> {
    pub(crate) expiration: Option<Expiration>,
    pub(crate) should_cache: Option<ShouldCache<T>>,
}

/// A should-cache predicate, shareable with a background regeneration.
type ShouldCache<T> = Arc<dyn Fn(&T) -> bool + Send + Sync>;

impl<T> CreateOptions<T> {
    /// The region's defaults.
    pub fn new() -> Self {
        Self { expiration: None, should_cache: None }
    }

    /// Overrides the region's expiration for this call.
    pub fn expiration(mut self, expiration: impl Into<Expiration>) -> Self {
        self.expiration = Some(expiration.into());
        self
    }

    /// Stores a created value only when `predicate` accepts it; a rejected
    /// value is still returned to the caller.
    pub fn should_cache(mut self, predicate: impl Fn(&T) -> bool + Send + Sync + 'static) -> Self {
        self.should_cache = Some(Arc::new(predicate));
        self
    }

    pub(crate) fn accepts(&self, value: &T) -> bool {
        self.should_cache.as_ref().is_none_or(|p| p(value))
    }
}

impl<T> Default for CreateOptions<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for CreateOptions<T> {
    fn clone(&self) -> Self {
        Self { expiration: self.expiration, should_cache: self.should_cache.clone() }
    }
}

impl<T> fmt::Debug for CreateOptions<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateOptions")
            .field("expiration", &self.expiration)
            .field("should_cache", &self.should_cache.is_some())
            .finish()
    }
}
