//! The dogpile lock for one key, as a state machine with no I/O.
//!
//! A driver (blocking in `blocking.rs`, async in `nonblocking.rs`) asks
//! [`Flow`] what to do next, does it (reads the backend, takes or waits for a
//! lock, asks the backend for a lease), and reports what happened as an
//! [`Event`]. The flow never sees values, guards or futures: the driver
//! keeps the last value read and the guards it took, and the flow tells it
//! which value to return and when to create. Multi-key creation runs one
//! flow per key.
//!
//! The rules, in order:
//! 1. A fresh value is returned; nothing is locked.
//! 2. An expired value: try the key's in-process lock without waiting. The
//!    loser returns the stale value at once. The winner, on a backend shared
//!    between processes, reads and asks for the key's lease in one step: a
//!    fresh value there (another process just regenerated it) is returned; a
//!    lease held elsewhere means the stale value is returned (if the value
//!    is gone meanwhile, the call waits as in rule 3); a won lease means
//!    this caller regenerates.
//! 3. No value: take the in-process lock, or wait for its holder and read
//!    again from the top. Holding it, read once more (the holder before us
//!    may have just stored it), then, on a shared backend, read and lease:
//!    while another process holds the lease, wait for its release (a
//!    backend wake-up, or back-off with jitter) and read-and-lease again.
//! 4. Create holding both (the lease released before the in-process lock).
//!    A failed creator returns the stale value under stale-if-error, else
//!    its error.
//!
//! A value found after this call has waited (for the in-process lock or a
//! lease) is counted as waited for, not as a hit (see `Stats`); in a
//! multi-key call, a wait for one key makes the values found by later reads
//! of the following keys waited for too, but not their first read (made
//! before any wait). The stale value served is always the latest read's.

use crate::stats::Counter;

/// What a read found, judged against expiration and invalidation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// A value that may be returned as is.
    Fresh,
    /// A value past its expiration (or soft-invalidated, or picked for early
    /// refresh): it may be served while one caller regenerates.
    Expired,
    /// Nothing usable: absent, hard-invalidated or undecodable.
    Absent,
}

/// What happened with the step the flow asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// A read ([`Step::Read`] or the caller's first read) found this.
    Read(Found),
    /// [`Step::TryLocal`]: whether the in-process lock was taken.
    Local(bool),
    /// [`Step::WaitLocal`]: the holder released the in-process lock.
    LocalReleased,
    /// [`Step::Lease`]: whether the lease was won, and what the read that
    /// came with it found.
    Leased { won: bool, found: Found },
    /// [`Step::Lease`] failed (a backend error).
    LeaseFailed,
    /// [`Step::WaitRelease`] is over (woken or backed off).
    Waited,
}

/// What the driver does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Read the key (XFetch early refresh applies when `early`), report
    /// [`Event::Read`].
    Read { early: bool },
    /// Try the key's in-process lock, report [`Event::Local`]. With `wait`,
    /// keep the key's handle when it is held, for [`Step::WaitLocal`].
    TryLocal { wait: bool },
    /// Another caller in this process holds the lock: wait for its release
    /// (unless that caller is this very creator: a re-entrant call), report
    /// [`Event::LocalReleased`].
    WaitLocal,
    /// Read and ask for the key's lease, report [`Event::Leased`] or
    /// [`Event::LeaseFailed`].
    Lease,
    /// Another process holds the lease: wait for its release (`attempt`
    /// counts the waits of this call, from 0, for the back-off), report
    /// [`Event::Waited`].
    WaitRelease { attempt: u32 },
    /// Create the value holding the locks (in the background when asked
    /// and a stale value can be served meanwhile).
    Create { background: bool },
    /// Return the last value read, counted so.
    Return(Counter),
    /// Return the stale value kept from an earlier read.
    ReturnStale,
    /// Return the lease error.
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading, before any lock.
    Start,
    /// An expired value was read: trying to become its regenerator.
    Regenerate,
    /// No value: taking the lock to create it.
    Create,
    /// Decided: the driver returns or creates.
    Done,
}

