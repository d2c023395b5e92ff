// A `key` expression already decides what is keyed.
#[dogpile::cached(region = "users", key = id, skip(conn))]
fn load(id: u64, conn: u8) -> u64 {
    id + u64::from(conn)
}

fn main() {}
