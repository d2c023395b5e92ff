//! The Lua scripts of the lease: each runs atomically on the server, in one
//! round trip (sent by SHA once loaded).

use redis::Script;
use std::sync::LazyLock;

/// Takes the lease (`SET NX PX` with the owner's token) and reads the
/// value, atomically. KEYS: value, lease; ARGV: token, time to live in ms.
/// Returns `{won (0|1), value or nil}`.
pub(crate) static READ_AND_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local won = redis.call('set', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2])
local value = redis.call('get', KEYS[1])
if won then return {1, value} else return {0, value} end
",
    )
});

/// Deletes the lease if the caller still owns it, and announces it on the
/// channel named after the lease key (waiters in other processes subscribe
/// to it). KEYS: lease; ARGV: token. Returns 1 if it was released, 0 if it
/// was not ours.
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('del', KEYS[1])
  redis.call('publish', KEYS[1], '1')
  return 1
end
return 0
",
    )
});

/// Extends the lease if the caller still owns it. KEYS: lease; ARGV: token,
/// time to live in ms. Returns 1 if extended, 0 if it was not ours.
pub(crate) static EXTEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
",
    )
});

/// Keeps the larger of the stored invalidation word and the new one, so the
/// stored word only moves forward when two processes invalidate at once.
/// Words are stored as 20-digit zero-padded decimals, which Lua compares as
/// strings exactly (its numbers are doubles and would round a u64). KEYS:
/// invalidation; ARGV: the padded word.
pub(crate) static STORE_MAX: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local stored = redis.call('get', KEYS[1])
if not stored or string.len(stored) ~= 20 or stored < ARGV[1] then
  redis.call('set', KEYS[1], ARGV[1])
end
return 1
",
    )
});

/// An invalidation word as [`STORE_MAX`] stores it.
pub(crate) fn padded(word: u64) -> String {
    format!("{word:020}")
}

/// A lease owner token: unique across processes and machines in practice
/// (128 random bits), not secret.
pub(crate) fn token() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// A duration in whole milliseconds for `PX`/`PEXPIRE`, at least 1.
pub(crate) fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn padded_words_compare_like_numbers() {
        let words = [0u64, 1, 9, 10, 1 << 53, (1 << 53) + 1, u64::MAX - 1, u64::MAX];
        for a in words {
            assert_eq!(super::padded(a).len(), 20);
            assert_eq!(super::padded(a).parse::<u64>().unwrap(), a);
            for b in words {
                assert_eq!(super::padded(a) < super::padded(b), a < b, "{a} {b}");
            }
        }
    }
}
