//! The expansion of `#[cached]`, `#[derive(CacheKey)]` and `region!` names
//! everything by absolute path: it compiles in a module that shadows the
//! prelude (`Result`, `Ok`, `Option`, `Some`, `Box`, `String`...) and even
//! `core` and `std`, under `unused_qualifications` and clippy's pedantic
//! lints.

#![deny(unused_qualifications, clippy::pedantic)]

mod shadowed {
    #![allow(dead_code, non_camel_case_types, unused_macros)]

    pub(crate) struct Result;
    pub(crate) struct Ok;
    pub(crate) struct Err;
    pub(crate) struct Option;
    pub(crate) struct Some;
    pub(crate) struct None;
    pub(crate) struct Box;
    pub(crate) struct String;
    pub(crate) struct Vec;
    pub(crate) struct Clone;
    pub(crate) struct Send;
    pub(crate) struct Sync;
    pub(crate) struct Fn;
    pub(crate) struct FnOnce;
    pub(crate) struct Future;
    pub(crate) struct Default;
    pub(crate) mod core {}
    pub(crate) mod std {}
    pub(crate) mod dogpile {}
    pub(crate) mod alloc {}
    macro_rules! concat {
        ($($t:tt)*) => {
            compile_error!("the expansion must use ::core::concat!")
        };
    }
    macro_rules! module_path {
        () => {
            compile_error!("the expansion must use ::core::module_path!")
        };
    }

    ::dogpile::region!(pub(crate) HYGIENE, "hygiene", backend = ::dogpile::backends::MemoryBackend::new());

    #[derive(::dogpile::CacheKey)]
    pub(crate) struct Key {
        pub(crate) id: u64,
        pub(crate) tags: ::std::vec::Vec<::std::string::String>,
    }

    #[derive(::dogpile::CacheKey)]
    pub(crate) enum Kind {
        A,
        B(u8),
        C { x: u8 },
    }

    #[::dogpile::cached(region = "hygiene")]
    pub(crate) fn plain(id: u64) -> u64 {
        id + 1
    }

    #[::dogpile::cached(region = HYGIENE, namespace = "n", expiration = "1m")]
    pub(crate) fn fallible(key: &Key, kind: &Kind) -> ::core::result::Result<u64, u8> {
        match kind {
            Kind::A | Kind::C { .. } => ::core::result::Result::Ok(key.id),
            Kind::B(e) => ::core::result::Result::Err(*e),
        }
    }

    #[::dogpile::cached(region = "hygiene", cache_none = false, should_cache = |v: &::core::option::Option<u64>| v.is_some())]
    pub(crate) fn optional(id: u64) -> ::core::option::Option<u64> {
        if id == 0 { ::core::option::Option::None } else { ::core::option::Option::Some(id) }
    }

    #[::dogpile::cached(region = "hygiene")]
    pub(crate) async fn later(id: u64) -> u64 {
        ::core::future::ready(id * 2).await
    }

    pub(crate) struct Service(pub(crate) u64);

    impl Service {
        #[::dogpile::cached(region = "hygiene")]
        pub(crate) fn method(&self, id: u64) -> u64 {
            id * self.0
        }
    }
}

#[test]
fn the_expansion_survives_a_shadowed_prelude() {
    use shadowed::{Key, Kind, Service};
    assert_eq!(shadowed::plain(1), 2);
    assert_eq!(shadowed::plain::get(1), Some(2));
    let key = Key { id: 7, tags: vec!["a".into()] };
    assert_eq!(shadowed::fallible(&key, &Kind::A), Ok(7));
    assert_eq!(shadowed::fallible(&key, &Kind::B(3)), Err(3));
    assert_eq!(
        shadowed::fallible::key(&key, &Kind::C { x: 1 }),
        "test_hygiene::shadowed::fallible|n|{id=7,tags=[a]}|C{x=1}"
    );
    assert_eq!(shadowed::optional(0), None);
    assert_eq!(shadowed::optional(2), Some(2));
    assert_eq!(Service(3).method(1), 3);
    assert_eq!(Service(4).method_get(1), Some(3));
    assert!(shadowed::HYGIENE.is_configured());
    drop(shadowed::later(1));
}
