//! Redis benchmarks (DESIGN §7, issue 9): W1, W3, W4 and W6 over a real
//! `redis-server` started here on a free loopback port, next to a raw
//! `redis` GET round trip.
//!
//! - `redis_w1_hit/raw_get`: one GET of a 64-byte value on one blocking
//!   connection (the floor: one round trip).
//! - `redis_w1_hit/dogpile`: `get_or_create` hits on 1,000 prefilled keys
//!   (`String` values), blocking interface.
//! - `w1 interleaved` (custom): both in alternating batches, medians of the
//!   per-call time, as a noise check.
//! - W3 (custom rounds): 64 threads, one missing key, 100 ms creator: creator
//!   calls and wall time until all hold a value.
//! - W4 (custom rounds): the key's value expired a moment ago; 64 threads,
//!   100 ms creator: creator calls, latency of the 63 others, values served.
//! - W6 (custom rounds): 4 processes (this binary re-run) x 8 threads, one
//!   missing key, 200 ms creator: creator calls overall and wall time from
//!   the start signal to the last answer.
//!
//! `cargo bench -p dogpile-benches --bench redis`; without `--bench` (as in
//! `cargo test --workspace`) each workload runs once as a smoke test.

use criterion::Criterion;
use dogpile::Region;
use dogpile::backends::RedisBackend;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const KEYS: u64 = 1_000;
const THREADS: usize = 64;
const ROLE: &str = "DOGPILE_BENCH_REDIS_ROLE";

fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// A redis-server on a free port, killed on drop.
struct Server {
    url: String,
    child: Child,
}

impl Server {
    fn start() -> Self {
        let bin = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("redis-server");
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let child = Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("could not start redis-server ({e}): install it (`apt-get install redis-server`)")
            });
        let url = format!("redis://127.0.0.1:{port}");
        let client = redis::Client::open(url.as_str()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while client.get_connection_with_timeout(Duration::from_millis(100)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Server { url, child }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn raw(url: &str) -> redis::Connection {
    redis::Client::open(url).unwrap().get_connection().unwrap()
}

fn region(url: &str, prefix: &str, expiration: Duration) -> Region {
    let backend = RedisBackend::builder(url).key_prefix(prefix).build().unwrap();
    Region::builder("bench").backend(backend).expiration(expiration).build()
}

fn value_for(k: u64) -> String {
    format!("{k:064}")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

// ----- W1 -----

fn w1(c: &mut Criterion, url: &str) {
    let hour = Duration::from_secs(3600);
    let r = region(url, "w1:", hour);
    for k in 0..KEYS {
        r.set(&k.to_string(), value_for(k)).unwrap();
    }
    let mut con = raw(url);
    let _: () = redis::cmd("SET").arg("raw").arg(value_for(7)).query(&mut con).unwrap();
    let keys: Vec<String> = (0..KEYS).map(|k| k.to_string()).collect();

    let mut g = c.benchmark_group("redis_w1_hit");
    g.bench_function("raw_get", |b| {
        b.iter(|| redis::cmd("GET").arg("raw").query::<Vec<u8>>(&mut con).unwrap());
    });
    let mut i = 0usize;
    g.bench_function("dogpile", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            r.get_or_create(&keys[i], || unreachable!("prefilled")).map(|s: String| s.len()).unwrap()
        });
    });
    g.finish();

    // Interleaved batches: the same noise hits both.
    let (rounds, batch) = if bench_mode() { (30, 2_000) } else { (2, 50) };
    let (mut raw_ns, mut dp_ns) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let mut time_raw = || {
            let t = Instant::now();
            for _ in 0..batch {
                let _: Vec<u8> = redis::cmd("GET").arg("raw").query(&mut con).unwrap();
            }
            t.elapsed().as_nanos() as f64 / batch as f64
        };
        let a = if round % 2 == 0 { Some(time_raw()) } else { None };
        let t = Instant::now();
        for j in 0..batch {
            let _: String = r.get_or_create(&keys[j % keys.len()], || unreachable!("prefilled")).unwrap();
        }
        dp_ns.push(t.elapsed().as_nanos() as f64 / batch as f64);
        raw_ns.push(a.unwrap_or_else(time_raw));
    }
    let (raw_m, dp_m) = (median(raw_ns), median(dp_ns));
    println!(
        "\nW1 interleaved ({rounds} rounds x {batch} calls): raw GET {:.1} us, dogpile hit {:.1} us, ratio {:.3}x",
        raw_m / 1e3,
        dp_m / 1e3,
        dp_m / raw_m
    );
    println!("  hits {:?}", r.stats().hits);
}

