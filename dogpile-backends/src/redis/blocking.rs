//! The blocking interface: one command (or script, or pipeline) per call,
//! on a pooled connection.

use super::RedisBackend;
use super::connection::error;
use super::lease::RedisLease;
use super::scripts::{READ_AND_LEASE, STORE_MAX, millis, padded, token};
use dogpile_core::backend::{Acquire, BackendError, BlockingBackend, Leased, Value};
use std::time::Duration;

/// A stored value as Redis returns it.
pub(crate) fn value(bytes: Option<Vec<u8>>) -> Option<Value> {
    bytes.map(Value::Bytes)
}

/// The bytes of a value to store: only encoded envelopes reach a byte
/// backend.
pub(crate) fn bytes(value: &Value) -> Result<&[u8], BackendError> {
    match value {
        Value::Bytes(b) => Ok(b),
        Value::Object { .. } => {
            Err(BackendError::new(super::connection::NAME, "the Redis backend stores encoded values only"))
        }
    }
}

/// `SET key value [PX ttl]`.
pub(crate) fn set_cmd(key: &str, value: &[u8], ttl: Option<Duration>) -> redis::Cmd {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(value);
    if let Some(ttl) = ttl {
        cmd.arg("PX").arg(millis(ttl));
    }
    cmd
}

/// Parses a stored invalidation word.
pub(crate) fn word(stored: Option<String>) -> Result<Option<u64>, BackendError> {
    stored
        .map(|s| {
            s.parse::<u64>().map_err(|_| {
                BackendError::new(super::connection::NAME, format!("the stored invalidation is not a number: {s:?}"))
            })
        })
        .transpose()
}

impl BlockingBackend for RedisBackend {
    fn get(&self, key: &str) -> Result<Option<Value>, BackendError> {
        let key = self.inner.keys.value(key);
        self.inner.pool.with("could not read", true, |con| redis::cmd("GET").arg(&key).query(con.cmd())).map(value)
    }

    fn set(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<(), BackendError> {
        let cmd = set_cmd(&self.inner.keys.value(key), bytes(&value)?, ttl);
        self.inner.pool.with("could not write", true, |con| cmd.query::<()>(con.cmd()))
    }

    fn delete(&self, key: &str) -> Result<(), BackendError> {
        let key = self.inner.keys.value(key);
        self.inner.pool.with("could not delete", true, |con| redis::cmd("DEL").arg(&key).query::<()>(con.cmd()))
    }

    fn get_multi(&self, keys: &[&str]) -> Result<Vec<Option<Value>>, BackendError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("MGET");
        for k in keys {
            cmd.arg(self.inner.keys.value(k));
        }
        let found: Vec<Option<Vec<u8>>> = self.inner.pool.with("could not read", true, |con| cmd.query(con.cmd()))?;
        Ok(found.into_iter().map(value).collect())
    }

    fn set_multi(&self, items: Vec<(&str, Value)>, ttl: Option<Duration>) -> Result<(), BackendError> {
        if items.is_empty() {
            return Ok(());
        }
        let cmds = items
            .iter()
            .map(|(k, v)| Ok(set_cmd(&self.inner.keys.value(k), bytes(v)?, ttl)))
            .collect::<Result<Vec<_>, BackendError>>()?;
        self.inner.pool.with("could not write", true, |con| con.pipeline(&cmds))
    }

    fn delete_multi(&self, keys: &[&str]) -> Result<(), BackendError> {
        if keys.is_empty() {
            return Ok(());
        }
        // One DEL per key in a pipeline: a multi-key DEL would cross
        // Cluster slots.
        let cmds: Vec<redis::Cmd> =
            keys.iter().map(|k| redis::cmd("DEL").arg(self.inner.keys.value(k)).clone()).collect();
        self.inner.pool.with("could not delete", true, |con| con.pipeline(&cmds))
    }

    fn try_lease(&self, key: &str, ttl: Duration) -> Result<Acquire, BackendError> {
        let lease_key = self.inner.keys.lease(key);
        let token = token();
        let won: Option<String> = self.inner.pool.with("could not ask for a lease", false, |con| {
            redis::cmd("SET").arg(&lease_key).arg(&token).arg("NX").arg("PX").arg(millis(ttl)).query(con.cmd())
        })?;
        Ok(match won {
            Some(_) => Acquire::Won(Box::new(RedisLease { inner: self.inner.clone(), lease_key, token })),
            None => Acquire::Held,
        })
    }

    fn read_and_lease(&self, key: &str, ttl: Duration) -> Result<Leased, BackendError> {
        let (value_key, lease_key) = (self.inner.keys.value(key), self.inner.keys.lease(key));
        let token = token();
        let (won, stored): (i64, Option<Vec<u8>>) =
            self.inner.pool.with("could not read and ask for a lease", false, |con| {
                READ_AND_LEASE.key(&value_key).key(&lease_key).arg(&token).arg(millis(ttl)).invoke(con.cmd())
            })?;
        let acquire = if won == 1 {
            Acquire::Won(Box::new(RedisLease { inner: self.inner.clone(), lease_key, token }))
        } else {
            Acquire::Held
        };
        Ok(Leased { value: value(stored), acquire })
    }

    /// Subscribes to the lease's release channel (a connection of its own),
    /// checks that the lease is still held (it may have been released
    /// before the subscription), then waits for the release message, the
    /// lease's expiry or `max`. In a Cluster: `Ok(false)`, the region backs
    /// off instead.
    fn wait_released(&self, key: &str, max: Duration) -> Result<bool, BackendError> {
        let Some(mut con) = self.inner.pool.subscriber()? else {
            return Ok(false);
        };
        let lease_key = self.inner.keys.lease(key);
        let doing = "could not wait for a lease's release";
        let mut sub = con.as_pubsub();
        sub.subscribe(&lease_key).map_err(|e| error(doing, e))?;
        let pttl: i64 = self.inner.pool.with(doing, true, |con| redis::cmd("PTTL").arg(&lease_key).query(con.cmd()))?;
        if pttl == -2 {
            return Ok(true); // released already
        }
        // Until the release, or the lease's expiry (a holder that died
        // publishes nothing), or `max`.
        let expiry = u64::try_from(pttl).map_or(max, |ms| Duration::from_millis(ms + 1));
        sub.set_read_timeout(Some(expiry.min(max).max(Duration::from_millis(1)))).map_err(|e| error(doing, e))?;
        match sub.get_message() {
            Ok(_) => Ok(true),
            // Waited the whole time: the region reads and leases again.
            Err(e) if e.is_timeout() => Ok(true),
            Err(e) => Err(error(doing, e)),
        }
    }

    fn load_invalidation(&self, region: &str) -> Result<Option<u64>, BackendError> {
        let key = self.inner.keys.invalidation(region);
        word(
            self.inner
                .pool
                .with("could not read the invalidation", true, |con| redis::cmd("GET").arg(&key).query(con.cmd()))?,
        )
    }

    fn store_invalidation(&self, region: &str, word: u64) -> Result<(), BackendError> {
        let key = self.inner.keys.invalidation(region);
        let word = padded(word);
        self.inner.pool.with("could not write the invalidation", true, |con| {
            STORE_MAX.key(&key).arg(&word).invoke::<()>(con.cmd())
        })
    }
}
