//! The servers of a pool: idle connections per server, key placement, and
//! servers marked dead after a failed connection, retried after a delay.
//!
//! A dead server leaves the placement (as libmemcached's `remove_failed`
//! does): its keys go to the ring of the live servers, so they miss there
//! while every other key stays where it was, and come back to it once a
//! retry connects again.

use super::conn::{Conn, ConnError, ConnSettings};
use super::hashing::{Distribution, Node, Ring};
use dogpile_core::backend::BackendError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

const NAME: &str = "memcached";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Settings shared by the servers of a pool.
#[derive(Debug, Clone)]
pub(crate) struct PoolSettings {
    pub(crate) retry_dead: Duration,
    pub(crate) max_idle: usize,
    /// How each connection is opened.
    pub(crate) conn: ConnSettings,
}

#[derive(Debug)]
struct Server {
    addr: String,
    /// The host of `addr`, checked against a TLS server's certificate.
    host: String,
    idle: Mutex<Vec<Conn>>,
    dead_until: Mutex<Option<Instant>>,
}

/// A pool of memcached servers.
#[derive(Debug)]
pub(crate) struct Pool {
    servers: Vec<Server>,
    nodes: Vec<Node>,
    distribution: Distribution,
    ring: Ring,
    /// How many servers are marked dead now (0: the full ring serves).
    dead: AtomicUsize,
    /// The ring of the live servers, for the mask it was built for.
    degraded: Mutex<Option<(Vec<bool>, Arc<Ring>)>>,
    settings: PoolSettings,
}

impl Pool {
    pub(crate) fn new(nodes: Vec<Node>, distribution: Distribution, settings: PoolSettings) -> Pool {
        let all: Vec<usize> = (0..nodes.len()).collect();
        let ring = Ring::new(distribution, &nodes, &all);
        let servers = nodes
            .iter()
            .map(|n| Server {
                addr: format!("{}:{}", n.host, n.port),
                host: n.host.clone(),
                idle: Mutex::new(Vec::new()),
                dead_until: Mutex::new(None),
            })
            .collect();
        Pool { servers, nodes, distribution, ring, dead: AtomicUsize::new(0), degraded: Mutex::new(None), settings }
    }

    pub(crate) fn max_value(&self) -> usize {
        self.settings.conn.max_value
    }

    /// The server for `key` now, leaving out servers marked dead whose
    /// retry time has not come.
    pub(crate) fn route(&self, key: &str) -> Result<usize, BackendError> {
        if self.dead.load(Ordering::Acquire) == 0 {
            return self.ring.server_of(key.as_bytes()).ok_or_else(|| self.all_down());
        }
        let now = Instant::now();
        let mask: Vec<bool> =
            self.servers.iter().map(|s| lock(&s.dead_until).is_none_or(|until| until <= now)).collect();
        if mask.iter().all(|&live| live) {
            return self.ring.server_of(key.as_bytes()).ok_or_else(|| self.all_down());
        }
        let ring = {
            let mut cached = lock(&self.degraded);
            match &*cached {
                Some((m, ring)) if *m == mask => ring.clone(),
                _ => {
                    let members: Vec<usize> = (0..mask.len()).filter(|&i| mask[i]).collect();
                    let ring = Arc::new(Ring::new(self.distribution, &self.nodes, &members));
                    *cached = Some((mask, ring.clone()));
                    ring
                }
            }
        };
        ring.server_of(key.as_bytes()).ok_or_else(|| self.all_down())
    }

    fn all_down(&self) -> BackendError {
        let addrs: Vec<&str> = self.servers.iter().map(|s| s.addr.as_str()).collect();
        BackendError::new(
            NAME,
            format!(
                "every memcached server is marked dead ({}); each is retried {:?} after it failed",
                addrs.join(", "),
                self.settings.retry_dead
            ),
        )
    }

