//! File-backend benchmarks (issue 10): W1, W3, W4 and W6 of DESIGN §7 on
//! `FileBackend`, with a plain `std::fs::read` of a same-size file as the
//! floor of W1.
//!
//! - `file_w1_hit/fs_read`: `std::fs::read` of one of 1,000 files of the
//!   size of a stored value (the floor; target: dogpile <= 1.3x it).
//! - `file_w1_hit/dogpile_string`, `dogpile_arc_str`: `get_or_create` on
//!   1,000 prefilled fresh keys, 64-byte values as `String` and `Arc<str>`.
//!
//! W1 visits its 1,000 keys (and the floor its 1,000 files) in one fixed
//! pseudo-random order, the permutation the memory W1 uses.
//! - W3 (custom rounds): 64 threads, one missing key, 100 ms creator:
//!   creator calls and wall time until all have a value.
//! - W4 (custom rounds): the key's value just expired; 64 threads: creator
//!   calls, latency of the 63 others, and whether they got the stale value.
//! - W6 (custom rounds): 4 processes (this binary re-run) x 8 threads, one
//!   missing key, 200 ms creator: creator calls overall, wall time.
//!
//! `cargo bench -p dogpile-benches --bench file`; under `cargo test` each
//! custom workload runs one round.

#[path = "shared/order.rs"]
mod order;

use criterion::Criterion;
use dogpile::Region;
use dogpile::backends::FileBackend;
use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const KEYS: u64 = 1_000;
const THREADS: usize = 64;
const PROCESSES: usize = 4;
const PROCESS_THREADS: usize = 8;
const ROLE: &str = "DOGPILE_FILE_BENCH_ROLE";
const HOUR: Duration = Duration::from_secs(3600);

fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn rounds() -> usize {
    if bench_mode() { 15 } else { 1 }
}

/// A scratch directory under the system's temporary directory.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dogpile-file-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn value_for(k: u64) -> String {
    format!("{k:064}")
}

fn key_str(k: u64) -> String {
    format!("bench::value|{k}")
}

/// The order in which W1 visits the keys (the permutation of the memory
/// benchmarks), so that a read does not follow the order the files were
/// written in.
fn visit_order() -> Vec<usize> {
    order::permutation(KEYS, order::SEED).into_iter().map(|k| k as usize).collect()
}

fn region(dir: &Path, expiration: Duration) -> Region {
    Region::builder("bench").backend(FileBackend::new(dir)).expiration(expiration).build()
}

