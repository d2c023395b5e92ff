//! The `#[cached]` attribute and `#[derive(CacheKey)]` of dogpile. Use them
//! through the `dogpile` crate, which re-exports them and documents them.
//!
//! The work is split by step: `attr.rs` parses the attribute's options,
//! `ast.rs` reads and checks the function, `expand.rs` and `companions.rs`
//! generate code, `derive.rs` is the derive. Every mistake found is
//! collected (`ctx.rs`) and reported at once, next to the user's item left
//! as written so that the rest of the file still type-checks.

mod ast;
mod attr;
mod companions;
mod ctx;
mod derive;
mod expand;

use proc_macro::TokenStream;

/// Caches a function in a dogpile region (the reference is the `dogpile`
/// crate's `cached`, which re-exports this).
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::cached(args.into(), item.into()).into()
}

/// Derives `dogpile::CacheKey` (the reference is the `dogpile` crate's
/// `CacheKey` derive, which re-exports this).
#[proc_macro_derive(CacheKey, attributes(cache_key))]
pub fn derive_cache_key(input: TokenStream) -> TokenStream {
    derive::derive(input.into()).into()
}
