//! The backends a configuration can name.

use super::args::{fields_of, from_args};
use super::{Args, BackendSettings, ConfigError};
use dogpile_core::backend::Backend;
use std::fmt;
use std::sync::Arc;

/// The table of backends by name: memory, bounded_memory and null (always
/// compiled in), then redis, memcached and file, each behind the cargo
/// feature of its name.
///
/// A backend behind a feature is one row, a constant defined twice: e.g.
/// `#[cfg(feature = "redis")] const REDIS: BackendEntry = BackendEntry::compiled::<crate::RedisConfig>(Some("redis"));`
/// and `#[cfg(not(feature = "redis"))] const REDIS: BackendEntry = BackendEntry::compiled_out("redis", "redis");`.
pub const BACKENDS: &[BackendEntry] = &[
    BackendEntry::compiled::<crate::MemoryConfig>(None),
    BackendEntry::compiled::<crate::BoundedMemoryConfig>(None),
    BackendEntry::compiled::<crate::NullConfig>(None),
    REDIS,
    MEMCACHED,
    FILE,
];

#[cfg(feature = "redis")]
const REDIS: BackendEntry = BackendEntry::compiled::<crate::RedisConfig>(Some("redis"));
#[cfg(not(feature = "redis"))]
const REDIS: BackendEntry = BackendEntry::compiled_out("redis", "redis");
#[cfg(feature = "memcached")]
const MEMCACHED: BackendEntry = BackendEntry::compiled::<crate::MemcachedConfig>(Some("memcached"));
#[cfg(not(feature = "memcached"))]
const MEMCACHED: BackendEntry = BackendEntry::compiled_out("memcached", "memcached");
#[cfg(feature = "file")]
const FILE: BackendEntry = BackendEntry::compiled::<crate::FileConfig>(Some("file"));
#[cfg(not(feature = "file"))]
const FILE: BackendEntry = BackendEntry::compiled_out("file", "file");

/// One backend a configuration can name.
#[derive(Clone, Copy)]
pub struct BackendEntry {
    /// Its name in configuration (`backend = "memory"`).
    pub name: &'static str,
    /// The cargo feature that enables it (the same name in `dogpile` and
    /// `dogpile-backends`); `None` for a backend always compiled in.
    pub feature: Option<&'static str>,
    /// Whether it is compiled into this build.
    pub compiled: bool,
    /// `false` for a backend that is planned but not written yet.
    pub(crate) written: bool,
    /// For a compiled-in backend: its fields and how it is built.
    build: Option<Builder>,
}

#[derive(Clone, Copy)]
struct Builder {
    fields: fn() -> &'static [&'static str],
    check: fn(&Args) -> Result<(), ConfigError>,
    build: fn(&Args) -> Result<Arc<dyn Backend>, ConfigError>,
}

fn check<C: BackendSettings>(args: &Args) -> Result<(), ConfigError> {
    from_args::<C>(C::NAME, args)?.validate()
}

fn build_backend<C: BackendSettings>(args: &Args) -> Result<Arc<dyn Backend>, ConfigError> {
    from_args::<C>(C::NAME, args)?.build_backend()
}

impl BackendEntry {
    /// The row of a compiled-in backend whose settings are `C`; `feature`
    /// is the cargo feature it sits behind, if any.
    pub const fn compiled<C: BackendSettings>(feature: Option<&'static str>) -> Self {
        BackendEntry {
            name: C::NAME,
            feature,
            compiled: true,
            written: true,
            build: Some(Builder { fields: fields_of::<C>, check: check::<C>, build: build_backend::<C> }),
        }
    }

    /// The row of a backend whose cargo feature is off in this build.
    pub const fn compiled_out(name: &'static str, feature: &'static str) -> Self {
        BackendEntry { name, feature: Some(feature), compiled: false, written: true, build: None }
    }

    /// The row of a backend that is planned, not written yet: named in
    /// messages with the feature that will enable it. (Every backend of the
    /// table is written now; kept for the next one.)
    #[allow(dead_code)]
    const fn planned(name: &'static str, feature: &'static str) -> Self {
        BackendEntry { name, feature: Some(feature), compiled: false, written: false, build: None }
    }

    /// The fields it takes (none when it is not compiled in).
    pub fn fields(&self) -> &'static [&'static str] {
        self.build.map_or(&[], |b| (b.fields)())
    }

    /// Checks `args` without building the backend (no connection is made):
    /// unknown, missing and mistyped fields, and refused values.
    pub fn check(&self, args: &Args) -> Result<(), ConfigError> {
        (self.builder()?.check)(args)
    }

    /// Builds the backend from its arguments.
    pub fn build(&self, args: &Args) -> Result<Arc<dyn Backend>, ConfigError> {
        (self.builder()?.build)(args)
    }

    fn builder(&self) -> Result<Builder, ConfigError> {
        self.build.ok_or(ConfigError::NotCompiled {
            backend: self.name,
            feature: self.feature.unwrap_or(self.name),
            written: self.written,
        })
    }
}

impl fmt::Debug for BackendEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendEntry")
            .field("name", &self.name)
            .field("feature", &self.feature)
            .field("compiled", &self.compiled)
            .field("fields", &self.fields())
            .finish()
    }
}

/// The row named `name`, compiled in or not.
pub fn find(name: &str) -> Option<&'static BackendEntry> {
    BACKENDS.iter().find(|b| b.name == name)
}

/// Builds the backend named `name` from its arguments: an unknown name
/// lists the available backends, a compiled-out one names its feature.
pub fn build(name: &str, args: &Args) -> Result<Arc<dyn Backend>, ConfigError> {
    find(name).ok_or_else(|| ConfigError::UnknownBackend { name: name.to_owned() })?.build(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        for (i, b) in BACKENDS.iter().enumerate() {
            assert!(BACKENDS[i + 1..].iter().all(|o| o.name != b.name), "`{}` twice", b.name);
        }
    }

    #[test]
    fn compiled_rows_build_and_others_name_their_feature() {
        for b in BACKENDS {
            match b.build(&Args::new()) {
                Err(ConfigError::NotCompiled { feature, .. }) => {
                    assert!(!b.compiled, "{}", b.name);
                    assert_eq!(Some(feature), b.feature);
                }
                // bounded_memory needs its capacity, file its path.
                Err(ConfigError::MissingField { backend: "bounded_memory", field: "capacity" }) => {}
                Err(ConfigError::MissingField { backend: "file", field: "path" }) => {}
                Err(e) => panic!("{}: {e}", b.name),
                Ok(_) => assert!(b.compiled, "{}", b.name),
            }
        }
    }

    #[test]
    fn fields_come_from_the_settings_type() {
        assert_eq!(find("bounded_memory").map(BackendEntry::fields), Some(&["capacity"][..]));
        assert_eq!(find("memory").map(BackendEntry::fields), Some(&[][..]));
        #[cfg(not(feature = "redis"))]
        assert_eq!(find("redis").map(BackendEntry::fields), Some(&[][..]));
        #[cfg(feature = "redis")]
        assert!(find("redis").map(BackendEntry::fields).is_some_and(|f| f.contains(&"url")));
    }
}
