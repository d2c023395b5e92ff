//! TLS settings for `rediss://` URLs (cargo feature `redis-tls`): a CA file
//! to check the server's certificate with, and a client certificate for
//! servers that ask for one (`tls-auth-clients yes`). The redis client does
//! the handshake through native-tls (the system's OpenSSL); the files are
//! read when the backend is built.

use std::path::PathBuf;

/// The TLS files given to a [`RedisBuilder`](super::RedisBuilder).
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsFiles {
    /// PEM CA certificates trusted instead of the system's roots.
    pub(crate) ca: Option<PathBuf>,
    /// A client certificate (PEM) and its PKCS#8 PEM key.
    pub(crate) client: Option<(PathBuf, PathBuf)>,
}

impl TlsFiles {
    /// Whether any file was given.
    pub(crate) fn is_set(&self) -> bool {
        self.ca.is_some() || self.client.is_some()
    }
}

#[cfg(feature = "redis-tls")]
mod client {
    use super::TlsFiles;
    use crate::redis::connection::NAME;
    use dogpile_core::backend::BackendError;
    use redis::{ClientTlsConfig, TlsCertificates};
    use std::path::Path;

    fn read(setting: &str, path: &Path) -> Result<Vec<u8>, BackendError> {
        std::fs::read(path)
            .map_err(|e| BackendError::with_source(NAME, format!("`{setting}`: cannot read {}", path.display()), e))
    }

    impl TlsFiles {
        /// A client for `url` (a `rediss://` URL) trusting these files.
        pub(crate) fn client(&self, url: &str) -> Result<redis::Client, BackendError> {
            let info = redis::IntoConnectionInfo::into_connection_info(url)
                .map_err(|e| BackendError::with_source(NAME, format!("invalid Redis URL: {e}"), e))?;
            if !matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
                return Err(BackendError::new(
                    NAME,
                    format!(
                        "`tls_ca_file` and the client certificate are for `rediss://` URLs, not {:?}",
                        crate::redis::redacted(url)
                    ),
                ));
            }
            let root_cert = self.ca.as_deref().map(|ca| read("tls_ca_file", ca)).transpose()?;
            let client_tls = match &self.client {
                Some((cert, key)) => Some(ClientTlsConfig {
                    client_cert: read("tls_cert_file", cert)?,
                    client_key: read("tls_key_file", key)?,
                }),
                None => None,
            };
            redis::Client::build_with_tls(info, TlsCertificates { client_tls, root_cert }).map_err(|e| {
                let files = [
                    ("tls_ca_file", self.ca.as_deref()),
                    ("tls_cert_file", self.client.as_ref().map(|c| c.0.as_path())),
                ]
                .into_iter()
                .chain([("tls_key_file", self.client.as_ref().map(|c| c.1.as_path()))])
                .filter_map(|(setting, path)| path.map(|p| format!("`{setting}` = {}", p.display())))
                .collect::<Vec<_>>()
                .join(", ");
                BackendError::with_source(
                    NAME,
                    format!(
                        "the TLS files cannot be used ({files}): {e} (certificates are PEM, the client key PKCS#8 \
                         PEM, `BEGIN PRIVATE KEY`; convert others with `openssl pkcs8 -topk8 -nocrypt`)"
                    ),
                    e,
                )
            })
        }
    }
}
