//! Blocking connections: where they come from (one server, a Sentinel-
//! monitored master, a Cluster) and a small pool of idle ones.
//!
//! Nothing connects until the first call, so a region can be built while
//! Redis is down; a connection that fails is dropped and the next call makes
//! a new one, so the backend recovers by itself when Redis is back.

use super::sentinel::Sentinels;
use dogpile_core::backend::BackendError;
use redis::ConnectionLike;
use redis::cluster::ClusterClient;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub(crate) const NAME: &str = "redis";

/// How many idle connections are kept for reuse.
const MAX_IDLE: usize = 64;

/// A connection of any topology.
pub(crate) enum Conn {
    /// To one server (single or the Sentinel's master).
    Node(redis::Connection),
    /// To a Cluster (one connection per node, routed by slot).
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl Conn {
    /// The connection for single commands (a Cluster routes each by its
    /// keys' slot and splits a multi-key `MGET` per slot).
    pub(crate) fn cmd(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Conn::Node(c) => c,
            Conn::Cluster(c) => &mut **c,
        }
    }

    /// Sends `cmds` as one pipeline, replies ignored; in a Cluster, one
    /// pipeline per node (the client groups the commands by slot owner).
    pub(crate) fn pipeline(&mut self, cmds: &[redis::Cmd]) -> redis::RedisResult<()> {
        match self {
            Conn::Node(c) => {
                let mut pipe = redis::pipe();
                for cmd in cmds {
                    pipe.add_command(cmd.clone()).ignore();
                }
                pipe.query::<()>(c)
            }
            Conn::Cluster(c) => {
                let mut pipe = redis::cluster::cluster_pipe();
                for cmd in cmds {
                    pipe.add_command(cmd.clone()).ignore();
                }
                pipe.query::<()>(c)
            }
        }
    }
}

/// Where connections come from.
pub(crate) enum Topology {
    /// One server (`redis://host:port/db`).
    Single(redis::Client),
    /// The master of a service watched by Sentinels, resolved on each new
    /// connection (so a failover is followed).
    Sentinel(Sentinels),
    /// A Redis Cluster: the client routes each command to its slot's node.
    Cluster(ClusterClient),
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Topology::Single(_) => "Single",
            Topology::Sentinel(_) => "Sentinel",
            Topology::Cluster(_) => "Cluster",
        })
    }
}

/// Connection timeouts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) connect: Duration,
    pub(crate) io: Duration,
}

impl Topology {
    /// What a failure to connect may be down to, for its error.
    fn connect_hint(&self) -> &'static str {
        match self {
            Topology::Single(client) if is_tls(client) => CONNECT_TLS,
            _ => CONNECT,
        }
    }
}

/// Whether `client` speaks TLS (a `rediss://` URL).
pub(crate) fn is_tls(client: &redis::Client) -> bool {
    matches!(client.get_connection_info().addr(), redis::ConnectionAddr::TcpTls { .. })
}

const CONNECT: &str = "could not connect (is Redis running and the URL right?)";

/// The redis client reports certificate problems as I/O errors of the
/// connection ("SSL Handshake error"): say what to check.
pub(crate) const CONNECT_TLS: &str = "could not connect over TLS (is Redis running and the URL right, and is the \
     server's certificate signed by a trusted CA, `tls_ca_file` or the system's, for the URL's host?)";

/// The blocking pool: idle connections, and how to make more.
pub(crate) struct Pool {
    topology: Topology,
    timeouts: Timeouts,
    idle: Mutex<Vec<Conn>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Wraps a client error with what was being done.
pub(crate) fn error(doing: &str, e: redis::RedisError) -> BackendError {
    BackendError::with_source(NAME, format!("{doing}: {e}"), e)
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("topology", &self.topology)
            .field("timeouts", &self.timeouts)
            .field("idle", &lock(&self.idle).len())
            .finish()
    }
}

impl Pool {
    pub(crate) fn new(topology: Topology, timeouts: Timeouts) -> Self {
        Self { topology, timeouts, idle: Mutex::new(Vec::new()) }
    }

    fn connect(&self) -> Result<Conn, BackendError> {
        let Timeouts { connect, io } = self.timeouts;
        let doing = self.topology.connect_hint();
        match &self.topology {
            Topology::Single(client) => {
                let con = client.get_connection_with_timeout(connect).map_err(|e| error(doing, e))?;
                con.set_read_timeout(Some(io)).map_err(|e| error(doing, e))?;
                con.set_write_timeout(Some(io)).map_err(|e| error(doing, e))?;
                Ok(Conn::Node(con))
            }
            Topology::Sentinel(sentinels) => sentinels.connect_master(self.timeouts).map(Conn::Node),
            Topology::Cluster(client) => {
                let con = client.get_connection().map_err(|e| error(doing, e))?;
                con.set_read_timeout(Some(io)).map_err(|e| error(doing, e))?;
                con.set_write_timeout(Some(io)).map_err(|e| error(doing, e))?;
                Ok(Conn::Cluster(Box::new(con)))
            }
        }
    }

    /// A new connection to subscribe on (not pooled: it ends subscribed);
    /// `None` in a Cluster, where the backend waits without a wake-up.
    pub(crate) fn subscriber(&self) -> Result<Option<redis::Connection>, BackendError> {
        if matches!(self.topology, Topology::Cluster(_)) {
            return Ok(None);
        }
        match self.connect()? {
            Conn::Node(con) => Ok(Some(con)),
            Conn::Cluster(_) => Ok(None),
        }
    }

    /// Runs `f` on a connection. A connection that failed is dropped (the
    /// next call makes a fresh one). With `retry`, an idle connection that
    /// fails on I/O (the server restarted since it was last used) is
    /// replaced once: only for calls that may safely run twice.
    pub(crate) fn with<T>(
        &self,
        doing: &str,
        retry: bool,
        f: impl Fn(&mut Conn) -> redis::RedisResult<T>,
    ) -> Result<T, BackendError> {
        let pooled = lock(&self.idle).pop();
        let reused = pooled.is_some();
        let mut con = match pooled {
            Some(c) => c,
            None => self.connect()?,
        };
        let result = match f(&mut con) {
            Err(e) if retry && reused && (e.is_io_error() || e.is_connection_dropped()) => {
                con = self.connect()?;
                f(&mut con)
            }
            other => other,
        };
        match result {
            Ok(v) => {
                let mut idle = lock(&self.idle);
                if idle.len() < MAX_IDLE {
                    idle.push(con);
                }
                Ok(v)
            }
            Err(e) => Err(error(doing, e)),
        }
    }
}
