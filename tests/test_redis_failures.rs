//! The Redis backend against real servers when things go wrong: Redis
//! stopped mid-run, a lock holder's connection killed, a creator slower than
//! the lease, bad bytes under a key, awkward keys.

mod support_redis;

use dogpile::backends::RedisBackend;
use dogpile::{Codec, Error, Region, cached};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use support_redis::{RedisServer, backend_at, fresh_prefix, keys, raw, shared};

const HANG: Duration = Duration::from_secs(60);

fn join<T>(handle: std::thread::JoinHandle<T>) -> T {
    let deadline = Instant::now() + HANG;
    while !handle.is_finished() {
        assert!(Instant::now() < deadline, "thread did not finish within {HANG:?} (hang)");
        std::thread::sleep(Duration::from_millis(1));
    }
    handle.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

fn region_on(url: &str, prefix: &str) -> Region {
    Region::builder("redis-failures").backend(backend_at(url, prefix)).expiration(Duration::from_secs(60)).build()
}

// ----- Redis stopped mid-run -----

dogpile::region!(STOPPED, "redis_stopped");
static STOPPED_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(region = "redis_stopped")]
fn square(n: u64) -> u64 {
    STOPPED_CALLS.fetch_add(1, Ordering::SeqCst);
    n * n
}

fn uncached_calls_of_square() -> u64 {
    dogpile::cached_functions()
        .into_iter()
        .find(|f| f.function.ends_with("::square"))
        .expect("square is registered")
        .uncached_calls
}

/// While Redis is down the region API returns errors and `#[cached]`
/// functions return correct values uncached (counted); when Redis is back,
/// caching resumes without any action. The region is configured by name
/// (`backend = "redis"`) before Redis ever started, which is fine: the
/// backend connects on first use.
#[test]
fn redis_stopped_mid_run_fails_open_and_resumes() {
    let mut server = RedisServer::start();
    let url = server.url();
    server.stop();
    let toml = format!(
        "[regions.redis_stopped]\nbackend = \"redis\"\nurl = \"{url}\"\nkey_prefix = \"{}\"\n\
         connect_timeout_ms = 300\nio_timeout_ms = 1000\nexpiration = \"1h\"\n",
        fresh_prefix()
    );
    dogpile::configure_from_toml(&toml).expect("configured while Redis is down");
    assert_eq!(square(3), 9, "down from the start: the body runs");
    server.restart();

    assert_eq!(square(4), 16);
    assert_eq!(square(4), 16);
    assert_eq!(STOPPED_CALLS.load(Ordering::SeqCst), 2, "cached while Redis is up");
    let region = STOPPED.region().unwrap();
    region.set("direct", 1u32).unwrap();

    server.stop();
    let errors_before = region.stats().backend_errors;
    let uncached_before = uncached_calls_of_square();
    assert!(matches!(region.get::<u32>("direct"), Err(Error::Backend(ref e)) if e.backend() == "redis"));
    assert!(region.set("direct", 2u32).is_err());
    assert!(matches!(region.get_or_create("other", || 1u32), Err(Error::Backend(_))));
    for _ in 0..3 {
        assert_eq!(square(5), 25, "fails open: a correct value");
    }
    assert_eq!(STOPPED_CALLS.load(Ordering::SeqCst), 5, "the body ran for every call while down");
    assert_eq!(uncached_calls_of_square(), uncached_before + 3, "each fail-open call is counted for the function");
    assert!(region.stats().backend_errors >= errors_before + 6, "{:?}", region.stats());

    server.restart();
    assert_eq!(square(6), 36);
    assert_eq!(square(6), 36);
    assert_eq!(STOPPED_CALLS.load(Ordering::SeqCst), 6, "caching resumed by itself");
    assert_eq!(region.get::<u32>("direct").unwrap(), None, "a restarted Redis without persistence is empty");
    region.set("direct", 3u32).unwrap();
    assert_eq!(region.get::<u32>("direct").unwrap(), Some(3));
}

