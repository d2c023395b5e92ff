//! `#[cached]` on free functions against real regions: every companion,
//! key separation, `Result` and `Option` returns, options, failing open,
//! and the 32-thread stampede. Each test uses its own region, since all
//! tests of this file share the process-wide registry.

use dogpile::backend::{BackendError, Value, ValueKind};
use dogpile::backends::MemoryBackend;
use dogpile::{BackendConfig, CacheKey, MockClock, Region, RegionConfig, cached};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

fn memory(name: &str) {
    dogpile::configure(name, RegionConfig::new().backend(BackendConfig::new("memory"))).unwrap();
}

// ----- companions -----

dogpile::region!(COMPANIONS, "macros_companions");
static LOADS: AtomicUsize = AtomicUsize::new(0);

#[cached(region = "macros_companions")]
fn load_user(id: u64, lang: &str) -> String {
    LOADS.fetch_add(1, Ordering::SeqCst);
    format!("user {id} ({lang})")
}

#[test]
fn companions_use_the_same_key_as_the_call() {
    memory("macros_companions");
    let loads = || LOADS.load(Ordering::SeqCst);

    assert_eq!(load_user::key(7, "en"), "test_macros::load_user|7|en");
    assert_eq!(load_user::get(7, "en"), None);
    assert_eq!(load_user(7, "en"), "user 7 (en)");
    assert_eq!(load_user(7, "en"), "user 7 (en)");
    assert_eq!(loads(), 1);
    assert_eq!(load_user::get(7, "en"), Some("user 7 (en)".to_string()));
    // The key is what the region stores under.
    assert_eq!(COMPANIONS.get::<String>(&load_user::key(7, "en")).unwrap(), Some("user 7 (en)".to_string()));

    // original: runs the body, bypasses and leaves the cache.
    assert_eq!(load_user::original(7, "en"), "user 7 (en)");
    assert_eq!(loads(), 2);

    // set: the next call returns the stored value.
    load_user::set("overridden".to_string(), 7, "en");
    assert_eq!(load_user(7, "en"), "overridden");
    assert_eq!(loads(), 2);

    // refresh: runs the body and stores its value over a fresh one.
    assert_eq!(load_user::refresh(7, "en"), "user 7 (en)");
    assert_eq!(loads(), 3);
    assert_eq!(load_user(7, "en"), "user 7 (en)");
    assert_eq!(loads(), 3);

    // invalidate: the next call runs the body; other keys are untouched.
    assert_eq!(load_user(8, "en"), "user 8 (en)");
    assert_eq!(loads(), 4);
    load_user::invalidate(7, "en");
    assert_eq!(load_user::get(7, "en"), None);
    assert_eq!(load_user(7, "en"), "user 7 (en)");
    assert_eq!(load_user(8, "en"), "user 8 (en)");
    assert_eq!(loads(), 5);
    assert!(COMPANIONS.stats().unwrap().hits >= 3);
}

// ----- key separation -----

dogpile::region!(SEPARATE, "macros_separate");

#[cached(region = "macros_separate")]
fn first(a: &str, b: &str) -> String {
    format!("first {a} {b}")
}

#[cached(region = "macros_separate")]
fn second(a: &str, b: &str) -> String {
    format!("second {a} {b}")
}

#[cached(region = "macros_separate")]
fn joined(a: &str) -> String {
    format!("joined {a}")
}

mod elsewhere {
    #[dogpile::cached(region = "macros_separate")]
    pub(crate) fn first(a: &str, b: &str) -> String {
        format!("elsewhere {a} {b}")
    }
}

