//! The Redis backend's async interface (feature `redis-async`) against
//! real servers, where its managed connection could go wrong: a region
//! built while Redis is down, a server that hangs, and a backend used from
//! one tokio runtime and then, once that runtime is gone, from another.

mod support_redis;

use dogpile::{Error, Region, cached};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support_redis::{RedisServer, backend_at, fresh_prefix, keys, raw};
use tokio::runtime::Runtime;

/// A hang guard only.
const HANG: Duration = Duration::from_secs(30);

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// `future`, or a failed test if it has not ended within [`HANG`].
async fn guarded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG, future).await.unwrap_or_else(|_| panic!("{what}: no answer within {HANG:?} (hang)"))
}

fn uncached_calls_of(function: &str) -> u64 {
    dogpile::cached_functions()
        .into_iter()
        .find(|f| f.function.ends_with(function))
        .unwrap_or_else(|| panic!("{function} is registered"))
        .uncached_calls
}

dogpile::region!(BUILT_DOWN, "redis_async_built_down");
static DOUBLE_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(region = "redis_async_built_down")]
async fn double(n: u64) -> u64 {
    DOUBLE_CALLS.fetch_add(1, Ordering::SeqCst);
    n * 2
}

/// A region on the async interface built while Redis is down: its calls
/// are errors and `#[cached] async fn` fails open (counted); once a server
/// starts on the same port, calls succeed and caching works, without any
/// action.
#[test]
fn an_async_region_built_while_redis_is_down_works_once_redis_starts() {
    let mut server = RedisServer::start();
    let url = server.url();
    server.stop();
    let region = Region::builder("redis_async_built_down")
        .backend(backend_at(&url, &fresh_prefix()))
        .expiration(Duration::from_secs(3600))
        .build();
    dogpile::configure_region(region.clone()).unwrap();
    let rt = runtime();
    rt.block_on(async {
        let read = guarded("get_async", region.get_async::<u32>("k")).await;
        assert!(matches!(read, Err(Error::Backend(ref e)) if e.backend() == "redis"), "{read:?}");
        assert!(guarded("set_async", region.set_async("k", 1u32)).await.is_err());
        let created = guarded("get_or_create_async", region.get_or_create_async("c", || async { 1u32 })).await;
        assert!(matches!(created, Err(Error::Backend(_))), "{created:?}");
        let uncached_before = uncached_calls_of("::double");
        assert_eq!(guarded("#[cached]", double(2)).await, 4, "fails open: a correct value");
        assert_eq!(guarded("#[cached]", double(2)).await, 4);
        assert_eq!(DOUBLE_CALLS.load(Ordering::SeqCst), 2, "the body ran for every call while down");
        assert_eq!(uncached_calls_of("::double"), uncached_before + 2, "each fail-open call is counted");
    });

    server.restart();
    rt.block_on(async {
        // The managed connection reconnects in the background: the first
        // calls after the start may still fail.
        let deadline = Instant::now() + HANG;
        while guarded("set_async after the start", region.set_async("k", 1u32)).await.is_err() {
            assert!(Instant::now() < deadline, "the async interface never reached the started server");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(region.get_async::<u32>("k").await.unwrap(), Some(1));
        assert_eq!(region.get_or_create_async("c", || async { 3u32 }).await.unwrap(), 3);
        let calls = DOUBLE_CALLS.load(Ordering::SeqCst);
        assert_eq!(double(5).await, 10);
        assert_eq!(double(5).await, 10);
        assert_eq!(DOUBLE_CALLS.load(Ordering::SeqCst), calls + 1, "cached once Redis is up");
    });
}

/// A frozen server (SIGSTOP: connections accepted, nothing answered): async
/// calls are errors within the response timeout, not hangs; after SIGCONT
/// they succeed again.
#[test]
fn a_hung_server_is_an_error_for_async_callers_too() {
    let server = RedisServer::start();
    let backend = dogpile::backends::RedisBackend::builder(server.url())
        .key_prefix(fresh_prefix())
        .connect_timeout(Duration::from_millis(300))
        .io_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let region = Region::builder("redis_async_hung").backend(backend).build();
    runtime().block_on(async {
        region.set_async("k", 1u32).await.unwrap();
        server.pause();
        let read = guarded("get_async from a hung server", region.get_async::<u32>("k")).await;
        assert!(matches!(read, Err(Error::Backend(_))), "{read:?}");
        let created = guarded("get_or_create_async", region.get_or_create_async("c", || async { 2u32 })).await;
        assert!(matches!(created, Err(Error::Backend(_))), "{created:?}");
        server.resume();
        let deadline = Instant::now() + HANG;
        let value = loop {
            match guarded("get_async after resume", region.get_async::<u32>("k")).await {
                Ok(v) => break v,
                Err(e) => assert!(Instant::now() < deadline, "never answered again: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(value, Some(1));
    });
}

/// The async connection lives on a runtime: a backend first used from a
/// runtime that is then shut down keeps working from the next runtime, for
/// plain calls and for leases (whose requests run as tasks), which are
/// released when the creation ends.
#[test]
fn a_backend_outlives_the_runtime_it_was_first_used_from() {
    let server = RedisServer::start();
    let prefix = fresh_prefix();
    let region = Region::builder("redis_async_runtimes").backend(backend_at(&server.url(), &prefix)).build();
    let first = runtime();
    first.block_on(async {
        region.set_async("k", 1u32).await.unwrap();
        assert_eq!(region.get_or_create_async("c", || async { 1u32 }).await.unwrap(), 1);
    });
    drop(first);

    for round in 0..2u32 {
        // A runtime of each flavour.
        let next = if round == 0 {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
        } else {
            runtime()
        };
        next.block_on(async {
            assert_eq!(guarded("get_async", region.get_async::<u32>("k")).await.unwrap(), Some(1), "round {round}");
            guarded("set_async", region.set_async("k", 2u32)).await.unwrap();
            assert_eq!(region.get_async::<u32>("k").await.unwrap(), Some(2));
            let key = format!("created-{round}");
            let made = guarded("get_or_create_async", region.get_or_create_async(&key, || async { 3u32 })).await;
            assert_eq!(made.unwrap(), 3, "round {round}");
            region.set_async("k", 1u32).await.unwrap();
        });
        drop(next);
    }
    let mut con = raw(&server.url());
    assert_eq!(keys(&mut con, &format!("{prefix}*:lease")), Vec::<String>::new(), "every lease was released");
}

/// Regression: an async creator dropped by a timeout on a current-thread
/// runtime that is then no longer driven must not keep its key's in-process
/// lock until its lease's release ends. That release needs the runtime, and
/// a blocking caller on the same thread waiting for the lock would wait
/// forever. The blocking caller waits for the lease instead (it expires:
/// its keeper stopped with the creator), then creates.
#[test]
fn a_timed_out_async_creator_leaves_its_key_to_blocking_callers_of_its_thread() {
    let server = RedisServer::start();
    let region = Region::builder("redis_async_dropped_creator")
        .backend(backend_at(&server.url(), &fresh_prefix()))
        .expiration(Duration::from_secs(3600))
        .lock_timeout(Duration::from_secs(1))
        .lease_keep_alive(Duration::from_millis(250))
        .build();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let creation = region.get_or_create_async("k", || async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        1u32
    });
    let timed_out = rt.block_on(async { tokio::time::timeout(Duration::from_millis(300), creation).await });
    assert!(timed_out.is_err(), "the creator is dropped by the timeout");
    // The runtime is not driven any more. A hang here is this test failing:
    // a watchdog ends the process with a message.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watched = done.clone();
    std::thread::spawn(move || {
        std::thread::sleep(HANG);
        if !watched.load(Ordering::SeqCst) {
            eprintln!("a blocking caller still waits for the key's in-process lock after {HANG:?}");
            std::process::exit(101);
        }
    });
    let value = region.get_or_create("k", || 2u32).unwrap();
    done.store(true, Ordering::SeqCst);
    assert_eq!(value, 2, "the blocking caller creates once the dropped creator's lease is gone");
    drop(rt);
}
