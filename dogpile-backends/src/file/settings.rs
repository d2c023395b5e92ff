//! The settings of the `file` backend, by name in configuration.

use super::FileBackend;
use crate::config::{BackendSettings, ConfigError};
use dogpile_core::backend::Backend;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The settings of the `file` backend: its directory, and the options of
/// [`FileBackend`].
///
/// In a configuration file:
///
/// ```toml
/// [regions.pages]
/// backend = "file"
/// path = "/var/cache/myapp"
/// fsync = false                 # default
/// max_bytes = 1_073_741_824     # optional: oldest values removed beyond it
/// sweep_interval_secs = 300     # default
/// ```
///
/// ```
/// use dogpile_backends::FileConfig;
///
/// let backend = FileConfig::new(std::env::temp_dir().join("dogpile-doc-config")).build()?;
/// # let _ = backend;
/// let mut zero = FileConfig::new("/tmp/x");
/// zero.max_bytes = Some(0);
/// assert!(zero.build().unwrap_err().to_string().contains("max_bytes"));
/// # Ok::<(), dogpile_backends::config::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct FileConfig {
    /// The directory of the files (created when first needed).
    pub path: PathBuf,
    /// Sync each write to disk ([`FileBackend::fsync`]).
    #[serde(default)]
    pub fsync: bool,
    /// The size limit of the values ([`FileBackend::max_bytes`]).
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// Seconds between sweeps ([`FileBackend::sweep_interval`]).
    #[serde(default)]
    pub sweep_interval_secs: Option<u64>,
}

impl FileConfig {
    /// The settings of a backend in `path`, other options at their defaults.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileConfig { path: path.into(), fsync: false, max_bytes: None, sweep_interval_secs: None }
    }

    /// Checks the settings and builds the backend (nothing is touched on
    /// disk until the first call).
    pub fn build(&self) -> Result<Arc<dyn Backend>, ConfigError> {
        self.validate()?;
        let mut backend = FileBackend::new(&self.path).fsync(self.fsync);
        if let Some(max) = self.max_bytes {
            backend = backend.max_bytes(max);
        }
        if let Some(secs) = self.sweep_interval_secs {
            backend = backend.sweep_interval(Duration::from_secs(secs));
        }
        Ok(Arc::new(backend))
    }
}

impl BackendSettings for FileConfig {
    const NAME: &'static str = "file";

    fn validate(&self) -> Result<(), ConfigError> {
        if self.path.as_os_str().is_empty() {
            return Err(ConfigError::invalid("file", "path", "an empty path names no directory"));
        }
        if self.max_bytes == Some(0) {
            return Err(ConfigError::invalid("file", "max_bytes", "max_bytes 0 would keep no values"));
        }
        if self.sweep_interval_secs == Some(0) {
            return Err(ConfigError::invalid(
                "file",
                "sweep_interval_secs",
                "sweep_interval_secs 0 would sweep on every write; give seconds, e.g. 300",
            ));
        }
        Ok(())
    }

    fn build_backend(&self) -> Result<Arc<dyn Backend>, ConfigError> {
        self.build()
    }
}
