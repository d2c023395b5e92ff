//! The file backend: a cache on local disk shared by the processes of one
//! machine, without a server.
//!
//! - One value file per key, named by the SHA-256 of the key (any key
//!   names one file inside the directory and nothing outside it), written
//!   to a temporary file in the same directory and renamed into place: a
//!   reader sees the old value or the new one, never part of one, even if
//!   the writer is killed mid-write. `fsync` is an option.
//! - The creation lock of each key is an OS advisory lock on a lock file
//!   beside the value file ([`lease`]): the OS releases it when its holder
//!   dies, so it needs no keep-alive, and waiters in other processes block
//!   on the lock itself, then read the value (no polling).
//! - Each region's invalidation is kept in a small file in the directory,
//!   so `invalidate` in one process reaches every process using it.
//! - A sweep removes values past their storage time (the region's
//!   expiration plus grace) and, with a size limit, the oldest values
//!   first; it runs now and then on a thread of its own, or when called.
//! - Each value file ends with a checksum: a damaged file is a miss,
//!   counted ([`FileBackend::corrupt_reads`] and the region's
//!   `decode_failures`).

mod format;
mod lease;
mod names;
mod settings;
mod store;
mod sweep;

pub use settings::FileConfig;
pub use sweep::SweepReport;

use dogpile_core::backend::{Acquire, Backend, BackendError, BlockingBackend, Value, ValueKind};
use dogpile_core::{Clock, SystemClock};
use names::KeyPaths;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// How often the sweep runs by default.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(300);

/// A cache on local disk, shared by the processes of one machine.
///
/// ```
/// use dogpile_backends::FileBackend;
/// use dogpile_core::Region;
/// # let dir = std::env::temp_dir().join(format!("dogpile-doc-{}", std::process::id()));
///
/// let region = Region::builder("pages").backend(FileBackend::new(&dir)).build();
/// assert_eq!(region.get_or_create("home", || "<html>".to_string())?, "<html>");
/// // Another process with a FileBackend on the same directory reads it too.
/// assert_eq!(region.get::<String>("home")?, Some("<html>".to_string()));
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), dogpile_core::Error>(())
/// ```
///
/// The directory is created when first needed: a directory that cannot be
/// created, read or written is an error of the region's calls, naming it.
#[derive(Clone)]
pub struct FileBackend {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    fsync: bool,
    max_bytes: Option<u64>,
    sweep_interval: Duration,
    /// The time of storage expiry and of the sweep.
    clock: Arc<dyn Clock>,
    /// When the next sweep is due (wall-clock nanoseconds; 0 until the
    /// first write).
    next_sweep: AtomicU64,
    sweeping: AtomicBool,
    /// Bytes written since the last sweep (for the size limit).
    written: AtomicU64,
    corrupt: AtomicU64,
    waits: Arc<lease::Waits>,
}

impl Inner {
    fn new(dir: PathBuf) -> Self {
        Inner {
            dir,
            fsync: false,
            max_bytes: None,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
            clock: Arc::new(SystemClock),
            next_sweep: AtomicU64::new(0),
            sweeping: AtomicBool::new(false),
            written: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
            waits: Arc::default(),
        }
    }

    /// Now, in wall-clock nanoseconds since the Unix epoch.
    fn now(&self) -> u64 {
        self.clock.now_nanos()
    }

