// The key would not tell `load::<u8>` from `load::<u16>`.
#[dogpile::cached(region = "users")]
fn load<T: dogpile::CacheKey + Clone>(id: T) -> u64 {
    let _ = id;
    1
}

fn main() {}
