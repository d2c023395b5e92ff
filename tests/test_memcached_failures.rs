//! The memcached backend under failure and bad input, against real servers
//! started by the tests: a lock holder killed, a stampede of 4 processes x 8
//! threads, a server restarted empty mid-run, garbage bytes, keys memcached
//! refuses, and values over the item size.
//!
//! Cross-process tests re-run this test binary as children (the role in
//! `DOGPILE_MC_ROLE`), which print one `RESULT ...` line for the parent.

mod support_memcached;

use dogpile::backends::MemcachedBackend;
use dogpile::{Region, cached};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support_memcached::{Server, config, namespace};

const ROLE: &str = "DOGPILE_MC_ROLE";
const HANG: Duration = Duration::from_secs(60);

fn backend(addr: &str, ns: &str) -> MemcachedBackend {
    let mut c = dogpile::backends::MemcachedConfig::default();
    c.servers = vec![addr.to_owned()];
    c.namespace = ns.to_owned();
    c.backend().unwrap()
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// A child process, killed (SIGKILL) and reaped when dropped, so that a
/// failing test leaves no process behind.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Re-runs this binary as a child running test `test` in `role`.
fn spawn_child(test: &str, role: &str, env: &[(&str, String)]) -> Guard {
    Guard(Some(spawn_raw(test, role, env)))
}

fn spawn_raw(test: &str, role: &str, env: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"]).env(ROLE, role).stdout(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("re-run the test binary")
}

fn wait_output(mut guard: Guard) -> String {
    let deadline = Instant::now() + HANG;
    let mut child = guard.0.take().expect("a running child");
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a child process hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "child failed: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn result_field(out: &str, name: &str) -> usize {
    let line = out
        .lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("no RESULT in {out}"));
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line}"))
}

/// A child that takes the lock and never finishes its creation; the parent
/// SIGKILLs it; the parent then waits for the lease to expire and creates.
#[test]
fn a_killed_lock_holder_is_recovered_after_lease_expiry() {
    if std::env::var(ROLE).as_deref() == Ok("holder") {
        let region = Region::builder("mc_holder")
            .backend(backend(&std::env::var("MC_ADDR").unwrap(), &std::env::var("MC_NS").unwrap()))
            .lock_timeout(Duration::from_secs(1))
            .build();
        let _: u32 = region
            .get_or_create("k", || {
                println!("CREATING");
                std::thread::sleep(Duration::from_secs(3600));
                1
            })
            .unwrap();
        return;
    }
    let server = Server::start();
    let ns = namespace();
    let probe = backend(&server.addr(), &ns);
    let mut child = spawn_child(
        "a_killed_lock_holder_is_recovered_after_lease_expiry",
        "holder",
        &[("MC_ADDR", server.addr()), ("MC_NS", ns.clone())],
    );
    // Wait until the child holds the lease.
    use dogpile::backend::{Acquire, BlockingBackend};
    let deadline = Instant::now() + HANG;
    loop {
        match probe.try_lease("k", Duration::from_secs(30)).unwrap() {
            Acquire::Held => break,
            Acquire::Won(l) => {
                let _ = dogpile_now(l.release());
            }
        }
        assert!(Instant::now() < deadline, "the child never took the lease");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Its keeper extends the lease: still held after more than its ttl.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(matches!(probe.try_lease("k", Duration::from_secs(30)).unwrap(), Acquire::Held), "kept alive");
    let mut child = child.0.take().unwrap();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let region = Region::builder("mc_holder").backend(probe).lock_timeout(Duration::from_secs(1)).build();
    let creations = AtomicUsize::new(0);
    let start = Instant::now();
    let v: u32 = region
        .get_or_create("k", || {
            creations.fetch_add(1, Ordering::SeqCst);
            2
        })
        .unwrap();
    assert_eq!((v, creations.load(Ordering::SeqCst)), (2, 1), "recovered once the dead holder's lease expired");
    assert!(start.elapsed() < Duration::from_secs(10), "no hang: {:?}", start.elapsed());
}

fn dogpile_now<T>(fut: dogpile::backend::BoxFuture<'_, T>) -> T {
    let mut fut = fut;
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("memcached lease futures are ready"),
    }
}

/// One stampede child: 8 threads behind a barrier at a shared start time
/// call `get_or_create` on one key with a 200 ms creator.
fn stampede_child() {
    let region = Region::builder("mc_stampede")
        .backend(backend(&std::env::var("MC_ADDR").unwrap(), &std::env::var("MC_NS").unwrap()))
        .expiration(Duration::from_millis(500))
        .build();
    let start_at: u64 = std::env::var("MC_START_AT").unwrap().parse().unwrap();
    let creations = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (region, creations, barrier) = (region.clone(), creations.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                while unix_ms() < start_at {
                    std::thread::sleep(Duration::from_millis(1));
                }
                region
                    .get_or_create("k", || {
                        creations.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(200));
                        "new".to_string()
                    })
                    .unwrap()
            })
        })
        .collect();
    let values: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let stale = values.iter().filter(|v| *v == "old").count();
    let new = values.iter().filter(|v| *v == "new").count();
    println!("RESULT creations={} stale={stale} new={new}", creations.load(Ordering::SeqCst));
}

