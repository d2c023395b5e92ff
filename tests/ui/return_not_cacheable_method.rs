// A method returning a value that cannot be cached: one error, at the
// return type.
struct Handle;

struct Repo;

impl Repo {
    #[dogpile::cached(region = "users")]
    fn find(&self, id: u64) -> Handle {
        let _ = id;
        Handle
    }
}

fn main() {}
