//! Template fragment caching for [minijinja](https://docs.rs/minijinja/3)
//! (feature `minijinja`): a `cache(...)` function for call blocks, so a part
//! of a template is rendered once, stored in a region, and served from
//! there under the dogpile lock.
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use dogpile::{Region, backends::MemoryBackend};
//! use dogpile::minijinja::{Fragment, FragmentCache};
//! use minijinja::{Environment, context};
//!
//! let region = Region::builder("fragments")
//!     .backend(MemoryBackend::new())
//!     .expiration(Duration::from_secs(3600))
//!     .build();
//!
//! let mut env = Environment::new();
//! let cache = FragmentCache::new(region);
//! cache.install(&mut env);
//!
//! // The expensive part of the page, counted.
//! let runs = Arc::new(AtomicUsize::new(0));
//! let counter = Arc::clone(&runs);
//! env.add_function("recent_posts", move |user: u64| {
//!     counter.fetch_add(1, Ordering::SeqCst);
//!     vec![format!("post {user}.1"), format!("post {user}.2")]
//! });
//! env.add_template(
//!     "page.html",
//!     r#"<h1>{{ title }}</h1>
//! {% call cache("sidebar:" ~ user.id, expiration="5m") -%}
//!   <ul>{% for post in recent_posts(user.id) %}<li>{{ post }}</li>{% endfor %}</ul>
//! {%- endcall %}"#,
//! )?;
//!
//! let page = env.get_template("page.html")?;
//! for title in ["Home", "About", "Home"] {
//!     let html = page.render(context! { title, user => context! { id => 7 } })?;
//!     assert!(html.ends_with("<ul><li>post 7.1</li><li>post 7.2</li></ul>"), "{html}");
//! }
//! assert_eq!(runs.load(Ordering::SeqCst), 1, "the body ran once; the other renders hit");
//!
//! // From Rust, by the key the template used: the next render runs the body.
//! cache.invalidate(&env, &Fragment::new("page.html", "sidebar:7"))?;
//! page.render(context! { title => "Home", user => context! { id => 7 } })?;
//! assert_eq!(runs.load(Ordering::SeqCst), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The call
//!
//! `{% call cache(key, expiration=..., namespace=..., region=..., cache_empty=...) %}body{% endcall %}`
//!
//! | argument | what it is |
//! |---|---|
//! | `key` (first, or by name) | a string naming the fragment within its template, such as `"sidebar:" ~ user.id` |
//! | `expiration` | how long the fragment stays fresh: `"90s"`, `"5m"`, `"1h 30m"`, seconds as a number, or `"never"` / `-1`; default: the region's |
//! | `namespace` | a string added to the key, to keep families of fragments apart |
//! | `region` | the name of the region to store in: one given to [`FragmentCache::region`], or any region of the [registry](fn@crate::region); default: the cache's own |
//! | `cache_empty` | `false`: output that is empty or only whitespace is returned but not stored (default: [`FragmentCache::cache_empty`], which is `true`) |
//!
//! A wrong argument (no key, a key that is not a string, an unknown option,
//! an expiration that is not a duration, `cache` used outside a call block)
//! is a template error naming the argument, with the template's line.
//!
//! # What a render does
//!
//! The body is rendered only when the fragment is missing (one render
//! creates it, the others wait for it) or by the one render that wins the
//! lock on an expired fragment; every other render gets the stored fragment,
//! an expired one at once while that render regenerates it. The key is
//! `minijinja|<template>|<auto-escape>|<namespace or ~>|<key>` (the parts
//! escaped as in every dogpile key), so the same `key` in two templates, or
//! in one template rendered in two auto-escape modes, never serves the other's
//! markup. A fragment keeps its safety: the body's output in an
//! auto-escaping template is markup and is inserted as is on every hit
//! (never escaped twice), and a plain string produced by a `caller` that is
//! not a template body is escaped on every hit as on the first render.
//!
//! An error in the body stores nothing; the render fails with the template
//! error and its line. A backend that fails does not fail the page: the body
//! is rendered and inserted uncached (counted in the region's
//! [`Stats::backend_errors`](crate::Stats::backend_errors) and in
//! [`FragmentCache::uncached_renders`]); so is a region that was declared
//! with [`region!`](macro@crate::region) but not configured yet.
//!
//! **No background regeneration.** A region's background runner cannot
//! regenerate a fragment: the body is a `caller` macro that lives only as
//! long as the render that received it (minijinja refuses to call it once
//! that render's state is gone), so the render that wins the lock on an
//! expired fragment renders the body itself, synchronously, while every
//! other render gets the stale fragment.