// ----- W3 / W4 -----

static NEXT_KEY: AtomicU64 = AtomicU64::new(1_000_000);

/// 64 threads behind a barrier call `get_or_create(key)` with a creator of
/// `creation`; returns (creator calls, wall time, per-thread latency and
/// whether it got the new value).
fn stampede(r: &Region, key: &str, creation: Duration) -> (u64, Duration, Vec<(Duration, bool)>) {
    let creators = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(THREADS + 1));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (r, key, creators, barrier) = (r.clone(), key.to_owned(), creators.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let t = Instant::now();
                let v: u64 = r
                    .get_or_create(&key, || {
                        creators.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(creation);
                        2
                    })
                    .unwrap();
                (t.elapsed(), Instant::now(), v == 2)
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let results: Vec<(Duration, Instant, bool)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let end = results.iter().map(|r| r.1).max().unwrap();
    (creators.load(Ordering::SeqCst), end - start, results.into_iter().map(|(d, _, new)| (d, new)).collect())
}

fn w3(url: &str) {
    let r = region(url, "w3:", Duration::from_secs(3600));
    let rounds = if bench_mode() { 15 } else { 1 };
    let (mut walls, mut creators) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed).to_string();
        let (c, wall, _) = stampede(&r, &key, Duration::from_millis(100));
        creators.push(c);
        walls.push(wall.as_secs_f64() * 1e3);
    }
    println!(
        "\nW3 cold stampede over Redis ({THREADS} threads, 100 ms creator, {rounds} rounds): creator calls min {} max {}, \
         wall median {:.1} ms, max {:.1} ms",
        creators.iter().min().unwrap(),
        creators.iter().max().unwrap(),
        median(walls.clone()),
        walls.iter().copied().fold(0.0, f64::max)
    );
}

fn w4(url: &str) {
    let ttl = Duration::from_millis(50);
    let r = region(url, "w4:", ttl);
    let rounds = if bench_mode() { 15 } else { 1 };
    let (mut others, mut creators, mut stale, mut fresh_others) = (Vec::new(), Vec::new(), 0usize, 0usize);
    for _ in 0..rounds {
        let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed).to_string();
        r.set(&key, 1u64).unwrap();
        std::thread::sleep(ttl + Duration::from_millis(10));
        let (c, _, results) = stampede(&r, &key, Duration::from_millis(100));
        creators.push(c);
        // The creator's own call is the one that got the new value.
        let mut creator_seen = false;
        for (d, new) in results {
            if new && !creator_seen {
                creator_seen = true;
                continue;
            }
            if new {
                fresh_others += 1
            } else {
                stale += 1
            }
            others.push(d);
        }
    }
    others.sort();
    println!(
        "\nW4 expired stampede over Redis ({THREADS} threads, 100 ms creator, {rounds} rounds): creator calls min {} max {}; \
         the {} others: {} stale, {} new; latency p50 {:.1} us, p99 {:.1} us, max {:.1} us",
        creators.iter().min().unwrap(),
        creators.iter().max().unwrap(),
        others.len(),
        stale,
        fresh_others,
        quantile(&others, 0.5).as_secs_f64() * 1e6,
        quantile(&others, 0.99).as_secs_f64() * 1e6,
        others.last().unwrap().as_secs_f64() * 1e6,
    );
}

