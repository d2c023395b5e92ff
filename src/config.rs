//! Configuring declared regions by name: in code with [`configure`], from a
//! TOML file with [`configure_from_toml`], or from any serde source through
//! [`CacheConfig`] and [`configure_all`].
//!
//! The fields are listed on [`RegionConfig`].

use crate::registry::{self, Slot};
use dogpile_backends::{BoundedMemoryBackend, MemoryBackend, NullBackend};
use dogpile_core::{Backend, Codec, Error, Expiration, Region};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

mod parse;

pub use parse::parse_duration;

/// The storage backend of a configured region, chosen by name.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendConfig {
    /// `"memory"`: an unbounded in-process map.
    Memory,
    /// `"bounded_memory"`: an in-process map that keeps at most `capacity`
    /// entries, evicting the least useful.
    BoundedMemory {
        /// The number of entries kept, at least 1 (0 is a configuration
        /// error).
        capacity: usize,
    },
    /// `"null"`: stores nothing; every call runs the function.
    Null,
}

/// The backends a configuration can name.
const BACKENDS: &[&str] = &["memory", "bounded_memory", "null"];

/// Backends of the design that do not exist yet: named in messages so that
/// `backend = "redis"` says "not yet" rather than "unknown" (no cargo
/// feature provides them today).
const PLANNED: &[&str] = &["redis", "memcached", "file"];

/// "available backends: memory, bounded_memory, null; not yet available:
/// redis, memcached, file"
fn backend_list() -> String {
    format!("available backends: {}; not yet available: {}", BACKENDS.join(", "), PLANNED.join(", "))
}

impl BackendConfig {
    /// The backend's configuration name.
    pub fn name(&self) -> &'static str {
        match self {
            BackendConfig::Memory => "memory",
            BackendConfig::BoundedMemory { .. } => "bounded_memory",
            BackendConfig::Null => "null",
        }
    }

    /// The backend; an error names the field at fault.
    fn build(&self) -> Result<Arc<dyn Backend>, FieldError> {
        Ok(match self {
            BackendConfig::Memory => Arc::new(MemoryBackend::new()),
            BackendConfig::BoundedMemory { capacity: 0 } => {
                return Err(FieldError { field: "capacity", message: ZERO_CAPACITY.to_owned() });
            }
            BackendConfig::BoundedMemory { capacity } => Arc::new(BoundedMemoryBackend::with_capacity(*capacity)),
            BackendConfig::Null => Arc::new(NullBackend),
        })
    }
}

/// How to set up one region. Every field is optional: a missing backend
/// or expiration falls back to the `region!` declaration's default.
///
/// Deserializable from any serde source (figment, config-rs, JSON,
/// environment...) with these fields; as TOML:
///
/// ```toml
/// [regions.users]
/// backend = "bounded_memory"  # memory | bounded_memory | null
/// capacity = 10_000           # bounded_memory only: the number of entries kept
/// expiration = "5m"           # "90s", "5m", "1h", "1h 30m", a number of seconds, or "never" (also -1)
/// stale_if_error = true       # optional: serve the stale value when regeneration fails
/// early_refresh = 1.0         # optional: XFetch beta, refresh early before expiry
/// lock_timeout = "30s"        # optional: lifetime of a distributed lock
/// storage_grace = "10m"       # optional: how long the backend keeps a value past expiry
/// codec = "postcard"          # optional: postcard | json (byte backends)
/// value_version = 2           # optional: values written under another version are misses (byte backends)
/// max_value_size = 1_048_576  # optional: the largest encoded value in bytes (byte backends; default 32 MiB)
/// clock_skew_tolerance = "1s" # optional: how far ahead of our clock a creation time may be
/// replace = false             # optional: true to replace a region configured before
/// ```
///
/// In code:
///
/// ```
/// use std::time::Duration;
/// use dogpile::{BackendConfig, RegionConfig};
///
/// let config = RegionConfig::new()
///     .backend(BackendConfig::BoundedMemory { capacity: 1000 })
///     .expiration(Duration::from_secs(300));
/// # let _ = config;
/// let from_json: RegionConfig = serde_json::from_str(r#"{"backend": "memory", "expiration": "90s"}"#).unwrap();
/// assert_eq!(from_json.expiration, Some(dogpile::Expiration::After(Duration::from_secs(90))));
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct RegionConfig {
    /// The storage backend.
    pub backend: Option<BackendConfig>,
    /// How long values stay fresh.
    pub expiration: Option<Expiration>,
    /// Replace a region configured before instead of failing.
    pub replace: bool,
    /// Serve the stale value when regeneration fails.
    pub stale_if_error: Option<bool>,
    /// Probabilistic early refresh (XFetch beta).
    pub early_refresh: Option<f64>,
    /// Lifetime of a distributed lock.
    pub lock_timeout: Option<Duration>,
    /// How long past expiry a backend keeps a value.
    pub storage_grace: Option<Duration>,
    /// The codec of byte backends.
    pub codec: Option<Codec>,
    /// The version written with values in byte backends (see
    /// [`RegionBuilder::value_version`](dogpile_core::RegionBuilder::value_version)).
    pub value_version: Option<u32>,
    /// The largest encoded value in bytes (see
    /// [`RegionBuilder::max_value_size`](dogpile_core::RegionBuilder::max_value_size)).
    pub max_value_size: Option<usize>,
    /// How far ahead of the clock a creation time may be (see
    /// [`RegionBuilder::clock_skew_tolerance`](dogpile_core::RegionBuilder::clock_skew_tolerance)).
    pub clock_skew_tolerance: Option<Duration>,
}