fn stampede(expired: bool) -> (usize, usize, usize) {
    let server = Server::start();
    let ns = namespace();
    if expired {
        let region = Region::builder("mc_stampede")
            .backend(backend(&server.addr(), &ns))
            .expiration(Duration::from_millis(500))
            .build();
        region.set("k", "old".to_string()).unwrap();
    }
    let start_at = unix_ms() + 2000;
    let env = [("MC_ADDR", server.addr()), ("MC_NS", ns), ("MC_START_AT", start_at.to_string())];
    let children: Vec<Guard> = (0..4)
        .map(|_| spawn_child("cross_process_stampede", if expired { "expired" } else { "missing" }, &env))
        .collect();
    let outs: Vec<String> = children.into_iter().map(wait_output).collect();
    let sum = |f| outs.iter().map(|o| result_field(o, f)).sum::<usize>();
    (sum("creations"), sum("stale"), sum("new"))
}

/// 4 processes x 8 threads on one missing key with a 200 ms creator: one
/// creation overall, every caller gets its value; on an expired key: one
/// creation, and the stale value for every other caller.
#[test]
fn cross_process_stampede() {
    if std::env::var(ROLE).is_ok() {
        return stampede_child();
    }
    let (creations, stale, new) = stampede(false);
    assert_eq!(creations, 1, "one creation across 4 processes x 8 threads");
    assert_eq!((stale, new), (0, 32));
    let (creations, stale, new) = stampede(true);
    assert_eq!(creations, 1, "one regeneration across 4 processes x 8 threads");
    assert_eq!((stale, new), (31, 1), "the stale value everywhere but the regenerating caller");
}

dogpile::region!(RESTARTED, "mc_restarted");
static RESTART_CREATIONS: AtomicUsize = AtomicUsize::new(0);

#[cached(region = "mc_restarted")]
fn slow_value(k: u32) -> u64 {
    RESTART_CREATIONS.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(300));
    u64::from(k) * 10
}

/// The server restarts (empty) while a creator holds the lease: the lease
/// vanishes with it; at most one extra creation, no hang, every
/// `#[cached]` caller gets the value.
#[test]
fn a_server_restarted_empty_mid_run() {
    let mut server = Server::start();
    let c = config(&[&server], &namespace());
    dogpile::configure_region(Region::builder("mc_restarted").backend(c.backend().unwrap()).build()).unwrap();
    assert_eq!(slow_value(1), 10);
    assert_eq!(RESTART_CREATIONS.load(Ordering::SeqCst), 1);
    let callers: Vec<_> = (0..8).map(|_| std::thread::spawn(|| slow_value(2))).collect();
    std::thread::sleep(Duration::from_millis(100));
    server.restart();
    let values: Vec<u64> = callers.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(values.iter().all(|&v| v == 20), "{values:?}");
    let after = RESTART_CREATIONS.load(Ordering::SeqCst);
    assert!((2..=3).contains(&after), "one creation for key 2, at most one extra: {after}");
    // Key 1 was lost with the server: created once more, then cached.
    assert_eq!(slow_value(1), 10);
    assert_eq!(slow_value(1), 10);
    assert_eq!(slow_value(2), 20);
    assert!(RESTART_CREATIONS.load(Ordering::SeqCst) <= after + 2);
}

/// Garbage bytes stored under a key by another client: a miss (counted),
/// never a panic; the next `get_or_create` replaces them.
#[test]
fn garbage_under_a_key_is_a_miss() {
    let server = Server::start();
    let ns = namespace();
    let region = Region::builder("mc_garbage").backend(backend(&server.addr(), &ns)).build();
    let garbage: [&[u8]; 4] = [b"", b"hello", &[0xff; 64], &[0, 1, 2, 3, 0x80, 0x81, b'\r', b'\n']];
    for (i, bytes) in garbage.iter().enumerate() {
        let key = format!("g{i}");
        let mut req = format!("ms {ns}v:{key} {} T0\r\n", bytes.len()).into_bytes();
        req.extend_from_slice(bytes);
        req.extend_from_slice(b"\r\n");
        assert!(server.raw(&req).starts_with(b"HD"));
        assert_eq!(region.get::<String>(&key).unwrap(), None, "{bytes:?}");
        assert_eq!(region.get_or_create(&key, || format!("v{i}")).unwrap(), format!("v{i}"));
        assert_eq!(region.get::<String>(&key).unwrap(), Some(format!("v{i}")));
    }
    assert!(region.stats().decode_failures >= 3, "{:?}", region.stats());
}

