//! The settings of the memcached backend, by name in configuration.

use super::conn::{Auth, ConnSettings, Protocol};
use super::hashing::{Distribution, Node};
use super::pool::PoolSettings;
use super::tls::{self, Tls, TlsFiles};
use super::{MAX_KEY, MemcachedBackend, TAG_LEN};
use crate::config::{BackendSettings, ConfigError};
use dogpile_core::backend::{Backend, BackendError};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The settings of the `memcached` backend.
///
/// In a configuration file:
///
/// ```toml
/// [regions.users]
/// backend = "memcached"
/// servers = ["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211:2"]
/// distribution = "ketama"      # or "ketama_md5", "ketama_weighted", "rendezvous"
/// namespace = "app1:"
/// io_timeout_ms = 500
/// # username = "app"        # memcached -Y authentication
/// # password = "secret"
/// ```
///
/// With SASL (servers started with `memcached -S`; the binary protocol is
/// implied) and TLS (servers started with `memcached -Z`, cargo feature
/// `memcached-tls`):
///
/// ```toml
/// [regions.sessions]
/// backend = "memcached"
/// servers = ["cache1.internal:11211", "cache2.internal:11211"]
/// sasl = true                  # SASL PLAIN, protocol = "binary"
/// username = "app"
/// password = "secret"
/// tls = true
/// tls_ca_file = "/etc/ssl/private-ca.pem"   # trusted besides the system's roots
/// # tls_cert_file = "/etc/ssl/app.pem"      # a client certificate, for
/// # tls_key_file = "/etc/ssl/app.key"       # servers with ssl_verify_mode
/// ```
///
/// | field | meaning |
/// |---|---|
/// | `protocol` | `"meta"` (default) or `"binary"`; `"binary"` when unset and `sasl = true` |
/// | `sasl` | SASL PLAIN as `username`/`password` (binary protocol) |
/// | `username`, `password` | with `sasl`: the SASL user; without: memcached's `-Y` login (meta protocol) |
/// | `tls` | TLS to every server (feature `memcached-tls`), either protocol |
/// | `tls_ca_file` | PEM CA certificates trusted besides the system's |
/// | `tls_cert_file`, `tls_key_file` | a client certificate and its PKCS#8 PEM key |
///
/// The server's certificate is checked against the host of its `servers`
/// entry (a name or an IP address). A refused login or a failed handshake
/// is an error of the region's calls that says what to check; the server
/// is not marked dead, and `#[cached]` functions still return their value.
///
/// ```
/// use dogpile_backends::MemcachedConfig;
///
/// let mut config = MemcachedConfig::default();
/// config.servers = vec!["127.0.0.1:11211".into(), "127.0.0.1:11212:2".into()];
/// config.namespace = "app1:".into();
/// let backend = config.build()?; // connects on first use
/// # let _ = backend;
///
/// // SASL over the binary protocol.
/// let mut sasl = MemcachedConfig::default();
/// sasl.sasl = true;
/// sasl.username = Some("app".into());
/// sasl.password = Some("secret".into());
/// let backend = sasl.build()?;
/// # let _ = backend;
/// assert!(!format!("{sasl:?}").contains("secret"), "Debug leaves the password out");
/// # Ok::<(), dogpile_backends::config::ConfigError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct MemcachedConfig {
    /// The servers, in order: `host:port`, or `host:port:weight` (weight 1
    /// by default; the order and the names decide placement, as in
    /// libmemcached). Default: `127.0.0.1:11211`.
    pub servers: Vec<String>,
    /// How keys are spread: `"ketama"` (default), `"ketama_md5"`,
    /// `"ketama_weighted"`, `"rendezvous"`. See [`Distribution`].
    pub distribution: DistributionName,
    /// Prepended to every item the backend writes (at most 100 bytes, no
    /// spaces or control characters), so that several applications can
    /// share servers.
    pub namespace: String,
    /// Connection timeout, in milliseconds (default 1000).
    pub connect_timeout_ms: u64,
    /// Timeout of each read and write, in milliseconds (default 1000).
    pub io_timeout_ms: u64,
    /// How long a server that could not be reached stays out of the
    /// placement before it is tried again, in milliseconds (default 2000).
    pub retry_dead_ms: u64,
    /// Idle connections kept per server (default 64).
    pub max_idle: usize,
    /// The largest value stored, in bytes (default 1 MiB, memcached's
    /// default item size, less room for the item's header); larger values
    /// are an error of the region's `set`, never sent.
    pub item_size_max: usize,
    /// A user name, with [`password`](Self::password): for memcached's
    /// text-protocol authentication (servers started with
    /// `memcached -Y <authfile>`), or with [`sasl`](Self::sasl) for SASL.
    pub username: Option<String>,
    /// The password of [`username`](Self::username) (never shown by
    /// `Debug`).
    pub password: Option<String>,
    /// The protocol: `"meta"` (the default) or `"binary"` (see
    /// [`Protocol`]). Unset, it is the binary protocol with
    /// [`sasl`](Self::sasl), else meta.
    pub protocol: Option<Protocol>,
    /// SASL authentication (servers started with `memcached -S`), PLAIN
    /// mechanism, as [`username`](Self::username) with
    /// [`password`](Self::password); needs the binary protocol. Default
    /// `false`.
    pub sasl: bool,
    /// TLS to the servers (started with `memcached -Z`), with either
    /// protocol; needs the cargo feature `memcached-tls`. The server's
    /// certificate must be signed by a root the system trusts or by
    /// [`tls_ca_file`](Self::tls_ca_file), for the host of its `servers`
    /// entry (a name or an IP address). Default `false`.
    pub tls: bool,
    /// A PEM file of CA certificates trusted besides the system's roots
    /// (for servers with certificates of a private CA).
    pub tls_ca_file: Option<PathBuf>,
    /// A client certificate (PEM), with [`tls_key_file`](Self::tls_key_file),
    /// for servers that check their clients (`-o ssl_verify_mode=2`).
    pub tls_cert_file: Option<PathBuf>,
    /// The key of [`tls_cert_file`](Self::tls_cert_file): PKCS#8 PEM
    /// (`BEGIN PRIVATE KEY`).
    pub tls_key_file: Option<PathBuf>,
}

