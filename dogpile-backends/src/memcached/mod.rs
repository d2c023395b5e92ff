//! The memcached backend: one server or a pool spread by consistent hashing,
//! the creation lock as a lease item owned through its CAS, and each
//! region's invalidation kept in one small item.
//!
//! It speaks memcached's meta protocol (memcached 1.6 and later) itself,
//! over blocking TCP connections kept per server, or the binary protocol
//! (for SASL authentication); see [`Protocol`]. Async regions reach it
//! through tokio's blocking pool (the `tokio` feature of `dogpile`).
//!
//! Layout on the servers, under the configured namespace `ns`:
//!
//! | item | holds |
//! |---|---|
//! | `<ns>v:<key>` | the value's envelope |
//! | `<ns>l:<key>` | the creation lease of `<key>`: an owner token, with an expiry; on the server of the value |
//! | `<ns>i:<region>` | the region's last invalidation (a decimal word) |
//!
//! Keys longer than 248 bytes less the namespace, or with spaces or control
//! characters, are mapped by the region to a stable digest before they
//! reach the backend (see [`KeyLimits`]).
//!
//! Why not the meta protocol's own vivify-on-miss (`mg <key> N<ttl>`, win
//! `W` / lose `Z`)? The region judges expiry from the creation time inside
//! the envelope, not from the item's TTL, so an expired value is still a
//! live item: `N` would never grant its regeneration. A lease item next to
//! the value, read in the same round trip (`ms <lease> ME` and `mg <value>`
//! pipelined on one connection), gives one mechanism for both cases.

mod binary;
mod conn;
mod hashing;
mod lease;
mod meta;
mod pool;
mod sasl;
mod settings;
mod stream;
mod tls;

pub use conn::Protocol;
pub use hashing::Distribution;
pub use settings::{DistributionName, MemcachedConfig};

use conn::{Conn, Reply, SetMode, exptime, lease_exptime};
use dogpile_core::backend::{Acquire, Backend, BackendError, BlockingBackend, KeyLimits, Leased, Value, ValueKind};
use hashing::Node;
use lease::{MemcachedLease, new_token};
use pool::{Failure, Pool, PoolSettings};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

const NAME: &str = "memcached";
/// The bytes the backend adds to a key besides the namespace (`v:`, `l:`).
const TAG_LEN: usize = 2;
/// memcached's longest key.
const MAX_KEY: usize = 250;

/// A memcached backend: one server, or a pool of them.
///
/// ```no_run
/// use dogpile_backends::MemcachedBackend;
/// use dogpile_core::Region;
///
/// let backend = MemcachedBackend::new(&["127.0.0.1:11211", "127.0.0.1:11212"])?;
/// let region = Region::builder("users").backend(backend).build();
/// let name: String = region.get_or_create("user:7", || "Ada".to_string())?;
/// # let _ = name;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Build one with settings through [`MemcachedConfig`].
pub struct MemcachedBackend {
    pool: Arc<Pool>,
    namespace: String,
    limits: KeyLimits,
}

impl fmt::Debug for MemcachedBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemcachedBackend").field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

impl MemcachedBackend {
    /// A backend on `servers` (`host:port`, or `host:port:weight`) with
    /// the default settings of [`MemcachedConfig`]: ketama placement, as
    /// libmemcached places keys. No connection is made until first use.
    pub fn new(servers: &[&str]) -> Result<Self, BackendError> {
        let config = MemcachedConfig { servers: servers.iter().map(|s| s.to_string()).collect(), ..Default::default() };
        config.backend()
    }

    fn from_parts(nodes: Vec<Node>, distribution: Distribution, namespace: String, settings: PoolSettings) -> Self {
        let limits = KeyLimits::max_len(MAX_KEY - namespace.len() - TAG_LEN).no_space_or_control();
        MemcachedBackend { pool: Arc::new(Pool::new(nodes, distribution, settings)), namespace, limits }
    }

    fn item(&self, tag: &str, key: &str) -> String {
        let mut s = String::with_capacity(self.namespace.len() + TAG_LEN + key.len());
        s.push_str(&self.namespace);
        s.push_str(tag);
        s.push_str(key);
        s
    }

    fn value_key(&self, key: &str) -> String {
        self.item("v:", key)
    }

    fn lease_key(&self, key: &str) -> String {
        self.item("l:", key)
    }

    /// The address (`host:port`) of the server that holds `key` now (the
    /// key as the region hands it to the backend).
    pub fn server_of(&self, key: &str) -> Result<String, BackendError> {
        let idx = self.pool.route(&self.value_key(key))?;
        Ok(self.pool.addr(idx).to_owned())
    }

