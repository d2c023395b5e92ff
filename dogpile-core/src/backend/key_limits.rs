//! Keys a backend cannot store as they are (memcached: at most 250 bytes,
//! no spaces or control characters), mapped by the region to keys it can.
//!
//! A backend declares its [`KeyLimits`]; the region passes every key that
//! fits through unchanged and replaces every other one, before it reaches
//! the backend's storage *and* its lock, with:
//!
//! ```text
//! dpk:<SHA-256 of the whole key, 64 lower-case hex digits>:<readable prefix>
//! ```
//!
//! The readable prefix is the start of the key with every forbidden byte
//! replaced by `_`, cut (at a character boundary) so the result fits; it is
//! only there for people reading the backend, the digest alone identifies
//! the key. The mapping is the same in every process, build and Rust
//! version (SHA-256 of the key's UTF-8 bytes). Keys that start with `dpk:`
//! are always mapped, even when they fit, so no key can pose as the mapped
//! form of another.

use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fmt::Write;

const MARKER: &str = "dpk:";
/// `dpk:` + 64 hex digits + `:`.
const DIGEST_FORM_LEN: usize = MARKER.len() + 64 + 1;

/// The keys a backend accepts (see [`Backend::key_limits`](crate::backend::Backend::key_limits)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyLimits {
    /// The longest key in bytes, counting whatever the backend adds to a key
    /// itself (a lock suffix, a prefix): at least 70.
    pub max_len: usize,
    /// Whether ASCII spaces and control bytes (below 0x20, and 0x7f) are
    /// refused.
    pub no_space_or_control: bool,
}

impl KeyLimits {
    /// Keys of at most `max_len` bytes (at least 70, the mapped form's
    /// fixed part), any bytes.
    pub const fn max_len(max_len: usize) -> Self {
        let max_len = if max_len < DIGEST_FORM_LEN { DIGEST_FORM_LEN } else { max_len };
        Self { max_len, no_space_or_control: false }
    }

    /// Also refuses spaces and control bytes.
    pub const fn no_space_or_control(mut self) -> Self {
        self.no_space_or_control = true;
        self
    }

    /// memcached's limits: 250 bytes, no spaces or control characters.
    pub const MEMCACHED: KeyLimits = KeyLimits::max_len(250).no_space_or_control();

    fn forbids(&self, b: u8) -> bool {
        self.no_space_or_control && (b <= b' ' || b == 0x7f)
    }

    fn fits(&self, key: &str) -> bool {
        key.len() <= self.max_len && !key.starts_with(MARKER) && !key.bytes().any(|b| self.forbids(b))
    }

    /// `key` itself when the backend accepts it, its mapped form otherwise.
    pub fn apply<'k>(&self, key: &'k str) -> Cow<'k, str> {
        if self.fits(key) { Cow::Borrowed(key) } else { Cow::Owned(self.map(key)) }
    }

    fn map(&self, key: &str) -> String {
        let digest = Sha256::digest(key.as_bytes());
        let mut out = String::with_capacity(self.max_len.min(DIGEST_FORM_LEN + key.len()));
        out.push_str(MARKER);
        for byte in digest {
            let _ = write!(out, "{byte:02x}");
        }
        out.push(':');
        let room = self.max_len.saturating_sub(DIGEST_FORM_LEN);
        let mut used = 0;
        for c in key.chars() {
            let forbidden = c.is_ascii() && self.forbids(c as u8);
            let len = if forbidden { 1 } else { c.len_utf8() };
            if used + len > room {
                break;
            }
            out.push(if forbidden { '_' } else { c });
            used += len;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_fit_pass_unchanged() {
        let l = KeyLimits::MEMCACHED;
        for key in ["", "a", "app::users::load|7", &"x".repeat(250), "ünïcödé"] {
            assert!(matches!(l.apply(key), Cow::Borrowed(k) if k == key), "{key}");
        }
    }

    #[test]
    fn the_mapped_form_is_stable_and_fits() {
        let l = KeyLimits::MEMCACHED;
        // SHA-256("a b") = c8687a08aa5d6ed2044328fa6a697ab8e96dc34291e8c2034ae8c38e6fcc6d65
        assert_eq!(l.apply("a b"), "dpk:c8687a08aa5d6ed2044328fa6a697ab8e96dc34291e8c2034ae8c38e6fcc6d65:a_b");
        let long = "é".repeat(500);
        let mapped = l.apply(&long);
        assert!(mapped.len() <= 250 && mapped.is_char_boundary(mapped.len()), "{}", mapped.len());
        assert!(mapped.bytes().all(|b| b > b' ' && b != 0x7f));
        for key in ["tab\there", "nl\nhere", "nul\0here", "del\x7fhere", &"k".repeat(251)] {
            let mapped = l.apply(key);
            assert!(mapped.starts_with(MARKER) && mapped.len() <= 250, "{key:?} -> {mapped}");
            assert!(!mapped.bytes().any(|b| l.forbids(b)), "{mapped}");
        }
    }

    #[test]
    fn distinct_keys_map_apart_and_no_key_can_pose_as_a_mapped_one() {
        let l = KeyLimits::max_len(80);
        let a = l.apply(&"a".repeat(100)).into_owned();
        let b = l.apply(&"a".repeat(101)).into_owned();
        assert_ne!(a, b);
        // A key spelled like `a`'s mapped form is itself mapped.
        assert_ne!(l.apply(&a), a);
        assert!(l.apply("dpk:short").starts_with("dpk:"));
        assert_ne!(l.apply("dpk:short"), "dpk:short");
    }

    #[test]
    fn a_tiny_limit_is_raised_to_the_mapped_forms_length() {
        let l = KeyLimits::max_len(10);
        assert_eq!(l.max_len, DIGEST_FORM_LEN);
        assert_eq!(l.apply(&"z".repeat(100)).len(), DIGEST_FORM_LEN);
    }
}
