//! A depth limit for serde deserialization.
//!
//! Byte backends hand us payloads we did not necessarily write: anything that
//! can reach Redis, memcached or a cache file can plant bytes there. serde
//! deserializes recursively, one native stack frame (or several) per level of
//! nesting, and postcard, our default codec, has no recursion limit of its
//! own. A valid postcard payload for `struct Tree { kids: Vec<Tree> }` made of
//! a million `1` bytes and a final `0` is a tree a million levels deep, and
//! decoding it overflows the stack, which aborts the whole process rather
//! than failing the one lookup.
//!
//! [`deserialize_limited`] closes that hole for any format. It wraps the
//! format's deserializer and every visitor, seed and access object that flows
//! between the format and the value's `Deserialize` impl, so each step into a
//! sequence, map, enum, `Some` or newtype struct goes through a check of how
//! deep we already are. The current depth travels by value inside the
//! wrappers: nothing global, nothing thread-local, so nested or concurrent
//! decodes cannot disturb one another.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};

/// Deserializes a `T` from `de`, failing with a custom error once values nest
/// deeper than `max_depth`.
///
/// The depth of a value is the number of sequences, maps, enums, `Some`s and
/// newtype structs that enclose it, counting itself if it is one of those: a
/// bare integer has depth 0, a `Vec<u8>` depth 1, a `Vec<Vec<u8>>` depth 2.
/// Structs and tuples are sequences or maps to the format, and a tuple or
/// struct variant is an enum holding a sequence or map, so it counts twice.
/// `Box` and other transparent wrappers do not count. The error is raised
/// before the format descends into the offending level, so the stack used is
/// bounded by `max_depth` whatever the input.
///
/// The error is `D::Error::custom("nesting deeper than {max_depth} levels")`.
/// Formats that drop custom messages keep only the kind: postcard reports it
/// as `postcard::Error::SerdeDeCustom`.
///
/// The check does not reach inside the format itself: a self-describing
/// format that skips unknown data with its own recursion (serde_json's
/// `deserialize_ignored_any`) is bounded by that format's own limit.
pub(crate) fn deserialize_limited<'de, T: de::Deserialize<'de>, D: Deserializer<'de>>(
    de: D,
    max_depth: usize,
) -> Result<T, D::Error> {
    T::deserialize(Limited { inner: de, depth: Depth { level: 0, max: max_depth } })
}

/// How deep the value being decoded sits, and how deep it may go.
///
/// Copied into every wrapper rather than shared, so each branch of the value
/// carries its own depth and nothing needs resetting when a branch ends.
#[derive(Debug, Clone, Copy)]
struct Depth {
    /// Enclosing levels entered so far.
    level: usize,
    /// The most levels allowed.
    max: usize,
}

impl Depth {
    /// The depth one level further in, or the limit error if that is too deep.
    fn enter<E: de::Error>(self) -> Result<Depth, E> {
        if self.level >= self.max {
            Err(E::custom(format_args!("nesting deeper than {} levels", self.max)))
        } else {
            Ok(Depth { level: self.level + 1, max: self.max })
        }
    }
}

/// A format's deserializer whose visitors are all depth-checked.
struct Limited<D> {
    inner: D,
    depth: Depth,
}

/// Forwards `Deserializer` methods to the inner deserializer, wrapping the
/// visitor. The methods differ only in their extra arguments.
macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Self::Error> {
            self.inner.$method($($arg,)* LimitedVisitor { inner: visitor, depth: self.depth })
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Limited<D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    // Types such as `IpAddr` pick their representation from this; without
    // forwarding, a binary format would be asked for the text form.
    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// A visitor that checks the depth wherever the format offers it something
/// nested, and wraps what it passes on so the check repeats one level down.
struct LimitedVisitor<V> {
    inner: V,
    depth: Depth,
}

/// Forwards leaf `Visitor` methods unchanged: a scalar nests nothing.
macro_rules! forward_visit {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for LimitedVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        let depth = self.depth.enter()?;
        self.inner.visit_some(Limited { inner: de, depth })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        let depth = self.depth.enter()?;
        self.inner.visit_newtype_struct(Limited { inner: de, depth })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let depth = self.depth.enter()?;
        self.inner.visit_seq(LimitedSeq { inner: seq, depth })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let depth = self.depth.enter()?;
        self.inner.visit_map(LimitedMap { inner: map, depth })
    }

    // The enum itself counts as a level, and its variant's contents are
    // decoded at that level (a tuple or struct variant then adds its own
    // sequence or map). Counting here rather than only in the contents means
    // even the variant tag, which a seed may decode any way it likes, runs
    // one level deeper than the enum.
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        let depth = self.depth.enter()?;
        self.inner.visit_enum(LimitedEnum { inner: data, depth })
    }
}

