//! The Redis backend over TLS (feature `redis-tls`), against real servers
//! started by the tests with a TLS port only (`--port 0 --tls-port`) and
//! certificates made by the tests (rcgen): the conformance suite over
//! `rediss://` (blocking and async), a server certificate from another CA or
//! for another host as a clear error, client certificates when the server
//! requires them (`tls-auth-clients yes`), and TLS configured by name.

mod conformance;
mod support_redis;
mod support_tls;

use conformance::Stores;
use dogpile::backend::Backend;
use dogpile::backends::RedisBackend;
use dogpile::{Error, Region};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use support_redis::{RedisServer, fresh_prefix};
use support_tls::Pki;

/// A TLS-only server with `pki`'s certificates; with `auth_clients`, it
/// requires a client certificate signed by the CA.
fn start(pki: &Pki, auth_clients: bool) -> RedisServer {
    let path = |name| pki.path(name).display().to_string();
    let (cert, key, ca) = (path("server.pem"), path("server.key"), path("ca.pem"));
    RedisServer::start_tls(&[
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        if auth_clients { "yes" } else { "no" },
    ])
}

fn builder(url: &str) -> dogpile::backends::RedisBuilder {
    RedisBackend::builder(url)
        .key_prefix(fresh_prefix())
        .connect_timeout(Duration::from_secs(2))
        .io_timeout(Duration::from_secs(2))
}

/// The server (and certificates) the conformance checks share.
struct Shared {
    server: RedisServer,
    pki: Pki,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let pki = Pki::new();
        Shared { server: start(&pki, false), pki }
    })
}

/// A backend trusting the shared server's CA, with `connections` made
/// already (made together, on an empty pool, each call makes one).
fn warmed(prefix: &str, connections: usize) -> RedisBackend {
    let s = shared();
    let backend = builder(&s.server.url()).key_prefix(prefix).tls_ca_file(s.pki.path("ca.pem")).build().unwrap();
    let barrier = std::sync::Barrier::new(connections);
    std::thread::scope(|scope| {
        for _ in 0..connections {
            scope.spawn(|| {
                barrier.wait();
                backend.blocking().unwrap().get("warm-up").unwrap();
            });
        }
    });
    backend
}

/// The backends of the suite's checks, made before the first check runs.
///
/// The redis crate builds an OpenSSL context for each new TLS connection,
/// which loads the system's roots: tens of milliseconds of CPU each on
/// this machine. The pool keeps connections, so an application pays it
/// once per connection; but the suite's threaded checks look at 250 ms
/// windows, which ten first connections (or another check making its own
/// at the same time) would eat. So every backend of the suite gets its
/// connections before any check starts; the async interface still makes
/// its one connection per runtime within its check.
struct Stock {
    singles: Vec<RedisBackend>,
    pairs: Vec<(RedisBackend, RedisBackend)>,
}

fn stock() -> &'static std::sync::Mutex<Stock> {
    static STOCK: OnceLock<std::sync::Mutex<Stock>> = OnceLock::new();
    STOCK.get_or_init(|| {
        // As many as the suites have checks (more are made on demand).
        let singles = (0..11).map(|_| warmed(&fresh_prefix(), 10)).collect();
        let pairs = (0..6)
            .map(|_| {
                let prefix = fresh_prefix();
                (warmed(&prefix, 3), warmed(&prefix, 3))
            })
            .collect();
        std::sync::Mutex::new(Stock { singles, pairs })
    })
}

fn tls_backend() -> Arc<dyn Backend> {
    let stocked = stock().lock().unwrap().singles.pop();
    Arc::new(stocked.unwrap_or_else(|| warmed(&fresh_prefix(), 10)))
}

fn tls_pair() -> (Arc<dyn Backend>, Arc<dyn Backend>) {
    let stocked = stock().lock().unwrap().pairs.pop();
    let (a, b) = stocked.unwrap_or_else(|| {
        let prefix = fresh_prefix();
        (warmed(&prefix, 3), warmed(&prefix, 3))
    });
    (Arc::new(a), Arc::new(b))
}

conformance_suite!(redis_tls, Stores::Values, tls_backend);
shared_suite!(redis_tls_pair, tls_pair);

/// The errors of calls through `backend`, blocking and async: the first
/// and a second one of each interface must agree (nothing is left half
/// connected).
fn first_errors(backend: RedisBackend) -> (String, String) {
    let region = Region::builder("redis_tls_err").backend(backend).build();
    let blocking = region.get::<u8>("k").unwrap_err();
    assert!(matches!(blocking, Error::Backend(ref e) if e.backend() == "redis"), "{blocking:?}");
    assert_eq!(region.get::<u8>("k").unwrap_err().to_string(), blocking.to_string(), "the same again");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let nonblocking = rt.block_on(region.get_async::<u8>("k")).unwrap_err();
    let again = rt.block_on(region.get_async::<u8>("k")).unwrap_err();
    assert!(again.to_string().contains("certificate verify failed"), "the same again: {again}");
    (blocking.to_string(), nonblocking.to_string())
}

