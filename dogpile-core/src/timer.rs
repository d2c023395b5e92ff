//! A runtime-agnostic sleep for the async path.
//!
//! The async core does not depend on an executor, so it has no timer of its
//! own. Backends with an async interface may supply one
//! ([`AsyncBackend::sleep`](crate::backend::AsyncBackend::sleep)); otherwise
//! this future sleeps on a short-lived helper thread and wakes the task, so
//! the executor thread is never blocked.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

#[derive(Default)]
struct Shared {
    done: bool,
    waker: Option<Waker>,
}

/// Completes after `duration`; the waiting happens on a helper thread.
pub(crate) struct ThreadSleep {
    duration: Duration,
    shared: Option<Arc<Mutex<Shared>>>,
}

pub(crate) fn sleep(duration: Duration) -> ThreadSleep {
    ThreadSleep { duration, shared: None }
}

impl Future for ThreadSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let duration = self.duration;
        let shared = self.shared.get_or_insert_with(|| {
            let shared = Arc::new(Mutex::new(Shared::default()));
            let theirs = shared.clone();
            let spawned = std::thread::Builder::new().name("dogpile-sleep".into()).spawn(move || {
                std::thread::sleep(duration);
                let mut s = theirs.lock().unwrap_or_else(PoisonError::into_inner);
                s.done = true;
                if let Some(w) = s.waker.take() {
                    w.wake();
                }
            });
            if spawned.is_err() {
                // No thread: complete at once; the caller's loop polls again.
                shared.lock().unwrap_or_else(PoisonError::into_inner).done = true;
            }
            shared
        });
        let mut s = shared.lock().unwrap_or_else(PoisonError::into_inner);
        if s.done {
            Poll::Ready(())
        } else {
            s.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test(flavor = "current_thread")]
    async fn sleeps_without_blocking_the_executor() {
        let start = Instant::now();
        let ticker = tokio::spawn(async {
            let mut n = 0u32;
            for _ in 0..5 {
                tokio::task::yield_now().await;
                n += 1;
            }
            n
        });
        sleep(Duration::from_millis(20)).await;
        assert!(start.elapsed() >= Duration::from_millis(20));
        // The other task ran while we slept on a single-threaded executor.
        assert!(ticker.is_finished());
        assert_eq!(ticker.await.unwrap(), 5);
    }
}
