//! Cache keys built from function arguments.
//!
//! `#[cached]` turns a call into a key such as `app::users::load_user|7`:
//! the function's path, then each argument rendered by [`CacheKey`], joined
//! by `|`. The rendering is injective: two different argument lists of one
//! function never give the same key, because every character that has a
//! meaning in the format is escaped inside strings:
//!
//! | value | key form |
//! |---|---|
//! | integers, floats, `bool` | `7`, `-1.5`, `true` |
//! | `str`, `String`, `char` | the text, with ``\ | , ( ) [ ] { } = ~ "`` escaped by `\`; the empty string is `""` |
//! | `Option` | `None` is `~`; `Some(x)` is `x` (`~x` if `x` itself starts with `~`) |
//! | tuples | `(a,b)` |
//! | slices, `Vec`, arrays, `VecDeque`, `BTreeSet` | `[a,b]`, sets `{a,b}` |
//! | `BTreeMap` | `{k=v,k=v}` |
//! | references, `Box`, `Rc`, `Arc`, `Cow` | the value they point to |
//!
//! Keys never depend on `std::hash::Hash`, pointer values or the compiler:
//! they are the same in every process, build and Rust version, so processes
//! sharing a Redis or memcached backend agree on them. Hash maps are left
//! out on purpose (their iteration order differs between processes).
//!
//! ```
//! use dogpile_core::CacheKey;
//!
//! assert_eq!(7u64.to_key(), "7");
//! assert_eq!(("a b", Some(3)).to_key(), "(a b,3)");
//! assert_eq!(vec!["x,y", ""].to_key(), r#"[x\,y,""]"#);
//! assert_ne!(("a", "b").to_key(), ("a,b",).to_key());
//! ```

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

/// A value that can be part of a cache key.
///
/// Implement it with `#[derive(dogpile::CacheKey)]`, or by hand following
/// two rules so that keys stay injective:
///
/// 1. the output is never empty;
/// 2. free text goes through [`write_key_str`] (which escapes the format's
///    special characters), and anything else is built from other
///    `CacheKey` values and balanced brackets.
///
/// ```
/// use dogpile_core::{CacheKey, write_key_str};
///
/// struct Email(String);
///
/// impl CacheKey for Email {
///     fn write_key(&self, out: &mut String) {
///         write_key_str(out, &self.0.to_lowercase());
///     }
/// }
///
/// assert_eq!(Email("Ada@Example.org".into()).to_key(), "ada@example.org");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of a cache key",
    label = "`{Self}` does not implement `CacheKey`",
    note = "derive it with `#[derive(dogpile::CacheKey)]`, implement `dogpile::CacheKey` by hand, \
            or leave the argument out of the key with `#[cached(skip(name), ...)]`",
    note = "hash maps and sets are not keys (their order changes between processes): use `BTreeMap` or `BTreeSet`"
)]
pub trait CacheKey {
    /// Appends this value's key form to `out`.
    fn write_key(&self, out: &mut String);

    /// This value's key form as a new `String`.
    fn to_key(&self) -> String {
        let mut out = String::new();
        self.write_key(&mut out);
        out
    }
}

/// The characters with a meaning in the key format; [`write_key_str`]
/// escapes them with a backslash.
pub const KEY_SPECIAL_CHARS: &[char] = &['\\', '|', ',', '(', ')', '[', ']', '{', '}', '=', '~', '"'];

#[inline]
fn is_special(b: u8) -> bool {
    matches!(b, b'\\' | b'|' | b',' | b'(' | b')' | b'[' | b']' | b'{' | b'}' | b'=' | b'~' | b'"')
}