impl RegionConfig {
    /// No settings: everything from the declaration's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the backend.
    #[must_use]
    pub fn backend(mut self, backend: BackendConfig) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Sets the expiration.
    #[must_use]
    pub fn expiration(mut self, expiration: impl Into<Expiration>) -> Self {
        self.expiration = Some(expiration.into());
        self
    }

    /// Allows replacing a region configured before.
    #[must_use]
    pub fn replace(mut self, replace: bool) -> Self {
        self.replace = replace;
        self
    }

    /// Serve the stale value when regeneration fails.
    #[must_use]
    pub fn stale_if_error(mut self, enabled: bool) -> Self {
        self.stale_if_error = Some(enabled);
        self
    }

    /// Builds the region named `name`; `slot` supplies the declaration's
    /// defaults. Errors name the region and the field.
    fn build(&self, name: &str, slot: &Slot) -> Result<Region, String> {
        let backend = match &self.backend {
            Some(b) => b.build().map_err(|e| format!("region `{name}`, field `{}`: {}", e.field, e.message))?,
            None => slot.default_backend().ok_or_else(|| {
                format!("region `{name}`: no `backend` given and `region!` declares no default; {}", backend_list())
            })?,
        };
        let mut builder = Region::builder(name).backend_arc(backend);
        if let Some(exp) = self.expiration.or_else(|| slot.default_expiration()) {
            builder = builder.expiration(exp);
        }
        if let Some(v) = self.stale_if_error {
            builder = builder.stale_if_error(v);
        }
        if let Some(v) = self.early_refresh {
            builder = builder.early_refresh(v);
        }
        if let Some(v) = self.lock_timeout {
            builder = builder.lock_timeout(v);
        }
        if let Some(v) = self.storage_grace {
            builder = builder.storage_grace(v);
        }
        if let Some(v) = self.codec {
            builder = builder.codec(v);
        }
        if let Some(v) = self.value_version {
            builder = builder.value_version(v);
        }
        if let Some(v) = self.max_value_size {
            builder = builder.max_value_size(v);
        }
        if let Some(v) = self.clock_skew_tolerance {
            builder = builder.clock_skew_tolerance(v);
        }
        Ok(builder.build())
    }
}

/// Settings for many regions: `[regions.<name>]` tables in TOML, a
/// `regions` map in other formats.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CacheConfig {
    /// Each region's settings, by name.
    #[serde(default)]
    pub regions: BTreeMap<String, RegionConfig>,
}

/// Configures the declared region `name`.
///
/// Errors ([`Error::Config`]): the name was never declared (the message
/// lists the declared ones), the region was configured before (unless
/// `config.replace`), or no backend is given and the declaration has none.
///
/// ```
/// use std::time::Duration;
/// use dogpile::{BackendConfig, RegionConfig};
///
/// dogpile::region!(SESSIONS, "doc_configure_sessions");
///
/// dogpile::configure(
///     "doc_configure_sessions",
///     RegionConfig::new().backend(BackendConfig::Memory).expiration(Duration::from_secs(60)),
/// )?;
/// assert!(SESSIONS.is_configured());
/// // A second time is a mistake unless asked for.
/// assert!(dogpile::configure("doc_configure_sessions", RegionConfig::new()).is_err());
/// dogpile::configure_replace("doc_configure_sessions", RegionConfig::new().backend(BackendConfig::Null))?;
/// # Ok::<(), dogpile::Error>(())
/// ```
pub fn configure(name: &str, config: RegionConfig) -> Result<(), Error> {
    let slot = registry::declared_slot(name)?;
    let region = config.build(name, slot).map_err(Error::Config)?;
    slot.install(region, config.replace)
}

