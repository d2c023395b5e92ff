//! Payload codecs for byte backends.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// How a region encodes values for byte backends (Redis, memcached, files).
///
/// In-process backends store values unencoded whatever the codec.
///
/// Decoding never trusts the bytes: values nested deeper than
/// [`MAX_DEPTH`](Codec::MAX_DEPTH) levels are rejected (a miss) instead of
/// overflowing the stack, whichever codec wrote them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Codec {
    /// [postcard](https://docs.rs/postcard): compact, fast, not
    /// self-describing. The default.
    #[default]
    Postcard,
    /// JSON via serde_json: larger and slower, but readable with other tools.
    Json,
}

impl Codec {
    /// How deeply a decoded value may nest (structs, enums, options,
    /// sequences and maps inside each other). Deeper payloads fail to decode:
    /// one bad writer to a shared backend must not crash every reader.
    pub const MAX_DEPTH: usize = 128;

    pub(crate) fn id(self) -> u8 {
        match self {
            Codec::Postcard => 1,
            Codec::Json => 2,
        }
    }

    pub(crate) fn from_id(id: u8) -> Option<Codec> {
        match id {
            1 => Some(Codec::Postcard),
            2 => Some(Codec::Json),
            _ => None,
        }
    }

    /// The codec's name as used in configuration (`"postcard"`, `"json"`).
    pub fn name(self) -> &'static str {
        match self {
            Codec::Postcard => "postcard",
            Codec::Json => "json",
        }
    }

    /// Parses a codec name as used in configuration.
    pub fn from_name(name: &str) -> Option<Codec> {
        match name {
            "postcard" => Some(Codec::Postcard),
            "json" => Some(Codec::Json),
            _ => None,
        }
    }

    /// Appends the encoding of `value` to `out`.
    pub(crate) fn encode_into<T: Serialize>(self, value: &T, out: &mut Vec<u8>) -> Result<(), String> {
        match self {
            Codec::Postcard => postcard::to_io(value, &mut *out).map(|_| ()).map_err(|e| e.to_string()),
            Codec::Json => serde_json::to_writer(&mut *out, value).map_err(|e| e.to_string()),
        }
    }

    pub(crate) fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, String> {
        match self {
            Codec::Postcard => {
                let mut de = postcard::Deserializer::from_bytes(bytes);
                let value = crate::depth::deserialize_limited(&mut de, Self::MAX_DEPTH).map_err(|e| e.to_string())?;
                match de.finalize().map_err(|e| e.to_string())? {
                    [] => Ok(value),
                    rest => Err(format!("{} trailing bytes after the value", rest.len())),
                }
            }
            Codec::Json => {
                let mut de = serde_json::Deserializer::from_slice(bytes);
                let value = crate::depth::deserialize_limited(&mut de, Self::MAX_DEPTH).map_err(|e| e.to_string())?;
                de.end().map_err(|e| e.to_string())?;
                Ok(value)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_both_codecs() {
        for codec in [Codec::Postcard, Codec::Json] {
            let mut out = Vec::new();
            codec.encode_into(&("abc".to_string(), 7u64, Some(-1i32)), &mut out).unwrap();
            let back: (String, u64, Option<i32>) = codec.decode(&out).unwrap();
            assert_eq!(back, ("abc".to_string(), 7, Some(-1)));
            assert_eq!(Codec::from_id(codec.id()), Some(codec));
            assert_eq!(Codec::from_name(codec.name()), Some(codec));
        }
    }

    #[test]
    fn trailing_bytes_are_a_decode_error() {
        let mut out = Vec::new();
        Codec::Postcard.encode_into(&5u8, &mut out).unwrap();
        out.push(9);
        assert!(Codec::Postcard.decode::<u8>(&out).is_err());
    }

    /// A valid payload nested a million levels deep (one bad writer to a
    /// shared backend) used to overflow the stack of every reader.
    #[test]
    fn deeply_nested_payload_is_an_error_not_a_stack_overflow() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Tree {
            kids: Vec<Tree>,
        }
        let mut bomb = vec![1u8; 1_000_000];
        bomb.push(0);
        assert!(Codec::Postcard.decode::<Tree>(&bomb).is_err());
        let json = format!("{}{}", "{\"kids\":[".repeat(100_000), "]}".repeat(100_000));
        assert!(Codec::Json.decode::<Tree>(json.as_bytes()).is_err());
        // Within the limit, nesting is fine (each level is a struct and a
        // sequence: two of the 128).
        let mut ok = vec![1u8; 60];
        ok.push(0);
        assert!(Codec::Postcard.decode::<Tree>(&ok).is_ok());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for codec in [Codec::Postcard, Codec::Json] {
            for bytes in [&[][..], &[0xff; 3][..], b"{\"a\":"] {
                assert!(codec.decode::<(String, Vec<u64>)>(bytes).is_err());
            }
        }
    }
}
