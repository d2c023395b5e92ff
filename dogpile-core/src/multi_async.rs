//! The async twins of the multi-key operations (see `multi.rs` for the
//! locking order). Waiting for a key another caller creates awaits its
//! release; backends with an async client are called through it.

use crate::create::{Held, PanicCounter};
use crate::dist::DistOutcome;
use crate::error::Error;
use crate::lock::{KeyGuard, run_marked};
use crate::multi::{Claim, Plan, assemble};
use crate::options::{CreateOptions, Expiration};
use crate::region::{CacheValue, Lookup, Region};
use crate::stats::Counter;
use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;

impl Region {
    /// The async twin of [`get_multi`](Self::get_multi).
    pub async fn get_multi_async<T: CacheValue, K: AsRef<str>>(&self, keys: &[K]) -> Result<Vec<Option<T>>, Error> {
        let Some(ab) = self.inner.backend.as_async() else { return self.get_multi(keys) };
        let skeys = self.storage_keys(keys);
        let refs: Vec<&str> = skeys.iter().map(|k| &**k).collect();
        let values = self.checked_slots(refs.len(), ab.get_multi(&refs).await)?;
        Ok(self.fresh_slots(&refs, values))
    }

    /// The async twin of [`set_multi`](Self::set_multi).
    pub async fn set_multi_async<T: CacheValue, K: AsRef<str>>(
        &self,
        items: impl IntoIterator<Item = (K, T)>,
    ) -> Result<(), Error> {
        let Some(ab) = self.inner.backend.as_async() else { return self.set_multi(items) };
        let encoded = self.encode_items(items)?;
        if encoded.is_empty() {
            return Ok(());
        }
        let (keys, values): (Vec<String>, Vec<crate::Value>) = encoded.into_iter().unzip();
        let batch = keys.iter().map(String::as_str).zip(values).collect();
        let r = ab.set_multi(batch, self.storage_ttl(self.inner.expiration)).await;
        self.backend_call(r)
    }

    /// The async twin of [`delete_multi`](Self::delete_multi).
    pub async fn delete_multi_async<K: AsRef<str>>(&self, keys: &[K]) -> Result<(), Error> {
        let Some(ab) = self.inner.backend.as_async() else { return self.delete_multi(keys) };
        if keys.is_empty() {
            return Ok(());
        }
        let skeys = self.storage_keys(keys);
        let refs: Vec<&str> = skeys.iter().map(|k| &**k).collect();
        let r = ab.delete_multi(&refs).await;
        self.backend_call(r)
    }

    /// The async twin of [`get_or_create_multi`](Self::get_or_create_multi).
    /// The creator gets the keys to create (sorted, de-duplicated, owned so
    /// its future may keep them) and returns one value per key in that order.
    ///
    /// ```
    /// # use dogpile_core::*;
    /// # let region = Region::builder("r").build();
    /// # let fut = async {
    /// let v: Vec<usize> = region
    ///     .get_or_create_multi_async(&["bb", "a"], |missing| async move {
    ///         missing.iter().map(|k| k.len()).collect()
    ///     })
    ///     .await?;
    /// assert_eq!(v, [2, 1]);
    /// # Ok::<(), Error>(())
    /// # };
    /// ```
    pub async fn get_or_create_multi_async<T, K, F, Fut>(&self, keys: &[K], creator: F) -> Result<Vec<T>, Error>
    where
        T: CacheValue,
        K: AsRef<str>,
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = Vec<T>>,
    {
        self.get_or_create_multi_async_with(keys, &CreateOptions::new(), creator).await
    }

