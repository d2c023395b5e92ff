// An option given twice is an error at the second one.
#[dogpile::cached(region = "users", region = "accounts")]
fn load(id: u64) -> u64 {
    id
}

fn main() {}
