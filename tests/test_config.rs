//! Configuring declared regions by name: in code, from TOML (errors name
//! the region, the field and the line), from any serde source, and the
//! rules for configuring twice and for unknown names.

use dogpile::{BackendConfig, CacheConfig, Error, Expiration, RegionConfig};
use std::time::Duration;

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

dogpile::region!(ALPHA, "config_alpha");
dogpile::region!(BETA, "config_beta");
dogpile::region!(GAMMA, "config_gamma");
dogpile::region!(DELTA, "config_delta");
dogpile::region!(EPSILON, "config_epsilon");
dogpile::region!(ZETA, "config_zeta", expiration = Duration::from_secs(42));
dogpile::region!(ETA, "config_eta", backend = dogpile::backends::NullBackend);
dogpile::region!(THETA, "config_theta");
dogpile::region!(IOTA, "config_iota");

fn message(e: &Error) -> String {
    match e {
        Error::Config(m) => m.clone(),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[test]
fn toml_configures_every_listed_region() {
    dogpile::configure_from_toml(
        r#"
        [regions.config_alpha]
        backend = "memory"
        expiration = "90s"

        [regions.config_beta]
        backend = "bounded_memory"
        capacity = 2
        expiration = 3600
        stale_if_error = true
        early_refresh = 1.0
        lock_timeout = "10s"
        storage_grace = "1m"
        codec = "json"
        value_version = 3
        max_value_size = 1_000_000
        clock_skew_tolerance = "2s"
        "#,
    )
    .unwrap();
    let alpha = ALPHA.region().unwrap();
    assert_eq!(alpha.backend_name(), "memory");
    assert_eq!(alpha.expiration(), Expiration::After(Duration::from_secs(90)));
    let beta = BETA.region().unwrap();
    assert_eq!(beta.backend_name(), "bounded_memory");
    assert_eq!(beta.expiration(), Expiration::After(Duration::from_secs(3600)));
    ALPHA.set("k", 1u8).unwrap();
    assert_eq!(ALPHA.get::<u8>("k").unwrap(), Some(1));
}

#[test]
fn configuring_twice_is_an_error_unless_replacement_is_asked() {
    dogpile::configure("config_gamma", RegionConfig::new().backend(BackendConfig::new("memory"))).unwrap();
    GAMMA.set("k", 1u8).unwrap();
    let err = dogpile::configure("config_gamma", RegionConfig::new().backend(BackendConfig::new("null"))).unwrap_err();
    assert!(message(&err).contains("region `config_gamma` is already configured"), "{err}");
    assert_eq!(GAMMA.region().unwrap().backend_name(), "memory", "the first configuration stays");

    let err = dogpile::configure_from_toml("[regions.config_gamma]\nbackend = \"null\"\n").unwrap_err();
    assert!(
        message(&err).contains("region `config_gamma` (line 1) is already configured; add `replace = true`"),
        "{err}"
    );

    dogpile::configure_from_toml("[regions.config_gamma]\nbackend = \"null\"\nreplace = true\n").unwrap();
    assert_eq!(GAMMA.region().unwrap().backend_name(), "null");
    dogpile::configure_replace("config_gamma", RegionConfig::new().backend(BackendConfig::new("memory"))).unwrap();
    assert_eq!(GAMMA.get::<u8>("k").unwrap(), None, "a replaced region starts empty");
}

#[test]
fn unknown_region_names_list_the_declared_ones() {
    let err = dogpile::configure("config_nope", RegionConfig::new().backend(BackendConfig::new("memory"))).unwrap_err();
    let m = message(&err);
    assert!(m.starts_with("region `config_nope` is not declared; declared regions: "), "{m}");
    assert!(m.contains("config_alpha") && m.contains("config_zeta"), "{m}");

    let err = dogpile::configure_from_toml("\n\n[regions.config_nope]\nbackend = \"memory\"\n").unwrap_err();
    assert!(message(&err).starts_with("region `config_nope` (line 3) is not declared; declared regions: "), "{err}");
    assert!(matches!(dogpile::region("config_nope"), Err(Error::Config(_))));
}

#[test]
fn malformed_toml_names_region_field_and_line() {
    let cases = [
        (
            "[regions.config_delta]\nbackend = \"memory\"\nexpiration = \"5 parsecs\"\n",
            "region `config_delta`, field `expiration` (line 3): invalid duration `5 parsecs`",
        ),
        (
            "[regions.config_delta]\nbackend = \"memory\"\nexpiraton = \"5m\"\n",
            "region `config_delta`, field `expiraton` (line 3): unknown field; expected one of: backend, expiration, replace",
        ),
        (
            "[regions.config_delta]\nbackend = \"bounded_memory\"\n",
            "region `config_delta`, field `backend` (line 2): the `bounded_memory` backend needs `capacity`",
        ),
        (
            "[regions.config_delta]\nbackend = \"memory\"\ncapacity = 5\n",
            "region `config_delta`, field `capacity` (line 3): `capacity` is a field of the `bounded_memory` backend, not of `memory`",
        ),
        (
            "[regions.config_delta]\nbackend = \"memory\"\nexpiration = -5\n",
            "region `config_delta`, field `expiration` (line 3): invalid duration -5: expected seconds >= 0 (or -1 for never)",
        ),
        (
            "[regions.config_delta]\nbackend = 5\n",
            "region `config_delta`, field `backend` (line 2): invalid type: integer `5`, expected a string",
        ),
        (
            "[regions.config_delta]\nbackend = \"memory\"\ncodec = \"xml\"\n",
            "field `codec` (line 3): unknown codec `xml`",
        ),
        (
            "[regions.config_delta]\nbackend = \"memory\"\nmax_value_size = 0\n",
            "field `max_value_size` (line 3): max_value_size 0 would store nothing",
        ),
        ("[cache]\nx = 1\n", "unknown top-level key `cache` (line 1); region settings go in [regions.<name>] tables"),
        ("[regions]\nconfig_delta = 5\n", "region `config_delta`: expected a table of settings"),
        ("[regions.config_delta\nbackend = 1", "invalid TOML (line 1): "),
        (
            "[regions.config_delta]\nexpiration = \"5m\"\n",
            "region `config_delta`: no `backend` given and `region!` declares no default; available backends: memory",
        ),
    ];
    for (toml, expected) in cases {
        let err = dogpile::configure_from_toml(toml).unwrap_err();
        assert!(message(&err).contains(expected), "for\n{toml}\nexpected `{expected}`, got:\n{err}");
    }
    let err = dogpile::configure_from_toml("[regions.config_delta]\n\nbackend = \"redsi\"\n").unwrap_err();
    assert_eq!(
        message(&err),
        format!("region `config_delta`, field `backend` (line 3): unknown backend `redsi`; {}", backend_list())
    );
    assert!(!DELTA.is_configured(), "a failed configuration configures nothing");
}

#[test]
fn every_problem_is_reported_and_nothing_is_applied() {
    let err = dogpile::configure_from_toml(
        r#"
[regions.config_epsilon]
backend = "memory"

[regions.config_theta]
backend = "nope"
expiration = "soon"

[regions.config_unknown]
backend = "memory"
"#,
    )
    .unwrap_err();
    let m = message(&err);
    assert!(m.contains("region `config_theta`, field `expiration` (line 7)"), "{m}");
    assert!(m.contains("region `config_theta`, field `backend` (line 6): unknown backend `nope`"), "{m}");
    assert!(m.contains("region `config_unknown` (line 9) is not declared"), "{m}");
    assert!(!EPSILON.is_configured(), "the valid region was not applied either");
    assert!(!THETA.is_configured());
}

#[test]
fn declaration_defaults_fill_what_the_configuration_leaves_out() {
    // zeta declares an expiration: a configuration giving only a backend keeps it.
    dogpile::configure("config_zeta", RegionConfig::new().backend(BackendConfig::new("memory"))).unwrap();
    assert_eq!(ZETA.region().unwrap().expiration(), Expiration::After(Duration::from_secs(42)));

    // eta declares a backend: usable unconfigured, and a configuration may
    // still replace the default once without `replace`.
    assert!(ETA.is_configured());
    assert_eq!(ETA.region().unwrap().backend_name(), "null");
    dogpile::configure("config_eta", RegionConfig::new().expiration(Duration::from_secs(5))).unwrap();
    let eta = ETA.region().unwrap();
    assert_eq!(eta.backend_name(), "null", "the declared backend is kept");
    assert_eq!(eta.expiration(), Expiration::After(Duration::from_secs(5)));
}

#[test]
fn any_serde_source_works() {
    let config: CacheConfig = serde_json::from_str(
        r#"{"regions": {"config_iota": {"backend": "bounded_memory", "capacity": 10, "expiration": "never"}}}"#,
    )
    .unwrap();
    assert_eq!(config.regions["config_iota"].backend, Some(BackendConfig::new("bounded_memory").arg("capacity", 10)));
    assert_eq!(config.regions["config_iota"].expiration, Some(Expiration::Never));
    dogpile::configure_all(config).unwrap();
    assert_eq!(IOTA.region().unwrap().expiration(), Expiration::Never);

    let err = serde_json::from_str::<RegionConfig>(r#"{"backend": "memory", "expiration": true}"#).unwrap_err();
    assert!(err.to_string().contains("field `expiration`: invalid type: boolean `true`"), "{err}");
    let err = serde_json::from_str::<RegionConfig>(r#"{"backend": "bounded_memory"}"#).unwrap_err();
    assert!(err.to_string().contains("field `backend`: the `bounded_memory` backend needs `capacity`"), "{err}");
    let err = serde_json::from_str::<RegionConfig>(r#"{"backnd": "memory"}"#).unwrap_err();
    assert!(err.to_string().contains("field `backnd`: unknown field; expected one of: backend, expiration"), "{err}");
    let minus_one: RegionConfig = serde_json::from_str(r#"{"expiration": -1}"#).unwrap();
    assert_eq!(minus_one.expiration, Some(Expiration::Never));
    let float: RegionConfig = serde_json::from_str(r#"{"expiration": 1.5}"#).unwrap();
    assert_eq!(float.expiration, Some(Expiration::After(Duration::from_millis(1500))));
}

mod other_module {
    // A second declaration of a name declared above: one region, two handles.
    dogpile::region!(pub(crate) ALPHA_AGAIN, "config_kappa");
}
dogpile::region!(KAPPA, "config_kappa");

#[test]
fn two_declarations_of_one_name_are_one_region() {
    dogpile::configure("config_kappa", RegionConfig::new().backend(BackendConfig::new("memory"))).unwrap();
    KAPPA.set("k", 5u32).unwrap();
    assert_eq!(other_module::ALPHA_AGAIN.get::<u32>("k").unwrap(), Some(5));
    let info = dogpile::regions().into_iter().find(|r| r.name == "config_kappa").unwrap();
    assert_eq!(info.declared_at.len(), 2);
    assert!(info.configured);
}
