//! The byte stream under a connection: TCP, with a timeout on the
//! connection and on every read and write, and TLS over it when configured.

use super::conn::ConnError;
use super::tls::Tls;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// An open stream to one server.
#[derive(Debug)]
pub(crate) enum Stream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    #[cfg(feature = "memcached-tls")]
    Tls(Box<native_tls::TlsStream<TcpStream>>),
}

/// Connects to `addr` (each of its addresses in turn); with `tls`, shakes
/// hands checking the server's certificate against `host`.
pub(crate) fn connect(
    addr: &str,
    host: &str,
    connect: Duration,
    io: Duration,
    tls: Option<&Tls>,
) -> Result<Stream, ConnError> {
    let tcp = tcp(addr, connect, io)?;
    match tls {
        Some(tls) => tls.wrap(host, tcp),
        None => Ok(Stream::Tcp(tcp)),
    }
}

fn tcp(addr: &str, connect: Duration, io: Duration) -> io::Result<TcpStream> {
    let mut last = None;
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    for a in addrs {
        match TcpStream::connect_timeout(&a, connect) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(io))?;
                stream.set_write_timeout(Some(io))?;
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{addr}: no address"))))
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            #[cfg(feature = "memcached-tls")]
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            #[cfg(feature = "memcached-tls")]
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            #[cfg(feature = "memcached-tls")]
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A client stream whose server already sent `replies` and hung up (tests
/// of the protocol readers).
#[cfg(test)]
pub(crate) fn answered(replies: &[u8]) -> Stream {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    server.write_all(replies).unwrap();
    drop(server);
    Stream::Tcp(client)
}
