//! Shared pieces of the memory benchmarks: keys and values, a counting slow
//! creator, the stampede harness (64 threads behind a barrier) and result
//! files for `scripts/bench`.

pub(crate) mod hit;
pub(crate) mod peers;

use std::cell::Cell;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How many distinct keys the hit workloads cycle through.
pub(crate) const KEYS: usize = 1_000;
/// Length of every cached value, in bytes.
pub(crate) const VALUE_LEN: usize = 64;
/// Threads in one stampede.
pub(crate) const THREADS: usize = 64;
/// How long the stampede creator sleeps.
pub(crate) const CREATOR_SLEEP: Duration = Duration::from_millis(100);

/// The string key of key number `k` (dogpile keys are `&str`).
pub(crate) fn key_str(k: u64) -> String {
    format!("item:{k}")
}

/// A 64-byte value for key `k`, starting with `tag` so that a stampede can
/// tell a stale value (`old`) from a regenerated one (`new`).
pub(crate) fn value_for(tag: &str, k: u64) -> String {
    let mut s = String::with_capacity(VALUE_LEN);
    let _ = write!(s, "{tag}-{k}-");
    while s.len() < VALUE_LEN {
        s.push('x');
    }
    s.truncate(VALUE_LEN);
    s
}

/// The order in which the hit workloads visit the keys: a fixed
/// pseudo-random permutation of `0..KEYS`, the same for every contender.
pub(crate) fn visit_order() -> Vec<u64> {
    crate::order::permutation(KEYS as u64, crate::order::SEED)
}

thread_local! {
    static IS_CREATOR: Cell<bool> = const { Cell::new(false) };
}

/// The creator used by the stampede workloads. While seeding it returns an
/// `old` value at once; otherwise it counts the call, marks the calling
/// thread as the creator, sleeps [`CREATOR_SLEEP`] and returns a `new` value.
pub(crate) struct Creator {
    calls: AtomicU64,
    seeding: AtomicBool,
}

impl Creator {
    /// A creator in stampede mode with no calls yet.
    pub(crate) const fn new() -> Self {
        Self { calls: AtomicU64::new(0), seeding: AtomicBool::new(false) }
    }

    /// Creates the value of key `k` (see the type's docs).
    pub(crate) fn create(&self, k: u64) -> String {
        if self.seeding.load(Ordering::SeqCst) {
            return value_for("old", k);
        }
        self.calls.fetch_add(1, Ordering::SeqCst);
        IS_CREATOR.with(|c| c.set(true));
        std::thread::sleep(CREATOR_SLEEP);
        value_for("new", k)
    }

    /// Runs `seed` with the creator in seeding mode (fast, uncounted, `old`).
    pub(crate) fn seeding<R>(&self, seed: impl FnOnce() -> R) -> R {
        self.seeding.store(true, Ordering::SeqCst);
        let r = seed();
        self.seeding.store(false, Ordering::SeqCst);
        r
    }

    /// Stampede-mode calls so far.
    pub(crate) fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

/// What one stampede round measured.
pub(crate) struct Round {
    /// From the first thread leaving the barrier to the last one holding a
    /// value.
    pub(crate) wall: Duration,
    /// Creator calls during the round.
    pub(crate) creators: u64,
    /// Latency of each thread that did not run the creator.
    pub(crate) others: Vec<Duration>,
    /// How many of those got the stale (`old`) value.
    pub(crate) others_stale: usize,
}

/// Runs one stampede: [`THREADS`] threads wait at a barrier, then each calls
/// `call(k, key_str(k))` once. The creator is `creator` (whose call count is
/// read before and after).
pub(crate) fn stampede<F>(k: u64, creator: &Creator, call: &F) -> Round
where
    F: Fn(u64, &str) -> String + Sync,
{
    let key = key_str(k);
    let before = creator.calls();
    let barrier = Barrier::new(THREADS);
    let results: Vec<(Instant, Instant, bool, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn_scoped(s, || {
                        IS_CREATOR.with(|c| c.set(false));
                        barrier.wait();
                        let start = Instant::now();
                        let v = call(k, &key);
                        let end = Instant::now();
                        (start, end, IS_CREATOR.with(Cell::get), v)
                    })
                    .expect("spawn a stampede thread")
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("stampede thread panicked")).collect()
    });
    let first = results.iter().map(|r| r.0).min().expect("threads ran");
    let last = results.iter().map(|r| r.1).max().expect("threads ran");
    let others: Vec<&(Instant, Instant, bool, String)> = results.iter().filter(|r| !r.2).collect();
    let stale = value_for("old", k);
    Round {
        wall: last - first,
        creators: creator.calls() - before,
        others_stale: others.iter().filter(|r| r.3 == stale).count(),
        others: others.iter().map(|r| r.1 - r.0).collect(),
    }
}

/// The `q`-quantile (0..=1) of `sorted` (nearest rank).
pub(crate) fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Whether the binary runs as a benchmark (`cargo bench`) rather than as a
/// quick smoke test (`cargo test -p dogpile-benches`, which `cargo test
/// --workspace` includes).
pub(crate) fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Whether `scripts/bench --quick` asked for short runs.
pub(crate) fn quick_mode() -> bool {
    std::env::var_os("DOGPILE_BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0")
}

/// The first positional argument (criterion's filter), if any.
pub(crate) fn filter_arg() -> Option<String> {
    std::env::args().skip(1).find(|a| !a.starts_with('-'))
}

/// Whether a workload named `name` passes the command-line filter (a plain
/// substring match; criterion itself treats the filter as a regex).
pub(crate) fn selected(name: &str) -> bool {
    filter_arg().is_none_or(|f| name.contains(&f))
}

/// Writes `text` to `$DOGPILE_BENCH_OUT/<file>` when that variable is set
/// (`scripts/bench` sets it and reads the files for its summary).
pub(crate) fn write_result(file: &str, text: &str) {
    let Some(dir) = std::env::var_os("DOGPILE_BENCH_OUT") else {
        return;
    };
    let dir = PathBuf::from(dir);
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(dir.join(file), text)) {
        eprintln!("could not write {}: {e}", dir.join(file).display());
    }
}
