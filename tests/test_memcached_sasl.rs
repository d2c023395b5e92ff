//! The memcached backend over the binary protocol, against real servers
//! started by the tests: the conformance suite with SASL authentication
//! (`memcached -S`, a SASL database made by the test) and without it, a
//! wrong password as a clear error that `#[cached]` functions survive, and
//! the configuration of SASL by name.

mod conformance;
mod support_memcached;

use conformance::Stores;
use dogpile::backend::Backend;
use dogpile::backends::MemcachedConfig;
use dogpile::backends::memcached::Protocol;
use dogpile::{Region, cached};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use support_memcached::{Owned, Server, config, namespace, sasl_server};

const USER: &str = "app";
const PASSWORD: &str = "s3cret pass";

fn sasl_config(server: &Server, password: &str) -> MemcachedConfig {
    let mut c = config(&[server], &namespace());
    c.sasl = true;
    c.username = Some(USER.into());
    c.password = Some(password.into());
    c
}

/// A backend with SASL on a fresh server of its own.
fn sasl_single() -> Arc<dyn Backend> {
    let servers = Arc::new(vec![sasl_server(USER, PASSWORD, &[])]);
    Owned::on(&servers, &sasl_config(&servers[0], PASSWORD))
}

/// A backend with SASL on three fresh servers.
fn sasl_pool3() -> Arc<dyn Backend> {
    let servers: Arc<Vec<Server>> = Arc::new((0..3).map(|_| sasl_server(USER, PASSWORD, &[])).collect());
    let mut c = sasl_config(&servers[0], PASSWORD);
    c.servers = servers.iter().map(Server::addr).collect();
    Owned::on(&servers, &c)
}

/// A backend speaking the binary protocol to a plain server.
fn binary_single() -> Arc<dyn Backend> {
    let servers = Arc::new(vec![Server::start()]);
    let mut c = config(&[&servers[0]], &namespace());
    c.protocol = Some(Protocol::Binary);
    Owned::on(&servers, &c)
}

conformance_suite!(memcached_sasl, Stores::Values, sasl_single);
conformance_suite!(memcached_sasl_pool3, Stores::Values, sasl_pool3);
conformance_suite!(memcached_binary, Stores::Values, binary_single);

dogpile::region!(WRONG, "mc_sasl_wrong");
static CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(region = "mc_sasl_wrong")]
fn answer(n: u32) -> u32 {
    CALLS.fetch_add(1, Ordering::SeqCst);
    n + 1
}

/// A wrong password: the region's calls fail with an error naming the user
/// and the SASL database (never the password); `#[cached]` functions still
/// return their value (computed each time); the server is not marked dead.
#[test]
fn a_wrong_password_is_a_clear_error_and_cached_functions_fail_open() {
    let server = sasl_server(USER, PASSWORD, &[]);
    let c = sasl_config(&server, "wrong password");
    assert!(!format!("{c:?}").contains("wrong password"), "the password stays out of Debug");
    let backend = c.backend().unwrap();
    assert!(!format!("{backend:?}").contains("wrong password"));
    let region = Region::builder("mc_sasl_wrong").backend(backend).build();
    let err = region.get::<u32>("k").unwrap_err().to_string();
    assert!(err.contains("SASL authentication as \"app\" refused"), "{err}");
    assert!(err.contains("SASL database"), "{err}");
    assert!(!err.contains("wrong password"), "{err}");
    let err = region.set("k", 1u32).unwrap_err().to_string();
    assert!(err.contains("refused") && !err.contains("marked dead"), "the same answer, not a dead server: {err}");

    dogpile::configure_region(Region::builder("mc_sasl_wrong").backend(c.backend().unwrap()).build()).unwrap();
    assert_eq!(answer(1), 2);
    assert_eq!(answer(1), 2);
    assert_eq!(CALLS.load(Ordering::SeqCst), 2, "nothing cached, each call computed");
    assert!(WRONG.region().unwrap().stats().backend_errors >= 1);

    // The right password on the same server works.
    let region = Region::builder("mc_sasl_right").backend(sasl_config(&server, PASSWORD).backend().unwrap()).build();
    assert_eq!(region.get_or_create("k", || 7u32).unwrap(), 7);
    assert_eq!(region.get::<u32>("k").unwrap(), Some(7));
}

/// No credentials against a SASL server, and SASL against a server without
/// it: each a clear error.
#[test]
fn sasl_mismatches_between_client_and_server_are_clear_errors() {
    let server = sasl_server(USER, PASSWORD, &[]);
    let mut c = config(&[&server], &namespace());
    c.protocol = Some(Protocol::Binary);
    let region = Region::builder("mc_sasl_none").backend(c.backend().unwrap()).build();
    let err = region.get::<u32>("k").unwrap_err().to_string();
    assert!(err.contains("wants SASL authentication"), "{err}");

    let plain = Server::start();
    let region = Region::builder("mc_sasl_plain").backend(sasl_config(&plain, PASSWORD).backend().unwrap()).build();
    let err = region.get::<u32>("k").unwrap_err().to_string();
    assert!(err.contains("does not do SASL"), "{err}");
}

dogpile::region!(BY_NAME, "mc_sasl_by_name");
dogpile::region!(BAD, "mc_sasl_bad");

/// SASL from configuration by name, and its rules: credentials needed, the
/// binary protocol implied, the text-protocol login refused over binary.
#[test]
fn sasl_from_configuration_by_name() {
    let server = sasl_server(USER, PASSWORD, &[]);
    let toml = format!(
        "[regions.mc_sasl_by_name]\nbackend = \"memcached\"\nservers = [\"{}\"]\nnamespace = \"{}\"\n\
         sasl = true\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n",
        server.addr(),
        namespace()
    );
    dogpile::configure_from_toml(&toml).unwrap();
    assert_eq!(BY_NAME.get_or_create("k", || 5u8).unwrap(), 5);
    assert_eq!(BY_NAME.get::<u8>("k").unwrap(), Some(5));

    let refused = |extra: &str| {
        let toml = format!("[regions.mc_sasl_bad]\nbackend = \"memcached\"\n{extra}\n");
        dogpile::configure_from_toml(&toml).unwrap_err().to_string()
    };
    let err = refused("sasl = true");
    assert!(err.contains("SASL needs `username` and `password`"), "{err}");
    let err = refused("sasl = true\nprotocol = \"meta\"\nusername = \"a\"\npassword = \"b\"");
    assert!(err.contains("binary protocol"), "{err}");
    let err = refused("protocol = \"binary\"\nusername = \"a\"\npassword = \"b\"");
    assert!(err.contains("sasl = true"), "{err}");
    let err = refused("protocol = \"ascii\"");
    assert!(err.contains("protocol"), "{err}");
}
