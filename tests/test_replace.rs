//! Replacing a configured region reaches every `#[cached]` call site, both
//! through the fast path (first region, read without the `ArcSwap`) and
//! after a replacement.

use dogpile::Region;
use dogpile::backends::{MemoryBackend, NullBackend};
use std::sync::atomic::{AtomicUsize, Ordering};

dogpile::region!(SWAP, "swap");

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[dogpile::cached(region = "swap")]
fn square(n: u64) -> u64 {
    RUNS.fetch_add(1, Ordering::SeqCst);
    n * n
}

#[test]
fn replacement_is_seen_by_cached_calls() {
    // Not configured yet: the function runs uncached (fails open).
    assert_eq!(square(3), 9);
    assert_eq!(square(3), 9);
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);

    // First region: memory. Cached from now on.
    dogpile::configure_region(Region::builder("swap").backend(MemoryBackend::new()).build()).unwrap();
    assert_eq!(square(3), 9);
    assert_eq!(square(3), 9);
    assert_eq!(RUNS.load(Ordering::SeqCst), 3);

    // A second configuration without replacement is refused and changes nothing.
    assert!(dogpile::configure_region(Region::builder("swap").backend(NullBackend).build()).is_err());
    assert_eq!(square(3), 9);
    assert_eq!(RUNS.load(Ordering::SeqCst), 3);

    // Replaced by the null backend: every call runs the body.
    dogpile::replace_region(Region::builder("swap").backend(NullBackend).build()).unwrap();
    assert_eq!(square(3), 9);
    assert_eq!(square(3), 9);
    assert_eq!(RUNS.load(Ordering::SeqCst), 5);

    // And replaced again by a memory backend: cached again.
    dogpile::replace_region(Region::builder("swap").backend(MemoryBackend::new()).build()).unwrap();
    assert_eq!(square(3), 9);
    assert_eq!(square(3), 9);
    assert_eq!(RUNS.load(Ordering::SeqCst), 6);
    assert_eq!(SWAP.stats().unwrap().hits, 1);
}
