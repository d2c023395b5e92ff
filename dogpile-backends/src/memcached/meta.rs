//! memcached's meta protocol (`mg`, `ms`, `md`), the few commands the
//! backend needs, over one connection. Requests may be pipelined: the
//! server answers them in order.

use super::conn::{ConnError, Reply, SetMode};
use super::stream::Stream;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};

/// The longest reply line accepted (flags included): anything longer is
/// garbage, not memcached.
const MAX_LINE: usize = 8 * 1024;

/// A meta-protocol connection to one server.
#[derive(Debug)]
pub(crate) struct MetaConn {
    reader: BufReader<Stream>,
    out: Vec<u8>,
    line: Vec<u8>,
    max_value: usize,
}

impl MetaConn {
    pub(crate) fn new(stream: Stream, max_value: usize) -> MetaConn {
        MetaConn {
            reader: BufReader::with_capacity(16 * 1024, stream),
            out: Vec::with_capacity(512),
            line: Vec::with_capacity(128),
            max_value,
        }
    }

    /// memcached's text-protocol authentication (`memcached -Y <authfile>`):
    /// a first `set` whose data is `<user> <password>`, answered `STORED`.
    pub(crate) fn authenticate(&mut self, user: &str, password: &str) -> Result<(), ConnError> {
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

    /// `mg <key> v`: read a value.
    pub(crate) fn push_get(&mut self, key: &str) {
        self.out.extend_from_slice(b"mg ");
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b" v\r\n");
    }

    /// `ms <key> <len> T<exptime> [flags]`: store a value (`ME c` for an
    /// add that returns the CAS, `C<cas> c` for a compare-and-swap).
    pub(crate) fn push_set(&mut self, key: &str, data: &[u8], exptime: u32, mode: SetMode) {
        let mut head = String::with_capacity(key.len() + 48);
        let _ = write!(head, "ms {key} {} T{exptime}", data.len());
        match mode {
            SetMode::Set => {}
            SetMode::Add => head.push_str(" ME c"),
            SetMode::Cas(cas) => {
                let _ = write!(head, " C{cas} c");
            }
        }
        head.push_str("\r\n");
        self.out.extend_from_slice(head.as_bytes());
        self.out.extend_from_slice(data);
        self.out.extend_from_slice(b"\r\n");
    }

    /// `md <key> [C<cas>]`: delete (with `C<cas>`: only if the CAS matches).
    pub(crate) fn push_delete(&mut self, key: &str, cas: Option<u64>) {
        self.out.extend_from_slice(b"md ");
        self.out.extend_from_slice(key.as_bytes());
        if let Some(cas) = cas {
            let _ = write!(self.out, " C{cas}");
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection whose server already sent `replies`.
    fn answered(replies: &[u8]) -> MetaConn {
        MetaConn::new(super::super::stream::answered(replies), 1024)
    }

    #[test]
    fn commands_are_written_as_meta_lines() {
        let mut c = answered(b"");
        c.push_get("a");
        c.push_set("b", b"xy", 5, SetMode::Set);
        c.push_set("l", b"t", 2, SetMode::Add);
        c.push_set("l", b"t", 2, SetMode::Cas(42));
        c.push_delete("d", None);
        c.push_delete("d", Some(42));
        assert_eq!(
            String::from_utf8(c.out.clone()).unwrap(),
            "mg a v\r\nms b 2 T5\r\nxy\r\nms l 1 T2 ME c\r\nt\r\nms l 1 T2 C42 c\r\nt\r\nmd d\r\nmd d C42\r\n"
        );
    }

    #[test]
    fn replies_are_read_in_order_and_garbage_is_an_error() {
        let mut c = answered(b"VA 2 v\r\nhi\r\nHD c7\r\nEN\r\nNS\r\nEX\r\nNF\r\n");
        let replies = c.round_trip(6).unwrap();
        assert_eq!(
            replies,
            [
                Reply::Value(b"hi".to_vec()),
                Reply::Done { cas: Some(7) },
                Reply::Miss,
                Reply::NotStored,
                Reply::Exists,
                Reply::NotFound
            ]
        );
        let mut c = answered(b"HELLO\r\n");
        assert!(matches!(c.round_trip(1), Err(ConnError::Garbage(_))));
        let mut c = answered(b"VA 5000 v\r\n");
        assert!(matches!(c.round_trip(1), Err(ConnError::Garbage(_))), "over the largest value");
        let mut c = answered(b"VA 4 v\r\nab");
        assert!(matches!(c.round_trip(1), Err(ConnError::Io(_))), "a value cut short");
    }
}