#[test]
fn two_functions_with_the_same_arguments_never_share_keys() {
    memory("macros_separate");
    assert_eq!(first("a", "b"), "first a b");
    assert_eq!(second("a", "b"), "second a b");
    assert_eq!(elsewhere::first("a", "b"), "elsewhere a b");
    assert_eq!(first("a", "b"), "first a b");
    assert_ne!(first::key("a", "b"), second::key("a", "b"));
    assert_ne!(first::key("a", "b"), elsewhere::first::key("a", "b"));
    // Escaping: one argument holding the separator is not two arguments.
    assert_ne!(first::key("a|b", ""), first::key("a", "b|"));
    assert_eq!(first::key("a|b", ""), r#"test_macros::first|a\|b|"""#);
    assert_ne!(joined::key("a b"), joined::key("a"));
    let keys: BTreeMap<String, u8> = [(first::key("x", "y"), 0), (first::key("x y", ""), 0)].into();
    assert_eq!(keys.len(), 2);
}

// ----- argument kinds -----

dogpile::region!(ARGS, "macros_args");

#[derive(Clone, CacheKey)]
struct Query {
    table: String,
    limit: Option<u32>,
    #[cache_key(skip)]
    #[allow(dead_code)]
    trace_id: u64,
}

#[derive(CacheKey)]
enum Scope {
    All,
    Team(u32),
    Range { from: u32, to: u32 },
}

#[cached(region = "macros_args")]
fn total(numbers: &[u32], scale: &u32) -> u64 {
    numbers.iter().map(|n| u64::from(*n * *scale)).sum()
}

#[cached(region = "macros_args")]
fn run(query: Query, scope: &Scope) -> String {
    let scope = match scope {
        Scope::All => "all".to_string(),
        Scope::Team(t) => format!("team {t}"),
        Scope::Range { from, to } => format!("{from}..{to}"),
    };
    format!("{} limit {:?} in {scope}", query.table, query.limit)
}

#[cached(region = "macros_args")]
fn no_args() -> Vec<u8> {
    vec![1, 2, 3]
}

#[cached(region = "macros_args")]
fn patterns((a, b): (u8, u8), mut c: u8, _: u8) -> u8 {
    c += 1;
    a + b + c
}

#[test]
fn references_slices_structs_enums_and_patterns() {
    memory("macros_args");
    assert_eq!(total(&[1, 2, 3], &10), 60);
    assert_eq!(total::key(&[1, 2, 3], &10), "test_macros::total|[1,2,3]|10");
    assert_eq!(total::get(&[1, 2, 3], &10), Some(60));

    let q = Query { table: "users".into(), limit: Some(5), trace_id: 1 };
    assert_eq!(run(q.clone(), &Scope::Range { from: 1, to: 9 }), "users limit Some(5) in 1..9");
    assert_eq!(
        run::key(q.clone(), &Scope::Range { from: 1, to: 9 }),
        "test_macros::run|{table=users,limit=5}|Range{from=1,to=9}"
    );
    // trace_id is skipped: another id is the same key.
    let other = Query { trace_id: 2, ..q.clone() };
    assert_eq!(run::key(other, &Scope::All), run::key(q.clone(), &Scope::All));
    assert_eq!(run::key(q.clone(), &Scope::Team(3)), "test_macros::run|{table=users,limit=5}|Team(3)");
    assert_eq!(run::key(q, &Scope::All), "test_macros::run|{table=users,limit=5}|All");

    assert_eq!(no_args(), vec![1, 2, 3]);
    assert_eq!(no_args::key(), "test_macros::no_args");
    assert_eq!(no_args::get(), Some(vec![1, 2, 3]));

    assert_eq!(patterns((1, 2), 3, 9), 7);
    assert_eq!(patterns::key((1, 2), 3, 9), "test_macros::patterns|(1,2)|3|9");
}

// ----- Result and Option -----

dogpile::region!(FALLIBLE, "macros_fallible");
static FALLIBLE_CALLS: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, PartialEq)]
struct NotFound(u64);

#[cached(region = "macros_fallible")]
fn find(id: u64) -> Result<String, NotFound> {
    FALLIBLE_CALLS.fetch_add(1, Ordering::SeqCst);
    if id == 0 { Err(NotFound(id)) } else { Ok(format!("found {id}")) }
}

#[cached(region = "macros_fallible")]
fn lookup(id: u64) -> Option<u64> {
    FALLIBLE_CALLS.fetch_add(1, Ordering::SeqCst);
    (id > 0).then_some(id * 2)
}

#[cached(region = "macros_fallible", cache_none = false)]
fn lookup_some(id: u64) -> Option<u64> {
    FALLIBLE_CALLS.fetch_add(1, Ordering::SeqCst);
    (id > 0).then_some(id * 2)
}