    fn mark_dead(&self, idx: usize) {
        let server = &self.servers[idx];
        let mut until = lock(&server.dead_until);
        if until.is_none() {
            self.dead.fetch_add(1, Ordering::AcqRel);
        }
        *until = Some(Instant::now() + self.settings.retry_dead);
        lock(&server.idle).clear();
    }

    fn mark_alive(&self, idx: usize) {
        let mut until = lock(&self.servers[idx].dead_until);
        if until.take().is_some() {
            self.dead.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn connect(&self, idx: usize) -> Result<Conn, ConnError> {
        let server = &self.servers[idx];
        Conn::connect(&server.addr, &server.host, &self.settings.conn)
    }

    /// Runs `op` on a connection to server `idx`: an idle one first (a
    /// broken one is replaced by a fresh connection once), else a new one.
    /// A server that cannot be reached on a fresh connection is marked dead.
    pub(crate) fn on_server<T>(
        &self,
        idx: usize,
        op: &mut dyn FnMut(&mut Conn) -> Result<T, ConnError>,
    ) -> Result<T, Failure> {
        let pooled = lock(&self.servers[idx].idle).pop();
        if let Some(mut conn) = pooled {
            match op(&mut conn) {
                Ok(v) => {
                    self.put_back(idx, conn);
                    return Ok(v);
                }
                Err(ConnError::Server(m)) => {
                    self.put_back(idx, conn);
                    return Err(Failure::Refused(self.error(idx, &ConnError::Server(m))));
                }
                // A connection broken while idle (a server restart): try a
                // fresh one before judging the server.
                Err(_) => {}
            }
        }
        let mut conn = match self.connect(idx) {
            Ok(conn) => conn,
            Err(e @ (ConnError::Server(_) | ConnError::Tls(_))) => return Err(Failure::Refused(self.error(idx, &e))),
            Err(e) => {
                self.mark_dead(idx);
                return Err(Failure::Down(self.error(idx, &e)));
            }
        };
        self.mark_alive(idx);
        match op(&mut conn) {
            Ok(v) => {
                self.put_back(idx, conn);
                Ok(v)
            }
            Err(e @ ConnError::Server(_)) => {
                self.put_back(idx, conn);
                Err(Failure::Refused(self.error(idx, &e)))
            }
            Err(e @ (ConnError::Garbage(_) | ConnError::Tls(_))) => Err(Failure::Refused(self.error(idx, &e))),
            Err(e @ ConnError::Io(_)) => {
                self.mark_dead(idx);
                Err(Failure::Down(self.error(idx, &e)))
            }
        }
    }

    /// Runs `op` on the server of `route_key`; if that server turns out to
    /// be down, on the server the key moves to (each server tried once).
    pub(crate) fn run<T>(
        &self,
        route_key: &str,
        mut op: impl FnMut(&mut Conn) -> Result<T, ConnError>,
    ) -> Result<T, BackendError> {
        let mut last = None;
        for _ in 0..self.servers.len() {
            let idx = self.route(route_key)?;
            match self.on_server(idx, &mut op) {
                Ok(v) => return Ok(v),
                Err(Failure::Refused(e)) => return Err(e),
                Err(Failure::Down(e)) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| self.all_down()))
    }

    fn put_back(&self, idx: usize, conn: Conn) {
        let mut idle = lock(&self.servers[idx].idle);
        if idle.len() < self.settings.max_idle {
            idle.push(conn);
        }
    }

    fn error(&self, idx: usize, e: &ConnError) -> BackendError {
        BackendError::new(NAME, format!("memcached server {}: {e}", self.servers[idx].addr))
    }

    /// The address of server `idx`, as configured.
    pub(crate) fn addr(&self, idx: usize) -> &str {
        &self.servers[idx].addr
    }
}

/// Why a command failed on one server.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The server cannot be reached (now marked dead).
    Down(BackendError),
    /// The server answered with an error, or garbage.
    Refused(BackendError),
}
