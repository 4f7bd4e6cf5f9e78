//! Simulated watch consumers and their checker. Each node serves watches with its own
//! code (`baton_host::watch`, fed from the node's log and state machine, as the driver
//! does); a consumer follows the client library's rules (`baton_node::watching`): it
//! watches one node from the index after the last one it saw complete, and when that
//! node crashes or freezes, it opens the watch again on another node from there. A
//! consumer whose watch is ended starts a new segment (after a scan, as `--snapshot`
//! does). The checker: every segment holds exactly the changes the model makes of the
//! final log in its index range, under its prefix, in order, each once — no gap and no
//! duplicate across every failover the run went through.

use baton_host::watch::{Batch, End, Sink, WatchId};
use std::collections::HashSet;

/// A change as the checker compares it: log index, key number, value (a write id;
/// `None`: deleted).
pub type ModelChange = (u64, u32, Option<u64>);

/// What a consumer got from one stretch of watching without an end.
#[derive(Clone, Debug, Default)]
pub struct Segment {
    pub from_index: u64,
    /// Complete through this index (`from_index - 1` before the first batch).
    pub through_index: u64,
    pub changes: Vec<ModelChange>,
}

/// One consumer of a watch.
#[derive(Clone, Debug)]
pub struct Consumer {
    pub prefix: Vec<u8>,
    /// The node it watches now: (node, that node's incarnation, the watch's id there).
    pub at: Option<(usize, u64, WatchId)>,
    pub segments: Vec<Segment>,
    /// How many times it opened its watch on a node.
    pub opens: u64,
}

impl Consumer {
    pub fn new(prefix: &[u8]) -> Consumer {
        let first = Segment { from_index: 1, through_index: 0, changes: Vec::new() };
        Consumer { prefix: prefix.to_vec(), at: None, segments: vec![first], opens: 0 }
    }

    /// The index to watch from next.
    pub fn next_index(&self) -> u64 {
        self.segments.last().expect("at least one").through_index + 1
    }

    /// A batch arrived.
    pub fn take(&mut self, batch: Batch) {
        let segment = self.segments.last_mut().expect("at least one");
        for change in batch.changes {
            let key = key_number(&change.key);
            segment.changes.push((change.index, key, change.value.as_deref().map(crate::sim::history::value_of)));
        }
        segment.through_index = batch.through_index;
    }

    /// The watch was ended: a new segment from `restart_at` (the index after a scan).
    pub fn ended(&mut self, end: End, restart_at: u64) {
        self.at = None;
        let restart_at = match end {
            End::Discarded { from_index } => {
                // What it saw from there is void; it watches again from there.
                let segment = self.segments.last_mut().expect("at least one");
                segment.changes.retain(|change| change.0 < from_index);
                segment.through_index = segment.through_index.min(from_index - 1);
                return;
            }
            End::Compacted { .. } => restart_at,
        };
        self.segments.push(Segment { from_index: restart_at, through_index: restart_at - 1, changes: Vec::new() });
    }
}

fn key_number(key: &[u8]) -> u32 {
    std::str::from_utf8(&key[1..]).ok().and_then(|n| n.parse().ok()).expect("keys are k<number>")
}

/// The sink a node's watchers deliver into during one turn.
pub struct TurnSink<'a> {
    /// Watches whose consumer has room this turn.
    pub room: &'a HashSet<WatchId>,
    pub delivered: Vec<(WatchId, Batch)>,
    pub ended: Vec<(WatchId, End)>,
}

impl Sink for TurnSink<'_> {
    fn has_room(&self, id: WatchId) -> bool {
        self.room.contains(&id)
    }

    fn deliver(&mut self, id: WatchId, batch: Batch) -> bool {
        self.delivered.push((id, batch));
        true
    }

    fn end(&mut self, id: WatchId, end: End) {
        self.ended.push((id, end));
    }
}

/// `None` when every segment of every consumer holds exactly the changes `expected`
/// (the model's, of the final log) in its range under its prefix, else the violation.
pub fn check(consumers: &[Consumer], expected: &[ModelChange]) -> Option<String> {
    for (number, consumer) in consumers.iter().enumerate() {
        let prefix = std::str::from_utf8(&consumer.prefix).unwrap_or("?");
        for segment in &consumer.segments {
            let wanted: Vec<ModelChange> = expected
                .iter()
                .filter(|(index, key, _)| {
                    (segment.from_index..=segment.through_index).contains(index)
                        && format!("k{key}").as_bytes().starts_with(&consumer.prefix)
                })
                .copied()
                .collect();
            if segment.changes != wanted {
                let first_difference = segment.changes.iter().zip(&wanted).position(|(got, want)| got != want);
                return Some(format!(
                    "watch consumer {number} (prefix {prefix:?}) got {} changes for indexes {}..={}, the final log \
                     makes {} (first difference at position {first_difference:?}: got {:?}, want {:?})",
                    segment.changes.len(),
                    segment.from_index,
                    segment.through_index,
                    wanted.len(),
                    first_difference.and_then(|at| segment.changes.get(at)),
                    first_difference.and_then(|at| wanted.get(at)),
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: the checker passes an exact stream and catches a gap, a duplicate and a
    /// wrong value.
    #[test]
    fn catches_gaps_duplicates_and_wrong_values() {
        let expected = vec![(2, 0, Some(10)), (3, 1, Some(11)), (5, 0, None)];
        let mut consumer = Consumer::new(b"");
        consumer.segments[0].changes = expected.clone();
        consumer.segments[0].through_index = 5;
        assert_eq!(check(std::slice::from_ref(&consumer), &expected), None);
        let mut only_k0 = Consumer::new(b"k0");
        only_k0.segments[0].changes = vec![(2, 0, Some(10)), (5, 0, None)];
        only_k0.segments[0].through_index = 9;
        assert_eq!(check(&[only_k0], &expected), None);
        let bad_streams = [
            vec![(2, 0, Some(10)), (5, 0, None)],                                     // a gap
            vec![(2, 0, Some(10)), (3, 1, Some(11)), (3, 1, Some(11)), (5, 0, None)], // a duplicate
            vec![(2, 0, Some(10)), (3, 1, Some(12)), (5, 0, None)],                   // a wrong value
        ];
        for bad in bad_streams {
            let mut wrong = consumer.clone();
            wrong.segments[0].changes = bad.clone();
            assert!(check(&[wrong], &expected).is_some(), "{bad:?} passed");
        }
    }
}
