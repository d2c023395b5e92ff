//! Configuring declared regions by name: in code with [`configure`], from a
//! TOML file with [`configure_from_toml`], or from any serde source through
//! [`CacheConfig`] and [`configure_all`].
//!
//! The fields are listed on [`RegionConfig`].

use crate::registry::{self, Slot};
use dogpile_backends::config::{self as backends, Args, ConfigError};
use dogpile_core::backend::Backend;
use dogpile_core::{Codec, Error, Expiration, Region};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

mod parse;

pub use parse::parse_duration;

/// The storage backend of a configured region: a backend's name and its
/// own arguments, resolved by the table of
/// [`dogpile::backends::config`](dogpile_backends::config) (each backend
/// module owns its settings type, such as
/// [`BoundedMemoryConfig`](dogpile_backends::BoundedMemoryConfig)).
///
/// ```
/// use dogpile::BackendConfig;
///
/// let bounded = BackendConfig::new("bounded_memory").arg("capacity", 10_000);
/// assert_eq!(bounded.name(), "bounded_memory");
/// assert_eq!(bounded.args()["capacity"].as_integer(), Some(10_000));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    name: String,
    args: Args,
}

impl BackendConfig {
    /// The backend named `name` (`"memory"`, `"bounded_memory"`, `"null"`,
    /// ...), with no arguments yet. The name is checked when the region is
    /// configured.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), args: Args::new() }
    }

    /// Adds one of the backend's arguments (`capacity` for
    /// `bounded_memory`, ...).
    #[must_use]
    pub fn arg(mut self, field: impl Into<String>, value: impl Into<toml::Value>) -> Self {
        self.args.insert(field.into(), value.into());
        self
    }

    /// The backend's configuration name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The backend's arguments.
    pub fn args(&self) -> &Args {
        &self.args
    }

    /// The backend's row of the table, or why there is none usable.
    fn entry(&self) -> Result<&'static backends::BackendEntry, FieldError> {
        let entry = backends::find(&self.name)
            .ok_or_else(|| field_error(ConfigError::UnknownBackend { name: self.name.clone() }))?;
        match self.args.keys().find(|f| FIELDS.contains(&f.as_str())) {
            Some(f) => Err(FieldError {
                field: f.clone(),
                message: format!("`{f}` is a setting of the region, not an argument of the `{}` backend", self.name),
            }),
            None => Ok(entry),
        }
    }

    /// Checks the name and the arguments without building the backend.
    fn check(&self) -> Result<(), FieldError> {
        self.entry()?.check(&self.args).map_err(field_error)
    }

    /// The backend; an error names the field at fault.
    fn build(&self) -> Result<Arc<dyn Backend>, FieldError> {
        self.entry()?.build(&self.args).map_err(field_error)
    }
}

/// A backend's error, attributed to its field (the backend name when no
/// argument is at fault). An unknown field that no backend takes may be a
/// misspelt region setting: those are listed too.
fn field_error(e: ConfigError) -> FieldError {
    let field = e.field().unwrap_or("backend").to_owned();
    let message = match &e {
        ConfigError::UnknownField { backend, field } if backends::backends_taking(field, backend).is_empty() => {
            let own = backends::find(backend).map(|b| b.fields()).unwrap_or_default();
            let own = if own.is_empty() { "it takes none".to_owned() } else { own.join(", ") };
            format!(
                "unknown field; expected one of: {}, or a field of the `{backend}` backend ({own})",
                FIELDS.join(", ")
            )
        }
        _ => e.to_string(),
    };
    FieldError { field, message }
}

