//! The file backend in one process: the conformance suite (one directory,
//! each backend its own subdirectory; two backends on one directory
//! standing for two processes), keys of every shape, damaged files, the
//! sweep, a directory that cannot be used, and configuration by name.

mod conformance;
mod support_file;

use conformance::Stores;
use dogpile::backend::{Acquire, Backend, BlockingBackend, Value};
use dogpile::backends::{FileBackend, FileConfig};
use dogpile::{Error, MockClock, Region};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime};
use support_file::TempDir;

/// A backend on a fresh directory that lives as long as the test process
/// (the suite's factories return only the backend).
fn fresh() -> Arc<dyn Backend> {
    let dir = TempDir::new("conformance");
    let backend = FileBackend::new(dir.path());
    std::mem::forget(dir);
    Arc::new(backend)
}

fn fresh_pair() -> (Arc<dyn Backend>, Arc<dyn Backend>) {
    let dir = TempDir::new("pair");
    let pair: (Arc<dyn Backend>, Arc<dyn Backend>) =
        (Arc::new(FileBackend::new(dir.path())), Arc::new(FileBackend::new(dir.path())));
    std::mem::forget(dir);
    pair
}

conformance_suite!(file, Stores::Values, fresh);

// The shared checks; for `an_unextended_lease_expires` a file lock is a
// lease without keep-alive that holds while its holder lives (the OS
// releases it when the holder dies:
// `test_file_processes::a_killed_holders_lock_is_free`).
shared_suite!(file_pair, fresh_pair);

fn region(backend: &FileBackend) -> Region {
    Region::builder("file").backend(backend.clone()).expiration(Duration::from_secs(3600)).build()
}

#[test]
fn a_file_lease_needs_no_keep_alive_and_does_not_expire() {
    let dir = TempDir::new("lease");
    let (a, b) = (FileBackend::new(dir.path()), FileBackend::new(dir.path()));
    let Acquire::Won(lease) = a.try_lease("k", Duration::from_millis(1)).unwrap() else { panic!("free key") };
    assert!(!lease.needs_keep_alive());
    std::thread::sleep(Duration::from_millis(20));
    assert!(matches!(b.try_lease("k", Duration::from_secs(1)).unwrap(), Acquire::Held), "still held past its ttl");
    drop(lease);
    assert!(matches!(b.try_lease("k", Duration::from_secs(1)).unwrap(), Acquire::Won(_)), "dropping releases");
}

#[test]
fn a_waiter_is_woken_by_the_release_not_by_its_timeout() {
    let dir = TempDir::new("wake");
    let (a, b) = (FileBackend::new(dir.path()), FileBackend::new(dir.path()));
    let Acquire::Won(lease) = a.try_lease("k", Duration::from_secs(30)).unwrap() else { panic!("free key") };
    let waiter = std::thread::spawn(move || {
        let start = std::time::Instant::now();
        assert!(b.wait_released("k", Duration::from_secs(60)).unwrap());
        start.elapsed()
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(!waiter.is_finished(), "waits while the lock is held");
    let _ = futures_ready(lease.release());
    let waited = waiter.join().unwrap();
    assert!(waited < Duration::from_secs(30), "woken by the release after {waited:?}");
    // A wait with nothing held returns at once; one with a hung holder
    // returns at its limit.
    let c = FileBackend::new(dir.path());
    assert!(c.wait_released("k", Duration::from_secs(60)).unwrap());
    let Acquire::Won(_held) = a.try_lease("k", Duration::from_secs(30)).unwrap() else { panic!("free key") };
    assert!(c.wait_released("k", Duration::from_millis(50)).unwrap(), "waited out its limit");
}

fn futures_ready<T>(mut fut: dogpile::backend::BoxFuture<'_, T>) -> T {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("a file lease's futures are ready"),
    }
}

/// Keys with slashes, `..`, NUL bytes, unicode and 10 kB round trip, stay
/// apart, and every file stays inside the directory.
#[test]
fn keys_of_every_shape_round_trip_inside_the_directory() {
    let root = TempDir::new("keys");
    let backend = FileBackend::new(root.path().join("cache"));
    let r = region(&backend);
    let long = "é".repeat(5_000);
    let keys = [
        "plain",
        "a/b/c",
        "/etc/passwd",
        "../../escape",
        "..",
        ".",
        "nul\0byte",
        "日本語のキー",
        &long,
        "",
        "con",
        "a\\b",
        "trailing/",
    ];
    for (i, key) in keys.iter().enumerate() {
        r.set(key, i).unwrap();
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(r.get::<usize>(key).unwrap(), Some(i), "{key:?}");
    }
    assert_eq!(root.files(""), ["cache"], "nothing written beside the directory");
    let files = root.files("cache");
    assert!(
        files.iter().all(|f| f.len() <= 80 && f.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')),
        "{files:?}"
    );
    assert!(files.iter().all(|f| std::fs::metadata(root.path().join("cache").join(f)).unwrap().is_file()));
    assert_eq!(files.iter().filter(|f| f.ends_with(".v")).count(), keys.len());
    assert!(!root.path().parent().unwrap().join("escape").exists());
}

fn value_files(backend: &FileBackend) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(backend.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "v"))
        .collect()
}

