//! What the expansions of `#[cached]` and `region!` call. Not a stable API:
//! everything here may change in any release.

use crate::handle::RegionHandle;
use crate::registry::{self, Slot};
use dogpile_core::{CacheKey, CacheValue, CreateOptions, Error, Expiration, Region, TryCreateError};
use std::any::Any;
use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

pub use crate::handle::{RegionDefault, RegionDefaults};
pub use dogpile_core::backend::Backend;
pub use inventory;
pub use std::string::String;

/// One entry of the registry.
pub enum Registration {
    /// A `region!` declaration.
    Region(&'static RegionHandle),
    /// A `#[cached]` function.
    Function(&'static Site),
}

/// Boxes a `region!` default backend.
pub fn arc_backend(backend: impl Backend) -> Arc<dyn Backend> {
    Arc::new(backend)
}

/// Converts a `region!` default expiration.
pub fn into_expiration(expiration: impl Into<Expiration>) -> Expiration {
    expiration.into()
}

/// How a `#[cached]` function names its region.
pub enum RegionRef {
    /// `region = "name"`: looked up in the registry on first call.
    Name(&'static str),
    /// `region = STATIC`: a `region!` handle, checked by the compiler.
    Handle(&'static RegionHandle),
}

/// The per-function state of a `#[cached]` function: where it is, which
/// region it uses (resolved once), and its uncached-call counter.
///
/// # Key prefixes
///
/// Every key starts with the function's prefix, so that two functions never
/// share keys by accident:
///
/// | function | prefix |
/// |---|---|
/// | `f` in module `app::users` | `app::users::f` (`module_path!()`, stable) |
/// | `f` declared inside the function `app::report` | `app::report()::f` |
/// | `name = "x"` | `x` (escaped like a key string) |
/// | a method of `T` | `<type_name of T>::f`, written by the key closure |
///
/// followed by `|namespace` when one is given. The `()` after an enclosing
/// function is what keeps `fn report() { fn load() }` apart from
/// `mod report { fn load() }`: a module path never contains it, and a
/// `name` cannot produce it (its parentheses are escaped). The enclosing
/// path comes from [`core::any::type_name`] of the companion type: blocks
/// and closures of one function do not show in it, so two functions of one
/// name declared in two blocks of one function still share a prefix, which
/// [`check`](crate::check) reports.
pub struct Site {
    pub(crate) function: &'static str,
    /// The key prefix (`module::f|namespace`); `None` for methods, whose
    /// prefix names `Self` and is written by the key closure.
    prefix: Option<&'static str>,
    /// The prefix was given with `name = "..."`: functions of one name
    /// share entries on purpose.
    pub(crate) named: bool,
    pub(crate) file: &'static str,
    pub(crate) line: u32,
    region: RegionRef,
    /// `type_name` of the function's companion type: names the enclosing
    /// function for a cached function declared inside another function
    /// (which `module_path!()` cannot).
    scope: Option<fn() -> &'static str>,
    /// The prefix with the enclosing function's path, when it differs from
    /// `prefix` (resolved on first use).
    scoped_prefix: OnceLock<Option<Box<str>>>,
    slot: OnceLock<Option<&'static Slot>>,
    uncached: AtomicU64,
    warned: AtomicBool,
    options: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl Site {
    /// A site for the function at `function` (`module::name`).
    pub const fn new(
        function: &'static str,
        prefix: Option<&'static str>,
        file: &'static str,
        line: u32,
        region: RegionRef,
    ) -> Self {
        Site {
            function,
            prefix,
            file,
            line,
            region,
            named: false,
            scope: None,
            scoped_prefix: OnceLock::new(),
            slot: OnceLock::new(),
            uncached: AtomicU64::new(0),
            warned: AtomicBool::new(false),
            options: OnceLock::new(),
        }
    }

    /// Records the function's companion type name (see `scope`).
    pub const fn scoped(mut self, type_name: fn() -> &'static str) -> Self {
        self.scope = Some(type_name);
        self
    }

    /// Marks the prefix as given by `name = "..."`.
    pub const fn named(mut self) -> Self {
        self.named = true;
        self
    }

    /// The key prefix of a free function (`None` for methods): `module::f`
    /// (plus `|namespace`), or `module::outer()::f` for a function declared
    /// inside the function `outer` (see [`Site`]).
    #[inline]
    pub(crate) fn key_prefix(&self) -> Option<&str> {
        let prefix = self.prefix?;
        if self.scope.is_none() {
            return Some(prefix);
        }
        match self.scoped_prefix.get_or_init(|| self.resolve_scope(prefix)) {
            Some(scoped) => Some(scoped),
            None => Some(prefix),
        }
    }

    #[cold]
    fn resolve_scope(&self, prefix: &str) -> Option<Box<str>> {
        // `app::report::load` for `load` declared in `fn report` of `app`.
        let path = (self.scope?)();
        // Same path as `module_path!()::f`: a module-level function, whose
        // key keeps the guaranteed-stable `module_path!()` form.
        if path == self.function {
            return None;
        }
        let ident = self.function.rsplit("::").next()?;
        let scope = path.strip_suffix(ident)?.strip_suffix("::")?;
        let rest = prefix.strip_prefix(self.function)?;
        Some(format!("{scope}()::{ident}{rest}").into_boxed_str())
    }

    pub(crate) fn region_name(&self) -> &'static str {
        match self.region {
            RegionRef::Name(n) => n,
            RegionRef::Handle(h) => h.name(),
        }
    }

    pub(crate) fn uncached_calls(&self) -> u64 {
        self.uncached.load(Ordering::Relaxed)
    }

    #[inline]
    fn slot(&self) -> Option<&'static Slot> {
        match self.slot.get() {
            Some(s) => *s,
            None => self.resolve(),
        }
    }

    #[cold]
    fn resolve(&self) -> Option<&'static Slot> {
        *self.slot.get_or_init(|| match self.region {
            RegionRef::Name(n) => registry::slot(n),
            RegionRef::Handle(h) => Some(h.slot()),
        })
    }

    /// The region as an owned handle (for async code, which must not hold
    /// the registry's read guard across an `.await`).
    fn region(&self) -> Option<Region> {
        match self.slot().and_then(Slot::region) {
            Some(r) => Some(r),
            None => {
                self.count_uncached();
                None
            }
        }
    }

    #[cold]
    fn count_uncached(&self) {
        self.uncached.fetch_add(1, Ordering::Relaxed);
        let slot = self.slot();
        if let Some(slot) = slot {
            slot.uncached.fetch_add(1, Ordering::Relaxed);
        }
        if !self.warned.swap(true, Ordering::Relaxed) {
            let name = self.region_name();
            let why = match slot {
                None => format!("region `{name}` is not declared ({})", registry::declared_list()),
                Some(_) => format!("region `{name}` is not configured"),
            };
            tracing::warn!(
                function = self.function,
                region = name,
                "cached function runs without its cache: {why}; call dogpile::configure at start-up \
                 (this is logged once per function)"
            );
        }
    }

    /// The resolved slot, for the companions.
    pub(crate) fn resolved(&self) -> Option<&'static Slot> {
        self.slot()
    }

    #[cold]
    pub(crate) fn cache_failed(&self, error: &Error) {
        self.uncached.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(function = self.function, %error, "cache call failed; the function's own result is used");
    }

    /// Per-call options, built once per site (the should-cache predicate is
    /// an `Arc`; building it on every call would allocate).
    fn options<C: CacheValue>(&self, make: fn() -> CreateOptions<C>) -> OptionsRef<'_, C> {
        let stored = self.options.get_or_init(|| Box::new(make()));
        match stored.downcast_ref::<CreateOptions<C>>() {
            Some(o) => OptionsRef::Shared(o),
            // A method of a generic impl: each instantiation has its own
            // value type but they share the site.
            None => OptionsRef::Own(make()),
        }
    }
}

