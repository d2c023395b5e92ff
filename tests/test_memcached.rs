//! The memcached backend against real memcached servers started by the
//! tests: the conformance suite on one server and on a pool of three, the
//! shared-backend suite, ketama placement against libmemcached's golden
//! vectors, and a pool losing and regaining a server.

mod conformance;
mod support_memcached;

use conformance::Stores;
use dogpile::Region;
use dogpile::backends::memcached::Distribution;
use dogpile::backends::{MemcachedBackend, MemcachedConfig};
use std::sync::Arc;
use support_memcached::{Server, config, namespace, pair_on};

conformance_suite!(memcached, Stores::Values, support_memcached::single);
conformance_suite!(memcached_pool3, Stores::Values, support_memcached::pool3);
shared_suite!(memcached_pair, || pair_on(Arc::new(vec![Server::start()])));
shared_suite!(memcached_pool3_pair, || pair_on(Arc::new(vec![Server::start(), Server::start(), Server::start()])));

/// The golden vectors (tests/data/ketama, computed by libmemcached).
fn vectors(name: &str) -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ketama");
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, s) = l.split_once('\t').expect("key<TAB>server");
            (k.to_owned(), s.to_owned())
        })
        .collect()
}

fn check_vectors(file: &str, servers: &[&str], distribution: Distribution) {
    let rows = vectors(file);
    assert_eq!(rows.len(), 1000, "{file}: every even row");
    let mut c = MemcachedConfig::default();
    c.servers = servers.iter().map(|s| s.to_string()).collect();
    c.distribution = match distribution {
        Distribution::Ketama => "ketama",
        Distribution::KetamaMd5 => "ketama_md5",
        Distribution::KetamaWeighted => "ketama_weighted",
        _ => unreachable!(),
    }
    .parse_config();
    let backend = c.backend().unwrap();
    let mut wrong = Vec::new();
    for (key, server) in &rows {
        let got = backend.server_of_item(key).unwrap();
        if &got != server {
            wrong.push((key.clone(), server.clone(), got));
        }
    }
    assert!(
        wrong.is_empty(),
        "{file}: {} of {} rows differ, e.g. {:?}",
        wrong.len(),
        rows.len(),
        &wrong[..wrong.len().min(3)]
    );
}

trait ParseConfig {
    fn parse_config(self) -> dogpile::backends::memcached::DistributionName;
}

impl ParseConfig for &str {
    fn parse_config(self) -> dogpile::backends::memcached::DistributionName {
        let table: toml::Table = format!("d = {self:?}").parse().unwrap();
        table["d"].clone().try_into().unwrap()
    }
}

#[test]
fn ketama_matches_libmemcached_plain3() {
    check_vectors(
        "ketama-plain3.tsv",
        &["127.0.0.1:11211", "127.0.0.1:11212", "127.0.0.1:11213"],
        Distribution::Ketama,
    );
}

#[test]
fn ketama_matches_libmemcached_plain3_drop2() {
    check_vectors("ketama-plain3-drop2.tsv", &["127.0.0.1:11211", "127.0.0.1:11213"], Distribution::Ketama);
}

#[test]
fn ketama_matches_libmemcached_md5mixed4() {
    check_vectors(
        "ketama-md5mixed4.tsv",
        &["127.0.0.1:11211", "127.0.0.1:11311", "127.0.0.2:11211", "127.0.0.2:22122"],
        Distribution::KetamaMd5,
    );
}

#[test]
fn ketama_matches_libmemcached_weighted5() {
    let servers: Vec<String> = (1..=5).map(|i| format!("10.0.0.{i}:11211")).collect();
    let servers: Vec<&str> = servers.iter().map(String::as_str).collect();
    check_vectors("ketama-weighted5.tsv", &servers, Distribution::KetamaWeighted);
}

fn three() -> (Arc<Vec<Server>>, MemcachedConfig) {
    let servers = Arc::new(vec![Server::start(), Server::start(), Server::start()]);
    let c = config(&servers.iter().collect::<Vec<_>>(), &namespace());
    (servers, c)
}

