//! Backends configured by name: each backend's own fields next to
//! `backend = "..."`, checked by the backend's settings type; unknown and
//! compiled-out backends, misplaced fields and bad values are errors that
//! name the region, the field and the backend.

use dogpile::backends::config::{self, Args, BACKENDS, BackendEntry, ConfigError};
use dogpile::{BackendConfig, Error, RegionConfig};

/// The list of backends in messages, as this build has them (redis,
/// memcached and file are each behind the cargo feature of their name).
fn backend_list() -> String {
    if cfg!(all(feature = "redis", feature = "memcached", feature = "file")) {
        "available backends: memory, bounded_memory, null, redis, memcached, file".into()
    } else if cfg!(not(any(feature = "redis", feature = "memcached", feature = "file"))) {
        "available backends: memory, bounded_memory, null; not compiled in: redis (cargo feature `redis`), \
         memcached (cargo feature `memcached`), file (cargo feature `file`)"
            .into()
    } else {
        // A build with some of them: the list the library makes.
        dogpile::backends::config::backend_list()
    }
}

dogpile::region!(MEMORY, "backends_memory");
dogpile::region!(BOUNDED, "backends_bounded");
dogpile::region!(NULL, "backends_null");
dogpile::region!(IN_CODE, "backends_in_code");
dogpile::region!(UNTOUCHED, "backends_untouched");
dogpile::region!(LEASE_BAD, "lease_misconfigured");
dogpile::region!(LEASE_OK, "lease_configured");

