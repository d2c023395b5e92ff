// An async function returning `Result` of a value that cannot be cached:
// one error, at the return type.
struct Handle;

#[dogpile::cached(region = "users")]
async fn load(id: u64) -> Result<Handle, String> {
    let _ = id;
    Ok(Handle)
}

fn main() {}
