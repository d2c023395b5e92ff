//! The hit path as a new user measures it (issue 13): 1,000 keys visited in
//! a fixed pseudo-random order, one thread, values that are cheap to clone
//! (`Arc<str>`, 64 bytes) and, for comparison, owned `String`s; dogpile's
//! key rendered from the `u64` id on every call (as `#[cached] fn f(id:
//! u64)` must), next to:
//!
//! - `quick_cache-u64`: `get_or_insert_with` with `u64` keys, no expiry (a
//!   concurrent map read and a clone);
//! - `quick_cache-str`: `String` keys looked up by the rendered `&str`, no
//!   expiry (the floor for a string-keyed map);
//! - `quick_cache-expiry`: `u64` keys, a stored `Instant` checked against
//!   `Instant::now()` on every hit;
//! - `moka`: `sync::Cache::get_with`, `u64` keys, one-hour TTL;
//! - `cached`: cached 4.x `#[cached(ttl_secs = 3600, sync_writes = "by_key")]`
//!   on `fn f(id: u64)`;
//! - `dogpile-cached`: dogpile's `#[cached]` on `fn f(id: u64)`;
//! - `dogpile-region`: `Region::get_or_create` with the key rendered by
//!   `itoa` on the stack.
//!
//! W2 runs the same calls on two threads at once (each thread its own
//! rotation of the order) and reports million calls per second.
//!
//! Every contender is timed in short batches whose order rotates each
//! round (41 rounds), so machine noise hits them alike; the table gives
//! each one's median ns per call and its ratio to the string-keyed floor and
//! to `quick_cache-u64`.
//!
//! `cargo bench -p dogpile-benches --bench hit`. `DOGPILE_HIT_PROFILE=NAME`
//! (a contender's name, `:string` appended for the `String` variant) runs
//! that contender's loop alone (`DOGPILE_HIT_CALLS` calls, default 10
//! million) for `valgrind --tool=callgrind` or `perf`, on
//! `DOGPILE_HIT_THREADS` threads at once (default 1; the figure printed is
//! the slowest thread's ns per call).

#[path = "shared/order.rs"]
mod order;

use dogpile::Region;
use dogpile::backends::MemoryBackend;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A contender's name and its timed loop over an order of keys.
type Timed<'a> = (&'static str, Box<dyn Fn(&[u64]) -> Duration + Sync + 'a>);

const KEYS: u64 = 1_000;
const HOUR: Duration = Duration::from_secs(3600);

fn value(id: u64) -> String {
    format!("{id:0>64}")
}

/// The key of `id`, rendered on the stack: `item:<id>`.
struct Key {
    buf: [u8; 32],
    len: usize,
}

impl Key {
    #[inline(always)]
    fn new(id: u64) -> Self {
        let mut digits = itoa::Buffer::new();
        let d = digits.format(id).as_bytes();
        let mut buf = [0u8; 32];
        buf[..5].copy_from_slice(b"item:");
        buf[5..5 + d.len()].copy_from_slice(d);
        Key { buf, len: 5 + d.len() }
    }