/// Keys memcached refuses (long, spaces, control characters) and unicode
/// keys round trip through the region, stay apart, and never reach the
/// server unmapped.
#[test]
fn long_spaced_and_unicode_keys_round_trip() {
    let server = Server::start();
    let region = Region::builder("mc_keys").backend(backend(&server.addr(), &namespace())).build();
    let long_a = format!("{}a", "k".repeat(10_000));
    let long_b = format!("{}b", "k".repeat(10_000));
    let keys = [
        long_a.as_str(),
        long_b.as_str(),
        "with space",
        "tab\there",
        "new\nline",
        "nul\0",
        "ünïcödé 🎉",
        "日本語のキー",
        &"é".repeat(300),
        "dpk:x",
        "",
    ];
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(region.get_or_create(key, || i).unwrap(), i, "{key:?}");
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(region.get::<usize>(key).unwrap(), Some(i), "{key:?}");
    }
    region.delete(&long_a).unwrap();
    assert_eq!(region.get::<usize>(&long_a).unwrap(), None);
    assert_eq!(region.get::<usize>(&long_b).unwrap(), Some(1));
    assert_eq!(region.stats().backend_errors, 0, "{:?}", region.stats());
}

dogpile::region!(BIG, "mc_big");
static BIG_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(region = "mc_big")]
fn big_value() -> Vec<u8> {
    BIG_CALLS.fetch_add(1, Ordering::SeqCst);
    vec![7; 2 << 20]
}

/// A value over the item size: a clear error from the region's `set`,
/// counted; `#[cached]` still returns the function's value. Both the
/// client-side limit and the server's own refusal are covered.
#[test]
fn a_value_over_the_item_size_is_a_clear_counted_error() {
    let server = Server::start();
    let region = Region::builder("mc_big_region").backend(backend(&server.addr(), &namespace())).build();
    let err = region.set("big", vec![1u8; 2 << 20]).unwrap_err();
    assert!(err.to_string().contains("over the largest item"), "{err}");
    assert!(err.to_string().contains("item_size_max"), "{err}");
    assert_eq!(region.stats().backend_errors, 1, "{:?}", region.stats());
    // A client limit above the server's: the server refuses, said so.
    let mut c = config(&[&server], &namespace());
    c.item_size_max = 8 << 20;
    let region = Region::builder("mc_big_region").backend(c.backend().unwrap()).build();
    let err = region.set("big", vec![1u8; 2 << 20]).unwrap_err();
    assert!(err.to_string().contains("too large"), "{err}");
    assert_eq!(region.stats().backend_errors, 1);
    region.set("small", 5u8).unwrap();
    assert_eq!(region.get::<u8>("small").unwrap(), Some(5), "the connection is still in step");
    // Through #[cached]: the value comes back, twice computed (nothing stored).
    dogpile::configure_region(Region::builder("mc_big").backend(backend(&server.addr(), &namespace())).build())
        .unwrap();
    assert_eq!(big_value().len(), 2 << 20);
    assert_eq!(big_value().len(), 2 << 20);
    assert_eq!(BIG_CALLS.load(Ordering::SeqCst), 2);
    assert!(BIG.region().unwrap().stats().backend_errors >= 1);
}

/// A server started with text-protocol authentication (`memcached -Y`):
/// the right user and password work; a wrong password is a clear error,
/// not a server marked dead.
#[test]
fn text_protocol_authentication() {
    let dir = std::env::temp_dir().join(format!("dogpile-mc-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("auth");
    std::fs::write(&file, "app:s3cret\n").unwrap();
    let server = Server::start_with(&["-Y", file.to_str().unwrap()]);
    let mut c = config(&[&server], &namespace());
    c.username = Some("app".into());
    c.password = Some("s3cret".into());
    assert!(!format!("{c:?}").contains("s3cret"), "the password stays out of Debug");
    let region = Region::builder("mc_auth").backend(c.backend().unwrap()).build();
    assert_eq!(region.get_or_create("k", || 3u8).unwrap(), 3);
    assert_eq!(region.get::<u8>("k").unwrap(), Some(3));
    c.password = Some("wrong".into());
    let region = Region::builder("mc_auth").backend(c.backend().unwrap()).build();
    let err = region.get::<u8>("k").unwrap_err();
    assert!(err.to_string().contains("authentication as \"app\" refused"), "{err}");
    c.username = None;
    c.password = None;
    let region = Region::builder("mc_auth").backend(c.backend().unwrap()).build();
    assert!(region.get::<u8>("k").is_err(), "no credentials: refused by the server");
    let _ = std::fs::remove_dir_all(&dir);
}
