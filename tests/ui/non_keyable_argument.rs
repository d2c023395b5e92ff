// An argument whose type is not a CacheKey is an error at that argument.
struct Connection;

#[dogpile::cached(region = "users")]
fn load(id: u64, conn: &Connection) -> u64 {
    let _ = conn;
    id
}

fn main() {}
