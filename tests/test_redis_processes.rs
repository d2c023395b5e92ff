//! The distributed dogpile lock across real processes: this test binary
//! re-runs itself as child processes (an environment variable gives each
//! its role), all sharing one `redis-server` started by the parent: a
//! killed lock holder, cross-process stampedes, and invalidations made in
//! one process and seen by the others.

mod support_redis;

use dogpile::Region;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use support_redis::{RedisServer, backend_at, fresh_prefix, keys, raw};

const HANG: Duration = Duration::from_secs(60);
const ROLE: &str = "DOGPILE_REDIS_TEST_ROLE";
const PREFIX: &str = "DOGPILE_REDIS_TEST_PREFIX";

/// This process's role, if it is a child.
fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

fn child_env() -> (String, String) {
    (std::env::var(support_redis::URL_ENV).unwrap(), std::env::var(PREFIX).unwrap())
}

/// Starts this test binary as a child running `test` in `role`.
fn spawn_child(test: &str, role: &str, url: &str, prefix: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(support_redis::URL_ENV, url)
        .env(PREFIX, prefix)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the test binary starts as a child")
}

/// Waits for a child (killing it after [`HANG`]) and returns its stdout.
fn finish(mut child: Child) -> String {
    let deadline = Instant::now() + HANG;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
            assert!(status.success(), "child failed ({status}):\n{out}");
            return out;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("child did not finish within {HANG:?} (hang)");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn counter(con: &mut redis::Connection, key: &str) -> u64 {
    redis::cmd("GET").arg(key).query::<Option<u64>>(con).unwrap().unwrap_or(0)
}

fn region(url: &str, prefix: &str, expiration: Duration) -> Region {
    Region::builder("processes")
        .backend(backend_at(url, prefix))
        .expiration(expiration)
        .lock_timeout(Duration::from_secs(1))
        .build()
}

// ----- a lock holder SIGKILLed -----

/// A child takes the lease of a missing key and is killed (SIGKILL) while
/// it creates: its lease is neither released nor extended any more. Another
/// process waiting for the key creates it only once the lease has expired
/// in Redis, not before.
#[test]
fn a_killed_lock_holder_blocks_others_until_its_lease_expires() {
    if role().as_deref() == Some("holder") {
        let (url, prefix) = child_env();
        let mut con = raw(&url);
        let r = region(&url, &prefix, Duration::from_secs(60));
        let _ = r.get_or_create("k", || {
            let _: () = redis::cmd("INCR").arg(format!("{prefix}creations")).query(&mut con).unwrap();
            std::thread::sleep(HANG);
            1u32
        });
        unreachable!("killed while creating");
    }
    let server = RedisServer::start();
    let (url, prefix) = (server.url(), fresh_prefix());
    let mut con = raw(&url);
    let child = spawn_child("a_killed_lock_holder_blocks_others_until_its_lease_expires", "holder", &url, &prefix);
    let deadline = Instant::now() + HANG;
    while counter(&mut con, &format!("{prefix}creations")) == 0 {
        assert!(Instant::now() < deadline, "the child never started creating");
        std::thread::sleep(Duration::from_millis(5));
    }
    let lease = keys(&mut con, &format!("{prefix}*:lease")).pop().expect("the child's lease in Redis");
    let mut child = child;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let killed = Instant::now();
    let pttl: i64 = redis::cmd("PTTL").arg(&lease).query(&mut con).unwrap();
    assert!(pttl > 0, "the killed holder's lease is still in Redis (PTTL {pttl})");

    let r = region(&url, &prefix, Duration::from_secs(60));
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let regenerator = std::thread::spawn(move || {
        r.get_or_create("k", || {
            started_tx.send(Instant::now()).unwrap();
            2u32
        })
        .unwrap()
    });
    // Watch the lease until it is gone; the creator may not start before.
    let mut last_held = killed;
    loop {
        let exists: bool = redis::cmd("EXISTS").arg(&lease).query(&mut con).unwrap();
        if !exists {
            break;
        }
        last_held = Instant::now();
        assert!(last_held < killed + HANG, "the lease never expired");
        std::thread::sleep(Duration::from_millis(2));
    }
    let started = started_rx.recv_timeout(HANG).expect("the other process created the value");
    assert!(started >= last_held, "the creator started while the killed holder's lease was still in Redis");
    assert!(last_held > killed, "the other process had to wait for the expiry");
    assert_eq!(regenerator.join().unwrap(), 2);
    assert_eq!(counter(&mut con, &format!("{prefix}creations")), 1, "the killed creator ran once, then this one");
}

// ----- cross-process stampede -----

/// In a child: 8 threads call `get_or_create` on one key together once the
/// parent says go; the creator takes 200 ms and counts itself in Redis.
/// Prints one `RESULT <value>` line per thread.
fn stampede_child(expiration: Duration) {
    let (url, prefix) = child_env();
    let mut con = raw(&url);
    let r = region(&url, &prefix, expiration);
    let _: () = redis::cmd("INCR").arg(format!("{prefix}ready")).query(&mut con).unwrap();
    let deadline = Instant::now() + HANG;
    while !redis::cmd("EXISTS").arg(format!("{prefix}go")).query::<bool>(&mut con).unwrap() {
        assert!(Instant::now() < deadline, "never told to go");
        std::thread::sleep(Duration::from_millis(1));
    }
    let barrier = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (r, barrier, url, prefix) = (r.clone(), barrier.clone(), url.clone(), prefix.clone());
            std::thread::spawn(move || {
                barrier.wait();
                r.get_or_create("k", || {
                    let mut con = raw(&url);
                    let _: () = redis::cmd("INCR").arg(format!("{prefix}creations")).query(&mut con).unwrap();
                    std::thread::sleep(Duration::from_millis(200));
                    2u32
                })
                .unwrap()
            })
        })
        .collect();
    for t in threads {
        println!("RESULT {}", t.join().unwrap());
    }
}