#[test]
fn result_caches_only_ok_and_option_caches_none_unless_told() {
    memory("macros_fallible");
    let calls = || FALLIBLE_CALLS.load(Ordering::SeqCst);
    let before = calls();
    assert_eq!(find(0), Err(NotFound(0)));
    assert_eq!(find(0), Err(NotFound(0)));
    assert_eq!(calls() - before, 2, "errors are not cached");
    assert_eq!(find(1), Ok("found 1".to_string()));
    assert_eq!(find(1), Ok("found 1".to_string()));
    assert_eq!(calls() - before, 3);
    // Companions of a Result function deal in the Ok type.
    assert_eq!(find::get(1), Some("found 1".to_string()));
    find::set("set".to_string(), 2);
    assert_eq!(find(2), Ok("set".to_string()));
    assert_eq!(find::refresh(0), Err(NotFound(0)));
    assert_eq!(find::get(0), None);

    let before = calls();
    assert_eq!(lookup(0), None);
    assert_eq!(lookup(0), None);
    assert_eq!(calls() - before, 1, "None is cached by default");
    assert_eq!(lookup::get(0), Some(None));

    let before = calls();
    assert_eq!(lookup_some(0), None);
    assert_eq!(lookup_some(0), None);
    assert_eq!(lookup_some(3), Some(6));
    assert_eq!(lookup_some(3), Some(6));
    assert_eq!(calls() - before, 3, "cache_none = false: None is not stored");
    assert_eq!(lookup_some::refresh(0), None);
    assert_eq!(lookup_some::get(0), None);
}

// ----- options -----

dogpile::region!(OPTIONS, "macros_options");
static OPTION_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(region = "macros_options", namespace = "v2")]
fn spaced(id: u32) -> u32 {
    id
}

#[cached(region = "macros_options", key = (user.0, lang.len()))]
fn custom_key(user: (u32, String), lang: &str) -> String {
    format!("{} {lang}", user.1)
}

#[cached(region = "macros_options", skip(conn))]
fn skipped(conn: &std::sync::Mutex<u32>, id: u32) -> u32 {
    *conn.lock().unwrap() + id
}

#[cached(region = "macros_options", name = "shared|name")]
fn named_a(id: u32) -> u32 {
    id
}

#[cached(region = "macros_options", name = "shared|name")]
fn named_b(id: u32) -> u32 {
    id + 1000
}

#[cached(region = "macros_options", should_cache = |v: &u32| v.is_multiple_of(2))]
fn even_only(id: u32) -> u32 {
    OPTION_CALLS.fetch_add(1, Ordering::SeqCst);
    id
}

#[test]
fn namespace_key_skip_name_and_should_cache() {
    memory("macros_options");
    assert_eq!(spaced::key(1), "test_macros::spaced|v2|1");
    assert_eq!(custom_key::key((4, "Ada".into()), "en"), "test_macros::custom_key|(4,2)");
    assert_eq!(custom_key((4, "Ada".into()), "en"), "Ada en");
    assert_eq!(custom_key((4, "Bob".into()), "fr"), "Ada en", "same custom key, same value");

    let conn = std::sync::Mutex::new(100);
    assert_eq!(skipped(&conn, 1), 101);
    assert_eq!(skipped::key(&conn, 1), "test_macros::skipped|1");

    // `name` pins the prefix: two functions may share entries on purpose.
    assert_eq!(named_a::key(1), r"shared\|name|1");
    assert_eq!(named_a(1), 1);
    assert_eq!(named_b(1), 1, "named_b reads what named_a stored");

    let before = OPTION_CALLS.load(Ordering::SeqCst);
    assert_eq!(even_only(1), 1);
    assert_eq!(even_only(1), 1);
    assert_eq!(even_only(2), 2);
    assert_eq!(even_only(2), 2);
    assert_eq!(OPTION_CALLS.load(Ordering::SeqCst) - before, 3);
}

dogpile::region!(EXPIRING, "macros_expiring");
static EXPIRING_CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[cached(region = "macros_expiring", expiration = "5s")]
fn short_lived(id: u32) -> u32 {
    EXPIRING_CALLS.fetch_add(1, Ordering::SeqCst) + id
}

