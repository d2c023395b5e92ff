//! memcached benchmarks W1, W3, W4 and W6 (DESIGN §7) against a memcached
//! server this benchmark starts on a free loopback port, next to a raw get
//! through the `memcache` crate 0.21 (its classic client, binary protocol)
//! and a raw meta `mg` on one TCP connection.
//!
//! - `w1_hit`: one thread, 1,000 prefilled fresh keys, 64-byte values; the
//!   raw gets read the same items.
//! - W3 (custom rounds): 64 threads, one missing key, 100 ms creator:
//!   creator calls and wall time.
//! - W4 (custom rounds): the key holds a value that just expired: creator
//!   calls, latency of the 63 others, and whether they got the stale value.
//! - W6 (custom rounds): 4 processes (this binary re-run) x 8 threads, one
//!   missing key, 200 ms creator: creator calls overall and wall time.
//!
//! `cargo bench -p dogpile-benches --bench memcached`; under `cargo test`
//! each part runs once as a smoke test. Needs `memcached` on PATH
//! (`apt-get install memcached`).

use criterion::Criterion;
use dogpile::Region;
use dogpile::backends::{MemcachedBackend, MemcachedConfig};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const KEYS: u64 = 1_000;
const THREADS: usize = 64;
const CHILD: &str = "DOGPILE_BENCH_MC_CHILD";

fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn value_for(tag: &str, k: u64) -> String {
    let mut s = format!("{tag}-{k}-");
    while s.len() < 64 {
        s.push('x');
    }
    s
}

/// A memcached process, killed and reaped on drop.
struct Server {
    port: u16,
    child: Child,
}

