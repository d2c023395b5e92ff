//! `#[cached]` hit path next to cached 4.x's `#[cached(sync_writes =
//! "by_key")]` on the same function `fn f(id: u64) -> String` (both single
//! flight), in the same run. 1,000 keys are filled first, then each
//! iteration calls the function with the next key (64-byte string values,
//! DESIGN §7 W1).
//!
//! Also measured, to show where the time goes:
//! - `region_get_or_create`: the region API with a prebuilt key (the cost
//!   under the macro);
//! - `dogpile_cached_method`: the same function as a method (its key prefix
//!   comes from `type_name`);
//! - `cached_ttl_by_key`: cached with a one-hour TTL (our region judges
//!   expiry on every hit; this is the like-for-like peer).
//!
//! After criterion, an interleaved run measures the contenders in short
//! batches whose order rotates each round and prints each one's median
//! (ns per call) and the ratio to cached: on a busy machine this is the
//! fairer comparison, since every contender sees the same noise.
//!
//! `cargo bench -p dogpile-benches --bench macros` (add `-- --quick` for a short smoke run).
//! `DOGPILE_MACROS_PROFILE=dogpile_cached` (or any contender's name, or
//! `region_get_or_create`) runs only that contender's hit loop, 10 million
//! calls (`DOGPILE_MACROS_CALLS` to change), for `perf stat -e
//! instructions` or `valgrind --tool=callgrind`:
//! instruction counts do not suffer from a busy machine.

use criterion::{Criterion, criterion_group, criterion_main};
use dogpile::backends::MemoryBackend;
use dogpile::{Region, RegionConfig};
use std::hint::black_box;
use std::time::Duration;

const KEYS: u64 = 1_000;

fn value_for(id: u64) -> String {
    // 64 bytes.
    format!("{id:0>64}")
}

dogpile::region!(BENCH, "bench_macros", backend = MemoryBackend::new(), expiration = Duration::from_secs(3600));

#[dogpile::cached(region = "bench_macros")]
fn dogpile_f(id: u64) -> String {
    value_for(id)
}

struct Service;

impl Service {
    #[dogpile::cached(region = "bench_macros")]
    fn f(&self, id: u64) -> String {
        value_for(id)
    }
}

#[cached::macros::cached(sync_writes = "by_key")]
fn cached_f(id: u64) -> String {
    value_for(id)
}

#[cached::macros::cached(ttl_secs = 3600, sync_writes = "by_key")]
fn cached_ttl_f(id: u64) -> String {
    value_for(id)
}

fn bench(c: &mut Criterion) {
    let _ = RegionConfig::new();
    let region: Region = BENCH.region().expect("declared with a default backend");
    let keys: Vec<String> = (0..KEYS).map(dogpile_f::key).collect();
    for id in 0..KEYS {
        assert_eq!(dogpile_f(id), value_for(id));
        assert_eq!(Service.f(id), value_for(id));
        assert_eq!(cached_f(id), value_for(id));
        assert_eq!(cached_ttl_f(id), value_for(id));
    }
    let creations = region.stats().creations;

    let mut g = c.benchmark_group("macros_hit");
    g.bench_function("dogpile_cached", |b| {
        let mut id = 0;
        b.iter(|| {
            id = (id + 1) % KEYS;
            black_box(dogpile_f(black_box(id)))
        });
    });
    g.bench_function("cached_by_key", |b| {
        let mut id = 0;
        b.iter(|| {
            id = (id + 1) % KEYS;
            black_box(cached_f(black_box(id)))
        });
    });
    g.bench_function("cached_ttl_by_key", |b| {
        let mut id = 0;
        b.iter(|| {
            id = (id + 1) % KEYS;
            black_box(cached_ttl_f(black_box(id)))
        });
    });
    g.bench_function("dogpile_cached_method", |b| {
        let mut id = 0;
        b.iter(|| {
            id = (id + 1) % KEYS;
            black_box(Service.f(black_box(id)))
        });
    });
    g.bench_function("region_get_or_create", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % keys.len();
            let v: String = region.get_or_create(black_box(&keys[i]), || unreachable!("prefilled")).unwrap();
            black_box(v)
        });
    });
    g.finish();
    assert_eq!(region.stats().creations, creations, "every measured call was a hit");
}

/// The interleaved measurement: `rounds` rounds, each running every
/// contender for `batch` calls, in a rotating order.
fn interleaved() {
    type Contender = (&'static str, fn(u64) -> String);
    let contenders: [Contender; 4] = [
        ("dogpile_cached", dogpile_f),
        ("cached_by_key", cached_f),
        ("cached_ttl_by_key", cached_ttl_f),
        ("dogpile_cached_method", |id| Service.f(id)),
    ];
    let (rounds, batch) = (60, 20_000u64);
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); contenders.len()];
    for round in 0..rounds {
        for k in 0..contenders.len() {
            let i = (k + round) % contenders.len();
            let f = contenders[i].1;
            let start = std::time::Instant::now();
            for n in 0..batch {
                black_box(f(black_box(n % KEYS)));
            }
            samples[i].push(start.elapsed().as_nanos() as f64 / batch as f64);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians: Vec<f64> = samples.iter_mut().map(median).collect();
    println!("\ninterleaved hit medians ({rounds} rounds x {batch} calls, rotating order):");
    for (i, (name, _)) in contenders.iter().enumerate() {
        println!("  {name:<24} {:>7.1} ns   {:.2}x cached_by_key", medians[i], medians[i] / medians[1]);
    }
}

fn bench_and_interleave(c: &mut Criterion) {
    if let Ok(name) = std::env::var("DOGPILE_MACROS_PROFILE") {
        profile(&name);
        return;
    }
    bench(c);
    interleaved();
}

/// Only one contender's hit loop (after filling its keys).
fn profile(name: &str) {
    let region = BENCH.region().expect("declared with a default backend");
    let keys: Vec<String> = (0..KEYS).map(dogpile_f::key).collect();
    let f: Box<dyn Fn(u64) -> String> = match name {
        "dogpile_cached" => Box::new(dogpile_f),
        "cached_by_key" => Box::new(cached_f),
        "cached_ttl_by_key" => Box::new(cached_ttl_f),
        "dogpile_cached_method" => Box::new(|id| Service.f(id)),
        "region_get_or_create" => {
            for id in 0..KEYS {
                dogpile_f(id);
            }
            Box::new(move |id| region.get_or_create(&keys[id as usize], || unreachable!()).unwrap())
        }
        other => panic!("unknown contender {other}"),
    };
    for id in 0..KEYS {
        black_box(f(id));
    }
    let calls = std::env::var("DOGPILE_MACROS_CALLS").ok().and_then(|c| c.parse().ok()).unwrap_or(10_000_000u64);
    let start = std::time::Instant::now();
    for n in 0..calls {
        black_box(f(black_box(n % KEYS)));
    }
    println!("{name}: {:.1} ns per call", start.elapsed().as_nanos() as f64 / calls as f64);
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench_and_interleave
}
criterion_main!(benches);