#[test]
fn per_function_expiration_overrides_the_regions() {
    let clock = MockClock::new();
    let region = Region::builder("macros_expiring")
        .backend(MemoryBackend::new())
        .expiration(Duration::from_secs(3600))
        .clock(clock.clone())
        .build();
    dogpile::configure_region(region).unwrap();
    let first = short_lived(0);
    assert_eq!(short_lived(0), first);
    clock.advance(Duration::from_secs(4));
    assert_eq!(short_lived::get(0), Some(first));
    assert_eq!(short_lived(0), first);
    clock.advance(Duration::from_secs(2));
    assert_eq!(short_lived::get(0), None, "older than the function's 5 s");
    assert_ne!(short_lived(0), first, "regenerated after 5 s although the region keeps values an hour");
    let _ = &EXPIRING;
}

// ----- region by handle -----

dogpile::region!(HANDLED, "macros_handled", backend = MemoryBackend::new());

#[cached(region = HANDLED)]
fn by_handle(id: u32) -> u32 {
    id * 3
}

#[test]
fn region_by_static_handle_with_declared_default_backend() {
    assert!(HANDLED.is_configured());
    assert_eq!(by_handle(2), 6);
    assert_eq!(by_handle::get(2), Some(6));
    assert_eq!(HANDLED.stats().unwrap().creations, 1);
}

// ----- failing open -----

dogpile::region!(UNCONFIGURED, "macros_unconfigured");
static UNCONFIGURED_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(region = "macros_unconfigured")]
fn not_cached_yet(id: u32) -> u32 {
    UNCONFIGURED_CALLS.fetch_add(1, Ordering::SeqCst);
    id
}

#[cached(region = "macros_never_declared")]
fn undeclared(id: u32) -> u32 {
    id + 1
}

#[test]
fn a_declared_but_unconfigured_region_runs_the_function_every_time() {
    assert_eq!(not_cached_yet(1), 1);
    assert_eq!(not_cached_yet(1), 1);
    assert_eq!(UNCONFIGURED_CALLS.load(Ordering::SeqCst), 2);
    assert_eq!(UNCONFIGURED.uncached_calls(), 2);
    assert!(matches!(UNCONFIGURED.get::<u32>("k"), Err(dogpile::Error::NotConfigured { .. })));
    assert!(matches!(UNCONFIGURED.region(), Err(dogpile::Error::NotConfigured { .. })));
    // Companions do nothing and return nothing.
    not_cached_yet::set(5, 1);
    assert_eq!(not_cached_yet::get(1), None);
    not_cached_yet::invalidate(1);
    assert_eq!(not_cached_yet::refresh(1), 1);

    assert_eq!(undeclared(1), 2);
    assert_eq!(undeclared(1), 2);
    let info = dogpile::cached_functions().into_iter().find(|f| f.function.ends_with("::undeclared")).unwrap();
    assert_eq!(info.region, "macros_never_declared");
    assert_eq!(info.uncached_calls, 2);

    let err = dogpile::check().unwrap_err().to_string();
    assert!(err.contains("uses region `macros_never_declared`, which is not declared; declared regions: "), "{err}");
    assert!(err.contains("macros_companions"), "the declared names are listed: {err}");
    assert!(err.contains("region `macros_unconfigured` (declared at tests/test_macros.rs:"), "{err}");
    assert!(err.contains("used by test_macros::not_cached_yet"), "{err}");
}

/// A backend whose every call fails, as a server that went away.
#[derive(Debug)]
struct Down;

impl dogpile::backend::Backend for Down {
    fn name(&self) -> &'static str {
        "down"
    }
    fn value_kind(&self) -> ValueKind {
        ValueKind::Object
    }
    fn blocking(&self) -> Option<&dyn dogpile::backend::BlockingBackend> {
        Some(self)
    }
}

impl dogpile::backend::BlockingBackend for Down {
    fn get(&self, _: &str) -> Result<Option<Value>, BackendError> {
        Err(BackendError::new("down", "connection refused"))
    }
    fn set(&self, _: &str, _: Value, _: Option<Duration>) -> Result<(), BackendError> {
        Err(BackendError::new("down", "connection refused"))
    }
    fn delete(&self, _: &str) -> Result<(), BackendError> {
        Err(BackendError::new("down", "connection refused"))
    }
}

