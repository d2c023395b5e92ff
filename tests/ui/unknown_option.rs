// A misspelled option is named, with the list of valid ones.
#[dogpile::cached(region = "users", expiraton = "5m")]
fn load(id: u64) -> u64 {
    id
}

fn main() {}
