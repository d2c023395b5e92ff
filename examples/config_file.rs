//! Regions declared in code, configured from a file at start-up:
//! `cargo run --example config_file`.
//!
//! The modules declare their regions and cache their functions; `main` reads
//! `examples/cache.toml`, configures every region by name, checks that every
//! cached function has its region, then serves.

use std::sync::atomic::{AtomicUsize, Ordering};

static DB_QUERIES: AtomicUsize = AtomicUsize::new(0);

mod users {
    use super::{DB_QUERIES, Ordering};

    dogpile::region!(pub(crate) USERS, "users");

    #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
    pub(crate) struct User {
        pub(crate) id: u64,
        pub(crate) name: String,
    }

    /// A "database" lookup, cached per id.
    #[dogpile::cached(region = "users")]
    pub(crate) fn load_user(id: u64) -> Result<User, String> {
        DB_QUERIES.fetch_add(1, Ordering::SeqCst);
        match id {
            0 => Err("no user 0".to_string()),
            _ => Ok(User { id, name: format!("user-{id}") }),
        }
    }
}

mod reports {
    use super::{DB_QUERIES, Ordering};

    dogpile::region!(pub(crate) REPORTS, "reports");

    #[derive(Clone, Copy, dogpile::CacheKey)]
    pub(crate) enum Period {
        Day,
        Month,
    }

    #[dogpile::cached(region = REPORTS, namespace = "v2")]
    pub(crate) fn sales(shop: &str, period: Period) -> u64 {
        DB_QUERIES.fetch_add(1, Ordering::SeqCst);
        let base = match period {
            Period::Day => 10,
            Period::Month => 300,
        };
        base + shop.len() as u64
    }
}

mod sessions {
    dogpile::region!(pub(crate) SESSIONS, "sessions");

    #[dogpile::cached(region = "sessions")]
    pub(crate) fn session_owner(token: &str) -> Option<u64> {
        token.strip_prefix("tok-").and_then(|id| id.parse().ok())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/cache.toml");
    dogpile::configure_from_toml(&std::fs::read_to_string(path)?)?;
    // Every cached function names a declared region, every region is configured.
    dogpile::check()?;
    for r in dogpile::regions() {
        println!("region {:<9} configured: {}, used by {:?}", r.name, r.configured, r.used_by);
    }

    let ada = users::load_user(7)?;
    let again = users::load_user(7)?;
    println!("\nload_user(7) twice: {ada:?} / {again:?}");
    println!("an error is not cached: {:?}, {:?}", users::load_user(0), users::load_user(0));
    println!("key of load_user(7): {}", users::load_user::key(7));
    users::load_user::invalidate(7);
    users::load_user(7)?;

    use reports::Period;
    println!("\nsales: {} {}", reports::sales("north", Period::Day), reports::sales("north", Period::Day));
    println!("key of sales(\"north\", Month): {}", reports::sales::key("north", Period::Month));
    println!("session_owner: {:?}", sessions::session_owner("tok-42"));

    let queries = DB_QUERIES.load(Ordering::SeqCst);
    println!("\ndatabase queries: {queries} (user 7, user 0 twice, user 7 after invalidate, sales once)");
    println!("users stats: {:?}", users::USERS.stats()?);
    println!("reports stats: {:?}", reports::REPORTS.stats()?);
    println!("sessions backend: {}", sessions::SESSIONS.region()?.backend_name());
    Ok(())
}