/// The floor under W4's latencies: 64 threads behind a barrier, each doing
/// one raw GET on a connection of its own (made before the barrier).
fn w4_raw_floor(url: &str) {
    let rounds = if bench_mode() { 15 } else { 1 };
    let mut lat = Vec::new();
    for _ in 0..rounds {
        let barrier = Arc::new(Barrier::new(THREADS));
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let (barrier, mut con) = (barrier.clone(), raw(url));
                std::thread::spawn(move || {
                    barrier.wait();
                    let t = Instant::now();
                    let _: Option<Vec<u8>> = redis::cmd("GET").arg("raw").query(&mut con).unwrap();
                    t.elapsed()
                })
            })
            .collect();
        lat.extend(threads.into_iter().map(|t| t.join().unwrap()));
    }
    lat.sort();
    println!(
        "W4 floor: {THREADS} threads x one raw GET at once ({rounds} rounds): latency p50 {:.1} us, p99 {:.1} us",
        quantile(&lat, 0.5).as_secs_f64() * 1e6,
        quantile(&lat, 0.99).as_secs_f64() * 1e6,
    );
}

// ----- W6 -----

fn now_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

/// A W6 child: 8 threads wait for the go key, call `get_or_create` on the
/// round's key (200 ms creator, counted in Redis) and print the wall-clock
/// time they got their value.
fn w6_child() {
    let url = std::env::var("DOGPILE_BENCH_REDIS_URL").unwrap();
    let prefix = std::env::var("DOGPILE_BENCH_REDIS_PREFIX").unwrap();
    let r = region(&url, &prefix, Duration::from_secs(3600));
    let mut con = raw(&url);
    let _: () = redis::cmd("INCR").arg(format!("{prefix}ready")).query(&mut con).unwrap();
    while !redis::cmd("EXISTS").arg(format!("{prefix}go")).query::<bool>(&mut con).unwrap() {
        std::thread::sleep(Duration::from_micros(200));
    }
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (r, url, prefix) = (r.clone(), url.clone(), prefix.clone());
            std::thread::spawn(move || {
                let _: u64 = r
                    .get_or_create("k", || {
                        let _: () = redis::cmd("INCR").arg(format!("{prefix}creators")).query(&mut raw(&url)).unwrap();
                        std::thread::sleep(Duration::from_millis(200));
                        2
                    })
                    .unwrap();
                now_nanos()
            })
        })
        .collect();
    for t in threads {
        println!("DONE {}", t.join().unwrap());
    }
}

fn w6(url: &str) {
    let rounds = if bench_mode() { 7 } else { 1 };
    let (mut walls, mut creators) = (Vec::new(), Vec::new());
    let mut con = raw(url);
    for round in 0..rounds {
        let prefix = format!("w6-{round}:");
        let children: Vec<Child> = (0..4)
            .map(|_| {
                Command::new(std::env::current_exe().unwrap())
                    .env(ROLE, "w6")
                    .env("DOGPILE_BENCH_REDIS_URL", url)
                    .env("DOGPILE_BENCH_REDIS_PREFIX", &prefix)
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        while redis::cmd("GET").arg(format!("{prefix}ready")).query::<Option<u64>>(&mut con).unwrap() != Some(4) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let go = now_nanos();
        let _: () = redis::cmd("SET").arg(format!("{prefix}go")).arg(1).query(&mut con).unwrap();
        let mut last = 0u128;
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success());
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if let Some(t) = line.strip_prefix("DONE ") {
                    last = last.max(t.parse().unwrap());
                }
            }
        }
        walls.push((last - go) as f64 / 1e6);
        creators.push(redis::cmd("GET").arg(format!("{prefix}creators")).query::<u64>(&mut con).unwrap());
    }
    println!(
        "\nW6 multi-process stampede over Redis (4 processes x 8 threads, 200 ms creator, {rounds} rounds): \
         creator calls per round {creators:?}, wall median {:.1} ms, max {:.1} ms",
        median(walls.clone()),
        walls.iter().copied().fold(0.0, f64::max)
    );
}

fn main() {
    if std::env::var(ROLE).as_deref() == Ok("w6") {
        w6_child();
        return;
    }
    let server = Server::start();
    let mut c = Criterion::default().configure_from_args();
    if !bench_mode() {
        c = c.warm_up_time(Duration::from_millis(50)).measurement_time(Duration::from_millis(100)).sample_size(10);
    }
    w1(&mut c, &server.url);
    c.final_summary();
    w3(&server.url);
    w4(&server.url);
    w4_raw_floor(&server.url);
    w6(&server.url);
}
