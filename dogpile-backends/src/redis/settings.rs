//! The settings of the `redis` backend by name, as in a configuration file.

use super::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_IO_TIMEOUT, RedisBackend, RedisBuilder};
use crate::config::{BackendSettings, ConfigError};
use dogpile_core::backend::Backend;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The settings of the `redis` backend: where Redis is (one `url`, or
/// `sentinels` with a `service`, or cluster `nodes`), a key prefix,
/// timeouts in milliseconds, and TLS files for a `rediss://` `url`.
///
/// ```toml
/// [regions.users]
/// backend = "redis"
/// url = "redis://127.0.0.1:6379/0"
/// key_prefix = "myapp:"
/// connect_timeout_ms = 500
/// io_timeout_ms = 250
///
/// [regions.sessions]
/// backend = "redis"
/// sentinels = ["redis://10.0.0.1:26379", "redis://10.0.0.2:26379"]
/// service = "mymaster"
///
/// [regions.secure]
/// backend = "redis"
/// url = "rediss://cache.internal:6380/0"    # TLS (cargo feature `redis-tls`)
/// tls_ca_file = "/etc/ssl/private-ca.pem"   # trusted instead of the system's roots
/// # tls_cert_file = "/etc/ssl/app.pem"      # a client certificate, for
/// # tls_key_file = "/etc/ssl/app.key"       # servers with tls-auth-clients
/// ```
///
/// ```
/// use dogpile_backends::RedisConfig;
///
/// let config = RedisConfig::url("redis://127.0.0.1:6379");
/// let backend = config.build()?; // connects to nothing yet
/// # let _ = backend;
/// # Ok::<(), dogpile_backends::config::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisConfig {
    /// The server's URL (`redis://host:port/db`); the default is
    /// `redis://127.0.0.1:6379` when neither `sentinels` nor `nodes` is
    /// given.
    #[serde(default)]
    pub url: Option<String>,
    /// Sentinel URLs (`redis://host:port`), with `service`.
    #[serde(default)]
    pub sentinels: Option<Vec<String>>,
    /// The service (master name) the Sentinels watch.
    #[serde(default)]
    pub service: Option<String>,
    /// Cluster node URLs (any of them; the rest is discovered).
    #[serde(default)]
    pub nodes: Option<Vec<String>>,
    /// A prefix for every Redis key.
    #[serde(default)]
    pub key_prefix: Option<String>,
    /// Time allowed to connect, in milliseconds (default 1000).
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
    /// Time allowed for one reply, in milliseconds (default 1000).
    #[serde(default)]
    pub io_timeout_ms: Option<u64>,
    /// PEM CA certificates that check the server's certificate of a
    /// `rediss://` `url`, instead of the system's roots (feature
    /// `redis-tls`).
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// A client certificate (PEM), with [`tls_key_file`](Self::tls_key_file),
    /// for servers started with `tls-auth-clients yes`.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// The key of [`tls_cert_file`](Self::tls_cert_file): PKCS#8 PEM
    /// (`BEGIN PRIVATE KEY`).
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
}

impl RedisConfig {
    /// The settings of a backend on the server at `url`.
    pub fn url(url: impl Into<String>) -> Self {
        Self { url: Some(url.into()), ..Self::default() }
    }