/// 300 keys land on all three servers of a pool, in ketama and rendezvous
/// modes, and each is read back.
#[test]
fn keys_spread_over_three_servers() {
    for distribution in ["ketama", "rendezvous"] {
        let (servers, mut c) = three();
        c.distribution = distribution.parse_config();
        let region = Region::builder("spread").backend(c.backend().unwrap()).build();
        for k in 0..300u32 {
            region.set(&format!("k{k}"), k).unwrap();
        }
        for k in 0..300u32 {
            assert_eq!(region.get::<u32>(&format!("k{k}")).unwrap(), Some(k));
        }
        let counts: Vec<u64> = servers.iter().map(Server::item_count).collect();
        assert_eq!(counts.iter().sum::<u64>(), 300, "{distribution}: {counts:?}");
        assert!(counts.iter().all(|&n| n >= 50), "{distribution}: every server holds a share: {counts:?}");
    }
}

/// One of three servers killed: only its keys miss, every call succeeds;
/// when it comes back (empty), its keys go to it again.
#[test]
fn a_killed_server_loses_only_its_keys_and_gets_them_back() {
    let (servers, c) = three();
    let backend = c.backend().unwrap();
    let owner: Vec<String> = (0..300).map(|k| backend.server_of(&format!("k{k}")).unwrap()).collect();
    let region = Region::builder("failover").backend(backend).build();
    for k in 0..300u32 {
        region.set(&format!("k{k}"), k).unwrap();
    }
    let victim = servers[1].addr();
    let lost = owner.iter().filter(|s| **s == victim).count();
    assert!(lost > 30, "the victim held {lost} keys");
    // Kill it (SIGKILL) through a handle that can reach the server.
    let servers = Arc::into_inner(servers).expect("sole owner");
    let mut servers = servers;
    servers[1].kill();
    let mut missing = 0;
    for k in 0..300u32 {
        let key = format!("k{k}");
        let got = region.get_or_create(&key, || 1_000_000 + k).unwrap();
        if owner[k as usize] == victim {
            assert_eq!(got, 1_000_000 + k, "{key} was on the dead server: recreated elsewhere");
            missing += 1;
        } else {
            assert_eq!(got, k, "{key} did not move");
        }
    }
    assert_eq!(missing, lost);
    assert!(region.stats().backend_errors <= 1, "at most the call that found the server dead: {:?}", region.stats());
    // Back, empty, on its port: after the retry delay its keys go to it.
    servers[1].restart();
    std::thread::sleep(std::time::Duration::from_millis(400));
    for k in 0..300u32 {
        let key = format!("k{k}");
        let got = region.get_or_create(&key, || 2_000_000 + k).unwrap();
        if owner[k as usize] == victim {
            assert_eq!(got, 2_000_000 + k, "{key} is read from its own (empty) server again");
        } else {
            assert_eq!(got, k);
        }
    }
    assert_eq!(servers[1].item_count(), lost as u64, "its keys are back on it");
}

dogpile::region!(BY_NAME, "memcached_by_name");

/// The backend from configuration by name, with a list of servers.
#[test]
fn built_from_configuration_by_name() {
    let server = Server::start();
    let toml = format!(
        "[regions.memcached_by_name]\nbackend = \"memcached\"\nservers = [\"{}\"]\nnamespace = \"{}\"\ndistribution = \"rendezvous\"\n",
        server.addr(),
        namespace()
    );
    dogpile::configure_from_toml(&toml).unwrap();
    assert_eq!(BY_NAME.region().unwrap().backend_name(), "memcached");
    assert_eq!(BY_NAME.get_or_create("k", || 5u8).unwrap(), 5);
    assert_eq!(BY_NAME.get::<u8>("k").unwrap(), Some(5));
    assert_eq!(server.item_count(), 1, "stored on the configured server");
    let err = dogpile::configure_from_toml("[regions.memcached_by_name]\nbackend = \"memcached\"\nservers = []\n")
        .unwrap_err();
    assert!(err.to_string().contains("at least one server"), "{err}");
    assert!(MemcachedBackend::new(&["127.0.0.1:1"]).is_ok(), "no connection before first use");
}