enum OptionsRef<'a, C> {
    Shared(&'a CreateOptions<C>),
    Own(CreateOptions<C>),
}

impl<C> OptionsRef<'_, C> {
    fn get(&self) -> &CreateOptions<C> {
        match self {
            OptionsRef::Shared(o) => o,
            OptionsRef::Own(o) => o,
        }
    }
}

/// The first capacity of a thread's key buffer.
const KEY_BUFFER_CAPACITY: usize = 256;

thread_local! {
    /// A reusable key buffer: a cache hit builds its key without allocating.
    static KEY_BUFFER: Cell<String> = const { Cell::new(String::new()) };
}

impl Site {
    #[inline]
    fn write_key<A>(&self, out: &mut String, args: &A, write: impl FnOnce(&A, &mut String)) {
        if let Some(p) = self.key_prefix() {
            out.push_str(p);
        }
        write(args, out);
    }
}

/// Builds the key in the thread's buffer and hands it to `f`. A nested
/// call (a cached function calling another) finds the buffer taken and
/// uses a new one.
#[inline]
fn with_key<A, R>(site: &Site, args: A, write: impl FnOnce(&A, &mut String), f: impl FnOnce(&str, A) -> R) -> R {
    KEY_BUFFER.with(|cell| {
        let mut buffer = cell.take();
        if buffer.capacity() == 0 {
            // A first small allocation of two threads' buffers can land in
            // one cache line, which each thread then writes on every call
            // (false sharing: +30 ns per call on two threads, BENCHMARKS.md
            // issue 13); a larger first allocation keeps the bytes a key
            // uses apart from another thread's.
            buffer.reserve(KEY_BUFFER_CAPACITY);
        }
        buffer.clear();
        site.write_key(&mut buffer, &args, write);
        let r = f(&buffer, args);
        cell.set(buffer);
        r
    })
}

