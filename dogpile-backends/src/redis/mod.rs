//! The Redis backend: values, creation leases and invalidations shared by
//! every process (on every machine) that uses the same Redis.
//!
//! - Values are encoded envelopes stored with `SET ... PX <ttl>`, the
//!   region's storage time to live (its expiration plus a grace), so Redis
//!   frees what the region no longer serves. `get_multi` is one `MGET`,
//!   `set_multi` one pipeline.
//! - The creation lease of a key is a Redis key set with `SET NX PX` to a
//!   random owner token; only its owner extends or releases it (Lua scripts
//!   comparing the token), and it expires, so a crashed holder blocks the key
//!   for the lease time at most. A read and a lease request are one script,
//!   one round trip.
//! - `invalidate` writes a small key per region that every process reads
//!   (at most every `invalidation_refresh`, a region setting).
//! - Keys are laid out so that a value and its lease share a Redis Cluster
//!   hash slot (see [`RedisBackend`]).
//!
//! Connections are made on first use: a region can be built while Redis is
//! down, and calls fail (the region reports errors; `#[cached]` functions
//! fail open) until it is back.

mod blocking;
mod connection;
mod keys;
mod lease;
#[cfg(feature = "redis-async")]
mod nonblocking;
mod scripts;
mod sentinel;
mod settings;
mod tls;

pub use settings::RedisConfig;

use connection::{Pool, Timeouts, Topology};
use dogpile_core::backend::{AsyncBackend, Backend, BackendError, BlockingBackend, ValueKind};
use keys::Keys;
use std::sync::Arc;
use std::time::Duration;

/// A Redis deployment (one server, Sentinel or Cluster) used as a shared
/// cache with a distributed dogpile lock.
///
/// ```no_run
/// use dogpile_core::Region;
/// use dogpile_backends::RedisBackend;
/// use std::time::Duration;
///
/// let backend = RedisBackend::builder("redis://127.0.0.1:6379/0")
///     .key_prefix("myapp:")
///     .io_timeout(Duration::from_millis(500))
///     .build()?;
/// let region = Region::builder("users").backend(backend).expiration(Duration::from_secs(60)).build();
/// let name: String = region.get_or_create("user:1", || "Ada".to_owned())?;
/// # let _ = name;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Redis keys: a value under `<prefix>{=<key>}`, its creation lease under
/// `<prefix>{=<key>}:lease` (one hash slot for both in a Cluster), a
/// region's last invalidation under `<prefix>dogpile:inv:<region>`.
///
/// With the `redis-async` feature the backend also has an async interface
/// on managed multiplexed connections (tokio), one per runtime that makes
/// async calls, made on its first call; without it, async callers use the
/// blocking interface on tokio's blocking pool (dogpile's `tokio` feature).
/// Sentinel and Cluster deployments offer the blocking interface only.
#[derive(Debug, Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

/// What the backend's handles and leases share.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) keys: Keys,
    pub(crate) pool: Pool,
    #[cfg(feature = "redis-async")]
    pub(crate) aio: Option<nonblocking::Aio>,
}

/// Which deployment a [`RedisBuilder`] connects to.
#[derive(Clone)]
enum Target {
    Url(String),
    Sentinel { sentinels: Vec<String>, service: String, db: i64 },
    Cluster { nodes: Vec<String> },
}

impl std::fmt::Debug for Target {
    /// URLs with their passwords redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let all = |urls: &[String]| urls.iter().map(|u| redacted(u)).collect::<Vec<_>>();
        match self {
            Target::Url(url) => f.debug_tuple("Url").field(&redacted(url)).finish(),
            Target::Sentinel { sentinels, service, db } => f
                .debug_struct("Sentinel")
                .field("sentinels", &all(sentinels))
                .field("service", service)
                .field("db", db)
                .finish(),
            Target::Cluster { nodes } => f.debug_struct("Cluster").field("nodes", &all(nodes)).finish(),
        }
    }
}

/// `url` with the password of its user part (`scheme://user:password@host`)
/// replaced by `***`, for messages and `Debug`.
pub(crate) fn redacted(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else { return url.to_owned() };
    let rest = &url[start..];
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let Some(at) = authority.rfind('@') else { return url.to_owned() };
    let Some(colon) = authority[..at].find(':') else { return url.to_owned() };
    format!("{}{}:***{}", &url[..start], &authority[..colon], &url[start + at..])
}

#[cfg(test)]
mod redaction {
    use super::redacted;

    #[test]
    fn passwords_are_redacted_and_nothing_else() {
        assert_eq!(redacted("redis://user:secret@host:6379/0"), "redis://user:***@host:6379/0");
        assert_eq!(redacted("rediss://:secret@host"), "rediss://:***@host");
        assert_eq!(redacted("redis://host:6379"), "redis://host:6379");
        assert_eq!(redacted("redis://user@host"), "redis://user@host");
        assert_eq!(redacted("not a url"), "not a url");
    }
}

/// Settings of a [`RedisBackend`] before it is built (no connection is made
/// by building either).
///
/// ```
/// use dogpile_backends::RedisBackend;
/// use std::time::Duration;
///
/// // Nothing listens on this port: building still works, calls will fail.
/// let backend = RedisBackend::builder("redis://127.0.0.1:1")
///     .key_prefix("app:")
///     .connect_timeout(Duration::from_millis(100))
///     .build()?;
/// # let _ = backend;
/// # Ok::<(), dogpile_core::backend::BackendError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisBuilder {
    target: Target,
    prefix: String,
    timeouts: Timeouts,
    tls: tls::TlsFiles,
}

/// The default time allowed to connect.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The default time allowed for one reply.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(1);

