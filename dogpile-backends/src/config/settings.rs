//! The trait every backend's settings type implements.

use super::ConfigError;
use dogpile_core::backend::Backend;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// The settings of one backend, read from configuration: a serde type
/// with `#[serde(deny_unknown_fields)]`, whose fields sit next to
/// `backend = "<NAME>"` in a region's table.
///
/// Implementing it is what a backend module needs for a row of
/// [`BACKENDS`](super::BACKENDS) (see [`BackendEntry::compiled`](super::BackendEntry::compiled)).
pub trait BackendSettings: DeserializeOwned {
    /// The backend's name in configuration (`"memory"`, ...).
    const NAME: &'static str;

    /// Checks the values that serde cannot (such as a capacity of 0),
    /// without building anything: run when a configuration is read.
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }

    /// Builds the backend (after [`validate`](Self::validate)).
    fn build_backend(&self) -> Result<Arc<dyn Backend>, ConfigError>;
}