/// How to set up one region. Every field is optional: a missing backend
/// or expiration falls back to the `region!` declaration's default.
///
/// Deserializable from any serde source (figment, config-rs, JSON,
/// environment...) with these fields; as TOML:
///
/// ```toml
/// [regions.users]
/// backend = "bounded_memory"  # memory | bounded_memory | null (see `dogpile::backends::config::BACKENDS`)
/// capacity = 10_000           # the backend's own fields (bounded_memory: the number of entries kept)
/// expiration = "5m"           # "90s", "5m", "1h", "1h 30m", a number of seconds, or "never" (also -1)
/// stale_if_error = true       # optional: serve the stale value when regeneration fails
/// early_refresh = 1.0         # optional: XFetch beta, refresh early before expiry
/// lock_timeout = "30s"        # optional: lifetime of a lease (backends shared between processes)
/// lease_keep_alive = "10s"    # optional: how often a slow creator's lease is extended (default: lock_timeout / 3)
/// invalidation_refresh = "1s" # optional: how often an invalidation shared through the backend is read
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
///     .backend(BackendConfig::new("bounded_memory").arg("capacity", 1000))
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
    /// Lifetime of a lease (see
    /// [`RegionBuilder::lock_timeout`](dogpile_core::RegionBuilder::lock_timeout)).
    pub lock_timeout: Option<Duration>,
    /// How often a slow creator's lease is extended (see
    /// [`RegionBuilder::lease_keep_alive`](dogpile_core::RegionBuilder::lease_keep_alive)).
    pub lease_keep_alive: Option<Duration>,
    /// How often an invalidation shared through the backend is read (see
    /// [`RegionBuilder::invalidation_refresh`](dogpile_core::RegionBuilder::invalidation_refresh)).
    pub invalidation_refresh: Option<Duration>,
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
                format!(
                    "region `{name}`: no `backend` given and `region!` declares no default; {}",
                    backends::backend_list()
                )
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
        if let Some(v) = self.lease_keep_alive {
            builder = builder.lease_keep_alive(v);
        }
        if let Some(v) = self.invalidation_refresh {
            builder = builder.invalidation_refresh(v);
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
        builder.try_build().map_err(|e| match e {
            dogpile_core::Error::Config(message) => message,
            other => other.to_string(),
        })
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
///     RegionConfig::new().backend(BackendConfig::new("memory")).expiration(Duration::from_secs(60)),
/// )?;
/// assert!(SESSIONS.is_configured());
/// // A second time is a mistake unless asked for.
/// assert!(dogpile::configure("doc_configure_sessions", RegionConfig::new()).is_err());
/// dogpile::configure_replace("doc_configure_sessions", RegionConfig::new().backend(BackendConfig::new("null")))?;
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
/// Fields that are not the region's own are the backend's arguments, left
/// to the backend's settings type.
#[derive(Default)]
pub(crate) struct Partial {
    backend: Option<String>,
    args: Args,
    config: RegionConfig,
}

/// The region's own fields; any other is an argument of its backend.
pub(crate) const FIELDS: &[&str] = &[
    "backend",
    "expiration",
    "replace",
    "stale_if_error",
    "early_refresh",
    "lock_timeout",
    "lease_keep_alive",
    "invalidation_refresh",
    "storage_grace",
    "codec",
    "value_version",
    "max_value_size",
    "clock_skew_tolerance",
];

/// Deserializes the value of one field (a region's or the backend's) into
/// a [`Partial`].
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
            "lease_keep_alive" => p.config.lease_keep_alive = Some(parse::DurationValue::deserialize(d)?.0),
            "invalidation_refresh" => {
                p.config.invalidation_refresh = Some(parse::DurationValue::deserialize(d)?.0);
            }
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
            arg => {
                p.args.insert(arg.to_owned(), toml::Value::deserialize(d)?);
            }
        }
        Ok(())
    }
}

/// A finishing error: which field it concerns.
pub(crate) struct FieldError {
    pub(crate) field: String,
    pub(crate) message: String,
}

impl Partial {
    /// Resolves the backend by name and checks its arguments.
    pub(crate) fn finish(mut self) -> Result<RegionConfig, FieldError> {
        match self.backend {
            Some(name) => {
                let backend = BackendConfig { name, args: self.args };
                backend.check()?;
                self.config.backend = Some(backend);
            }
            None => {
                if let Some(field) = self.args.keys().next() {
                    let takers = backends::backends_taking(field, "");
                    let message = if takers.is_empty() {
                        format!("unknown field; expected one of: {}", FIELDS.join(", "))
                    } else {
                        format!("`{field}` is a field of the `{}` backend, and no backend is set", takers.join("`, `"))
                    };
                    return Err(FieldError { field: field.clone(), message });
                }
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
                let mut seen: Vec<String> = Vec::new();
                while let Some(field) = map.next_key::<String>()? {
                    if seen.contains(&field) {
                        return Err(de::Error::custom(format!("field `{field}` given twice")));
                    }
                    seen.push(field.clone());
                    map.next_value_seed(FieldSeed { field: &field, partial: &mut partial })
                        .map_err(|e| de::Error::custom(format!("field `{field}`: {e}")))?;
                }
                partial.finish().map_err(|e| de::Error::custom(format!("field `{}`: {}", e.field, e.message)))
            }
        }
        d.deserialize_map(V)
    }
}