impl RedisBuilder {
    fn new(target: Target) -> Self {
        Self {
            target,
            prefix: String::new(),
            timeouts: Timeouts { connect: DEFAULT_CONNECT_TIMEOUT, io: DEFAULT_IO_TIMEOUT },
            tls: tls::TlsFiles::default(),
        }
    }

    /// Prepends `prefix` to every Redis key, so that several applications
    /// (or tests) can share one Redis without seeing each other's keys.
    /// It may not contain `{` or `}` (refused by [`build`](Self::build)).
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a new connection may take (default 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.connect = timeout;
        self
    }

    /// How long one reply may take (default 1 s).
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.io = timeout;
        self
    }

    /// Trusts the PEM CA certificates in `path` for a `rediss://` URL,
    /// instead of the system's roots (feature `redis-tls`; a single server
    /// only). The file is read by [`build`](Self::build).
    #[cfg(feature = "redis-tls")]
    pub fn tls_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.tls.ca = Some(path.into());
        self
    }

    /// Presents the PEM client certificate in `cert` with its PKCS#8 PEM
    /// key in `key` (`BEGIN PRIVATE KEY`), for servers started with
    /// `tls-auth-clients yes` (feature `redis-tls`; a single server only).
    /// The files are read by [`build`](Self::build).
    #[cfg(feature = "redis-tls")]
    pub fn tls_client_certificate(
        mut self,
        cert: impl Into<std::path::PathBuf>,
        key: impl Into<std::path::PathBuf>,
    ) -> Self {
        self.tls.client = Some((cert.into(), key.into()));
        self
    }

    /// Builds the backend: checks the URLs and reads the TLS files,
    /// connects to nothing.
    pub fn build(self) -> Result<RedisBackend, BackendError> {
        let bad_url = |e| connection::error("invalid Redis URL", e);
        if self.tls.is_set() && !matches!(self.target, Target::Url(_)) {
            return Err(BackendError::new(
                connection::NAME,
                "the TLS CA and client certificate settings apply to one server (a `rediss://` URL), \
                 not to Sentinel or Cluster deployments",
            ));
        }
        let topology = match &self.target {
            #[cfg(feature = "redis-tls")]
            Target::Url(url) if self.tls.is_set() => Topology::Single(self.tls.client(url)?),
            Target::Url(url) => Topology::Single(redis::Client::open(url.as_str()).map_err(bad_url)?),
            Target::Sentinel { sentinels, service, db } => {
                Topology::Sentinel(sentinel::Sentinels::new(sentinels, service.clone(), *db).map_err(bad_url)?)
            }
            Target::Cluster { nodes } => {
                let client = redis::cluster::ClusterClient::builder(nodes.iter().map(String::as_str))
                    .connection_timeout(self.timeouts.connect)
                    .response_timeout(self.timeouts.io)
                    .build()
                    .map_err(bad_url)?;
                Topology::Cluster(client)
            }
        };
        #[cfg(feature = "redis-async")]
        let aio = match &topology {
            Topology::Single(client) => Some(nonblocking::Aio::new(client.clone(), self.timeouts)),
            _ => None,
        };
        let inner = Inner {
            keys: Keys::new(self.prefix).map_err(|m| BackendError::new(connection::NAME, m))?,
            pool: Pool::new(topology, self.timeouts),
            #[cfg(feature = "redis-async")]
            aio,
        };
        Ok(RedisBackend { inner: Arc::new(inner) })
    }
}

impl RedisBackend {
    /// A backend on the server at `url` (`redis://[user:password@]host:port[/db]`,
    /// `rediss://` with the `redis-tls` feature, `unix:///path`), with the
    /// default settings and no key prefix. Connects to nothing yet.
    pub fn new(url: &str) -> Result<Self, BackendError> {
        Self::builder(url).build()
    }

    /// The settings of a backend on the server at `url`.
    pub fn builder(url: impl Into<String>) -> RedisBuilder {
        RedisBuilder::new(Target::Url(url.into()))
    }

    /// The settings of a backend on the master of `service`, found through
    /// the Sentinels at `sentinels` (`redis://host:port` each), using
    /// database `0`. Each new connection asks the Sentinels (in order) for
    /// the current master and checks its `ROLE`, so a failover is followed;
    /// both use the connect and I/O timeouts. When no Sentinel answers, the
    /// master found last is used if it is still a master.
    pub fn sentinel(sentinels: &[&str], service: impl Into<String>) -> RedisBuilder {
        RedisBuilder::new(Target::Sentinel {
            sentinels: sentinels.iter().map(|s| (*s).to_owned()).collect(),
            service: service.into(),
            db: 0,
        })
    }

    /// The settings of a backend on the Redis Cluster reached through any of
    /// `nodes` (`redis://host:port` each). A value and its lease share a
    /// hash slot; a multi-key read is split per slot by the client.
    pub fn cluster(nodes: &[&str]) -> RedisBuilder {
        RedisBuilder::new(Target::Cluster { nodes: nodes.iter().map(|s| (*s).to_owned()).collect() })
    }

    /// The prefix of every Redis key this backend writes.
    pub fn key_prefix(&self) -> &str {
        self.inner.keys.prefix()
    }
}

impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        connection::NAME
    }

    fn value_kind(&self) -> ValueKind {
        ValueKind::Bytes
    }

    fn blocking(&self) -> Option<&dyn BlockingBackend> {
        Some(self)
    }

    fn nonblocking(&self) -> Option<&dyn AsyncBackend> {
        #[cfg(feature = "redis-async")]
        if self.inner.aio.is_some() {
            return Some(self);
        }
        None
    }

    fn issues_leases(&self) -> bool {
        true
    }

    fn shares_invalidation(&self) -> bool {
        true
    }
}