    /// The address of the server that holds the memcached item named
    /// `item` now, exactly as libmemcached would place it (no namespace or
    /// tag added): for comparing placement with other clients of a pool.
    pub fn server_of_item(&self, item: &str) -> Result<String, BackendError> {
        let idx = self.pool.route(item)?;
        Ok(self.pool.addr(idx).to_owned())
    }

    fn check_size(&self, key: &str, len: usize) -> Result<(), BackendError> {
        let max = self.pool.max_value();
        if len > max {
            return Err(BackendError::new(
                NAME,
                format!(
                    "the value of {key:?} is {len} bytes, over the largest item of {max} bytes \
                     (`item_size_max`; memcached's own limit is set with `memcached -I`, 1 MiB by default)"
                ),
            ));
        }
        Ok(())
    }

    /// Runs one pipelined batch per server for `keys` (already prefixed),
    /// falling back to one command at a time (with rerouting) for the keys
    /// of a server that turns out to be down.
    fn batched<T: Clone>(
        &self,
        items: &[String],
        push: &dyn Fn(&mut Conn, usize),
        read: &dyn Fn(Reply) -> Result<T, BackendError>,
    ) -> Result<Vec<T>, BackendError> {
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            groups.entry(self.pool.route(item)?).or_default().push(i);
        }
        let mut out: Vec<Option<T>> = vec![None; items.len()];
        for (server, idxs) in groups {
            let result = self.pool.on_server(server, &mut |c: &mut Conn| {
                idxs.iter().for_each(|&i| push(c, i));
                c.round_trip(idxs.len())
            });
            match result {
                Ok(replies) => {
                    for (&i, reply) in idxs.iter().zip(replies) {
                        out[i] = Some(read(reply)?);
                    }
                }
                Err(Failure::Refused(e)) => return Err(e),
                Err(Failure::Down(_)) => {
                    for &i in &idxs {
                        let reply = self.pool.run(&items[i], |c| {
                            push(c, i);
                            c.round_trip(1)
                        })?;
                        out[i] = Some(read(one(reply)?)?);
                    }
                }
            }
        }
        Ok(out.into_iter().map(|v| v.expect("every key is answered")).collect())
    }
}

fn one(mut replies: Vec<Reply>) -> Result<Reply, BackendError> {
    replies.pop().ok_or_else(|| BackendError::new(NAME, "no reply"))
}

fn unexpected(reply: &Reply, what: &str) -> BackendError {
    BackendError::new(NAME, format!("unexpected reply to {what}: {reply:?}"))
}

fn value_of(reply: Reply) -> Result<Option<Value>, BackendError> {
    match reply {
        Reply::Value(data) => Ok(Some(Value::Bytes(data))),
        Reply::Miss => Ok(None),
        other => Err(unexpected(&other, "mg")),
    }
}

fn stored(reply: Reply) -> Result<(), BackendError> {
    match reply {
        Reply::Done { .. } => Ok(()),
        other => Err(unexpected(&other, "ms")),
    }
}

fn deleted(reply: Reply) -> Result<(), BackendError> {
    match reply {
        Reply::Done { .. } | Reply::NotFound => Ok(()),
        other => Err(unexpected(&other, "md")),
    }
}

fn bytes(value: &Value) -> Result<&[u8], BackendError> {
    match value {
        Value::Bytes(b) => Ok(b),
        Value::Object { .. } => Err(BackendError::new(NAME, "memcached stores encoded values, not objects")),
    }
}

impl Backend for MemcachedBackend {
    fn name(&self) -> &'static str {
        NAME
    }
    fn value_kind(&self) -> ValueKind {
        ValueKind::Bytes
    }
    fn blocking(&self) -> Option<&dyn BlockingBackend> {
        Some(self)
    }
    fn issues_leases(&self) -> bool {
        true
    }
    fn shares_invalidation(&self) -> bool {
        true
    }
    fn key_limits(&self) -> Option<KeyLimits> {
        Some(self.limits)
    }
}

impl BlockingBackend for MemcachedBackend {
    fn get(&self, key: &str) -> Result<Option<Value>, BackendError> {
        let item = self.value_key(key);
        let reply = self.pool.run(&item, |c| {
            c.push_get(&item);
            c.round_trip(1)
        })?;
        value_of(one(reply)?)
    }

