//! Regression tests for the facade items of issue 7: each test is named
//! after what broke, and failed before its fix.

use dogpile::backends::BoundedMemoryBackend;
use dogpile::{Backend, BackendConfig, Error, Meta, RegionConfig, Value};
use std::sync::Arc;

fn config_message(e: &Error) -> String {
    match e {
        Error::Config(m) => m.clone(),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

// ----- 9. a zero weight unbounds the bounded backend; capacity = 0 -----

fn object(n: u64) -> Value {
    Value::Object { meta: Meta { created_nanos: 0, creation_nanos: 0 }, object: Arc::new(n) }
}

#[test]
fn zero_weight_entries_do_not_make_the_bounded_backend_unbounded() {
    let backend = BoundedMemoryBackend::with_weigher(1_000, |_, _| 0);
    for i in 0..10_000u64 {
        backend.set(&format!("k{i}"), object(i), None).unwrap();
    }
    assert!(backend.len() <= 1_000, "{} entries kept with a max weight of 1,000", backend.len());
    assert!(backend.weight() <= 1_000, "weight {}", backend.weight());
}

dogpile::region!(ZERO_TOML, "defects_zero_capacity_toml");
dogpile::region!(ZERO_CODE, "defects_zero_capacity_code");

#[test]
fn zero_capacity_is_rejected_in_config() {
    let err = dogpile::configure_from_toml(
        "[regions.defects_zero_capacity_toml]\nbackend = \"bounded_memory\"\ncapacity = 0\n",
    )
    .unwrap_err();
    let m = config_message(&err);
    assert!(m.contains("region `defects_zero_capacity_toml`, field `capacity` (line 3)"), "{m}");
    assert!(m.contains("at least 1"), "{m}");
    assert!(!ZERO_TOML.is_configured());

    let from_json: Result<RegionConfig, _> = serde_json::from_str(r#"{"backend": "bounded_memory", "capacity": 0}"#);
    let e = from_json.unwrap_err().to_string();
    assert!(e.contains("field `capacity`") && e.contains("at least 1"), "{e}");

    let err = dogpile::configure(
        "defects_zero_capacity_code",
        RegionConfig::new().backend(BackendConfig::BoundedMemory { capacity: 0 }),
    )
    .unwrap_err();
    let m = config_message(&err);
    assert!(m.contains("region `defects_zero_capacity_code`, field `capacity`"), "{m}");
    assert!(!ZERO_CODE.is_configured());
}

// ----- 12. misleading error messages -----

dogpile::region!(PLANNED, "defects_planned_backend");

#[test]
fn planned_backend_does_not_name_a_feature_that_does_not_exist() {
    let err = dogpile::configure_from_toml("[regions.defects_planned_backend]\nbackend = \"redis\"\n").unwrap_err();
    let m = config_message(&err);
    assert!(!m.contains("feature"), "names a cargo feature that does not exist: {m}");
    assert!(m.contains("region `defects_planned_backend`, field `backend` (line 2)"), "{m}");
    assert!(m.contains("not yet available: redis, memcached, file"), "{m}");
    assert!(m.contains("available backends: memory, bounded_memory, null"), "{m}");
}

dogpile::region!(TWICE, "defects_key_twice");

#[test]
fn duplicate_toml_key_names_the_region_and_the_field() {
    let err = dogpile::configure_from_toml(
        "[regions.defects_key_twice]\nbackend = \"memory\"\nexpiration = \"5m\"\nbackend = \"null\"\n",
    )
    .unwrap_err();
    let m = config_message(&err);
    assert!(m.contains("region `defects_key_twice`, field `backend` (line 4)"), "{m}");
    assert!(m.contains("line 2"), "names the first one too: {m}");
    assert!(!TWICE.is_configured());
}
