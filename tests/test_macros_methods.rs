//! `#[cached]` on methods and associated functions: companions as
//! `<method>_<companion>` beside the method, the receiver left out of the
//! key unless `include_self`, and types of the same name kept apart.

use dogpile::{BackendConfig, CacheKey, RegionConfig, cached};
use std::sync::atomic::{AtomicUsize, Ordering};

dogpile::region!(METHODS, "methods");

fn setup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        dogpile::configure("methods", RegionConfig::new().backend(BackendConfig::new("memory"))).unwrap()
    });
}

struct Repo {
    calls: AtomicUsize,
    prefix: &'static str,
}

impl Repo {
    fn new(prefix: &'static str) -> Self {
        Repo { calls: AtomicUsize::new(0), prefix }
    }

    #[cached(region = "methods")]
    fn find(&self, id: u64) -> String {
        self.calls.fetch_add(1, Ordering::SeqCst);
        format!("{} {id}", self.prefix)
    }

    #[cached(region = "methods")]
    fn by_name(name: &str) -> Self {
        let _ = name;
        Repo::new("made")
    }

    #[cached(region = "methods", in_impl)]
    fn version(major: u32) -> u32 {
        major * 100
    }
}

// `by_name` caches a `Repo`, so it must be a cache value.
impl Clone for Repo {
    fn clone(&self) -> Self {
        Repo { calls: AtomicUsize::new(self.calls.load(Ordering::SeqCst)), prefix: self.prefix }
    }
}
impl serde::Serialize for Repo {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.prefix)
    }
}
impl<'de> serde::Deserialize<'de> for Repo {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Repo::new(if s == "made" { "made" } else { "other" }))
    }
}

#[test]
fn method_companions_and_receiver_left_out_of_the_key() {
    setup();
    let a = Repo::new("a");
    let b = Repo::new("b");
    assert_eq!(a.find_key(7), "test_macros_methods::Repo::find|7");
    assert_eq!(a.find(7), "a 7");
    assert_eq!(a.find(7), "a 7");
    assert_eq!(a.calls.load(Ordering::SeqCst), 1);
    // The receiver is not in the key: another instance reads the same entry.
    assert_eq!(b.find(7), "a 7");
    assert_eq!(b.calls.load(Ordering::SeqCst), 0);
    assert_eq!(b.find_get(7), Some("a 7".to_string()));

    assert_eq!(b.find_original(7), "b 7");
    assert_eq!(b.calls.load(Ordering::SeqCst), 1);
    assert_eq!(b.find_refresh(7), "b 7");
    assert_eq!(a.find(7), "b 7");
    a.find_set("set".to_string(), 7);
    assert_eq!(b.find(7), "set");
    a.find_invalidate(7);
    assert_eq!(a.find_get(7), None);
    assert_eq!(b.find(7), "b 7");

    assert_eq!(Repo::by_name("x").prefix, "made");
    assert_eq!(Repo::by_name_key("x"), "test_macros_methods::Repo::by_name|x");
    assert!(Repo::by_name_get("x").is_some());
    assert_eq!(Repo::version(3), 300);
    assert_eq!(Repo::version_key(3), "test_macros_methods::Repo::version|3");
    assert_eq!(Repo::version_get(3), Some(300));
}

#[derive(Clone, CacheKey)]
struct Tenant {
    id: u32,
}

impl Tenant {
    #[cached(region = "methods", include_self)]
    fn quota(&self, kind: &str) -> u32 {
        self.id * 10 + u32::try_from(kind.len()).unwrap()
    }

    #[cached(region = "methods", key = (self.id, kind.len()))]
    fn by_key(&self, kind: &str) -> u32 {
        self.id + u32::try_from(kind.len()).unwrap()
    }

    #[cached(region = "methods")]
    fn consume(self, n: u32) -> u32 {
        self.id + n
    }
}

#[test]
fn include_self_and_key_expressions_see_the_receiver() {
    setup();
    let t1 = Tenant { id: 1 };
    let t2 = Tenant { id: 2 };
    assert_eq!(t1.quota("ab"), 12);
    assert_eq!(t2.quota("ab"), 22);
    assert_eq!(t1.quota_key("ab"), "test_macros_methods::Tenant::quota|{id=1}|ab");
    assert_eq!(t2.by_key("xyz"), 5);
    assert_eq!(t2.by_key_key("abc"), "test_macros_methods::Tenant::by_key|(2,3)");
    assert_eq!(t2.by_key("abc"), 5, "same custom key");
    assert_eq!(t1.clone().consume(5), 6);
    assert_eq!(t2.clone().consume(5), 6, "by-value receiver, not in the key");
    assert_eq!(t1.consume_key(5), "test_macros_methods::Tenant::consume|5");
}

mod billing {
    pub(crate) struct Account;
    impl Account {
        #[dogpile::cached(region = "methods")]
        pub(crate) fn balance(&self, id: u32) -> i64 {
            -i64::from(id)
        }
    }
}

mod crm {
    pub(crate) struct Account;
    impl Account {
        #[dogpile::cached(region = "methods")]
        pub(crate) fn balance(&self, id: u32) -> i64 {
            i64::from(id) * 1000
        }
    }
}

struct Wrapper<T>(T);

impl<T: Send + Sync + 'static> Wrapper<T> {
    #[cached(region = "methods")]
    fn describe(&self, id: u32) -> String {
        format!("{} {id}", std::any::type_name::<T>())
    }
}

#[test]
fn methods_of_two_types_with_the_same_name_never_share_keys() {
    setup();
    assert_eq!(billing::Account.balance(3), -3);
    assert_eq!(crm::Account.balance(3), 3000);
    assert_eq!(billing::Account.balance(3), -3);
    assert_ne!(billing::Account.balance_key(3), crm::Account.balance_key(3));
    assert_eq!(crm::Account.balance_key(3), "test_macros_methods::crm::Account::balance|3");

    // Instantiations of a generic type are different types too.
    assert_eq!(Wrapper(1u8).describe(1), "u8 1");
    assert_eq!(Wrapper(1u16).describe(1), "u16 1");
    assert_eq!(Wrapper(1u8).describe(1), "u8 1");
}

struct Counter {
    id: u32,
    runs: u32,
}

impl Counter {
    /// `&mut self` is allowed (the receiver is not keyed): a hit skips the
    /// body, so `runs` counts the misses.
    #[cached(region = "methods", key = (self.id, n))]
    fn bump(&mut self, n: u32) -> u32 {
        self.runs += 1;
        self.id * 1000 + n
    }
}

#[test]
fn mut_self_methods_with_a_key_on_self() {
    setup();
    let mut c = Counter { id: 4, runs: 0 };
    assert_eq!(c.bump(1), 4001);
    assert_eq!(c.bump(1), 4001);
    assert_eq!(c.runs, 1);
    assert_eq!(c.bump_key(1), "test_macros_methods::Counter::bump|(4,1)");
    c.bump_invalidate(1);
    assert_eq!(c.bump(1), 4001);
    assert_eq!(c.runs, 2);
}
