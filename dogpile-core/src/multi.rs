//! Several keys at once: plain multi reads and writes, and multi-key
//! creation under the dogpile lock.
//!
//! Multi-key creation takes the keys' locks in sorted order (so two
//! multi-key callers cannot deadlock) and re-reads every key it had to wait
//! for, so a key created by a concurrent caller is not created again: each
//! missing key is created once however many multi-key callers ask for it.

use crate::create::{DistWait, Held, PanicCounter};
use crate::dist::DistOutcome;
use crate::error::{BackendError, Error};
use crate::options::CreateOptions;
use crate::region::{CacheValue, Lookup, Region};
use crate::stats::Counter;
use crate::value::Value;
use std::borrow::Cow;
use std::collections::HashMap;

/// The result of a multi-key call in input order, duplicates and keys that
/// share a storage key included.
pub(crate) fn assemble<'k, T: Clone, K: AsRef<str>>(
    keys: &[K],
    mut ready: HashMap<&'k str, T>,
    aliases: Vec<(&'k str, &'k str)>,
) -> Vec<T> {
    for (alias, representative) in aliases {
        let v = ready[representative].clone();
        ready.insert(alias, v);
    }
    keys.iter().map(|k| ready[k.as_ref()].clone()).collect()
}

/// One key that this caller will create, with its locks.
pub(crate) struct Claim<'k, T> {
    pub(crate) key: &'k str,
    pub(crate) skey: Cow<'k, str>,
    pub(crate) _held: Held,
    pub(crate) _value: std::marker::PhantomData<T>,
}

/// The keys of a multi-key call, de-duplicated and ordered for locking.
pub(crate) struct Plan<'k> {
    /// Caller keys, sorted and de-duplicated.
    pub(crate) unique: Vec<&'k str>,
    /// Their storage keys (same index).
    pub(crate) skeys: Vec<Cow<'k, str>>,
    /// Indices into `unique`, one per storage key, in storage-key order.
    pub(crate) order: Vec<usize>,
    /// Caller keys that share a storage key with an earlier one: (alias, representative).
    pub(crate) aliases: Vec<(&'k str, &'k str)>,
}

impl Region {
    /// Reads fresh values for several keys; `None` in the slots of keys that
    /// are absent, expired or undecodable.
    pub fn get_multi<T: CacheValue, K: AsRef<str>>(&self, keys: &[K]) -> Result<Vec<Option<T>>, Error> {
        let skeys = self.storage_keys(keys);
        let refs: Vec<&str> = skeys.iter().map(|k| &**k).collect();
        let values = self.checked_slots(refs.len(), self.inner.backend.get_multi(&refs))?;
        Ok(self.fresh_slots(&refs, values))
    }

    /// The result of a backend's multi-read, checked: one slot per key, or
    /// a backend error (counted) naming the backend, rather than values
    /// matched to the wrong keys or missing.
    pub(crate) fn checked_slots(
        &self,
        keys: usize,
        read: Result<Vec<Option<Value>>, BackendError>,
    ) -> Result<Vec<Option<Value>>, Error> {
        let slots = self.backend_call(read)?;
        if slots.len() == keys {
            return Ok(slots);
        }
        let message = format!(
            "get_multi returned {} values for {keys} keys; a backend must return one slot per key, in order",
            slots.len()
        );
        self.backend_call(Err(BackendError::new(self.inner.backend.name(), message)))
    }

