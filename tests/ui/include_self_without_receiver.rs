// `include_self` needs a `self`.
#[dogpile::cached(region = "users", include_self)]
fn load(id: u64) -> u64 {
    id
}

fn main() {}
