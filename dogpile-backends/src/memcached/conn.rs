//! A connection to one server in either protocol: the meta protocol (the
//! default) or the binary protocol (for SASL). Both offer the same few
//! commands, pushed and then sent in one round trip, and answer with the
//! same [`Reply`], so the backend and its leases do not care which one is
//! underneath.

use super::binary::BinaryConn;
use super::meta::MetaConn;
use super::tls::Tls;
use super::{sasl, stream};
use std::fmt;
use std::io;
use std::time::Duration;

/// The protocol a backend speaks, by its name in configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Protocol {
    /// memcached's meta protocol (`mg`, `ms`, `md`; memcached 1.6 and
    /// later): the default.
    #[default]
    Meta,
    /// memcached's binary protocol (deprecated by memcached, still served by
    /// 1.6): needed for SASL authentication (`memcached -S`).
    Binary,
}

/// How a connection authenticates once connected.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Auth {
    /// Not at all.
    None,
    /// The meta (text) protocol's `memcached -Y <authfile>`: (user, password).
    Text(String, String),
    /// SASL PLAIN over the binary protocol (`memcached -S`): (user, password).
    Sasl(String, String),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password: a pool's Debug reaches here through a lease.
        match self {
            Auth::None => f.write_str("None"),
            Auth::Text(user, _) => write!(f, "Text({user:?}, <redacted>)"),
            Auth::Sasl(user, _) => write!(f, "Sasl({user:?}, <redacted>)"),
        }
    }
}

/// What a connection needs to open and authenticate.
#[derive(Debug, Clone)]
pub(crate) struct ConnSettings {
    pub(crate) protocol: Protocol,
    pub(crate) connect: Duration,
    pub(crate) io: Duration,
    /// The largest value read: anything larger is garbage.
    pub(crate) max_value: usize,
    pub(crate) auth: Auth,
    /// TLS, when configured.
    pub(crate) tls: Option<Tls>,
}

/// One reply to a command.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// A hit, with its value.
    Value(Vec<u8>),
    /// Success; the item's new CAS when the command returns it.
    Done { cas: Option<u64> },
    /// A miss.
    Miss,
    /// Not stored (an add on an existing key).
    NotStored,
    /// The compare-and-swap value did not match.
    Exists,
    /// Not found (a delete or a compare-and-swap on a missing key).
    NotFound,
}

/// How a value is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetMode {
    /// Unconditionally; the reply carries no CAS.
    Set,
    /// Only if the key is absent ([`Reply::NotStored`] otherwise); the
    /// reply carries the new item's CAS.
    Add,
    /// Only if the item's CAS is this one ([`Reply::Exists`] or
    /// [`Reply::NotFound`] otherwise); the reply carries the new CAS.
    Cas(u64),
}

/// What went wrong on a connection.
#[derive(Debug)]
pub(crate) enum ConnError {
    /// The connection failed (refused, reset, closed, timed out).
    Io(io::Error),
    /// The server sent something that is not its protocol.
    Garbage(String),
    /// The server refused a command or the connection's set-up (an error
    /// reply, a failed authentication); the same answer comes every time,
    /// so the server is not marked dead.
    Server(String),
    /// The TLS handshake failed (a certificate not trusted or not for this
    /// host, a server without TLS): not a dead server either.
    #[cfg_attr(not(feature = "memcached-tls"), allow(dead_code))]
    Tls(String),
}

impl From<io::Error> for ConnError {
    fn from(e: io::Error) -> Self {
        ConnError::Io(e)
    }
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::Io(e) => write!(f, "connection failed: {e}"),
            ConnError::Garbage(m) => write!(f, "not a memcached reply: {m}"),
            ConnError::Server(m) => write!(f, "the server refused the command: {m}"),
            ConnError::Tls(m) => f.write_str(m),
        }
    }
}

/// A connection to one server.
#[derive(Debug)]
pub(crate) enum Conn {
    Meta(MetaConn),
    Binary(BinaryConn),
}

