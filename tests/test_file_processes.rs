//! The file backend between processes: this test binary re-runs itself as
//! child processes (one test, a role in an environment variable) sharing
//! one directory. One creation across 4 processes x 8 threads, stale values
//! while one process regenerates, invalidation seen by the others, a writer
//! SIGKILLed mid-write, and a lock holder killed.

mod support_file;

use dogpile::backend::{Acquire, BlockingBackend};
use dogpile::backends::FileBackend;
use dogpile::{Invalidation, MockClock, Region};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime};
use support_file::{ChildProcess, TempDir, child_dir, read_line, role, say};

const HANG: Duration = Duration::from_secs(120);
const PROCESSES: usize = 4;
const THREADS: usize = 8;

fn region(dir: &std::path::Path, expiration: Duration) -> Region {
    Region::builder("processes")
        .backend(FileBackend::new(dir))
        .expiration(expiration)
        .invalidation_refresh(Duration::ZERO)
        .build()
}

/// In a child: 8 threads behind a barrier call `get_or_create` on one key
/// with a 200 ms creator, once the parent says go; reports its creator
/// calls and the values its threads got.
fn stampede_child(expiration: Duration) {
    let region = Arc::new(region(&child_dir(), expiration));
    say("READY");
    assert_eq!(read_line(), "go");
    let created = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (region, created, barrier) = (region.clone(), created.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                region
                    .get_or_create("stampede", || {
                        created.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(200));
                        format!("new from {}", std::process::id())
                    })
                    .unwrap()
            })
        })
        .collect();
    let values: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    say(&format!("CREATIONS {}", created.load(Ordering::SeqCst)));
    say(&format!("VALUES {}", values.join(",")));
}

/// Starts the children of `test`, lets them go together, and returns the
/// total creator calls and every value the 32 threads got.
fn run_stampede(test: &str, dir: &TempDir) -> (usize, Vec<String>) {
    let mut children: Vec<ChildProcess> =
        (0..PROCESSES).map(|_| ChildProcess::spawn(test, "stampede", dir.path())).collect();
    for child in &mut children {
        child.expect("READY");
    }
    for child in &mut children {
        child.send("go");
    }
    let mut creations = 0;
    let mut values = Vec::new();
    for child in &mut children {
        creations += child.expect("CREATIONS").parse::<usize>().unwrap();
        values.extend(child.expect("VALUES").split(',').map(str::to_owned));
    }
    for child in children {
        child.finish(HANG);
    }
    (creations, values)
}

#[test]
fn cross_process_stampede_on_a_missing_key_creates_once() {
    if role().is_some() {
        return stampede_child(Duration::from_secs(3600));
    }
    let dir = TempDir::new("missing");
    let (creations, values) = run_stampede("cross_process_stampede_on_a_missing_key_creates_once", &dir);
    assert_eq!(creations, 1, "one creation across {PROCESSES} processes x {THREADS} threads");
    assert_eq!(values.len(), PROCESSES * THREADS);
    assert!(values.iter().all(|v| *v == values[0]), "every thread got the one created value: {values:?}");
}

#[test]
fn cross_process_stampede_on_an_expired_key_serves_stale() {
    if role().is_some() {
        return stampede_child(Duration::from_millis(500));
    }
    let dir = TempDir::new("expired");
    region(dir.path(), Duration::from_millis(500)).set("stampede", "old".to_string()).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let (creations, values) = run_stampede("cross_process_stampede_on_an_expired_key_serves_stale", &dir);
    assert_eq!(creations, 1, "one regeneration across {PROCESSES} processes x {THREADS} threads");
    let stale = values.iter().filter(|v| *v == "old").count();
    assert_eq!(stale, PROCESSES * THREADS - 1, "all but the regenerating thread get the stale value: {values:?}");
}

#[test]
fn invalidation_in_one_process_is_seen_by_the_others() {
    if let Some(role) = role() {
        let r = region(&child_dir(), Duration::from_secs(3600));
        std::thread::sleep(Duration::from_millis(5)); // past the parent's creation times
        r.invalidate(if role == "hard" { Invalidation::Hard } else { Invalidation::Soft });
        say("DONE");
        return;
    }
    let test = "invalidation_in_one_process_is_seen_by_the_others";
    let dir = TempDir::new("invalidation");
    let r = region(dir.path(), Duration::from_secs(3600));
    r.set("k", 1u32).unwrap();
    let mut child = ChildProcess::spawn(test, "hard", dir.path());
    child.expect("DONE");
    child.finish(HANG);
    assert_eq!(r.get::<u32>("k").unwrap(), None, "the other process's hard invalidation");
    r.set("j", 1u32).unwrap();
    let mut child = ChildProcess::spawn(test, "soft", dir.path());
    child.expect("DONE");
    child.finish(HANG);
    assert_eq!(r.get_or_create("j", || 2u32).unwrap(), 2, "the other process's soft invalidation: regenerated");
    assert_eq!(r.get::<u32>("j").unwrap(), Some(2));
}

const BIG: usize = 4 << 20;

fn check_big(value: Option<Vec<u8>>) {
    if let Some(v) = value {
        assert_eq!(v.len(), BIG, "a whole value");
        assert!(v.iter().all(|b| *b == v[0]), "one writer's value, not torn");
    }
}

