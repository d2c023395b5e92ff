//! Regression tests for the facade items of issue 7: each test is named
//! after what broke, and failed before its fix.

use dogpile::backend::{Backend, BlockingBackend, Meta, Value};
use dogpile::backends::{BoundedMemoryBackend, MemoryBackend};
use dogpile::{BackendConfig, Error, Region, RegionConfig, cached};
use std::sync::{Arc, Mutex};

fn config_message(e: &Error) -> String {
    match e {
        Error::Config(m) => m.clone(),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

/// The problems `check()` reports about one region.
fn check_problems_about(region: &str) -> Vec<String> {
    let problems = dogpile::check().err().map(|e| e.problems().to_vec()).unwrap_or_default();
    problems.into_iter().filter(|p| p.contains(&format!("region `{region}`"))).collect()
}

// ----- 6. a local cached function and a module function share a key -----

dogpile::region!(LOCAL, "defects_local", backend = MemoryBackend::new());

mod report {
    use dogpile::cached;

    #[cached(region = "defects_local")]
    pub(crate) fn load(id: u64) -> String {
        format!("module {id}")
    }
}

fn report() -> String {
    #[cached(region = "defects_local")]
    fn load(id: u64) -> String {
        format!("local {id}")
    }
    load(1)
}

#[test]
fn local_function_and_module_function_with_one_path_do_not_share_keys() {
    assert_eq!(report::load(1), "module 1");
    // Before: the local `load` got `test_defects_facade::report::load|1`
    // too, and returned "module 1".
    assert_eq!(report(), "local 1");
    assert!(check_problems_about("defects_local").is_empty(), "{:?}", check_problems_about("defects_local"));
}

#[test]
fn local_function_key_prefix_marks_the_enclosing_function() {
    #[cached(region = "defects_local")]
    fn scoped(id: u64) -> u64 {
        id
    }
    assert_eq!(
        scoped::key(3),
        "test_defects_facade::local_function_key_prefix_marks_the_enclosing_function()::scoped|3"
    );
}

dogpile::region!(NAMED, "defects_named", backend = MemoryBackend::new());

mod named {
    use dogpile::cached;

    #[cached(region = "defects_named")]
    pub(crate) fn f(id: u64) -> u64 {
        id
    }

    // A `name` spelling out another function's path: their keys mix.
    #[cached(region = "defects_named", name = "test_defects_facade::named::f")]
    pub(crate) fn g(id: u64) -> u64 {
        id + 1
    }
}

#[test]
fn check_reports_a_name_equal_to_another_functions_key_prefix() {
    assert_eq!(named::f::key(1), named::g::key(1));
    let problems = check_problems_about("defects_named");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("share the key prefix `test_defects_facade::named::f`"), "{problems:?}");
}

dogpile::region!(TWINS, "defects_twins", backend = MemoryBackend::new());

/// Two cached functions in two blocks of one function: Rust names both
/// `twins::load`, so they still share a prefix, and `check()` says so.
fn twins() -> (String, String) {
    let a = {
        #[cached(region = "defects_twins")]
        fn load(id: u64) -> String {
            format!("a {id}")
        }
        load(1)
    };
    let b = {
        #[cached(region = "defects_twins")]
        fn load(id: u64) -> String {
            format!("b {id}")
        }
        load(1)
    };
    (a, b)
}

#[test]
fn check_message_about_shared_prefixes_describes_local_functions_correctly() {
    let _ = twins();
    let problems = check_problems_about("defects_twins");
    assert_eq!(problems.len(), 1, "{problems:?}");
    let p = &problems[0];
    assert!(!p.contains("named by their module only"), "outdated wording: {p}");
    assert!(p.contains("share the key prefix `test_defects_facade::twins()::load`"), "{p}");
    assert!(p.contains("name = "), "says what to do: {p}");
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
        RegionConfig::new().backend(BackendConfig::new("bounded_memory").arg("capacity", 0)),
    )
    .unwrap_err();
    let m = config_message(&err);
    assert!(m.contains("region `defects_zero_capacity_code`, field `capacity`"), "{m}");
    assert!(!ZERO_CODE.is_configured());
}

// ----- 11. Arc<T> values cannot be cached -----

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Report {
    id: u64,
    body: String,
}

#[test]
fn arc_values_can_be_cached_and_memory_hits_share_the_allocation() {
    let backends: [Arc<dyn Backend>; 2] =
        [Arc::new(MemoryBackend::new()), Arc::new(BoundedMemoryBackend::with_capacity(100))];
    for backend in backends {
        let name = backend.name();
        let region = Region::builder("defects_arc").backend_arc(backend).build();
        let created = Arc::new(Report { id: 1, body: "large".repeat(1000) });
        let handed = Arc::clone(&created);
        let first: Arc<Report> = region.get_or_create("report:1", move || handed).unwrap();
        let second: Arc<Report> = region.get_or_create("report:1", || unreachable!("cached")).unwrap();
        let third: Arc<Report> = region.get("report:1").unwrap().expect("stored");
        assert!(Arc::ptr_eq(&first, &created), "{name}: the creator's value is returned as is");
        assert!(Arc::ptr_eq(&second, &created), "{name}: a hit shares the created allocation");
        assert!(Arc::ptr_eq(&third, &created), "{name}");

        let text: Arc<str> = region.get_or_create("text", || Arc::from("shared")).unwrap();
        let again: Arc<str> = region.get_or_create("text", || unreachable!("cached")).unwrap();
        assert!(Arc::ptr_eq(&text, &again), "{name}");
    }
}

