// `cache_none` only means something for `Option` returns.
#[dogpile::cached(region = "users", cache_none = false)]
fn load(id: u64) -> u64 {
    id
}

fn main() {}
