//! The Redis backend when a server hangs rather than goes away: the test
//! freezes a real `redis-server` (SIGSTOP), so its port still accepts
//! connections (the kernel completes them) but nothing is ever answered.
//! Every call must end with an error within the backend's timeouts, not
//! wait for the server; `#[cached]` functions fail open; when the server
//! runs again (SIGCONT), caching resumes by itself. The same for a hung
//! Sentinel.

mod support_redis;

use dogpile::backends::RedisBackend;
use dogpile::{Error, Region, cached};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support_redis::{RedisServer, SentinelSetup, fresh_prefix};

/// A hang guard only: every call below ends within a few of the backend's
/// 300 ms timeouts when the backend is right.
const HANG: Duration = Duration::from_secs(30);

/// Runs `f` on a thread of its own and fails the test, instead of hanging
/// it, if `f` has not returned within [`HANG`].
fn guarded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let handle = std::thread::spawn(f);
    let deadline = Instant::now() + HANG;
    while !handle.is_finished() {
        assert!(Instant::now() < deadline, "{what}: no answer within {HANG:?} from a hung server (hang)");
        std::thread::sleep(Duration::from_millis(1));
    }
    handle.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

fn backend(url: &str) -> RedisBackend {
    RedisBackend::builder(url)
        .key_prefix(fresh_prefix())
        .connect_timeout(Duration::from_millis(300))
        .io_timeout(Duration::from_millis(300))
        .build()
        .expect("a valid URL")
}

dogpile::region!(HUNG, "redis_hung");
static HUNG_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(region = "redis_hung")]
fn cube(n: u64) -> u64 {
    HUNG_CALLS.fetch_add(1, Ordering::SeqCst);
    n * n * n
}

fn uncached_calls_of_cube() -> u64 {
    dogpile::cached_functions()
        .into_iter()
        .find(|f| f.function.ends_with("::cube"))
        .expect("cube is registered")
        .uncached_calls
}

/// A frozen server: the region API returns errors (pooled connections time
/// out on the reply, new ones on their set-up), `#[cached]` returns correct
/// values uncached and counted, and once the server runs again caching
/// resumes without any action.
#[test]
fn a_hung_server_is_an_error_not_a_hang_and_caching_resumes() {
    let server = RedisServer::start();
    let region =
        Region::builder("redis_hung").backend(backend(&server.url())).expiration(Duration::from_secs(3600)).build();
    dogpile::configure_region(region.clone()).unwrap();
    assert_eq!(cube(2), 8);
    assert_eq!(cube(2), 8);
    assert_eq!(HUNG_CALLS.load(Ordering::SeqCst), 1, "cached while the server answers");
    region.set("direct", 1u32).unwrap();
    let uncached_before = uncached_calls_of_cube();

    server.pause();
    let errors_before = region.stats().backend_errors;
    let r = region.clone();
    let read = guarded("get", move || r.get::<u32>("direct"));
    assert!(matches!(read, Err(Error::Backend(ref e)) if e.backend() == "redis"), "{read:?}");
    let r = region.clone();
    assert!(guarded("set", move || r.set("written-while-hung", 2u32)).is_err());
    let r = region.clone();
    let created = guarded("get_or_create", move || r.get_or_create("created-while-hung", || 3u32));
    assert!(matches!(created, Err(Error::Backend(_))), "{created:?}");
    for _ in 0..3 {
        assert_eq!(guarded("#[cached]", || cube(3)), 27, "fails open: a correct value");
    }
    assert_eq!(HUNG_CALLS.load(Ordering::SeqCst), 4, "the body ran for every call while hung");
    assert_eq!(uncached_calls_of_cube(), uncached_before + 3, "each fail-open call is counted for the function");
    assert!(region.stats().backend_errors >= errors_before + 6, "{:?}", region.stats());

    server.resume();
    // New keys: a request that timed out was still queued in the frozen
    // server and may run once it resumes.
    assert_eq!(guarded("#[cached] after resume", || cube(4)), 64);
    assert_eq!(guarded("#[cached] after resume", || cube(4)), 64);
    assert_eq!(HUNG_CALLS.load(Ordering::SeqCst), 5, "caching resumed by itself");
    assert_eq!(region.get::<u32>("direct").unwrap(), Some(1), "the value stored before the hang is served");
}

/// A frozen Sentinel: a backend that never found the master returns an
/// error naming the Sentinels; one that found it before uses that master
/// again (confirmed by `ROLE`) for its new connections. Neither waits for
/// the Sentinel, and once it runs again the first backend finds the master.
#[test]
fn a_hung_sentinel_is_an_error_or_the_known_master_not_a_hang() {
    let setup = SentinelSetup::start();
    let prefix = fresh_prefix();
    let region = || {
        let backend = RedisBackend::sentinel(&[&setup.sentinel.url()], "mymaster")
            .key_prefix(&prefix)
            .connect_timeout(Duration::from_millis(300))
            .io_timeout(Duration::from_millis(300))
            .build()
            .expect("valid Sentinel settings");
        Region::builder("sentinel-hung").backend(backend).build()
    };
    let (known, fresh) = (region(), region());
    known.set("k", 1u32).unwrap();

    setup.sentinel.pause();
    // The known backend's pooled connection is closed, so it has to make a
    // new one while the Sentinel hangs.
    let killed = setup.master.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
    assert!(killed.trim().parse::<u32>().unwrap_or(0) >= 1, "connections killed: {killed:?}");
    let r = fresh.clone();
    let read = guarded("get through a hung Sentinel", move || r.get::<u32>("k"));
    match read {
        Err(Error::Backend(e)) => assert!(e.to_string().contains("Sentinel"), "{e}"),
        other => panic!("no master was ever found, so an error: {other:?}"),
    }
    let r = known.clone();
    assert_eq!(guarded("get from the known master", move || r.get::<u32>("k")).unwrap(), Some(1));
    let r = known.clone();
    guarded("set on the known master", move || r.set("k", 2u32)).unwrap();

    setup.sentinel.resume();
    let r = fresh.clone();
    assert_eq!(guarded("get after the Sentinel resumed", move || r.get::<u32>("k")).unwrap(), Some(2));
}