    /// The storage keys of `keys`, in order.
    pub(crate) fn storage_keys<'k, K: AsRef<str>>(&self, keys: &'k [K]) -> Vec<Cow<'k, str>> {
        keys.iter().map(|k| self.storage_key(k.as_ref())).collect()
    }

    /// Judges each read value: `Some` for fresh ones, counted as hits;
    /// `None` for the rest, counted as misses.
    pub(crate) fn fresh_slots<T: CacheValue>(&self, skeys: &[&str], values: Vec<Option<Value>>) -> Vec<Option<T>> {
        values
            .into_iter()
            .zip(skeys)
            .map(|(v, skey)| {
                let found = match v {
                    Some(v) => self.judge_value::<T>(skey, &v, self.inner.expiration, false),
                    None => Lookup::Absent,
                };
                self.count_get(found)
            })
            .collect()
    }

    /// Encodes `items` for the backend, all stamped now.
    pub(crate) fn encode_items<T: CacheValue, K: AsRef<str>>(
        &self,
        items: impl IntoIterator<Item = (K, T)>,
    ) -> Result<Vec<(String, Value)>, Error> {
        let meta = self.stamp(None);
        items
            .into_iter()
            .map(|(k, v)| {
                let skey = self.storage_key(k.as_ref()).into_owned();
                let value = self.encode(&skey, &v, meta)?;
                Ok((skey, value))
            })
            .collect()
    }

    /// Stores several values, all created now.
    pub fn set_multi<T: CacheValue, K: AsRef<str>>(
        &self,
        items: impl IntoIterator<Item = (K, T)>,
    ) -> Result<(), Error> {
        let encoded = self.encode_items(items)?;
        if encoded.is_empty() {
            return Ok(());
        }
        // Keys owned here, values moved into the batch (no copy of the bytes).
        let (keys, values): (Vec<String>, Vec<Value>) = encoded.into_iter().unzip();
        let batch = keys.iter().map(String::as_str).zip(values).collect();
        self.backend_call(self.inner.backend.set_multi(batch, self.storage_ttl(self.inner.expiration)))
    }

    /// Deletes several keys.
    pub fn delete_multi<K: AsRef<str>>(&self, keys: &[K]) -> Result<(), Error> {
        if keys.is_empty() {
            return Ok(());
        }
        let skeys = self.storage_keys(keys);
        let refs: Vec<&str> = skeys.iter().map(|k| &**k).collect();
        self.backend_call(self.inner.backend.delete_multi(&refs))
    }

    /// Returns a value for every key, creating the missing and expired ones
    /// with one call of `creator`.
    ///
    /// The creator gets the keys to create, de-duplicated and sorted, and
    /// returns one value per key in that order. The result has one value per
    /// input key, in input order, duplicates included. Expired keys locked by
    /// another caller are served stale; missing keys locked by another
    /// caller are waited for and read again, never created twice. Keys that
    /// the key mangler maps to one storage key are one entry: created once,
    /// under the first of them.
    ///
    /// ```
    /// # use dogpile_core::*;
    /// # let region = Region::builder("r").build();
    /// let v: Vec<u64> = region.get_or_create_multi(&["b", "a", "b"], |missing| {
    ///     assert_eq!(missing, ["a", "b"]);
    ///     missing.iter().map(|k| k.len() as u64).collect()
    /// })?;
    /// assert_eq!(v, [1, 1, 1]);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn get_or_create_multi<T, K, F>(&self, keys: &[K], creator: F) -> Result<Vec<T>, Error>
    where
        T: CacheValue,
        K: AsRef<str>,
        F: FnOnce(&[&str]) -> Vec<T>,
    {
        self.get_or_create_multi_with(keys, &CreateOptions::new(), creator)
    }

    /// [`get_or_create_multi`](Self::get_or_create_multi) with per-call
    /// options; the should-cache predicate is applied to each value.
    pub fn get_or_create_multi_with<T, K, F>(
        &self,
        keys: &[K],
        opts: &CreateOptions<T>,
        creator: F,
    ) -> Result<Vec<T>, Error>
    where
        T: CacheValue,
        K: AsRef<str>,
        F: FnOnce(&[&str]) -> Vec<T>,
    {
        let exp = opts.expiration.unwrap_or(self.inner.expiration);
        let Plan { unique, skeys, order, aliases } = self.plan(keys);
        let mut ready: HashMap<&str, T> = HashMap::with_capacity(unique.len());
        let refs: Vec<&str> = order.iter().map(|&i| &*skeys[i]).collect();
        let first = self.checked_slots(refs.len(), self.inner.backend.get_multi(&refs))?;

        let mut claims: Vec<Claim<'_, T>> = Vec::new();
        let mut waited = false;
        for (&i, value) in order.iter().zip(first) {
            let (key, skey) = (unique[i], skeys[i].clone());
            let lookup = match value {
                Some(v) => self.judge_value::<T>(&skey, &v, exp, true),
                None => Lookup::Absent,
            };
            match self.claim_one(key, skey, lookup, exp, &mut waited)? {
                Ok(v) => {
                    ready.insert(key, v);
                }
                Err(claim) => claims.push(claim),
            }
        }
        // The creator gets its keys sorted by caller key.
        claims.sort_by(|a, b| a.key.cmp(b.key));

        if !claims.is_empty() {
            let to_create: Vec<&str> = claims.iter().map(|c| c.key).collect();
            let start = self.creation_start();
            let counter = PanicCounter(self);
            let created = creator(&to_create);
            std::mem::forget(counter);
            let batch = self.created_batch(&claims, &created, opts, start)?;
            if !batch.is_empty() {
                let _ = self.backend_call(self.inner.backend.set_multi(batch, self.storage_ttl(exp)));
            }
            for (claim, value) in claims.iter().zip(created) {
                ready.insert(claim.key, value);
            }
            drop(claims);
        }
        Ok(assemble(keys, ready, aliases))
    }

    /// Sorts and de-duplicates the keys of a multi-key call and orders them
    /// for locking: locks are per storage key, taken in storage-key order,
    /// once per storage key (a mangler may map several keys to one). The
    /// first caller key of a group stands for it; the others share its value.
    pub(crate) fn plan<'k, K: AsRef<str>>(&self, keys: &'k [K]) -> Plan<'k> {
        let mut unique: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
        unique.sort_unstable();
        unique.dedup();
        let skeys: Vec<Cow<'_, str>> = unique.iter().map(|k| self.storage_key(k)).collect();
        let mut order: Vec<usize> = (0..unique.len()).collect();
        order.sort_by(|&a, &b| skeys[a].cmp(&skeys[b]).then(unique[a].cmp(unique[b])));
        let mut aliases: Vec<(&str, &str)> = Vec::new();
        order.dedup_by(|later, first| {
            let same = skeys[*later] == skeys[*first];
            if same {
                aliases.push((unique[*later], unique[*first]));
            }
            same
        });
        Plan { unique, skeys, order, aliases }
    }

    /// Counts what a multi-key creator returned and encodes the values to
    /// store; a wrong number of values is an error (nothing is stored).
    pub(crate) fn created_batch<'c, T: CacheValue>(
        &self,
        claims: &'c [Claim<'_, T>],
        created: &[T],
        opts: &CreateOptions<T>,
        start: u64,
    ) -> Result<Vec<(&'c str, crate::Value)>, Error> {
        // Each key's call ran the creator: a miss (see `Stats`).
        self.inner.stats.add(Counter::Misses, claims.len() as u64);
        if created.len() != claims.len() {
            self.count(Counter::CreationErrors);
            return Err(Error::CreatorLength { expected: claims.len(), returned: created.len() });
        }
        self.inner.stats.add(Counter::Creations, created.len() as u64);
        let meta = self.stamp(Some(start));
        let mut batch = Vec::with_capacity(claims.len());
        for (claim, value) in claims.iter().zip(created) {
            if opts.accepts(value) {
                match self.encode(&claim.skey, value, meta) {
                    Ok(v) => batch.push((&*claim.skey, v)),
                    Err(e) => {
                        self.count(Counter::BackendErrors);
                        tracing::warn!(region = %self.inner.name, key = %claim.skey, error = %e, "created value not stored");
                    }
                }
            }
        }
        Ok(batch)
    }

    /// Settles one key of a multi-key call: a value to return now, or a
    /// claim (locks held) to create it. `waited` is set once the call has
    /// waited for another caller: a value that turns up after that (for
    /// this key or a later one) is counted as waited for, not as a hit.
    fn claim_one<'k, T: CacheValue>(
        &self,
        key: &'k str,
        skey: Cow<'k, str>,
        mut lookup: Lookup<T>,
        exp: crate::Expiration,
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
                    local.mark_thread();
                    return match self.try_distributed(&skey) {
                        Ok(DistOutcome::Held) | Err(_) => {
                            self.count(Counter::StaleServed);
                            Ok(Ok(stale))
                        }
                        Ok(dist) => {
                            let dist = dist.into_guard();
                            // Another process may have just regenerated it.
                            if dist.is_some()
                                && let Lookup::Fresh(v) = self.lookup::<T>(&skey, exp, false)?
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
                        handle.wait_released();
                        drop(handle);
                        *waited = true;
                        lookup = match self.lookup(&skey, exp, false)? {
                            Lookup::Fresh(v) => {
                                self.count(Counter::Waited);
                                return Ok(Ok(v));
                            }
                            other => other,
                        };
                    }
                    Ok(local) => {
                        local.mark_thread();
                        let stale = match self.lookup::<T>(&skey, exp, false)? {
                            Lookup::Fresh(v) => {
                                self.count(if *waited { Counter::Waited } else { Counter::Hits });
                                return Ok(Ok(v));
                            }
                            Lookup::Expired(v) => Some(v),
                            Lookup::Absent => None,
                        };
                        let dist = match self.wait_distributed::<T>(&skey, exp, stale.is_some(), *waited)? {
                            DistWait::Locked(d) => d,
                            DistWait::Landed(v) => return Ok(Ok(v)),
                        };
                        let _held = Held { _local: local, _dist: dist };
                        return Ok(Err(Claim { key, skey, _held, _value: std::marker::PhantomData }));
                    }
                },
            }
        }
    }
}
