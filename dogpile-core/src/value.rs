//! What a backend stores: a typed in-process object, or encoded bytes.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// Metadata stored with every value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// When the value's creation started, in wall-clock nanoseconds since the
    /// Unix epoch. The region judges expiry and invalidation from this, not
    /// from a backend TTL.
    pub created_nanos: u64,
    /// How long the creator took, in nanoseconds (used by early refresh).
    pub creation_nanos: u64,
}

/// How a backend wants values handed to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// In-process backends keep the typed value behind an `Arc`, unencoded.
    Object,
    /// Shared backends (Redis, memcached, files) keep an encoded envelope.
    Bytes,
}

/// A stored value as a backend sees it.
#[derive(Clone)]
pub enum Value {
    /// A typed in-process value with its metadata.
    Object {
        /// Creation metadata.
        meta: Meta,
        /// The value itself; a hit downcasts it to the caller's type.
        object: Arc<dyn Any + Send + Sync>,
    },
    /// An encoded envelope (format version, codec, metadata and payload). The
    /// backend stores it as opaque bytes.
    Bytes(Vec<u8>),
}

impl Value {
    /// The typed object, if this is an in-process value of type `T`.
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        match self {
            Value::Object { object, .. } => object.downcast_ref::<T>(),
            Value::Bytes(_) => None,
        }
    }

    /// The encoded length for byte values; `None` for in-process objects.
    pub fn encoded_len(&self) -> Option<usize> {
        match self {
            Value::Object { .. } => None,
            Value::Bytes(b) => Some(b.len()),
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Object { meta, .. } => f.debug_struct("Object").field("meta", meta).finish_non_exhaustive(),
            Value::Bytes(b) => f.debug_tuple("Bytes").field(&b.len()).finish(),
        }
    }
}
