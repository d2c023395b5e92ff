//! Pieces shared by the async test files: a scenario runner that puts one
//! test on a tokio runtime of a chosen flavour behind a hang guard, a region
//! on the memory backend with a mock clock, and a minimal executor for
//! futures polled outside any tokio runtime.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use dogpile::backends::MemoryBackend;
use dogpile::{MockClock, Region};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Duration;

/// How many tasks take part in one stampede.
pub(crate) const TASKS: usize = 64;

/// How long the values of [`region`] stay fresh on its mock clock.
pub(crate) const FRESH_FOR: Duration = Duration::from_secs(60);

/// How long a scenario may run before it counts as hung. Generous: the
/// scenarios take milliseconds, but the machine is shared and slow at times.
pub(crate) const HANG_GUARD: Duration = Duration::from_secs(60);

/// Which tokio scheduler a scenario runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// One thread: a task that blocks its thread stops every other task.
    CurrentThread,
    /// Four worker threads.
    MultiThread,
}

/// Runs `scenario` to completion on a fresh runtime of `flavor`.
///
/// The runtime lives on its own thread and the test thread waits for it with
/// a deadline, so the guard fires even when the runtime's only thread is
/// blocked (where tokio's own timer could never run). A tokio timeout inside
/// the runtime reports a scenario that awaits forever.
pub(crate) fn run<Fut>(flavor: Flavor, scenario: fn(Flavor) -> Fut)
where
    Fut: Future<Output = ()> + 'static,
{
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let runtime_thread = std::thread::Builder::new()
        .name(format!("runtime-{flavor:?}"))
        .spawn(move || {
            let runtime = match flavor {
                Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread().enable_all().build(),
                Flavor::MultiThread => {
                    tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build()
                }
            }
            .expect("build a tokio runtime");
            // The timer must be made inside the runtime.
            let outcome = runtime.block_on(async { tokio::time::timeout(HANG_GUARD, scenario(flavor)).await });
            let _ = done_tx.send(());
            outcome
                .unwrap_or_else(|_| panic!("hang guard: the scenario on {flavor:?} did not finish in {HANG_GUARD:?}"));
        })
        .expect("spawn the runtime thread");
    match done_rx.recv_timeout(HANG_GUARD + Duration::from_secs(30)) {
        // Finished, or panicked (the sender dropped while unwinding).
        Ok(()) | Err(RecvTimeoutError::Disconnected) => {
            if let Err(panic) = runtime_thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(RecvTimeoutError::Timeout) => {
            panic!("hang guard: the {flavor:?} runtime's thread is blocked (an executor thread was blocked?)")
        }
    }
}

/// Declares, for each named `async fn(Flavor)`, a module of two tests that
/// run it on a current-thread and on a multi-thread runtime.
macro_rules! on_both_runtimes {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                use super::support_async::{Flavor, run};

                #[test]
                fn current_thread() {
                    run(Flavor::CurrentThread, super::$scenario);
                }

                #[test]
                fn multi_thread() {
                    run(Flavor::MultiThread, super::$scenario);
                }
            }
        )*
    };
}

/// A region on the memory backend whose values are fresh for [`FRESH_FOR`]
/// on `clock`.
pub(crate) fn region(clock: &Arc<MockClock>) -> Region {
    Region::builder("async-tests").backend(MemoryBackend::new()).expiration(FRESH_FOR).clock(clock.clone()).build()
}

/// A region holding `"old"` under `key`, expired a second ago on `clock`.
pub(crate) fn region_with_expired(clock: &Arc<MockClock>, key: &str) -> Region {
    let region = region(clock);
    region.set(key, "old".to_string()).expect("memory backend");
    clock.advance(FRESH_FOR + Duration::from_secs(1));
    region
}

/// Yields until `ready()` holds (the scenario's hang guard bounds the wait).
pub(crate) async fn until(mut ready: impl FnMut() -> bool) {
    while !ready() {
        tokio::task::yield_now().await;
    }
}

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `fut` to completion on the calling thread, outside any tokio
/// runtime.
pub(crate) fn block_on<F: Future>(fut: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
}
