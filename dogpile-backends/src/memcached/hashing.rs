//! Which server of a pool holds a key: libmemcached-compatible ketama and
//! rendezvous hashing. Both are stable across processes, builds and Rust
//! versions (fixed hash functions, never `DefaultHasher`).
//!
//! The ketama mode reproduces libmemcached 1.0.x/1.1.x (behind pylibmc)
//! exactly, so Rust and Python clients sharing a pool agree on where each key
//! lives (checked against golden vectors computed by libmemcached itself):
//! - a server's points are named `<host>-<i>` on the default port 11211 and
//!   `<host>:<port>-<i>` otherwise (libmemcached's own quirk);
//! - plain ketama: 100 points per server, each the key hash of its name
//!   (`one_at_a_time` by default, MD5 with [`Distribution::KetamaMd5`]);
//! - weighted ketama: `floor(weight / total * 160 / 4 * servers) * 4` points
//!   per server (in C `float` arithmetic), four per MD5 digest of the name;
//!   keys hashed with MD5;
//! - a key goes to the first point whose value is at least its hash,
//!   wrapping past the last; a pool of one server needs no hash.

use md5::{Digest, Md5};

/// How keys are spread over the servers of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Distribution {
    /// libmemcached's ketama with its default key hash, `one_at_a_time`
    /// (pylibmc `behaviors={"ketama": True}`). Weighted as soon as a server
    /// has a weight above 1, as libmemcached does.
    #[default]
    Ketama,
    /// libmemcached's ketama with MD5 key hashing (pylibmc
    /// `behaviors={"ketama": True, "hash": "md5"}`).
    KetamaMd5,
    /// libmemcached's weighted ketama (pylibmc
    /// `behaviors={"ketama_weighted": True}`): MD5 keys, points in
    /// proportion to the weights.
    KetamaWeighted,
    /// Rendezvous (highest random weight) hashing: each key goes to the
    /// server with the highest MD5 score of `server / key`; removing a
    /// server moves only its own keys.
    Rendezvous,
}

/// One server of a pool as the hashing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) weight: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyHash {
    OneAtATime,
    Md5,
}

impl KeyHash {
    fn hash(self, data: &[u8]) -> u32 {
        match self {
            KeyHash::OneAtATime => one_at_a_time(data),
            KeyHash::Md5 => md5_word(data, 0),
        }
    }
}

/// libhashkit's `one_at_a_time`, bytes read through a signed `char` as on
/// x86/x86_64 (every byte from 0x80 adds `0xFFFFFF00 | b`).
pub(crate) fn one_at_a_time(data: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &b in data {
        h = h.wrapping_add(b as i8 as i32 as u32);
        h = h.wrapping_add(h << 10);
        h ^= h >> 6;
    }
    h = h.wrapping_add(h << 3);
    h ^= h >> 11;
    h.wrapping_add(h << 15)
}

/// The little-endian u32 of bytes `4 * word .. 4 * word + 4` of MD5(data).
pub(crate) fn md5_word(data: &[u8], word: usize) -> u32 {
    let d = Md5::digest(data);
    u32::from_le_bytes([d[4 * word], d[4 * word + 1], d[4 * word + 2], d[4 * word + 3]])
}

fn point_name(node: &Node, i: u32) -> String {
    if node.port == 11211 { format!("{}-{i}", node.host) } else { format!("{}:{}-{i}", node.host, node.port) }
}

/// Points per server in weighted mode, with libmemcached's `float` steps.
fn weighted_points(weight: u32, total: u32, live: usize) -> u32 {
    let pct = weight as f32 / total as f32;
    let x = ((pct * 160.0) / 4.0) * live as f32;
    let x = (f64::from(x) + 0.000_000_000_1) as f32;
    (x.floor() as u32) * 4
}

/// The placement of keys on a pool: a ketama continuum or rendezvous.
#[derive(Debug, Clone)]
pub(crate) struct Ring {
    /// (point value, index into the pool's servers), sorted.
    points: Vec<(u32, usize)>,
    hash: KeyHash,
    /// Indices of the servers in the ring, for rendezvous and the one-server case.
    members: Vec<usize>,
    /// Rendezvous: the servers' names (`host:port`), by pool index.
    names: Option<Vec<String>>,
}

