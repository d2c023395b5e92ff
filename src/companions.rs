//! What the companions of a `#[cached]` function call (`f::invalidate`,
//! `f::get`, `f::set`, `f::refresh`), re-exported through `__private`. Not
//! a stable API. Like the function, they fail open: a backend error is
//! logged and counted, never returned.

use crate::__private::{Cacheable, Site, key};
use crate::registry::Slot;
use dogpile_core::{CacheValue, Error, Expiration, Region};
use std::future::Future;

fn owned_region(site: &'static Site) -> Option<Region> {
    site.resolved().and_then(Slot::region)
}

fn log_failure(site: &'static Site, what: &str, r: Result<(), Error>) {
    if let Err(e) = r {
        site.cache_failed(&e);
        tracing::debug!(function = site.function, companion = what, "companion could not reach the cache");
    }
}

/// `f::invalidate`: deletes the entry.
pub fn invalidate<A>(site: &'static Site, args: A, write: impl FnOnce(&A, &mut String)) {
    if let Some(region) = owned_region(site) {
        log_failure(site, "invalidate", region.delete(&key(site, args, write)));
    }
}

/// `f::invalidate` of an async function.
pub async fn invalidate_async<A>(site: &'static Site, args: A, write: impl FnOnce(&A, &mut String)) {
    if let Some(region) = owned_region(site) {
        let r = region.delete_async(&key(site, args, write)).await;
        log_failure(site, "invalidate", r);
    }
}

/// `f::get`: the cached value if present and fresh by the function's
/// expiration.
pub fn get<A, C: Cacheable>(
    site: &'static Site,
    expiration: Option<Expiration>,
    args: A,
    write: impl FnOnce(&A, &mut String),
) -> Option<C> {
    let region = owned_region(site)?;
    let exp = expiration_of(&region, expiration);
    region.get_with(&key(site, args, write), exp).unwrap_or_else(|e| {
        site.cache_failed(&e);
        None
    })
}

/// `f::get` of an async function.
pub async fn get_async<A, C: Cacheable>(
    site: &'static Site,
    expiration: Option<Expiration>,
    args: A,
    write: impl FnOnce(&A, &mut String),
) -> Option<C> {
    let region = owned_region(site)?;
    let exp = expiration_of(&region, expiration);
    region.get_with_async(&key(site, args, write), exp).await.unwrap_or_else(|e| {
        site.cache_failed(&e);
        None
    })
}

/// `f::set`: stores `value` as if the function had returned it.
pub fn set<A, C: Cacheable>(
    site: &'static Site,
    expiration: Option<Expiration>,
    value: C,
    args: A,
    write: impl FnOnce(&A, &mut String),
) {
    if let Some(region) = owned_region(site) {
        let exp = expiration_of(&region, expiration);
        log_failure(site, "set", region.set_with(&key(site, args, write), value, exp));
    }
}

/// `f::set` of an async function.
pub async fn set_async<A, C: Cacheable>(
    site: &'static Site,
    expiration: Option<Expiration>,
    value: C,
    args: A,
    write: impl FnOnce(&A, &mut String),
) {
    if let Some(region) = owned_region(site) {
        let exp = expiration_of(&region, expiration);
        let r = region.set_with_async(&key(site, args, write), value, exp).await;
        log_failure(site, "set", r);
    }
}

fn store_refreshed<C: CacheValue>(
    site: &'static Site,
    expiration: Option<Expiration>,
    should_cache: Option<fn(&C) -> bool>,
    key: &str,
    value: &C,
) {
    if should_cache.is_none_or(|p| p(value))
        && let Some(region) = owned_region(site)
    {
        let exp = expiration_of(&region, expiration);
        log_failure(site, "refresh", region.set_with(key, value.clone(), exp));
    }
}

/// `f::refresh`: runs the function and stores its value (when the
/// should-cache rule accepts it).
pub fn refresh<A, C: Cacheable>(
    site: &'static Site,
    expiration: Option<Expiration>,
    should_cache: Option<fn(&C) -> bool>,
    args: A,
    write: impl FnOnce(&A, &mut String),
    create: impl FnOnce(A) -> C,
) -> C {
    let key = key(site, &args, |args, out| write(args, out));
    let value = create(args);
    store_refreshed(site, expiration, should_cache, &key, &value);
    value
}

/// `f::refresh` of a function returning `Result`: stores an `Ok` value.
pub fn try_refresh<A, C: Cacheable, E>(
    site: &'static Site,
    expiration: Option<Expiration>,
    should_cache: Option<fn(&C) -> bool>,
    args: A,
    write: impl FnOnce(&A, &mut String),
    create: impl FnOnce(A) -> Result<C, E>,
) -> Result<C, E> {
    let key = key(site, &args, |args, out| write(args, out));
    let result = create(args);
    if let Ok(value) = &result {
        store_refreshed(site, expiration, should_cache, &key, value);
    }
    result
}

/// `f::refresh` of an async function.
pub async fn refresh_async<A, C, F, Fut>(
    site: &'static Site,
    expiration: Option<Expiration>,
    should_cache: Option<fn(&C) -> bool>,
    args: A,
    write: impl FnOnce(&A, &mut String),
    create: F,
) -> C
where
    C: Cacheable,
    F: FnOnce(A) -> Fut,
    Fut: Future<Output = C>,
{
    let key = key(site, &args, |args, out| write(args, out));
    let value = create(args).await;
    if should_cache.is_none_or(|p| p(&value))
        && let Some(region) = owned_region(site)
    {
        let exp = expiration_of(&region, expiration);
        let r = region.set_with_async(&key, value.clone(), exp).await;
        log_failure(site, "refresh", r);
    }
    value
}

/// `f::refresh` of an async function returning `Result`.
pub async fn try_refresh_async<A, C, E, F, Fut>(
    site: &'static Site,
    expiration: Option<Expiration>,
    should_cache: Option<fn(&C) -> bool>,
    args: A,
    write: impl FnOnce(&A, &mut String),
    create: F,
) -> Result<C, E>
where
    C: Cacheable,
    F: FnOnce(A) -> Fut,
    Fut: Future<Output = Result<C, E>>,
{
    let key = key(site, &args, |args, out| write(args, out));
    let result = create(args).await;
    if let Ok(value) = &result
        && should_cache.is_none_or(|p| p(value))
        && let Some(region) = owned_region(site)
    {
        let exp = expiration_of(&region, expiration);
        let r = region.set_with_async(&key, value.clone(), exp).await;
        log_failure(site, "refresh", r);
    }
    result
}

/// The function's own expiration, or its region's.
fn expiration_of(region: &Region, expiration: Option<Expiration>) -> Expiration {
    expiration.unwrap_or_else(|| region.expiration())
}