impl Server {
    fn start() -> Server {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("memcached")
            .args(["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0", "-m", "64", "-t", "2", "-u", "root"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the memcached benchmark needs memcached: apt-get install memcached");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "memcached did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        Server { port, child }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn backend(addr: &str, namespace: &str) -> MemcachedBackend {
    let mut c = MemcachedConfig::default();
    c.servers = vec![addr.to_owned()];
    c.namespace = namespace.to_owned();
    c.backend().expect("memcached backend")
}

fn unix_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
}

/// A raw meta-protocol `mg <key> v` on one connection: the floor.
struct RawMg {
    reader: BufReader<TcpStream>,
    line: String,
    buf: Vec<u8>,
}

impl RawMg {
    fn get(&mut self, key: &str) -> usize {
        let s = self.reader.get_mut();
        s.write_all(format!("mg {key} v\r\n").as_bytes()).unwrap();
        self.line.clear();
        self.reader.read_line(&mut self.line).unwrap();
        let len: usize = self.line.split(' ').nth(1).and_then(|n| n.trim().parse().ok()).unwrap_or(0);
        self.buf.resize(len + 2, 0);
        self.reader.read_exact(&mut self.buf).unwrap();
        len
    }
}

fn w1(c: &mut Criterion, server: &Server, medians: &mut Vec<(String, f64)>) {
    let ns = "w1:";
    let string_region =
        Region::builder("w1").backend(backend(&server.addr(), ns)).expiration(Duration::from_secs(3600)).build();
    let arc_region =
        Region::builder("w1").backend(backend(&server.addr(), "w1arc:")).expiration(Duration::from_secs(3600)).build();
    for k in 0..KEYS {
        string_region.set(&format!("item:{k}"), value_for("v", k)).unwrap();
        arc_region.set(&format!("item:{k}"), Arc::<str>::from(value_for("v", k))).unwrap();
    }
    // The raw clients read plain 64-byte items.
    let raw = memcache::Client::connect(format!("memcache://{}?tcp_nodelay=true", server.addr())).unwrap();
    for k in 0..KEYS {
        raw.set(&format!("raw:{k}"), value_for("v", k).as_str(), 0).unwrap();
    }
    let stream = TcpStream::connect(server.addr()).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut mg = RawMg { reader: BufReader::new(stream), line: String::new(), buf: Vec::new() };
    let keys: Vec<String> = (0..KEYS).map(|k| format!("item:{k}")).collect();
    let raw_keys: Vec<String> = (0..KEYS).map(|k| format!("raw:{k}")).collect();
    let mut g = c.benchmark_group("memcached_w1_hit");
    let next = AtomicUsize::new(0);
    let pick = || next.fetch_add(1, Ordering::Relaxed) % KEYS as usize;
    g.bench_function("raw_memcache_get", |b| {
        b.iter(|| raw.get::<String>(&raw_keys[pick()]).unwrap().expect("hit"));
    });
    g.bench_function("raw_meta_mg", |b| b.iter(|| mg.get(&raw_keys[pick()])));
    g.bench_function("dogpile_string", |b| {
        b.iter(|| string_region.get_or_create(&keys[pick()], || -> String { unreachable!("a hit") }).unwrap());
    });
    g.bench_function("dogpile_arc_str", |b| {
        b.iter(|| arc_region.get_or_create(&keys[pick()], || -> Arc<str> { unreachable!("a hit") }).unwrap());
    });
    g.finish();
    // Repeated medians of our own, interleaved, for the ratios.
    let rounds = if bench_mode() { 15 } else { 1 };
    let calls = if bench_mode() { 2_000 } else { 50 };
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); 4];
    for _ in 0..rounds {
        let t = Instant::now();
        for i in 0..calls {
            mg.get(&raw_keys[i % KEYS as usize]);
        }
        samples[3].push(t.elapsed().as_nanos() as f64 / calls as f64);
        let t = Instant::now();
        for i in 0..calls {
            raw.get::<String>(&raw_keys[i % KEYS as usize]).unwrap();
        }
        samples[0].push(t.elapsed().as_nanos() as f64 / calls as f64);
        let t = Instant::now();
        for i in 0..calls {
            let _: String = string_region.get_or_create(&keys[i % KEYS as usize], || unreachable!()).unwrap();
        }
        samples[1].push(t.elapsed().as_nanos() as f64 / calls as f64);
        let t = Instant::now();
        for i in 0..calls {
            let _: Arc<str> = arc_region.get_or_create(&keys[i % KEYS as usize], || unreachable!()).unwrap();
        }
        samples[2].push(t.elapsed().as_nanos() as f64 / calls as f64);
    }
    for (name, mut s) in
        ["raw memcache get", "dogpile String", "dogpile Arc<str>", "raw meta mg"].into_iter().zip(samples)
    {
        s.sort_by(f64::total_cmp);
        medians.push((name.to_string(), s[s.len() / 2]));
    }
}

struct Round {
    wall: Duration,
    creators: u64,
    others: Vec<Duration>,
    others_stale: usize,
}

fn stampede(region: &Region, key: &str, creator_calls: &AtomicU64) -> Round {
    let before = creator_calls.load(Ordering::SeqCst);
    let barrier = Barrier::new(THREADS);
    let results: Vec<(Instant, Instant, bool, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    let mut created = false;
                    barrier.wait();
                    let start = Instant::now();
                    let v: String = region
                        .get_or_create(key, || {
                            created = true;
                            creator_calls.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(100));
                            "new".to_string()
                        })
                        .unwrap();
                    (start, Instant::now(), created, v)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let first = results.iter().map(|r| r.0).min().unwrap();
    let last = results.iter().map(|r| r.1).max().unwrap();
    let others: Vec<_> = results.iter().filter(|r| !r.2).collect();
    Round {
        wall: last - first,
        creators: creator_calls.load(Ordering::SeqCst) - before,
        others_stale: others.iter().filter(|r| r.3 == "old").count(),
        others: others.iter().map(|r| r.1 - r.0).collect(),
    }
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// W3 and W4: returns (W3 walls, W3 creators, W4 p99s, W4 creators, W4 stale share).
fn w3_w4(server: &Server, out: &mut String) {
    let rounds = if bench_mode() { 10 } else { 1 };
    let calls = AtomicU64::new(0);
    let region = Region::builder("w3").backend(backend(&server.addr(), "w3:")).build();
    let mut walls = Vec::new();
    let mut creators = Vec::new();
    for r in 0..rounds {
        let round = stampede(&region, &format!("cold:{r}"), &calls);
        walls.push(round.wall);
        creators.push(round.creators);
    }
    let _ = writeln!(
        out,
        "| W3 cold stampede, 64 threads, 100 ms creator | creators per round {creators:?} | wall median {:.1} ms, max {:.1} ms |",
        median(walls.clone()).as_secs_f64() * 1e3,
        walls.iter().max().unwrap().as_secs_f64() * 1e3
    );
    let region =
        Region::builder("w4").backend(backend(&server.addr(), "w4:")).expiration(Duration::from_millis(200)).build();
    let mut p99s = Vec::new();
    let mut p50s = Vec::new();
    let mut creators = Vec::new();
    let mut stale = 0;
    let mut others = 0;
    for r in 0..rounds {
        let key = format!("expired:{r}");
        region.set(&key, "old".to_string()).unwrap();
        std::thread::sleep(Duration::from_millis(250));
        let mut round = stampede(&region, &key, &calls);
        round.others.sort();
        p99s.push(quantile(&round.others, 0.99));
        p50s.push(quantile(&round.others, 0.5));
        creators.push(round.creators);
        stale += round.others_stale;
        others += round.others.len();
    }
    let _ = writeln!(
        out,
        "| W4 expired stampede, 64 threads | creators per round {creators:?}; {stale} of {others} others got the stale value | others p50 median {:.0} us, p99 median {:.0} us, worst p99 {:.0} us |",
        median(p50s).as_secs_f64() * 1e6,
        median(p99s.clone()).as_secs_f64() * 1e6,
        p99s.iter().max().unwrap().as_secs_f64() * 1e6
    );
}

/// The floor under W4's latencies: 64 threads behind a barrier, each making
/// one raw `mg` round trip on a connection of its own (made before the
/// barrier): what 64 threads on this machine pay for one round trip each,
/// with no cache in the way.
fn w4_floor(server: &Server, out: &mut String) {
    let rounds = if bench_mode() { 10 } else { 1 };
    let mut seed = TcpStream::connect(server.addr()).unwrap();
    seed.write_all(format!("ms floor 64\r\n{}\r\n", "x".repeat(64)).as_bytes()).unwrap();
    let mut reply = [0u8; 4];
    seed.read_exact(&mut reply).unwrap();
    let (mut p50s, mut p99s) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let barrier = Barrier::new(THREADS);
        let mut latencies: Vec<Duration> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..THREADS)
                .map(|_| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        let stream = TcpStream::connect(server.addr()).unwrap();
                        stream.set_nodelay(true).unwrap();
                        let mut mg = RawMg { reader: BufReader::new(stream), line: String::new(), buf: Vec::new() };
                        barrier.wait();
                        let start = Instant::now();
                        assert_eq!(mg.get("floor"), 64);
                        start.elapsed()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        latencies.sort();
        p50s.push(quantile(&latencies, 0.5));
        p99s.push(quantile(&latencies, 0.99));
    }
    let _ = writeln!(
        out,
        "| W4 floor: 64 threads x one raw mg at once | - | p50 median {:.0} us, p99 median {:.0} us, worst p99 {:.0} us |",
        median(p50s).as_secs_f64() * 1e6,
        median(p99s.clone()).as_secs_f64() * 1e6,
        p99s.iter().max().unwrap().as_secs_f64() * 1e6
    );
}

fn w6_child() {
    let region = Region::builder("w6")
        .backend(backend(&std::env::var("MC_ADDR").unwrap(), &std::env::var("MC_NS").unwrap()))
        .build();
    let key = std::env::var("MC_KEY").unwrap();
    let start_at: u64 = std::env::var("MC_START_AT").unwrap().parse().unwrap();
    let creations = AtomicU64::new(0);
    let barrier = Barrier::new(8);
    let ends: Vec<u64> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    while unix_micros() < start_at {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    let _: String = region
                        .get_or_create(&key, || {
                            creations.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(200));
                            "v".to_string()
                        })
                        .unwrap();
                    unix_micros()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    println!("RESULT {} {}", creations.load(Ordering::SeqCst), ends.iter().max().unwrap());
}

fn w6(server: &Server, out: &mut String) {
    let rounds = if bench_mode() { 7 } else { 1 };
    let mut walls = Vec::new();
    let mut creators = Vec::new();
    for r in 0..rounds {
        let start_at = unix_micros() + 1_500_000;
        let children: Vec<Child> = (0..4)
            .map(|_| {
                Command::new(std::env::current_exe().unwrap())
                    .env(CHILD, "1")
                    .env("MC_ADDR", server.addr())
                    .env("MC_NS", "w6:")
                    .env("MC_KEY", format!("w6:{r}:{}", std::process::id()))
                    .env("MC_START_AT", start_at.to_string())
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut total = 0;
        let mut end = 0;
        for child in children {
            let o = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&o.stdout);
            let line = text.lines().find_map(|l| l.strip_prefix("RESULT ")).expect("child result");
            let mut it = line.split(' ').map(|v| v.parse::<u64>().unwrap());
            total += it.next().unwrap();
            end = end.max(it.next().unwrap());
        }
        creators.push(total);
        walls.push(Duration::from_micros(end.saturating_sub(start_at)));
    }
    let _ = writeln!(
        out,
        "| W6 4 processes x 8 threads, 200 ms creator | creators per round {creators:?} | wall median {:.1} ms, max {:.1} ms |",
        median(walls.clone()).as_secs_f64() * 1e3,
        walls.iter().max().unwrap().as_secs_f64() * 1e3
    );
}

fn main() {
    if std::env::var_os(CHILD).is_some() {
        return w6_child();
    }
    let server = Server::start();
    let mut c = Criterion::default().configure_from_args();
    let mut medians = Vec::new();
    // DOGPILE_BENCH_STAMPEDES=1: W3, W4 and W6 only (repeats of the stampedes).
    let stampedes_only = std::env::var_os("DOGPILE_BENCH_STAMPEDES").is_some_and(|v| v == "1");
    if !stampedes_only {
        w1(&mut c, &server, &mut medians);
        c.final_summary();
    }
    let mut out = String::from("| workload | counts | time |\n|---|---|---|\n");
    let (raw, mg) = medians.first().zip(medians.get(3)).map_or((1.0, 1.0), |(r, m)| (r.1, m.1));
    for (name, ns) in &medians {
        let _ = writeln!(
            out,
            "| W1 hit, {name} (interleaved median) | - | {:.1} us, {:.2}x raw memcache get, {:.2}x raw mg |",
            ns / 1e3,
            ns / raw,
            ns / mg
        );
    }
    w3_w4(&server, &mut out);
    w4_floor(&server, &mut out);
    w6(&server, &mut out);
    println!("\n{out}");
    if let Some(dir) = std::env::var_os("DOGPILE_BENCH_OUT") {
        let _ = std::fs::write(std::path::Path::new(&dir).join("memcached.md"), &out);
    }
}
