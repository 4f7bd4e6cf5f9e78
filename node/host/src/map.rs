//! The key-value map in memory: ordered by key, persistent (cloning it is O(1)), and
//! small per key.
//!
//! Persistent: sorted chunks shared between clones until one side changes a chunk, so
//! the node loop hands a snapshot writer the map as of one index without copying
//! hundreds of thousands of keys first.
//!
//! Small: each key and its value live in one allocation (key length, key, value), and
//! a chunk holds only a 16-byte pointer to it. A persistent B-tree of two `Vec<u8>`s
//! held 48 bytes per key in its nodes and two allocations per key (about 310 bytes of
//! resident memory per 110-byte key and value, measured with `baton bench`); a Pi has
//! 512 MiB to 4 GiB.

use std::borrow::Borrow;

/// Bytes of the key length at the front of a pair.
const KEY_LENGTH_BYTES: usize = 2;

/// One key and its value in one allocation: key length (u16, little endian), key, value.
#[derive(Clone)]
struct Pair(Box<[u8]>);

impl Pair {
    fn new(key: &[u8], value: &[u8]) -> Pair {
        let key_length = u16::try_from(key.len()).expect("keys are bounded far below 64 KiB");
        let mut bytes = Vec::with_capacity(KEY_LENGTH_BYTES + key.len() + value.len());
        bytes.extend_from_slice(&key_length.to_le_bytes());
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(value);
        Pair(bytes.into_boxed_slice())
    }

    fn key_end(&self) -> usize {
        KEY_LENGTH_BYTES + usize::from(u16::from_le_bytes([self.0[0], self.0[1]]))
    }

    fn key(&self) -> &[u8] {
        &self.0[KEY_LENGTH_BYTES..self.key_end()]
    }

    fn value(&self) -> &[u8] {
        &self.0[self.key_end()..]
    }

    /// Key and value bytes, without the length.
    fn data_bytes(&self) -> u64 {
        (self.0.len() - KEY_LENGTH_BYTES) as u64
    }
}

// Pairs are ordered and found by their key alone (consistent with `Borrow<[u8]>`).
impl PartialEq for Pair {
    fn eq(&self, other: &Pair) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Pair {}

impl PartialOrd for Pair {
    fn partial_cmp(&self, other: &Pair) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pair {
    fn cmp(&self, other: &Pair) -> std::cmp::Ordering {
        self.key().cmp(other.key())
    }
}

impl Borrow<[u8]> for Pair {
    fn borrow(&self) -> &[u8] {
        self.key()
    }
}

/// Pairs per chunk at most; a fuller chunk splits in two halves.
const CHUNK_PAIRS_MAX: usize = 256;
/// A chunk emptier than this after a removal merges with its neighbour where they fit.
const CHUNK_PAIRS_MIN: usize = CHUNK_PAIRS_MAX / 4;
/// Bytes of a chunk's first key kept beside its pointer, so finding the chunk for a key
/// compares in place instead of following three pointers per step (17 % of a node's CPU
/// under load before).
const HEAD_BYTES: usize = 23;

/// A chunk, and the start of its first key (a whole key up to `HEAD_BYTES`).
#[derive(Clone)]
struct ChunkRef {
    head: [u8; HEAD_BYTES],
    /// The first key's length if it fits in `head`, else `HEAD_BYTES + 1`.
    head_len: u8,
    pairs: std::sync::Arc<Vec<Pair>>,
}

impl ChunkRef {
    fn new(pairs: Vec<Pair>) -> ChunkRef {
        let mut chunk = ChunkRef { head: [0; HEAD_BYTES], head_len: 0, pairs: std::sync::Arc::new(pairs) };
        chunk.refresh_head();
        chunk
    }

    /// Called whenever the first pair may have changed.
    fn refresh_head(&mut self) {
        let first = self.pairs[0].key();
        let kept = first.len().min(HEAD_BYTES);
        self.head = [0; HEAD_BYTES];
        self.head[..kept].copy_from_slice(&first[..kept]);
        self.head_len = if first.len() <= HEAD_BYTES { first.len() as u8 } else { HEAD_BYTES as u8 + 1 };
    }

    /// This chunk's first key against `key`.
    fn first_key_cmp(&self, key: &[u8]) -> std::cmp::Ordering {
        if usize::from(self.head_len) <= HEAD_BYTES {
            return self.head[..usize::from(self.head_len)].cmp(key);
        }
        // The first key is longer than the head: decide on the head where it can.
        match self.head[..].cmp(&key[..key.len().min(HEAD_BYTES)]) {
            std::cmp::Ordering::Equal if key.len() > HEAD_BYTES => self.pairs[0].key().cmp(key),
            std::cmp::Ordering::Equal => std::cmp::Ordering::Greater, // `key` is a prefix of it.
            other => other,
        }
    }