/// Appends `s` to `out` as one key component: special characters
/// ([`KEY_SPECIAL_CHARS`]) are escaped with `\`, and the empty string is
/// written as `""` so that it is never confused with no value at all.
///
/// ```
/// let mut out = String::new();
/// dogpile_core::write_key_str(&mut out, "a|b");
/// assert_eq!(out, r"a\|b");
/// ```
pub fn write_key_str(out: &mut String, s: &str) {
    if s.is_empty() {
        out.push_str("\"\"");
        return;
    }
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        // Special characters are ASCII, so byte indices are char boundaries.
        if is_special(b) {
            out.push_str(&s[start..i]);
            out.push('\\');
            out.push(b as char);
            start = i + 1;
        }
    }
    out.push_str(&s[start..]);
}

/// Appends the elements of a sequence as `open a,b,c close`.
///
/// ```
/// let mut out = String::new();
/// dogpile_core::write_key_seq(&mut out, '[', [1u8, 2].iter(), ']');
/// assert_eq!(out, "[1,2]");
/// ```
pub fn write_key_seq<'a, K, I>(out: &mut String, open: char, items: I, close: char)
where
    K: CacheKey + ?Sized + 'a,
    I: IntoIterator<Item = &'a K>,
{
    out.push(open);
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        item.write_key(out);
    }
    out.push(close);
}

/// Decimal digits by `itoa` (no `core::fmt`, no per-digit pushes: keys
/// are built on every cache hit).
#[inline]
fn write_u128(out: &mut String, n: u128) {
    match u64::try_from(n) {
        Ok(small) => write_u64(out, small),
        Err(_) => out.push_str(itoa::Buffer::new().format(n)),
    }
}

#[inline]
fn write_u64(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

macro_rules! unsigned {
    ($($t:ty),*) => {$(
        impl CacheKey for $t {
            #[inline]
            fn write_key(&self, out: &mut String) {
                write_u64(out, u64::from(*self));
            }
        }
    )*};
}
unsigned!(u8, u16, u32, u64);

macro_rules! signed {
    ($($t:ty),*) => {$(
        impl CacheKey for $t {
            #[inline]
            fn write_key(&self, out: &mut String) {
                if *self < 0 {
                    out.push('-');
                }
                write_u64(out, i64::from(*self).unsigned_abs());
            }
        }
    )*};
}
signed!(i8, i16, i32, i64);

impl CacheKey for usize {
    #[inline]
    fn write_key(&self, out: &mut String) {
        // Written as its value, so 32- and 64-bit processes agree.
        write_u128(out, *self as u128);
    }
}

impl CacheKey for isize {
    #[inline]
    fn write_key(&self, out: &mut String) {
        (*self as i128).write_key(out);
    }
}

impl CacheKey for u128 {
    fn write_key(&self, out: &mut String) {
        write_u128(out, *self);
    }
}

impl CacheKey for i128 {
    fn write_key(&self, out: &mut String) {
        if *self < 0 {
            out.push('-');
        }
        write_u128(out, self.unsigned_abs());
    }
}

macro_rules! float {
    ($($t:ty),*) => {$(
        impl CacheKey for $t {
            /// The shortest decimal form that reads back as the same value
            /// (`1.5`, `-0`, `NaN`, `inf`).
            fn write_key(&self, out: &mut String) {
                use std::fmt::Write as _;
                let _ = write!(out, "{self}");
            }
        }
    )*};
}
float!(f32, f64);

impl CacheKey for bool {
    #[inline]
    fn write_key(&self, out: &mut String) {
        out.push_str(if *self { "true" } else { "false" });
    }
}

impl CacheKey for char {
    fn write_key(&self, out: &mut String) {
        write_key_str(out, self.encode_utf8(&mut [0; 4]));
    }
}

impl CacheKey for str {
    #[inline]
    fn write_key(&self, out: &mut String) {
        write_key_str(out, self);
    }
}

impl CacheKey for String {
    #[inline]
    fn write_key(&self, out: &mut String) {
        write_key_str(out, self);
    }
}

impl CacheKey for () {
    fn write_key(&self, out: &mut String) {
        out.push_str("()");
    }
}

impl<T: CacheKey> CacheKey for Option<T> {
    fn write_key(&self, out: &mut String) {
        match self {
            None => out.push('~'),
            Some(v) => {
                let start = out.len();
                v.write_key(out);
                // `Some(None)` must differ from `None`: an inner form that
                // starts with `~` gets one more.
                if out.as_bytes().get(start) == Some(&b'~') {
                    out.insert(start, '~');
                }
            }
        }
    }
}

impl<T: CacheKey + ?Sized> CacheKey for &T {
    #[inline]
    fn write_key(&self, out: &mut String) {
        (**self).write_key(out);
    }
}

impl<T: CacheKey + ?Sized> CacheKey for &mut T {
    #[inline]
    fn write_key(&self, out: &mut String) {
        (**self).write_key(out);
    }
}

impl<T: CacheKey + ?Sized> CacheKey for Box<T> {
    #[inline]
    fn write_key(&self, out: &mut String) {
        (**self).write_key(out);
    }
}

impl<T: CacheKey + ?Sized> CacheKey for Rc<T> {
    #[inline]
    fn write_key(&self, out: &mut String) {
        (**self).write_key(out);
    }
}

impl<T: CacheKey + ?Sized> CacheKey for Arc<T> {
    #[inline]
    fn write_key(&self, out: &mut String) {
        (**self).write_key(out);
    }
}

impl<T: CacheKey + ToOwned + ?Sized> CacheKey for Cow<'_, T> {
    #[inline]
    fn write_key(&self, out: &mut String) {
        (**self).write_key(out);
    }
}

