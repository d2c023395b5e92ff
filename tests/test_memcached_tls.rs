//! The memcached backend over TLS (feature `memcached-tls`), against real
//! servers started by the tests with `memcached -Z` and certificates made
//! by the tests (rcgen): the conformance suite in the meta and the binary
//! protocols and with SASL, a server certificate from another CA or for
//! another host as a clear error, and client certificates required by the
//! server (`ssl_verify_mode`).

mod conformance;
mod support_memcached;
mod support_tls;

use conformance::Stores;
use dogpile::Region;
use dogpile::backend::Backend;
use dogpile::backends::MemcachedConfig;
use dogpile::backends::memcached::Protocol;
use std::path::Path;
use std::sync::Arc;
use support_memcached::{Owned, Server, config, namespace, sasl_server};
use support_tls::Pki;

/// What the memcached tests need of the certificates.
trait MemcachedTls {
    fn server_args(&self, verify_clients: bool) -> Vec<String>;
    fn client(&self, server: &Server) -> MemcachedConfig;
}

impl MemcachedTls for Pki {
    /// memcached's arguments for TLS with these certificates.
    fn server_args(&self, verify_clients: bool) -> Vec<String> {
        let mut opts = format!(
            "ssl_chain_cert={},ssl_key={}",
            self.path("server.pem").display(),
            self.path("server.key").display()
        );
        if verify_clients {
            opts.push_str(&format!(",ssl_verify_mode=2,ssl_ca_cert={}", self.path("ca.pem").display()));
        }
        vec!["-Z".into(), "-o".into(), opts]
    }

    /// Settings for TLS to `server`, trusting this CA.
    fn client(&self, server: &Server) -> MemcachedConfig {
        let mut c = config(&[server], &namespace());
        c.tls = true;
        c.tls_ca_file = Some(self.path("ca.pem"));
        c
    }
}