/// A damaged value file (a flipped byte, truncated, or garbage) is a miss,
/// counted by the backend and the region, and is replaced by the next
/// creation.
#[test]
fn corrupted_files_are_counted_misses() {
    let dir = TempDir::new("corrupt");
    let backend = FileBackend::new(dir.path());
    let r = region(&backend);
    let damages: [fn(&mut Vec<u8>); 4] =
        [|b| b[3] ^= 0x40, |b| b.truncate(b.len() / 2), |b| *b = b"garbage".to_vec(), |b| b.clear()];
    for (i, damage) in damages.iter().enumerate() {
        r.set("k", format!("value {i}")).unwrap();
        let [file] = &value_files(&backend)[..] else { panic!("one value file") };
        let mut bytes = std::fs::read(file).unwrap();
        damage(&mut bytes);
        std::fs::write(file, bytes).unwrap();
        let (corrupt, failures) = (backend.corrupt_reads(), r.stats().decode_failures);
        assert_eq!(r.get::<String>("k").unwrap(), None, "damage {i}: a miss");
        assert_eq!(backend.corrupt_reads(), corrupt + 1, "damage {i}: counted by the backend");
        assert_eq!(r.stats().decode_failures, failures + 1, "damage {i}: counted by the region");
        assert_eq!(r.get_or_create("k", || "fixed".to_string()).unwrap(), "fixed");
        assert_eq!(r.get::<String>("k").unwrap().as_deref(), Some("fixed"));
    }
}

#[test]
fn the_sweep_removes_expired_values_then_the_oldest_beyond_the_limit() {
    let dir = TempDir::new("sweep");
    let backend = FileBackend::new(dir.path());
    let io = backend.blocking().unwrap();
    io.set("short", Value::Bytes(vec![1; 100]), Some(Duration::from_millis(1))).unwrap();
    io.set("forever", Value::Bytes(vec![2; 100]), None).unwrap();
    std::fs::write(dir.path().join("00.1.2.tmp"), b"a dead writer's").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert!(io.get("short").unwrap().is_none(), "past its storage time: not read");
    let report = backend.sweep().unwrap();
    assert_eq!((report.expired, report.evicted, report.values), (1, 0, 1), "{report:?}");
    assert_eq!(report.temporary, 0, "a fresh temporary file may belong to a running write");
    assert!(io.get("forever").unwrap().is_some());

    let limited = FileBackend::new(dir.path()).max_bytes(1_000);
    let io = limited.blocking().unwrap();
    for i in 0..10u8 {
        io.set(&format!("k{i}"), Value::Bytes(vec![i; 176]), None).unwrap();
        std::thread::sleep(Duration::from_millis(15)); // distinct write times
    }
    let report = limited.sweep().unwrap();
    // (Writes past a tenth of the limit start sweeps of their own too.)
    assert!(report.bytes <= 1_000, "{report:?}");
    assert!(io.get("k9").unwrap().is_some(), "the newest stays");
    assert!(io.get("k0").unwrap().is_none() && io.get("forever").unwrap().is_none(), "the oldest go first");
    // A key whose lock is held (a creator runs) is never swept.
    let Acquire::Won(_lease) = io.try_lease("k9", Duration::from_secs(30)).unwrap() else { panic!("free") };
    let tiny = FileBackend::new(dir.path()).max_bytes(1);
    let report = tiny.sweep().unwrap();
    assert!(tiny.blocking().unwrap().get("k9").unwrap().is_some(), "{report:?}");
}

/// A clock for a region and its backend alike. It starts now: the sweep
/// compares it with the files' modification times.
fn clock_from_now() -> Arc<MockClock> {
    MockClock::starting_at(SystemTime::now())
}

/// A region on `backend` reading time from `clock`, its values fresh for
/// `expiration` and stored `grace` longer.
fn clocked_region(backend: &FileBackend, clock: &Arc<MockClock>, expiration: u64, grace: u64) -> Region {
    Region::builder("file")
        .backend(backend.clone())
        .clock(clock.clone())
        .expiration(Duration::from_secs(expiration))
        .storage_grace(Duration::from_secs(grace))
        .build()
}

