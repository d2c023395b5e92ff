//! The order in which a hit workload visits its keys, shared by the
//! benchmarks (each includes this file as a module).

/// A fixed pseudo-random permutation of `0..n`: Fisher-Yates driven by a
/// small xorshift generator started at `seed`, the same on every run and
/// for every contender, so that reads do not follow the order the keys were
/// written in.
pub(crate) fn permutation(n: u64, seed: u64) -> Vec<u64> {
    let mut order: Vec<u64> = (0..n).collect();
    let mut x = seed;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    order
}

/// The seed of the memory, hit and file benchmarks.
#[allow(dead_code)]
pub(crate) const SEED: u64 = 0x9E37_79B9_7F4A_7C15;
