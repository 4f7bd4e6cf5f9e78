//! The replicated state machine: a key-value map. Log payloads are postcard-encoded
//! [`Command`]s; an empty payload is a leader's no-op. Applying is deterministic, so
//! every replica that applies the same log holds the same map.

use crate::storage::snapshot::Map;
use serde::{Deserialize, Serialize};

/// A log entry's command. It looks like the client's `frame::Request` writes but is a
/// contract of its own (the log on disk, not the wire), so each changes on its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Command {
    Put {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    } = 0,
    Delete {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    } = 1,
    Cas {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        expected: Option<Vec<u8>>,
        #[serde(with = "serde_bytes")]
        new: Option<Vec<u8>>,
    } = 2,
}

impl Command {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("commands always serialize")
    }
}

/// What applying one entry did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    Noop,
    Done,
    CasMismatch {
        current: Option<Vec<u8>>,
    },
    /// The payload did not decode: it is skipped on every replica alike.
    Undecodable,
}

#[derive(Debug, Default)]
pub struct Kv {
    map: Map,
    applied_index: u64,
}

impl Kv {
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key)
    }

    /// Key and value bytes held (see [`Map::data_bytes`]).
    pub fn data_bytes(&self) -> u64 {
        self.map.data_bytes()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Applies the entry at `index`, which must be the next one.
    pub fn apply(&mut self, index: u64, payload: &[u8]) -> Applied {
        assert_eq!(index, self.applied_index + 1, "entries apply in order");
        self.applied_index = index;
        if payload.is_empty() {
            return Applied::Noop;
        }
        let Ok(command) = postcard::from_bytes::<Command>(payload) else { return Applied::Undecodable };
        match command {
            Command::Put { key, value } => {
                self.map.insert(&key, &value);
                Applied::Done
            }
            Command::Delete { key } => {
                self.map.remove(&key);
                Applied::Done
            }
            Command::Cas { key, expected, new } => {
                let current = self.map.get(&key).map(<[u8]>::to_vec);
                if current != expected {
                    return Applied::CasMismatch { current };
                }
                match new {
                    Some(value) => self.map.insert(&key, &value),
                    None => {
                        self.map.remove(&key);
                    }
                }
                Applied::Done
            }
        }
    }

    /// The map as of `applied_index`, from a snapshot.
    pub fn from_snapshot(applied_index: u64, map: Map) -> Kv {
        Kv { map, applied_index }
    }

    /// The whole map, for writing a snapshot: clone it (O(1), see [`Map`]) and write
    /// the clone off the node loop.
    pub fn map(&self) -> &Map {
        &self.map
    }

    /// Starts over from nothing (before replaying the log from the start).
    pub fn reset(&mut self) {
        *self = Kv::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: put, delete and compare-and-set behave, in log order.
    #[test]
    fn commands_apply_in_order() {
        let mut kv = Kv::default();
        assert_eq!(kv.apply(1, &[]), Applied::Noop);
        assert_eq!(kv.apply(2, &Command::Put { key: b"a".to_vec(), value: b"1".to_vec() }.encode()), Applied::Done);
        let cas = Command::Cas { key: b"a".to_vec(), expected: Some(b"0".to_vec()), new: Some(b"2".to_vec()) };
        assert_eq!(kv.apply(3, &cas.encode()), Applied::CasMismatch { current: Some(b"1".to_vec()) });
        let cas = Command::Cas { key: b"a".to_vec(), expected: Some(b"1".to_vec()), new: Some(b"2".to_vec()) };
        assert_eq!(kv.apply(4, &cas.encode()), Applied::Done);
        assert_eq!(kv.get(b"a"), Some(&b"2"[..]));
        assert_eq!(kv.apply(5, &Command::Delete { key: b"a".to_vec() }.encode()), Applied::Done);
        assert_eq!(kv.get(b"a"), None);
        assert_eq!(kv.apply(6, &[0xff, 0xff]), Applied::Undecodable);
        assert_eq!(kv.applied_index(), 6);
    }
}
