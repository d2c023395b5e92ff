// Every keyed field of a derived CacheKey is a CacheKey itself.
struct Socket;

#[derive(dogpile::CacheKey)]
struct Query {
    table: String,
    socket: Socket,
}

fn main() {}