/// A seed whose value is decoded from a depth-checked deserializer. Every
/// nested value reaches the user's code through one of these.
struct LimitedSeed<S> {
    inner: S,
    depth: Depth,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for LimitedSeed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        self.inner.deserialize(Limited { inner: de, depth: self.depth })
    }
}

/// The elements of a sequence, each decoded at the sequence's depth.
struct LimitedSeq<A> {
    inner: A,
    depth: Depth,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for LimitedSeq<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Self::Error> {
        self.inner.next_element_seed(LimitedSeed { inner: seed, depth: self.depth })
    }

    // Collections size their allocations from this.
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// The entries of a map, keys and values each decoded at the map's depth.
struct LimitedMap<A> {
    inner: A,
    depth: Depth,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for LimitedMap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Self::Error> {
        self.inner.next_key_seed(LimitedSeed { inner: seed, depth: self.depth })
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Self::Error> {
        self.inner.next_value_seed(LimitedSeed { inner: seed, depth: self.depth })
    }

    // Forwarded rather than left to the default so a format's own pairing of
    // key and value is kept.
    fn next_entry_seed<K: DeserializeSeed<'de>, V: DeserializeSeed<'de>>(
        &mut self,
        kseed: K,
        vseed: V,
    ) -> Result<Option<(K::Value, V::Value)>, Self::Error> {
        self.inner.next_entry_seed(
            LimitedSeed { inner: kseed, depth: self.depth },
            LimitedSeed { inner: vseed, depth: self.depth },
        )
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// An enum whose variant tag and contents are decoded at the enum's depth.
struct LimitedEnum<A> {
    inner: A,
    depth: Depth,
}

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for LimitedEnum<A> {
    type Error = A::Error;
    type Variant = LimitedVariant<A::Variant>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self::Variant), Self::Error> {
        let (tag, variant) = self.inner.variant_seed(LimitedSeed { inner: seed, depth: self.depth })?;
        Ok((tag, LimitedVariant { inner: variant, depth: self.depth }))
    }
}

/// The contents of one enum variant.
struct LimitedVariant<A> {
    inner: A,
    depth: Depth,
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for LimitedVariant<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), Self::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Self::Error> {
        self.inner.newtype_variant_seed(LimitedSeed { inner: seed, depth: self.depth })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Self::Error> {
        self.inner.tuple_variant(len, LimitedVisitor { inner: visitor, depth: self.depth })
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.inner.struct_variant(fields, LimitedVisitor { inner: visitor, depth: self.depth })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::fmt::Debug;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Serialize};

    use super::*;

    const LIMIT: usize = 128;

    /// Decodes a whole postcard payload through the limiter.
    fn postcard_limited<'de, T: Deserialize<'de>>(bytes: &'de [u8], max: usize) -> postcard::Result<T> {
        let mut de = postcard::Deserializer::from_bytes(bytes);
        let value = deserialize_limited(&mut de, max)?;
        assert_eq!(de.finalize()?, &[] as &[u8], "trailing bytes");
        Ok(value)
    }

    /// Decodes a whole JSON document through the limiter.
    fn json_limited<'de, T: Deserialize<'de>>(bytes: &'de [u8], max: usize) -> serde_json::Result<T> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let value = deserialize_limited(&mut de, max)?;
        de.end()?;
        Ok(value)
    }

    /// Encodes `value` with both codecs and checks that decoding through the
    /// limiter gives the same value as decoding without it.
    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) {
        let bytes = postcard::to_stdvec(value).unwrap();
        let plain: T = postcard::from_bytes(&bytes).unwrap();
        let limited: T = postcard_limited(&bytes, LIMIT).unwrap();
        assert_eq!(limited, plain);
        assert_eq!(&limited, value);

        let text = serde_json::to_vec(value).unwrap();
        let plain: T = serde_json::from_slice(&text).unwrap();
        let limited: T = json_limited(&text, LIMIT).unwrap();
        assert_eq!(limited, plain);
        assert_eq!(&limited, value);
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Tree {
        kids: Vec<Tree>,
    }

    fn tree(depth: usize) -> Tree {
        (1..depth).fold(Tree { kids: vec![] }, |t, _| Tree { kids: vec![t] })
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum List {
        Nil,
        Cons(u8, Box<List>),
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Wrap {
        End,
        More(Box<Wrap>),
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Chain {
        next: Option<Box<Chain>>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Newtype(Option<Box<Newtype>>);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Empty,
        Circle(f64),
        Point(i32, i32),
        Rect { w: u32, h: u32, label: Option<String> },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Record {
        id: u64,
        name: String,
        tags: Vec<String>,
        shape: Shape,
        score: Option<i128>,
        flag: bool,
        initial: char,
        unit: (),
    }

    /// Bytes serialized as bytes (not a sequence), to exercise the byte paths.
    #[derive(Debug, PartialEq)]
    struct Bytes(Vec<u8>);

    impl Serialize for Bytes {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }

    impl<'de> Deserialize<'de> for Bytes {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Bytes;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                    Ok(Bytes(v.to_vec()))
                }
                // serde_json has no bytes: it writes a sequence of numbers.
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
                    let mut out = Vec::new();
                    while let Some(b) = seq.next_element()? {
                        out.push(b);
                    }
                    Ok(Bytes(out))
                }
            }
            d.deserialize_byte_buf(V)
        }
    }

    fn assert_limit_error<T: Debug>(result: postcard::Result<T>) {
        assert_eq!(result.unwrap_err(), postcard::Error::SerdeDeCustom);
    }

    #[test]
    fn depth_tree_bomb_fails_instead_of_overflowing() {
        let mut bytes = vec![1u8; 1_000_000];
        bytes.push(0);
        assert_limit_error(postcard_limited::<Tree>(&bytes, LIMIT));
    }

    #[test]
    fn depth_enum_and_option_chain_bombs_fail_instead_of_overflowing() {
        let mut list = [1u8, 7].repeat(1_000_000);
        list.push(0);
        assert_limit_error(postcard_limited::<List>(&list, LIMIT));
        let mut bytes = vec![1u8; 1_000_000];
        bytes.push(0);
        assert_limit_error(postcard_limited::<Wrap>(&bytes, LIMIT));
        assert_limit_error(postcard_limited::<Chain>(&bytes, LIMIT));
        assert_limit_error(postcard_limited::<Newtype>(&bytes, LIMIT));
        assert_limit_error(postcard_limited::<Option<Box<Newtype>>>(&bytes, LIMIT));
    }

    #[test]
    fn depth_tree_within_limit_round_trips() {
        round_trip(&tree(50));
    }

    #[test]
    fn depth_tree_beyond_limit_fails() {
        let value = tree(200);
        let bytes = postcard::to_stdvec(&value).unwrap();
        assert_eq!(postcard::from_bytes::<Tree>(&bytes).unwrap(), value);
        assert_limit_error(postcard_limited::<Tree>(&bytes, LIMIT));
    }

    #[test]
    fn depth_chains_within_limit_round_trip() {
        let list = (0..20).fold(List::Nil, |l, i| List::Cons(i, Box::new(l)));
        round_trip(&list);
        let wrap = (0..20).fold(Wrap::End, |w, _| Wrap::More(Box::new(w)));
        round_trip(&wrap);
        let chain = (0..20).fold(Chain { next: None }, |c, _| Chain { next: Some(Box::new(c)) });
        round_trip(&chain);
        // JSON writes `Some` and newtypes transparently, so this chain reads
        // back from JSON as `Newtype(None)`, limiter or not: postcard only.
        let newtype = (0..20).fold(Newtype(None), |n, _| Newtype(Some(Box::new(n))));
        let bytes = postcard::to_stdvec(&newtype).unwrap();
        assert_eq!(postcard_limited::<Newtype>(&bytes, LIMIT).unwrap(), newtype);
    }

    #[test]
    fn depth_json_error_names_the_limit() {
        // Below serde_json's own limit of 128, so the error is ours.
        let text = serde_json::to_vec(&tree(30)).unwrap();
        let err = json_limited::<Tree>(&text, 20).unwrap_err();
        assert!(err.to_string().contains("nesting deeper than 20 levels"), "{err}");
    }

    #[test]
    fn depth_counts_each_container_level() {
        let nested = postcard::to_stdvec(&vec![vec![1u8, 2], vec![3]]).unwrap();
        assert_limit_error(postcard_limited::<Vec<Vec<u8>>>(&nested, 1));
        assert_eq!(postcard_limited::<Vec<Vec<u8>>>(&nested, 2).unwrap(), vec![vec![1, 2], vec![3]]);
        let scalar = postcard::to_stdvec(&7u32).unwrap();
        assert_eq!(postcard_limited::<u32>(&scalar, 0).unwrap(), 7);
        let some = postcard::to_stdvec(&Some(7u32)).unwrap();
        assert_limit_error(postcard_limited::<Option<u32>>(&some, 0));
        assert_eq!(postcard_limited::<Option<u32>>(&some, 1).unwrap(), Some(7));
        let none = postcard::to_stdvec(&None::<u32>).unwrap();
        assert_eq!(postcard_limited::<Option<u32>>(&none, 0).unwrap(), None);
        // A struct is a sequence to postcard, so each `Tree` is two levels
        // (the struct and its `Vec`): 64 fit in 128, 65 do not.
        let fits = postcard::to_stdvec(&tree(64)).unwrap();
        assert_eq!(postcard_limited::<Tree>(&fits, 128).unwrap(), tree(64));
        let over = postcard::to_stdvec(&tree(65)).unwrap();
        assert_limit_error(postcard_limited::<Tree>(&over, 128));
        // A tuple variant is an enum holding a sequence: two levels.
        let point = postcard::to_stdvec(&Shape::Point(1, 2)).unwrap();
        assert_limit_error(postcard_limited::<Shape>(&point, 1));
        assert_eq!(postcard_limited::<Shape>(&point, 2).unwrap(), Shape::Point(1, 2));
    }

    #[test]
    fn depth_ordinary_values_round_trip() {
        round_trip(&Record {
            id: 42,
            name: "answer".into(),
            tags: vec!["a".into(), "b".into()],
            shape: Shape::Rect { w: 3, h: 4, label: Some("box".into()) },
            score: Some(-1 << 100),
            flag: true,
            initial: 'é',
            unit: (),
        });
        for shape in [Shape::Empty, Shape::Circle(1.5), Shape::Point(-1, 2), Shape::Rect { w: 1, h: 2, label: None }] {
            round_trip(&shape);
        }
        round_trip(&Some(5u8));
        round_trip(&None::<String>);
        round_trip(&vec![vec![1u8, 2, 3], vec![], vec![255]]);
        round_trip(&HashMap::from([("x".to_string(), vec![1u32, 2]), ("y".to_string(), vec![])]));
        round_trip(&(1u8, -2i64, 3.25f32, "four".to_string(), [5u16; 3]));
        round_trip(&"a string with \"quotes\" and ünïcode".to_string());
        round_trip(&Bytes(vec![0, 1, 2, 254, 255]));
        round_trip(&u128::MAX);
    }

    #[test]
    fn depth_forwards_is_human_readable() {
        // These pick text or binary layouts from `is_human_readable`; the
        // wrong answer makes the postcard decode fail or differ.
        round_trip(&IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        round_trip(&IpAddr::V6(Ipv6Addr::LOCALHOST));
        round_trip(&SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080));
    }

    #[test]
    fn depth_borrows_from_the_input() {
        let bytes = postcard::to_stdvec(&("text", Bytes(vec![1, 2, 3]))).unwrap();
        let (s, b): (&str, &[u8]) = postcard_limited(&bytes, LIMIT).unwrap();
        assert_eq!((s, b), ("text", &[1u8, 2, 3][..]));
        let text = br#"["text",{"k":"v"}]"#;
        let (s, m): (&str, HashMap<&str, &str>) = json_limited(text, LIMIT).unwrap();
        assert_eq!((s, m), ("text", HashMap::from([("k", "v")])));
    }

    #[test]
    fn depth_forwards_size_hints() {
        /// Records the size hint the sequence reports.
        struct Hint(Option<usize>);
        impl<'de> Deserialize<'de> for Hint {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = Hint;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a sequence")
                    }
                    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Hint, A::Error> {
                        let hint = seq.size_hint();
                        while seq.next_element::<u8>()?.is_some() {}
                        Ok(Hint(hint))
                    }
                }
                d.deserialize_seq(V)
            }
        }
        let bytes = postcard::to_stdvec(&vec![1u8, 2, 3]).unwrap();
        assert_eq!(postcard_limited::<Hint>(&bytes, LIMIT).unwrap().0, Some(3));
    }
}
