// `include_self` puts the receiver in the key: its type must be a CacheKey.
struct Repo;

impl Repo {
    #[dogpile::cached(region = "users", include_self)]
    fn load(&self, id: u64) -> u64 {
        id
    }
}

fn main() {}
