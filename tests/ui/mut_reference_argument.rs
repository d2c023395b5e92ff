// A cache hit would skip the body, and with it the mutation.
#[dogpile::cached(region = "users")]
fn load(ids: &mut Vec<u64>) -> u64 {
    ids.push(1);
    1
}

fn main() {}
