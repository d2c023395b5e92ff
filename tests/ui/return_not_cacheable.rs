// Cached values are cloned and serialized.
struct Handle;

#[dogpile::cached(region = "users")]
fn load(id: u64) -> Handle {
    let _ = id;
    Handle
}

fn main() {}
