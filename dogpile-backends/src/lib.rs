//! Storage backends for [dogpile](https://docs.rs/dogpile), one per module.
//!
//! | backend | storage | creation lock |
//! |---|---|---|
//! | [`MemoryBackend`] | concurrent hash map, unbounded | in-process |
//! | [`BoundedMemoryBackend`] | size-bounded, evicting (S3-FIFO) | in-process |
//! | [`NullBackend`] | nothing | in-process (every call creates) |
//! | `RedisBackend` (feature `redis`) | Redis: one server, Sentinel, Cluster | leases in Redis, shared by every process |
//! | `MemcachedBackend` (feature `memcached`; TLS with `memcached-tls`) | one or many memcached servers, ketama or rendezvous; meta or binary protocol, SASL | lease item owned by its CAS |
//! | `FileBackend` (feature `file`) | files under a directory, shared by the processes of one machine | OS file locks, per key |
//!
//! Each backend module also owns its settings type ([`MemoryConfig`],
//! [`BoundedMemoryConfig`], [`NullConfig`]); [`config`] builds a backend
//! from its name and arguments, as read from a configuration file.

mod bounded;
pub mod config;
#[cfg(feature = "file")]
mod file;
#[cfg(feature = "memcached")]
pub mod memcached;
mod memory;
mod null;
#[cfg(feature = "redis")]
mod redis;

pub use bounded::{BoundedMemoryBackend, BoundedMemoryConfig};
#[cfg(feature = "file")]
pub use file::{DEFAULT_SWEEP_INTERVAL, FileBackend, FileConfig, SweepReport};
#[cfg(feature = "memcached")]
pub use memcached::{MemcachedBackend, MemcachedConfig};
pub use memory::{MemoryBackend, MemoryConfig};
pub use null::{NullBackend, NullConfig};
#[cfg(feature = "redis")]
pub use redis::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_IO_TIMEOUT, RedisBackend, RedisBuilder, RedisConfig};
