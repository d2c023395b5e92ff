//! Template fragment caching in minijinja (issue 11): the `cache(...)` call
//! block under the dogpile lock, its keys, the safety of cached markup,
//! errors, and invalidation from Rust.
#![cfg(feature = "minijinja")]

mod support;

use dogpile::backend::{Backend, BackendError, BlockingBackend, Value as Stored, ValueKind};
use dogpile::backends::MemoryBackend;
use dogpile::minijinja::{Fragment, FragmentCache, add_to_env};
use dogpile::{MockClock, Region};
use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, ErrorKind, context};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;
use support::{ByteBackend, HANG, join, wait_until};

fn region(name: &str) -> Region {
    Region::builder(name).backend(MemoryBackend::new()).expiration(Duration::from_secs(3600)).build()
}

/// An environment with `cache` installed on `region` and a `body()`
/// function that counts its calls and returns its call number.
fn env_with(region: Region, templates: &[(&'static str, &'static str)]) -> (Environment<'static>, Arc<AtomicUsize>) {
    let mut env = Environment::new();
    add_to_env(&mut env, region);
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    env.add_function("body", move || counter.fetch_add(1, Ordering::SeqCst) + 1);
    for (name, source) in templates {
        env.add_template(name, source).unwrap();
    }
    (env, runs)
}

fn render(env: &Environment<'_>, name: &str, ctx: Value) -> String {
    env.get_template(name).unwrap().render(ctx).unwrap()
}

