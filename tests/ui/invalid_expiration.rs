// Duration strings are checked at compile time.
#[dogpile::cached(region = "users", expiration = "5 parsecs")]
fn load(id: u64) -> u64 {
    id
}

fn main() {}
