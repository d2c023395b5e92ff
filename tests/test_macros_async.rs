//! `#[cached]` on `async fn`: the call and its async companions, `Result`
//! returns, `Send` futures, and single flight across threads. Futures are
//! driven by a tiny executor (one per thread) so the test needs no runtime.

use dogpile::{BackendConfig, RegionConfig, cached};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Wake};
use std::time::Duration;

fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

fn assert_send<T: Send>(t: T) -> T {
    t
}

dogpile::region!(ASYNC, "async_macros");

fn setup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        dogpile::configure("async_macros", RegionConfig::new().backend(BackendConfig::new("memory"))).unwrap()
    });
}

static CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(region = "async_macros")]
async fn fetch(id: u64) -> String {
    CALLS.fetch_add(1, Ordering::SeqCst);
    format!("page {id}")
}

#[cached(region = "async_macros")]
async fn fetch_checked(id: u64) -> Result<u64, String> {
    CALLS.fetch_add(1, Ordering::SeqCst);
    if id == 0 { Err("zero".into()) } else { Ok(id * 2) }
}

#[test]
fn async_call_and_companions() {
    setup();
    block_on(async {
        let before = CALLS.load(Ordering::SeqCst);
        assert_eq!(assert_send(fetch(1)).await, "page 1");
        assert_eq!(fetch(1).await, "page 1");
        assert_eq!(CALLS.load(Ordering::SeqCst) - before, 1);
        assert_eq!(fetch::key(1), "test_macros_async::fetch|1");
        assert_eq!(assert_send(fetch::get(1)).await, Some("page 1".to_string()));
        fetch::set("set".to_string(), 1).await;
        assert_eq!(fetch(1).await, "set");
        assert_eq!(fetch::refresh(1).await, "page 1");
        assert_eq!(fetch(1).await, "page 1");
        assert_eq!(fetch::original(1).await, "page 1");
        fetch::invalidate(1).await;
        assert_eq!(fetch::get(1).await, None);

        let before = CALLS.load(Ordering::SeqCst);
        assert_eq!(fetch_checked(0).await, Err("zero".to_string()));
        assert_eq!(fetch_checked(0).await, Err("zero".to_string()));
        assert_eq!(fetch_checked(2).await, Ok(4));
        assert_eq!(fetch_checked(2).await, Ok(4));
        assert_eq!(CALLS.load(Ordering::SeqCst) - before, 3);
        assert_eq!(fetch_checked::get(2).await, Some(4));
    });
}

struct Client;

impl Client {
    #[cached(region = "async_macros")]
    async fn profile(&self, id: u32) -> u32 {
        id + 1
    }
}

#[test]
fn async_methods() {
    setup();
    block_on(async {
        let c = Client;
        assert_eq!(assert_send(c.profile(1)).await, 2);
        assert_eq!(c.profile_get(1).await, Some(2));
        c.profile_invalidate(1).await;
        assert_eq!(c.profile_get(1).await, None);
        assert_eq!(c.profile_key(1), "test_macros_async::Client::profile|1");
    });
}

static SLOW_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(region = "async_macros")]
async fn slow(id: u32) -> u32 {
    SLOW_CALLS.fetch_add(1, Ordering::SeqCst);
    // Blocks this task's own thread; the other threads' tasks await the
    // key's lock meanwhile.
    std::thread::sleep(Duration::from_millis(100));
    id
}

#[test]
fn async_single_flight_across_threads() {
    setup();
    let barrier = Arc::new(Barrier::new(16));
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                block_on(slow(9))
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 9);
    }
    assert_eq!(SLOW_CALLS.load(Ordering::SeqCst), 1);
    let _ = &ASYNC;
}
