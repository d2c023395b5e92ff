//! The layout of a value file: the envelope the region encoded, then a
//! trailer with the storage expiry, a checksum and a magic word.
//!
//! ```text
//! [ payload ... ][ expires: u64 LE ][ checksum: u64 LE ][ b"dogpile1" ]
//! ```
//!
//! `expires` is in wall-clock nanoseconds since the Unix epoch (0: never);
//! it frees storage, the region judges expiry itself from the envelope's
//! creation time. `checksum` is the first 8 bytes of the SHA-256 of the
//! payload and `expires`: a file damaged on disk is detected, not decoded.
//! The trailer sits at the end so that a read returns the file's own
//! buffer, truncated, without moving the payload.

use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"dogpile1";
/// The trailer's length.
pub(super) const TRAILER: usize = 24;

/// Appends the trailer to `payload`.
pub(super) fn seal(payload: &mut Vec<u8>, expires: u64) {
    let sum = checksum(payload, expires);
    payload.reserve(TRAILER);
    payload.extend_from_slice(&expires.to_le_bytes());
    payload.extend_from_slice(&sum.to_le_bytes());
    payload.extend_from_slice(MAGIC);
}

/// What a value file holds.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Opened {
    /// The payload (the file's buffer, trailer cut off) and its expiry.
    Value { expires: u64 },
    /// Not a value file, or damaged.
    Corrupt,
}

/// Checks `file` and cuts its trailer off in place.
pub(super) fn open(file: &mut Vec<u8>) -> Opened {
    let Some(at) = file.len().checked_sub(TRAILER) else { return Opened::Corrupt };
    let trailer = &file[at..];
    if &trailer[16..] != MAGIC {
        return Opened::Corrupt;
    }
    let expires = word(&trailer[..8]);
    let sum = word(&trailer[8..16]);
    if checksum(&file[..at], expires) != sum {
        return Opened::Corrupt;
    }
    file.truncate(at);
    Opened::Value { expires }
}

/// The expiry in a trailer read on its own (by the sweep), if it is one.
pub(super) fn expiry_of(trailer: &[u8; TRAILER]) -> Option<u64> {
    (&trailer[16..] == MAGIC).then(|| word(&trailer[..8]))
}

fn word(bytes: &[u8]) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(bytes);
    u64::from_le_bytes(w)
}

fn checksum(payload: &[u8], expires: u64) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(payload);
    hasher.update(expires.to_le_bytes());
    word(&hasher.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_to_their_payload() {
        for payload in [&b""[..], b"x", &[7; 10_000]] {
            let mut file = payload.to_vec();
            seal(&mut file, 42);
            assert_eq!(file.len(), payload.len() + TRAILER);
            let trailer: [u8; TRAILER] = file[file.len() - TRAILER..].try_into().unwrap();
            assert_eq!(expiry_of(&trailer), Some(42));
            assert_eq!(open(&mut file), Opened::Value { expires: 42 });
            assert_eq!(file, payload);
        }
    }

    #[test]
    fn damage_anywhere_is_detected() {
        let mut sealed = b"some envelope bytes".to_vec();
        seal(&mut sealed, 7);
        for i in 0..sealed.len() {
            let mut file = sealed.clone();
            file[i] ^= 0x20;
            assert_eq!(open(&mut file), Opened::Corrupt, "byte {i}");
        }
        for len in 0..sealed.len() {
            assert_eq!(open(&mut sealed[..len].to_vec()), Opened::Corrupt, "cut at {len}");
        }
    }
}
