//! The `#[cached]` attribute of dogpile. Use it through the `dogpile` crate,
//! which re-exports it.
