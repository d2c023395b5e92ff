// A `const fn` cannot read a cache.
#[dogpile::cached(region = "users")]
const fn load(id: u64) -> u64 {
    id
}

fn main() {}
