//! The hit workloads' contenders (W1, W2), prefilled once, and the
//! interleaved W1 measurement that checks criterion's medians on a noisy
//! machine.

use super::peers::{Dogpile, Moka, QuickCacheExpiry, QuickCachePlain, cached_hit};
use super::{KEYS, key_str, value_for, visit_order};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Something done once per contender with its call, monomorphized so that
/// the call is inlined wherever it is used.
pub(crate) trait Visit<'h> {
    /// Called with each contender's name and call for key number `k`.
    fn visit<F: Fn(u64) -> String + Sync + 'h>(&mut self, name: &'static str, f: F);
}

/// Prefilled contenders for W1 and W2 (fresh for an hour).
pub(crate) struct Hit {
    /// The string form of every key (dogpile keys are `&str`).
    pub(crate) keys: Vec<String>,
    /// The order in which the keys are visited.
    pub(crate) order: Vec<u64>,
    dogpile: Dogpile,
    moka: Moka,
    qc_expiry: QuickCacheExpiry<u64>,
    qc_expiry_str: QuickCacheExpiry<String>,
    qc_plain: QuickCachePlain,
}

#[cold]
fn miss(k: u64) -> String {
    panic!("hit key {k} was not a hit")
}

impl Hit {
    /// Builds every contender and fills it with the [`KEYS`] values.
    pub(crate) fn new() -> Self {
        let hour = Duration::from_secs(3600);
        let hit = Self {
            keys: (0..KEYS as u64).map(key_str).collect(),
            order: visit_order(),
            dogpile: Dogpile::new(hour),
            moka: Moka::new(hour),
            qc_expiry: QuickCacheExpiry::new(hour),
            qc_expiry_str: QuickCacheExpiry::new(hour),
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

    /// Visits every contender, in table order.
    pub(crate) fn each<'h, V: Visit<'h>>(&'h self, v: &mut V) {
        let keys = &self.keys;
        v.visit("dogpile", move |k| self.dogpile.get_or_create(&keys[k as usize], || miss(k)));
        v.visit("moka", move |k| self.moka.get_or_create(k, || miss(k)));
        v.visit("cached", cached_hit);
        v.visit("quick_cache-expiry", move |k| self.qc_expiry.get_or_create(&k, || miss(k)));
        v.visit("quick_cache-expiry-strkey", move |k| {
            self.qc_expiry_str.get_or_create(keys[k as usize].as_str(), || miss(k))
        });
        v.visit("quick_cache-get", move |k| self.qc_plain.get(k).unwrap_or_else(|| miss(k)));
        v.visit("dogpile-get", move |k| self.dogpile.get(&keys[k as usize]).unwrap_or_else(|| miss(k)));
    }
}

/// Calls `f` on the next key of the visit order; `i` is the cursor.
#[inline(always)]
pub(crate) fn step<F: Fn(u64) -> String + ?Sized>(order: &[u64], i: &mut usize, f: &F) -> String {
    let k = order[*i];
    *i += 1;
    if *i == KEYS {
        *i = 0;
    }
    f(k)
}

/// `calls` hits through `f` in one loop; returns the time taken.
#[inline(never)]
pub(crate) fn hit_loop<F: Fn(u64) -> String>(order: &[u64], start_at: usize, calls: u64, f: &F) -> Duration {
    let mut i = start_at;
    let start = Instant::now();
    for _ in 0..calls {
        black_box(step(order, &mut i, f));
    }
    start.elapsed()
}

/// A contender's timed batch: `calls` hits, returns the time taken.
type Batch<'h> = Box<dyn Fn(u64) -> Duration + 'h>;

struct Batches<'h> {
    order: &'h [u64],
    runs: Vec<(&'static str, Batch<'h>)>,
}

impl<'h> Visit<'h> for Batches<'h> {
    fn visit<F: Fn(u64) -> String + Sync + 'h>(&mut self, name: &'static str, f: F) {
        let order = self.order;
        self.runs.push((name, Box::new(move |calls| hit_loop(order, 0, calls, &f))));
    }
}

/// W1 interleaved: `rounds` rounds, each timing one batch of `calls` hits
/// per contender, the contenders' order rotating every round, so that a
/// change in machine load hits every contender alike. Returns each
/// contender's ns per call, one sample per round.
pub(crate) fn interleaved(hit: &Hit, rounds: usize, calls: u64) -> Vec<(&'static str, Vec<f64>)> {
    let mut b = Batches { order: &hit.order, runs: Vec::new() };
    hit.each(&mut b);
    let n = b.runs.len();
    let mut samples = vec![Vec::with_capacity(rounds); n];
    for (_, run) in &b.runs {
        run(calls.min(10_000)); // warm caches and branch predictors
    }
    for r in 0..rounds {
        for j in 0..n {
            let idx = (j + r) % n;
            let took = (b.runs[idx].1)(calls);
            samples[idx].push(took.as_nanos() as f64 / calls as f64);
        }
    }
    b.runs.iter().map(|(name, _)| *name).zip(samples).collect()
}
