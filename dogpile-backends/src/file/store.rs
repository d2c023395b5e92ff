//! Reading and writing value files: written to a temporary file in the
//! same directory and renamed into place, so that a reader sees the old
//! file or the new one, never part of one, even if the writer dies
//! mid-write (the temporary file is left for the sweep).

use super::Inner;
use super::format::{self, Opened};
use super::names::{self, KeyPaths};
use dogpile_core::backend::BackendError;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock nanoseconds since the Unix epoch from the system clock (for
/// unique names; times that matter come from the backend's clock).
pub(super) fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A backend error about `path`, saying what to check.
pub(super) fn error(what: &str, path: &Path, e: io::Error) -> BackendError {
    BackendError::with_source(
        "file",
        format!(
            "cannot {what} {}: {e} (the cache directory must exist or be creatable, and be readable and writable)",
            path.display()
        ),
        e,
    )
}

impl Inner {
    /// The value file of a key: `Ok(None)` when there is none or its
    /// storage time is over. A damaged file is counted and returned as an
    /// empty value, which the region counts as undecodable (a miss).
    pub(super) fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, BackendError> {
        let mut bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(error("read", path, e)),
        };
        match format::open(&mut bytes) {
            Opened::Value { expires } if expires != 0 && expires <= self.now() => Ok(None),
            Opened::Value { .. } => Ok(Some(bytes)),
            Opened::Corrupt => {
                self.corrupt.fetch_add(1, Ordering::Relaxed);
                Ok(Some(Vec::new()))
            }
        }
    }

    /// Writes a key's value: a temporary file, synced if asked, renamed
    /// over the value file.
    pub(super) fn write(
        &self,
        paths: &KeyPaths,
        mut payload: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<(), BackendError> {
        let expires =
            ttl.map_or(0, |ttl| self.now().saturating_add(u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX)).max(1));
        format::seal(&mut payload, expires);
        let len = payload.len() as u64;
        self.replace(&paths.value, &paths.temp(&self.dir), &payload)?;
        self.written.fetch_add(len, Ordering::SeqCst);
        Ok(())
    }

    /// Writes `bytes` to `temp` and renames it to `path`.
    pub(super) fn replace(&self, path: &Path, temp: &Path, bytes: &[u8]) -> Result<(), BackendError> {
        let file = match create_new(temp) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.create_dir()?;
                create_new(temp)
            }
            other => other,
        }
        .map_err(|e| error("create a file in", &self.dir, e))?;
        let written = write_all(file, bytes, self.fsync).and_then(|()| fs::rename(temp, path));
        if let Err(e) = written {
            let _ = fs::remove_file(temp);
            return Err(error("write", path, e));
        }
        if self.fsync {
            sync_dir(&self.dir).map_err(|e| error("sync", &self.dir, e))?;
        }
        Ok(())
    }

    pub(super) fn remove(&self, paths: &KeyPaths) -> Result<(), BackendError> {
        match fs::remove_file(&paths.value) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(error("remove", &paths.value, e)),
            _ => Ok(()),
        }
    }

    pub(super) fn create_dir(&self) -> Result<(), BackendError> {
        fs::create_dir_all(&self.dir).map_err(|e| error("create the directory", &self.dir, e))
    }

    pub(super) fn load_invalidation(&self, region: &str) -> Result<Option<u64>, BackendError> {
        let path = names::invalidation(&self.dir, region);
        match fs::read(&path) {
            Ok(bytes) => Ok(<[u8; 8]>::try_from(bytes.as_slice()).ok().map(u64::from_le_bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(error("read", &path, e)),
        }
    }

    pub(super) fn store_invalidation(&self, region: &str, word: u64) -> Result<(), BackendError> {
        let path = names::invalidation(&self.dir, region);
        let mut temp = path.clone().into_os_string();
        temp.push(format!(".{}.{}{}", std::process::id(), now_nanos(), names::TEMP));
        self.replace(&path, Path::new(&temp), &word.to_le_bytes())
    }
}

fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

fn write_all(mut file: File, bytes: &[u8], sync: bool) -> io::Result<()> {
    file.write_all(bytes)?;
    if sync {
        file.sync_all()?;
    }
    Ok(())
}

/// Makes a rename durable (Unix: sync the directory).
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_: &Path) -> io::Result<()> {
    Ok(())
}