    fn builder(&self) -> Result<RedisBuilder, ConfigError> {
        let invalid = |field, message: &str| ConfigError::invalid(Self::NAME, field, message.to_owned());
        let builder = match (&self.url, &self.sentinels, &self.nodes) {
            (Some(url), None, None) => RedisBackend::builder(url.clone()),
            (None, None, None) => RedisBackend::builder("redis://127.0.0.1:6379"),
            (None, Some(sentinels), None) => {
                let Some(service) = &self.service else {
                    return Err(invalid("service", "`sentinels` needs `service`, the master's name"));
                };
                let urls: Vec<&str> = sentinels.iter().map(String::as_str).collect();
                RedisBackend::sentinel(&urls, service.clone())
            }
            (None, None, Some(nodes)) => RedisBackend::cluster(&nodes.iter().map(String::as_str).collect::<Vec<_>>()),
            _ => return Err(invalid("url", "give one of `url`, `sentinels` or `nodes`, not several")),
        };
        if self.service.is_some() && self.sentinels.is_none() {
            return Err(invalid("service", "`service` goes with `sentinels`"));
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(invalid("tls_cert_file", "`tls_cert_file` and `tls_key_file` go together"));
        }
        let tls_set = self.tls_ca_file.is_some() || self.tls_cert_file.is_some();
        if tls_set && self.url.is_none() {
            return Err(invalid("tls_ca_file", "the TLS files go with a `rediss://` `url` (one server)"));
        }
        if tls_set && !cfg!(feature = "redis-tls") {
            return Err(invalid("tls_ca_file", "TLS needs dogpile's `redis-tls` cargo feature"));
        }
        let ms = |field, v: Option<u64>, default: Duration| match v {
            Some(0) => Err(invalid(field, "a timeout of 0 ms would fail every call")),
            Some(ms) => Ok(Duration::from_millis(ms)),
            None => Ok(default),
        };
        let builder = builder
            .key_prefix(self.key_prefix.clone().unwrap_or_default())
            .connect_timeout(ms("connect_timeout_ms", self.connect_timeout_ms, DEFAULT_CONNECT_TIMEOUT)?)
            .io_timeout(ms("io_timeout_ms", self.io_timeout_ms, DEFAULT_IO_TIMEOUT)?);
        #[cfg(feature = "redis-tls")]
        let builder = {
            let mut builder = builder;
            if let Some(ca) = &self.tls_ca_file {
                builder = builder.tls_ca_file(ca);
            }
            if let (Some(cert), Some(key)) = (&self.tls_cert_file, &self.tls_key_file) {
                builder = builder.tls_client_certificate(cert, key);
            }
            builder
        };
        Ok(builder)
    }

    /// A [`RedisBackend`]; refuses conflicting or incomplete settings and
    /// malformed URLs, connects to nothing.
    pub fn build(&self) -> Result<Arc<dyn Backend>, ConfigError> {
        let backend = self.builder()?.build().map_err(|e| ConfigError::InvalidValue {
            backend: Self::NAME,
            field: None,
            message: e.to_string(),
        })?;
        Ok(Arc::new(backend))
    }
}

impl BackendSettings for RedisConfig {
    const NAME: &'static str = "redis";

    fn validate(&self) -> Result<(), ConfigError> {
        self.builder().map(drop)
    }

    fn build_backend(&self) -> Result<Arc<dyn Backend>, ConfigError> {
        self.build()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{self, Args};
    use toml::Value;

    fn s(v: &str) -> Value {
        Value::String(v.to_owned())
    }

    fn list(v: &[&str]) -> Value {
        Value::Array(v.iter().map(|x| s(x)).collect())
    }

    fn args(pairs: Vec<(&str, Value)>) -> Args {
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    #[test]
    fn builds_by_name_without_connecting() {
        let ok = [
            vec![],
            vec![
                ("url", s("redis://127.0.0.1:1/2")),
                ("key_prefix", s("app:")),
                ("connect_timeout_ms", Value::Integer(5)),
                ("io_timeout_ms", Value::Integer(5)),
            ],
            vec![("sentinels", list(&["redis://127.0.0.1:1"])), ("service", s("mymaster"))],
            vec![("nodes", list(&["redis://127.0.0.1:1", "redis://127.0.0.1:2"]))],
        ];
        for pairs in ok {
            let text = format!("{pairs:?}");
            let backend = config::build("redis", &args(pairs)).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(backend.name(), "redis");
            assert!(backend.issues_leases() && backend.shares_invalidation());
        }
    }

    #[test]
    fn refuses_conflicting_or_incomplete_settings() {
        let bad = [
            (vec![("url", s("redis://a")), ("nodes", list(&["redis://b"]))], "not several"),
            (vec![("sentinels", list(&["redis://a"]))], "needs `service`"),
            (vec![("service", s("m"))], "goes with `sentinels`"),
            (vec![("io_timeout_ms", Value::Integer(0))], "timeout of 0 ms"),
            (vec![("url", s("nope://x"))], "invalid Redis URL"),
            (vec![("key_prefix", s("{x}"))], "key prefix"),
            (vec![("urls", s("redis://a"))], "unknown field"),
            (vec![("url", s("rediss://a")), ("tls_cert_file", s("c.pem"))], "go together"),
            (
                vec![("sentinels", list(&["redis://a"])), ("service", s("m")), ("tls_ca_file", s("ca.pem"))],
                "`rediss://` `url`",
            ),
        ];
        for (pairs, expected) in bad {
            let text = format!("{pairs:?}");
            let err = config::build("redis", &args(pairs)).err().unwrap_or_else(|| panic!("{text}: accepted"));
            assert!(err.to_string().contains(expected), "{text}: {err}");
        }
    }
}
