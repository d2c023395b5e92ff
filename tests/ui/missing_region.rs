// Every cached function names its region.
#[dogpile::cached(namespace = "v2")]
fn load(id: u64) -> u64 {
    id
}

fn main() {}