/// A server certificate signed by a CA the client does not trust (another
/// CA file, or none: the system's roots): a clear error, the same on every
/// call.
#[test]
fn a_certificate_from_another_ca_is_a_clear_error() {
    let pki = Pki::new();
    let server = start(&pki, false);
    let (blocking, nonblocking) =
        first_errors(builder(&server.url()).tls_ca_file(pki.path("other-ca.pem")).build().unwrap());
    for err in [&blocking, &nonblocking] {
        assert!(err.contains("over TLS") && err.contains("tls_ca_file"), "says what to check: {err}");
        assert!(err.contains("certificate verify failed"), "{err}");
    }
    let (blocking, _) = first_errors(builder(&server.url()).build().unwrap());
    assert!(blocking.contains("certificate verify failed"), "the system's roots do not know the test CA: {blocking}");
}

/// The certificate names another host than the URL's.
#[test]
fn a_certificate_for_another_host_is_a_clear_error() {
    let pki = Pki::for_names(&["cache.example"]);
    let server = start(&pki, false);
    let (blocking, nonblocking) = first_errors(builder(&server.url()).tls_ca_file(pki.path("ca.pem")).build().unwrap());
    for err in [&blocking, &nonblocking] {
        assert!(err.contains("over TLS") && err.contains("URL's host"), "says what to check: {err}");
        assert!(err.contains("certificate verify failed"), "{err}");
    }
}

/// A server that requires client certificates: refused without one,
/// served with one signed by its CA, through both interfaces.
#[test]
fn client_certificates_when_the_server_requires_them() {
    let pki = Pki::new();
    let server = start(&pki, true);
    let anonymous = builder(&server.url()).tls_ca_file(pki.path("ca.pem")).build().unwrap();
    let region = Region::builder("redis_tls_anon").backend(anonymous).build();
    assert!(region.get::<u8>("k").is_err(), "no client certificate: refused");
    let backend = builder(&server.url())
        .tls_ca_file(pki.path("ca.pem"))
        .tls_client_certificate(pki.path("client.pem"), pki.path("client.key"))
        .build()
        .unwrap();
    let region = Region::builder("redis_tls_client").backend(backend).build();
    assert_eq!(region.get_or_create("k", || 4u8).unwrap(), 4);
    assert_eq!(region.get::<u8>("k").unwrap(), Some(4));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert_eq!(rt.block_on(region.get_async::<u8>("k")).unwrap(), Some(4));
}

dogpile::region!(BY_NAME, "redis_tls_by_name");
dogpile::region!(BAD, "redis_tls_bad");

/// TLS from configuration by name, and files that cannot be used named in
/// the error.
#[test]
fn tls_from_configuration_by_name() {
    let pki = Pki::new();
    let server = start(&pki, true);
    let toml = format!(
        "[regions.redis_tls_by_name]\nbackend = \"redis\"\nurl = \"{}\"\nkey_prefix = \"{}\"\n\
         tls_ca_file = \"{}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        server.url(),
        fresh_prefix(),
        pki.path("ca.pem").display(),
        pki.path("client.pem").display(),
        pki.path("client.key").display()
    );
    dogpile::configure_from_toml(&toml).unwrap();
    assert_eq!(BY_NAME.get_or_create("k", || 5u8).unwrap(), 5);
    assert_eq!(BY_NAME.get::<u8>("k").unwrap(), Some(5));

    let refused = |extra: &str| {
        let toml = format!("[regions.redis_tls_bad]\nbackend = \"redis\"\n{extra}\n");
        dogpile::configure_from_toml(&toml).unwrap_err().to_string()
    };
    let url = server.url();
    let err = refused(&format!("url = \"{url}\"\ntls_ca_file = \"/nonexistent/ca.pem\""));
    assert!(err.contains("tls_ca_file") && err.contains("/nonexistent/ca.pem"), "{err}");
    let err = refused(&format!("url = \"{url}\"\ntls_ca_file = \"{}\"", pki.path("server.key").display()));
    assert!(err.contains("tls_ca_file") && err.contains("certificate"), "a key is not a CA certificate: {err}");
    let err = refused(&format!("url = \"redis://127.0.0.1:1\"\ntls_ca_file = \"{}\"", pki.path("ca.pem").display()));
    assert!(err.contains("rediss://"), "{err}");
    let err = refused(&format!("url = \"{url}\"\ntls_cert_file = \"{}\"", pki.path("client.pem").display()));
    assert!(err.contains("go together"), "{err}");
    let err = refused(&format!(
        "url = \"{url}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"",
        pki.path("client.pem").display(),
        pki.path("ca.pem").display()
    ));
    assert!(err.contains("tls_key_file") && err.contains("PKCS#8"), "{err}");
    assert!(Path::new(&pki.path("ca.pem")).exists());
}