/// [`configure`], replacing any earlier configuration.
pub fn configure_replace(name: &str, config: RegionConfig) -> Result<(), Error> {
    configure(name, config.replace(true))
}

/// Installs a region built in code (any backend, clock, key mangler...)
/// under its name, which must be declared with [`region!`](macro@crate::region).
/// Fails if the region was configured before; see [`replace_region`].
pub fn configure_region(region: Region) -> Result<(), Error> {
    registry::declared_slot(region.name())?.install(region, false)
}

/// [`configure_region`], replacing any earlier configuration.
pub fn replace_region(region: Region) -> Result<(), Error> {
    registry::declared_slot(region.name())?.install(region, true)
}

/// Configures every region of `config`. Everything is checked first: on
/// any error nothing is configured, and the error lists every problem.
pub fn configure_all(config: CacheConfig) -> Result<(), Error> {
    let items: Vec<_> = config.regions.into_iter().map(|(name, cfg)| (name, cfg, None)).collect();
    apply(items, Vec::new())
}

/// Configures regions from a TOML document of `[regions.<name>]` tables
/// (fields as in [`RegionConfig`]).
///
/// Everything is checked before anything is configured; errors name the
/// region, the field and the line:
///
/// ```
/// dogpile::region!(USERS, "doc_toml_users");
///
/// let err = dogpile::configure_from_toml(r#"
/// [regions.doc_toml_users]
/// backend = "memory"
/// expiration = "5 parsecs"
/// "#).unwrap_err();
/// assert!(err.to_string().contains("region `doc_toml_users`, field `expiration` (line 4)"), "{err}");
///
/// dogpile::configure_from_toml(r#"
/// [regions.doc_toml_users]
/// backend = "bounded_memory"
/// capacity = 10_000
/// expiration = "5m"
/// "#)?;
/// assert!(USERS.is_configured());
/// # Ok::<(), dogpile::Error>(())
/// ```
pub fn configure_from_toml(toml: &str) -> Result<(), Error> {
    let (items, problems) = parse::from_toml(toml).map_err(Error::Config)?;
    apply(items, problems)
}

/// One region to configure: its name, settings, and the line of its table
/// in a file (for messages).
pub(crate) type Item = (String, RegionConfig, Option<usize>);

/// Checks every item, then installs them all, unless there is any problem
/// (`problems` holds those found while parsing). `line` is the line of the
/// region's table (for messages).
fn apply(items: Vec<Item>, mut problems: Vec<String>) -> Result<(), Error> {
    let parse_problems = problems.len();
    let mut ready = Vec::new();
    for (name, cfg, line) in &items {
        let at = line.map(|l| format!(" (line {l})")).unwrap_or_default();
        let slot = match registry::declared_slot(name) {
            Ok(s) => s,
            Err(_) => {
                problems.push(format!("region `{name}`{at} is not declared; {}", registry::declared_list()));
                continue;
            }
        };
        if !cfg.replace && *slot.explicit.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
            problems.push(format!("region `{name}`{at} is already configured; add `replace = true` to replace it"));
            continue;
        }
        if parse_problems > 0 {
            // Settings with errors were replaced by defaults: only the
            // checks above apply to them.
            continue;
        }
        match cfg.build(name, slot) {
            Ok(region) => ready.push((slot, region, cfg.replace)),
            Err(e) => problems.push(format!("{e}{at}")),
        }
    }
    if !problems.is_empty() {
        return Err(Error::Config(problems.join("\n")));
    }
    for (slot, region, replace) in ready {
        slot.install(region, replace)?;
    }
    Ok(())
}

// ----- serde: RegionConfig from any source -----

/// The fields of a region, parsed one at a time (so the TOML path can tell
/// which field of which line failed).
#[derive(Default)]
pub(crate) struct Partial {
    backend: Option<String>,
    capacity: Option<u64>,
    config: RegionConfig,
}

pub(crate) const FIELDS: &[&str] = &[
    "backend",
    "capacity",
    "expiration",
    "replace",
    "stale_if_error",
    "early_refresh",
    "lock_timeout",
    "storage_grace",
    "codec",
    "value_version",
    "max_value_size",
    "clock_skew_tolerance",
];

