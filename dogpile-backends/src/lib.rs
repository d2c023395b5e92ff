//! Storage backends for [dogpile](https://docs.rs/dogpile), one per module.
//!
//! | backend | storage | creation lock |
//! |---|---|---|
//! | [`MemoryBackend`] | concurrent hash map, unbounded | in-process |
//! | [`BoundedMemoryBackend`] | size-bounded, evicting (S3-FIFO) | in-process |
//! | [`NullBackend`] | nothing | in-process (every call creates) |

mod bounded;
mod memory;
mod null;

pub use bounded::BoundedMemoryBackend;
pub use memory::MemoryBackend;
pub use null::NullBackend;