impl<T: CacheKey> CacheKey for [T] {
    fn write_key(&self, out: &mut String) {
        write_key_seq(out, '[', self, ']');
    }
}

impl<T: CacheKey, const N: usize> CacheKey for [T; N] {
    fn write_key(&self, out: &mut String) {
        write_key_seq(out, '[', self, ']');
    }
}

impl<T: CacheKey> CacheKey for Vec<T> {
    fn write_key(&self, out: &mut String) {
        write_key_seq(out, '[', self, ']');
    }
}

impl<T: CacheKey> CacheKey for VecDeque<T> {
    fn write_key(&self, out: &mut String) {
        write_key_seq(out, '[', self, ']');
    }
}

impl<T: CacheKey> CacheKey for BTreeSet<T> {
    fn write_key(&self, out: &mut String) {
        write_key_seq(out, '{', self, '}');
    }
}

impl<K: CacheKey, V: CacheKey> CacheKey for BTreeMap<K, V> {
    fn write_key(&self, out: &mut String) {
        out.push('{');
        for (i, (k, v)) in self.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            k.write_key(out);
            out.push('=');
            v.write_key(out);
        }
        out.push('}');
    }
}

macro_rules! tuple {
    ($($name:ident)+) => {
        impl<$($name: CacheKey),+> CacheKey for ($($name,)+) {
            #[allow(non_snake_case)]
            fn write_key(&self, out: &mut String) {
                let ($($name,)+) = self;
                out.push('(');
                tuple!(@each out, $($name)+);
                out.push(')');
            }
        }
    };
    (@each $out:ident, $first:ident $($rest:ident)*) => {
        $first.write_key($out);
        $( $out.push(','); $rest.write_key($out); )*
    };
}
tuple!(A);
tuple!(A B);
tuple!(A B C);
tuple!(A B C D);
tuple!(A B C D E);
tuple!(A B C D E F);
tuple!(A B C D E F G);
tuple!(A B C D E F G H);
tuple!(A B C D E F G H I);
tuple!(A B C D E F G H I J);
tuple!(A B C D E F G H I J K);
tuple!(A B C D E F G H I J K L);

#[cfg(test)]
mod tests {
    use super::*;

    fn k<T: CacheKey + ?Sized>(v: &T) -> String {
        v.to_key()
    }