impl Conn {
    /// Connects to `addr` (whose host name is `host`, for TLS) and
    /// authenticates as `settings` say.
    pub(crate) fn connect(addr: &str, host: &str, settings: &ConnSettings) -> Result<Conn, ConnError> {
        let stream = stream::connect(addr, host, settings.connect, settings.io, settings.tls.as_ref())?;
        match settings.protocol {
            Protocol::Meta => {
                let mut conn = MetaConn::new(stream, settings.max_value);
                if let Auth::Text(user, password) = &settings.auth {
                    conn.authenticate(user, password)?;
                }
                Ok(Conn::Meta(conn))
            }
            Protocol::Binary => {
                let mut conn = BinaryConn::new(stream, settings.max_value);
                if let Auth::Sasl(user, password) = &settings.auth {
                    sasl::authenticate(&mut conn, user, password)?;
                }
                Ok(Conn::Binary(conn))
            }
        }
    }

    /// Reads a value.
    pub(crate) fn push_get(&mut self, key: &str) {
        match self {
            Conn::Meta(c) => c.push_get(key),
            Conn::Binary(c) => c.push_get(key),
        }
    }

    /// Stores a value with an expiry time (see [`exptime`]).
    pub(crate) fn push_set(&mut self, key: &str, data: &[u8], exptime: u32, mode: SetMode) {
        match self {
            Conn::Meta(c) => c.push_set(key, data, exptime, mode),
            Conn::Binary(c) => c.push_set(key, data, exptime, mode),
        }
    }

    /// Deletes a key; with `cas`, only if the item's CAS is that one.
    pub(crate) fn push_delete(&mut self, key: &str, cas: Option<u64>) {
        match self {
            Conn::Meta(c) => c.push_delete(key, cas),
            Conn::Binary(c) => c.push_delete(key, cas),
        }
    }

    /// Sends the pushed commands and reads one reply for each of the `n`.
    pub(crate) fn round_trip(&mut self, n: usize) -> Result<Vec<Reply>, ConnError> {
        match self {
            Conn::Meta(c) => c.round_trip(n),
            Conn::Binary(c) => c.round_trip(n),
        }
    }
}

/// The expiry time of a command: seconds from now, 0 for never. memcached
/// reads more than 30 days as a Unix time, so longer times are sent as one.
pub(crate) fn exptime(ttl: Option<Duration>) -> u32 {
    const THIRTY_DAYS: u64 = 30 * 24 * 3600;
    let Some(ttl) = ttl else { return 0 };
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    let secs = secs.max(1);
    if secs <= THIRTY_DAYS {
        return secs as u32;
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    u32::try_from(now + secs).unwrap_or(u32::MAX)
}

/// The expiry time of a lease: one second more than [`exptime`], because
/// memcached's clock ticks once a second and an item set to live one second
/// expires at the next tick, which may come at once: a lease extended every
/// third of its time to live must outlive the tick.
pub(crate) fn lease_exptime(ttl: Duration) -> u32 {
    exptime(Some(ttl)).saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_times_round_up_to_seconds_and_turn_absolute_past_thirty_days() {
        assert_eq!(exptime(None), 0);
        assert_eq!(exptime(Some(Duration::from_millis(1))), 1);
        assert_eq!(exptime(Some(Duration::from_millis(1500))), 2);
        assert_eq!(exptime(Some(Duration::from_secs(60))), 60);
        assert_eq!(lease_exptime(Duration::from_millis(300)), 2);
        assert!(exptime(Some(Duration::from_secs(31 * 24 * 3600))) > 1_700_000_000);
    }

    #[test]
    fn debug_of_auth_leaves_the_password_out() {
        let shown = format!("{:?}", Auth::Sasl("app".into(), "s3cret".into()));
        assert!(shown.contains("app") && !shown.contains("s3cret"), "{shown}");
        let shown = format!("{:?}", Auth::Text("app".into(), "s3cret".into()));
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