impl std::fmt::Debug for MemcachedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemcachedConfig")
            .field("servers", &self.servers)
            .field("distribution", &self.distribution)
            .field("namespace", &self.namespace)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("io_timeout_ms", &self.io_timeout_ms)
            .field("retry_dead_ms", &self.retry_dead_ms)
            .field("max_idle", &self.max_idle)
            .field("item_size_max", &self.item_size_max)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("protocol", &self.protocol)
            .field("sasl", &self.sasl)
            .field("tls", &self.tls)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .finish()
    }
}

/// A [`Distribution`] by its name in configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DistributionName {
    /// [`Distribution::Ketama`].
    #[default]
    Ketama,
    /// [`Distribution::KetamaMd5`].
    KetamaMd5,
    /// [`Distribution::KetamaWeighted`].
    KetamaWeighted,
    /// [`Distribution::Rendezvous`].
    Rendezvous,
}

impl From<DistributionName> for Distribution {
    fn from(d: DistributionName) -> Self {
        match d {
            DistributionName::Ketama => Distribution::Ketama,
            DistributionName::KetamaMd5 => Distribution::KetamaMd5,
            DistributionName::KetamaWeighted => Distribution::KetamaWeighted,
            DistributionName::Rendezvous => Distribution::Rendezvous,
        }
    }
}