/// Waits until `done` holds (the sweep under test runs on a thread of its
/// own); the limit is a hang guard.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "still not so after 60 s: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Through a region: a value past its expiration is kept for the grace,
/// served stale while another creator holds the key's lock and then
/// regenerated by it; the sweep removes a value's file only once its
/// expiration plus grace is over (the regenerated value's counts from its
/// regeneration).
#[test]
fn a_value_is_kept_past_its_expiration_and_swept_once_its_grace_is_over() {
    let dir = TempDir::new("grace");
    let clock = clock_from_now();
    let backend = FileBackend::new(dir.path()).clock(clock.clone());
    let r = clocked_region(&backend, &clock, 10, 20);
    r.set("left", "old".to_string()).unwrap();
    r.set("regenerated", "old".to_string()).unwrap();
    clock.advance(Duration::from_secs(15)); // expired, within the grace
    let report = backend.sweep().unwrap();
    assert_eq!((report.expired, report.values), (0, 2), "kept during the grace: {report:?}");

    // A region on another backend (standing for another process) holds the
    // lock inside its creator; this one is served the stale value meanwhile.
    let other = clocked_region(&FileBackend::new(dir.path()).clock(clock.clone()), &clock, 10, 20);
    let (entered, inside) = mpsc::channel();
    let (go, wait) = mpsc::channel::<()>();
    let creator = std::thread::spawn(move || {
        other
            .get_or_create("regenerated", || {
                entered.send(()).unwrap();
                wait.recv().unwrap();
                "new".to_string()
            })
            .unwrap()
    });
    inside.recv_timeout(Duration::from_secs(60)).expect("the other region creates");
    let served = r.get_or_create("regenerated", || -> String { panic!("the other region holds the lock") }).unwrap();
    assert_eq!(served, "old", "the kept value is served stale");
    go.send(()).unwrap();
    assert_eq!(creator.join().unwrap(), "new");
    assert_eq!(r.get::<String>("regenerated").unwrap().as_deref(), Some("new"));

    clock.advance(Duration::from_secs(16)); // 31 s: "left" is past 10 + 20
    let report = backend.sweep().unwrap();
    assert_eq!((report.expired, report.values), (1, 1), "{report:?}");
    let [file] = &value_files(&backend)[..] else { panic!("the file of the value left alone is removed") };
    let bytes = std::fs::read(file).unwrap();
    assert!(bytes.windows(3).any(|w| w == b"new"), "the regenerated value's file is kept (stored until 45 s)");
    assert_eq!(r.get::<String>("left").unwrap(), None);

    clock.advance(Duration::from_secs(15)); // 46 s: past 15 + 10 + 20
    let report = backend.sweep().unwrap();
    assert_eq!((report.expired, report.values), (1, 0), "{report:?}");
    assert!(value_files(&backend).is_empty());
}

/// The sweep starts by itself: the first write after its interval starts
/// one (in the background), which removes the values whose storage time is
/// over.
#[test]
fn the_sweep_runs_by_itself_once_its_interval_is_over() {
    let dir = TempDir::new("interval");
    let clock = clock_from_now();
    let backend = FileBackend::new(dir.path()).clock(clock.clone()).sweep_interval(Duration::from_secs(60));
    let r = clocked_region(&backend, &clock, 1, 1);
    r.set("old", 1u32).unwrap(); // the first write: the first sweep is due in 60 s
    r.set("older", 2u32).unwrap();
    clock.advance(Duration::from_secs(61)); // both are past their storage time
    assert_eq!(value_files(&backend).len(), 2, "nothing removes files but a sweep");
    r.set("new", 3u32).unwrap();
    eventually("the sweep removed the two old values", || value_files(&backend).len() == 1);
    assert_eq!(r.get::<u32>("new").unwrap(), Some(3));
}

/// With a size limit, writes past a tenth of it start a sweep (no interval
/// needed) that removes the oldest values until the rest fit.
#[test]
fn writes_past_the_size_limit_start_a_sweep_that_removes_the_oldest_first() {
    const LIMIT: u64 = 1_000;
    let dir = TempDir::new("limit");
    let backend = FileBackend::new(dir.path()).max_bytes(LIMIT);
    let r = region(&backend);
    let keys: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        r.set(key, vec![i as u8; 200]).unwrap();
        std::thread::sleep(Duration::from_millis(15)); // distinct write times
    }
    let bytes = || value_files(&backend).iter().map(|f| std::fs::metadata(f).map_or(0, |m| m.len())).sum::<u64>();
    eventually("the values fit the limit", || bytes() <= LIMIT);
    let kept: Vec<bool> = keys.iter().map(|k| r.get::<Vec<u8>>(k).unwrap().is_some()).collect();
    assert!(kept[9], "the newest stays: {kept:?}");
    assert!(!kept[0], "the oldest went: {kept:?}");
    let first = kept.iter().position(|k| *k).unwrap();
    assert!(kept[first..].iter().all(|k| *k), "removed oldest first: {kept:?}");
    assert_eq!(value_files(&backend).len(), 10 - first);
}

