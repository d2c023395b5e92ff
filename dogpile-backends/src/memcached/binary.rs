//! memcached's binary protocol: 24-byte headers (magic `0x80` for a
//! request, `0x81` for a response), the CAS in the header, and quiet
//! variants of the commands that answer only when there is something to
//! say. The backend needs it for SASL authentication (`memcached -S`).
//!
//! A batch is pipelined as in libmemcached: each command carries its index
//! as the opaque, reads are `GETKQ` (no answer on a miss), plain stores and
//! deletes are quiet (an answer only on failure), adds and
//! compare-and-swaps answer always (the new CAS), and a `NOOP` closes the
//! batch: its answer means every other answer has come.

use super::conn::{ConnError, Reply, SetMode};
use super::stream::Stream;
use std::io::{BufReader, Read, Write};

/// The magic byte of a request.
pub(crate) const REQUEST: u8 = 0x80;
/// The magic byte of a response.
pub(crate) const RESPONSE: u8 = 0x81;
/// The size of a header.
pub(crate) const HEADER: usize = 24;
/// Room for a response's key and extras besides its value.
const BODY_SLACK: usize = 1024;

/// The opcodes the backend sends.
pub(crate) mod op {
    pub(crate) const SET: u8 = 0x01;
    pub(crate) const ADD: u8 = 0x02;
    pub(crate) const NOOP: u8 = 0x0a;
    pub(crate) const GETKQ: u8 = 0x0d;
    pub(crate) const SETQ: u8 = 0x11;
    pub(crate) const DELETEQ: u8 = 0x14;
    pub(crate) const SASL_LIST_MECHS: u8 = 0x20;
    pub(crate) const SASL_AUTH: u8 = 0x21;
}

/// The response statuses the backend reads.
pub(crate) mod status {
    pub(crate) const OK: u16 = 0x0000;
    pub(crate) const NOT_FOUND: u16 = 0x0001;
    pub(crate) const EXISTS: u16 = 0x0002;
    pub(crate) const NOT_STORED: u16 = 0x0005;
    pub(crate) const AUTH_ERROR: u16 = 0x0020;
    pub(crate) const UNKNOWN_COMMAND: u16 = 0x0081;
}

/// A response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) opcode: u8,
    pub(crate) key_len: u16,
    pub(crate) extras_len: u8,
    pub(crate) status: u16,
    pub(crate) body_len: u32,
    pub(crate) opaque: u32,
    pub(crate) cas: u64,
}

/// A whole response.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) header: Header,
    pub(crate) key: Vec<u8>,
    pub(crate) value: Vec<u8>,
}

/// Appends one request frame to `out`.
pub(crate) fn encode_request(
    out: &mut Vec<u8>,
    opcode: u8,
    key: &[u8],
    extras: &[u8],
    value: &[u8],
    opaque: u32,
    cas: u64,
) {
    // Keys are at most 250 bytes and values at most `item_size_max`, both
    // checked before they get here.
    let body = extras.len() + key.len() + value.len();
    out.push(REQUEST);
    out.push(opcode);
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.push(extras.len() as u8);
    out.push(0); // data type: raw bytes
    out.extend_from_slice(&0u16.to_be_bytes()); // vbucket
    out.extend_from_slice(&(body as u32).to_be_bytes());
    out.extend_from_slice(&opaque.to_be_bytes());
    out.extend_from_slice(&cas.to_be_bytes());
    out.extend_from_slice(extras);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
}

/// Reads a response header, refusing what memcached would never send: a
/// request's magic, lengths that do not add up, a body over `max_body`.
pub(crate) fn decode_header(b: &[u8; HEADER], max_body: usize) -> Result<Header, ConnError> {
    let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    if b[0] != RESPONSE {
        return Err(ConnError::Garbage(format!(
            "a binary response starting with 0x{:02x}, not 0x{RESPONSE:02x} (is the server speaking the binary protocol?)",
            b[0]
        )));
    }
    let h = Header {
        opcode: b[1],
        key_len: u16_at(2),
        extras_len: b[4],
        status: u16_at(6),
        body_len: u32_at(8),
        opaque: u32_at(12),
        cas: u64::from_be_bytes([b[16], b[17], b[18], b[19], b[20], b[21], b[22], b[23]]),
    };
    if usize::from(h.key_len) + usize::from(h.extras_len) > h.body_len as usize {
        return Err(ConnError::Garbage(format!(
            "a binary response whose key ({}) and extras ({}) exceed its body ({})",
            h.key_len, h.extras_len, h.body_len
        )));
    }
    if h.body_len as usize > max_body {
        return Err(ConnError::Garbage(format!("a binary response of {} bytes (the limit is {max_body})", h.body_len)));
    }
    Ok(h)
}

