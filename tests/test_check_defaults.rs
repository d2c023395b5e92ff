//! `check()` builds the default backend of a region declared with one, so a
//! `region!` default that panics is reported at start-up, not by the first
//! call that uses the region.

use dogpile::backends::MemoryBackend;

fn exploding_backend() -> MemoryBackend {
    panic!("no cache directory configured")
}

dogpile::region!(EXPLODES, "check_defaults_explodes", backend = exploding_backend());
dogpile::region!(FINE, "check_defaults_fine", backend = MemoryBackend::new());

#[test]
fn a_region_default_backend_that_panics_is_reported_by_check() {
    let problems = dogpile::check().expect_err("one region's default panics").problems().to_vec();
    let ours: Vec<&String> = problems.iter().filter(|p| p.contains("check_defaults_")).collect();
    assert_eq!(ours.len(), 1, "{problems:?}");
    assert!(ours[0].contains("region `check_defaults_explodes`"), "{}", ours[0]);
    assert!(ours[0].contains("no cache directory configured"), "{}", ours[0]);
    assert!(ours[0].contains("tests/test_check_defaults.rs"), "names where it is declared: {}", ours[0]);
    // The healthy region was set up by the check and works.
    FINE.set("k", 1u8).unwrap();
    assert_eq!(FINE.get::<u8>("k").unwrap(), Some(1));
}