mod args;

use crate::{CacheKey, CreateOptions, Error, Region, TryCreateError, write_key_str};
use ::minijinja::value::{Object, ObjectRepr, ValueKind};
use ::minijinja::{AutoEscape, Environment, ErrorKind, State, Value};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Where a template's fragments go unless it names a region.
#[derive(Clone)]
enum DefaultRegion {
    /// A region given by value.
    Fixed(Region),
    /// A region of the registry, looked up at each render (so it may be
    /// configured after the environment is set up).
    Named(String),
}

#[derive(Clone)]
struct Config {
    default: DefaultRegion,
    /// Regions a template can name with `region="..."`, by name.
    regions: BTreeMap<String, Region>,
    cache_empty: bool,
}

/// Counters shared by every clone of one cache.
#[derive(Default)]
struct Counters {
    uncached: AtomicU64,
    warned_unconfigured: AtomicBool,
}

/// The fragment cache of one or more minijinja environments: which regions
/// fragments go to, and the `cache(...)` function that
/// [`install`](Self::install) registers.
///
/// Cloning is cheap; clones share their counters. Configure it first, then
/// install it: an environment keeps the configuration it was installed with.
#[derive(Clone)]
pub struct FragmentCache {
    config: Arc<Config>,
    counters: Arc<Counters>,
}

impl FragmentCache {
    /// A cache storing fragments in `region` (unless a template names
    /// another).
    pub fn new(region: Region) -> Self {
        Self::with_default(DefaultRegion::Fixed(region))
    }

    /// A cache storing fragments in the region configured under `name` in
    /// the [registry](fn@crate::region), looked up at each render: the
    /// environment can be set up before the region is configured (until
    /// then, bodies render uncached).
    pub fn named(name: impl Into<String>) -> Self {
        Self::with_default(DefaultRegion::Named(name.into()))
    }

    fn with_default(default: DefaultRegion) -> Self {
        let config = Config { default, regions: BTreeMap::new(), cache_empty: true };
        Self { config: Arc::new(config), counters: Arc::default() }
    }

    /// Adds a region that templates can choose by its name,
    /// `region="<name>"` (names not added here are looked up in the
    /// registry).
    pub fn region(mut self, region: Region) -> Self {
        Arc::make_mut(&mut self.config).regions.insert(region.name().to_owned(), region);
        self
    }

    /// Whether output that is empty or only whitespace is stored, for
    /// calls that do not say (`cache_empty=...`). Default: `true`.
    pub fn cache_empty(mut self, cache_empty: bool) -> Self {
        Arc::make_mut(&mut self.config).cache_empty = cache_empty;
        self
    }

    /// Registers the `cache` function in `env` (replacing any global of
    /// that name).
    pub fn install(&self, env: &mut Environment<'_>) {
        env.add_global("cache", Value::from_object(CacheFunction(self.clone())));
    }

    /// How many `cache(...)` calls rendered their body without the cache:
    /// the backend failed, or the region is declared but not configured.
    pub fn uncached_renders(&self) -> u64 {
        self.counters.uncached.load(Ordering::Relaxed)
    }

    /// The region key under which a template stores `fragment`. Without
    /// [`Fragment::auto_escape`], the template is loaded from `env` to learn
    /// its auto-escape mode.
    pub fn key(&self, env: &Environment<'_>, fragment: &Fragment) -> Result<String, Error> {
        let escape = match &fragment.auto_escape {
            Some(escape) => escape.clone(),
            None => {
                let template = env.get_template(&fragment.template).map_err(|e| {
                    Error::Config(format!(
                        "cannot tell the auto-escape mode of template `{}` ({e}); \
                         give it with Fragment::auto_escape",
                        fragment.template
                    ))
                })?;
                template.new_state().auto_escape().clone()
            }
        };
        Ok(fragment_key(&fragment.template, &escape, fragment.namespace.as_deref(), &fragment.key))
    }

    /// Deletes `fragment` (found as a template would find it: same
    /// template, key, namespace, region and auto-escape mode), so the next
    /// render runs its body; concurrent renders wait for that one.
    /// Deleting a missing fragment is not an error.
    pub fn invalidate(&self, env: &Environment<'_>, fragment: &Fragment) -> Result<(), Error> {
        let key = self.key(env, fragment)?;
        match self.resolve(fragment.region.as_deref())? {
            Resolved::Region(region) => region.delete(&key),
            Resolved::Unconfigured(name) => Err(Error::NotConfigured { region: name }),
        }
    }