#[test]
fn a_directory_that_cannot_be_created_is_an_error_naming_it() {
    let dir = TempDir::new("unusable");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let path = file.join("cache");
    let r = region(&FileBackend::new(&path));
    let err = r.get_or_create("k", || 1u32).unwrap_err();
    assert!(matches!(err, Error::Backend(_)), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&*path.to_string_lossy()), "{message}");
    assert!(r.set("k", 1u32).unwrap_err().to_string().contains(&*path.to_string_lossy()));
}

/// `/proc` exists and is a directory, but no file can be created in it,
/// not even by root (as these tests run, permissions would not stop a
/// write). Building the backend touches nothing on disk; the first write
/// or lock is the error, naming the directory.
#[cfg(target_os = "linux")]
#[test]
fn a_directory_that_cannot_be_written_is_an_error_naming_it() {
    let path = std::path::Path::new("/proc");
    assert!(path.is_dir());
    assert!(FileConfig::new(path).build().is_ok(), "nothing is checked before the first call");
    let r = region(&FileBackend::new(path));
    for err in [r.set("k", 1u32).unwrap_err(), r.get_or_create("k", || 1u32).unwrap_err()] {
        assert!(matches!(err, Error::Backend(_)), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("/proc/") || message.contains("/proc:"), "names the directory: {message}");
    }
    assert_eq!(r.get::<u32>("k").unwrap(), None, "nothing could be stored: a miss");
}

dogpile::region!(BROKEN, "file_broken_dir");
dogpile::region!(BY_NAME, "file_by_name");
#[cfg(target_os = "linux")]
dogpile::region!(UNWRITABLE, "file_unwritable_dir");

#[dogpile::cached(region = "file_broken_dir")]
fn doubled(x: u32) -> u32 {
    x * 2
}

#[cfg(target_os = "linux")]
#[dogpile::cached(region = "file_unwritable_dir")]
fn tripled(x: u32) -> u32 {
    x * 3
}

#[test]
fn cached_functions_return_their_value_on_an_unusable_directory() {
    let dir = TempDir::new("cached");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let toml = format!("[regions.file_broken_dir]\nbackend = \"file\"\npath = {:?}\n", file.join("cache"));
    dogpile::configure_from_toml(&toml).unwrap();
    assert_eq!(doubled(21), 42);
    assert_eq!(doubled(21), 42);
    assert!(BROKEN.region().unwrap().stats().backend_errors > 0);
}

/// The same on a directory that exists but takes no files (see
/// `a_directory_that_cannot_be_written_is_an_error_naming_it`).
#[cfg(target_os = "linux")]
#[test]
fn cached_functions_return_their_value_on_a_directory_that_cannot_be_written() {
    dogpile::configure_from_toml("[regions.file_unwritable_dir]\nbackend = \"file\"\npath = \"/proc\"\n").unwrap();
    assert_eq!(tripled(14), 42);
    assert_eq!(tripled(14), 42);
    assert!(UNWRITABLE.region().unwrap().stats().backend_errors > 0);
}

#[test]
fn configured_by_name() {
    let dir = TempDir::new("config");
    let toml = format!(
        "[regions.file_by_name]\nbackend = \"file\"\npath = {:?}\nfsync = true\nmax_bytes = 1_000_000\nsweep_interval_secs = 60\n",
        dir.path()
    );
    dogpile::configure_from_toml(&toml).unwrap();
    assert_eq!(BY_NAME.region().unwrap().backend_name(), "file");
    BY_NAME.set("k", "v".to_string()).unwrap();
    assert_eq!(BY_NAME.get::<String>("k").unwrap().as_deref(), Some("v"));
    assert!(!dir.files("").is_empty());
    let bad =
        dogpile::configure_from_toml("[regions.file_untouched]\nbackend = \"file\"\npath = \"/x\"\nmax_bytes = 0\n");
    assert!(bad.unwrap_err().to_string().contains("max_bytes"));
    let missing = dogpile::configure_from_toml("[regions.file_untouched]\nbackend = \"file\"\n");
    assert!(missing.unwrap_err().to_string().contains("path"));
    let _ = FileConfig::new(dir.path());
}

#[test]
fn fsync_writes_read_back() {
    let dir = TempDir::new("fsync");
    let r = region(&FileBackend::new(dir.path()).fsync(true));
    r.set("k", 7u64).unwrap();
    assert_eq!(r.get::<u64>("k").unwrap(), Some(7));
}