fn w1(c: &mut Criterion) {
    let dir = scratch("w1");
    let strings = region(&dir.join("string"), HOUR);
    let arcs = region(&dir.join("arc"), HOUR);
    let keys: Vec<String> = (0..KEYS).map(key_str).collect();
    for (k, key) in keys.iter().enumerate() {
        strings.set(key, value_for(k as u64)).unwrap();
        arcs.set(key, Arc::<str>::from(value_for(k as u64))).unwrap();
    }
    // The floor: files of the very size of a stored value, read whole.
    let size = std::fs::read_dir(dir.join("string")).unwrap().next().unwrap().unwrap().metadata().unwrap().len();
    let plain = dir.join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let plain_files: Vec<PathBuf> = (0..KEYS).map(|k| plain.join(format!("{k:064}.v"))).collect();
    for f in &plain_files {
        std::fs::write(f, vec![b'x'; size as usize]).unwrap();
    }
    println!("W1: value files of {size} bytes (64-byte value, envelope and trailer)");
    let order = visit_order();
    if let Ok(spec) = std::env::var("DOGPILE_BENCH_PROFILE") {
        // `w1:<fs_read|dogpile_string|dogpile_arc_str>:<calls>`: that loop
        // alone, for callgrind (run twice with different counts and take
        // the difference per call, which leaves the set-up out).
        let mut parts = spec.split(':').skip(1);
        let (which, calls) =
            (parts.next().unwrap_or("dogpile_string"), parts.next().map_or(10_000, |n| n.parse().unwrap()));
        for i in 0..calls {
            let i = order[i % KEYS as usize];
            match which {
                "fs_read" => drop(black_box(std::fs::read(&plain_files[i]).unwrap())),
                "dogpile_string" => drop(black_box(strings.get_or_create(&keys[i], || value_for(i as u64)).unwrap())),
                _ => drop(black_box(arcs.get_or_create(&keys[i], || Arc::<str>::from(value_for(i as u64))).unwrap())),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }

    let mut g = c.benchmark_group("file_w1_hit");
    let next = AtomicU64::new(0);
    let pick = || order[(next.fetch_add(1, Ordering::Relaxed) % KEYS) as usize];
    g.bench_function("fs_read", |b| b.iter(|| black_box(std::fs::read(&plain_files[pick()]).unwrap())));
    g.bench_function("dogpile_string", |b| {
        b.iter(|| {
            let i = pick();
            black_box(strings.get_or_create(&keys[i], || value_for(i as u64)).unwrap())
        })
    });
    g.bench_function("dogpile_arc_str", |b| {
        b.iter(|| {
            let i = pick();
            black_box(arcs.get_or_create(&keys[i], || Arc::<str>::from(value_for(i as u64))).unwrap())
        })
    });
    g.finish();

    // Interleaved: the three in turn, round after round, so that load from
    // elsewhere hits them alike; per-round ratios to the floor.
    let batch = if bench_mode() { 20_000 } else { 100 };
    let time = |f: &dyn Fn(usize)| {
        let start = Instant::now();
        for i in 0..batch {
            f(order[i % KEYS as usize]);
        }
        start.elapsed() / batch as u32
    };
    let (mut floor, mut string, mut arc, mut r_string, mut r_arc) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..rounds() * 2 {
        let f = time(&|i| drop(black_box(std::fs::read(&plain_files[i]).unwrap())));
        let s = time(&|i| drop(black_box(strings.get_or_create(&keys[i], || value_for(i as u64)).unwrap())));
        let a =
            time(&|i| drop(black_box(arcs.get_or_create(&keys[i], || Arc::<str>::from(value_for(i as u64))).unwrap())));
        r_string.push(s.as_secs_f64() / f.as_secs_f64());
        r_arc.push(a.as_secs_f64() / f.as_secs_f64());
        floor.push(f);
        string.push(s);
        arc.push(a);
    }
    let mid = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "W1 interleaved ({} rounds of {batch} calls): fs_read {:?}, dogpile String {:?} ({:.2}x), Arc<str> {:?} ({:.2}x) (medians; ratio: median of per-round ratios)",
        floor.len(),
        median(&mut floor),
        median(&mut string),
        mid(&mut r_string),
        median(&mut arc),
        mid(&mut r_arc),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// 64 threads behind a barrier call `get_or_create` on `key`; returns the
/// creator calls, each thread's latency and value, and the wall time.
fn stampede(region: &Arc<Region>, key: &str, creator_sleep: Duration) -> (usize, Vec<(Duration, String)>, Duration) {
    let created = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(THREADS + 1));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (region, created, barrier, key) = (region.clone(), created.clone(), barrier.clone(), key.to_owned());
            std::thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                let v = region
                    .get_or_create(&key, || {
                        created.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(creator_sleep);
                        "new".to_string()
                    })
                    .unwrap();
                (start.elapsed(), v)
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    (created.load(Ordering::SeqCst), results, start.elapsed())
}

fn w3() {
    let dir = scratch("w3");
    let region = Arc::new(region(&dir, HOUR));
    let (mut creators, mut walls) = (Vec::new(), Vec::new());
    for round in 0..rounds() {
        let (c, _, wall) = stampede(&region, &format!("w3-{round}"), Duration::from_millis(100));
        creators.push(c);
        walls.push(wall);
    }
    println!(
        "W3 cold stampede ({THREADS} threads, 100 ms creator): creator calls min {} max {}, wall median {:?} (ideal 100 ms), {} rounds",
        creators.iter().min().unwrap(),
        creators.iter().max().unwrap(),
        median(&mut walls),
        walls.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn w4() {
    let dir = scratch("w4");
    let region = Arc::new(region(&dir, Duration::from_millis(50)));
    let (mut creators, mut others, mut stale) = (Vec::new(), Vec::new(), 0);
    for round in 0..rounds() {
        let key = format!("w4-{round}");
        region.set(&key, "old".to_string()).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        let (c, results, _) = stampede(&region, &key, Duration::from_millis(100));
        creators.push(c);
        for (latency, v) in results {
            if v == "old" {
                stale += 1;
                others.push(latency);
            }
        }
    }
    let n = others.len();
    let med = median(&mut others);
    let p99 = others[(n * 99 / 100).min(n - 1)];
    println!(
        "W4 expired stampede ({THREADS} threads): creator calls max {}, stale served {stale} of {} others, others' latency median {med:?} p99 {p99:?}",
        creators.iter().max().unwrap(),
        rounds() * (THREADS - 1),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A W6 child: 8 threads on the shared directory once told to go.
fn w6_child(dir: &Path, key: &str) {
    let region = Arc::new(region(dir, HOUR));
    let created = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(PROCESS_THREADS));
    let mut line = String::new();
    println!("READY");
    std::io::stdin().read_line(&mut line).unwrap();
    let threads: Vec<_> = (0..PROCESS_THREADS)
        .map(|_| {
            let (region, created, barrier, key) = (region.clone(), created.clone(), barrier.clone(), key.to_owned());
            std::thread::spawn(move || {
                barrier.wait();
                region
                    .get_or_create(&key, || {
                        created.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(200));
                        "new".to_string()
                    })
                    .unwrap()
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    println!("CREATIONS {}", created.load(Ordering::SeqCst));
}

fn w6() {
    let dir = scratch("w6");
    let (mut creators, mut walls) = (Vec::new(), Vec::new());
    for round in 0..rounds() {
        let key = format!("w6-{round}");
        let mut children: Vec<_> = (0..PROCESSES)
            .map(|_| {
                let mut child = Command::new(std::env::current_exe().unwrap())
                    .env(ROLE, format!("{}\n{key}", dir.display()))
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap();
                let stdin = child.stdin.take().unwrap();
                let mut out = BufReader::new(child.stdout.take().unwrap());
                let mut line = String::new();
                out.read_line(&mut line).unwrap();
                assert_eq!(line.trim(), "READY");
                (child, stdin, out)
            })
            .collect();
        let start = Instant::now();
        for (_, stdin, _) in &mut children {
            writeln!(stdin, "go").unwrap();
        }
        let mut total = 0;
        for (_, _, out) in &mut children {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            total += line.trim().strip_prefix("CREATIONS ").unwrap().parse::<usize>().unwrap();
        }
        walls.push(start.elapsed());
        creators.push(total);
        for (mut child, _, _) in children {
            child.wait().unwrap();
        }
    }
    println!(
        "W6 multi-process stampede ({PROCESSES} processes x {PROCESS_THREADS} threads, 200 ms creator): creator calls min {} max {}, wall median {:?} (ideal 200 ms), {} rounds",
        creators.iter().min().unwrap(),
        creators.iter().max().unwrap(),
        median(&mut walls),
        walls.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        let (dir, key) = role.split_once('\n').unwrap();
        w6_child(Path::new(dir), key);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    w1(&mut c);
    if std::env::var_os("DOGPILE_BENCH_PROFILE").is_some() {
        return;
    }
    c.final_summary();
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // A filter (criterion's first positional argument) picks workloads.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    if wanted("w3_cold_stampede") {
        w3();
    }
    if wanted("w4_expired_stampede") {
        w4();
    }
    if wanted("w6_multi_process_stampede") {
        w6();
    }
}
