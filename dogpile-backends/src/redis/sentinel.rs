//! Finding the master of a Sentinel-watched service, within the backend's
//! timeouts.
//!
//! The redis crate's blocking Sentinel client connects and queries without
//! any timeout, so one Sentinel that hangs (or a network that drops its
//! packets) would block every new connection without bound. Here each
//! Sentinel is asked `SENTINEL get-master-addr-by-name` over a connection
//! with the backend's connect and I/O timeouts, in the order given; the
//! address is confirmed with `ROLE` before it is used, so writes go only to
//! a server that calls itself the master (an old master cut off from the
//! Sentinels may still do so). Only when no Sentinel answers at all is the
//! master found last tried (confirmed by `ROLE` too): a hung Sentinel then
//! costs a timeout per new connection, not the cache. When a Sentinel named
//! a master that cannot be used, the call fails instead.

use super::connection::{Timeouts, error};
use dogpile_core::backend::BackendError;
use redis::IntoConnectionInfo;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The Sentinels of one service and what was learnt from them.
pub(crate) struct Sentinels {
    sentinels: Vec<redis::Client>,
    service: String,
    db: i64,
    /// One idle connection per Sentinel, taken out while in use (so no lock
    /// is held across network calls).
    idle: Mutex<Vec<Option<redis::Connection>>>,
    /// The address of the master found last.
    last_master: Mutex<Option<(String, u16)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn timed(con: &redis::Connection, timeouts: Timeouts) -> redis::RedisResult<()> {
    con.set_read_timeout(Some(timeouts.io))?;
    con.set_write_timeout(Some(timeouts.io))
}

impl Sentinels {
    /// Checks the Sentinel URLs; connects to nothing.
    pub(crate) fn new(urls: &[String], service: String, db: i64) -> redis::RedisResult<Self> {
        let sentinels = urls.iter().map(|u| redis::Client::open(u.as_str())).collect::<Result<Vec<_>, _>>()?;
        if sentinels.is_empty() {
            return Err(redis::RedisError::from((redis::ErrorKind::EmptySentinelList, "no Sentinel URL given")));
        }
        let idle = Mutex::new(sentinels.iter().map(|_| None).collect());
        Ok(Self { sentinels, service, db, idle, last_master: Mutex::new(None) })
    }

    /// A new connection to the current master, with `timeouts` set on it.
    pub(crate) fn connect_master(&self, timeouts: Timeouts) -> Result<redis::Connection, BackendError> {
        let mut last_error = None;
        // Whether a Sentinel named a master (which could then not be used):
        // the master found last is then not tried, it may be the one that
        // was demoted.
        let mut named = false;
        for i in 0..self.sentinels.len() {
            let found = self.ask(i, timeouts).and_then(|addr| {
                named = true;
                let con = self.confirmed_master(&addr, timeouts)?;
                Ok((addr, con))
            });
            match found {
                Ok((addr, con)) => {
                    *lock(&self.last_master) = Some(addr);
                    return Ok(con);
                }
                Err(e) => last_error = Some(e),
            }
        }
        let known = if named { None } else { lock(&self.last_master).clone() };
        let sentinel_error = last_error.map_or_else(String::new, |e| e.to_string());
        match known.map(|addr| self.confirmed_master(&addr, timeouts)) {
            Some(Ok(con)) => Ok(con),
            Some(Err(e)) => Err(error(
                &format!(
                    "no Sentinel of `{}` answered ({sentinel_error}), and the master found last could not be used",
                    self.service
                ),
                e,
            )),
            None => Err(BackendError::new(
                super::connection::NAME,
                format!(
                    "could not find the master of `{}` through the Sentinels (are they running and the URLs \
                     and service name right?): {sentinel_error}",
                    self.service
                ),
            )),
        }
    }

    /// The master's address as Sentinel `i` reports it.
    fn ask(&self, i: usize, timeouts: Timeouts) -> redis::RedisResult<(String, u16)> {
        let cached = lock(&self.idle)[i].take();
        let mut con = match cached {
            Some(con) => con,
            None => {
                let con = self.sentinels[i].get_connection_with_timeout(timeouts.connect)?;
                timed(&con, timeouts)?;
                con
            }
        };
        let mut query = redis::cmd("SENTINEL");
        query.arg("get-master-addr-by-name").arg(&self.service);
        // A connection that failed is dropped: the next lookup makes a new one.
        let addr: Option<(String, u16)> = query.query(&mut con)?;
        lock(&self.idle)[i] = Some(con);
        addr.ok_or_else(|| {
            redis::RedisError::from((
                redis::ErrorKind::MasterNameNotFoundBySentinel,
                "the Sentinel does not know the service",
                self.service.clone(),
            ))
        })
    }

    /// A connection to `addr`, once `ROLE` says that it is a master.
    fn confirmed_master(
        &self,
        (host, port): &(String, u16),
        timeouts: Timeouts,
    ) -> redis::RedisResult<redis::Connection> {
        let info = redis::ConnectionAddr::Tcp(host.clone(), *port).into_connection_info()?;
        let info = info.set_redis_settings(redis::RedisConnectionInfo::default().set_db(self.db));
        let mut con = redis::Client::open(info)?.get_connection_with_timeout(timeouts.connect)?;
        timed(&con, timeouts)?;
        match redis::cmd("ROLE").query(&mut con)? {
            redis::Role::Primary { .. } => Ok(con),
            _ => Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "the server the Sentinel named is not a master (a failover is under way)",
                format!("{host}:{port}"),
            ))),
        }
    }
}
