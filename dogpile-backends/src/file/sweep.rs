//! Freeing storage: value files past their storage time (the region's
//! expiration plus grace, passed as the TTL of each write) are removed, and
//! with a size limit the oldest values go first until the directory's
//! values fit. Temporary files left by a writer that died are removed once
//! they are old enough to belong to no running write.
//!
//! An entry is removed only while its lock is held, so a running creator's
//! key is never swept; on Unix the lock file goes too (a lock taken on a
//! removed lock file is noticed and retaken on the new one, see
//! `lease::try_lock`).

use super::Inner;
use super::format::{self, TRAILER};
use super::lease;
use super::names::{INVALIDATION, LOCK, TEMP, VALUE};
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How old a temporary file must be before the sweep takes it for a dead
/// writer's.
const TEMP_AGE: Duration = Duration::from_secs(600);

/// What a sweep removed and kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepReport {
    /// Values past their storage time (or damaged beyond reading).
    pub expired: usize,
    /// Values removed, oldest first, to bring the directory under its size
    /// limit.
    pub evicted: usize,
    /// Temporary files of writers that died mid-write.
    pub temporary: usize,
    /// Lock files of keys without a value.
    pub locks: usize,
    /// The bytes of the values kept.
    pub bytes: u64,
    /// How many values are kept.
    pub values: usize,
}

struct Entry {
    stem: String,
    modified: SystemTime,
    len: u64,
}

impl Inner {
    pub(super) fn sweep(&self) -> io::Result<SweepReport> {
        let mut report = SweepReport::default();
        let now = self.now();
        let mut values = Vec::new();
        let mut locks = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(report),
            other => other?,
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            if name.ends_with(TEMP) {
                let old = entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| older_than(t, TEMP_AGE, now));
                if old && fs::remove_file(&path).is_ok() {
                    report.temporary += 1;
                }
            } else if let Some(stem) = name.strip_suffix(VALUE) {
                let Ok(meta) = entry.metadata() else { continue };
                match expiry(&path) {
                    Ok(Some(exp)) if exp == 0 || exp > now => values.push(Entry {
                        stem: stem.to_owned(),
                        modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                        len: meta.len(),
                    }),
                    // Removed by another sweep or a delete meanwhile.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    _ => {
                        if self.remove_entry(stem) {
                            report.expired += 1;
                        }
                    }
                }
            } else if let Some(stem) = name.strip_suffix(LOCK) {
                locks.push(stem.to_owned());
            } else if name.starts_with(INVALIDATION) {
                // Kept: a region's invalidation outlives its values.
            }
        }
        let kept: HashSet<&str> = values.iter().map(|e| e.stem.as_str()).collect();
        for stem in locks.iter().filter(|s| !kept.contains(s.as_str())) {
            if self.remove_lock(stem) {
                report.locks += 1;
            }
        }
        let mut total: u64 = values.iter().map(|e| e.len).sum();
        if let Some(max) = self.max_bytes.filter(|max| total > *max) {
            values.sort_by_key(|e| e.modified);
            let mut kept = Vec::with_capacity(values.len());
            for entry in values {
                if total > max && self.remove_entry(&entry.stem) {
                    total -= entry.len;
                    report.evicted += 1;
                } else {
                    kept.push(entry);
                }
            }
            values = kept;
        }
        report.bytes = total;
        report.values = values.len();
        Ok(report)
    }

    /// Removes a key's value (and lock file) holding its lock; false when
    /// a creator holds it.
    fn remove_entry(&self, stem: &str) -> bool {
        let lock_path = self.dir.join(format!("{stem}{LOCK}"));
        let Ok(Some(held)) = lease::try_lock(&lock_path) else { return false };
        let removed = fs::remove_file(self.dir.join(format!("{stem}{VALUE}"))).is_ok();
        remove_held_lock(&lock_path);
        drop(held);
        removed
    }

    fn remove_lock(&self, stem: &str) -> bool {
        let lock_path = self.dir.join(format!("{stem}{LOCK}"));
        let Ok(Some(held)) = lease::try_lock(&lock_path) else { return false };
        let removed = remove_held_lock(&lock_path);
        drop(held);
        removed
    }
}

#[cfg(unix)]
fn remove_held_lock(path: &Path) -> bool {
    fs::remove_file(path).is_ok()
}

#[cfg(not(unix))]
fn remove_held_lock(_: &Path) -> bool {
    false
}

/// The storage expiry in a value file's trailer; `Ok(None)` when it has
/// none (damaged).
fn expiry(path: &Path) -> io::Result<Option<u64>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    if len < TRAILER as u64 {
        return Ok(None);
    }
    file.seek(SeekFrom::Start(len - TRAILER as u64))?;
    let mut trailer = [0; TRAILER];
    file.read_exact(&mut trailer)?;
    Ok(format::expiry_of(&trailer))
}

/// Whether a file modified at `t` is more than `age` old at `now` (the
/// backend's clock, in nanoseconds since the Unix epoch).
fn older_than(t: SystemTime, age: Duration, now: u64) -> bool {
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    t.duration_since(UNIX_EPOCH).is_ok_and(|t| now.saturating_sub(nanos(t)) > nanos(age))
}
