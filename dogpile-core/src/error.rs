//! The error type of the region API.

use std::fmt;

/// An error from a backend (connection refused, timeout, protocol error...).
///
/// Backends wrap their own error as the source so callers can inspect it.
#[derive(Debug)]
pub struct BackendError {
    backend: &'static str,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl BackendError {
    /// A backend error with a message and no underlying source.
    pub fn new(backend: &'static str, message: impl Into<String>) -> Self {
        Self { backend, message: message.into(), source: None }
    }

    /// A backend error wrapping the client library's error.
    pub fn with_source(
        backend: &'static str,
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self { backend, message: message.into(), source: Some(source.into()) }
    }

    /// The name of the backend that failed (`"redis"`, `"memory"`...).
    pub fn backend(&self) -> &'static str {
        self.backend
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} backend: {}", self.backend, self.message)
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Everything the region API can fail with.
///
/// Decoding problems are not errors: bytes that fail to decode are a miss
/// (counted in [`Stats::decode_failures`](crate::Stats::decode_failures)).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The backend failed; the cache could not be read or written.
    Backend(BackendError),
    /// A value could not be encoded for a byte backend (the value's
    /// `Serialize` implementation failed); nothing was stored.
    Encode {
        /// The key that was being written.
        key: String,
        /// What the codec reported.
        message: String,
    },
    /// A multi-key creator returned a different number of values than it was
    /// given keys.
    CreatorLength {
        /// How many keys the creator was asked for.
        expected: usize,
        /// How many values it returned.
        returned: usize,
    },
    /// The region was declared but never configured with a backend.
    NotConfigured {
        /// The region's name.
        region: String,
    },
    /// A configuration problem (bad value, unknown backend, region configured
    /// twice...). The message names the region and the field.
    Config(String),
    /// The background runner refused the regeneration job.
    Runner(String),
    /// A creator asked the cache for its own key (directly or through other
    /// calls, blocking or async) from inside its own run: waiting would never
    /// end. The outer call goes on and the key is released as usual.
    Reentrant {
        /// The key (as stored, after the key mangler).
        key: String,
    },
    /// The call cannot be made on this region's backend: the blocking API
    /// on a backend with only an async interface, or the async API on a
    /// backend whose blocking calls would block the executor (without the
    /// `tokio` feature). The message says which and what to do.
    Unsupported(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Backend(e) => write!(f, "cache backend error: {e}"),
            Error::Encode { key, message } => {
                write!(f, "could not encode the value for key `{key}`: {message}")
            }
            Error::CreatorLength { expected, returned } => write!(
                f,
                "the multi-key creator returned {returned} values for {expected} keys; \
                 it must return one value per key, in the order given"
            ),
            Error::NotConfigured { region } => write!(
                f,
                "region `{region}` is declared but not configured: call \
                 dogpile::configure(\"{region}\", ...) or configure_from_toml at start-up"
            ),
            Error::Config(message) => write!(f, "cache configuration error: {message}"),
            Error::Runner(message) => write!(f, "background regeneration failed to start: {message}"),
            Error::Unsupported(message) => write!(f, "{message}"),
            Error::Reentrant { key } => write!(
                f,
                "the creator of key `{key}` asked the cache for the same key from inside its own run; \
                 it would wait for itself forever (compute the value directly inside the creator)"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Backend(e) => Some(e),
            _ => None,
        }
    }
}

impl From<BackendError> for Error {
    fn from(e: BackendError) -> Self {
        Error::Backend(e)
    }
}

/// The error of the fallible creation methods
/// ([`Region::try_get_or_create`](crate::Region::try_get_or_create)): either
/// the creator's own error or the cache's.
#[derive(Debug)]
pub enum TryCreateError<E> {
    /// The creator returned this error; nothing was stored.
    Creator(E),
    /// The cache failed before the creator could run.
    Cache(Error),
}

impl<E: fmt::Display> fmt::Display for TryCreateError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryCreateError::Creator(e) => write!(f, "creator failed: {e}"),
            TryCreateError::Cache(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for TryCreateError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TryCreateError::Creator(e) => Some(e),
            TryCreateError::Cache(e) => Some(e),
        }
    }
}

impl TryCreateError<std::convert::Infallible> {
    /// The cache's error of a call whose creator cannot fail.
    pub(crate) fn into_cache(self) -> Error {
        match self {
            TryCreateError::Cache(e) => e,
            TryCreateError::Creator(never) => match never {},
        }
    }
}

impl<E> From<Error> for TryCreateError<E> {
    fn from(e: Error) -> Self {
        TryCreateError::Cache(e)
    }
}

impl<E> From<BackendError> for TryCreateError<E> {
    fn from(e: BackendError) -> Self {
        TryCreateError::Cache(Error::Backend(e))
    }
}