/// Reads one whole response (a stream cut short is an I/O error).
pub(crate) fn read_response(r: &mut impl Read, max_body: usize) -> Result<Response, ConnError> {
    let mut head = [0u8; HEADER];
    r.read_exact(&mut head)?;
    let header = decode_header(&head, max_body)?;
    let mut body = vec![0; header.body_len as usize];
    r.read_exact(&mut body)?;
    let extras = usize::from(header.extras_len);
    let key = body[extras..extras + usize::from(header.key_len)].to_vec();
    body.drain(..extras + usize::from(header.key_len));
    Ok(Response { header, key, value: body })
}

/// What a pushed command was, to read its answer (or its silence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// `GETKQ`: silence is a miss.
    Get,
    /// `SETQ`: silence is success.
    Set,
    /// `ADD`: always answered.
    Add,
    /// `SET` with a CAS: always answered.
    Cas,
    /// `DELETEQ` (with or without a CAS): silence is success.
    Delete,
}

/// A binary-protocol connection to one server.
#[derive(Debug)]
pub(crate) struct BinaryConn {
    reader: BufReader<Stream>,
    out: Vec<u8>,
    pending: Vec<Pending>,
    max_value: usize,
}

impl BinaryConn {
    pub(crate) fn new(stream: Stream, max_value: usize) -> BinaryConn {
        BinaryConn {
            reader: BufReader::with_capacity(16 * 1024, stream),
            out: Vec::with_capacity(512),
            pending: Vec::new(),
            max_value,
        }
    }

    fn max_body(&self) -> usize {
        self.max_value.saturating_add(BODY_SLACK)
    }

    fn opaque(&self) -> u32 {
        self.pending.len() as u32
    }

    pub(crate) fn push_get(&mut self, key: &str) {
        let opaque = self.opaque();
        encode_request(&mut self.out, op::GETKQ, key.as_bytes(), &[], &[], opaque, 0);
        self.pending.push(Pending::Get);
    }

    pub(crate) fn push_set(&mut self, key: &str, data: &[u8], exptime: u32, mode: SetMode) {
        let mut extras = [0u8; 8]; // flags (0), then the expiry time
        extras[4..].copy_from_slice(&exptime.to_be_bytes());
        let (opcode, cas, pending) = match mode {
            SetMode::Set => (op::SETQ, 0, Pending::Set),
            SetMode::Add => (op::ADD, 0, Pending::Add),
            SetMode::Cas(cas) => (op::SET, cas, Pending::Cas),
        };
        let opaque = self.opaque();
        encode_request(&mut self.out, opcode, key.as_bytes(), &extras, data, opaque, cas);
        self.pending.push(pending);
    }

    pub(crate) fn push_delete(&mut self, key: &str, cas: Option<u64>) {
        let opaque = self.opaque();
        encode_request(&mut self.out, op::DELETEQ, key.as_bytes(), &[], &[], opaque, cas.unwrap_or(0));
        self.pending.push(Pending::Delete);
    }