/// The async interface, too, errors while Redis is down and recovers when it
/// is back (its managed connection reconnects).
#[cfg(feature = "redis-async")]
#[test]
fn async_interface_errors_while_down_and_recovers() {
    let mut server = RedisServer::start();
    let region = region_on(&server.url(), &fresh_prefix());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(region.get_or_create_async("k", || async { 1u32 }).await.unwrap(), 1);
        server.stop();
        let r = tokio::time::timeout(HANG, region.get_or_create_async("k2", || async { 2u32 })).await.expect("hang");
        assert!(matches!(r, Err(Error::Backend(_))), "{r:?}");
        server.restart();
        let deadline = Instant::now() + HANG;
        loop {
            match region.get_or_create_async("k3", || async { 3u32 }).await {
                Ok(v) => break assert_eq!(v, 3),
                Err(_) => assert!(Instant::now() < deadline, "never reconnected"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(region.get_async::<u32>("k3").await.unwrap(), Some(3));
    });
}

// ----- the lock -----

/// A creator slower than the lease time to live keeps its lease (the
/// region extends it), so another process waiting for the missing value
/// neither creates nor gives up: one creation, both get its value.
#[test]
fn a_creator_slower_than_the_lease_creates_once() {
    let server = shared();
    let prefix = fresh_prefix();
    let build = || {
        Region::builder("slow")
            .backend(backend_at(&server.url(), &prefix))
            .lock_timeout(Duration::from_millis(300))
            .build()
    };
    let (a, b) = (build(), build());
    let creations = Arc::new(AtomicUsize::new(0));
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let first = {
        let creations = creations.clone();
        std::thread::spawn(move || {
            a.get_or_create("slow", || {
                started_tx.send(()).unwrap();
                creations.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(1200));
                1u32
            })
            .unwrap()
        })
    };
    started_rx.recv_timeout(HANG).expect("creator started");
    let second = {
        let creations = creations.clone();
        std::thread::spawn(move || {
            b.get_or_create("slow", || {
                creations.fetch_add(1, Ordering::SeqCst);
                2u32
            })
            .unwrap()
        })
    };
    assert_eq!((join(first), join(second)), (1, 1), "the other process waited for the slow creator's value");
    assert_eq!(creations.load(Ordering::SeqCst), 1);
}

/// The lock holder's connections are killed (`CLIENT KILL`) while it
/// creates: its lease stays in Redis, so the other process does not start a
/// creation before it is released; nothing hangs and one creation happens.
#[test]
fn killing_the_holders_connection_starts_no_second_creator() {
    let server = RedisServer::start();
    let prefix = fresh_prefix();
    let build = |name| {
        Region::builder(name)
            .backend(backend_at(&server.url(), &prefix))
            .lock_timeout(Duration::from_millis(500))
            .build()
    };
    let (a, b) = (build("holder"), build("other"));
    let creations = Arc::new(AtomicUsize::new(0));
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let holder = {
        let creations = creations.clone();
        std::thread::spawn(move || {
            a.get_or_create("k", || {
                creations.fetch_add(1, Ordering::SeqCst);
                started_tx.send(()).unwrap();
                go_rx.recv_timeout(HANG).expect("released by the test");
                1u32
            })
        })
    };
    started_rx.recv_timeout(HANG).expect("creator started");
    let killed = server.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
    assert!(killed.trim().parse::<u32>().unwrap_or(0) >= 1, "connections killed: {killed:?}");
    let waiter = {
        let creations = creations.clone();
        std::thread::spawn(move || {
            b.get_or_create("k", || {
                creations.fetch_add(1, Ordering::SeqCst);
                2u32
            })
        })
    };
    // Longer than the lease time to live: the keeper must have extended it
    // over new connections.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(creations.load(Ordering::SeqCst), 1, "no second creator while the holder runs");
    assert!(!waiter.is_finished(), "the other process waits for the value");
    go_tx.send(()).unwrap();
    assert_eq!(join(holder).unwrap(), 1);
    assert_eq!(join(waiter).unwrap(), 1, "the waiter gets the holder's value");
    assert_eq!(creations.load(Ordering::SeqCst), 1);
}

// ----- bad input -----

