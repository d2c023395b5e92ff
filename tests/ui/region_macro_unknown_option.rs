// `region!` takes `backend` and `expiration`.
dogpile::region!(USERS, "users", capacity = 10);

fn main() {}
