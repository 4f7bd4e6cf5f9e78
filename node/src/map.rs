//! The key-value map in memory: ordered by key, persistent (cloning it is O(1)), and
//! small per key.
//!
//! Persistent: a B+tree (imbl) whose clone shares every node until either side changes
//! one, and then only that node's path is copied, so the node loop hands a snapshot
//! writer the map as of one index without copying hundreds of thousands of keys first.
//!
//! Small: each key and its value live in one allocation (key length, key, value), and
//! the tree holds only a 16-byte pointer to it. A map of two `Vec<u8>`s held 48 bytes in
//! the tree and two allocations per key (about 310 bytes of resident memory per
//! 110-byte key and value, measured with `baton bench`); a Pi has 512 MiB to 4 GiB.

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

/// The replicated key-value map.
#[derive(Clone, Default)]
pub struct Map {
    pairs: imbl::OrdSet<Pair>,
    /// Key and value bytes held, summed.
    data_bytes: u64,
}

impl Map {
    pub fn new() -> Map {
        Map::default()
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Key and value bytes held, summed (what the map stores, not what it costs).
    pub fn data_bytes(&self) -> u64 {
        self.data_bytes
    }

    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.pairs.get(key).map(Pair::value)
    }

    /// Sets `key` to `value`, replacing any value it had.
    pub fn insert(&mut self, key: &[u8], value: &[u8]) {
        let pair = Pair::new(key, value);
        self.data_bytes += pair.data_bytes();
        if let Some(replaced) = self.pairs.insert(pair) {
            self.data_bytes -= replaced.data_bytes();
        }
    }

    /// Removes `key`; whether it was there.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        let removed = self.pairs.remove(key);
        if let Some(pair) = &removed {
            self.data_bytes -= pair.data_bytes();
        }
        removed.is_some()
    }

    /// Every key and its value, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.pairs.iter().map(|pair| (pair.key(), pair.value()))
    }
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
    }
}