    #[test]
    fn scalars() {
        assert_eq!(k(&0u8), "0");
        assert_eq!(k(&u64::MAX), "18446744073709551615");
        assert_eq!(k(&i64::MIN), "-9223372036854775808");
        assert_eq!(k(&-7i8), "-7");
        assert_eq!(k(&u128::MAX), "340282366920938463463374607431768211455");
        assert_eq!(k(&i128::MIN), "-170141183460469231731687303715884105728");
        assert_eq!(k(&usize::MAX), u64::MAX.to_string());
        assert_eq!(k(&-3isize), "-3");
        assert_eq!(k(&1.5f64), "1.5");
        assert_eq!(k(&-0.0f32), "-0");
        assert_eq!(k(&f64::NAN), "NaN");
        assert_eq!(k(&true), "true");
        assert_eq!(k(&'|'), r"\|");
        assert_eq!(k(&()), "()");
    }

    #[test]
    fn integers_match_display() {
        let mut samples: Vec<u128> = vec![0, 9, 10, 99, 100, 101, 999_999, u128::from(u64::MAX) + 1, u128::MAX];
        let mut x: u128 = 1;
        while let Some(next) = x.checked_mul(7) {
            samples.extend([x - 1, x, x + 1]);
            x = next;
        }
        for n in samples {
            assert_eq!(k(&n), n.to_string());
            if let Ok(small) = u64::try_from(n) {
                assert_eq!(k(&small), n.to_string());
                assert_eq!(k(&(small as i64)), (small as i64).to_string());
            }
        }
    }

    #[test]
    fn strings_escape_every_special_character() {
        for c in KEY_SPECIAL_CHARS {
            assert!(is_special(*c as u8));
            assert_eq!(k(&c.to_string()), format!("\\{c}"));
        }
        assert_eq!(k("plain text ünïcode"), "plain text ünïcode");
        assert_eq!(k(""), "\"\"");
        assert_eq!(k("\"\""), "\\\"\\\"");
    }

    #[test]
    fn options_nest_without_collisions() {
        let forms = [k(&None::<Option<u8>>), k(&Some(None::<u8>)), k(&Some(Some(1u8)))];
        assert_eq!(forms, ["~", "~~", "1"]);
        let triple = [k(&None::<Option<Option<u8>>>), k(&Some(None::<Option<u8>>)), k(&Some(Some(None::<u8>)))];
        assert_eq!(triple, ["~", "~~", "~~~"]);
        assert_eq!(k(&Some("~")), r"\~");
        assert_eq!(k(&Some("")), "\"\"");
    }

    #[test]
    fn compounds() {
        assert_eq!(k(&(1u8, "a", Some(2u8))), "(1,a,2)");
        assert_eq!(k(&[1u8, 2, 3][..]), "[1,2,3]");
        assert_eq!(k(&Vec::<u8>::new()), "[]");
        assert_eq!(k(&vec![String::new()]), "[\"\"]");
        let map: BTreeMap<&str, u8> = [("b", 2), ("a", 1)].into();
        assert_eq!(k(&map), "{a=1,b=2}");
        let set: BTreeSet<&str> = ["y", "x"].into();
        assert_eq!(k(&set), "{x,y}");
        assert_eq!(k(&Box::new(5u8)), "5");
        assert_eq!(k(&Arc::<str>::from("s")), "s");
        assert_eq!(k(&Cow::Borrowed("c")), "c");
        assert_eq!(k(&VecDeque::from([1u8])), "[1]");
    }

    #[test]
    fn lookalike_values_differ() {
        let pairs: Vec<(String, String)> = vec![
            (k(&("a", "b")), k(&("a,b", ""))),
            (k(&vec!["a", "b"]), k(&vec!["a,b"])),
            (k(&vec![""]), k(&Vec::<&str>::new())),
            (k(&vec![vec![1u8], vec![]]), k(&vec![vec![1u8]])),
            (k(&BTreeMap::from([("a=b", "c")])), k(&BTreeMap::from([("a", "b=c")]))),
            (k(&"a|b"), k(&"a") + "|" + &k(&"b")),
            (k(&Some("~")), k(&None::<&str>)),
        ];
        for (a, b) in pairs {
            assert_ne!(a, b);
        }
    }
}
