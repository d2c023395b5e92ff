//! The global registry: every region declared with [`region!`](macro@crate::region)
//! and every `#[cached]` function, collected before `main` runs (with
//! [`inventory`]), so nothing depends on which module was touched first.
//!
//! Each declared name has one slot holding its configured [`Region`]. A slot
//! is read on every `#[cached]` call without taking a lock (an `ArcSwap`);
//! it is written only by configuration.

use crate::__private::{Registration, Site};
use crate::handle::RegionHandle;
use arc_swap::ArcSwapOption;
use dogpile_core::{Error, Region};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError};

inventory::collect!(Registration);

/// The configured region of one declared name.
pub(crate) struct Slot {
    pub(crate) name: &'static str,
    pub(crate) decls: Vec<&'static RegionHandle>,
    pub(crate) current: ArcSwapOption<Region>,
    /// The first region installed, for the hit path: while the slot was
    /// never reconfigured, a `#[cached]` call reads it with one atomic load
    /// instead of an `ArcSwap` load.
    pub(crate) first: OnceLock<Region>,
    /// Set once a second region replaced the first: from then on calls read
    /// `current`.
    pub(crate) replaced: AtomicBool,
    /// Serializes configuration; `true` once configured explicitly (by
    /// `configure*`, not by the declaration's defaults).
    pub(crate) explicit: Mutex<bool>,
    /// Calls of `#[cached]` functions that ran uncached because the region
    /// was not configured.
    pub(crate) uncached: AtomicU64,
}

impl Slot {
    /// The region without touching the `ArcSwap`, while the slot holds the
    /// first region ever installed in it.
    #[inline]
    pub(crate) fn fast(&self) -> Option<&Region> {
        if self.replaced.load(Ordering::Acquire) { None } else { self.first.get() }
    }

    /// Records `region` as current (with `explicit` or the defaults' lock
    /// held by the caller).
    fn publish(&self, region: Region) {
        self.current.store(Some(Arc::new(region.clone())));
        if self.first.set(region).is_err() {
            self.replaced.store(true, Ordering::Release);
        }
    }

    /// The region a call uses: the first one without touching the
    /// `ArcSwap`, else the current one, else the declaration's defaults.
    #[inline]
    pub(crate) fn current_region(&'static self) -> Option<CurrentRegion> {
        if let Some(region) = self.fast() {
            return Some(CurrentRegion::First(region));
        }
        let guard = self.current.load();
        if guard.is_some() {
            return Some(CurrentRegion::Loaded(guard));
        }
        drop(guard);
        self.apply_defaults().map(CurrentRegion::Owned)
    }

    /// The current region; applies the declaration's defaults on first use
    /// when the region was declared with a backend and is not configured.
    pub(crate) fn region(&self) -> Option<Region> {
        if let Some(r) = self.fast() {
            return Some(r.clone());
        }
        if let Some(r) = &*self.current.load() {
            return Some(Region::clone(r));
        }
        self.apply_defaults()
    }

    #[cold]
    pub(crate) fn apply_defaults(&self) -> Option<Region> {
        let decl = self.decls.iter().find(|d| d.defaults.backend.is_some())?;
        let _guard = self.explicit.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(r) = &*self.current.load() {
            return Some(Region::clone(r));
        }
        let backend = decl.defaults.backend.map(|make| make())?;
        let mut builder = Region::builder(self.name).backend_arc(backend);
        if let Some(exp) = self.default_expiration() {
            builder = builder.expiration(exp);
        }
        let region = builder.build();
        self.publish(region.clone());
        tracing::debug!(region = self.name, "region set up from its declared defaults");
        Some(region)
    }

    /// For a region that would be set up from its declaration's defaults,
    /// sets it up now and returns the panic message if building the default
    /// backend or expiration panicked ([`check`] reports it at start-up
    /// instead of the first call panicking).
    fn defaults_panic(&self) -> Option<String> {
        if self.current.load().is_some() || !self.has_default_backend() {
            return None;
        }
        let payload = std::panic::catch_unwind(|| self.apply_defaults()).err()?;
        Some(
            payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(a panic without a message)".to_owned()),
        )
    }

    pub(crate) fn default_backend(&self) -> Option<Arc<dyn dogpile_core::backend::Backend>> {
        self.decls.iter().find_map(|d| d.defaults.backend).map(|make| make())
    }

    pub(crate) fn default_expiration(&self) -> Option<dogpile_core::Expiration> {
        self.decls.iter().find_map(|d| d.defaults.expiration).map(|make| make())
    }

    pub(crate) fn has_default_backend(&self) -> bool {
        self.decls.iter().any(|d| d.defaults.backend.is_some())
    }

    /// Installs `region`; refuses a second explicit configuration unless
    /// `replace`.
    pub(crate) fn install(&self, region: Region, replace: bool) -> Result<(), Error> {
        let mut explicit = self.explicit.lock().unwrap_or_else(PoisonError::into_inner);
        if *explicit && !replace {
            return Err(Error::Config(format!(
                "region `{}` is already configured; to replace it use `replace = true` \
                 (or dogpile::configure_replace / replace_region)",
                self.name
            )));
        }
        self.publish(region);
        *explicit = true;
        Ok(())
    }