/// Deserializes the value of one field into a [`Partial`].
pub(crate) struct FieldSeed<'a> {
    pub(crate) field: &'a str,
    pub(crate) partial: &'a mut Partial,
}

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let p = self.partial;
        match self.field {
            "backend" => p.backend = Some(String::deserialize(d)?),
            "capacity" => p.capacity = Some(u64::deserialize(d)?),
            "expiration" => p.config.expiration = Some(parse::ExpirationValue::deserialize(d)?.0),
            "replace" => p.config.replace = bool::deserialize(d)?,
            "stale_if_error" => p.config.stale_if_error = Some(bool::deserialize(d)?),
            "early_refresh" => {
                let beta = f64::deserialize(d)?;
                if !(beta.is_finite() && beta > 0.0) {
                    return Err(de::Error::custom(format!(
                        "early_refresh must be a finite number greater than 0 (1.0 is the usual beta), not {beta}"
                    )));
                }
                p.config.early_refresh = Some(beta);
            }
            "lock_timeout" => p.config.lock_timeout = Some(parse::DurationValue::deserialize(d)?.0),
            "storage_grace" => p.config.storage_grace = Some(parse::DurationValue::deserialize(d)?.0),
            "codec" => {
                let name = String::deserialize(d)?;
                p.config.codec = Some(match name.as_str() {
                    "postcard" => Codec::Postcard,
                    "json" => Codec::Json,
                    other => {
                        return Err(de::Error::custom(format!("unknown codec `{other}`; expected postcard or json")));
                    }
                });
            }
            "value_version" => p.config.value_version = Some(u32::deserialize(d)?),
            "max_value_size" => {
                let bytes = usize::deserialize(d)?;
                if bytes == 0 {
                    return Err(de::Error::custom(
                        "max_value_size 0 would store nothing: give a size in bytes of at least 1",
                    ));
                }
                p.config.max_value_size = Some(bytes);
            }
            "clock_skew_tolerance" => p.config.clock_skew_tolerance = Some(parse::DurationValue::deserialize(d)?.0),
            other => return Err(de::Error::unknown_field(other, FIELDS)),
        }
        Ok(())
    }
}

/// Why `capacity = 0` is refused (the backend would otherwise take it as 1).
const ZERO_CAPACITY: &str =
    "capacity 0 would keep no entries: give at least 1, or use backend = \"null\" to cache nothing";

/// A finishing error: which field it concerns.
pub(crate) struct FieldError {
    pub(crate) field: &'static str,
    pub(crate) message: String,
}

impl Partial {
    /// Resolves the backend name and its arguments.
    pub(crate) fn finish(mut self) -> Result<RegionConfig, FieldError> {
        let err = |field, message| Err(FieldError { field, message });
        match self.backend.as_deref() {
            None => {
                if self.capacity.is_some() {
                    return err(
                        "capacity",
                        "`capacity` applies to the `bounded_memory` backend, and no backend is set".into(),
                    );
                }
            }
            Some("memory") | Some("null") if self.capacity.is_some() => {
                let b = self.backend.as_deref().unwrap_or_default();
                return err("capacity", format!("`capacity` applies to the `bounded_memory` backend, not `{b}`"));
            }
            Some("memory") => self.config.backend = Some(BackendConfig::Memory),
            Some("null") => self.config.backend = Some(BackendConfig::Null),
            Some("bounded_memory") => {
                let Some(capacity) = self.capacity else {
                    return err(
                        "backend",
                        "the `bounded_memory` backend needs `capacity` (the number of entries kept)".into(),
                    );
                };
                if capacity == 0 {
                    return err("capacity", ZERO_CAPACITY.to_owned());
                }
                let capacity = usize::try_from(capacity).map_err(|_| FieldError {
                    field: "capacity",
                    message: format!("capacity {capacity} is too large for this machine"),
                })?;
                self.config.backend = Some(BackendConfig::BoundedMemory { capacity });
            }
            Some(other) => {
                let message = if PLANNED.contains(&other) {
                    format!("the `{other}` backend is planned but not available yet; pick another: {}", backend_list())
                } else {
                    format!("unknown backend `{other}`; {}", backend_list())
                };
                return err("backend", message);
            }
        }
        Ok(self.config)
    }
}

impl<'de> Deserialize<'de> for RegionConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RegionConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a region's settings (backend, expiration, ...)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RegionConfig, A::Error> {
                let mut partial = Partial::default();
                let mut seen: Vec<&'static str> = Vec::new();
                while let Some(field) = map.next_key::<String>()? {
                    let Some(field) = FIELDS.iter().find(|f| **f == field) else {
                        return Err(de::Error::unknown_field(&field, FIELDS));
                    };
                    if seen.contains(field) {
                        return Err(de::Error::duplicate_field(field));
                    }
                    seen.push(field);
                    map.next_value_seed(FieldSeed { field, partial: &mut partial })
                        .map_err(|e| de::Error::custom(format!("field `{field}`: {e}")))?;
                }
                partial.finish().map_err(|e| de::Error::custom(format!("field `{}`: {}", e.field, e.message)))
            }
        }
        d.deserialize_map(V)
    }
}
