//! Where background regeneration runs.

use std::fmt;

/// A job: regenerate one key, store it and release its lock.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Runs regeneration jobs away from the caller, for
/// [`Region::get_or_create_background`](crate::Region::get_or_create_background).
///
/// The job owns the key's lock and releases it when it ends, however it ends.
pub trait Runner: Send + Sync + fmt::Debug + 'static {
    /// Starts `job`; an error means it could not be started (the job was
    /// dropped, which released the lock).
    fn spawn(&self, job: Job) -> Result<(), String>;
}

/// Runs each job on a new named thread (`dogpile-regen`). Regeneration of one
/// key never overlaps itself (the job holds the key's lock), so the number of
/// threads is bounded by the number of keys expiring at once.
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadRunner;

impl Runner for ThreadRunner {
    fn spawn(&self, job: Job) -> Result<(), String> {
        std::thread::Builder::new()
            .name("dogpile-regen".into())
            .spawn(job)
            .map(|_| ())
            .map_err(|e| format!("could not spawn a regeneration thread: {e}"))
    }
}