/// The key of a call, as a new string (`f::key`).
pub fn key<A>(site: &'static Site, args: A, write: impl FnOnce(&A, &mut String)) -> String {
    let mut key = String::new();
    site.write_key(&mut key, &args, write);
    key
}

/// Appends one argument to a key: `|` then its key form.
#[inline]
pub fn write_arg<K: CacheKey + ?Sized>(out: &mut String, arg: &K) {
    out.push('|');
    arg.write_key(out);
}

/// Appends a method's prefix: the type's path, `::`, the method's name
/// (and namespace).
pub fn write_type_prefix<S: ?Sized>(out: &mut String, method: &str) {
    out.push_str(std::any::type_name::<S>());
    out.push_str("::");
    out.push_str(method);
}

/// What a `#[cached]` function may return: a [`CacheValue`], named so
/// that a wrong return type gets one clear message.
#[diagnostic::on_unimplemented(
    message = "the return value of a cached function must be cloneable, shareable between threads and serializable",
    label = "`{Self}` is not `Clone + Send + Sync + Serialize + DeserializeOwned + 'static`",
    note = "derive `Clone`, `serde::Serialize` and `serde::Deserialize` for it; to avoid copying a large value on every hit, return an `Arc` of it"
)]
pub trait Cacheable: CacheValue {}

#[diagnostic::do_not_recommend]
impl<T: CacheValue> Cacheable for T {}

/// Fails to compile, at the return type, when the value cannot be cached.
pub const fn assert_value<C: Cacheable>() {}

/// `T` itself, through a projection: lets the expansion name a return
/// type with tokens of one span (see `Gen::value_call` in the macro).
pub trait Itself {
    /// `T`.
    type Type: ?Sized;
}

impl<T: ?Sized> Itself for T {
    type Type = T;
}

