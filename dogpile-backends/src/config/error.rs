//! Why a backend could not be built from configuration.

use super::table::{BACKENDS, BackendEntry, find};
use std::fmt;

/// Why a backend could not be built from its name and arguments.
///
/// The messages are written for the person editing the configuration;
/// [`field`](Self::field) says which argument is at fault, if any (else it
/// is the backend name).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// No backend has this name.
    UnknownBackend {
        /// The name given.
        name: String,
    },
    /// The backend exists but is not compiled in.
    NotCompiled {
        /// The backend.
        backend: &'static str,
        /// The cargo feature that enables it (same name in `dogpile` and
        /// `dogpile-backends`).
        feature: &'static str,
        /// Whether the backend is written yet: `false` for a planned
        /// backend that no release provides (no such feature exists yet,
        /// so the message does not name it).
        written: bool,
    },
    /// An argument the backend does not take.
    UnknownField {
        /// The backend.
        backend: &'static str,
        /// The argument given.
        field: String,
    },
    /// An argument the backend needs and was not given.
    MissingField {
        /// The backend.
        backend: &'static str,
        /// The argument needed.
        field: &'static str,
    },
    /// An argument (or the arguments, with no `field`) with a value the
    /// backend refuses.
    InvalidValue {
        /// The backend.
        backend: &'static str,
        /// The argument, when one is at fault.
        field: Option<String>,
        /// What is wrong and what to do.
        message: String,
    },
}

impl ConfigError {
    /// The argument at fault, or `None` when it is the backend name (an
    /// unknown or compiled-out backend, a missing argument).
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownField { field, .. } => Some(field),
            ConfigError::InvalidValue { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    /// A value refused by `backend`'s checks: for
    /// [`BackendSettings::build_backend`](super::BackendSettings::build_backend).
    pub fn invalid(backend: &'static str, field: &str, message: impl Into<String>) -> Self {
        ConfigError::InvalidValue { backend, field: Some(field.to_owned()), message: message.into() }
    }
}

/// The backends to choose from, for messages: "available backends: memory,
/// bounded_memory, null; not compiled in: redis (cargo feature `redis`),
/// ..."
pub fn backend_list() -> String {
    let names = |keep: fn(&BackendEntry) -> bool| BACKENDS.iter().filter(move |b| keep(b)).map(|b| b.name);
    let mut list = format!("available backends: {}", names(|b| b.compiled).collect::<Vec<_>>().join(", "));
    let off: Vec<String> = BACKENDS
        .iter()
        .filter(|b| !b.compiled && b.written)
        .map(|b| format!("{} (cargo feature `{}`)", b.name, b.feature.unwrap_or(b.name)))
        .collect();
    if !off.is_empty() {
        list.push_str(&format!("; not compiled in: {}", off.join(", ")));
    }
    // Planned backends have no cargo feature yet: naming one would send
    // the reader after a feature that does not exist.
    let planned: Vec<&str> = names(|b| !b.written).collect();
    if !planned.is_empty() {
        list.push_str(&format!("; not yet available: {}", planned.join(", ")));
    }
    list
}

/// The compiled-in backends other than `except` that take `field`, for
/// messages about a field given to the wrong backend.
pub fn backends_taking(field: &str, except: &str) -> Vec<&'static str> {
    BACKENDS.iter().filter(|b| b.name != except && b.fields().contains(&field)).map(|b| b.name).collect()
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnknownBackend { name } => write!(f, "unknown backend `{name}`; {}", backend_list()),
            ConfigError::NotCompiled { backend, feature, written: true } => write!(
                f,
                "the `{backend}` backend is not compiled in: `{backend}` needs the cargo feature `{feature}` of dogpile; {}",
                backend_list()
            ),
            // No such feature exists yet: naming it would mislead.
            ConfigError::NotCompiled { backend, written: false, .. } => {
                write!(f, "the `{backend}` backend is planned but not available yet; pick another: {}", backend_list())
            }
            ConfigError::UnknownField { backend, field } => {
                let others = backends_taking(field, backend);
                if !others.is_empty() {
                    return write!(
                        f,
                        "`{field}` is a field of the `{}` backend, not of `{backend}`",
                        others.join("`, `")
                    );
                }
                let own = find(backend).map(|b| b.fields()).unwrap_or_default();
                if own.is_empty() {
                    write!(f, "unknown field of the `{backend}` backend, which takes no fields")
                } else {
                    write!(f, "unknown field of the `{backend}` backend; its fields: {}", own.join(", "))
                }
            }
            ConfigError::MissingField { backend, field } => write!(f, "the `{backend}` backend needs `{field}`"),
            ConfigError::InvalidValue { backend, field: Some(field), message } => {
                write!(f, "`{field}` of the `{backend}` backend: {message}")
            }
            ConfigError::InvalidValue { backend, field: None, message } => {
                write!(f, "the `{backend}` backend: {message}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compiled_out_backend_names_its_feature_and_a_planned_one_does_not() {
        let off = ConfigError::NotCompiled { backend: "redis", feature: "redis", written: true };
        assert!(
            off.to_string().starts_with(
                "the `redis` backend is not compiled in: `redis` needs the cargo feature `redis` of dogpile; available backends: memory"
            ),
            "{off}"
        );
        let planned = ConfigError::NotCompiled { backend: "memcached", feature: "memcached", written: false };
        // The list of backends may name other features; this backend names none.
        assert!(!planned.to_string().contains("needs the cargo feature"), "{planned}");
        assert!(planned.to_string().contains("planned but not available yet"), "{planned}");
    }

    #[test]
    fn a_field_of_another_backend_is_named_so() {
        let e = ConfigError::UnknownField { backend: "memory", field: "capacity".into() };
        assert_eq!(e.to_string(), "`capacity` is a field of the `bounded_memory` backend, not of `memory`");
        let e = ConfigError::UnknownField { backend: "null", field: "capcity".into() };
        assert_eq!(e.to_string(), "unknown field of the `null` backend, which takes no fields");
        let e = ConfigError::UnknownField { backend: "bounded_memory", field: "capcity".into() };
        assert_eq!(e.to_string(), "unknown field of the `bounded_memory` backend; its fields: capacity");
    }
}
