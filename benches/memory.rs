//! Memory-backend benchmarks W1–W4 (DESIGN §7), dogpile next to moka 0.12,
//! cached 4.x and quick_cache 0.7 in the same run.
//!
//! - `w1_hit`: one thread, 1,000 prefilled fresh keys, one call.
//! - `w2_hit2`: two threads doing W1; criterion's time is per pair of calls.
//! - `w3_cold_stampede`: 64 threads, one missing key, 100 ms creator; the time
//!   is the wall time until all 64 hold a value; creator calls are recorded.
//! - `w4_expired_stampede`: custom rounds (not criterion): the key holds a
//!   value that expired a moment ago; latency of the 63 non-creators.
//!
//! Run everything with `scripts/bench` (it also prints medians and ratios);
//! `cargo bench --bench memory -- w1` runs one workload. Setting
//! `DOGPILE_BENCH_PROFILE=w1` (or `w1:moka`, `w1:quick_cache-expiry`...)
//! runs only that contender's W1 hit loop, for `perf record` or
//! `valgrind --tool=callgrind`.

mod common;

use common::peers::{
    CACHED_COLD_CREATOR, CACHED_TTL_CREATOR, Dogpile, Moka, QuickCacheExpiry, QuickCachePlain, TTL_MILLIS, cached_cold,
    cached_hit, cached_ttl,
};
use common::{
    Creator, KEYS, Round, THREADS, bench_mode, key_str, quantile, quick_mode, selected, stampede, value_for,
    visit_order, write_result,
};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const HOUR: Duration = Duration::from_secs(3600);

/// Fresh keys for the stampede workloads, far from the hit keys.
static NEXT_KEY: AtomicU64 = AtomicU64::new(1_000_000);

fn next_key() -> u64 {
    NEXT_KEY.fetch_add(1, Ordering::Relaxed)
}

fn hit_timing(g: &mut BenchmarkGroup<'_, WallTime>) {
    if quick_mode() {
        g.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    }
}

/// One contender's call for key number `k`, boxed.
type Call<'a> = Box<dyn Fn(u64) -> String + Sync + 'a>;

/// Prefilled contenders for W1 and W2, built once.
struct Hit {
    keys: Vec<String>,
    order: Vec<u64>,
    dogpile: Dogpile,
    moka: Moka,
    qc_expiry: QuickCacheExpiry<u64>,
    qc_expiry_str: QuickCacheExpiry<String>,
    qc_plain: QuickCachePlain,
}

impl Hit {
    fn new() -> Self {
        let hit = Self {
            keys: (0..KEYS as u64).map(key_str).collect(),
            order: visit_order(),
            dogpile: Dogpile::new(HOUR),
            moka: Moka::new(HOUR),
            qc_expiry: QuickCacheExpiry::new(HOUR),
            qc_expiry_str: QuickCacheExpiry::new(HOUR),
            qc_plain: QuickCachePlain::new(),
        };
        for k in 0..KEYS as u64 {
            let key = hit.keys[k as usize].as_str();
            let v = value_for("v", k);
            assert_eq!(hit.dogpile.get_or_create(key, || v.clone()), v);
            assert_eq!(hit.moka.get_or_create(k, || v.clone()), v);
            assert_eq!(hit.qc_expiry.get_or_create(&k, || v.clone()), v);
            assert_eq!(hit.qc_expiry_str.get_or_create(key, || v.clone()), v);
            hit.qc_plain.insert(k, v.clone());
            assert_eq!(cached_hit(k), v);
        }
        hit
    }

    /// The contenders as (name, one call for key number `k`).
    fn contenders(&self) -> Vec<(&'static str, Call<'_>)> {
        let miss = |k: u64| -> String { panic!("W1 key {k} should be a hit") };
        vec![
            ("dogpile", Box::new(move |k| self.dogpile.get_or_create(&self.keys[k as usize], || miss(k)))),
            ("moka", Box::new(move |k| self.moka.get_or_create(k, || miss(k)))),
            ("cached", Box::new(cached_hit)),
            ("quick_cache-expiry", Box::new(move |k| self.qc_expiry.get_or_create(&k, || miss(k)))),
            (
                "quick_cache-expiry-strkey",
                Box::new(move |k| self.qc_expiry_str.get_or_create(self.keys[k as usize].as_str(), || miss(k))),
            ),
            ("quick_cache-get", Box::new(move |k| self.qc_plain.get(k).expect("prefilled"))),
            ("dogpile-get", Box::new(move |k| self.dogpile.get(&self.keys[k as usize]).expect("prefilled"))),
        ]
    }
}

