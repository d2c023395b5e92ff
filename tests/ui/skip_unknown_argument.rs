// `skip` names arguments of the function.
#[dogpile::cached(region = "users", skip(connection))]
fn load(id: u64, conn: u8) -> u64 {
    id + u64::from(conn)
}

fn main() {}
