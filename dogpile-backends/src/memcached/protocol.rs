//! memcached's meta protocol (`mg`, `ms`, `md`), the few commands the
//! backend needs, over one TCP connection. Requests may be pipelined: the
//! server answers them in order.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The longest reply line accepted (flags included): anything longer is
/// garbage, not memcached.
const MAX_LINE: usize = 8 * 1024;

/// One reply to a meta command.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `VA <size> <flags>`: a hit, with its value.
    Value(Vec<u8>),
    /// `HD <flags>`: success; the CAS when `c` was asked.
    Done { cas: Option<u64> },
    /// `EN`: a miss.
    Miss,
    /// `NS`: not stored (an `add` on an existing key).
    NotStored,
    /// `EX`: the compare-and-swap value did not match.
    Exists,
    /// `NF`: not found.
    NotFound,
}

/// What went wrong on a connection.
#[derive(Debug)]
pub(crate) enum ConnError {
    /// The connection failed (refused, reset, closed, timed out).
    Io(io::Error),
    /// The server sent something that is not the meta protocol.
    Garbage(String),
    /// `CLIENT_ERROR`, `SERVER_ERROR` or `ERROR` (the connection stays in
    /// step with the server).
    Server(String),
}

impl From<io::Error> for ConnError {
    fn from(e: io::Error) -> Self {
        ConnError::Io(e)
    }
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Io(e) => write!(f, "connection failed: {e}"),
            ConnError::Garbage(m) => write!(f, "not a memcached reply: {m}"),
            ConnError::Server(m) => write!(f, "the server refused the command: {m}"),
        }
    }
}

/// A connection to one server.
#[derive(Debug)]
pub(crate) struct Conn {
    reader: BufReader<TcpStream>,
    out: Vec<u8>,
    line: Vec<u8>,
    max_value: usize,
}

impl Conn {
    /// Connects with a timeout for the connection and for every read and
    /// write, and authenticates when `auth` (user, password) is given.
    pub(crate) fn connect(
        addr: &str,
        connect: Duration,
        io: Duration,
        max_value: usize,
        auth: Option<&(String, String)>,
    ) -> Result<Conn, ConnError> {
        let mut conn = Conn::open(addr, connect, io, max_value)?;
        if let Some((user, password)) = auth {
            conn.authenticate(user, password)?;
        }
        Ok(conn)
    }

    /// memcached's text-protocol authentication (`memcached -Y <authfile>`):
    /// a first `set` whose data is `<user> <password>`, answered `STORED`.
    fn authenticate(&mut self, user: &str, password: &str) -> Result<(), ConnError> {
        let data = format!("{user} {password}");
        let request = format!("set auth 0 0 {}\r\n{data}\r\n", data.len());
        self.reader.get_mut().write_all(request.as_bytes())?;
        self.line.clear();
        (&mut self.reader).take(MAX_LINE as u64).read_until(b'\n', &mut self.line)?;
        if self.line == b"STORED\r\n" {
            return Ok(());
        }
        let reply = String::from_utf8_lossy(&self.line).trim_end().to_owned();
        // A refusal, not a dead server: the same answer comes every time.
        Err(ConnError::Server(format!(
            "authentication as {user:?} refused ({reply}); check `username`/`password` against the server's -Y file"
        )))
    }