    pub(crate) fn is_configured(&self) -> bool {
        self.current.load().is_some() || self.has_default_backend()
    }
}

/// A region borrowed for one call (see [`Slot::current_region`]).
pub(crate) enum CurrentRegion {
    First(&'static Region),
    Loaded(arc_swap::Guard<Option<Arc<Region>>>),
    Owned(Region),
}

impl std::ops::Deref for CurrentRegion {
    type Target = Region;

    fn deref(&self) -> &Region {
        match self {
            CurrentRegion::First(r) => r,
            CurrentRegion::Loaded(g) => g.as_deref().expect("checked when loaded"),
            CurrentRegion::Owned(r) => r,
        }
    }
}

struct Registry {
    slots: BTreeMap<&'static str, &'static Slot>,
    functions: Vec<&'static Site>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let mut decls: BTreeMap<&'static str, Vec<&'static RegionHandle>> = BTreeMap::new();
    let mut functions = Vec::new();
    for r in inventory::iter::<Registration> {
        match r {
            Registration::Region(h) => decls.entry(h.name()).or_default().push(h),
            Registration::Function(site) => functions.push(*site),
        }
    }
    functions.sort_by_key(|s| (s.function, s.file, s.line));
    let slots = decls
        .into_iter()
        .map(|(name, mut decls)| {
            decls.sort_by_key(|d| (d.file, d.line));
            let slot: &'static Slot = Box::leak(Box::new(Slot {
                name,
                decls,
                current: ArcSwapOption::const_empty(),
                first: OnceLock::new(),
                replaced: AtomicBool::new(false),
                explicit: Mutex::new(false),
                uncached: AtomicU64::new(0),
            }));
            (name, slot)
        })
        .collect();
    Registry { slots, functions }
});

/// The slot of a declared region name.
pub(crate) fn slot(name: &str) -> Option<&'static Slot> {
    REGISTRY.slots.get(name).copied()
}

/// The slot of `name`, or an error listing the declared names.
pub(crate) fn declared_slot(name: &str) -> Result<&'static Slot, Error> {
    slot(name).ok_or_else(|| Error::Config(format!("region `{name}` is not declared; {}", declared_list())))
}

/// "declared regions: a, b" (or how to declare one when there are none).
pub(crate) fn declared_list() -> String {
    if REGISTRY.slots.is_empty() {
        "no region is declared (declare one with dogpile::region!(NAME, \"name\"))".to_owned()
    } else {
        let names: Vec<&str> = REGISTRY.slots.keys().copied().collect();
        format!("declared regions: {}", names.join(", "))
    }
}

/// The region configured for `name`.
///
/// Errors: the name was never declared with [`region!`](macro@crate::region)
/// ([`Error::Config`], listing the declared names), or it was declared but
/// not configured ([`Error::NotConfigured`]).
///
/// ```
/// dogpile::region!(PAGES, "doc_registry_pages");
///
/// assert!(matches!(dogpile::region("doc_registry_pages"), Err(dogpile::Error::NotConfigured { .. })));
/// assert!(matches!(dogpile::region("no_such_region"), Err(dogpile::Error::Config(_))));
/// ```
pub fn region(name: &str) -> Result<Region, Error> {
    let slot = declared_slot(name)?;
    slot.region().ok_or_else(|| Error::NotConfigured { region: name.to_owned() })
}

/// What the registry knows about one declared region.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegionInfo {
    /// The region's name.
    pub name: &'static str,
    /// Whether it has a backend (configured, or declared with a default).
    pub configured: bool,
    /// Where it is declared (`file:line`), once per `region!`.
    pub declared_at: Vec<String>,
    /// The `#[cached]` functions that use it.
    pub used_by: Vec<&'static str>,
    /// Calls of those functions that ran uncached because the region was
    /// not configured.
    pub uncached_calls: u64,
}

/// What the registry knows about one `#[cached]` function.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FunctionInfo {
    /// The function's path (`app::users::load_user`).
    pub function: &'static str,
    /// The name of the region it uses.
    pub region: &'static str,
    /// Where it is defined (`file:line`).
    pub defined_at: String,
    /// Calls that ran the function without the cache (region missing or not
    /// configured, or the backend failed).
    pub uncached_calls: u64,
}

/// Every declared region, sorted by name.
pub fn regions() -> Vec<RegionInfo> {
    REGISTRY
        .slots
        .values()
        .map(|slot| RegionInfo {
            name: slot.name,
            configured: slot.is_configured(),
            declared_at: slot.decls.iter().map(|d| format!("{}:{}", d.file, d.line)).collect(),
            used_by: REGISTRY.functions.iter().filter(|f| f.region_name() == slot.name).map(|f| f.function).collect(),
            uncached_calls: slot.uncached.load(Ordering::Relaxed),
        })
        .collect()
}