    /// [`get_or_create_multi_async`](Self::get_or_create_multi_async) with
    /// per-call options.
    pub async fn get_or_create_multi_async_with<T, K, F, Fut>(
        &self,
        keys: &[K],
        opts: &CreateOptions<T>,
        creator: F,
    ) -> Result<Vec<T>, Error>
    where
        T: CacheValue,
        K: AsRef<str>,
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = Vec<T>>,
    {
        let exp = opts.expiration.unwrap_or(self.inner.expiration);
        let Plan { unique, skeys, order, aliases } = self.plan(keys);
        let mut ready: HashMap<&str, T> = HashMap::with_capacity(unique.len());
        let refs: Vec<&str> = order.iter().map(|&i| &*skeys[i]).collect();
        let read = match self.inner.backend.as_async() {
            Some(ab) => ab.get_multi(&refs).await,
            None => self.inner.backend.get_multi(&refs),
        };
        let first = self.checked_slots(refs.len(), read)?;

        let mut claims: Vec<Claim<'_, T>> = Vec::new();
        let mut waited = false;
        for (&i, value) in order.iter().zip(first) {
            let (key, skey) = (unique[i], skeys[i].clone());
            let lookup = match value {
                Some(v) => self.judge_value::<T>(&skey, &v, exp, true),
                None => Lookup::Absent,
            };
            match self.claim_one_async(key, skey, lookup, exp, &mut waited).await? {
                Ok(v) => {
                    ready.insert(key, v);
                }
                Err(claim) => claims.push(claim),
            }
        }
        claims.sort_by(|a, b| a.key.cmp(b.key));

        if !claims.is_empty() {
            let to_create: Vec<String> = claims.iter().map(|c| c.key.to_owned()).collect();
            let start = self.creation_start();
            // Counts a panic or a cancellation of the creator.
            let counter = PanicCounter(self);
            let guards: Vec<&KeyGuard> = claims.iter().map(|c| &c._held._local).collect();
            let created = run_marked(&guards, || creator(to_create)).await;
            std::mem::forget(counter);
            let batch = self.created_batch(&claims, &created, opts, start)?;
            if !batch.is_empty() {
                let ttl = self.storage_ttl(exp);
                let r = match self.inner.backend.as_async() {
                    Some(ab) => ab.set_multi(batch, ttl).await,
                    None => self.inner.backend.set_multi(batch, ttl),
                };
                let _ = self.backend_call(r);
            }
            for (claim, value) in claims.iter().zip(created) {
                ready.insert(claim.key, value);
            }
            drop(claims);
        }
        Ok(assemble(keys, ready, aliases))
    }