    /// Sends the pushed commands and a closing `NOOP`, and reads until the
    /// `NOOP`'s answer: one reply for each of the `n` commands.
    pub(crate) fn round_trip(&mut self, n: usize) -> Result<Vec<Reply>, ConnError> {
        let pending = std::mem::take(&mut self.pending);
        debug_assert_eq!(pending.len(), n, "one reply per pushed command");
        let end = pending.len() as u32;
        encode_request(&mut self.out, op::NOOP, &[], &[], &[], end, 0);
        let sent = self.reader.get_mut().write_all(&self.out);
        self.out.clear();
        sent?;
        let mut replies: Vec<Option<Reply>> = (0..pending.len()).map(|_| None).collect();
        let mut first_error = None;
        let max_body = self.max_body();
        loop {
            let r = match read_response(&mut self.reader, max_body) {
                Ok(r) => r,
                // memcached closes the connection after some refusals (a
                // command before SASL authentication): the refusal is the
                // news, not the closed connection.
                Err(e) => return Err(first_error.unwrap_or(e)),
            };
            let h = r.header;
            if h.opaque == end {
                if h.opcode != op::NOOP {
                    return Err(ConnError::Garbage(format!("opcode 0x{:02x} answered the closing NOOP", h.opcode)));
                }
                break;
            }
            let i = h.opaque as usize;
            let Some(&kind) = pending.get(i) else {
                return Err(ConnError::Garbage(format!("an answer to no command (opaque {})", h.opaque)));
            };
            if replies[i].is_some() {
                return Err(ConnError::Garbage(format!("two answers to command {i}")));
            }
            // Keep reading after a refusal: the connection stays in step.
            match reply_of(kind, &r, self.max_value) {
                Ok(reply) => replies[i] = Some(reply),
                Err(e @ ConnError::Server(_)) => {
                    first_error.get_or_insert(e);
                    replies[i] = Some(Reply::NotStored);
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        pending
            .iter()
            .zip(replies)
            .map(|(kind, reply)| match (reply, kind) {
                (Some(reply), _) => Ok(reply),
                (None, Pending::Get) => Ok(Reply::Miss),
                (None, Pending::Set | Pending::Delete) => Ok(Reply::Done { cas: None }),
                (None, Pending::Add | Pending::Cas) => {
                    Err(ConnError::Garbage("no answer to a command that is always answered".into()))
                }
            })
            .collect()
    }

    /// Sends one command and reads its answer (for the connection's
    /// set-up: SASL).
    pub(crate) fn call(&mut self, opcode: u8, key: &[u8], value: &[u8]) -> Result<Response, ConnError> {
        debug_assert!(self.pending.is_empty() && self.out.is_empty());
        let mut frame = Vec::with_capacity(HEADER + key.len() + value.len());
        encode_request(&mut frame, opcode, key, &[], value, 0, 0);
        self.reader.get_mut().write_all(&frame)?;
        let max_body = self.max_body();
        let r = read_response(&mut self.reader, max_body)?;
        if r.header.opcode != opcode {
            return Err(ConnError::Garbage(format!(
                "opcode 0x{:02x} answered command 0x{opcode:02x}",
                r.header.opcode
            )));
        }
        Ok(r)
    }
}

/// The reply to a command of `kind` from its answer.
fn reply_of(kind: Pending, r: &Response, max_value: usize) -> Result<Reply, ConnError> {
    let s = r.header.status;
    Ok(match (kind, s) {
        (Pending::Get, status::OK) => {
            if r.value.len() > max_value {
                return Err(ConnError::Garbage(format!(
                    "a value of {} bytes (the limit is {max_value})",
                    r.value.len()
                )));
            }
            Reply::Value(r.value.clone())
        }
        (Pending::Get, status::NOT_FOUND) => Reply::Miss,
        (Pending::Set | Pending::Add | Pending::Cas, status::OK) => Reply::Done { cas: Some(r.header.cas) },
        (Pending::Add, status::EXISTS | status::NOT_STORED) => Reply::NotStored,
        (Pending::Set | Pending::Cas, status::NOT_STORED) => Reply::NotStored,
        (Pending::Set | Pending::Cas | Pending::Delete, status::EXISTS) => Reply::Exists,
        (Pending::Set | Pending::Cas | Pending::Delete, status::NOT_FOUND) => Reply::NotFound,
        (Pending::Delete, status::OK) => Reply::Done { cas: None },
        _ => return Err(refusal(r)),
    })
}

/// A refusal by status, with the server's own words (the body of an error
/// answer is a message).
pub(crate) fn refusal(r: &Response) -> ConnError {
    let said = String::from_utf8_lossy(&r.value[..r.value.len().min(200)]).into_owned();
    let hint = match r.header.status {
        status::AUTH_ERROR => "; the server wants SASL authentication (`sasl = true` with `username` and `password`)",
        status::UNKNOWN_COMMAND => "; the server does not know this command",
        _ => "",
    };
    ConnError::Server(format!("status 0x{:04x} ({said}){hint}", r.header.status))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(opcode: u8, status: u16, opaque: u32, cas: u64, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_request(&mut out, opcode, key, extras, value, opaque, cas);
        out[0] = RESPONSE;
        out[6..8].copy_from_slice(&status.to_be_bytes());
        out
    }

    /// A connection whose server already sent `replies`.
    fn answered(replies: &[u8]) -> BinaryConn {
        BinaryConn::new(super::super::stream::answered(replies), 1024)
    }

    #[test]
    fn a_set_request_is_framed_as_the_protocol_says() {
        let mut out = Vec::new();
        encode_request(&mut out, op::SET, b"key", &[0, 0, 0, 0, 0, 0, 0, 9], b"val", 7, 0x0102);
        let mut want = vec![0x80, 0x01, 0, 3, 8, 0, 0, 0, 0, 0, 0, 14, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 1, 2];
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 9]);
        want.extend_from_slice(b"keyval");
        assert_eq!(out, want);
    }

    #[test]
    fn a_response_is_decoded_with_its_parts() {
        let bytes = response(op::GETKQ, 0, 3, 99, &[0, 0, 0, 0], b"k", b"hello");
        let r = read_response(&mut &bytes[..], 1024).unwrap();
        assert_eq!(r.header.opcode, op::GETKQ);
        assert_eq!((r.header.opaque, r.header.cas, r.header.status), (3, 99, 0));
        assert_eq!((r.key.as_slice(), r.value.as_slice()), (&b"k"[..], &b"hello"[..]));
    }

    #[test]
    fn truncated_and_garbage_frames_are_errors() {
        let bytes = response(op::GETKQ, 0, 0, 1, &[0, 0, 0, 0], b"k", b"hello");
        for cut in [0, 1, 23, 24, 30, bytes.len() - 1] {
            assert!(matches!(read_response(&mut &bytes[..cut], 1024), Err(ConnError::Io(_))), "cut at {cut}");
        }
        let mut bad = bytes.clone();
        bad[0] = b'E'; // "ERROR\r\n" from a text-protocol server
        assert!(matches!(read_response(&mut &bad[..], 1024), Err(ConnError::Garbage(_))));
        let mut bad = bytes.clone();
        bad[0] = REQUEST;
        assert!(matches!(read_response(&mut &bad[..], 1024), Err(ConnError::Garbage(_))));
        let mut bad = bytes.clone();
        bad[2..4].copy_from_slice(&100u16.to_be_bytes()); // key longer than the body
        assert!(matches!(read_response(&mut &bad[..], 1024), Err(ConnError::Garbage(_))));
        let mut bad = bytes.clone();
        bad[8..12].copy_from_slice(&u32::MAX.to_be_bytes()); // a 4 GiB body
        assert!(matches!(read_response(&mut &bad[..], 1024), Err(ConnError::Garbage(_))));
        let noise: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        assert!(read_response(&mut &noise[..], 1024).is_err());
    }

    #[test]
    fn a_batch_reads_answers_and_silences() {
        let mut replies = Vec::new();
        replies.extend(response(op::GETKQ, 0, 0, 5, &[0; 4], b"a", b"va"));
        // 1: a miss (silent), 2: a stored set (silent)
        replies.extend(response(op::ADD, status::EXISTS, 3, 0, &[], &[], b"Data exists for key."));
        replies.extend(response(op::SET, 0, 4, 77, &[], &[], &[]));
        replies.extend(response(op::DELETEQ, status::NOT_FOUND, 5, 0, &[], &[], b"Not found"));
        // 6: a deleted key (silent)
        replies.extend(response(op::NOOP, 0, 7, 0, &[], &[], &[]));
        let mut c = answered(&replies);
        c.push_get("a");
        c.push_get("b");
        c.push_set("c", b"x", 0, SetMode::Set);
        c.push_set("l", b"t", 2, SetMode::Add);
        c.push_set("l", b"t", 2, SetMode::Cas(9));
        c.push_delete("d", None);
        c.push_delete("e", Some(3));
        let got = c.round_trip(7).unwrap();
        assert_eq!(
            got,
            [
                Reply::Value(b"va".to_vec()),
                Reply::Miss,
                Reply::Done { cas: None },
                Reply::NotStored,
                Reply::Done { cas: Some(77) },
                Reply::NotFound,
                Reply::Done { cas: None },
            ]
        );
    }

    #[test]
    fn a_batch_with_bad_answers_fails_without_panicking() {
        // An answer to a command never sent.
        let mut bytes = response(op::GETKQ, 0, 9, 0, &[0; 4], b"a", b"v");
        bytes.extend(response(op::NOOP, 0, 1, 0, &[], &[], &[]));
        let mut c = answered(&bytes);
        c.push_get("a");
        assert!(matches!(c.round_trip(1), Err(ConnError::Garbage(_))));
        // An add never answered.
        let mut c = answered(&response(op::NOOP, 0, 1, 0, &[], &[], &[]));
        c.push_set("l", b"t", 2, SetMode::Add);
        assert!(matches!(c.round_trip(1), Err(ConnError::Garbage(_))));
        // The server hangs up before the NOOP's answer.
        let mut c = answered(&response(op::GETKQ, 0, 0, 0, &[0; 4], b"a", b"v"));
        c.push_get("a");
        assert!(matches!(c.round_trip(1), Err(ConnError::Io(_))));
        // A refusal is reported once the batch is read (still in step).
        let mut bytes = response(op::SETQ, 0x0003, 0, 0, &[], &[], b"Too large.");
        bytes.extend(response(op::NOOP, 0, 1, 0, &[], &[], &[]));
        let mut c = answered(&bytes);
        c.push_set("big", b"x", 0, SetMode::Set);
        let err = c.round_trip(1).unwrap_err();
        assert!(matches!(&err, ConnError::Server(m) if m.contains("Too large")), "{err}");
    }
}
