//! The check of `after:INDEX` reads (read-your-writes at a log index): a read that asked
//! a node for the state at or after index I must report an applied index A ≥ I, and
//! return exactly the key's value in the state at A: the value of the last write to
//! the key at an index ≤ A. Writes are acknowledged with the index they took effect at,
//! so the check is exact for them; a write whose outcome is unknown has no index and
//! may stand anywhere, so its value is accepted wherever it could be current.
//!
//! Values are unique per write (as in the linearizability checker), and the workloads
//! that use this never delete: a key once written is never absent again.

use crate::linearizable::Value;
use std::collections::{HashMap, HashSet};

/// A write acknowledged at `index` (a put, or a compare-and-set that applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexedWrite {
    pub key: u32,
    pub value: Value,
    pub index: u64,
}

/// A read of `key` that asked for the state at or after `at_index`, and what came back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AfterRead {
    pub client: u32,
    pub key: u32,
    pub at_index: u64,
    /// The index the answering node had applied.
    pub applied_index: u64,
    pub value: Option<Value>,
    /// Which node answered, for the report.
    pub node: String,
}

/// Checks every read against the acknowledged writes and the values of writes whose
/// outcome is unknown (`unknown_values`: they may have taken effect at any index).
/// Returns one line per read that is wrong, saying why.
pub fn check(writes: &[IndexedWrite], unknown_values: &HashSet<Value>, reads: &[AfterRead]) -> Vec<String> {
    let mut by_key: HashMap<u32, Vec<(u64, Value)>> = HashMap::new();
    let mut index_of: HashMap<Value, u64> = HashMap::new();
    for write in writes {
        by_key.entry(write.key).or_default().push((write.index, write.value));
        index_of.insert(write.value, write.index);
    }
    for list in by_key.values_mut() {
        list.sort_unstable();
    }
    let mut problems = Vec::new();
    for read in reads {
        let said = |why: String| {
            format!(
                "client {} read k{} after:{} on {} (applied {}): got {:?}; {why}",
                read.client, read.key, read.at_index, read.node, read.applied_index, read.value
            )
        };
        if read.applied_index < read.at_index {
            problems.push(said("the node answered before applying the index asked for".into()));
            continue;
        }
        // The last acknowledged write to the key at or before the applied index.
        let latest = by_key
            .get(&read.key)
            .and_then(|list| list.iter().rev().find(|(index, _)| *index <= read.applied_index))
            .copied();
        match (read.value, latest) {
            (None, None) => {}
            (None, Some((index, value))) => {
                problems.push(said(format!("the key was written at index {index} (value {value})")));
            }
            (Some(value), latest) => match (index_of.get(&value), latest) {
                (Some(&index), _) if index > read.applied_index => {
                    problems.push(said(format!("that value was written at index {index}, after the state read")));
                }
                (Some(&index), Some((latest_index, latest_value))) if index < latest_index => problems.push(said(
                    format!("stale: written at index {index}, but {latest_value} was written at {latest_index}"),
                )),
                (Some(_), _) => {}
                (None, _) if unknown_values.contains(&value) => {}
                (None, _) => problems.push(said("no client wrote that value".into())),
            },
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(key: u32, value: Value, index: u64) -> IndexedWrite {
        IndexedWrite { key, value, index }
    }

    fn read(key: u32, at_index: u64, applied_index: u64, value: Option<Value>) -> AfterRead {
        AfterRead { client: 0, key, at_index, applied_index, value, node: "n1".into() }
    }

    fn history() -> Vec<IndexedWrite> {
        vec![write(0, 10, 5), write(0, 11, 8), write(1, 20, 6)]
    }

    /// Goal: reads that reflect the state at their applied index pass, including one
    /// that sees a write whose outcome was unknown.
    #[test]
    fn reads_of_the_state_at_their_index_pass() {
        let unknown = HashSet::from([12]);
        let reads = [
            read(0, 5, 5, Some(10)),
            read(0, 5, 7, Some(10)),
            read(0, 8, 9, Some(11)),
            read(0, 8, 9, Some(12)), // The unknown write may have taken effect at 9.
            read(1, 0, 3, None),
            read(1, 6, 6, Some(20)),
        ];
        assert_eq!(check(&history(), &unknown, &reads), Vec::<String>::new());
    }

    /// Goal: each kind of wrong read is caught, and says why.
    #[test]
    fn each_wrong_read_is_caught() {
        let unknown = HashSet::from([12]);
        let cases = [
            (read(0, 8, 7, Some(10)), "before applying"),
            (read(0, 8, 9, Some(10)), "stale"),
            (read(0, 5, 6, Some(11)), "after the state read"),
            (read(1, 6, 6, None), "was written at index 6"),
            (read(0, 5, 5, Some(99)), "no client wrote"),
        ];
        for (bad, why) in cases {
            let problems = check(&history(), &unknown, std::slice::from_ref(&bad));
            assert_eq!(problems.len(), 1, "{bad:?}: {problems:?}");
            assert!(problems[0].contains(why), "{bad:?}: {problems:?}");
        }
    }
}