/// Every `#[cached]` function in the program, sorted by path.
pub fn cached_functions() -> Vec<FunctionInfo> {
    REGISTRY
        .functions
        .iter()
        .map(|f| FunctionInfo {
            function: f.function,
            region: f.region_name(),
            defined_at: format!("{}:{}", f.file, f.line),
            uncached_calls: f.uncached_calls(),
        })
        .collect()
}

/// Verifies the cache setup, typically once at start-up after
/// configuration: every `#[cached]` function names a declared region,
/// every declared region is configured (or was declared with a default
/// backend), and no two cached functions of one region share a key prefix
/// (unless given the same `name` on purpose). All problems are reported at
/// once.
///
/// A region declared with a default backend and not configured otherwise is
/// set up here, as its first use would do, so that a default backend (or
/// expiration) that panics when built is reported here rather than by the
/// first call.
///
/// ```
/// dogpile::region!(ITEMS, "doc_check_items", backend = dogpile::backends::MemoryBackend::new());
///
/// #[dogpile::cached(region = "doc_check_items")]
/// fn item(id: u64) -> String {
///     format!("item {id}")
/// }
///
/// // Other examples in this crate's doc tests declare regions they leave
/// // unconfigured, so look only at this one's problems.
/// let problems = dogpile::check().err().map(|e| e.problems().to_vec()).unwrap_or_default();
/// assert!(problems.iter().all(|p| !p.contains("doc_check_items")));
/// # assert_eq!(item(1), "item 1");
/// ```
pub fn check() -> Result<(), CheckError> {
    let mut problems = Vec::new();
    for f in &REGISTRY.functions {
        let name = f.region_name();
        if slot(name).is_none() {
            problems.push(format!(
                "cached function `{}` ({}:{}) uses region `{name}`, which is not declared; {}",
                f.function,
                f.file,
                f.line,
                declared_list()
            ));
        }
    }
    // Two cached functions with one key prefix in one region would mix
    // their values. Prefixes are distinct by construction (see `Site`),
    // except for a `name` that spells another function's path, and for
    // functions of one name in two blocks or closures of one function,
    // which Rust names alike. Functions given the same `name` share on
    // purpose. Methods' prefixes name their type at run time: not seen here.
    for (i, a) in REGISTRY.functions.iter().enumerate() {
        for b in &REGISTRY.functions[i + 1..] {
            let (Some(prefix), Some(other)) = (a.key_prefix(), b.key_prefix()) else { continue };
            if prefix != other || a.region_name() != b.region_name() || (a.named && b.named) {
                continue;
            }
            let why = if prefix.contains("()::") && !a.named && !b.named {
                " (functions declared in different blocks or closures of one function get the same path)"
            } else {
                ""
            };
            problems.push(format!(
                "cached functions `{}` ({}:{}) and `{}` ({}:{}) share the key prefix `{prefix}` in region `{}`, \
                 so their values would mix{why}; give one of them `name = \"...\"` or `namespace = \"...\"`",
                a.function,
                a.file,
                a.line,
                b.function,
                b.file,
                b.line,
                a.region_name()
            ));
        }
    }
    for slot in REGISTRY.slots.values() {
        if !slot.is_configured() {
            let users: Vec<&str> =
                REGISTRY.functions.iter().filter(|f| f.region_name() == slot.name).map(|f| f.function).collect();
            let decl = slot.decls[0];
            let mut p = format!(
                "region `{}` (declared at {}:{}) is not configured; call dogpile::configure(\"{}\", ...) or \
                 list it in the configuration file",
                slot.name, decl.file, decl.line, slot.name
            );
            if !users.is_empty() {
                p.push_str(&format!("; used by {}", users.join(", ")));
            }
            problems.push(p);
        }
        if let Some(message) = slot.defaults_panic() {
            let decl = slot.decls.iter().find(|d| d.defaults.backend.is_some()).unwrap_or(&slot.decls[0]);
            problems.push(format!(
                "region `{}` (declared at {}:{}): building its default backend or expiration panicked: {message}; \
                 fix the `region!` options or configure the region by name",
                slot.name, decl.file, decl.line
            ));
        }
        let with_defaults: Vec<_> = slot.decls.iter().filter(|d| d.defaults.backend.is_some()).collect();
        if with_defaults.len() > 1 {
            let places: Vec<String> = with_defaults.iter().map(|d| format!("{}:{}", d.file, d.line)).collect();
            problems.push(format!(
                "region `{}` is declared with a default backend more than once ({}); only the first is used",
                slot.name,
                places.join(", ")
            ));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(CheckError { problems }) }
}

/// The problems found by [`check`], one sentence each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckError {
    problems: Vec<String>,
}

impl CheckError {
    /// Each problem as a sentence naming the region or function concerned.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(f, "{n} problem{} with the cache setup:", if n == 1 { "" } else { "s" })?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CheckError {}
