//! A backend that stores nothing.

use crate::config::{BackendSettings, ConfigError};
use dogpile_core::backend::{Backend, BackendError, BlockingBackend, Value, ValueKind};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// Stores nothing: every `get_or_create` calls its creator. For tests and
/// for switching caching off without touching code. Concurrent callers of
/// one key are still serialized by the region's in-process lock.
///
/// ```
/// use dogpile_core::Region;
/// use dogpile_backends::NullBackend;
///
/// let region = Region::builder("off").backend(NullBackend).build();
/// assert_eq!(region.get_or_create("k", || 1u8)?, 1);
/// assert_eq!(region.get_or_create("k", || 2u8)?, 2);
/// # Ok::<(), dogpile_core::Error>(())
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct NullBackend;

impl Backend for NullBackend {
    fn name(&self) -> &'static str {
        "null"
    }
    fn value_kind(&self) -> ValueKind {
        ValueKind::Object
    }
    fn never_blocks(&self) -> bool {
        true
    }
    fn blocking(&self) -> Option<&dyn BlockingBackend> {
        Some(self)
    }
}

impl BlockingBackend for NullBackend {
    fn get(&self, _key: &str) -> Result<Option<Value>, BackendError> {
        Ok(None)
    }
    fn set(&self, _key: &str, _value: Value, _ttl: Option<Duration>) -> Result<(), BackendError> {
        Ok(())
    }
    fn delete(&self, _key: &str) -> Result<(), BackendError> {
        Ok(())
    }
}

/// The settings of the `null` backend: none.
///
/// In a configuration file, to switch a region's caching off:
///
/// ```toml
/// [regions.reports]
/// backend = "null"
/// ```
///
/// ```
/// use dogpile_backends::NullConfig;
///
/// let backend = NullConfig::default().build()?;
/// # let _ = backend;
/// # Ok::<(), dogpile_backends::config::ConfigError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NullConfig {}

impl NullConfig {
    /// A [`NullBackend`].
    pub fn build(&self) -> Result<Arc<dyn Backend>, ConfigError> {
        Ok(Arc::new(NullBackend))
    }
}

impl BackendSettings for NullConfig {
    const NAME: &'static str = "null";

    fn build_backend(&self) -> Result<Arc<dyn Backend>, ConfigError> {
        self.build()
    }
}