/// The temporary files in `dir`: a writer's value until it is renamed into
/// place, left behind when the writer dies before that.
fn temp_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tmp"))
        .collect()
}

/// A child writing large values again and again (under the key's lock,
/// as a creator) is SIGKILLed at random points, and in every other round
/// as soon as one of its temporary files appears, so that some kills land
/// mid-write: the rounds go on until a killed writer left its temporary
/// file behind. Readers meanwhile and afterwards get a whole value or a
/// miss, never a decode failure; the lock is free once the writer is dead;
/// the left-behind temporary files are swept once they are old enough to
/// belong to no running write.
#[test]
fn a_writer_killed_mid_write_leaves_a_whole_value_or_none() {
    if role().is_some() {
        let r = region(&child_dir(), Duration::from_secs(3600));
        for i in 1u32.. {
            if i % 2 == 1 {
                // A creator: writes under the key's lock.
                r.delete("big").unwrap();
                r.get_or_create("big", || vec![i as u8; BIG]).unwrap();
            } else {
                // An overwrite: the previous value stays readable meanwhile.
                r.set("big", vec![i as u8; BIG]).unwrap();
            }
            if i == 1 {
                say("WRITING");
            }
        }
        return;
    }
    const ROUNDS: u64 = 6;
    const MAX_ROUNDS: u64 = 60;
    let test = "a_writer_killed_mid_write_leaves_a_whole_value_or_none";
    let dir = TempDir::new("killed-writer");
    let backend = FileBackend::new(dir.path());
    let r = Region::builder("processes").backend(backend.clone()).expiration(Duration::from_secs(3600)).build();
    let (mut seen, mut killed_mid_write) = (0, 0);
    for round in 0.. {
        if round >= ROUNDS && killed_mid_write > 0 {
            break;
        }
        assert!(round < MAX_ROUNDS, "no kill landed mid-write in {MAX_ROUNDS} rounds");
        let before = temp_files(dir.path()).len();
        let mut child = ChildProcess::spawn(test, "writer", dir.path());
        child.expect("WRITING");
        // Reads for a while (the kill lands at a different point each
        // round), and until a value was seen (hang guard: 60 s; a 4 MB
        // write is slow in a debug build on a busy machine).
        let start = Instant::now();
        let until = start + Duration::from_millis(20 + round * 37 % 150);
        let mut seen_now = 0;
        while Instant::now() < until || (seen_now == 0 && start.elapsed() < HANG) {
            let v = r.get::<Vec<u8>>("big").unwrap();
            seen_now += usize::from(v.is_some());
            check_big(v);
        }
        seen += seen_now;
        if round % 2 == 1 {
            // Then kills as soon as a write is under way.
            while temp_files(dir.path()).len() == before {
                assert!(start.elapsed() < HANG, "round {round}: the writer writes no temporary file");
            }
        }
        child.kill();
        killed_mid_write += usize::from(temp_files(dir.path()).len() > before);
        check_big(r.get::<Vec<u8>>("big").unwrap());
        match backend.try_lease("big", Duration::from_secs(30)).unwrap() {
            Acquire::Won(lease) => drop(lease),
            Acquire::Held => panic!("round {round}: the dead writer's lock is still held"),
        }
    }
    assert_eq!(r.stats().decode_failures, 0);
    assert_eq!(backend.corrupt_reads(), 0);
    assert!(seen > 0, "the readers saw values");
    assert!(killed_mid_write > 0, "a kill landed between a temporary file's creation and its rename");

    let left = temp_files(dir.path()).len();
    let report = backend.sweep().unwrap();
    assert_eq!(report.temporary, 0, "a fresh temporary file may belong to a running write: {report:?}");
    assert_eq!(temp_files(dir.path()).len(), left);
    let later = MockClock::starting_at(SystemTime::now() + Duration::from_secs(11 * 60));
    let report = FileBackend::new(dir.path()).clock(later).sweep().unwrap();
    assert_eq!(report.temporary, left, "old temporary files are dead writers': {report:?}");
    assert!(temp_files(dir.path()).is_empty());
    check_big(r.get::<Vec<u8>>("big").unwrap());
}

/// A process holding a key's lock is killed: a waiter in another process
/// is woken by the OS's release, and the lock can be taken.
#[test]
fn a_killed_holders_lock_is_free() {
    if role().is_some() {
        let backend = FileBackend::new(child_dir());
        let Acquire::Won(_lease) = backend.try_lease("k", Duration::from_secs(1)).unwrap() else {
            panic!("the child takes a free lock")
        };
        say("HELD");
        let _ = read_line(); // held until killed
        return;
    }
    let dir = TempDir::new("killed-holder");
    let mut child = ChildProcess::spawn("a_killed_holders_lock_is_free", "holder", dir.path());
    child.expect("HELD");
    let backend = FileBackend::new(dir.path());
    assert!(matches!(backend.try_lease("k", Duration::from_secs(1)).unwrap(), Acquire::Held));
    let waiter = {
        let backend = backend.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            backend.wait_released("k", HANG).unwrap();
            start.elapsed()
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    assert!(!waiter.is_finished(), "the waiter blocks while the holder lives");
    child.kill();
    let waited = waiter.join().unwrap();
    assert!(waited < HANG, "woken by the holder's death");
    assert!(matches!(backend.try_lease("k", Duration::from_secs(1)).unwrap(), Acquire::Won(_)));
}
