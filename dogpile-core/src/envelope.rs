//! The byte layout of a stored value in byte backends.
//!
//! ```text
//! offset  size  field
//! 0       2     magic "dp"
//! 2       1     format version (1)
//! 3       1     codec id (1 postcard, 2 json)
//! 4       8     created, ns since the Unix epoch, little endian
//! 12      8     creation duration, ns, little endian
//! 20      ..    payload encoded by the codec
//! ```
//!
//! Anything else (short, wrong magic, unknown version or codec) is rejected
//! and the region treats it as a miss.

use crate::codec::Codec;
use crate::value::Meta;
use serde::Serialize;

const MAGIC: [u8; 2] = *b"dp";
/// The envelope format version written by this build.
pub const FORMAT_VERSION: u8 = 1;
const HEADER_LEN: usize = 20;

/// Encodes `value` with its metadata into a fresh envelope.
pub(crate) fn encode<T: Serialize>(meta: Meta, codec: Codec, value: &T) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(HEADER_LEN + 64);
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    out.push(codec.id());
    out.extend_from_slice(&meta.created_nanos.to_le_bytes());
    out.extend_from_slice(&meta.creation_nanos.to_le_bytes());
    codec.encode_into(value, &mut out)?;
    Ok(out)
}

/// Splits an envelope into its metadata, codec and payload.
pub(crate) fn decode(bytes: &[u8]) -> Result<(Meta, Codec, &[u8]), String> {
    if bytes.len() < HEADER_LEN {
        return Err(format!("{} bytes is shorter than the {HEADER_LEN}-byte header", bytes.len()));
    }
    let (header, payload) = bytes.split_at(HEADER_LEN);
    if header[0..2] != MAGIC {
        return Err("not a dogpile envelope (bad magic)".to_owned());
    }
    if header[2] != FORMAT_VERSION {
        return Err(format!("unknown format version {}", header[2]));
    }
    let codec = Codec::from_id(header[3]).ok_or_else(|| format!("unknown codec id {}", header[3]))?;
    let created_nanos = u64::from_le_bytes(header[4..12].try_into().map_err(|_| "header")?);
    let creation_nanos = u64::from_le_bytes(header[12..20].try_into().map_err(|_| "header")?);
    Ok((Meta { created_nanos, creation_nanos }, codec, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let meta = Meta { created_nanos: 42, creation_nanos: 7 };
        let bytes = encode(meta, Codec::Postcard, &"hello").unwrap();
        let (m, c, payload) = decode(&bytes).unwrap();
        assert_eq!((m, c), (meta, Codec::Postcard));
        assert_eq!(c.decode::<String>(payload).unwrap(), "hello");
    }

    #[test]
    fn rejects_short_bad_magic_version_and_codec() {
        let good = encode(Meta { created_nanos: 1, creation_nanos: 0 }, Codec::Json, &1u8).unwrap();
        assert!(decode(&good[..10]).is_err());
        let mut bad = good.clone();
        bad[0] = b'x';
        assert!(decode(&bad).is_err());
        let mut bad = good.clone();
        bad[2] = 99;
        assert!(decode(&bad).unwrap_err().contains("version 99"));
        let mut bad = good;
        bad[3] = 0;
        assert!(decode(&bad).is_err());
    }
}
