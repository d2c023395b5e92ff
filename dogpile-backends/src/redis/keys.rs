//! Where a region's keys live in Redis.
//!
//! A value is stored under `<prefix>{=<key>}` and its creation lease under
//! `<prefix>{=<key>}:lease`: the part between the first `{` and the next `}`
//! is the same in both and never empty (the `=`), so Redis Cluster puts
//! them in one hash slot (a Lua script may then touch both), whatever the
//! key. A lease key never ends with `}`, so it never collides with a value
//! key. The prefix may not contain `{` or `}` (it would decide the hash
//! tag itself). A region's last invalidation is kept under
//! `<prefix>dogpile:inv:<region>` (not `{`-wrapped: no value key starts
//! like it).

/// Builds the Redis keys of one backend (one prefix).
#[derive(Debug, Clone, Default)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`, which may not contain `{` or `}`.
    pub(crate) fn new(prefix: impl Into<String>) -> Result<Self, String> {
        let prefix = prefix.into();
        if prefix.contains(['{', '}']) {
            return Err(format!(
                "the key prefix {prefix:?} contains `{{` or `}}`: Redis Cluster would hash it instead of the key"
            ));
        }
        Ok(Self { prefix })
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key holding `key`'s value.
    pub(crate) fn value(&self, key: &str) -> String {
        let mut k = String::with_capacity(self.prefix.len() + key.len() + 2);
        k.push_str(&self.prefix);
        k.push_str("{=");
        k.push_str(key);
        k.push('}');
        k
    }

    /// The key holding `key`'s creation lease.
    pub(crate) fn lease(&self, key: &str) -> String {
        let mut k = self.value(key);
        k.push_str(":lease");
        k
    }

    /// The key holding `region`'s last invalidation.
    pub(crate) fn invalidation(&self, region: &str) -> String {
        format!("{}dogpile:inv:{region}", self.prefix)
    }
}

/// The hash tag Redis Cluster hashes for `key`: between the first `{` and
/// the next `}` when that is not empty, else the whole key.
#[cfg(test)]
fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{')
        && let Some(len) = key[open + 1..].find('}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_and_lease_share_a_hash_tag() {
        for prefix in ["", "app:"] {
            let keys = Keys::new(prefix).unwrap();
            for key in ["k", "", "}", "{", "a}b{c", "with space", "é\n", "{}"] {
                let (v, l) = (keys.value(key), keys.lease(key));
                assert_eq!(hash_tag(&v), hash_tag(&l), "prefix {prefix:?} key {key:?}");
                assert_ne!(v, l);
            }
        }
    }

    #[test]
    fn lease_keys_never_collide_with_value_keys() {
        let keys = Keys::new("p:").unwrap();
        assert!(Keys::new("a{b").is_err());
        assert_ne!(keys.lease("k"), keys.value("k}:lease"));
        assert!(keys.value("anything").ends_with('}'));
        assert!(!keys.lease("anything}").ends_with('}'));
        assert!(!keys.invalidation("r").starts_with("p:{"));
        assert_eq!(keys.value("k"), "p:{=k}");
    }
}
