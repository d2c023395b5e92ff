//! A coarse wall clock for the hit path.
//!
//! Reading the system clock costs about 35 ns on our machines, as much as the
//! rest of a memory hit. Judging expiry does not need nanoseconds, so hits
//! read a timestamp that a ticker thread refreshes every millisecond: one
//! atomic load. The ticker parks itself after a second in which nobody read
//! the clock, and the next reader (which then reads the system clock itself)
//! wakes it, so an idle process does not keep a thread ticking.
//!
//! Precision: about a millisecond, plus however long the ticker waits for a
//! core on an overloaded machine. Creation and invalidation times are always
//! read from the precise clock; only "is it expired yet" uses this one.

use crate::clock::system_now_nanos;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::Thread;
use std::time::Duration;

static NOW: AtomicU64 = AtomicU64::new(0);
/// True while the ticker keeps `NOW` within a tick of the real time.
static TICKING: AtomicBool = AtomicBool::new(false);
/// Set by readers, cleared by the ticker once a second.
static READ: AtomicBool = AtomicBool::new(false);
static TICKER: OnceLock<Option<Thread>> = OnceLock::new();

const TICK: Duration = Duration::from_millis(1);
const TICKS_BEFORE_IDLE_CHECK: u32 = 1000;

/// The current wall-clock time in nanoseconds since the Unix epoch, to
/// about a millisecond.
#[inline]
pub(crate) fn now() -> u64 {
    if TICKING.load(Ordering::Acquire) {
        if !READ.load(Ordering::Relaxed) {
            READ.store(true, Ordering::Relaxed);
        }
        return NOW.load(Ordering::Acquire);
    }
    slow_now()
}

#[cold]
fn slow_now() -> u64 {
    READ.store(true, Ordering::Relaxed);
    if let Some(ticker) = TICKER.get_or_init(start_ticker) {
        ticker.unpark();
    }
    system_now_nanos()
}

fn start_ticker() -> Option<Thread> {
    let spawned = std::thread::Builder::new().name("dogpile-clock".into()).spawn(|| {
        let mut ticks = 0u32;
        loop {
            NOW.store(system_now_nanos(), Ordering::Release);
            TICKING.store(true, Ordering::Release);
            std::thread::sleep(TICK);
            ticks += 1;
            if ticks >= TICKS_BEFORE_IDLE_CHECK {
                ticks = 0;
                if !READ.swap(false, Ordering::AcqRel) {
                    // Nobody read the clock for a second: stop until someone
                    // does. Readers that see `TICKING` false read the system
                    // clock themselves and unpark us.
                    TICKING.store(false, Ordering::SeqCst);
                    while !READ.load(Ordering::SeqCst) {
                        std::thread::park();
                    }
                }
            }
        }
    });
    // Without a ticker every read takes the slow path: correct, slower.
    spawned.ok().map(|h| h.thread().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_a_generous_bound_of_the_system_clock() {
        for _ in 0..50 {
            let before = system_now_nanos();
            let coarse = now();
            let after = system_now_nanos();
            // Never ahead of the real clock; behind by at most a tick plus
            // scheduling delay (generous: 1 s, this is a hang-free sanity check).
            assert!(coarse <= after, "coarse clock ahead of the system clock");
            assert!(before.saturating_sub(coarse) < 1_000_000_000, "coarse clock more than 1 s behind");
            std::thread::sleep(Duration::from_micros(300));
        }
    }
}