impl Ring {
    /// The ring of `nodes[i]` for every `i` in `members` (a pool's live servers).
    pub(crate) fn new(distribution: Distribution, nodes: &[Node], members: &[usize]) -> Ring {
        let weighted_by_weight = members.iter().any(|&i| nodes[i].weight > 1);
        let (weighted, hash) = match distribution {
            Distribution::Ketama => (weighted_by_weight, KeyHash::OneAtATime),
            Distribution::KetamaMd5 => (weighted_by_weight, KeyHash::Md5),
            Distribution::KetamaWeighted => (true, KeyHash::Md5),
            Distribution::Rendezvous => {
                let names = nodes.iter().map(|n| format!("{}:{}", n.host, n.port)).collect();
                return Ring { points: Vec::new(), hash: KeyHash::Md5, members: members.to_vec(), names: Some(names) };
            }
        };
        let total: u32 = members.iter().map(|&i| nodes[i].weight).sum();
        let mut points = Vec::new();
        for &idx in members {
            let node = &nodes[idx];
            if weighted {
                for i in 0..weighted_points(node.weight, total, members.len()) / 4 {
                    let name = point_name(node, i);
                    let digest = Md5::digest(name.as_bytes());
                    for w in digest.chunks_exact(4) {
                        points.push((u32::from_le_bytes([w[0], w[1], w[2], w[3]]), idx));
                    }
                }
            } else {
                for i in 0..100 {
                    points.push((hash.hash(point_name(node, i).as_bytes()), idx));
                }
            }
        }
        points.sort_unstable();
        Ring { points, hash, members: members.to_vec(), names: None }
    }

    /// The pool index of the server holding `key`; `None` for an empty ring.
    pub(crate) fn server_of(&self, key: &[u8]) -> Option<usize> {
        if let Some(names) = &self.names {
            return self.members.iter().copied().max_by_key(|&i| rendezvous_score(&names[i], key));
        }
        match self.members.len() {
            0 => None,
            1 => Some(self.members[0]),
            _ => {
                let h = self.hash.hash(key);
                let at = self.points.partition_point(|&(v, _)| v < h);
                Some(self.points.get(at).unwrap_or(&self.points[0]).1)
            }
        }
    }
}

fn rendezvous_score(server: &str, key: &[u8]) -> u64 {
    let mut h = Md5::new();
    h.update(server.as_bytes());
    h.update([0u8]);
    h.update(key);
    let d = h.finalize();
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_functions_match_libmemcached() {
        let cases: [(&str, u32, u32); 6] = [
            ("user:1", 2773942091, 282964413),
            ("127.0.0.1-0", 942932303, 3187647615),
            ("127.0.0.1:11212-0", 998730936, 647876633),
            ("café", 3650908318, 3833532679),
            ("ключ", 4224321546, 1719363011),
            ("𝐊𝐞𝐲", 771323706, 4259943460),
        ];
        for (input, oaat, md5) in cases {
            assert_eq!(one_at_a_time(input.as_bytes()), oaat, "{input}");
            assert_eq!(md5_word(input.as_bytes(), 0), md5, "{input}");
        }
    }

    #[test]
    fn weighted_point_counts_follow_the_float_arithmetic() {
        assert_eq!(weighted_points(1, 5, 5), 160);
        assert_eq!(weighted_points(1, 25, 25), 156);
        assert_eq!((weighted_points(1, 6, 3), weighted_points(2, 6, 3), weighted_points(3, 6, 3)), (80, 160, 240));
        assert_eq!((weighted_points(1, 3, 2), weighted_points(2, 3, 2)), (104, 212));
    }

    #[test]
    fn rendezvous_moves_only_the_removed_servers_keys() {
        let nodes: Vec<Node> = (0..3).map(|i| Node { host: "127.0.0.1".into(), port: 11211 + i, weight: 1 }).collect();
        let all = Ring::new(Distribution::Rendezvous, &nodes, &[0, 1, 2]);
        let without = Ring::new(Distribution::Rendezvous, &nodes, &[0, 2]);
        let mut seen = [0; 3];
        for k in 0..3000 {
            let key = format!("key{k}");
            let s = all.server_of(key.as_bytes()).unwrap();
            seen[s] += 1;
            if s != 1 {
                assert_eq!(without.server_of(key.as_bytes()), Some(s));
            }
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
    }
}
