// The attribute applies to functions.
#[dogpile::cached(region = "users")]
struct Users;

fn main() {}