/// Runs 4 stampede children and returns every thread's value.
fn stampede(test: &str, url: &str, prefix: &str) -> Vec<u32> {
    let mut con = raw(url);
    let children: Vec<Child> = (0..4).map(|_| spawn_child(test, "stampede", url, prefix)).collect();
    let deadline = Instant::now() + HANG;
    while counter(&mut con, &format!("{prefix}ready")) < 4 {
        assert!(Instant::now() < deadline, "children never got ready");
        std::thread::sleep(Duration::from_millis(2));
    }
    let _: () = redis::cmd("SET").arg(format!("{prefix}go")).arg(1).query(&mut con).unwrap();
    let outputs: Vec<String> = children.into_iter().map(finish).collect();
    let values: Vec<u32> = outputs
        .iter()
        // The harness prints `test <name> ... ` before the first line.
        .flat_map(|o| o.lines())
        .filter_map(|l| l.split_once("RESULT ").map(|(_, v)| v))
        .map(|v| v.trim().parse().unwrap())
        .collect();
    assert_eq!(values.len(), 32, "4 processes x 8 threads answered:\n{outputs:?}");
    values
}

/// 4 processes x 8 threads on one missing key, a 200 ms creator: one
/// creation overall, and every caller gets its value.
#[test]
fn cross_process_stampede_on_a_missing_key_creates_once() {
    if role().is_some() {
        return stampede_child(Duration::from_secs(60));
    }
    let server = RedisServer::start();
    let (url, prefix) = (server.url(), fresh_prefix());
    let values = stampede("cross_process_stampede_on_a_missing_key_creates_once", &url, &prefix);
    assert!(values.iter().all(|v| *v == 2), "{values:?}");
    assert_eq!(counter(&mut raw(&url), &format!("{prefix}creations")), 1, "one creation overall");
}

/// The same on an expired key: one creation overall, and every other
/// caller in every process gets the stale value at once.
#[test]
fn cross_process_stampede_on_an_expired_key_serves_stale() {
    let expiration = Duration::from_millis(500);
    if role().is_some() {
        return stampede_child(expiration);
    }
    let server = RedisServer::start();
    let (url, prefix) = (server.url(), fresh_prefix());
    region(&url, &prefix, expiration).set("k", 1u32).unwrap();
    std::thread::sleep(expiration + Duration::from_millis(100));
    let values = stampede("cross_process_stampede_on_an_expired_key_serves_stale", &url, &prefix);
    assert_eq!(counter(&mut raw(&url), &format!("{prefix}creations")), 1, "one creation overall");
    let fresh = values.iter().filter(|v| **v == 2).count();
    assert_eq!((fresh, values.len() - fresh), (1, 31), "the creator gets its value, the 31 others the stale one");
}

// ----- invalidation seen by other processes -----

/// A region that reads the shared invalidation marker on every call (so
/// the test needs no waiting for a refresh period).
fn watching(url: &str, prefix: &str) -> Region {
    Region::builder("processes")
        .backend(backend_at(url, prefix))
        .expiration(Duration::from_secs(3600))
        .invalidation_refresh(Duration::ZERO)
        .lock_timeout(Duration::from_secs(1))
        .build()
}