/// Calls `f` on the next key of the visit order; `i` is the cursor.
#[inline(always)]
fn step<F: Fn(u64) -> String + ?Sized>(order: &[u64], i: &mut usize, f: &F) -> String {
    let k = order[*i];
    *i += 1;
    if *i == KEYS {
        *i = 0;
    }
    f(k)
}

/// Registers one W1 benchmark. Generic so that each contender's call is
/// inlined into its own loop (no dynamic call in the timed path).
fn w1_one<F: Fn(u64) -> String>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, order: &[u64], f: F) {
    g.bench_function(name, |b| {
        let mut i = 0;
        b.iter(|| step(order, &mut i, &f));
    });
}

fn w1(c: &mut Criterion, hit: &Hit) {
    let mut g = c.benchmark_group("w1_hit");
    hit_timing(&mut g);
    let order = &hit.order;
    let keys = &hit.keys;
    let miss = |k: u64| -> String { panic!("W1 key {k} should be a hit") };
    w1_one(&mut g, "dogpile", order, |k| hit.dogpile.get_or_create(&keys[k as usize], || miss(k)));
    w1_one(&mut g, "moka", order, |k| hit.moka.get_or_create(k, || miss(k)));
    w1_one(&mut g, "cached", order, cached_hit);
    w1_one(&mut g, "quick_cache-expiry", order, |k| hit.qc_expiry.get_or_create(&k, || miss(k)));
    w1_one(&mut g, "quick_cache-expiry-strkey", order, |k| {
        hit.qc_expiry_str.get_or_create(keys[k as usize].as_str(), || miss(k))
    });
    w1_one(&mut g, "quick_cache-get", order, |k| hit.qc_plain.get(k).expect("prefilled"));
    w1_one(&mut g, "dogpile-get", order, |k| hit.dogpile.get(&keys[k as usize]).expect("prefilled"));
    g.finish();
}

/// Two threads, `iters` calls each, started together; the wall time from the
/// first start to the last finish.
fn two_threads(iters: u64, order: &[u64], f: &(dyn Fn(u64) -> String + Sync)) -> Duration {
    let barrier = Barrier::new(2);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    let mut i = t * KEYS / 2;
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(step(order, &mut i, f));
                    }
                    (start, Instant::now())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("W2 thread panicked")).collect()
    });
    let first = spans.iter().map(|s| s.0).min().expect("two spans");
    let last = spans.iter().map(|s| s.1).max().expect("two spans");
    last - first
}

fn w2(c: &mut Criterion, hit: &Hit) {
    let mut g = c.benchmark_group("w2_hit2");
    hit_timing(&mut g);
    // One iteration is one call on each of the two threads.
    g.throughput(Throughput::Elements(2));
    for (name, f) in hit.contenders() {
        if name == "dogpile-get" || name == "quick_cache-expiry-strkey" {
            continue;
        }
        g.bench_function(name, |b| b.iter_custom(|iters| two_threads(iters, &hit.order, &*f)));
    }
    g.finish();
}

/// Creator calls per W3 round, by contender.
type Log = Vec<(&'static str, Vec<u64>)>;

fn w3_one<F>(g: &mut BenchmarkGroup<'_, WallTime>, log: &mut Log, name: &'static str, creator: &Creator, call: F)
where
    F: Fn(u64, &str) -> String + Sync,
{
    let mut counts = Vec::new();
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let k = next_key();
                let round = stampede(k, creator, &call);
                if name == "dogpile" {
                    assert_eq!(round.creators, 1, "dogpile: one creator per cold stampede");
                    assert!(round.others_stale == 0, "a cold stampede has no stale value");
                }
                counts.push(round.creators);
                total += round.wall;
            }
            total
        });
    });
    if !counts.is_empty() {
        log.push((name, counts));
    }
}

