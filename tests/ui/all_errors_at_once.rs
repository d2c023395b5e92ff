// Every mistake is reported in one compile, and the function itself is
// kept, so the call in `main` has no error of its own.
#[dogpile::cached(regio = "users", namespace = 5, expiration = "soon")]
fn load(id: u64, name: impl AsRef<str>) -> u64 {
    id + name.as_ref().len() as u64
}

fn main() {
    let _ = load(1, "x");
}