fn start(pki: &Pki, verify_clients: bool) -> Server {
    let args = pki.server_args(verify_clients);
    Server::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn tls_backend(protocol: Protocol) -> Arc<dyn Backend> {
    let pki = Pki::new();
    let servers = Arc::new(vec![start(&pki, false)]);
    let mut c = pki.client(&servers[0]);
    c.protocol = Some(protocol);
    Owned::on(&servers, &c)
}

fn tls_meta() -> Arc<dyn Backend> {
    tls_backend(Protocol::Meta)
}

fn tls_binary() -> Arc<dyn Backend> {
    tls_backend(Protocol::Binary)
}

/// SASL inside TLS.
fn tls_sasl() -> Arc<dyn Backend> {
    let pki = Pki::new();
    let args = pki.server_args(false);
    let servers = Arc::new(vec![sasl_server("app", "pw", &args.iter().map(String::as_str).collect::<Vec<_>>())]);
    let mut c = pki.client(&servers[0]);
    c.sasl = true;
    c.username = Some("app".into());
    c.password = Some("pw".into());
    Owned::on(&servers, &c)
}

conformance_suite!(memcached_tls_meta, Stores::Values, tls_meta);
conformance_suite!(memcached_tls_binary, Stores::Values, tls_binary);
conformance_suite!(memcached_tls_sasl, Stores::Values, tls_sasl);

fn first_error(c: &MemcachedConfig) -> String {
    let region = Region::builder("mc_tls_err").backend(c.backend().unwrap()).build();
    region.get::<u8>("k").unwrap_err().to_string()
}

/// A server certificate signed by a CA the client does not trust: a clear
/// error, the same on every call (the server is not marked dead).
#[test]
fn a_certificate_from_another_ca_is_a_clear_error() {
    let pki = Pki::new();
    let server = start(&pki, false);
    let mut c = pki.client(&server);
    c.tls_ca_file = Some(pki.path("other-ca.pem"));
    let err = first_error(&c);
    assert!(err.contains("TLS handshake with 127.0.0.1 failed"), "{err}");
    assert!(err.contains("certificate verify failed"), "{err}");
    let region = Region::builder("mc_tls_err").backend(c.backend().unwrap()).build();
    for _ in 0..2 {
        let err = region.get::<u8>("k").unwrap_err().to_string();
        assert!(err.contains("TLS handshake") && !err.contains("marked dead"), "{err}");
    }
    // No CA file: the system's roots do not know the test CA either.
    c.tls_ca_file = None;
    assert!(first_error(&c).contains("certificate verify failed"));
}

/// The certificate names another host than the `servers` entry.
#[test]
fn a_certificate_for_another_host_is_a_clear_error() {
    let pki = Pki::for_names(&["cache.example"]);
    let server = start(&pki, false);
    let err = first_error(&pki.client(&server));
    assert!(err.contains("TLS handshake with 127.0.0.1 failed"), "{err}");
    // Reached by the name in its certificate, it would do: here "localhost"
    // is not in it either.
    let mut c = pki.client(&server);
    c.servers = vec![format!("localhost:{}", server.port)];
    assert!(first_error(&c).contains("TLS handshake with localhost failed"));
}

/// A server that requires client certificates (`ssl_verify_mode=2`):
/// refused without one, served with one signed by its CA.
#[test]
fn client_certificates_when_the_server_requires_them() {
    let pki = Pki::new();
    let server = start(&pki, true);
    let region = Region::builder("mc_tls_anon").backend(pki.client(&server).backend().unwrap()).build();
    assert!(region.get::<u8>("k").is_err(), "no client certificate: refused");
    for protocol in [Protocol::Meta, Protocol::Binary] {
        let mut c = pki.client(&server);
        c.protocol = Some(protocol);
        c.tls_cert_file = Some(pki.path("client.pem"));
        c.tls_key_file = Some(pki.path("client.key"));
        let region = Region::builder("mc_tls_client").backend(c.backend().unwrap()).build();
        assert_eq!(region.get_or_create("k", || 4u8).unwrap(), 4, "{protocol:?}");
        assert_eq!(region.get::<u8>("k").unwrap(), Some(4), "{protocol:?}");
    }
}

dogpile::region!(BY_NAME, "mc_tls_by_name");
dogpile::region!(BAD, "mc_tls_bad");

/// TLS from configuration by name, and files that cannot be used named in
/// the error.
#[test]
fn tls_from_configuration_by_name() {
    let pki = Pki::new();
    let server = start(&pki, false);
    let toml = format!(
        "[regions.mc_tls_by_name]\nbackend = \"memcached\"\nservers = [\"{}\"]\nnamespace = \"{}\"\n\
         tls = true\ntls_ca_file = \"{}\"\nprotocol = \"binary\"\n",
        server.addr(),
        namespace(),
        pki.path("ca.pem").display()
    );
    dogpile::configure_from_toml(&toml).unwrap();
    assert_eq!(BY_NAME.get_or_create("k", || 5u8).unwrap(), 5);
    assert_eq!(BY_NAME.get::<u8>("k").unwrap(), Some(5));

    let refused = |extra: &str| {
        let toml = format!("[regions.mc_tls_bad]\nbackend = \"memcached\"\n{extra}\n");
        dogpile::configure_from_toml(&toml).unwrap_err().to_string()
    };
    let err = refused("tls = true\ntls_ca_file = \"/nonexistent/ca.pem\"");
    assert!(err.contains("tls_ca_file") && err.contains("/nonexistent/ca.pem"), "{err}");
    let err = refused(&format!("tls = true\ntls_ca_file = \"{}\"", pki.path("server.key").display()));
    assert!(err.contains("tls_ca_file"), "a key is not a CA certificate: {err}");
    let err = refused(&format!("tls_ca_file = \"{}\"", pki.path("ca.pem").display()));
    assert!(err.contains("tls = true"), "{err}");
    let err = refused(&format!("tls = true\ntls_cert_file = \"{}\"", pki.path("client.pem").display()));
    assert!(err.contains("go together"), "{err}");
    let err = refused(&format!(
        "tls = true\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"",
        pki.path("client.pem").display(),
        pki.path("ca.pem").display()
    ));
    assert!(err.contains("tls_key_file") && err.contains("PKCS#8"), "{err}");
    assert!(Path::new(&pki.path("ca.pem")).exists());
}
