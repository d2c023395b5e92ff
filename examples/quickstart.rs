//! The README's first command: `cargo run --example quickstart`.
//!
//! A region on the in-memory backend, used two ways: directly
//! (`get_or_create`, invalidation) and through a `#[cached]` function, with a
//! 32-thread stampede on one missing key where the function body runs once.

use dogpile::backends::MemoryBackend;
use dogpile::{Invalidation, Region};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

// A region declared at module level, with a default backend and expiration
// (a config file could set them instead: see examples/config_file.rs).
dogpile::region!(REPORTS, "reports", backend = MemoryBackend::new(), expiration = Duration::from_secs(60));

static REPORT_RUNS: AtomicUsize = AtomicUsize::new(0);

/// A slow "database query", cached per id in the `reports` region.
#[dogpile::cached(region = "reports")]
fn report(id: u32) -> String {
    REPORT_RUNS.fetch_add(1, Ordering::SeqCst);
    thread::sleep(Duration::from_millis(100));
    format!("report #{id}")
}

fn main() -> Result<(), dogpile::Error> {
    // 1. A region used directly.
    let region =
        Region::builder("quickstart").backend(MemoryBackend::new()).expiration(Duration::from_secs(60)).build();
    let first: String = region.get_or_create("greeting", || "hello".to_string())?;
    let second: String = region.get_or_create("greeting", || unreachable!("cached"))?;
    println!("get_or_create: {first} / {second}");
    region.invalidate(Invalidation::Hard);
    let after: String = region.get_or_create("greeting", || "hello again".to_string())?;
    println!("after invalidation: {after}");

    // 2. A stampede through a #[cached] function: 32 threads call report(1)
    //    at the same moment; its body runs once, the others wait for it.
    let barrier = Arc::new(Barrier::new(32));
    let threads: Vec<_> = (0..32)
        .map(|_| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                report(1)
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("thread panicked"), "report #1");
    }
    println!("stampede: 32 threads called report(1), its body ran {} time(s)", REPORT_RUNS.load(Ordering::SeqCst));

    // 3. The companions generated beside the function share its key.
    println!("key: {}", report::key(1));
    println!("cached value: {:?}", report::get(1));
    report::invalidate(1);
    println!("after report::invalidate(1): {:?}", report::get(1));
    let _ = report(1);
    println!("body runs so far: {}", REPORT_RUNS.load(Ordering::SeqCst));
    // Each call counts one outcome. The stampede: 1 miss (the call that ran
    // the body) and 31 calls that got its value (waited; a thread arriving
    // after it landed would be a hit). Then report::get is a hit, the get
    // after the invalidation a miss, and the last report(1) a miss.
    let stats = REPORTS.stats()?;
    println!(
        "stats of `reports`: {} hits, {} waited for another call's value, {} misses, {} body runs",
        stats.hits, stats.waited, stats.misses, stats.creations
    );
    println!("  in full: {stats:?}");
    Ok(())
}