impl Default for MemcachedConfig {
    fn default() -> Self {
        MemcachedConfig {
            servers: vec!["127.0.0.1:11211".into()],
            distribution: DistributionName::Ketama,
            namespace: String::new(),
            connect_timeout_ms: 1000,
            io_timeout_ms: 1000,
            retry_dead_ms: 2000,
            max_idle: 64,
            item_size_max: 1024 * 1024 - 1024,
            username: None,
            password: None,
            protocol: None,
            sasl: false,
            tls: false,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

fn invalid(field: &str, message: String) -> ConfigError {
    ConfigError::InvalidValue { backend: "memcached", field: Some(field.into()), message }
}

/// `host:port[:weight]`, `host` alone on port 11211, `[v6]:port[:weight]`.
fn parse_server(spec: &str) -> Result<Node, String> {
    let bad = || format!("{spec:?} is not `host:port` or `host:port:weight`");
    let (host, rest) = if let Some(v6) = spec.strip_prefix('[') {
        let (host, rest) = v6.split_once(']').ok_or_else(bad)?;
        (format!("[{host}]"), rest.strip_prefix(':').unwrap_or(rest))
    } else {
        match spec.split_once(':') {
            Some((h, rest)) => (h.to_owned(), rest),
            None => (spec.to_owned(), ""),
        }
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    let mut parts = rest.split(':').filter(|p| !p.is_empty());
    let port = parts.next().map_or(Ok(11211), |p| p.parse::<u16>().map_err(|_| bad()))?;
    let weight = parts.next().map_or(Ok(1), |w| w.parse::<u32>().map_err(|_| bad()))?;
    if parts.next().is_some() || weight == 0 || port == 0 {
        return Err(bad());
    }
    Ok(Node { host, port, weight })
}

impl MemcachedConfig {
    fn nodes(&self) -> Result<Vec<Node>, ConfigError> {
        if self.servers.is_empty() {
            return Err(invalid("servers", "at least one server is needed".into()));
        }
        self.servers.iter().map(|s| parse_server(s).map_err(|m| invalid("servers", m))).collect()
    }

    fn checked(&self) -> Result<Vec<Node>, ConfigError> {
        let nodes = self.nodes()?;
        if self.namespace.len() > 100 || self.namespace.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(invalid("namespace", "at most 100 bytes, without spaces or control characters".into()));
        }
        for (field, v) in [("connect_timeout_ms", self.connect_timeout_ms), ("io_timeout_ms", self.io_timeout_ms)] {
            if v == 0 {
                return Err(invalid(field, "a timeout of 0 would wait forever; give milliseconds".into()));
            }
        }
        let auth = [&self.username, &self.password];
        if auth.iter().any(|v| v.is_some()) && !auth.iter().all(|v| v.is_some()) {
            return Err(invalid("username", "`username` and `password` go together".into()));
        }
        if self.username.as_deref().is_some_and(|u| u.is_empty() || u.contains(char::is_whitespace) || u.contains('\0'))
            || self.password.as_deref().is_some_and(|p| p.contains(['\r', '\n', '\0']))
        {
            return Err(invalid("username", "a user name without spaces, a password on one line".into()));
        }
        if self.sasl {
            if self.username.is_none() {
                return Err(invalid("sasl", "SASL needs `username` and `password`".into()));
            }
            if self.protocol() != Protocol::Binary {
                return Err(invalid(
                    "protocol",
                    "SASL runs over the binary protocol: set `protocol = \"binary\"` (or leave it out)".into(),
                ));
            }
        } else if self.username.is_some() && self.protocol() == Protocol::Binary {
            return Err(invalid(
                "username",
                "the binary protocol authenticates by SASL: add `sasl = true` (the text-protocol \
                 `memcached -Y` authentication needs `protocol = \"meta\"`)"
                    .into(),
            ));
        }
        let files = [
            ("tls_ca_file", &self.tls_ca_file),
            ("tls_cert_file", &self.tls_cert_file),
            ("tls_key_file", &self.tls_key_file),
        ];
        if let Some((field, _)) = files.iter().find(|(_, f)| f.is_some())
            && !self.tls
        {
            return Err(invalid(field, format!("`{field}` is for TLS: add `tls = true`")));
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(invalid("tls_cert_file", "`tls_cert_file` and `tls_key_file` go together".into()));
        }
        if self.tls && !tls::COMPILED {
            return Err(invalid("tls", tls::NOT_COMPILED.into()));
        }
        if self.item_size_max == 0 {
            return Err(invalid("item_size_max", "must be at least 1 byte".into()));
        }
        const { assert!(MAX_KEY - 100 - TAG_LEN >= 70, "a 100-byte namespace leaves room for mapped keys") };
        Ok(nodes)
    }

    /// The protocol spoken: as configured, else binary for SASL and meta
    /// otherwise.
    fn protocol(&self) -> Protocol {
        match self.protocol {
            Some(p) => p,
            None if self.sasl => Protocol::Binary,
            None => Protocol::Meta,
        }
    }

    /// The settings of the pool, the TLS files read.
    fn pool_settings(&self) -> Result<PoolSettings, ConfigError> {
        let auth = match self.username.clone().zip(self.password.clone()) {
            Some((user, password)) if self.sasl => Auth::Sasl(user, password),
            Some((user, password)) => Auth::Text(user, password),
            None => Auth::None,
        };
        let tls = if self.tls {
            let files = TlsFiles {
                ca: self.tls_ca_file.as_deref(),
                cert: self.tls_cert_file.as_deref(),
                key: self.tls_key_file.as_deref(),
            };
            Some(Tls::new(&files).map_err(|(field, message)| invalid(field, message))?)
        } else {
            None
        };
        Ok(PoolSettings {
            retry_dead: Duration::from_millis(self.retry_dead_ms),
            max_idle: self.max_idle,
            conn: ConnSettings {
                protocol: self.protocol(),
                connect: Duration::from_millis(self.connect_timeout_ms),
                io: Duration::from_millis(self.io_timeout_ms),
                max_value: self.item_size_max,
                auth,
                tls,
            },
        })
    }

    /// The backend itself (no connection is made until first use; TLS
    /// files are read now).
    pub fn backend(&self) -> Result<MemcachedBackend, BackendError> {
        self.backend_checked().map_err(|e| BackendError::new("memcached", e.to_string()))
    }

    fn backend_checked(&self) -> Result<MemcachedBackend, ConfigError> {
        let nodes = self.checked()?;
        let settings = self.pool_settings()?;
        Ok(MemcachedBackend::from_parts(nodes, self.distribution.into(), self.namespace.clone(), settings))
    }

    /// A [`MemcachedBackend`], for a region.
    pub fn build(&self) -> Result<Arc<dyn Backend>, ConfigError> {
        Ok(Arc::new(self.backend_checked()?))
    }
}

impl BackendSettings for MemcachedConfig {
    const NAME: &'static str = "memcached";

    fn validate(&self) -> Result<(), ConfigError> {
        self.checked().map(drop)
    }

    fn build_backend(&self) -> Result<Arc<dyn Backend>, ConfigError> {
        self.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_specs() {
        let n = parse_server("10.0.0.1:11311:3").unwrap();
        assert_eq!((n.host.as_str(), n.port, n.weight), ("10.0.0.1", 11311, 3));
        let n = parse_server("cache").unwrap();
        assert_eq!((n.host.as_str(), n.port, n.weight), ("cache", 11211, 1));
        let n = parse_server("[::1]:11212").unwrap();
        assert_eq!((n.host.as_str(), n.port), ("[::1]", 11212));
        for bad in ["", "a:b", "a:1:0", "a:1:2:3", "a b:1"] {
            assert!(parse_server(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tls_asked_for_without_the_feature_names_the_feature() {
        let mut c = MemcachedConfig { tls: true, ..Default::default() };
        let checked = c.checked();
        if cfg!(feature = "memcached-tls") {
            assert!(checked.is_ok());
        } else {
            let err = checked.unwrap_err().to_string();
            assert!(err.contains("cargo feature `memcached-tls`"), "{err}");
        }
        c.tls = false;
        c.tls_ca_file = Some("ca.pem".into());
        let err = c.checked().unwrap_err().to_string();
        assert!(err.contains("add `tls = true`"), "{err}");
    }

    #[test]
    fn sasl_implies_the_binary_protocol() {
        let mut c = MemcachedConfig::default();
        assert_eq!(c.protocol(), Protocol::Meta);
        c.sasl = true;
        c.username = Some("app".into());
        c.password = Some("pw".into());
        assert_eq!(c.protocol(), Protocol::Binary);
        assert!(c.checked().is_ok());
        c.protocol = Some(Protocol::Meta);
        assert!(c.checked().unwrap_err().to_string().contains("binary protocol"));
    }
}
