// The region is a name or a `region!` static.
#[dogpile::cached(region = 5)]
fn load(id: u64) -> u64 {
    id
}

fn main() {}
