//! The conformance suite against Redis Sentinel (1 master, 1 replica, 1
//! Sentinel) and Redis Cluster (3 masters), each started by the test, and
//! what is particular to each: writes reach the master; a multi-key read
//! spans slots on several nodes; a value and its lease share a slot.

mod conformance;
mod support_redis;

use conformance::Stores;
use dogpile::Region;
use std::time::{Duration, Instant};
use support_redis::{fresh_prefix, keys, raw, shared_cluster, shared_sentinel};

conformance_suite!(redis_sentinel, Stores::Values, || shared_sentinel().backend());
shared_suite!(redis_sentinel_pair, || shared_sentinel().pair());
conformance_suite!(redis_cluster, Stores::Values, || shared_cluster().backend());
shared_suite!(redis_cluster_pair, || shared_cluster().pair());

/// Through the Sentinel, values are written to the master (and replicated).
#[test]
fn sentinel_writes_go_to_the_master() {
    let setup = shared_sentinel();
    let prefix = fresh_prefix();
    let region = Region::builder("sentinel").backend(setup.backend_with(&prefix)).build();
    region.set("k", 7u32).unwrap();
    assert_eq!(region.get::<u32>("k").unwrap(), Some(7));
    let mut master = raw(&setup.master.url());
    assert_eq!(keys(&mut master, &format!("{prefix}*")).len(), 1, "the value is on the master");
    let mut replica = raw(&setup.replica.url());
    let deadline = Instant::now() + Duration::from_secs(30);
    while keys(&mut replica, &format!("{prefix}*")).is_empty() {
        assert!(Instant::now() < deadline, "never replicated");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A multi-key read and write over keys spread on the three masters; the
/// value and lease keys of one key sit in one slot.
#[test]
fn cluster_multi_key_calls_span_nodes_and_leases_share_the_values_slot() {
    let setup = shared_cluster();
    let prefix = fresh_prefix();
    let region = Region::builder("cluster").backend(setup.backend_with(&prefix)).build();
    let keys_: Vec<String> = (0..60).map(|i| format!("key-{i}")).collect();
    let refs: Vec<&str> = keys_.iter().map(String::as_str).collect();
    let values: Vec<u32> = (0..60).collect();
    region.set_multi(refs.iter().copied().zip(values.iter().copied())).unwrap();
    let read: Vec<Option<u32>> = region.get_multi(&refs).unwrap();
    assert_eq!(read, values.iter().copied().map(Some).collect::<Vec<_>>());
    let per_node: Vec<usize> =
        setup.nodes.iter().map(|n| keys(&mut raw(&n.url()), &format!("{prefix}*")).len()).collect();
    assert_eq!(per_node.iter().sum::<usize>(), 60);
    assert!(per_node.iter().all(|n| *n > 0), "keys on every master: {per_node:?}");
    let created: Vec<u32> = region.get_or_create_multi(&refs, |missing| missing.iter().map(|_| 99).collect()).unwrap();
    assert_eq!(created, values);
    region.delete_multi(&refs).unwrap();
    assert!(region.get_multi::<u32, &str>(&refs).unwrap().iter().all(Option::is_none));

    let node = &setup.nodes[0];
    let value_key = format!("{prefix}{{=k}}");
    let slot_of = |key: &str| node.cli(&["CLUSTER", "KEYSLOT", key]).trim().to_owned();
    assert_eq!(slot_of(&value_key), slot_of(&format!("{value_key}:lease")));
}

/// After a failover (the master killed, the Sentinel promotes the replica),
/// the backend follows: new connections ask the Sentinel for the master,
/// and writes succeed again without any action.
#[test]
fn sentinel_failover_is_followed() {
    let mut setup = support_redis::SentinelSetup::start();
    let region = Region::builder("failover").backend(setup.backend_with(&fresh_prefix())).build();
    region.set("k", 1u32).unwrap();
    let replica_port = setup.replica.port.to_string();
    setup.master.stop();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !setup.sentinel.cli(&["SENTINEL", "get-master-addr-by-name", "mymaster"]).contains(&replica_port) {
        assert!(Instant::now() < deadline, "the Sentinel never promoted the replica");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The promoted replica may take a moment to accept writes.
    let deadline = Instant::now() + Duration::from_secs(30);
    while region.set("k", 2u32).is_err() {
        assert!(Instant::now() < deadline, "writes never reached the new master");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(region.get::<u32>("k").unwrap(), Some(2));
    assert!(setup.replica.cli(&["ROLE"]).starts_with("master"), "written to the promoted master");
}
