// The cache must name the type it stores.
#[dogpile::cached(region = "users")]
fn load(id: u64) -> impl Clone {
    id
}

fn main() {}
