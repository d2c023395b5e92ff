//! Several keys at once: planning a batch (sorted, de-duplicated, in lock
//! order), judging and counting what a multi-read returned, encoding what a
//! multi-key creator made, and assembling the result in the caller's order.
//! The multi-key APIs are in `blocking.rs` and `nonblocking.rs`: they run
//! one lock flow per key, in this plan's order.
//!
//! Taking the keys' locks in sorted order means two multi-key callers cannot
//! deadlock; every key another caller holds is waited for and read again,
//! so each missing key is created once however many callers ask for it.

use crate::error::{BackendError, Error};
use crate::held::Held;
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
pub(crate) struct Claim<'k> {
    pub(crate) key: &'k str,
    pub(crate) skey: Cow<'k, str>,
    pub(crate) held: Held,
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
        claims: &'c [Claim<'_>],
        created: &[T],
        opts: &CreateOptions<T>,
        start: u64,
    ) -> Result<Vec<(&'c str, crate::backend::Value)>, Error> {
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
}
