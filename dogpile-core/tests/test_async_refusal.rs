//! The async API on a backend with only a blocking interface, which may
//! block, is refused with an error that names the region and says what to
//! do, rather than blocking the executor. Which refusal depends on the
//! `tokio` feature: without it there is no way to make such a call (the
//! test script builds this file once without the feature); with it, the
//! call needs a tokio runtime to run the backend's calls on its blocking
//! pool, and is polled here outside one.

use dogpile_core::backend::{Backend, BackendError, BlockingBackend, Value, ValueKind};
use dogpile_core::{Error, Region};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// A blocking-only backend that may block (a network client), counting
/// the calls it gets.
#[derive(Debug, Default)]
struct BlockingOnly {
    calls: AtomicUsize,
}

impl Backend for BlockingOnly {
    fn name(&self) -> &'static str {
        "blocking-only"
    }
    fn value_kind(&self) -> ValueKind {
        ValueKind::Bytes
    }
    fn blocking(&self) -> Option<&dyn BlockingBackend> {
        Some(self)
    }
}

impl BlockingBackend for BlockingOnly {
    fn get(&self, _key: &str) -> Result<Option<Value>, BackendError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(None)
    }
    fn set(&self, _key: &str, _value: Value, _ttl: Option<Duration>) -> Result<(), BackendError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn delete(&self, _key: &str) -> Result<(), BackendError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Polls `fut` once, outside any runtime: a refused call is ready at once.
fn poll_once<F: Future>(fut: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(fut).poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the call waited instead of being refused"),
    }
}

#[cfg(feature = "tokio")]
const REFUSAL: &str = "region `reports`: the `blocking-only` backend has only a blocking interface, which async calls \
                       run on tokio's blocking pool, but this call is not inside a tokio runtime; call it from a \
                       tokio task or use the blocking API";

#[cfg(not(feature = "tokio"))]
const REFUSAL: &str = "region `reports`: the `blocking-only` backend has only a blocking interface, and calling it \
                       from async code would block the executor; enable dogpile's `tokio` feature (its calls then \
                       run on tokio's blocking pool) or use the blocking API";

fn refusal<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
    match result {
        Err(Error::Unsupported(message)) => message,
        other => panic!("expected Error::Unsupported, got {other:?}"),
    }
}

#[test]
fn an_async_call_on_a_blocking_only_backend_names_the_region_and_what_to_do() {
    let backend = std::sync::Arc::new(BlockingOnly::default());
    let region = Region::builder("reports").backend_arc(backend.clone()).build();

    let err = poll_once(region.get_or_create_async("k", || async { 1u32 })).unwrap_err();
    assert_eq!(err.to_string(), REFUSAL);
    assert_eq!(refusal(poll_once(region.get_async::<u32>("k"))), REFUSAL);
    assert_eq!(refusal(poll_once(region.set_async("k", 1u32))), REFUSAL);
    assert_eq!(refusal(poll_once(region.delete_async("k"))), REFUSAL);
    assert_eq!(refusal(poll_once(region.get_multi_async::<u32, _>(&["a", "b"]))), REFUSAL);
    let multi = region.get_or_create_multi_async(&["a"], |keys| async move { vec![0u32; keys.len()] });
    assert_eq!(refusal(poll_once(multi)), REFUSAL);
    assert_eq!(backend.calls.load(Ordering::SeqCst), 0, "the backend was never called from async code");

    // The blocking API on the same region works.
    assert_eq!(region.get_or_create("k", || 2u32).unwrap(), 2);
}