/// The return types whose `Ok` alone is cached.
#[diagnostic::on_unimplemented(
    message = "`#[cached]` treats a return type named `Result` as `core::result::Result`, but `{Self}` is not",
    label = "not `core::result::Result`"
)]
pub trait Fallible {
    /// The value cached.
    type Ok;
}

impl<T, E> Fallible for Result<T, E> {
    type Ok = T;
}

/// Tells, by the value's type, whether a created value may be stored: a
/// `Result` only when `Ok`, anything else always. It lets a function whose
/// return type is a `Result` behind an alias (`ApiResult<T>`) keep its errors
/// out of the cache, which the macro cannot see from the type's name.
///
/// Dispatch happens at compile time by method resolution: the `Result`
/// impl is on the probe itself and wins; the general one is on a reference
/// to it and is found one auto-reference later.
pub struct ResultProbe<T>(::core::marker::PhantomData<T>);

impl<T> ResultProbe<T> {
    /// The probe for `T`.
    pub const fn new() -> Self {
        ResultProbe(::core::marker::PhantomData)
    }
}

impl<T> Default for ResultProbe<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// The `Result` half of [`ResultProbe`].
pub trait AcceptsOk<T> {
    /// Whether `value` may be stored.
    fn accepts(&self, value: &T) -> bool;
}

impl<C, E> AcceptsOk<Result<C, E>> for ResultProbe<Result<C, E>> {
    fn accepts(&self, value: &Result<C, E>) -> bool {
        value.is_ok()
    }
}

/// The general half of [`ResultProbe`].
pub trait AcceptsAny<T> {
    /// Whether `value` may be stored (always).
    fn accepts(&self, value: &T) -> bool;
}

impl<T> AcceptsAny<T> for &ResultProbe<T> {
    fn accepts(&self, _value: &T) -> bool {
        true
    }
}

/// `Option::is_some` for `cache_none = false`.
pub fn is_some<T>(v: &Option<T>) -> bool {
    v.is_some()
}

/// The creator and its arguments, taken out once by whoever runs it.
struct Pending<A, F>(Option<(A, F)>);

impl<A, F> Pending<A, F> {
    fn run<R>(&mut self) -> R
    where
        F: FnOnce(A) -> R,
    {
        let (args, create) = self.0.take().expect("the creator runs once");
        create(args)
    }

    /// After a cache error: the region fails only before running the
    /// creator (a failed write after creation is logged, not returned), so
    /// the creator is still here and the function's own result is returned.
    #[cold]
    fn fail_open<R>(&mut self, site: &Site, error: &Error) -> R
    where
        F: FnOnce(A) -> R,
    {
        site.cache_failed(error);
        self.run()
    }
}

/// A call of an infallible `#[cached]` function.
#[inline]
pub fn call<A, C: Cacheable>(
    site: &'static Site,
    args: A,
    write: impl FnOnce(&A, &mut String),
    create: impl FnOnce(A) -> C,
) -> C {
    match site.slot().and_then(Slot::current_region) {
        Some(region) => call_in(site, &region, None, args, write, create),
        None => site.uncached(args, create),
    }
}

/// [`call`] with options (expiration, should-cache).
#[inline]
pub fn call_with<A, C: Cacheable>(
    site: &'static Site,
    options: fn() -> CreateOptions<C>,
    args: A,
    write: impl FnOnce(&A, &mut String),
    create: impl FnOnce(A) -> C,
) -> C {
    match site.slot().and_then(Slot::current_region) {
        Some(region) => call_in(site, &region, Some(options), args, write, create),
        None => site.uncached(args, create),
    }
}

#[inline]
fn call_in<A, C: CacheValue>(
    site: &'static Site,
    region: &Region,
    options: Option<fn() -> CreateOptions<C>>,
    args: A,
    write: impl FnOnce(&A, &mut String),
    create: impl FnOnce(A) -> C,
) -> C {
    with_key(site, args, write, |key, args| {
        let mut pending = Pending(Some((args, create)));
        let r = match options {
            None => region.get_or_create(key, || pending.run()),
            Some(o) => region.get_or_create_with(key, site.options(o).get(), || pending.run()),
        };
        match r {
            Ok(v) => v,
            Err(e) => pending.fail_open(site, &e),
        }
    })
}

