//! The dogpile lock as a pure function: from what the cache holds and what
//! happened with the key's lock to what the caller does next. The blocking
//! and async shells in `create.rs` and `create_async.rs` only carry out these
//! actions.

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

/// The first step after a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Return the value; the lock is not touched.
    ReturnFresh,
    /// Try the lock without waiting: the winner regenerates, the others
    /// return the stale value.
    TryLockForRegeneration,
    /// Take the lock, waiting if another caller holds it.
    LockForCreation,
}

pub(crate) fn after_read(found: Found) -> Step {
    match found {
        Found::Fresh => Step::ReturnFresh,
        Found::Expired => Step::TryLockForRegeneration,
        Found::Absent => Step::LockForCreation,
    }
}

/// What to do once the lock was tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Regenerate in this caller, store, return the new value (the stale
    /// value is not read a second time).
    Regenerate,
    /// Hand regeneration to the background runner with the lock, return the
    /// stale value.
    RegenerateInBackground,
    /// Another caller regenerates: return the stale value now.
    ReturnStale,
    /// Another caller creates: wait for its lock to be released, then read
    /// again from the top.
    WaitAndReread,
    /// We hold the lock of a missing value: read once more (another caller
    /// may have created it meanwhile) and create only if still needed.
    RereadThenCreate,
}

pub(crate) fn after_lock(found: Found, acquired: bool, background: bool) -> Action {
    match (found, acquired) {
        (Found::Expired, true) if background => Action::RegenerateInBackground,
        (Found::Expired, true) => Action::Regenerate,
        (Found::Expired, false) => Action::ReturnStale,
        (Found::Absent, true) => Action::RereadThenCreate,
        (Found::Absent, false) => Action::WaitAndReread,
        // A fresh value never reaches the lock; if asked, the value is simply
        // returned by the caller, which is what serving it stale amounts to.
        (Found::Fresh, _) => Action::ReturnStale,
    }
}

/// After [`Action::RereadThenCreate`]'s read: create, or return what another
/// caller just stored.
pub(crate) fn after_reread(found: Found) -> bool {
    // Only a fresh value is taken as "someone else created it"; an expired
    // one is regenerated since we hold the lock anyway.
    found != Found::Fresh
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_exhaustively() {
        use Action::*;
        use Found::*;
        assert_eq!(after_read(Fresh), Step::ReturnFresh);
        assert_eq!(after_read(Expired), Step::TryLockForRegeneration);
        assert_eq!(after_read(Absent), Step::LockForCreation);
        let cases = [
            (Expired, true, false, Regenerate),
            (Expired, true, true, RegenerateInBackground),
            (Expired, false, false, ReturnStale),
            (Expired, false, true, ReturnStale),
            (Absent, true, false, RereadThenCreate),
            // A missing value is always created in the caller, even with a
            // background runner: there is nothing stale to serve meanwhile.
            (Absent, true, true, RereadThenCreate),
            (Absent, false, false, WaitAndReread),
            (Absent, false, true, WaitAndReread),
            (Fresh, true, false, ReturnStale),
            (Fresh, false, true, ReturnStale),
        ];
        for (found, acquired, background, want) in cases {
            assert_eq!(after_lock(found, acquired, background), want, "{found:?} {acquired} {background}");
        }
        assert!(after_reread(Absent));
        assert!(after_reread(Expired));
        assert!(!after_reread(Fresh));
    }
}
