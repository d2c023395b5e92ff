// Hash maps iterate in a different order in every process: not a key.
use std::collections::HashMap;

#[dogpile::cached(region = "users")]
fn load(filters: HashMap<String, String>) -> usize {
    filters.len()
}

fn main() {}
