//! The byte layout of a stored value in byte backends.
//!
//! ```text
//! offset  size  field
//! 0       2     magic "dp"
//! 2       1     format version (2)
//! 3       1     codec id (1 postcard, 2 json)
//! 4       8     created, ns since the Unix epoch, little endian
//! 12      8     creation duration, ns, little endian
//! 20      8     fingerprint of the value's type, little endian
//! 28      4     the region's value version, little endian
//! 32      ..    payload encoded by the codec
//! ```
//!
//! Anything else (short, wrong magic, unknown version or codec) is rejected
//! and the region treats it as a miss; so is an envelope whose fingerprint
//! or value version is not the reader's, before its payload is decoded.
//!
//! The fingerprint is a 64-bit FNV-1a hash of the type's name as
//! [`std::any::type_name`] spells it (`alloc::string::String`,
//! `my_app::User`). It tells apart two types stored under one key (two
//! functions sharing a name, a value read back as the wrong type) without
//! trusting the payload. It cannot see a change *inside* a type that keeps
//! its name (a field added in a rolling deploy): that is what the region's
//! value version is for. A compiler that spells a type name differently
//! changes the fingerprint, which turns old values into misses, never into
//! wrong values.

use crate::codec::Codec;
use crate::value::Meta;
use serde::Serialize;

const MAGIC: [u8; 2] = *b"dp";
/// The envelope format version written by this build.
pub const FORMAT_VERSION: u8 = 2;
const HEADER_LEN: usize = 32;

/// Who may read an envelope: the value's type and the region's value
/// version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) fingerprint: u64,
    pub(crate) version: u32,
}

impl Identity {
    /// The identity of values of type `T` under value version `version`.
    pub(crate) fn of<T: ?Sized>(version: u32) -> Self {
        Self { fingerprint: fingerprint(std::any::type_name::<T>()), version }
    }
}

/// 64-bit FNV-1a: stable across processes, builds and Rust versions.
fn fingerprint(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Encodes `value` with its metadata into a fresh envelope.
pub(crate) fn encode<T: Serialize>(meta: Meta, codec: Codec, id: Identity, value: &T) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(HEADER_LEN + 64);
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    out.push(codec.id());
    out.extend_from_slice(&meta.created_nanos.to_le_bytes());
    out.extend_from_slice(&meta.creation_nanos.to_le_bytes());
    out.extend_from_slice(&id.fingerprint.to_le_bytes());
    out.extend_from_slice(&id.version.to_le_bytes());
    codec.encode_into(value, &mut out)?;
    Ok(out)
}

/// Splits an envelope into its metadata, codec and payload, checking that
/// it was written for `id`.
pub(crate) fn decode(bytes: &[u8], id: Identity) -> Result<(Meta, Codec, &[u8]), String> {
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
    let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    let fingerprint = word(20);
    if fingerprint != id.fingerprint {
        return Err(format!(
            "stored for another type (fingerprint {fingerprint:016x}, expected {:016x})",
            id.fingerprint
        ));
    }
    let version = u32::from_le_bytes(header[28..32].try_into().expect("4 bytes"));
    if version != id.version {
        return Err(format!("stored under value version {version}, this region reads version {}", id.version));
    }
    Ok((Meta { created_nanos: word(4), creation_nanos: word(12) }, codec, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: Identity = Identity { fingerprint: 0x1234, version: 0 };

    #[test]
    fn round_trip() {
        let meta = Meta { created_nanos: 42, creation_nanos: 7 };
        let bytes = encode(meta, Codec::Postcard, ID, &"hello").unwrap();
        let (m, c, payload) = decode(&bytes, ID).unwrap();
        assert_eq!((m, c), (meta, Codec::Postcard));
        assert_eq!(c.decode::<String>(payload).unwrap(), "hello");
    }

    #[test]
    fn rejects_short_bad_magic_version_and_codec() {
        let good = encode(Meta { created_nanos: 1, creation_nanos: 0 }, Codec::Json, ID, &1u8).unwrap();
        assert!(decode(&good[..10], ID).is_err());
        let mut bad = good.clone();
        bad[0] = b'x';
        assert!(decode(&bad, ID).is_err());
        let mut bad = good.clone();
        bad[2] = 99;
        assert!(decode(&bad, ID).unwrap_err().contains("version 99"));
        let mut bad = good;
        bad[3] = 0;
        assert!(decode(&bad, ID).is_err());
    }

    #[test]
    fn rejects_another_type_or_value_version() {
        let bytes = encode(Meta { created_nanos: 1, creation_nanos: 0 }, Codec::Postcard, ID, &1u8).unwrap();
        let other_type = Identity { fingerprint: 0x4321, ..ID };
        assert!(decode(&bytes, other_type).unwrap_err().contains("another type"));
        let other_version = Identity { version: 3, ..ID };
        assert!(decode(&bytes, other_version).unwrap_err().contains("value version 0"));
    }

    #[test]
    fn fingerprints_are_stable_and_tell_types_apart() {
        // FNV-1a 64 of "" and "a" (the published test values), so a build
        // that changed the hash would fail here, not in production.
        assert_eq!(fingerprint(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fingerprint("a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(Identity::of::<String>(0), Identity::of::<u64>(0));
        assert_ne!(Identity::of::<Vec<u8>>(0), Identity::of::<Vec<i8>>(0));
        assert_eq!(Identity::of::<String>(1), Identity::of::<String>(1));
    }
}