    fn interval_nanos(&self) -> u64 {
        u64::try_from(self.sweep_interval.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether the values written since the last sweep began are over a
    /// tenth of the size limit (the sweep then runs early).
    fn over_written(&self) -> bool {
        self.max_bytes.is_some_and(|max| self.written.load(Ordering::SeqCst) > max / 10)
    }
}

impl FileBackend {
    /// A backend keeping its files in `dir` (created when first needed),
    /// without fsync, without a size limit, swept every 5 minutes.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileBackend { inner: Arc::new(Inner::new(dir.into())) }
    }

    /// Changes a setting; a backend already shared (cloned) is copied
    /// with its settings, not its state.
    fn with(mut self, f: impl FnOnce(&mut Inner)) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            f(inner);
            return self;
        }
        let old = &self.inner;
        let mut inner = Inner::new(old.dir.clone());
        (inner.fsync, inner.max_bytes, inner.sweep_interval) = (old.fsync, old.max_bytes, old.sweep_interval);
        inner.clock = old.clock.clone();
        f(&mut inner);
        FileBackend { inner: Arc::new(inner) }
    }

    /// Syncs each value file (and the directory, on Unix) before a write
    /// returns, so that a value survives a power loss, at the cost of a
    /// disk flush per write.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join("dogpile-doc-fsync");
    /// let backend = dogpile_backends::FileBackend::new(dir).fsync(true);
    /// # let _ = backend;
    /// ```
    pub fn fsync(self, fsync: bool) -> Self {
        self.with(|i| i.fsync = fsync)
    }

    /// Limits the bytes of the values in the directory: the sweep removes
    /// the oldest values (by the time they were written) until the rest fit,
    /// and runs early once a tenth of the limit was written since the last.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join("dogpile-doc-max");
    /// let backend = dogpile_backends::FileBackend::new(dir).max_bytes(64 << 20);
    /// # let _ = backend;
    /// ```
    pub fn max_bytes(self, max: u64) -> Self {
        self.with(|i| i.max_bytes = Some(max))
    }

    /// How often a write starts a sweep (in a thread of its own). Default:
    /// [`DEFAULT_SWEEP_INTERVAL`].
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join("dogpile-doc-sweep");
    /// use std::time::Duration;
    /// let backend = dogpile_backends::FileBackend::new(dir).sweep_interval(Duration::from_secs(60));
    /// # let _ = backend;
    /// ```
    pub fn sweep_interval(self, interval: Duration) -> Self {
        self.with(|i| i.sweep_interval = interval)
    }

    /// Reads time from `clock` instead of the system clock: when a stored
    /// value's storage time is over, when a sweep is due, and how old a
    /// temporary file is. Tests share a
    /// [`MockClock`](dogpile_core::MockClock) with the region, so that
    /// expiry and the sweep follow the clock they advance.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join("dogpile-doc-clock");
    /// let clock = dogpile_core::MockClock::starting_at(std::time::SystemTime::now());
    /// let backend = dogpile_backends::FileBackend::new(dir).clock(clock);
    /// # let _ = backend;
    /// ```
    pub fn clock(self, clock: Arc<dyn Clock>) -> Self {
        self.with(|i| i.clock = clock)
    }

    /// The directory holding the files.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// Sweeps now: removes values past their storage time, temporary files
    /// of dead writers (those more than 10 minutes old, which no running
    /// write still owns) and unused lock files, then the oldest values
    /// beyond the size limit.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("dogpile-doc-sweep-now-{}", std::process::id()));
    /// let backend = dogpile_backends::FileBackend::new(&dir);
    /// let report = backend.sweep()?;
    /// assert_eq!(report.values, 0);
    /// # Ok::<(), dogpile_core::backend::BackendError>(())
    /// ```
    pub fn sweep(&self) -> Result<SweepReport, BackendError> {
        self.inner.sweep().map_err(|e| store::error("sweep", &self.inner.dir, e))
    }

    /// How many value files failed their checksum when read (each was a
    /// miss).
    pub fn corrupt_reads(&self) -> u64 {
        self.inner.corrupt.load(Ordering::Relaxed)
    }

    fn paths(&self, key: &str) -> KeyPaths {
        KeyPaths::new(&self.inner.dir, key)
    }

    /// Starts a sweep in the background when one is due.
    fn maybe_sweep(&self) {
        let inner = &self.inner;
        let now = inner.now();
        let next = inner.next_sweep.load(Ordering::Relaxed);
        if next == 0 {
            // The first write schedules the first sweep.
            let _ = inner.next_sweep.compare_exchange(
                0,
                now.saturating_add(inner.interval_nanos()),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        let due = (next != 0 && now >= next) || inner.over_written();
        if !due || inner.sweeping.swap(true, Ordering::SeqCst) {
            return;
        }
        let sweeper = self.inner.clone();
        let spawned = std::thread::Builder::new().name("dogpile-file-sweep".into()).spawn(move || {
            loop {
                sweeper.next_sweep.store(sweeper.now().saturating_add(sweeper.interval_nanos()), Ordering::Relaxed);
                sweeper.written.store(0, Ordering::SeqCst);
                // A failed sweep is retried at the next interval; a call of
                // `sweep` reports its error.
                let _ = sweeper.sweep();
                sweeper.sweeping.store(false, Ordering::SeqCst);
                // Writes made meanwhile found this sweep running and started
                // none; they may have come after it listed the directory, so
                // past a tenth of the limit it sweeps again (unless a write
                // started a sweep since). SeqCst: a write adds its bytes
                // before it looks at `sweeping`, and this thread clears
                // `sweeping` before it looks at the bytes, so one of the two
                // sees the other.
                if !sweeper.over_written() || sweeper.sweeping.swap(true, Ordering::SeqCst) {
                    break;
                }
            }
        });
        if spawned.is_err() {
            inner.sweeping.store(false, Ordering::SeqCst);
        }
    }
}

impl fmt::Debug for FileBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileBackend")
            .field("path", &self.inner.dir)
            .field("fsync", &self.inner.fsync)
            .field("max_bytes", &self.inner.max_bytes)
            .field("sweep_interval", &self.inner.sweep_interval)
            .field("clock", &self.inner.clock)
            .finish()
    }
}