fn w3(c: &mut Criterion) {
    let mut g = c.benchmark_group("w3_cold_stampede");
    g.sample_size(10).sampling_mode(SamplingMode::Flat).warm_up_time(Duration::from_millis(300));
    g.measurement_time(Duration::from_secs(if quick_mode() { 1 } else { 3 }));
    let mut log = Log::new();

    let dogpile = Dogpile::new(HOUR);
    let dogpile_creator = Creator::new();
    w3_one(&mut g, &mut log, "dogpile", &dogpile_creator, |k, key| {
        dogpile.get_or_create(key, || dogpile_creator.create(k))
    });
    let moka = Moka::new(HOUR);
    let moka_creator = Creator::new();
    w3_one(&mut g, &mut log, "moka", &moka_creator, |k, _| moka.get_or_create(k, || moka_creator.create(k)));
    w3_one(&mut g, &mut log, "cached", &CACHED_COLD_CREATOR, |k, _| cached_cold(k));
    let qc = QuickCacheExpiry::<u64>::new(HOUR);
    let qc_creator = Creator::new();
    w3_one(&mut g, &mut log, "quick_cache-expiry", &qc_creator, |k, _| qc.get_or_create(&k, || qc_creator.create(k)));
    g.finish();

    if log.is_empty() {
        return;
    }
    let mut tsv = String::from("contender\trounds\tcreators_min\tcreators_max\tcreators_mean\n");
    println!("\nW3 cold stampede: creator calls per round ({THREADS} threads, ideal 1)");
    for (name, counts) in &log {
        let min = counts.iter().min().copied().unwrap_or(0);
        let max = counts.iter().max().copied().unwrap_or(0);
        let mean = counts.iter().sum::<u64>() as f64 / counts.len() as f64;
        println!("  {name:<20} rounds {:>4}  min {min}  max {max}  mean {mean:.2}", counts.len());
        let _ = writeln!(tsv, "{name}\t{}\t{min}\t{max}\t{mean:.3}", counts.len());
    }
    write_result("w3.tsv", &tsv);
}

