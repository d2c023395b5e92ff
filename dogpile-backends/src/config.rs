//! Building backends from configuration, by name.
//!
//! Each backend module owns its settings type ([`MemoryConfig`](crate::MemoryConfig),
//! [`BoundedMemoryConfig`](crate::BoundedMemoryConfig),
//! [`NullConfig`](crate::NullConfig), and behind their features the Redis,
//! memcached and file settings), a serde type that refuses unknown
//! fields and builds its backend. This module holds the table of backends
//! by name ([`BACKENDS`]): each row says which cargo feature enables the
//! backend, whether it is compiled in, and builds it from a table of
//! arguments ([`Args`]), so that a configuration file can say
//! `backend = "bounded_memory"` and `capacity = 10_000`.
//!
//! ```
//! use dogpile_backends::config::{self, Args, ConfigError};
//!
//! let mut args = Args::new();
//! args.insert("capacity".into(), 10_000.into());
//! let backend = config::build("bounded_memory", &args)?;
//! # let _ = backend;
//!
//! let err = config::build("memcahced", &Args::new()).unwrap_err();
//! assert!(matches!(err, ConfigError::UnknownBackend { .. }));
//! assert!(err.to_string().contains("available backends: memory, bounded_memory, null"));
//! # Ok::<(), ConfigError>(())
//! ```

mod args;
mod error;
mod settings;
mod table;

pub use args::Args;
pub use error::{ConfigError, backend_list, backends_taking};
pub use settings::BackendSettings;
pub use table::{BACKENDS, BackendEntry, build, find};
