// `region = STATIC` is checked by the compiler: a typo does not compile.
dogpile::region!(USERS, "users");

#[dogpile::cached(region = USER)]
fn load(id: u64) -> u64 {
    id
}

fn main() {}
