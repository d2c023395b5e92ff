//! The creation lock of one key between processes: an OS advisory lock
//! (`flock` on Unix, `LockFileEx` on Windows, through fs4) on the key's
//! lock file, held by an open file.
//!
//! The OS releases it when the file is closed, by the holder or by its
//! death (even SIGKILL), so the lease needs no keep-alive and never
//! expires while its creator runs. Each open of the lock file is its own
//! lock: two regions of one process contend like two processes.
//!
//! Waiters block on the lock itself ([`Waits`]): one helper thread per key
//! takes the lock with a blocking call and lets it go at once, waking every
//! caller waiting on that key; a caller whose wait times out returns, and
//! the helper goes on waiting for the next caller.

use dogpile_core::backend::{BackendError, BoxFuture, Lease, ready};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Opens (creating) a lock file.
pub(super) fn open_lock_file(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)
}

/// Whether the lock held through `file` is still the lock at `path`: a
/// sweep removes a lock file only while holding it, so a lock taken on a
/// removed file is no lock and the caller opens the new one.
#[cfg(unix)]
pub(super) fn still_linked(file: &File, path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let held = file.metadata()?;
    match std::fs::metadata(path) {
        Ok(now) => Ok(now.dev() == held.dev() && now.ino() == held.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Elsewhere the sweep leaves lock files in place (an open file cannot be
/// removed there in general), so a lock file is never replaced.
#[cfg(not(unix))]
pub(super) fn still_linked(_: &File, _: &Path) -> io::Result<bool> {
    Ok(true)
}

/// Tries the lock at `path` once: `Some(file)` holding it, `None` when
/// another open file holds it.
pub(super) fn try_lock(path: &Path) -> io::Result<Option<File>> {
    loop {
        let file = open_lock_file(path)?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => return Ok(None),
            Err(fs4::TryLockError::Error(e)) => return Err(e),
        }
        if still_linked(&file, path)? {
            return Ok(Some(file));
        }
    }
}

/// A won lease: the open lock file, until released.
#[derive(Debug)]
pub(super) struct FileLease {
    file: Mutex<Option<File>>,
}

impl FileLease {
    pub(super) fn new(file: File) -> Self {
        FileLease { file: Mutex::new(Some(file)) }
    }
}

impl Lease for FileLease {
    fn needs_keep_alive(&self) -> bool {
        false
    }

    /// A file lock does not expire: held as long as it is not released.
    fn extend(&self, _ttl: Duration) -> BoxFuture<'_, Result<bool, BackendError>> {
        ready(Ok(lock(&self.file).is_some()))
    }

    fn release(&self) -> BoxFuture<'_, Result<bool, BackendError>> {
        let Some(file) = lock(&self.file).take() else { return ready(Ok(false)) };
        // Closing the file releases the lock too; unlocking first makes the
        // release independent of other handles to the same file.
        let unlocked = fs4::FileExt::unlock(&file);
        drop(file);
        ready(unlocked.map(|()| true).map_err(|e| BackendError::with_source("file", "cannot unlock a lock file", e)))
    }
}

impl Drop for FileLease {
    fn drop(&mut self) {
        if let Some(file) = lock(&self.file).take() {
            let _ = fs4::FileExt::unlock(&file);
        }
    }
}

/// The keys some caller waits on, each with its helper thread.
#[derive(Debug, Default)]
pub(super) struct Waits {
    slots: Mutex<HashMap<PathBuf, Arc<Slot>>>,
}

#[derive(Debug, Default)]
struct Slot {
    released: Mutex<bool>,
    cv: Condvar,
}

impl Waits {
    /// Waits until the lock at `path` is free (taken and let go by the
    /// helper), or `max`. False only when no helper thread could be
    /// started (the region then backs off instead).
    pub(super) fn wait(self: &Arc<Self>, path: &Path, max: Duration) -> bool {
        let slot = {
            let mut slots = lock(&self.slots);
            match slots.get(path) {
                Some(slot) => slot.clone(),
                None => {
                    let slot = Arc::new(Slot::default());
                    slots.insert(path.to_owned(), slot.clone());
                    let (waits, helper_path, helper_slot) = (self.clone(), path.to_owned(), slot.clone());
                    let spawned = std::thread::Builder::new()
                        .name("dogpile-file-wait".into())
                        .spawn(move || waits.helper(&helper_path, &helper_slot));
                    if spawned.is_err() {
                        // No thread to wait with: the region backs off.
                        slots.remove(path);
                        return false;
                    }
                    slot
                }
            }
        };
        let deadline = Instant::now() + max;
        let mut released = lock(&slot.released);
        while !*released {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            released = slot.cv.wait_timeout(released, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        true
    }

    /// Blocks on the lock, lets it go, wakes the slot's callers and leaves
    /// the table (a later wait starts a new helper).
    fn helper(&self, path: &Path, slot: &Arc<Slot>) {
        if let Ok(file) = open_lock_file(path)
            && fs4::FileExt::lock(&file).is_ok()
        {
            let _ = fs4::FileExt::unlock(&file);
        }
        {
            let mut slots = lock(&self.slots);
            if slots.get(path).is_some_and(|s| Arc::ptr_eq(s, slot)) {
                slots.remove(path);
            }
        }
        *lock(&slot.released) = true;
        slot.cv.notify_all();
    }
}