#[test]
fn body_runs_once_and_later_renders_hit() {
    let r = region("hits");
    let (env, runs) = env_with(
        r.clone(),
        &[("page.html", r#"<h1>{{ title }}</h1>{% call cache("sidebar:" ~ user) %}[{{ body() }}]{% endcall %}"#)],
    );
    for title in ["a", "b", "c"] {
        assert_eq!(render(&env, "page.html", context! { title, user => 7 }), format!("<h1>{title}</h1>[1]"));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(render(&env, "page.html", context! { title => "d", user => 8 }), "<h1>d</h1>[2]");
    let stats = r.stats();
    assert_eq!((stats.creations, stats.hits, stats.misses), (2, 2, 2));
}

#[test]
fn same_key_in_two_templates_is_two_fragments() {
    let (env, runs) = env_with(
        region("two_templates"),
        &[
            ("a.html", r#"{% call cache("x") %}a{{ body() }}{% endcall %}"#),
            ("b.html", r#"{% call cache("x") %}b{{ body() }}{% endcall %}"#),
        ],
    );
    for _ in 0..2 {
        assert_eq!(render(&env, "a.html", context! {}), "a1");
        assert_eq!(render(&env, "b.html", context! {}), "b2");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[test]
fn each_auto_escape_mode_gets_its_own_fragment() {
    // One template, one key, two escape modes: each keeps its own markup.
    let (env, runs) = env_with(
        region("escape_modes"),
        &[(
            "page.txt",
            concat!(
                r#"{% autoescape true %}{% call cache("x") %}{{ v }}{{ body() }}{% endcall %}{% endautoescape %}|"#,
                r#"{% autoescape false %}{% call cache("x") %}{{ v }}{{ body() }}{% endcall %}{% endautoescape %}"#
            ),
        )],
    );
    for _ in 0..3 {
        assert_eq!(render(&env, "page.txt", context! { v => "<b>" }), "&lt;b&gt;1|<b>2");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[test]
fn markup_is_not_escaped_twice_on_a_hit() {
    let (mut env, runs) = env_with(
        region("no_double_escape"),
        &[("page.html", r#"{% call cache("x") %}<p>{{ name }}</p>{{ bold(name) }}{{ body() }}{% endcall %}"#)],
    );
    env.add_function("bold", |s: String| Value::from_safe_string(format!("<b>{s}</b>")));
    let expected = "<p>&lt;script&gt;</p><b><script></b>1";
    for _ in 0..3 {
        assert_eq!(render(&env, "page.html", context! { name => "<script>" }), expected);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn plain_text_is_still_escaped_on_a_hit() {
    // A `caller` that is not a template body returns plain text: escaped on
    // the first render, and on every hit too (never turned into markup).
    let (mut env, runs) = env_with(
        region("no_lost_escape"),
        &[("page.html", r#"{{ cache("x", caller=raw) }}"#), ("page.txt", r#"{{ cache("x", caller=raw) }}"#)],
    );
    let counter = Arc::clone(&runs);
    env.add_function("raw", move || {
        counter.fetch_add(1, Ordering::SeqCst);
        "<i>".to_owned()
    });
    for _ in 0..3 {
        assert_eq!(render(&env, "page.html", context! {}), "&lt;i&gt;");
        assert_eq!(render(&env, "page.txt", context! {}), "<i>");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[test]
fn fragments_keep_their_safety_through_a_byte_backend() {
    let r = Region::builder("bytes").backend_arc(ByteBackend::new()).build();
    let (mut env, runs) = env_with(
        r.clone(),
        &[(
            "page.html",
            r#"{% call cache("markup") %}<p>{{ v }}</p>{{ body() }}{% endcall %}|{{ cache("plain", caller=raw) }}"#,
        )],
    );
    env.add_function("raw", || "<i>".to_owned());
    for _ in 0..3 {
        assert_eq!(render(&env, "page.html", context! { v => "<&>" }), "<p>&lt;&amp;&gt;</p>1|&lt;i&gt;");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!((r.stats().creations, r.stats().decode_failures), (2, 0));
}

#[test]
fn cold_fragment_body_runs_once_for_32_threads() {
    const THREADS: usize = 32;
    let r = region("cold");
    let mut env = Environment::new();
    add_to_env(&mut env, r.clone());
    let runs = Arc::new(AtomicUsize::new(0));
    let (counter, watched) = (Arc::clone(&runs), r.clone());
    env.add_function("slow_body", move || {
        counter.fetch_add(1, Ordering::SeqCst);
        // Hold the lock until every other render waits for this one.
        wait_until("the other renders wait for the body", || watched.stats().lock_waits == (THREADS - 1) as u64);
        "sidebar".to_owned()
    });
    env.add_template("page.html", r#"<main>{% call cache("sidebar") %}{{ slow_body() }}{% endcall %}</main>"#).unwrap();
    let env = Arc::new(env);
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (env, barrier) = (Arc::clone(&env), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                render(&env, "page.html", context! {})
            })
        })
        .collect();
    for h in handles {
        assert_eq!(join(h), "<main>sidebar</main>");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let stats = r.stats();
    assert_eq!((stats.creations, stats.lock_waits), (1, (THREADS - 1) as u64));
}

#[test]
fn expired_fragment_one_render_regenerates_the_others_get_it_stale_at_once() {
    const THREADS: usize = 32;
    let clock = MockClock::new();
    let r = Region::builder("expired")
        .backend(MemoryBackend::new())
        .expiration(Duration::from_secs(3600))
        .clock(clock.clone())
        .build();
    let mut env = Environment::new();
    add_to_env(&mut env, r.clone());
    let runs = Arc::new(AtomicUsize::new(0));
    let stale_returned = Arc::new(AtomicUsize::new(0));
    let (counter, done) = (Arc::clone(&runs), Arc::clone(&stale_returned));
    env.add_function("slow_body", move || {
        let run = counter.fetch_add(1, Ordering::SeqCst) + 1;
        if run > 1 {
            // The regeneration finishes only after every other render has
            // returned: they cannot have waited for it.
            wait_until("the other renders return the stale fragment", || done.load(Ordering::SeqCst) == THREADS - 1);
        }
        format!("v{run}")
    });
    env.add_template(
        "page.html",
        r#"<main>{% call cache("sidebar", expiration="5m") %}{{ slow_body() }}{% endcall %}</main>"#,
    )
    .unwrap();
    assert_eq!(render(&env, "page.html", context! {}), "<main>v1</main>");
    clock.advance(Duration::from_secs(301));

    let env = Arc::new(env);
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (env, barrier, done) = (Arc::clone(&env), Arc::clone(&barrier), Arc::clone(&stale_returned));
            std::thread::spawn(move || {
                barrier.wait();
                let page = render(&env, "page.html", context! {});
                if page == "<main>v1</main>" {
                    done.fetch_add(1, Ordering::SeqCst);
                }
                page
            })
        })
        .collect();
    let pages: Vec<String> = handles.into_iter().map(join).collect();
    assert_eq!(pages.iter().filter(|p| *p == "<main>v1</main>").count(), THREADS - 1);
    assert_eq!(pages.iter().filter(|p| *p == "<main>v2</main>").count(), 1);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(r.stats().stale_served, (THREADS - 1) as u64);
    assert_eq!(render(&env, "page.html", context! {}), "<main>v2</main>", "the regenerated fragment is stored");
}

#[test]
fn body_error_stores_nothing_and_reports_its_line() {
    let r = region("body_error");
    let (mut env, runs) = env_with(
        r.clone(),
        &[("page.html", "<h1>t</h1>\n{% call cache(\"x\") %}\n{{ body() }}\n{{ fail() }}\n{% endcall %}")],
    );
    let failures = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&failures);
    env.add_function("fail", move || {
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, "the database is down"))
        } else {
            Ok(String::new())
        }
    });
    let err = env.get_template("page.html").unwrap().render(context! {}).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidOperation);
    assert!(err.to_string().contains("the database is down"), "{err}");
    assert_eq!(err.line(), Some(4), "{err:#}");
    assert_eq!(err.name(), Some("page.html"));
    assert_eq!(r.stats().creation_errors, 1);
    assert!(!r.is_locked("minijinja|page.html|html|~|x"), "the lock is released");

    // Nothing was stored: the next render runs the body again, then hits.
    assert_eq!(render(&env, "page.html", context! {}), "<h1>t</h1>\n\n2\n\n");
    assert_eq!(render(&env, "page.html", context! {}), "<h1>t</h1>\n\n2\n\n");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

/// A backend whose reads or writes fail.
#[derive(Debug)]
struct Failing {
    reads: bool,
}

impl Backend for Failing {
    fn name(&self) -> &'static str {
        "failing"
    }
    fn value_kind(&self) -> ValueKind {
        ValueKind::Object
    }
    fn blocking(&self) -> Option<&dyn BlockingBackend> {
        Some(self)
    }
}

impl BlockingBackend for Failing {
    fn get(&self, _: &str) -> Result<Option<Stored>, BackendError> {
        if self.reads { Err(BackendError::new("failing", "read refused")) } else { Ok(None) }
    }
    fn set(&self, _: &str, _: Stored, _: Option<Duration>) -> Result<(), BackendError> {
        Err(BackendError::new("failing", "write refused"))
    }
    fn delete(&self, _: &str) -> Result<(), BackendError> {
        Err(BackendError::new("failing", "delete refused"))
    }
}

#[test]
fn failing_backend_serves_the_body_uncached_and_counts() {
    for reads in [true, false] {
        let r = Region::builder("down").backend(Failing { reads }).build();
        let mut env = Environment::new();
        let cache = add_to_env(&mut env, r.clone());
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&runs);
        env.add_function("body", move || counter.fetch_add(1, Ordering::SeqCst) + 1);
        env.add_template("page.html", r#"<p>{% call cache("x") %}{{ body() }}{% endcall %}</p>"#).unwrap();
        for n in 1..=3 {
            assert_eq!(render(&env, "page.html", context! {}), format!("<p>{n}</p>"), "reads fail: {reads}");
        }
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(r.stats().backend_errors, 3, "one failed read or write per render (reads fail: {reads})");
        // Only a failed read leaves the render without the cache; a failed
        // store still went through the lock.
        assert_eq!(cache.uncached_renders(), if reads { 3 } else { 0 });
        assert_eq!(r.lock_entries(), 0);
        let invalidated = cache.invalidate(&env, &Fragment::new("page.html", "x"));
        assert!(matches!(invalidated, Err(dogpile::Error::Backend(_))), "{invalidated:?}");
    }
}

/// Renders `source` as template `t.html` (line 1 is blank) and returns the
/// error.
fn template_error(source: &'static str) -> minijinja::Error {
    let (mut env, _) = env_with(region("arguments"), &[]);
    env.add_template("t.html", source).unwrap();
    env.get_template("t.html").unwrap().render(context! { n => 42 }).unwrap_err()
}

#[test]
fn wrong_arguments_are_template_errors_naming_the_argument() {
    let cases: &[(&str, ErrorKind, &[&str])] = &[
        ("\n{% call cache() %}x{% endcall %}", ErrorKind::MissingArgument, &["missing argument `key`"]),
        ("\n{% call cache(n) %}x{% endcall %}", ErrorKind::InvalidOperation, &["`key` must be a string", "number"]),
        ("\n{% call cache(nothing) %}x{% endcall %}", ErrorKind::InvalidOperation, &["`key`", "undefined"]),
        ("\n{% call cache(\"k\", \"v\") %}x{% endcall %}", ErrorKind::TooManyArguments, &["`key`", "given 2"]),
        ("\n{% call cache(\"k\", key=\"j\") %}x{% endcall %}", ErrorKind::TooManyArguments, &["`key` is given twice"]),
        (
            "\n{% call cache(\"k\", expiry=\"5m\") %}x{% endcall %}",
            ErrorKind::TooManyArguments,
            &["unknown argument `expiry`"],
        ),
        (
            "\n{% call cache(\"k\", expiration=\"soon\") %}x{% endcall %}",
            ErrorKind::InvalidOperation,
            &["`expiration`", "soon"],
        ),
        (
            "\n{% call cache(\"k\", expiration=-5) %}x{% endcall %}",
            ErrorKind::InvalidOperation,
            &["`expiration`", "-5"],
        ),
        (
            "\n{% call cache(\"k\", expiration=[1]) %}x{% endcall %}",
            ErrorKind::InvalidOperation,
            &["`expiration`", "sequence"],
        ),
        (
            "\n{% call cache(\"k\", namespace=3) %}x{% endcall %}",
            ErrorKind::InvalidOperation,
            &["`namespace` must be a string"],
        ),
        (
            "\n{% call cache(\"k\", region=\"nowhere\") %}x{% endcall %}",
            ErrorKind::InvalidOperation,
            &["argument `region`", "`nowhere`", "arguments"],
        ),
        (
            "\n{% call cache(\"k\", cache_empty=\"no\") %}x{% endcall %}",
            ErrorKind::InvalidOperation,
            &["`cache_empty` must be true or false"],
        ),
        ("\n{{ cache(\"k\") }}", ErrorKind::MissingArgument, &["`caller`", "{% call cache("]),
    ];
    for (source, kind, needles) in cases {
        let err = template_error(source);
        assert_eq!(err.kind(), *kind, "{source}: {err}");
        for needle in *needles {
            assert!(err.to_string().contains(needle), "{source}: `{err}` should mention {needle}");
        }
        assert_eq!(err.line(), Some(2), "{source}: {err:#}");
        assert_eq!(err.name(), Some("t.html"));
    }
}

#[test]
fn expiration_argument_overrides_the_regions() {
    let clock = MockClock::new();
    let r = Region::builder("expiration_arg")
        .backend(MemoryBackend::new())
        .expiration(Duration::from_secs(3600))
        .clock(clock.clone())
        .build();
    let (env, _) = env_with(
        r,
        &[(
            "page.html",
            concat!(
                r#"{% call cache("short", expiration="5m") %}{{ body() }}{% endcall %} "#,
                r#"{% call cache("secs", expiration=90) %}{{ body() }}{% endcall %} "#,
                r#"{% call cache("never", expiration="never") %}{{ body() }}{% endcall %} "#,
                r#"{% call cache("default") %}{{ body() }}{% endcall %}"#
            ),
        )],
    );
    assert_eq!(render(&env, "page.html", context! {}), "1 2 3 4");
    clock.advance(Duration::from_secs(91));
    assert_eq!(render(&env, "page.html", context! {}), "1 5 3 4");
    clock.advance(Duration::from_secs(300));
    assert_eq!(render(&env, "page.html", context! {}), "6 7 3 4");
    clock.advance(Duration::from_secs(3600 * 24 * 365));
    assert_eq!(render(&env, "page.html", context! {}), "8 9 3 10");
}

#[test]
fn namespace_separates_fragments() {
    let (env, runs) = env_with(
        region("namespaces"),
        &[(
            "page.html",
            concat!(
                r#"{% call cache("x") %}{{ body() }}{% endcall %}"#,
                r#"{% call cache("x", namespace="v2") %}{{ body() }}{% endcall %}"#,
                r#"{% call cache("x", namespace="v2") %}{{ body() }}{% endcall %}"#
            ),
        )],
    );
    assert_eq!(render(&env, "page.html", context! {}), "122");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[test]
fn blank_output_is_not_stored_when_asked() {
    let templates: &[(&str, &str)] = &[
        ("kept.txt", r#"{% call cache("k") %}{% if body() %} {% endif %}{% endcall %}"#),
        ("dropped.txt", r#"{% call cache("d", cache_empty=false) %}{% if body() %} {% endif %}{% endcall %}"#),
    ];
    let (env, runs) = env_with(region("blank"), templates);
    for _ in 0..3 {
        assert_eq!(render(&env, "kept.txt", context! {}), " ");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    for _ in 0..3 {
        assert_eq!(render(&env, "dropped.txt", context! {}), " ");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 4, "blank output is rendered every time");

    // The cache's default, overridden per call.
    let mut env = Environment::new();
    FragmentCache::new(region("blank_default")).cache_empty(false).install(&mut env);
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    env.add_function("body", move || counter.fetch_add(1, Ordering::SeqCst) > 0);
    env.add_template("a.txt", r#"{% call cache("a") %}{% if body() %} {% endif %}{% endcall %}"#).unwrap();
    env.add_template("b.txt", r#"{% call cache("b", cache_empty=true) %}{% if body() %} {% endif %}{% endcall %}"#)
        .unwrap();
    render(&env, "a.txt", context! {});
    render(&env, "a.txt", context! {});
    render(&env, "b.txt", context! {});
    render(&env, "b.txt", context! {});
    assert_eq!(runs.load(Ordering::SeqCst), 3);
}

dogpile::region!(DECLARED, "test_minijinja_declared", backend = MemoryBackend::new());
dogpile::region!(UNCONFIGURED, "test_minijinja_unconfigured");
dogpile::region!(NAMED, "test_minijinja_named", backend = MemoryBackend::new());

#[test]
fn region_argument_picks_a_region_by_name() {
    let (a, b) = (region("pick_a"), region("pick_b"));
    let mut env = Environment::new();
    let cache = FragmentCache::new(a.clone()).region(b.clone());
    cache.install(&mut env);
    env.add_template(
        "page.html",
        concat!(
            r#"{% call cache("x") %}a{% endcall %}"#,
            r#"{% call cache("x", region="pick_b") %}b{% endcall %}"#,
            r#"{% call cache("x", region="pick_a") %}a{% endcall %}"#,
            r#"{% call cache("x", region="test_minijinja_declared") %}r{% endcall %}"#,
            r#"{% call cache("x", region="test_minijinja_unconfigured") %}u{% endcall %}"#
        ),
    )
    .unwrap();
    assert_eq!(render(&env, "page.html", context! {}), "abaru");
    assert_eq!(render(&env, "page.html", context! {}), "abaru");
    assert_eq!((a.stats().creations, a.stats().hits), (1, 3));
    assert_eq!((b.stats().creations, b.stats().hits), (1, 1));
    assert_eq!(DECLARED.stats().unwrap().creations, 1);
    assert_eq!(cache.uncached_renders(), 2, "an unconfigured region renders uncached");
    assert!(!UNCONFIGURED.is_configured());
}

#[test]
fn named_default_region_is_found_in_the_registry_at_render_time() {
    let mut env = Environment::new();
    FragmentCache::named("test_minijinja_named").install(&mut env);
    env.add_template("named.html", r#"{% call cache("named") %}n{% endcall %}"#).unwrap();
    assert_eq!(render(&env, "named.html", context! {}), "n");
    assert_eq!(render(&env, "named.html", context! {}), "n");
    assert_eq!((NAMED.stats().unwrap().creations, NAMED.stats().unwrap().hits), (1, 1));

    let mut env = Environment::new();
    FragmentCache::named("test_minijinja_missing").install(&mut env);
    env.add_template("t.html", r#"{% call cache("k") %}x{% endcall %}"#).unwrap();
    let err = env.get_template("t.html").unwrap().render(context! {}).unwrap_err();
    assert!(err.to_string().contains("the default region"), "{err}");
    assert!(err.to_string().contains("test_minijinja_missing"), "{err}");
}

#[test]
fn invalidate_from_rust_by_the_templates_key() {
    let (a, b) = (region("inv_a"), region("inv_b"));
    let mut env = Environment::new();
    let cache = FragmentCache::new(a).region(b);
    cache.install(&mut env);
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    env.add_function("body", move || counter.fetch_add(1, Ordering::SeqCst) + 1);
    env.add_template(
        "page.html",
        concat!(
            r#"{% call cache("side:" ~ id) %}{{ body() }}{% endcall %} "#,
            r#"{% call cache("side:" ~ id, namespace="ns", region="inv_b") %}{{ body() }}{% endcall %} "#,
            r#"{% autoescape false %}{% call cache("side:" ~ id) %}{{ body() }}{% endcall %}{% endautoescape %}"#
        ),
    )
    .unwrap();
    let page = || render(&env, "page.html", context! { id => 7 });
    assert_eq!(page(), "1 2 3");
    assert_eq!(page(), "1 2 3");

    cache.invalidate(&env, &Fragment::new("page.html", "side:7")).unwrap();
    assert_eq!(page(), "4 2 3");
    cache.invalidate(&env, &Fragment::new("page.html", "side:7").namespace("ns").region("inv_b")).unwrap();
    assert_eq!(page(), "4 5 3");
    let in_block = Fragment::new("page.html", "side:7").auto_escape(AutoEscape::None);
    assert_eq!(cache.key(&env, &in_block).unwrap(), "minijinja|page.html|none|~|side:7");
    cache.invalidate(&env, &in_block).unwrap();
    assert_eq!(page(), "4 5 6");
    // Another key, or a fragment never rendered: nothing to delete, no error.
    cache.invalidate(&env, &Fragment::new("page.html", "side:8")).unwrap();
    assert_eq!(page(), "4 5 6");

    let missing = cache.key(&env, &Fragment::new("nope.html", "x")).unwrap_err();
    assert!(missing.to_string().contains("nope.html"), "{missing}");
    let unknown = cache.invalidate(&env, &Fragment::new("page.html", "x").region("inv_nowhere")).unwrap_err();
    assert!(unknown.to_string().contains("inv_nowhere"), "{unknown}");
}

#[test]
fn a_cache_block_inside_itself_is_an_error_not_a_deadlock() {
    let (env, _) = env_with(
        region("reentrant"),
        &[("page.html", "{% call cache(\"x\") %}\n{% call cache(\"x\") %}inner{% endcall %}{% endcall %}")],
    );
    let env = Arc::new(env);
    let handle = std::thread::spawn(move || env.get_template("page.html").unwrap().render(context! {}).unwrap_err());
    let err = support::join_within(handle, HANG);
    assert!(err.to_string().contains("its own key"), "{err}");
    assert_eq!(err.line(), Some(2), "{err:#}");
}