    /// The async twin of `claim_one` in `multi.rs`.
    async fn claim_one_async<'k, T: CacheValue>(
        &self,
        key: &'k str,
        skey: Cow<'k, str>,
        mut lookup: Lookup<T>,
        exp: Expiration,
        waited: &mut bool,
    ) -> Result<Result<T, Claim<'k, T>>, Error> {
        loop {
            match lookup {
                Lookup::Fresh(v) => {
                    self.count(Counter::Hits);
                    return Ok(Ok(v));
                }
                Lookup::Expired(stale) => {
                    let Some(local) = self.inner.locks.try_lock(&skey) else {
                        self.count(Counter::StaleServed);
                        return Ok(Ok(stale));
                    };
                    return match self.try_distributed_async(&skey).await {
                        Ok(DistOutcome::Held) | Err(_) => {
                            self.count(Counter::StaleServed);
                            Ok(Ok(stale))
                        }
                        Ok(dist) => {
                            let dist = dist.into_guard();
                            if dist.is_some()
                                && let Lookup::Fresh(v) = self.lookup_async::<T>(&skey, exp, false).await?
                            {
                                self.count(Counter::Hits);
                                return Ok(Ok(v));
                            }
                            let _held = Held { _local: local, _dist: dist };
                            Ok(Err(Claim { key, skey, _held, _value: std::marker::PhantomData }))
                        }
                    };
                }
                Lookup::Absent => match self.inner.locks.handle(&skey).try_lock() {
                    Err(handle) => {
                        if handle.held_by_this_thread() {
                            return Err(Error::Reentrant { key: skey.into_owned() });
                        }
                        self.count(Counter::LockWaits);
                        handle.wait_released_async().await;
                        drop(handle);
                        *waited = true;
                        lookup = match self.lookup_async(&skey, exp, false).await? {
                            Lookup::Fresh(v) => {
                                self.count(Counter::Waited);
                                return Ok(Ok(v));
                            }
                            other => other,
                        };
                    }
                    Ok(local) => {
                        let stale = match self.lookup_async::<T>(&skey, exp, false).await? {
                            Lookup::Fresh(v) => {
                                self.count(if *waited { Counter::Waited } else { Counter::Hits });
                                return Ok(Ok(v));
                            }
                            Lookup::Expired(v) => Some(v),
                            Lookup::Absent => None,
                        };
                        let dist = match self.wait_distributed_async::<T>(&skey, exp, stale.is_some(), *waited).await? {
                            Ok(d) => d,
                            Err(landed) => return Ok(Ok(landed)),
                        };
                        let _held = Held { _local: local, _dist: dist };
                        return Ok(Err(Claim { key, skey, _held, _value: std::marker::PhantomData }));
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn assert_send<F: Future + Send>(f: F) -> F {
        f
    }

    #[test]
    fn futures_are_send() {
        let region = Region::builder("r").build();
        drop(assert_send(region.get_multi_async::<u8, _>(&["a"])));
        drop(assert_send(region.set_multi_async([("a", 1u8)])));
        drop(assert_send(region.delete_multi_async(&["a"])));
        drop(assert_send(region.get_or_create_multi_async(&["a"], |k| async move { vec![k.len() as u8] })));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn concurrent_multi_key_tasks_create_each_key_once() {
        #[derive(Debug)]
        struct Map(std::sync::Mutex<HashMap<String, crate::Value>>);
        impl crate::Backend for Map {
            fn name(&self) -> &'static str {
                "map"
            }
            fn value_kind(&self) -> crate::ValueKind {
                crate::ValueKind::Object
            }
            fn get(&self, key: &str) -> Result<Option<crate::Value>, crate::BackendError> {
                Ok(self.0.lock().unwrap().get(key).cloned())
            }
            fn set(
                &self,
                key: &str,
                v: crate::Value,
                _: Option<std::time::Duration>,
            ) -> Result<(), crate::BackendError> {
                self.0.lock().unwrap().insert(key.to_owned(), v);
                Ok(())
            }
            fn delete(&self, key: &str) -> Result<(), crate::BackendError> {
                self.0.lock().unwrap().remove(key);
                Ok(())
            }
            fn is_non_blocking(&self) -> bool {
                true
            }
        }
        let region = Region::builder("multi-async").backend(Map(Default::default())).build();
        let per_key: Arc<std::sync::Mutex<HashMap<String, usize>>> = Arc::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let (region, per_key, calls) = (region.clone(), per_key.clone(), calls.clone());
                tokio::spawn(async move {
                    let keys = [format!("k{}", t % 3), "shared".to_string(), format!("k{}", (t + 1) % 3)];
                    region
                        .get_or_create_multi_async(&keys, |missing| async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            tokio::task::yield_now().await;
                            for k in &missing {
                                *per_key.lock().unwrap().entry(k.clone()).or_default() += 1;
                            }
                            missing.iter().map(|k| format!("v-{k}")).collect::<Vec<String>>()
                        })
                        .await
                        .unwrap()
                })
            })
            .collect();
        for (t, task) in tasks.into_iter().enumerate() {
            let got = task.await.unwrap();
            assert_eq!(got, [format!("v-k{}", t % 3), "v-shared".into(), format!("v-k{}", (t + 1) % 3)]);
        }
        let per_key = per_key.lock().unwrap();
        assert_eq!(per_key.len(), 4, "{per_key:?}");
        assert!(per_key.values().all(|&n| n == 1), "a key was created twice: {per_key:?}");
    }
}