    fn pairs_mut(&mut self) -> &mut Vec<Pair> {
        std::sync::Arc::make_mut(&mut self.pairs)
    }
}

/// The replicated key-value map: sorted chunks of pairs, each shared until changed.
///
/// Cloning copies one 32-byte entry per chunk (about 5,000 for a million keys) and
/// shares every chunk; a change then copies only the chunk it touches (4 KiB), once per
/// clone. A persistent B-tree (imbl 7, used before) cost about 55 bytes of tree per
/// key, its branch keys being full copies of pairs; this layout costs about 30.
/// Measured for a million 113-byte pairs in a program of their own: 183 bytes of
/// resident memory per pair with the tree, 158 with chunks.
#[derive(Clone, Default)]
pub struct Map {
    /// Non-empty chunks, each sorted, all in key order.
    chunks: Vec<ChunkRef>,
    len: usize,
    /// Key and value bytes held, summed.
    data_bytes: u64,
}

impl Map {
    pub fn new() -> Map {
        Map::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Key and value bytes held, summed (what the map stores, not what it costs).
    pub fn data_bytes(&self) -> u64 {
        self.data_bytes
    }

    /// The chunk that holds `key` if any does: the last whose first key is not after it.
    fn chunk_for(&self, key: &[u8]) -> usize {
        self.chunks.partition_point(|chunk| chunk.first_key_cmp(key).is_le()).saturating_sub(1)
    }

    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        let chunk = self.chunks.get(self.chunk_for(key))?;
        let at = chunk.pairs.binary_search_by(|pair| pair.key().cmp(key)).ok()?;
        Some(chunk.pairs[at].value())
    }

    /// Sets `key` to `value`, replacing any value it had.
    pub fn insert(&mut self, key: &[u8], value: &[u8]) {
        let pair = Pair::new(key, value);
        self.data_bytes += pair.data_bytes();
        if self.chunks.is_empty() {
            self.chunks.push(ChunkRef::new(new_chunk(vec![pair])));
            self.len = 1;
            return;
        }
        let index = self.chunk_for(key);
        let chunk = &mut self.chunks[index];
        match chunk.pairs.binary_search_by(|held| held.key().cmp(key)) {
            Ok(at) => {
                let replaced = std::mem::replace(&mut chunk.pairs_mut()[at], pair);
                self.data_bytes -= replaced.data_bytes();
                return;
            }
            Err(at) => {
                chunk.pairs_mut().insert(at, pair);
                if at == 0 {
                    chunk.refresh_head();
                }
            }
        }
        self.len += 1;
        if chunk.pairs.len() > CHUNK_PAIRS_MAX {
            let upper = new_chunk(chunk.pairs_mut().drain(CHUNK_PAIRS_MAX / 2..).collect());
            self.chunks.insert(index + 1, ChunkRef::new(upper));
        }
    }

    /// Removes `key`; whether it was there.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        let index = self.chunk_for(key);
        let Some(chunk) = self.chunks.get_mut(index) else { return false };
        let Ok(at) = chunk.pairs.binary_search_by(|held| held.key().cmp(key)) else { return false };
        self.data_bytes -= chunk.pairs_mut().remove(at).data_bytes();
        self.len -= 1;
        if chunk.pairs.is_empty() {
            self.chunks.remove(index);
            return true;
        }
        if at == 0 {
            chunk.refresh_head();
        }
        if chunk.pairs.len() < CHUNK_PAIRS_MIN {
            // Merge with the next chunk (or the one before) when both fit in one.
            let (first, second) =
                if index + 1 < self.chunks.len() { (index, index + 1) } else { (index.saturating_sub(1), index) };
            if first != second && self.chunks[first].pairs.len() + self.chunks[second].pairs.len() <= CHUNK_PAIRS_MAX {
                let taken = std::sync::Arc::unwrap_or_clone(self.chunks.remove(second).pairs);
                self.chunks[first].pairs_mut().extend(taken);
            }
        }
        true
    }

    /// Every key and its value, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.chunks.iter().flat_map(|chunk| chunk.pairs.iter()).map(|pair| (pair.key(), pair.value()))
    }

    /// Every key from `start` on (`start` itself if present) and its value, in key order.
    pub fn iter_from<'a>(&'a self, start: &[u8]) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let index = self.chunk_for(start);
        let skip = self.chunks.get(index).map_or(0, |chunk| chunk.pairs.partition_point(|pair| pair.key() < start));
        self.chunks[index.min(self.chunks.len())..]
            .iter()
            .flat_map(|chunk| chunk.pairs.iter())
            .skip(skip)
            .map(|pair| (pair.key(), pair.value()))
    }

    /// Every invariant the map keeps.
    #[cfg(test)]
    fn check(&self) {
        assert!(self.chunks.iter().all(|chunk| !chunk.pairs.is_empty() && chunk.pairs.len() <= CHUNK_PAIRS_MAX));
        assert!(self.chunks.iter().all(|chunk| chunk.first_key_cmp(chunk.pairs[0].key()).is_eq()), "heads");
        assert_eq!(self.chunks.iter().map(|chunk| chunk.pairs.len()).sum::<usize>(), self.len);
        let keys: Vec<&[u8]> = self.iter().map(|(key, _)| key).collect();
        assert!(keys.windows(2).all(|pair| pair[0] < pair[1]), "keys in strict order");
        assert_eq!(self.iter().map(|(key, value)| (key.len() + value.len()) as u64).sum::<u64>(), self.data_bytes);
    }
}