/// Waits until the counter `name` (under the test's prefix) reaches `n`.
fn wait_for(con: &mut redis::Connection, prefix: &str, name: &str, n: u64) {
    let deadline = Instant::now() + HANG;
    while counter(con, &format!("{prefix}{name}")) < n {
        assert!(Instant::now() < deadline, "`{name}` never reached {n}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn bump(con: &mut redis::Connection, prefix: &str, name: &str) {
    let _: () = redis::cmd("INCR").arg(format!("{prefix}{name}")).query(con).unwrap();
}

/// The `RESULT` lines a child printed.
fn results(out: &str) -> Vec<String> {
    out.lines().filter_map(|l| l.split_once("RESULT ").map(|(_, v)| v.trim().to_owned())).collect()
}

/// The parent stores a value and a child reads it; the parent invalidates
/// its region (hard); the child's next read is a miss and its
/// `get_or_create` creates, which the parent then reads.
#[test]
fn a_hard_invalidation_in_one_process_is_a_miss_in_another() {
    if role().is_some() {
        let (url, prefix) = child_env();
        let mut con = raw(&url);
        let r = watching(&url, &prefix);
        println!("RESULT before {:?}", r.get::<u32>("k").unwrap());
        bump(&mut con, &prefix, "seen");
        wait_for(&mut con, &prefix, "invalidated", 1);
        println!("RESULT after {:?}", r.get::<u32>("k").unwrap());
        let created = r.get_or_create("k", || {
            bump(&mut con, &prefix, "creations");
            2u32
        });
        println!("RESULT created {}", created.unwrap());
        return;
    }
    let server = RedisServer::start();
    let (url, prefix) = (server.url(), fresh_prefix());
    let mut con = raw(&url);
    let parent = watching(&url, &prefix);
    parent.set("k", 1u32).unwrap();
    let child = spawn_child("a_hard_invalidation_in_one_process_is_a_miss_in_another", "reader", &url, &prefix);
    wait_for(&mut con, &prefix, "seen", 1);
    // The invalidation's time must follow the value's (millisecond words).
    std::thread::sleep(Duration::from_millis(5));
    parent.invalidate(dogpile::Invalidation::Hard);
    bump(&mut con, &prefix, "invalidated");
    let out = finish(child);
    assert_eq!(results(&out), ["before Some(1)", "after None", "created 2"], "{out}");
    assert_eq!(counter(&mut con, &format!("{prefix}creations")), 1);
    assert_eq!(parent.get::<u32>("k").unwrap(), Some(2), "the child's new value is not invalidated");
}

/// The parent invalidates its region (soft) while two children hold the
/// value: one regenerates (held until the parent says go), and meanwhile
/// the other is served the stale value at once, without creating; then
/// every process reads the new value.
#[test]
fn a_soft_invalidation_in_one_process_serves_stale_in_another_while_one_regenerates() {
    const TEST: &str = "a_soft_invalidation_in_one_process_serves_stale_in_another_while_one_regenerates";
    if let Some(role) = role() {
        let (url, prefix) = child_env();
        let mut con = raw(&url);
        let r = watching(&url, &prefix);
        assert_eq!(r.get::<u32>("k").unwrap(), Some(1), "{role}: the value before the invalidation");
        bump(&mut con, &prefix, "seen");
        wait_for(&mut con, &prefix, "invalidated", 1);
        let value = if role == "regenerator" {
            r.get_or_create("k", || {
                bump(&mut con, &prefix, "regenerating");
                wait_for(&mut con, &prefix, "go", 1);
                2u32
            })
        } else {
            wait_for(&mut con, &prefix, "regenerating", 1);
            r.get_or_create("k", || -> u32 { panic!("the other process regenerates already") })
        };
        println!("RESULT {}", value.unwrap());
        return;
    }
    let server = RedisServer::start();
    let (url, prefix) = (server.url(), fresh_prefix());
    let mut con = raw(&url);
    let parent = watching(&url, &prefix);
    parent.set("k", 1u32).unwrap();
    let regenerator = spawn_child(TEST, "regenerator", &url, &prefix);
    let reader = spawn_child(TEST, "reader", &url, &prefix);
    wait_for(&mut con, &prefix, "seen", 2);
    std::thread::sleep(Duration::from_millis(5));
    parent.invalidate(dogpile::Invalidation::Soft);
    bump(&mut con, &prefix, "invalidated");
    let out = finish(reader);
    assert_eq!(results(&out), ["1"], "the stale value, while the other process regenerates:\n{out}");
    bump(&mut con, &prefix, "go");
    let out = finish(regenerator);
    assert_eq!(results(&out), ["2"], "{out}");
    assert_eq!(counter(&mut con, &format!("{prefix}regenerating")), 1, "one regeneration");
    assert_eq!(parent.get::<u32>("k").unwrap(), Some(2));
    assert_eq!(watching(&url, &prefix).get::<u32>("k").unwrap(), Some(2), "a new process reads the new value");
}
