//! Memory-backend benchmarks W1–W4 (DESIGN §7), dogpile next to moka 0.12,
//! cached 4.x and quick_cache 0.7 in the same run.
//!
//! - `w1_hit`: one thread, 1,000 prefilled fresh keys, one call.
//! - `w1_interleaved` (custom, after criterion): W1 in batches, the
//!   contenders' order rotating each round, as a noise check.
//! - `w2_hit2`: two threads doing W1; criterion's time is per pair of calls.
//! - `w3_cold_stampede`: 64 threads, one missing key, 100 ms creator; the time
//!   is the wall time until all 64 hold a value; creator calls are recorded.
//! - `w4_expired_stampede`: custom rounds (not criterion): the key holds a
//!   value that expired a moment ago; latency of the 63 non-creators.
//!
//! Run everything with `scripts/bench` (it also prints medians and ratios);
//! `cargo bench -p dogpile-benches --bench memory -- w1` runs one workload. Setting
//! `DOGPILE_BENCH_PROFILE=w1` (or `w1:moka`, `w1:quick_cache-expiry`...)
//! runs only that contender's W1 hit loop, for `perf record` or
//! `valgrind --tool=callgrind`.

mod common;
#[path = "shared/order.rs"]
mod order;

use common::hit::{Hit, Visit, hit_loop, interleaved, step};
use common::peers::{
    CACHED_COLD_CREATOR, CACHED_TTL_CREATOR, Dogpile, Moka, QuickCacheExpiry, TTL_MILLIS, cached_cold, cached_ttl,
};
use common::{
    Creator, KEYS, Round, THREADS, bench_mode, key_str, quantile, quick_mode, selected, stampede, value_for,
    write_result,
};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use std::fmt::Write as _;
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

/// W1: registers each contender's criterion benchmark.
struct W1<'a, 'g> {
    g: &'a mut BenchmarkGroup<'g, WallTime>,
    order: &'a [u64],
}

impl<'h> Visit<'h> for W1<'_, '_> {
    fn visit<F: Fn(u64) -> String + Sync + 'h>(&mut self, name: &'static str, f: F) {
        let order = self.order;
        self.g.bench_function(name, |b| {
            let mut i = 0;
            b.iter(|| step(order, &mut i, &f));
        });
    }
}

fn w1(c: &mut Criterion, hit: &Hit) {
    let mut g = c.benchmark_group("w1_hit");
    hit_timing(&mut g);
    hit.each(&mut W1 { g: &mut g, order: &hit.order });
    g.finish();
}

/// Two threads, `iters` calls each, started together; the wall time from the
/// first start to the last finish.
fn two_threads<F: Fn(u64) -> String + Sync>(iters: u64, order: &[u64], f: &F) -> Duration {
    let barrier = Barrier::new(2);
    let spans: Vec<(Instant, Duration)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    (Instant::now(), hit_loop(order, t * KEYS / 2, iters, f))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("W2 thread panicked")).collect()
    });
    let first = spans.iter().map(|s| s.0).min().expect("two spans");
    let last = spans.iter().map(|s| s.0 + s.1).max().expect("two spans");
    last - first
}

/// W2: registers each contender's two-thread benchmark.
struct W2<'a, 'g> {
    g: &'a mut BenchmarkGroup<'g, WallTime>,
    order: &'a [u64],
}

impl<'h> Visit<'h> for W2<'_, '_> {
    fn visit<F: Fn(u64) -> String + Sync + 'h>(&mut self, name: &'static str, f: F) {
        if name == "dogpile-get" || name == "quick_cache-expiry-strkey" {
            return;
        }
        let order = self.order;
        self.g.bench_function(name, |b| b.iter_custom(|iters| two_threads(iters, order, &f)));
    }
}

fn w2(c: &mut Criterion, hit: &Hit) {
    let mut g = c.benchmark_group("w2_hit2");
    hit_timing(&mut g);
    // One iteration is one call on each of the two threads.
    g.throughput(Throughput::Elements(2));
    hit.each(&mut W2 { g: &mut g, order: &hit.order });
    g.finish();
}

/// W1 again, outside criterion: batches interleaved across contenders (see
/// [`interleaved`]), as a check of criterion's medians on a noisy machine.
fn w1_interleaved(hit: &Hit) {
    let (rounds, calls) = match (bench_mode(), quick_mode()) {
        (false, _) => (1, 1_000),
        (true, true) => (15, 100_000),
        (true, false) => (41, 200_000),
    };
    let results = interleaved(hit, rounds, calls);
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let find = |name: &str| results.iter().find(|r| r.0 == name).map(|r| median(&r.1)).unwrap_or(f64::NAN);
    let (qc, moka) = (find("quick_cache-expiry"), find("moka"));
    println!("\nW1 interleaved: {rounds} rounds of {calls} hits per contender, rotating order (ns per call)");
    println!("  {:<26} {:>9} {:>9} {:>9} {:>8} {:>8}", "contender", "median", "min", "max", "vs qc-e", "vs moka");
    let mut tsv = String::from("contender\trounds\tmedian_ns\tmin_ns\tmax_ns\n");
    for (name, v) in &results {
        let m = median(v);
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(0.0, f64::max);
        println!("  {name:<26} {m:>9.1} {min:>9.1} {max:>9.1} {:>7.2}x {:>7.2}x", m / qc, m / moka);
        let _ = writeln!(tsv, "{name}\t{rounds}\t{m:.2}\t{min:.2}\t{max:.2}");
    }
    write_result("w1_interleaved.tsv", &tsv);
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

/// Runs one named contender's W1 hit loop (see [`profile_w1`]).
struct Profile<'a> {
    which: &'a str,
    order: &'a [u64],
    calls: u64,
    found: bool,
}

impl<'h> Visit<'h> for Profile<'_> {
    fn visit<F: Fn(u64) -> String + Sync + 'h>(&mut self, name: &'static str, f: F) {
        if name == self.which {
            self.found = true;
            let took = hit_loop(self.order, 0, self.calls, &f);
            let ns = took.as_nanos() as f64 / self.calls.max(1) as f64;
            println!("{name} W1: {} hits, {ns:.1} ns per call", self.calls);
        }
    }
}

/// `DOGPILE_BENCH_PROFILE=w1[:CONTENDER]`: one contender's W1 hit loop
/// alone (default dogpile), for a profiler; `DOGPILE_BENCH_CALLS` sets the
/// number of calls.
fn profile_w1(which: &str) {
    let hit = Hit::new();
    let calls: u64 = std::env::var("DOGPILE_BENCH_CALLS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let mut p = Profile { which, order: &hit.order, calls, found: false };
    hit.each(&mut p);
    assert!(p.found, "unknown contender {which:?} in DOGPILE_BENCH_PROFILE");
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
    if !listing && selected("w1_interleaved") {
        w1_interleaved(&hit);
    }
    if !listing && selected("w4_expired_stampede") {
        w4();
    }
}