dogpile::region!(DOWN, "macros_down");
static DOWN_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(region = "macros_down")]
fn through_a_dead_backend(id: u32) -> u32 {
    DOWN_CALLS.fetch_add(1, Ordering::SeqCst);
    id
}

#[cached(region = "macros_down")]
fn fallible_through_a_dead_backend(id: u32) -> Result<u32, String> {
    if id == 0 { Err("zero".into()) } else { Ok(id) }
}

#[test]
fn backend_errors_fail_open_and_are_counted() {
    dogpile::configure_region(Region::builder("macros_down").backend(Down).build()).unwrap();
    assert_eq!(through_a_dead_backend(4), 4);
    assert_eq!(through_a_dead_backend(4), 4);
    assert_eq!(DOWN_CALLS.load(Ordering::SeqCst), 2);
    assert_eq!(fallible_through_a_dead_backend(3), Ok(3));
    assert_eq!(fallible_through_a_dead_backend(0), Err("zero".to_string()));
    through_a_dead_backend::invalidate(4);
    through_a_dead_backend::set(1, 4);
    assert_eq!(through_a_dead_backend::get(4), None);
    let stats = DOWN.stats().unwrap();
    assert!(stats.backend_errors >= 7, "{stats:?}");
    let info =
        dogpile::cached_functions().into_iter().find(|f| f.function.ends_with("::through_a_dead_backend")).unwrap();
    assert_eq!(info.uncached_calls, 5);
}

// ----- stampede -----

dogpile::region!(STAMPEDE, "macros_stampede");
static STAMPEDE_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(region = "macros_stampede")]
fn slow_report(id: u32) -> String {
    STAMPEDE_CALLS.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(100));
    format!("report {id}")
}

#[test]
fn thirty_two_threads_call_the_body_once() {
    memory("macros_stampede");
    let barrier = Arc::new(Barrier::new(32));
    let threads: Vec<_> = (0..32)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                slow_report(1)
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), "report 1");
    }
    assert_eq!(STAMPEDE_CALLS.load(Ordering::SeqCst), 1);
    let stats = STAMPEDE.stats().unwrap();
    assert_eq!(stats.creations, 1);
    assert_eq!(stats.misses, 1, "{stats:?}");
    assert_eq!(stats.hits + stats.waited, 31, "every other thread got the creator's value: {stats:?}");
}

// ----- nested cached calls share the thread's key buffer safely -----

dogpile::region!(NESTED, "macros_nested");

#[cached(region = "macros_nested")]
fn inner(id: u32) -> u32 {
    id + 1
}

#[cached(region = "macros_nested")]
fn outer(id: u32) -> u32 {
    inner(id) + inner(id + 10) * 100
}

#[test]
fn a_cached_function_may_call_another() {
    memory("macros_nested");
    assert_eq!(outer(1), 2 + 1200);
    assert_eq!(outer::get(1), Some(1202));
    assert_eq!(inner::get(11), Some(12));
}

// ----- a re-exported dogpile -----

mod deps {
    pub(crate) use ::dogpile;
}

dogpile::region!(REEXPORTED, "macros_reexported", backend = MemoryBackend::new());

#[cached(region = "macros_reexported", crate = "crate::deps::dogpile")]
fn through_a_reexport(id: u32) -> u32 {
    id + 7
}

#[test]
fn the_crate_option_points_the_expansion_at_a_reexport() {
    assert_eq!(through_a_reexport(1), 8);
    assert_eq!(through_a_reexport::get(1), Some(8));
    let _ = &REEXPORTED;
}

// ----- declared inside a function body -----

#[test]
fn a_cached_function_may_be_local_to_a_block() {
    #[derive(Clone, PartialEq, Debug, serde::Serialize, serde::Deserialize)]
    struct Local(u32);

    #[derive(CacheKey)]
    struct LocalKey(u32);

    dogpile::region!(LOCAL, "macros_local", backend = MemoryBackend::new());

    #[cached(region = "macros_local")]
    fn local(key: LocalKey) -> Local {
        Local(key.0 * 2)
    }

    assert_eq!(local(LocalKey(4)), Local(8));
    assert_eq!(local::get(LocalKey(4)), Some(Local(8)));
    assert!(local::key(LocalKey(4)).ends_with("::local|4"));
    assert_eq!(LOCAL.stats().unwrap().creations, 1);
}