    fn open(addr: &str, connect: Duration, io: Duration, max_value: usize) -> io::Result<Conn> {
        let mut last = None;
        let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
        for a in addrs {
            match TcpStream::connect_timeout(&a, connect) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_read_timeout(Some(io))?;
                    stream.set_write_timeout(Some(io))?;
                    return Ok(Conn {
                        reader: BufReader::with_capacity(16 * 1024, stream),
                        out: Vec::with_capacity(512),
                        line: Vec::with_capacity(128),
                        max_value,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{addr}: no address"))))
    }

    /// `mg <key> v`: read a value.
    pub(crate) fn push_get(&mut self, key: &str) {
        self.out.extend_from_slice(b"mg ");
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b" v\r\n");
    }

    /// `ms <key> <len> T<exptime> [flags]`: store a value (`flags` such as
    /// `ME c` for an add that returns the CAS, `C<cas> c` for a
    /// compare-and-swap).
    pub(crate) fn push_set(&mut self, key: &str, data: &[u8], exptime: u32, flags: &str) {
        let mut head = String::with_capacity(key.len() + 32);
        let _ = write!(head, "ms {key} {} T{exptime}", data.len());
        if !flags.is_empty() {
            head.push(' ');
            head.push_str(flags);
        }
        head.push_str("\r\n");
        self.out.extend_from_slice(head.as_bytes());
        self.out.extend_from_slice(data);
        self.out.extend_from_slice(b"\r\n");
    }

    /// `md <key> [flags]`: delete (`C<cas>`: only if the CAS matches).
    pub(crate) fn push_delete(&mut self, key: &str, flags: &str) {
        self.out.extend_from_slice(b"md ");
        self.out.extend_from_slice(key.as_bytes());
        if !flags.is_empty() {
            self.out.push(b' ');
            self.out.extend_from_slice(flags.as_bytes());
        }
        self.out.extend_from_slice(b"\r\n");
    }

    /// Sends the pushed commands and reads one reply for each of `n`.
    pub(crate) fn round_trip(&mut self, n: usize) -> Result<Vec<Reply>, ConnError> {
        let sent = self.reader.get_mut().write_all(&self.out);
        self.out.clear();
        sent?;
        let mut replies = Vec::with_capacity(n);
        let mut first_error = None;
        for _ in 0..n {
            match self.read_reply() {
                Ok(r) => replies.push(r),
                // Keep reading the other replies: the connection stays in step.
                Err(ConnError::Server(m)) => {
                    first_error.get_or_insert(ConnError::Server(m));
                }
                Err(e) => return Err(e),
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(replies),
        }
    }

    fn read_reply(&mut self) -> Result<Reply, ConnError> {
        self.line.clear();
        let got = (&mut self.reader).take(MAX_LINE as u64).read_until(b'\n', &mut self.line)?;
        if got == 0 {
            return Err(ConnError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            )));
        }
        if !self.line.ends_with(b"\r\n") {
            return Err(ConnError::Garbage(format!("a reply line without CRLF within {MAX_LINE} bytes")));
        }
        let line = std::str::from_utf8(&self.line[..self.line.len() - 2])
            .map_err(|_| ConnError::Garbage("a reply line that is not UTF-8".into()))?;
        let mut tokens = line.split(' ');
        let code = tokens.next().unwrap_or("");
        let cas = |tokens: std::str::Split<'_, char>| {
            tokens.filter_map(|t| t.strip_prefix('c')).find_map(|c| c.parse::<u64>().ok())
        };
        Ok(match code {
            "VA" => {
                let len: usize = tokens
                    .next()
                    .and_then(|t| t.parse().ok())
                    .ok_or_else(|| ConnError::Garbage(format!("bad value header {line:?}")))?;
                if len > self.max_value {
                    return Err(ConnError::Garbage(format!(
                        "a value of {len} bytes (the limit is {})",
                        self.max_value
                    )));
                }
                let mut data = vec![0; len + 2];
                self.reader.read_exact(&mut data)?;
                if !data.ends_with(b"\r\n") {
                    return Err(ConnError::Garbage("a value not followed by CRLF".into()));
                }
                data.truncate(len);
                Reply::Value(data)
            }
            "HD" => Reply::Done { cas: cas(tokens) },
            "EN" => Reply::Miss,
            "NS" => Reply::NotStored,
            "EX" => Reply::Exists,
            "NF" => Reply::NotFound,
            "ERROR" | "CLIENT_ERROR" | "SERVER_ERROR" => return Err(ConnError::Server(line.to_owned())),
            _ => return Err(ConnError::Garbage(format!("unexpected reply {:?}", truncate(line)))),
        })
    }
}

fn truncate(s: &str) -> &str {
    let mut end = s.len().min(80);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `T` of a command: seconds from now, 0 for never. memcached reads more
/// than 30 days as a Unix time, so longer times are sent as one.
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

/// `T` of a lease: one second more than [`exptime`], because memcached's
/// clock ticks once a second and an item set with `T1` expires at the next
/// tick, which may come at once: a lease extended every third of its time
/// to live must outlive the tick.
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
}
