//! TLS on the connections (cargo feature `memcached-tls`, servers started
//! with `memcached -Z`): the system's TLS library through native-tls (the
//! one the Redis backend's `redis-tls` uses), the server's certificate
//! checked against the system's roots plus an optional CA file, its name
//! against the host of the `servers` entry, and an optional client
//! certificate for servers that ask for one (`ssl_verify_mode`).

use super::conn::ConnError;
use super::stream::Stream;
use std::net::TcpStream;
use std::path::Path;

/// Where the TLS settings come from, for errors naming the field.
#[cfg_attr(not(feature = "memcached-tls"), allow(dead_code))]
pub(crate) struct TlsFiles<'a> {
    pub(crate) ca: Option<&'a Path>,
    pub(crate) cert: Option<&'a Path>,
    pub(crate) key: Option<&'a Path>,
}

/// A TLS client configuration, shared by the connections of a pool.
#[cfg(feature = "memcached-tls")]
#[derive(Clone, Debug)]
pub(crate) struct Tls {
    connector: native_tls::TlsConnector,
}

/// Never built without the `memcached-tls` feature (the configuration
/// refuses `tls = true`).
#[cfg(not(feature = "memcached-tls"))]
#[derive(Clone, Debug)]
pub(crate) enum Tls {}

/// Whether this build has TLS.
pub(crate) const COMPILED: bool = cfg!(feature = "memcached-tls");

#[cfg(feature = "memcached-tls")]
impl Tls {
    /// Reads the files: `Err((field, message))` when one cannot be used.
    pub(crate) fn new(files: &TlsFiles<'_>) -> Result<Tls, (&'static str, String)> {
        let read = |field: &'static str, path: &Path| {
            std::fs::read(path).map_err(|e| (field, format!("cannot read {}: {e}", path.display())))
        };
        let mut builder = native_tls::TlsConnector::builder();
        if let Some(ca) = files.ca {
            let pem = read("tls_ca_file", ca)?;
            let certs = native_tls::Certificate::stack_from_pem(&pem)
                .map_err(|e| ("tls_ca_file", format!("{}: not PEM certificates: {e}", ca.display())))?;
            if certs.is_empty() {
                return Err(("tls_ca_file", format!("{}: no PEM certificate in it", ca.display())));
            }
            for cert in certs {
                builder.add_root_certificate(cert);
            }
        }
        if let (Some(cert), Some(key)) = (files.cert, files.key) {
            let identity = native_tls::Identity::from_pkcs8(&read("tls_cert_file", cert)?, &read("tls_key_file", key)?)
                .map_err(|e| {
                    (
                        "tls_key_file",
                        format!(
                            "{} with {}: not a PEM certificate with its PKCS#8 PEM key (`BEGIN PRIVATE KEY`; \
                             convert others with `openssl pkcs8 -topk8 -nocrypt`): {e}",
                            cert.display(),
                            key.display()
                        ),
                    )
                })?;
            builder.identity(identity);
        }
        let connector = builder.build().map_err(|e| ("tls", format!("the TLS library refused the settings: {e}")))?;
        Ok(Tls { connector })
    }

    /// The TLS handshake on `tcp`, checking the certificate against `host`
    /// (a name or an address; `[v6]` brackets left out).
    pub(crate) fn wrap(&self, host: &str, tcp: TcpStream) -> Result<Stream, ConnError> {
        let name = host.trim_start_matches('[').trim_end_matches(']');
        match self.connector.connect(name, tcp) {
            Ok(tls) => Ok(Stream::Tls(Box::new(tls))),
            Err(native_tls::HandshakeError::Failure(e)) => Err(ConnError::Tls(format!(
                "TLS handshake with {name} failed: {e} (is the server started with -Z, and its certificate \
                 signed by a trusted CA or the one in `tls_ca_file`, for this host name?)"
            ))),
            // A read or write timed out mid-handshake.
            Err(native_tls::HandshakeError::WouldBlock(_)) => Err(ConnError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("TLS handshake with {name} timed out"),
            ))),
        }
    }
}

#[cfg(not(feature = "memcached-tls"))]
impl Tls {
    pub(crate) fn new(_files: &TlsFiles<'_>) -> Result<Tls, (&'static str, String)> {
        Err(("tls", NOT_COMPILED.into()))
    }

    pub(crate) fn wrap(&self, _host: &str, _tcp: TcpStream) -> Result<Stream, ConnError> {
        match *self {}
    }
}

/// The configuration error of `tls = true` in a build without TLS.
pub(crate) const NOT_COMPILED: &str = "TLS is not compiled in: enable the cargo feature `memcached-tls` \
                                       (of `dogpile`, or of `dogpile-backends`)";
