//! File names: a stable digest of the key, so that any key (slashes, `..`,
//! NUL bytes, 10 kB of unicode) names one file inside the directory and
//! nothing outside it.

use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The suffix of value files.
pub(super) const VALUE: &str = ".v";
/// The suffix of lock files (next to the value file of the same key).
pub(super) const LOCK: &str = ".lock";
/// The suffix of temporary files, renamed into place when complete.
pub(super) const TEMP: &str = ".tmp";
/// The prefix of the files keeping a region's shared invalidation.
pub(super) const INVALIDATION: &str = "invalidation-";

/// The lowercase hex SHA-256 of `parts`, one after the other.
pub(super) fn digest(parts: &[&[u8]]) -> String {
    let hex = hex_digest(parts);
    String::from_utf8_lossy(&hex).into_owned()
}

/// The same digest, on the stack.
fn hex_digest(parts: &[&[u8]]) -> [u8; 64] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    let mut out = [0; 64];
    for (pair, byte) in out.chunks_exact_mut(2).zip(hasher.finalize()) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
    out
}

/// The value file of `key` alone, built with one allocation (a read needs
/// no more).
pub(super) fn value_path(dir: &Path, key: &str) -> PathBuf {
    let hex = hex_digest(&[b"key\0", key.as_bytes()]);
    let mut path = OsString::with_capacity(dir.as_os_str().len() + 1 + hex.len() + VALUE.len());
    path.push(dir.as_os_str());
    path.push(std::path::MAIN_SEPARATOR_STR);
    path.push(std::str::from_utf8(&hex).unwrap_or_default());
    path.push(VALUE);
    PathBuf::from(path)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The paths of one key's files: its value and its lock, side by side.
#[derive(Debug)]
pub(super) struct KeyPaths {
    /// The hex digest naming both.
    pub(super) stem: String,
    pub(super) value: PathBuf,
    pub(super) lock: PathBuf,
}

impl KeyPaths {
    pub(super) fn new(dir: &Path, key: &str) -> Self {
        let stem = digest(&[b"key\0", key.as_bytes()]);
        KeyPaths { value: dir.join(format!("{stem}{VALUE}")), lock: dir.join(format!("{stem}{LOCK}")), stem }
    }

    /// A fresh temporary file name for a new value of this key, unique to
    /// this process and call.
    pub(super) fn temp(&self, dir: &Path) -> PathBuf {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        dir.join(format!("{}.{}.{n}{TEMP}", self.stem, std::process::id()))
    }
}

/// The file keeping the shared invalidation of `region`.
pub(super) fn invalidation(dir: &Path, region: &str) -> PathBuf {
    dir.join(format!("{INVALIDATION}{}", digest(&[b"region\0", region.as_bytes()])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_hex_digests() {
        let p = KeyPaths::new(Path::new("/d"), "k");
        assert_eq!(p.stem.len(), 64);
        assert!(p.stem.bytes().all(|b| b.is_ascii_hexdigit()));
        // Fixed forever: another build or process must find the same file.
        assert_eq!(&p.stem[..16], &digest(&[b"key\0k"])[..16]);
        assert_eq!(p.value, Path::new("/d").join(format!("{}.v", p.stem)));
        assert_eq!(p.lock, Path::new("/d").join(format!("{}.lock", p.stem)));
        assert_ne!(KeyPaths::new(Path::new("/d"), "k2").stem, p.stem);
    }

    #[test]
    fn the_value_path_alone_is_the_same() {
        let dir = Path::new("/some/dir");
        assert_eq!(value_path(dir, "k/../é\0"), KeyPaths::new(dir, "k/../é\0").value);
    }

    #[test]
    fn digest_of_empty_input_is_sha256() {
        assert_eq!(digest(&[]), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