dogpile::region!(ARC_FN, "defects_arc_fn", backend = MemoryBackend::new());

static CREATED: Mutex<Option<Arc<Report>>> = Mutex::new(None);

#[cached(region = "defects_arc_fn")]
fn arc_report(id: u64) -> Arc<Report> {
    let report = Arc::new(Report { id, body: format!("report {id}") });
    *CREATED.lock().unwrap() = Some(Arc::clone(&report));
    report
}

#[test]
fn arc_values_through_cached_share_the_allocation() {
    let first = arc_report(7);
    let second = arc_report(7);
    let created = CREATED.lock().unwrap().clone().expect("the body ran");
    assert!(Arc::ptr_eq(&first, &created));
    assert!(Arc::ptr_eq(&second, &created), "a hit shares the created allocation");
    let companion = arc_report::get(7).expect("stored");
    assert!(Arc::ptr_eq(&companion, &created));
    assert_eq!(ARC_FN.stats().unwrap().creations, 1);
}

// ----- 12. misleading error messages -----

dogpile::region!(PLANNED, "defects_planned_backend");

#[test]
fn backend_errors_name_only_cargo_features_that_exist() {
    // Every backend is written now; an unknown name lists them, and names
    // a cargo feature only for a backend compiled out of this build.
    let err = dogpile::configure_from_toml("[regions.defects_planned_backend]\nbackend = \"memcache\"\n").unwrap_err();
    let m = config_message(&err);
    let mut rest = m.clone();
    for feature in ["redis", "memcached", "file"] {
        rest = rest.replace(&format!("(cargo feature `{feature}`)"), "");
    }
    assert!(!rest.contains("feature"), "names a cargo feature that does not exist: {m}");
    assert!(m.contains("region `defects_planned_backend`, field `backend` (line 2)"), "{m}");
    assert!(m.contains("available backends: memory, bounded_memory, null"), "{m}");
    assert!(!m.contains("not yet available"), "no backend is planned any more: {m}");
    assert!(!PLANNED.is_configured());
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

// ----- 14. the quickstart compiled the benchmarks' peers -----

/// The dependencies Cargo.lock records for `package` (all kinds), or `None`
/// when the workspace has no such package.
fn locked_dependencies(package: &str) -> Option<Vec<&'static str>> {
    let lock = include_str!("../Cargo.lock");
    let block = lock.split("[[package]]").find(|b| b.lines().any(|l| l == format!("name = \"{package}\"")))?;
    let Some(list) = block.split("dependencies = [").nth(1) else { return Some(Vec::new()) };
    let list = list.split(']').next().unwrap_or_default();
    Some(
        list.lines()
            .filter_map(|l| l.trim().trim_matches(|c| c == '"' || c == ',').split(' ').next())
            .filter(|d| !d.is_empty())
            .collect(),
    )
}

#[test]
fn quickstart_example_builds_no_test_or_benchmark_dependency() {
    // Examples build their package's dev-dependencies: they live in a
    // package that depends on the library alone.
    let examples = locked_dependencies("dogpile-examples").expect("the examples have a package of their own");
    // minijinja is optional, for the templates example (`--features minijinja`).
    assert_eq!(examples, ["dogpile", "minijinja", "serde"]);
    let facade = locked_dependencies("dogpile").expect("the facade");
    for peer in ["criterion", "moka", "cached", "quick_cache"] {
        assert!(!facade.contains(&peer), "the facade depends on {peer}: {facade:?}");
    }
    let benches = locked_dependencies("dogpile-benches").expect("the benchmarks have a package of their own");
    for peer in ["criterion", "moka", "cached", "quick_cache", "dogpile"] {
        assert!(benches.contains(&peer), "the benchmarks lack {peer}: {benches:?}");
    }
}

// ----- 15. the README described backends that do not exist -----

#[test]
fn readme_describes_only_backends_that_exist() {
    let readme = include_str!("../README.md");
    let section = readme.split("## Backends").nth(1).expect("a Backends section");
    let section = section.split("\n## ").next().unwrap_or_default();
    // Every backend named in the README exists: none is only planned.
    for planned in ["planned", "not yet available", "to come"] {
        assert!(!section.to_lowercase().contains(planned), "the README describes a backend as {planned:?}:\n{section}");
    }
    for (backend, config_name) in [
        ("MemoryBackend", "memory"),
        ("BoundedMemoryBackend", "bounded_memory"),
        ("NullBackend", "null"),
        ("RedisBackend", "redis"),
        ("FileBackend", "file"),
    ] {
        assert!(section.contains(&format!("`{backend}`")), "{backend} missing:\n{section}");
        assert!(section.contains(&format!("`{config_name}`")), "config name {config_name} missing:\n{section}");
    }
    // Every configuration name the README gives is one the config accepts.
    for json in
        [r#"{"backend": "memory"}"#, r#"{"backend": "bounded_memory", "capacity": 10}"#, r#"{"backend": "null"}"#]
    {
        let parsed: Result<RegionConfig, _> = serde_json::from_str(json);
        assert!(parsed.is_ok(), "{json}: {parsed:?}");
    }
}
