//! Cache keys: the exact forms are pinned here (they are shared between
//! processes and builds, so a change is a compatibility break), the derive
//! on structs and enums, and that look-alike argument lists never collide.

use dogpile::CacheKey;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[derive(CacheKey)]
struct UserId(u64);

#[derive(CacheKey)]
struct Pair(u8, String);

#[derive(CacheKey)]
struct Unit;

#[derive(CacheKey)]
struct Filter {
    name: String,
    r#type: Option<u8>,
    #[cache_key(skip)]
    #[allow(dead_code)]
    request_id: u128,
}

#[derive(CacheKey)]
struct Page<T> {
    items: Vec<T>,
}

#[derive(CacheKey)]
enum Sort {
    Newest,
    By(String),
    Between { from: u32, to: u32 },
    Nested(Option<Box<Sort>>),
}

#[test]
fn pinned_key_forms() {
    let cases: Vec<(String, &str)> = vec![
        (7u64.to_key(), "7"),
        ((-7i32).to_key(), "-7"),
        (0.25f64.to_key(), "0.25"),
        (true.to_key(), "true"),
        ("plain".to_key(), "plain"),
        ("a|b,c(d)[e]{f}=g~h\"i\\j".to_key(), r#"a\|b\,c\(d\)\[e\]\{f\}\=g\~h\"i\\j"#),
        ("".to_key(), r#""""#),
        (None::<u8>.to_key(), "~"),
        (Some(3u8).to_key(), "3"),
        ((1u8, "x").to_key(), "(1,x)"),
        (vec![1u8, 2].to_key(), "[1,2]"),
        ([Some(1u8), None].to_key(), "[1,~]"),
        (BTreeMap::from([("k", vec![1u8])]).to_key(), "{k=[1]}"),
        (BTreeSet::from([2u8, 1]).to_key(), "{1,2}"),
        (Arc::new("s").to_key(), "s"),
        (Cow::<str>::Owned("c".into()).to_key(), "c"),
        (UserId(7).to_key(), "7"),
        (Pair(1, "a".into()).to_key(), "(1,a)"),
        (Unit.to_key(), "()"),
        (Filter { name: "n".into(), r#type: Some(2), request_id: 99 }.to_key(), "{name=n,type=2}"),
        (Page { items: vec!["x", "y"] }.to_key(), "{items=[x,y]}"),
        (Sort::Newest.to_key(), "Newest"),
        (Sort::By("date".into()).to_key(), "By(date)"),
        (Sort::Between { from: 1, to: 2 }.to_key(), "Between{from=1,to=2}"),
        (Sort::Nested(Some(Box::new(Sort::Newest))).to_key(), "Nested(Newest)"),
        (Sort::Nested(None).to_key(), "Nested(~)"),
    ];
    for (got, want) in cases {
        assert_eq!(got, want);
    }
}

#[test]
fn look_alike_values_never_collide() {
    let keys = [
        ("a", "b").to_key(),
        ("a,b", "").to_key(),
        ("a", "b,").to_key(),
        ("(a", "b)").to_key(),
        (vec!["a", "b"], "").to_key(),
        (vec!["a,b"], "").to_key(),
        (vec![""], "").to_key(),
        (Vec::<&str>::new(), "").to_key(),
        (Some(""), "").to_key(),
        (None::<&str>, "").to_key(),
        (Some("~"), "").to_key(),
    ];
    let unique: BTreeSet<&String> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "{keys:?}");

    let filters = [
        Filter { name: "a,type=1".into(), r#type: None, request_id: 0 }.to_key(),
        Filter { name: "a".into(), r#type: Some(1), request_id: 0 }.to_key(),
    ];
    assert_ne!(filters[0], filters[1]);
    let sorts = [Sort::By("Newest".into()).to_key(), Sort::Newest.to_key(), Sort::Nested(None).to_key()];
    assert_eq!(sorts.iter().collect::<BTreeSet<_>>().len(), 3);
}

mod reexported {
    // A crate that re-exports dogpile under another path points the derive
    // at it.
    pub(crate) mod cache {
        pub(crate) use dogpile::*;
    }

    #[derive(dogpile::CacheKey)]
    #[cache_key(crate = "self::cache")]
    pub(crate) struct Wrapped(pub(crate) u8);
}

#[test]
fn derive_with_a_crate_path_override() {
    assert_eq!(reexported::Wrapped(5).to_key(), "5");
}
