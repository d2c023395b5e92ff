//! The README's first command: `cargo run --example quickstart`.
//!
//! A region on the in-memory backend: get_or_create, invalidation, and a
//! 32-thread stampede on one missing key where the creator runs once.

use dogpile::backends::MemoryBackend;
use dogpile::{Invalidation, Region};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

fn main() -> Result<(), dogpile::Error> {
    let region =
        Region::builder("quickstart").backend(MemoryBackend::new()).expiration(Duration::from_secs(60)).build();

    // 1. Cached creation: the second call does not run its creator.
    let first: String = region.get_or_create("greeting", || "hello".to_string())?;
    let second: String = region.get_or_create("greeting", || unreachable!("cached"))?;
    println!("get_or_create: {first} / {second}");

    // 2. Invalidation: values created before it are misses.
    region.invalidate(Invalidation::Hard);
    let after: String = region.get_or_create("greeting", || "hello again".to_string())?;
    println!("after invalidation: {after}");

    // 3. A stampede: 32 threads ask for one missing key at the same moment;
    //    the creator (a slow "database query") runs once, the others wait
    //    for its result.
    let creations = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(32));
    let threads: Vec<_> = (0..32)
        .map(|_| {
            let (region, creations, barrier) = (region.clone(), creations.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                region.get_or_create("report", || {
                    creations.fetch_add(1, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(100));
                    "expensive report".to_string()
                })
            })
        })
        .collect();
    for t in threads {
        let value: String = t.join().expect("thread panicked")?;
        assert_eq!(value, "expensive report");
    }
    println!("stampede: 32 threads, creator ran {} time(s)", creations.load(Ordering::SeqCst));
    println!("stats: {:?}", region.stats());
    Ok(())
}