impl Backend for FileBackend {
    fn name(&self) -> &'static str {
        "file"
    }
    fn value_kind(&self) -> ValueKind {
        ValueKind::Bytes
    }
    fn blocking(&self) -> Option<&dyn BlockingBackend> {
        Some(self)
    }
    /// Disk I/O: async callers run it on tokio's blocking pool.
    fn never_blocks(&self) -> bool {
        false
    }
    fn issues_leases(&self) -> bool {
        true
    }
    fn shares_invalidation(&self) -> bool {
        true
    }
}

fn bytes(value: Value) -> Result<Vec<u8>, BackendError> {
    match value {
        Value::Bytes(bytes) => Ok(bytes),
        Value::Object { .. } => Err(BackendError::new("file", "the file backend stores encoded values only")),
    }
}

impl BlockingBackend for FileBackend {
    fn get(&self, key: &str) -> Result<Option<Value>, BackendError> {
        Ok(self.inner.read(&names::value_path(&self.inner.dir, key))?.map(Value::Bytes))
    }

    fn set(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<(), BackendError> {
        self.inner.write(&self.paths(key), bytes(value)?, ttl)?;
        self.maybe_sweep();
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.inner.remove(&self.paths(key))
    }

    fn try_lease(&self, key: &str, _ttl: Duration) -> Result<Acquire, BackendError> {
        let path = self.paths(key).lock;
        let held = match lease::try_lock(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.inner.create_dir()?;
                lease::try_lock(&path)
            }
            other => other,
        };
        match held.map_err(|e| store::error("lock", &path, e))? {
            Some(file) => Ok(Acquire::Won(Box::new(lease::FileLease::new(file)))),
            None => Ok(Acquire::Held),
        }
    }

    /// Blocks on the key's lock (in a helper thread shared by this
    /// backend's waiters on that key) until its holder lets it go, or
    /// `max`.
    fn wait_released(&self, key: &str, max: Duration) -> Result<bool, BackendError> {
        Ok(self.inner.waits.wait(&self.paths(key).lock, max))
    }

    fn load_invalidation(&self, region: &str) -> Result<Option<u64>, BackendError> {
        self.inner.load_invalidation(region)
    }

    fn store_invalidation(&self, region: &str, word: u64) -> Result<(), BackendError> {
        self.inner.store_invalidation(region, word)
    }
}
