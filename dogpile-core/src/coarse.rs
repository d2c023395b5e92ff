//! A coarse wall clock for the hit path.
//!
//! Reading the system clock costs about 35 ns on our machines, as much as the
//! rest of a memory hit. Judging expiry does not need nanoseconds, so hits
//! read a timestamp that a ticker thread refreshes every millisecond: one
//! atomic load. The ticker stops after a second in which nobody read the
//! clock, and the next reader (which then reads the system clock itself)
//! starts it again, so an idle process does not keep a thread ticking. A
//! forked child starts its own ticker (see `after_fork`).
//!
//! Precision: about a millisecond, plus however long the ticker waits for a
//! core on an overloaded machine. Creation and invalidation times are always
//! read from the precise clock; only "is it expired yet" uses this one.

use crate::clock::system_now_nanos;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

static NOW: AtomicU64 = AtomicU64::new(0);
/// True while the ticker keeps `NOW` within a tick of the real time.
static TICKING: AtomicBool = AtomicBool::new(false);
/// Set by readers, cleared by the ticker once a second.
static READ: AtomicBool = AtomicBool::new(false);
/// True while a ticker thread runs (or is being started).
static RUNNING: AtomicBool = AtomicBool::new(false);
/// Set once spawning a ticker failed: every read then takes the slow path
/// (correct, slower) instead of trying to spawn again.
static NO_TICKER: AtomicBool = AtomicBool::new(false);

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
    if !NO_TICKER.load(Ordering::Relaxed)
        && RUNNING.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok()
    {
        start_ticker();
    }
    system_now_nanos()
}

fn start_ticker() {
    after_fork::stop_ticker_in_children();
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
                    // Nobody read the clock for a second: stop. Readers that
                    // see `TICKING` false read the system clock themselves,
                    // and the first one after `RUNNING` is cleared starts a
                    // new ticker.
                    TICKING.store(false, Ordering::SeqCst);
                    RUNNING.store(false, Ordering::SeqCst);
                    return;
                }
            }
        }
    });
    if spawned.is_err() {
        NO_TICKER.store(true, Ordering::Relaxed);
        RUNNING.store(false, Ordering::Release);
    }
}

/// A forked child has only the thread that called `fork`: the ticker does
/// not survive, while `TICKING` would stay set and every hit would read the
/// time of the fork forever (values would never expire in pre-fork servers
/// and process pools). A handler run in the child marks the ticker stopped,
/// so the child's first read uses the real clock and starts its own.
#[cfg(unix)]
mod after_fork {
    use super::{RUNNING, TICKING};
    use std::sync::atomic::{AtomicBool, Ordering};

    static REGISTERED: AtomicBool = AtomicBool::new(false);

    /// Runs in the child right after `fork`; only stores to atomics, which
    /// is async-signal-safe.
    extern "C" fn in_child() {
        TICKING.store(false, Ordering::SeqCst);
        RUNNING.store(false, Ordering::SeqCst);
    }

    pub(super) fn stop_ticker_in_children() {
        if !REGISTERED.swap(true, Ordering::AcqRel) {
            // SAFETY: `pthread_atfork` only records the handler; `in_child`
            // is a plain `extern "C" fn` with no arguments that never
            // unwinds and only stores to static atomics.
            #[allow(unsafe_code)]
            let rc = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
            if rc != 0 {
                // Without the handler a forked child could read a frozen
                // clock: give up the ticker everywhere (correct, slower).
                super::NO_TICKER.store(true, Ordering::Relaxed);
                TICKING.store(false, Ordering::SeqCst);
            }
        }
    }
}

#[cfg(not(unix))]
mod after_fork {
    /// No `fork` on this platform.
    pub(super) fn stop_ticker_in_children() {}
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