/// The state of one key's call (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Flow {
    phase: Phase,
    /// The backend issues leases (is shared between processes).
    leases: bool,
    /// The caller asked for background regeneration.
    background: bool,
    /// The driver holds the in-process lock.
    local: bool,
    /// The latest read found a stale value (the driver keeps it).
    stale: bool,
    /// This call has waited for another caller's creation.
    waited: bool,
    /// No event yet: the next read is the caller's first, made before any
    /// wait of this key (a fresh value there is a hit even when an earlier
    /// key of a multi-key call waited).
    first: bool,
    /// Waits for another process's lease so far.
    attempts: u32,
}

impl Flow {
    /// A call on a backend that issues leases or not; `waited` carries over
    /// from the earlier keys of a multi-key call.
    pub(crate) fn new(leases: bool, background: bool, waited: bool) -> Self {
        Flow { phase: Phase::Start, leases, background, local: false, stale: false, waited, first: true, attempts: 0 }
    }

    /// Whether this call has waited for another caller's creation.
    pub(crate) fn waited(&self) -> bool {
        self.waited
    }

    fn found_value(&mut self, first: bool) -> Step {
        self.phase = Phase::Done;
        Step::Return(if self.waited && !first { Counter::Waited } else { Counter::Hits })
    }

    fn stale(&mut self) -> Step {
        self.phase = Phase::Done;
        Step::ReturnStale
    }

    fn create(&mut self) -> Step {
        self.phase = Phase::Done;
        Step::Create { background: self.background && self.stale }
    }

    /// With the in-process lock held: lease, or create on a backend without
    /// leases.
    fn lease_or_create(&mut self) -> Step {
        if self.leases { Step::Lease } else { self.create() }
    }

    /// The next step after `event`.
    pub(crate) fn on(&mut self, event: Event) -> Step {
        let first = std::mem::replace(&mut self.first, false);
        match (self.phase, event) {
            (Phase::Done, _) => panic!("dogpile flow: event {event:?} after the call was decided"),
            (_, Event::Read(Found::Fresh)) => self.found_value(first),
            (Phase::Start, Event::Read(found)) => {
                self.stale = found == Found::Expired;
                if self.stale {
                    self.phase = Phase::Regenerate;
                    Step::TryLocal { wait: false }
                } else {
                    self.phase = Phase::Create;
                    Step::TryLocal { wait: true }
                }
            }
            // A read under the in-process lock (rule 3).
            (_, Event::Read(found)) if self.local => {
                self.stale = found == Found::Expired;
                self.lease_or_create()
            }
            (Phase::Regenerate, Event::Local(true)) => {
                self.local = true;
                self.lease_or_create()
            }
            (Phase::Regenerate, Event::Local(false)) => self.stale(),
            (Phase::Create, Event::Local(true)) => {
                self.local = true;
                Step::Read { early: false }
            }
            (Phase::Create, Event::Local(false)) => Step::WaitLocal,
            (Phase::Create, Event::LocalReleased) if !self.local => {
                self.waited = true;
                self.phase = Phase::Start;
                Step::Read { early: true }
            }
            (_, Event::Leased { found: Found::Fresh, .. }) if self.local => self.found_value(false),
            (_, Event::Leased { won: true, found }) if self.local => {
                self.stale = found == Found::Expired;
                self.create()
            }
            (_, Event::Leased { won: false, found }) if self.local => {
                self.stale = found == Found::Expired;
                if self.stale {
                    // Another process regenerates: serve what we have.
                    self.stale()
                } else {
                    Step::WaitRelease { attempt: self.attempts }
                }
            }
            (_, Event::LeaseFailed) if self.local => {
                if self.stale {
                    self.stale()
                } else {
                    self.phase = Phase::Done;
                    Step::Fail
                }
            }
            (_, Event::Waited) if self.local => {
                self.waited = true;
                self.attempts = self.attempts.saturating_add(1);
                Step::Lease
            }
            (phase, event) => panic!("dogpile flow: event {event:?} does not follow in phase {phase:?}"),
        }
    }
}