/// A chunk's vector, with room for a whole chunk from the start: it never reallocates,
/// and its slack is bounded by the split rule, not by a doubling capacity.
fn new_chunk(pairs: Vec<Pair>) -> Vec<Pair> {
    let mut chunk = Vec::with_capacity(CHUNK_PAIRS_MAX + 1);
    chunk.extend(pairs);
    chunk
}

impl<K: AsRef<[u8]>, V: AsRef<[u8]>> FromIterator<(K, V)> for Map {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Map {
        let mut map = Map::new();
        for (key, value) in pairs {
            map.insert(key.as_ref(), value.as_ref());
        }
        map
    }
}

impl PartialEq for Map {
    fn eq(&self, other: &Map) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Map {}

impl std::fmt::Debug for Map {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_map().entries(self.iter().take(16)).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: the map behaves as an ordered map of byte strings (replace, remove, order,
    /// empty keys and values), counts its bytes, and a clone is unaffected by later
    /// changes to the original.
    #[test]
    fn behaves_as_an_ordered_map_and_counts_its_bytes() {
        let mut map = Map::new();
        map.insert(b"b", b"2");
        map.insert(b"a", b"1");
        map.insert(b"", b"");
        map.insert(b"b", b"two");
        assert_eq!(map.get(b"b"), Some(&b"two"[..]));
        assert_eq!(map.get(b""), Some(&b""[..]));
        assert_eq!(map.get(b"c"), None);
        assert_eq!(map.len(), 3);
        assert_eq!(map.data_bytes(), 1 + 1 + 1 + 3);
        let snapshot = map.clone();
        assert!(map.remove(b"a"));
        assert!(!map.remove(b"a"));
        assert_eq!(map.data_bytes(), 4);
        let keys: Vec<&[u8]> = snapshot.iter().map(|(key, _)| key).collect();
        assert_eq!(keys, [&b""[..], b"a", b"b"]);
        assert_eq!(snapshot.get(b"a"), Some(&b"1"[..]));
        let rebuilt: Map = snapshot.iter().collect();
        assert_eq!(rebuilt, snapshot);
        assert_ne!(rebuilt, map);
        map.check();
        snapshot.check();
    }

    /// Goal: under thousands of random inserts, replacements and removals (enough to
    /// split and merge chunks many times), the map equals a `BTreeMap` doing the same,
    /// keeps its invariants, and a clone taken midway is untouched by what follows.
    #[test]
    fn matches_a_btreemap_under_random_changes_and_from_any_key() {
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        let mut random = move |below: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % below
        };
        let (mut map, mut model) = (Map::new(), std::collections::BTreeMap::<Vec<u8>, Vec<u8>>::new());
        let mut frozen = None;
        for step in 0..40_000u64 {
            // Keys shorter and longer than a chunk's head, some sharing long prefixes.
            let number = random(3_000);
            let key = match number % 3 {
                0 => format!("k{number}"),
                1 => format!("a-key-with-a-long-shared-prefix-{number}"),
                _ => format!("a-key-with-a-long-shared-{number}"),
            }
            .into_bytes();
            if random(3) == 0 {
                assert_eq!(map.remove(&key), model.remove(&key).is_some());
            } else {
                let value = vec![step as u8; random(40) as usize];
                map.insert(&key, &value);
                model.insert(key.clone(), value);
            }
            assert_eq!(map.get(&key), model.get(&key).map(Vec::as_slice));
            if step == 20_000 {
                frozen = Some((map.clone(), model.clone()));
            }
        }
        map.check();
        assert!(map.chunks.len() > 3, "the test splits chunks");
        assert!(map.iter().eq(model.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))));
        for start in ["", "a-key-with-a-long-shared-1", "k15", "k1500", "k99999", "zzz"] {
            let from = model.range(start.as_bytes().to_vec()..).map(|(k, v)| (k.as_slice(), v.as_slice()));
            assert!(map.iter_from(start.as_bytes()).eq(from), "from {start}");
        }
        assert_eq!(Map::new().iter_from(b"x").count(), 0);
        let (frozen_map, frozen_model) = frozen.unwrap();
        frozen_map.check();
        assert!(frozen_map.iter().eq(frozen_model.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))));
    }
}
