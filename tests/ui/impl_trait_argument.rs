// `impl Trait` arguments have no single type to key on.
#[dogpile::cached(region = "users")]
fn load(name: impl AsRef<str>) -> usize {
    name.as_ref().len()
}

fn main() {}