    /// The region for a call naming `name` (or none).
    fn resolve(&self, name: Option<&str>) -> Result<Resolved<'_>, Error> {
        let config = &*self.config;
        let name = match (name, &config.default) {
            (None, DefaultRegion::Fixed(region)) => return Ok(Resolved::Region(Cow::Borrowed(region))),
            (None, DefaultRegion::Named(name)) => name.as_str(),
            (Some(name), _) => name,
        };
        if let Some(region) = config.regions.get(name) {
            return Ok(Resolved::Region(Cow::Borrowed(region)));
        }
        if let DefaultRegion::Fixed(region) = &config.default
            && region.name() == name
        {
            return Ok(Resolved::Region(Cow::Borrowed(region)));
        }
        match crate::region(name) {
            Ok(region) => Ok(Resolved::Region(Cow::Owned(region))),
            Err(Error::NotConfigured { region }) => Ok(Resolved::Unconfigured(region)),
            Err(e) => {
                let mut known: Vec<&str> = config.regions.keys().map(String::as_str).collect();
                if let DefaultRegion::Fixed(region) = &config.default {
                    known.push(region.name());
                }
                Err(Error::Config(format!(
                    "{e}; regions given to this fragment cache: {}",
                    if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                )))
            }
        }
    }

    /// One `cache(...)` call.
    fn call(&self, state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, ::minijinja::Error> {
        let args = args::parse(args)?;
        let region = match self.resolve(args.region()) {
            Ok(Resolved::Region(region)) => region,
            Ok(Resolved::Unconfigured(name)) => {
                if !self.counters.warned_unconfigured.swap(true, Ordering::Relaxed) {
                    tracing::warn!(region = %name, "region is not configured; template fragments render uncached");
                }
                return self.uncached(state, &args.caller);
            }
            Err(e) => {
                let what = if args.region().is_some() { "argument `region`" } else { "the default region" };
                return Err(::minijinja::Error::new(ErrorKind::InvalidOperation, format!("cache(): {what}: {e}")));
            }
        };
        let key = fragment_key(state.name(), state.auto_escape(), args.namespace(), args.key());
        let mut opts = if args.cache_empty.unwrap_or(self.config.cache_empty) {
            CreateOptions::new()
        } else {
            CreateOptions::new().should_cache(|f: &Stored| !f.0.as_str().unwrap_or_default().trim().is_empty())
        };
        if let Some(expiration) = args.expiration {
            opts = opts.expiration(expiration);
        }
        let caller = &args.caller;
        let result = region.try_get_or_create_with(&key, &opts, || caller.call(state, &[]).map(Stored::new));
        match result {
            Ok(fragment) => Ok(fragment.0),
            Err(TryCreateError::Creator(e)) => Err(e),
            Err(TryCreateError::Cache(Error::Reentrant { .. })) => Err(::minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "cache(): the fragment `{}` contains a cache block with its own key, which would wait \
                     for itself forever; give the inner block another key",
                    args.key()
                ),
            )),
            // The backend failed before the body ran (the region logged and
            // counted it): the page is served, uncached.
            Err(TryCreateError::Cache(_)) => self.uncached(state, caller),
        }
    }

    /// Renders the body without the cache, and counts it.
    fn uncached(&self, state: &mut State<'_, '_>, caller: &Value) -> Result<Value, ::minijinja::Error> {
        self.counters.uncached.fetch_add(1, Ordering::Relaxed);
        caller.call(state, &[]).map(|v| Stored::new(v).0)
    }
}

impl fmt::Debug for FragmentCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let default = match &self.config.default {
            DefaultRegion::Fixed(region) => region.name(),
            DefaultRegion::Named(name) => name,
        };
        f.debug_struct("FragmentCache")
            .field("default_region", &default)
            .field("regions", &self.config.regions.keys().collect::<Vec<_>>())
            .field("cache_empty", &self.config.cache_empty)
            .field("uncached_renders", &self.uncached_renders())
            .finish()
    }
}

/// A region found for a call.
enum Resolved<'a> {
    Region(Cow<'a, Region>),
    /// Declared with `region!` but not configured: render uncached.
    Unconfigured(String),
}

/// Registers a `cache` function storing fragments in `region` in `env`, and
/// returns the cache (for invalidation and counters). The same as
/// `FragmentCache::new(region)` followed by [`install`](FragmentCache::install).
pub fn add_to_env(env: &mut Environment<'_>, region: Region) -> FragmentCache {
    let cache = FragmentCache::new(region);
    cache.install(env);
    cache
}

