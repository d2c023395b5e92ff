//! Polls a future to completion on the current thread, parking it while
//! the future waits: how the blocking driver and the lease keeper run the
//! futures of [`Lease`](crate::backend::Lease) (which a blocking backend
//! returns ready).

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `fut` to completion on this thread.
pub(crate) fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        // A wake that came before this park makes it return at once.
        std::thread::park();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ready_and_woken_from_another_thread() {
        assert_eq!(block_on(async { 3 }), 3);
        assert_eq!(block_on(crate::timer::sleep(Duration::from_millis(5))), ());
    }
}