    #[inline(always)]
    fn as_str(&self) -> &str {
        // Only ASCII was written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

dogpile::region!(HIT_ARC, "bench_hit_arc", backend = MemoryBackend::new(), expiration = HOUR);
dogpile::region!(HIT_STRING, "bench_hit_string", backend = MemoryBackend::new(), expiration = HOUR);

#[dogpile::cached(region = "bench_hit_arc")]
fn dogpile_arc(id: u64) -> Arc<str> {
    value(id).into()
}

#[dogpile::cached(region = "bench_hit_string")]
fn dogpile_string(id: u64) -> String {
    value(id)
}

#[cached::macros::cached(ttl_secs = 3600, sync_writes = "by_key")]
fn cached_arc(id: u64) -> Arc<str> {
    value(id).into()
}

#[cached::macros::cached(ttl_secs = 3600, sync_writes = "by_key")]
fn cached_string(id: u64) -> String {
    value(id)
}

/// A value type under test.
trait V: Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static {
    fn make(id: u64) -> Self;
}

impl V for Arc<str> {
    fn make(id: u64) -> Self {
        value(id).into()
    }
}

impl V for String {
    fn make(id: u64) -> Self {
        value(id)
    }
}

#[cold]
#[inline(never)]
fn miss<T>(id: u64) -> T {
    panic!("key {id} was not a hit")
}

/// Every contender, prefilled, for values of type `T`.
struct Contenders<T: V> {
    region: Region,
    cached_fn: fn(u64) -> T,
    dogpile_fn: fn(u64) -> T,
    qc_u64: quick_cache::sync::Cache<u64, T>,
    qc_str: quick_cache::sync::Cache<String, T>,
    qc_expiry: quick_cache::sync::Cache<u64, (Instant, T)>,
    moka: moka::sync::Cache<u64, T>,
}

impl<T: V> Contenders<T> {
    fn new(region: Region, dogpile_fn: fn(u64) -> T, cached_fn: fn(u64) -> T) -> Self {
        let c = Contenders {
            region,
            cached_fn,
            dogpile_fn,
            qc_u64: quick_cache::sync::Cache::new(100_000),
            qc_str: quick_cache::sync::Cache::new(100_000),
            qc_expiry: quick_cache::sync::Cache::new(100_000),
            moka: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(HOUR).build(),
        };
        for id in 0..KEYS {
            let v = T::make(id);
            c.region.set(Key::new(id).as_str(), v.clone()).expect("memory backend");
            c.qc_u64.insert(id, v.clone());
            c.qc_str.insert(Key::new(id).as_str().to_owned(), v.clone());
            c.qc_expiry.insert(id, (Instant::now(), v.clone()));
            c.moka.insert(id, v.clone());
            let _ = (c.cached_fn)(id);
            let _ = (c.dogpile_fn)(id);
        }
        c
    }

    /// The contenders' calls, by name.
    fn calls(&self) -> Vec<Timed<'_>> {
        vec![
            (
                "dogpile-region",
                Box::new(move |order| {
                    run(order, |id| {
                        self.region
                            .get_or_create::<T, _>(Key::new(id).as_str(), || miss(id))
                            .unwrap_or_else(|_| miss(id))
                    })
                }),
            ),
            ("dogpile-cached", Box::new(move |order| run(order, self.dogpile_fn))),
            (
                "quick_cache-u64",
                Box::new(move |order| {
                    run(order, |id| {
                        self.qc_u64.get_or_insert_with(&id, || Ok::<T, ()>(miss(id))).unwrap_or_else(|()| miss(id))
                    })
                }),
            ),
            (
                "quick_cache-str",
                Box::new(move |order| {
                    run(order, |id| {
                        self.qc_str
                            .get_or_insert_with(Key::new(id).as_str(), || Ok::<T, ()>(miss(id)))
                            .unwrap_or_else(|()| miss(id))
                    })
                }),
            ),
            (
                "quick_cache-expiry",
                Box::new(move |order| {
                    run(order, |id| {
                        let (at, v) = self
                            .qc_expiry
                            .get_or_insert_with(&id, || Ok::<(Instant, T), ()>(miss(id)))
                            .unwrap_or_else(|()| miss(id));
                        if at.elapsed() < HOUR { v } else { miss(id) }
                    })
                }),
            ),
            ("moka", Box::new(move |order| run(order, |id| self.moka.get_with(id, || miss(id))))),
            ("cached", Box::new(move |order| run(order, self.cached_fn))),
        ]
    }
}

/// One call per entry of `order`, timed.
#[inline(never)]
fn run<T, F: Fn(u64) -> T>(order: &[u64], f: F) -> Duration {
    let start = Instant::now();
    for &id in order {
        black_box(f(black_box(id)));
    }
    start.elapsed()
}

/// The visit order: every key, a fixed pseudo-random permutation, repeated
/// `reps` times.
fn order(reps: usize) -> Vec<u64> {
    let one = order::permutation(KEYS, order::SEED);
    one.iter().copied().cycle().take(one.len() * reps).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Interleaved rounds; returns each contender's median ns per call.
fn measure<T: V>(c: &Contenders<T>, rounds: usize, reps: usize) -> Vec<(&'static str, f64)> {
    let order = order(reps);
    let calls = c.calls();
    for (_, f) in &calls {
        f(&order); // warm up
    }
    let mut samples = vec![Vec::new(); calls.len()];
    for r in 0..rounds {
        for j in 0..calls.len() {
            let i = (j + r) % calls.len();
            let took = (calls[i].1)(&order);
            samples[i].push(took.as_nanos() as f64 / order.len() as f64);
        }
    }
    calls.iter().map(|(n, _)| *n).zip(samples.into_iter().map(median)).collect()
}

/// W2: two threads doing W1 at once (each its own rotation of the order),
/// interleaved rounds; returns each contender's median million calls per
/// second, both threads together (the calls over the slower thread's time).
fn measure_two_threads<T: V>(c: &Contenders<T>, rounds: usize, reps: usize) -> Vec<(&'static str, f64)> {
    let first = order(reps);
    let mut second = first.clone();
    second.rotate_left(KEYS as usize / 2);
    let calls = c.calls();
    let both = |f: &(dyn Fn(&[u64]) -> Duration + Sync)| {
        let barrier = std::sync::Barrier::new(2);
        let took = std::thread::scope(|s| {
            let a = s.spawn(|| {
                barrier.wait();
                f(&first)
            });
            let b = s.spawn(|| {
                barrier.wait();
                f(&second)
            });
            a.join().expect("bench thread").max(b.join().expect("bench thread"))
        });
        (2 * first.len()) as f64 / took.as_secs_f64() / 1e6
    };
    for (_, f) in &calls {
        both(f.as_ref()); // warm up
    }
    let mut samples = vec![Vec::new(); calls.len()];
    for r in 0..rounds {
        for j in 0..calls.len() {
            let i = (j + r) % calls.len();
            samples[i].push(both(calls[i].1.as_ref()));
        }
    }
    calls.iter().map(|(n, _)| *n).zip(samples.into_iter().map(median)).collect()
}

fn table_two_threads(title: &str, results: &[(&'static str, f64)]) -> String {
    let of = |name: &str| results.iter().find(|(n, _)| *n == name).map_or(f64::NAN, |r| r.1);
    let (floor, u64_floor) = (of("quick_cache-str"), of("quick_cache-u64"));
    let mut out = format!(
        "### {title}\n\n| contender | M calls/s | vs quick_cache-str | vs quick_cache-u64 |\n|---|---:|---:|---:|\n"
    );
    for (name, mcs) in results {
        out += &format!("| {name} | {mcs:.2} | {:.2}x | {:.2}x |\n", mcs / floor, mcs / u64_floor);
    }
    out
}

fn table(title: &str, results: &[(&'static str, f64)]) -> String {
    let of = |name: &str| results.iter().find(|(n, _)| *n == name).map_or(f64::NAN, |r| r.1);
    let (floor, u64_floor) = (of("quick_cache-str"), of("quick_cache-u64"));
    let mut out = format!(
        "### {title}\n\n| contender | median ns | vs quick_cache-str | vs quick_cache-u64 |\n|---|---:|---:|---:|\n"
    );
    for (name, ns) in results {
        out += &format!("| {name} | {ns:.1} | {:.2}x | {:.2}x |\n", ns / floor, ns / u64_floor);
    }
    out
}

fn profile(spec: &str) {
    let calls: usize = std::env::var("DOGPILE_HIT_CALLS").ok().and_then(|c| c.parse().ok()).unwrap_or(10_000_000);
    let (name, string) = match spec.strip_suffix(":string") {
        Some(n) => (n, true),
        None => (spec, false),
    };
    let reps = calls.div_ceil(KEYS as usize);
    let order = order(reps);
    let threads: usize = std::env::var("DOGPILE_HIT_THREADS").ok().and_then(|c| c.parse().ok()).unwrap_or(1);
    let go = |calls: Vec<Timed<'_>>| {
        let (_, f) = calls.into_iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("no contender {name:?}"));
        std::thread::scope(|s| {
            let runs: Vec<_> = (0..threads)
                .map(|t| {
                    let (f, order) = (&f, &order);
                    s.spawn(move || {
                        let mut mine = order.clone();
                        mine.rotate_left(t * KEYS as usize / threads.max(1));
                        f(&mine)
                    })
                })
                .collect();
            runs.into_iter().map(|r| r.join().expect("profile thread")).max().unwrap_or_default()
        })
    };
    let took = if string {
        let c = Contenders::<String>::new(HIT_STRING.region().expect("default"), dogpile_string, cached_string);
        go(c.calls())
    } else {
        let c = Contenders::<Arc<str>>::new(HIT_ARC.region().expect("default"), dogpile_arc, cached_arc);
        go(c.calls())
    };
    eprintln!("{spec}: {:.1} ns per call", took.as_nanos() as f64 / order.len() as f64);
}

fn main() {
    if let Ok(spec) = std::env::var("DOGPILE_HIT_PROFILE") {
        return profile(&spec);
    }
    // `cargo test` runs benchmarks with `--test` (a smoke run); `--quick`
    // shortens a measurement.
    let args: Vec<String> = std::env::args().collect();
    let smoke = args.iter().any(|a| a == "--test");
    let quick = args.iter().any(|a| a == "--quick");
    let (rounds, reps) = if smoke {
        (1, 1)
    } else if quick {
        (11, 20)
    } else {
        (41, 50)
    };
    let arc = Contenders::<Arc<str>>::new(HIT_ARC.region().expect("default"), dogpile_arc, cached_arc);
    let arc_results = measure(&arc, rounds, reps);
    let string = Contenders::<String>::new(HIT_STRING.region().expect("default"), dogpile_string, cached_string);
    let string_results = measure(&string, rounds, reps);
    let (w2_rounds, w2_reps) = if smoke { (1, 1) } else { (rounds, reps) };
    let arc_w2 = measure_two_threads(&arc, w2_rounds, w2_reps);
    let string_w2 = measure_two_threads(&string, w2_rounds, w2_reps);
    let out = format!(
        "{}\n{}\n{}\n{}",
        table("W1 hit, `Arc<str>` values, keys rendered per call (ns per call, interleaved medians)", &arc_results),
        table("W1 hit, `String` values, keys rendered per call (ns per call, interleaved medians)", &string_results),
        table_two_threads(
            "W2 hit, two threads, `Arc<str>` values (million calls per second, both threads, interleaved medians)",
            &arc_w2
        ),
        table_two_threads(
            "W2 hit, two threads, `String` values (million calls per second, both threads, interleaved medians)",
            &string_w2
        )
    );
    println!("{out}");
    if let Ok(dir) = std::env::var("DOGPILE_BENCH_OUT") {
        let _ = std::fs::write(std::path::Path::new(&dir).join("hit.md"), &out);
    }
    let region_stats = HIT_ARC.region().expect("default").stats();
    assert_eq!(region_stats.creations, KEYS, "every measured call was a hit");
}