/// Garbage, an envelope naming an unknown codec, one of an old format
/// version, an empty value and a value of another type: each is a counted
/// miss (regenerated by `get_or_create`), never a panic. A value written with
/// the other codec is read (the envelope names it).
#[test]
fn bad_bytes_under_a_key_are_misses() {
    let server = shared();
    let prefix = fresh_prefix();
    let region = region_on(&server.url(), &prefix);
    let json = Region::builder("redis-failures")
        .backend(backend_at(&server.url(), &prefix))
        .codec(Codec::Json)
        .expiration(Duration::from_secs(60))
        .build();
    let mut con = raw(&server.url());

    json.set("json", 5u32).unwrap();
    region.set("old", 5u32).unwrap();
    region.set("typed", "text".to_owned()).unwrap();
    let old_key = keys(&mut con, &format!("{prefix}*old*")).pop().expect("the value's Redis key");
    let mut old: Vec<u8> = redis::cmd("GET").arg(&old_key).query(&mut con).unwrap();
    assert_eq!(&old[..4], b"dp\x02\x01", "format 2, postcard");
    old[2] = 1; // format version 1
    let _: () = redis::cmd("SET").arg(&old_key).arg(old).query(&mut con).unwrap();
    let garbage_key = old_key.replace("old", "garbage");
    let _: () = redis::cmd("SET").arg(&garbage_key).arg(b"\xff\x00not an envelope".as_slice()).query(&mut con).unwrap();
    let mut unknown_codec: Vec<u8> = redis::cmd("GET").arg(&old_key).query(&mut con).unwrap();
    unknown_codec[2] = 2;
    unknown_codec[3] = 9; // no such codec
    let _: () = redis::cmd("SET").arg(old_key.replace("old", "codec9")).arg(unknown_codec).query(&mut con).unwrap();
    let empty_key = old_key.replace("old", "empty");
    let _: () = redis::cmd("SET").arg(&empty_key).arg(b"".as_slice()).query(&mut con).unwrap();

    // The envelope names its codec: a value another process wrote as JSON
    // is read.
    assert_eq!(region.get::<u32>("json").unwrap(), Some(5));
    for key in ["old", "codec9", "garbage", "empty", "typed"] {
        assert_eq!(region.get::<u32>(key).unwrap(), None, "{key}: a miss");
        assert_eq!(region.get_or_create(key, || 9u32).unwrap(), 9, "{key}: regenerated");
        assert_eq!(region.get::<u32>(key).unwrap(), Some(9), "{key}: stored again");
    }
    assert!(region.stats().decode_failures >= 5, "{:?}", region.stats());
}

/// Keys with spaces, newlines, braces, unicode, and 10 kB long round trip
/// and stay apart (Redis keys are binary-safe; the backend maps nothing).
#[test]
fn awkward_keys_round_trip() {
    let region = region_on(&shared().url(), &fresh_prefix());
    let long_a = format!("{}a", "k".repeat(10_000));
    let long_b = format!("{}b", "k".repeat(10_000));
    let keys = [
        long_a.as_str(),
        long_b.as_str(),
        "with space",
        "new\nline",
        "nul\0byte",
        "ünïcödé ✓ 鍵",
        "{braces}",
        "}",
        "",
        "dogpile:inv:redis-failures",
    ];
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(region.get_or_create(key, || i).unwrap(), i, "{key:?}");
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(region.get::<usize>(key).unwrap(), Some(i), "{key:?}");
    }
    let values: Vec<Option<usize>> = region.get_multi(&keys).unwrap();
    assert_eq!(values, (0..keys.len()).map(Some).collect::<Vec<_>>());
    region.delete(&long_a).unwrap();
    assert_eq!(region.get::<usize>(&long_a).unwrap(), None);
    assert_eq!(region.stats().backend_errors, 0);
}

/// The storage time to live is the expiration plus the grace, so Redis
/// frees values the region no longer serves.
#[test]
fn values_carry_a_storage_ttl() {
    let server = shared();
    let prefix = fresh_prefix();
    let region = Region::builder("ttl")
        .backend(backend_at(&server.url(), &prefix))
        .expiration(Duration::from_secs(60))
        .storage_grace(Duration::from_secs(30))
        .build();
    region.set("k", 1u8).unwrap();
    let mut con = raw(&server.url());
    let key = keys(&mut con, &format!("{prefix}*")).pop().unwrap();
    let pttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut con).unwrap();
    assert!((80_000..=90_000).contains(&pttl), "PTTL {pttl} ms: expiration 60 s + grace 30 s");
}

/// A prefix with braces would decide the Cluster hash tag: refused.
#[test]
fn a_prefix_with_braces_is_refused() {
    let err = RedisBackend::builder("redis://127.0.0.1:1").key_prefix("a{b}").build().unwrap_err();
    assert!(err.to_string().contains("key prefix"), "{err}");
    let err = RedisBackend::new("not a url").unwrap_err();
    assert!(err.to_string().contains("invalid Redis URL"), "{err}");
}