/// Names a fragment from Rust the way a template's `cache(...)` call does,
/// for [`FragmentCache::invalidate`] and [`FragmentCache::key`].
///
/// ```
/// use dogpile::minijinja::Fragment;
///
/// let fragment = Fragment::new("page.html", "sidebar:7").namespace("v2");
/// # let _ = fragment;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    template: String,
    key: String,
    namespace: Option<String>,
    region: Option<String>,
    auto_escape: Option<AutoEscape>,
}

impl Fragment {
    /// The fragment `key` of the template named `template`.
    pub fn new(template: impl Into<String>, key: impl Into<String>) -> Self {
        Fragment { template: template.into(), key: key.into(), namespace: None, region: None, auto_escape: None }
    }

    /// The `namespace="..."` the call gives.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The `region="..."` the call gives.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// The auto-escape mode in force at the call, when it is not the
    /// template's own (inside an `{% autoescape %}` block), or to avoid
    /// loading the template.
    pub fn auto_escape(mut self, auto_escape: AutoEscape) -> Self {
        self.auto_escape = Some(auto_escape);
        self
    }
}

/// `minijinja|<template>|<auto-escape>|<namespace or ~>|<key>`.
fn fragment_key(template: &str, escape: &AutoEscape, namespace: Option<&str>, key: &str) -> String {
    let mut out = String::with_capacity(24 + template.len() + key.len() + namespace.map_or(0, str::len));
    out.push_str("minijinja|");
    write_key_str(&mut out, template);
    out.push('|');
    match escape {
        AutoEscape::None => out.push_str("none"),
        AutoEscape::Html => out.push_str("html"),
        AutoEscape::Custom(name) => {
            out.push_str("custom:");
            write_key_str(&mut out, name);
        }
        // JSON, and modes of later minijinja versions, by their name.
        other => write_key_str(&mut out, &format!("{other:?}").to_lowercase()),
    }
    out.push('|');
    namespace.write_key(&mut out);
    out.push('|');
    write_key_str(&mut out, key);
    out
}

/// The `cache` global: calls [`FragmentCache::call`].
#[derive(Debug)]
struct CacheFunction(FragmentCache);

impl Object for CacheFunction {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn call(self: &Arc<Self>, state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, ::minijinja::Error> {
        self.0.call(state, args)
    }
}

/// A stored fragment: the body's output, a string that is markup ("safe")
/// or plain text, as the body produced it. Cloning is a reference count.
#[derive(Clone)]
struct Stored(Value);

impl Stored {
    /// Keeps a string as it is (with its safety); anything else a `caller`
    /// may return is stored as its plain text.
    fn new(value: Value) -> Self {
        if value.kind() == ValueKind::String { Stored(value) } else { Stored(Value::from(value.to_string())) }
    }
}

impl Serialize for Stored {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.0.as_str().unwrap_or_default(), self.0.is_safe()).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Stored {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (text, safe) = <(String, bool)>::deserialize(d)?;
        Ok(Stored(if safe { Value::from_safe_string(text) } else { Value::from(text) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_template_escape_namespace_and_key_apart() {
        let k = |t, e: AutoEscape, n, key| fragment_key(t, &e, n, key);
        assert_eq!(k("page.html", AutoEscape::Html, None, "sidebar:7"), "minijinja|page.html|html|~|sidebar:7");
        assert_eq!(k("a.txt", AutoEscape::None, Some("v2"), "x"), "minijinja|a.txt|none|v2|x");
        assert_eq!(k("t", AutoEscape::Custom("latex".into()), None, "x"), "minijinja|t|custom:latex|~|x");
        assert_ne!(k("a|b", AutoEscape::None, None, "c"), k("a", AutoEscape::None, None, "b|c"));
        assert_ne!(k("t", AutoEscape::None, Some("~"), "x"), k("t", AutoEscape::None, None, "x"));
        assert_ne!(k("t", AutoEscape::None, Some(""), "x"), k("t", AutoEscape::None, None, "x"));
    }

    #[test]
    fn stored_fragments_round_trip_with_their_safety() {
        for value in [Value::from_safe_string("<b>".into()), Value::from("<b>")] {
            let json = serde_json::to_string(&Stored(value.clone())).unwrap();
            let back: Stored = serde_json::from_str(&json).unwrap();
            assert_eq!(back.0.as_str(), Some("<b>"));
            assert_eq!(back.0.is_safe(), value.is_safe());
        }
        assert_eq!(Stored::new(Value::from(42)).0.as_str(), Some("42"));
    }
}
