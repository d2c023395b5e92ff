//! dogpile facade (filled in below).
pub use dogpile_core::*;
/// Storage backends.
pub mod backends {
    pub use dogpile_backends::*;
}
