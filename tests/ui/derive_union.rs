// Unions have no field to key on without unsafe code.
#[derive(dogpile::CacheKey)]
union Bits {
    a: u32,
    b: f32,
}

fn main() {}