/// What a call whose creator failed returns.
pub(crate) fn after_failure(have_stale: bool, stale_if_error: bool) -> Step {
    if have_stale && stale_if_error { Step::ReturnStale } else { Step::Fail }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const READS: [Found; 3] = [Found::Fresh, Found::Expired, Found::Absent];

    /// Every event a driver could report after `step`.
    fn answers(step: Step) -> Vec<Event> {
        match step {
            Step::Read { .. } => READS.iter().map(|&f| Event::Read(f)).collect(),
            Step::TryLocal { .. } => vec![Event::Local(true), Event::Local(false)],
            Step::WaitLocal => vec![Event::LocalReleased],
            Step::Lease => {
                let mut v = vec![Event::LeaseFailed];
                for won in [true, false] {
                    v.extend(READS.iter().map(|&found| Event::Leased { won, found }));
                }
                v
            }
            Step::WaitRelease { .. } => vec![Event::Waited],
            Step::Create { .. } | Step::Return(_) | Step::ReturnStale | Step::Fail => vec![],
        }
    }

    /// What a driver tracks alongside the flow, to check the flow against.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    struct World {
        local: bool,
        lease: bool,
        stale: bool,
        last_fresh: bool,
        waited: bool,
    }

    /// Walks every path of every flow (lease waits bounded) and checks the
    /// promises of the module docs on each step.
    #[test]
    fn every_path_keeps_the_rules() {
        let mut ends = HashSet::new();
        for leases in [false, true] {
            for background in [false, true] {
                for first in READS {
                    let mut flow = Flow::new(leases, background, false);
                    let world = World { local: false, lease: false, stale: false, last_fresh: false, waited: false };
                    walk(&mut flow, Event::Read(first), world, 0, &mut ends);
                }
            }
        }
        // Every kind of end is reachable.
        for end in ["hit", "waited", "stale", "create", "background", "fail"] {
            assert!(ends.contains(end), "no path ends in {end}");
        }
    }

    fn walk(flow: &mut Flow, event: Event, mut w: World, depth: usize, ends: &mut HashSet<&'static str>) {
        assert!(depth < 40, "path too long: {flow:?}");
        match event {
            Event::Read(f) | Event::Leased { found: f, .. } => {
                w.last_fresh = f == Found::Fresh;
                w.stale = f == Found::Expired;
            }
            Event::Local(got) => w.local = got,
            Event::LocalReleased | Event::Waited => w.waited = true,
            Event::LeaseFailed => {}
        }
        if let Event::Leased { won, .. } = event {
            assert!(w.local, "a lease is only asked for under the in-process lock");
            w.lease = won;
        }
        let step = flow.on(event);
        match step {
            Step::Return(counter) => {
                assert!(w.last_fresh, "only a fresh value is returned as is");
                assert_eq!(counter, if w.waited { Counter::Waited } else { Counter::Hits });
                ends.insert(if w.waited { "waited" } else { "hit" });
                return;
            }
            Step::ReturnStale => {
                assert!(w.stale, "stale served without a stale value");
                assert!(!w.lease, "a won lease is never given up for a stale value");
                ends.insert("stale");
                return;
            }
            Step::Create { background } => {
                assert!(w.local, "created without the in-process lock");
                assert!(!w.last_fresh, "created over a fresh value");
                assert!(!flow.leases || w.lease, "created on a shared backend without its lease");
                assert!(!background || w.stale, "background regeneration with nothing to serve");
                assert_eq!(background, flow.background && w.stale);
                ends.insert(if background { "background" } else { "create" });
                return;
            }
            Step::Fail => {
                assert!(!w.stale, "an error where a stale value could be served");
                ends.insert("fail");
                return;
            }
            Step::Lease => assert!(flow.leases && w.local),
            Step::WaitLocal => {
                assert!(!w.local);
                if w.waited && depth > 12 {
                    return; // waits repeat the same states; bounded here
                }
            }
            Step::WaitRelease { attempt } => {
                assert!(w.local && !w.lease && !w.stale);
                if attempt >= 3 {
                    return; // waits repeat the same states; bounded here
                }
            }
            Step::Read { early } => assert_eq!(early, !w.local, "early refresh only before locking"),
            Step::TryLocal { .. } => assert!(!w.local),
        }
        for answer in answers(step) {
            let mut f = *flow;
            walk(&mut f, answer, w, depth + 1, ends);
        }
    }

    #[test]
    fn the_main_paths() {
        use Event::*;
        use Found::*;
        // Hit.
        assert_eq!(Flow::new(true, false, false).on(Read(Fresh)), Step::Return(Counter::Hits));
        // Expired, lock lost: stale at once.
        let mut f = Flow::new(true, false, false);
        assert_eq!(f.on(Read(Expired)), Step::TryLocal { wait: false });
        assert_eq!(f.on(Local(false)), Step::ReturnStale);
        // Expired, in-process backend: regenerate (in the background if asked).
        let mut f = Flow::new(false, true, false);
        f.on(Read(Expired));
        assert_eq!(f.on(Local(true)), Step::Create { background: true });
        // Missing, wait for the holder, then its value: waited.
        let mut f = Flow::new(false, false, false);
        assert_eq!(f.on(Read(Absent)), Step::TryLocal { wait: true });
        assert_eq!(f.on(Local(false)), Step::WaitLocal);
        assert_eq!(f.on(LocalReleased), Step::Read { early: true });
        assert_eq!(f.on(Read(Fresh)), Step::Return(Counter::Waited));
        // Missing on a shared backend, lease held elsewhere: wait, then land.
        let mut f = Flow::new(true, false, false);
        f.on(Read(Absent));
        assert_eq!(f.on(Local(true)), Step::Read { early: false });
        assert_eq!(f.on(Read(Absent)), Step::Lease);
        assert_eq!(f.on(Leased { won: false, found: Absent }), Step::WaitRelease { attempt: 0 });
        assert_eq!(f.on(Waited), Step::Lease);
        assert_eq!(f.on(Leased { won: false, found: Absent }), Step::WaitRelease { attempt: 1 });
        assert_eq!(f.on(Waited), Step::Lease);
        assert_eq!(f.on(Leased { won: false, found: Fresh }), Step::Return(Counter::Waited));
        // Expired on a shared backend, another process just regenerated it.
        let mut f = Flow::new(true, false, false);
        f.on(Read(Expired));
        assert_eq!(f.on(Local(true)), Step::Lease);
        assert_eq!(f.on(Leased { won: true, found: Fresh }), Step::Return(Counter::Hits));
        // Lease error: stale if we have one, else the error.
        let mut f = Flow::new(true, false, false);
        f.on(Read(Expired));
        f.on(Local(true));
        assert_eq!(f.on(LeaseFailed), Step::ReturnStale);
        let mut f = Flow::new(true, false, false);
        f.on(Read(Absent));
        f.on(Local(true));
        f.on(Read(Absent));
        assert_eq!(f.on(LeaseFailed), Step::Fail);
        // A multi-key call that waited for an earlier key: this key's first
        // read is still a hit, a value found after locking is waited for.
        assert_eq!(Flow::new(false, false, true).on(Read(Fresh)), Step::Return(Counter::Hits));
        let mut f = Flow::new(false, false, true);
        f.on(Read(Absent));
        f.on(Local(true));
        assert_eq!(f.on(Read(Fresh)), Step::Return(Counter::Waited));
        // A value gone after the read under the lock is not served stale:
        // the call waits for the other process's lease.
        let mut f = Flow::new(true, false, false);
        f.on(Read(Absent));
        f.on(Local(true));
        assert_eq!(f.on(Read(Expired)), Step::Lease);
        assert_eq!(f.on(Leased { won: false, found: Absent }), Step::WaitRelease { attempt: 0 });
    }

    #[test]
    #[should_panic(expected = "after the call was decided")]
    fn events_after_the_end_are_a_driver_bug() {
        let mut f = Flow::new(false, false, false);
        f.on(Event::Read(Found::Fresh));
        f.on(Event::Read(Found::Fresh));
    }

    #[test]
    fn failures() {
        assert_eq!(after_failure(true, true), Step::ReturnStale);
        assert_eq!(after_failure(true, false), Step::Fail);
        assert_eq!(after_failure(false, true), Step::Fail);
    }
}