/// Many threads hammer one key over a short expiration while keys expire:
/// never two creators at once within the process, every call answers.
#[test]
fn threads_under_churn_never_create_twice_at_once() {
    let region = Region::builder("churn")
        .backend(backend_at(&shared().url(), &fresh_prefix()))
        .expiration(Duration::from_millis(20))
        .build();
    let running = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (region, running, barrier) = (region.clone(), running.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let end = Instant::now() + Duration::from_millis(300);
                while Instant::now() < end {
                    region
                        .get_or_create("k", || {
                            assert_eq!(running.fetch_add(1, Ordering::SeqCst), 0, "two creators at once");
                            std::thread::sleep(Duration::from_millis(2));
                            running.fetch_sub(1, Ordering::SeqCst);
                            1u8
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    threads.into_iter().for_each(join);
}

/// An async creator slower than the lease: the lease taken through the
/// async interface is extended by the region's keeper thread (outside the
/// runtime), so another process never wins it meanwhile; one creation.
#[cfg(feature = "redis-async")]
#[test]
fn an_async_creators_lease_is_kept_alive() {
    let server = shared();
    let prefix = fresh_prefix();
    let build = || {
        Region::builder("slow-async")
            .backend(backend_at(&server.url(), &prefix))
            .lock_timeout(Duration::from_millis(300))
            .build()
    };
    let (a, b) = (build(), build());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let creator = rt.spawn(async move {
        a.get_or_create_async("slow", || async move {
            started_tx.send(()).unwrap();
            tokio::time::sleep(Duration::from_millis(1200)).await;
            1u32
        })
        .await
        .unwrap()
    });
    started_rx.recv_timeout(HANG).expect("creator started");
    let mut con = raw(&server.url());
    let lease_key = keys(&mut con, &format!("{prefix}*:lease")).pop().expect("the async creator's lease");
    let end = Instant::now() + Duration::from_millis(1000);
    while Instant::now() < end {
        let pttl: i64 = redis::cmd("PTTL").arg(&lease_key).query(&mut con).unwrap();
        assert!(pttl > 0, "the lease lapsed while its creator ran (PTTL {pttl})");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(rt.block_on(async { tokio::time::timeout(HANG, creator).await }).expect("hang").unwrap(), 1);
    assert_eq!(b.get::<u32>("slow").unwrap(), Some(1));
    let exists: bool = redis::cmd("EXISTS").arg(&lease_key).query(&mut con).unwrap();
    assert!(!exists, "released when the creation ended");
}

/// A soft invalidation in one process: another process serves the stale
/// value while a third regenerates, then everyone sees the new value. A
/// hard one: a miss everywhere.
#[test]
fn invalidation_in_one_process_is_seen_by_the_others() {
    let server = shared();
    let prefix = fresh_prefix();
    let build = || {
        Region::builder("inv")
            .backend(backend_at(&server.url(), &prefix))
            .expiration(Duration::from_secs(3600))
            .invalidation_refresh(Duration::ZERO)
            .build()
    };
    let (a, b, c) = (build(), build(), build());
    a.set("k", 1u32).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    a.invalidate(dogpile::Invalidation::Soft);
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let regenerator = std::thread::spawn(move || {
        b.get_or_create("k", || {
            started_tx.send(()).unwrap();
            go_rx.recv_timeout(HANG).unwrap();
            2u32
        })
        .unwrap()
    });
    started_rx.recv_timeout(HANG).expect("b regenerates after a's soft invalidation");
    assert_eq!(c.get_or_create("k", || -> u32 { panic!("b regenerates already") }).unwrap(), 1, "stale served");
    go_tx.send(()).unwrap();
    assert_eq!(join(regenerator), 2);
    assert_eq!(c.get::<u32>("k").unwrap(), Some(2));
    std::thread::sleep(Duration::from_millis(5));
    c.invalidate(dogpile::Invalidation::Hard);
    assert_eq!(a.get::<u32>("k").unwrap(), None, "a sees c's hard invalidation");
}

/// A waiter in another process is woken by the release (pub/sub), and by
/// the expiry of a lease whose holder died, long before its `max`.
#[test]
fn a_waiter_is_woken_by_release_and_by_expiry() {
    use dogpile::backend::{Acquire, Backend};
    let server = shared();
    let prefix = fresh_prefix();
    let (a, b): (Arc<dyn Backend>, Arc<dyn Backend>) =
        (Arc::new(backend_at(&server.url(), &prefix)), Arc::new(backend_at(&server.url(), &prefix)));
    let Acquire::Won(lease) = a.blocking().unwrap().try_lease("k", Duration::from_secs(30)).unwrap() else {
        panic!("a free lease is won");
    };
    let waiter = {
        let b = b.clone();
        std::thread::spawn(move || b.blocking().unwrap().wait_released("k", Duration::from_secs(50)))
    };
    std::thread::sleep(Duration::from_millis(200));
    assert!(!waiter.is_finished(), "the waiter waits while the lease is held");
    let released = Instant::now();
    assert!(ready_now(lease.release()).unwrap());
    assert!(join_within(waiter, Duration::from_secs(10)).unwrap(), "woken by the release");
    assert!(released.elapsed() < Duration::from_secs(10));

    // A lease nobody releases: the wait ends at its expiry.
    let Acquire::Won(_dead) = a.blocking().unwrap().try_lease("j", Duration::from_millis(300)).unwrap() else {
        panic!("a free lease is won");
    };
    let waiter = std::thread::spawn(move || b.blocking().unwrap().wait_released("j", Duration::from_secs(50)));
    assert!(join_within(waiter, Duration::from_secs(10)).unwrap(), "ended by the expiry");
}

fn join_within<T>(handle: std::thread::JoinHandle<T>, limit: Duration) -> T {
    let deadline = Instant::now() + limit;
    while !handle.is_finished() {
        assert!(Instant::now() < deadline, "still waiting after {limit:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
    handle.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Polls a lease future of the blocking interface (ready when made).
fn ready_now<T>(mut fut: dogpile::backend::BoxFuture<'_, T>) -> T {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("a blocking lease's future is ready when made"),
    }
}

/// An async lease request whose caller is cancelled after sending it does
/// not leave the key locked until the lease expires: the request's token
/// is released.
#[cfg(feature = "redis-async")]
#[test]
fn a_cancelled_async_lease_request_does_not_keep_the_key_locked() {
    use dogpile::backend::{Acquire, Backend};
    let server = shared();
    let prefix = fresh_prefix();
    let backend: Arc<dyn Backend> = Arc::new(backend_at(&server.url(), &prefix));
    let other = backend_at(&server.url(), &prefix);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        // Connect first, so that the cancelled request is sent at once.
        let io = backend.nonblocking().unwrap();
        let _ = io.get("warm-up").await.unwrap();
        for (i, read) in [true, false].into_iter().enumerate() {
            let key = format!("k{i}");
            let mut fut = if read {
                Box::pin(async { io.read_and_lease(&key, Duration::from_secs(30)).await.map(|l| l.acquire) })
                    as dogpile::backend::BoxFuture<'_, _>
            } else {
                io.try_lease(&key, Duration::from_secs(30))
            };
            // Polled once (the request leaves), then dropped.
            let _ = futures_poll_once(&mut fut);
            drop(fut);
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match other.blocking().unwrap().try_lease(&key, Duration::from_secs(30)).unwrap() {
                    Acquire::Won(lease) => {
                        assert!(ready_now(lease.release()).unwrap());
                        break;
                    }
                    Acquire::Held => {
                        assert!(Instant::now() < deadline, "the cancelled request's lease was never released");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }
    });
}

#[cfg(feature = "redis-async")]
fn futures_poll_once<T>(fut: &mut dogpile::backend::BoxFuture<'_, T>) -> std::task::Poll<T> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    fut.as_mut().poll(&mut cx)
}

/// The stored invalidation word only moves forward, also across u64 values
/// that Lua's doubles could not tell apart.
#[test]
fn the_stored_invalidation_word_only_moves_forward() {
    use dogpile::backend::Backend;
    let backend = backend_at(&shared().url(), &fresh_prefix());
    let io = backend.blocking().unwrap();
    assert_eq!(io.load_invalidation("r").unwrap(), None);
    let big = (1u64 << 53) + 1;
    for (store, expect) in [(10, 10), (5, 10), (big - 1, big - 1), (big, big), (big - 1, big), (u64::MAX, u64::MAX)] {
        io.store_invalidation("r", store).unwrap();
        assert_eq!(io.load_invalidation("r").unwrap(), Some(expect), "after storing {store}");
    }
    assert_eq!(io.load_invalidation("other").unwrap(), None, "per region");
}