impl Site {
    /// No declared region: the function runs uncached.
    #[cold]
    fn uncached<A, R>(&self, args: A, create: impl FnOnce(A) -> R) -> R {
        self.count_uncached();
        create(args)
    }
}

/// A call of a `#[cached]` function returning `Result`: only `Ok` is
/// stored, an `Err` is returned as is.
#[inline]
pub fn try_call<A, C: Cacheable, E>(
    site: &'static Site,
    options: Option<fn() -> CreateOptions<C>>,
    args: A,
    write: impl FnOnce(&A, &mut String),
    create: impl FnOnce(A) -> Result<C, E>,
) -> Result<C, E> {
    match site.slot().and_then(Slot::current_region) {
        Some(region) => try_call_in(site, &region, options, args, write, create),
        None => site.uncached(args, create),
    }
}

#[inline]
fn try_call_in<A, C: CacheValue, E>(
    site: &'static Site,
    region: &Region,
    options: Option<fn() -> CreateOptions<C>>,
    args: A,
    write: impl FnOnce(&A, &mut String),
    create: impl FnOnce(A) -> Result<C, E>,
) -> Result<C, E> {
    with_key(site, args, write, |key, args| {
        let mut pending = Pending(Some((args, create)));
        let r = match options {
            None => region.try_get_or_create(key, || pending.run()),
            Some(o) => region.try_get_or_create_with(key, site.options(o).get(), || pending.run()),
        };
        match r {
            Ok(v) => Ok(v),
            Err(TryCreateError::Creator(e)) => Err(e),
            Err(TryCreateError::Cache(e)) => pending.fail_open(site, &e),
        }
    })
}

/// The async twin of [`call`] and [`call_with`].
pub async fn call_async<A, C, F, Fut>(
    site: &'static Site,
    options: Option<fn() -> CreateOptions<C>>,
    args: A,
    write: impl FnOnce(&A, &mut String),
    create: F,
) -> C
where
    C: Cacheable,
    F: FnOnce(A) -> Fut,
    Fut: Future<Output = C>,
{
    let Some(region) = site.region() else { return create(args).await };
    let key = key(site, &args, |args, out| write(args, out));
    let mut pending = Pending(Some((args, create)));
    let r = match options {
        None => region.get_or_create_async(&key, || pending.run()).await,
        Some(o) => region.get_or_create_async_with(&key, site.options(o).get(), || pending.run()).await,
    };
    match r {
        Ok(v) => v,
        Err(e) => pending.fail_open(site, &e).await,
    }
}

/// The async twin of [`try_call`].
pub async fn try_call_async<A, C, E, F, Fut>(
    site: &'static Site,
    options: Option<fn() -> CreateOptions<C>>,
    args: A,
    write: impl FnOnce(&A, &mut String),
    create: F,
) -> Result<C, E>
where
    C: Cacheable,
    F: FnOnce(A) -> Fut,
    Fut: Future<Output = Result<C, E>>,
{
    let Some(region) = site.region() else { return create(args).await };
    let key = key(site, &args, |args, out| write(args, out));
    let mut pending = Pending(Some((args, create)));
    let r = match options {
        None => region.try_get_or_create_async(&key, || pending.run()).await,
        Some(o) => region.try_get_or_create_async_with(&key, site.options(o).get(), || pending.run()).await,
    };
    match r {
        Ok(v) => Ok(v),
        Err(TryCreateError::Creator(e)) => Err(e),
        Err(TryCreateError::Cache(e)) => pending.fail_open(site, &e).await,
    }
}

pub use crate::companions::{
    get, get_async, invalidate, invalidate_async, refresh, refresh_async, set, set_async, try_refresh,
    try_refresh_async,
};