fn message(e: &Error) -> String {
    match e {
        Error::Config(m) => m.clone(),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

/// The error of configuring `backends_untouched` from `fields`, which must
/// fail and leave the region unconfigured.
fn toml_error(fields: &str) -> String {
    let err = dogpile::configure_from_toml(&format!("[regions.backends_untouched]\n{fields}")).unwrap_err();
    assert!(!UNTOUCHED.is_configured(), "a failed configuration configures nothing");
    message(&err)
}

#[test]
fn each_backend_is_built_from_its_table() {
    dogpile::configure_from_toml(
        r#"
[regions.backends_memory]
backend = "memory"

[regions.backends_bounded]
backend = "bounded_memory"
capacity = 1

[regions.backends_null]
backend = "null"
"#,
    )
    .unwrap();
    assert_eq!(MEMORY.region().unwrap().backend_name(), "memory");
    MEMORY.set("k", 1u8).unwrap();
    assert_eq!(MEMORY.get::<u8>("k").unwrap(), Some(1), "memory keeps values");

    assert_eq!(BOUNDED.region().unwrap().backend_name(), "bounded_memory");
    for i in 0..100u32 {
        BOUNDED.set(&i.to_string(), i).unwrap();
    }
    let kept = (0..100u32).filter(|i| BOUNDED.get::<u32>(&i.to_string()).unwrap().is_some()).count();
    assert!((1..100).contains(&kept), "a capacity of 1 keeps few of 100 entries, kept {kept}");

    assert_eq!(NULL.region().unwrap().backend_name(), "null");
    NULL.set("k", 1u8).unwrap();
    assert_eq!(NULL.get::<u8>("k").unwrap(), None, "null keeps nothing");
}

#[test]
fn backends_are_built_in_code_by_name_with_their_arguments() {
    dogpile::configure(
        "backends_in_code",
        RegionConfig::new().backend(BackendConfig::new("bounded_memory").arg("capacity", 5)),
    )
    .unwrap();
    assert_eq!(IN_CODE.region().unwrap().backend_name(), "bounded_memory");

    let err = dogpile::configure_replace(
        "backends_in_code",
        RegionConfig::new().backend(BackendConfig::new("bounded_memory").arg("capacity", 0)),
    )
    .unwrap_err();
    assert!(
        message(&err).starts_with(
            "region `backends_in_code`, field `capacity`: `capacity` of the `bounded_memory` backend: capacity 0"
        ),
        "{err}"
    );
    let err = dogpile::configure_replace(
        "backends_in_code",
        RegionConfig::new().backend(BackendConfig::new("memory").arg("expiration", "5m")),
    )
    .unwrap_err();
    assert_eq!(
        message(&err),
        "region `backends_in_code`, field `expiration`: `expiration` is a setting of the region, not an argument of the `memory` backend"
    );
    assert_eq!(IN_CODE.region().unwrap().backend_name(), "bounded_memory", "failures replace nothing");
}

#[test]
fn an_unknown_backend_lists_the_available_ones() {
    assert_eq!(
        toml_error("backend = \"mem\"\n"),
        format!("region `backends_untouched`, field `backend` (line 2): unknown backend `mem`; {}", backend_list())
    );
    assert_eq!(config::backend_list(), backend_list());
    assert!(!config::backend_list().contains("not yet available"), "every backend is written");
    let err = serde_json::from_str::<RegionConfig>(r#"{"backend": "mem"}"#).unwrap_err();
    assert!(err.to_string().starts_with("field `backend`: unknown backend `mem`; available backends: memory"), "{err}");
}

#[test]
fn a_compiled_out_backend_names_its_feature() {
    // The row of redis in a build without its feature.
    let row = BackendEntry::compiled_out("redis", "redis");
    assert!(!row.compiled);
    let err = row.build(&Args::new()).unwrap_err();
    assert!(
        err.to_string().starts_with(
            "the `redis` backend is not compiled in: `redis` needs the cargo feature `redis` of dogpile; \
             available backends: memory, bounded_memory, null"
        ),
        "{err}"
    );
}

#[test]
fn every_backend_row_follows_its_feature() {
    let compiled: Vec<&str> = BACKENDS.iter().filter(|b| b.compiled).map(|b| b.name).collect();
    let mut expected = vec!["memory", "bounded_memory", "null"];
    for (name, on, field) in [
        ("redis", cfg!(feature = "redis"), "url"),
        ("memcached", cfg!(feature = "memcached"), "servers"),
        ("file", cfg!(feature = "file"), "path"),
    ] {
        let entry = config::find(name).unwrap();
        assert_eq!((entry.feature, entry.compiled), (Some(name), on), "{name}");
        if on {
            expected.push(name);
            assert!(entry.fields().contains(&field), "{name}: {:?}", entry.fields());
        } else {
            assert!(matches!(config::build(name, &Args::new()), Err(ConfigError::NotCompiled { written: true, .. })));
        }
    }
    assert_eq!(compiled, expected);
}

#[test]
fn a_field_of_another_backend_names_region_field_and_backends() {
    assert_eq!(
        toml_error("backend = \"null\"\n\ncapacity = 5\n"),
        "region `backends_untouched`, field `capacity` (line 4): `capacity` is a field of the `bounded_memory` backend, \
         not of `null`"
    );
    assert_eq!(
        toml_error("capacity = 5\n"),
        "region `backends_untouched`, field `capacity` (line 2): `capacity` is a field of the `bounded_memory` backend, \
         and no backend is set"
    );
    assert_eq!(
        toml_error("backend = \"bounded_memory\"\ncapacity = 5\ncapasity = 6\n"),
        "region `backends_untouched`, field `capasity` (line 4): unknown field; expected one of: backend, expiration, \
         replace, stale_if_error, early_refresh, lock_timeout, lease_keep_alive, invalidation_refresh, storage_grace, \
         codec, value_version, max_value_size, clock_skew_tolerance, or a field of the `bounded_memory` backend (capacity)"
    );
    let err = serde_json::from_str::<RegionConfig>(r#"{"backend": "memory", "capacity": 5}"#).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("field `capacity`: `capacity` is a field of the `bounded_memory` backend, not of `memory`"),
        "{err}"
    );
}

#[test]
fn a_bad_capacity_is_refused_with_its_line() {
    let cases = [
        (
            "capacity = 0\n",
            "`capacity` of the `bounded_memory` backend: capacity 0 would keep no entries: give at least 1",
        ),
        ("capacity = -1\n", "`capacity` of the `bounded_memory` backend: invalid value: integer `-1`, expected u64"),
        (
            "capacity = \"lots\"\n",
            "`capacity` of the `bounded_memory` backend: invalid type: string \"lots\", expected u64",
        ),
    ];
    for (field, expected) in cases {
        let m = toml_error(&format!("backend = \"bounded_memory\"\n{field}"));
        assert!(m.starts_with("region `backends_untouched`, field `capacity` (line 3): "), "{m}");
        assert!(m.contains(expected), "for {field:?} expected `{expected}`, got:\n{m}");
    }
    assert_eq!(
        toml_error("backend = \"bounded_memory\"\n"),
        "region `backends_untouched`, field `backend` (line 2): the `bounded_memory` backend needs `capacity`"
    );
    let err = serde_json::from_str::<RegionConfig>(r#"{"backend": "bounded_memory", "capacity": 0}"#).unwrap_err();
    assert!(
        err.to_string().contains("field `capacity`: `capacity` of the `bounded_memory` backend: capacity 0"),
        "{err}"
    );
}

#[test]
fn a_lease_keep_alive_not_shorter_than_the_lease_is_refused_naming_the_region() {
    let err = dogpile::configure_from_toml(
        "[regions.lease_misconfigured]\nbackend = \"memory\"\nlock_timeout = \"10s\"\nlease_keep_alive = \"10s\"\n",
    )
    .unwrap_err();
    let m = message(&err);
    assert!(m.contains("lease_misconfigured") && m.contains("keep-alive") && m.contains("lock_timeout"), "{m}");
    let ok = dogpile::configure_from_toml(
        "[regions.lease_configured]\nbackend = \"memory\"\nlock_timeout = \"10s\"\nlease_keep_alive = \"2s\"\ninvalidation_refresh = \"250ms\"\n",
    );
    assert!(ok.is_ok(), "{ok:?}");
    assert!(!LEASE_BAD.is_configured() && LEASE_OK.is_configured());
}