    fn set(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<(), BackendError> {
        let data = bytes(&value)?;
        self.check_size(key, data.len())?;
        let item = self.value_key(key);
        let t = exptime(ttl);
        let reply = self.pool.run(&item, |c| {
            c.push_set(&item, data, t, SetMode::Set);
            c.round_trip(1)
        })?;
        stored(one(reply)?)
    }

    fn delete(&self, key: &str) -> Result<(), BackendError> {
        let item = self.value_key(key);
        let reply = self.pool.run(&item, |c| {
            c.push_delete(&item, None);
            c.round_trip(1)
        })?;
        deleted(one(reply)?)
    }

    fn get_multi(&self, keys: &[&str]) -> Result<Vec<Option<Value>>, BackendError> {
        let items: Vec<String> = keys.iter().map(|k| self.value_key(k)).collect();
        self.batched(&items, &|c, i| c.push_get(&items[i]), &value_of)
    }

    fn set_multi(&self, entries: Vec<(&str, Value)>, ttl: Option<Duration>) -> Result<(), BackendError> {
        for (k, v) in &entries {
            self.check_size(k, bytes(v)?.len())?;
        }
        let items: Vec<String> = entries.iter().map(|(k, _)| self.value_key(k)).collect();
        let t = exptime(ttl);
        let push = |c: &mut Conn, i: usize| {
            if let Value::Bytes(b) = &entries[i].1 {
                c.push_set(&items[i], b, t, SetMode::Set);
            }
        };
        self.batched(&items, &push, &stored).map(drop)
    }

    fn delete_multi(&self, keys: &[&str]) -> Result<(), BackendError> {
        let items: Vec<String> = keys.iter().map(|k| self.value_key(k)).collect();
        self.batched(&items, &|c, i| c.push_delete(&items[i], None), &deleted).map(drop)
    }

    fn try_lease(&self, key: &str, ttl: Duration) -> Result<Acquire, BackendError> {
        Ok(self.read_and_lease_inner(key, ttl, false)?.acquire)
    }

    fn read_and_lease(&self, key: &str, ttl: Duration) -> Result<Leased, BackendError> {
        self.read_and_lease_inner(key, ttl, true)
    }

    fn load_invalidation(&self, region: &str) -> Result<Option<u64>, BackendError> {
        let item = self.item("i:", &self.limits.apply(region));
        let reply = self.pool.run(&item, |c| {
            c.push_get(&item);
            c.round_trip(1)
        })?;
        Ok(match one(reply)? {
            Reply::Value(data) => std::str::from_utf8(&data).ok().and_then(|s| s.parse().ok()),
            _ => None,
        })
    }

    fn store_invalidation(&self, region: &str, word: u64) -> Result<(), BackendError> {
        let item = self.item("i:", &self.limits.apply(region));
        let data = word.to_string();
        let reply = self.pool.run(&item, |c| {
            c.push_set(&item, data.as_bytes(), 0, SetMode::Set);
            c.round_trip(1)
        })?;
        stored(one(reply)?)
    }
}

impl MemcachedBackend {
    /// `ms <lease> ME c` (add, returning the CAS), then, when `read`,
    /// `mg <value> v`, pipelined: one round trip, the read after the lease
    /// is decided.
    fn read_and_lease_inner(&self, key: &str, ttl: Duration, read: bool) -> Result<Leased, BackendError> {
        let route = self.value_key(key);
        let lease_key = self.lease_key(key);
        let token = new_token();
        let t = lease_exptime(ttl);
        let replies = self.pool.run(&route, |c| {
            c.push_set(&lease_key, token.as_bytes(), t, SetMode::Add);
            if read {
                c.push_get(&route);
            }
            c.round_trip(if read { 2 } else { 1 })
        })?;
        let mut replies = replies.into_iter();
        let won = match replies.next() {
            Some(Reply::Done { cas }) => Some(MemcachedLease {
                pool: self.pool.clone(),
                route,
                key: lease_key,
                token,
                cas: AtomicU64::new(cas.unwrap_or(0)),
            }),
            Some(Reply::NotStored) => None,
            other => return Err(BackendError::new(NAME, format!("unexpected reply to a lease: {other:?}"))),
        };
        let value = match replies.next().map(value_of) {
            Some(Ok(value)) => value,
            Some(Err(e)) => {
                if let Some(lease) = won {
                    let _ = lease.release_now();
                }
                return Err(e);
            }
            None => None,
        };
        let acquire = match won {
            Some(lease) => Acquire::Won(Box::new(lease)),
            None => Acquire::Held,
        };
        Ok(Leased { value, acquire })
    }
}