/// W4 for one contender: `rounds` times, seed the key (fast creator), let it
/// expire for real (sleep past the time-to-live), then stampede.
fn w4_one<F>(name: &'static str, rounds: usize, creator: &Creator, call: F) -> Vec<Round>
where
    F: Fn(u64, &str) -> String + Sync,
{
    let ttl = Duration::from_millis(TTL_MILLIS);
    (0..rounds)
        .map(|_| {
            let k = next_key();
            let seeded = creator.seeding(|| call(k, &key_str(k)));
            assert_eq!(seeded, value_for("old", k), "{name}: seeding");
            std::thread::sleep(ttl + Duration::from_millis(10));
            let round = stampede(k, creator, &call);
            if name == "dogpile" {
                assert_eq!(round.creators, 1, "dogpile: one creator per expired stampede");
            }
            round
        })
        .collect()
}

fn w4() {
    let rounds = match (bench_mode(), quick_mode()) {
        (false, _) => 1,
        (true, true) => 10,
        (true, false) => 30,
    };
    let ttl = Duration::from_millis(TTL_MILLIS);
    let mut results: Vec<(&'static str, Vec<Round>)> = Vec::new();

    let dogpile = Dogpile::new(ttl);
    let dogpile_creator = Creator::new();
    let before = dogpile.stats();
    results.push((
        "dogpile",
        w4_one("dogpile", rounds, &dogpile_creator, |k, key| dogpile.get_or_create(key, || dogpile_creator.create(k))),
    ));
    let after = dogpile.stats();
    let moka = Moka::new(ttl);
    let moka_creator = Creator::new();
    results
        .push(("moka", w4_one("moka", rounds, &moka_creator, |k, _| moka.get_or_create(k, || moka_creator.create(k)))));
    results.push(("cached", w4_one("cached", rounds, &CACHED_TTL_CREATOR, |k, _| cached_ttl(k))));
    let qc = QuickCacheExpiry::<u64>::new(ttl);
    let qc_creator = Creator::new();
    results.push((
        "quick_cache-expiry",
        w4_one("quick_cache-expiry", rounds, &qc_creator, |k, _| qc.get_or_create(&k, || qc_creator.create(k))),
    ));

    println!(
        "\nW4 expired stampede: {THREADS} threads, value expired 10 ms ago (TTL {TTL_MILLIS} ms), 100 ms creator, {rounds} rounds"
    );
    println!(
        "  {:<20} {:>8} {:>8} {:>10} {:>10} {:>10} {:>8} {:>9}",
        "contender", "cr/rnd", "cr max", "p50 us", "p99 us", "max us", "stale%", "wall ms"
    );
    let mut tsv = String::from(
        "contender\trounds\tcreators_mean\tcreators_max\tp50_us\tp99_us\tmax_us\tstale_pct\twall_p50_ms\n",
    );
    for (name, rs) in &results {
        let mut others: Vec<Duration> = rs.iter().flat_map(|r| r.others.iter().copied()).collect();
        others.sort_unstable();
        let mut walls: Vec<Duration> = rs.iter().map(|r| r.wall).collect();
        walls.sort_unstable();
        let creators_mean = rs.iter().map(|r| r.creators).sum::<u64>() as f64 / rs.len() as f64;
        let creators_max = rs.iter().map(|r| r.creators).max().unwrap_or(0);
        let stale = rs.iter().map(|r| r.others_stale).sum::<usize>() as f64 * 100.0 / others.len().max(1) as f64;
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let (p50, p99, max) = (us(quantile(&others, 0.5)), us(quantile(&others, 0.99)), us(quantile(&others, 1.0)));
        let wall = quantile(&walls, 0.5).as_secs_f64() * 1e3;
        println!(
            "  {name:<20} {creators_mean:>8.2} {creators_max:>8} {p50:>10.1} {p99:>10.1} {max:>10.1} {stale:>8.1} {wall:>9.1}"
        );
        let _ = writeln!(
            tsv,
            "{name}\t{}\t{creators_mean:.3}\t{creators_max}\t{p50:.2}\t{p99:.2}\t{max:.2}\t{stale:.2}\t{wall:.2}",
            rs.len()
        );
    }
    println!(
        "  dogpile stats over W4: creations {} (seeding included), stale_served {}, lock_waits {}",
        after.creations - before.creations,
        after.stale_served - before.stale_served,
        after.lock_waits - before.lock_waits
    );
    write_result("w4.tsv", &tsv);
}

/// Runs `calls` W1 hits through `f` and prints the time per call.
fn profile_loop<F: Fn(u64) -> String>(name: &str, order: &[u64], calls: u64, f: F) {
    let mut i = 0;
    let start = Instant::now();
    for _ in 0..calls {
        black_box(step(order, &mut i, &f));
    }
    let ns = start.elapsed().as_nanos() as f64 / calls as f64;
    println!("{name} W1: {calls} hits, {ns:.1} ns per call");
}

/// `DOGPILE_BENCH_PROFILE=w1[:CONTENDER]`: one contender's W1 hit loop
/// alone (default dogpile), for a profiler; `DOGPILE_BENCH_CALLS` sets the
/// number of calls.
fn profile_w1(which: &str) {
    let hit = Hit::new();
    let calls: u64 = std::env::var("DOGPILE_BENCH_CALLS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let miss = |k: u64| -> String { panic!("W1 key {k} should be a hit") };
    let (order, keys) = (&hit.order, &hit.keys);
    match which {
        "dogpile" => profile_loop(which, order, calls, |k| hit.dogpile.get_or_create(&keys[k as usize], || miss(k))),
        "moka" => profile_loop(which, order, calls, |k| hit.moka.get_or_create(k, || miss(k))),
        "cached" => profile_loop(which, order, calls, cached_hit),
        "quick_cache-expiry" => profile_loop(which, order, calls, |k| hit.qc_expiry.get_or_create(&k, || miss(k))),
        "quick_cache-expiry-strkey" => profile_loop(which, order, calls, |k| {
            hit.qc_expiry_str.get_or_create(keys[k as usize].as_str(), || miss(k))
        }),
        "quick_cache-get" => profile_loop(which, order, calls, |k| hit.qc_plain.get(k).expect("prefilled")),
        "dogpile-get" => profile_loop(which, order, calls, |k| hit.dogpile.get(&keys[k as usize]).expect("prefilled")),
        other => panic!("unknown contender {other:?} in DOGPILE_BENCH_PROFILE"),
    }
}

fn main() {
    if let Ok(spec) = std::env::var("DOGPILE_BENCH_PROFILE") {
        let which = spec.strip_prefix("w1").map(|rest| rest.trim_start_matches(':')).unwrap_or_else(|| {
            panic!("DOGPILE_BENCH_PROFILE supports w1[:CONTENDER], not {spec:?}");
        });
        profile_w1(if which.is_empty() { "dogpile" } else { which });
        return;
    }
    let listing = std::env::args().any(|a| a == "--list");
    let mut c = Criterion::default().configure_from_args();
    let hit = Hit::new();
    w1(&mut c, &hit);
    w2(&mut c, &hit);
    w3(&mut c);
    c.final_summary();
    if !listing && selected("w4_expired_stampede") {
        w4();
    }
}
