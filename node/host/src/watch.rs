//! Watches: a consumer asks for every change under a key prefix from a log index on,
//! and gets them in log order, each once, from the node's applied log, then live.
//!
//! A watcher is a position in the log (`next_index`) and a prefix. Each turn of the node
//! loop [`Watchers::pump`] moves every watcher that has room on from its position: it
//! skips, without reading them, the entries that changed nothing (see
//! [`crate::changed`]), reads the others from the log, and hands the ones under the
//! prefix to the sink in a batch that says how far it is complete (`through_index`).
//! A watcher with no room stays where it is: a slow consumer never slows the node, it
//! only falls behind, and catches up from the log later. What it can never do is
//! silently miss a change: once the entries it needs are compacted away (or, in async
//! mode, discarded), it is ended with the reason and the index to start again from.
//! Nothing here does I/O: the driver supplies the log and the sink.

use crate::changed::ChangedBits;
use crate::kv::Command;
use std::collections::BTreeMap;

/// Watchers a node serves at once.
pub const WATCHERS_MAX: usize = 32;
/// Changes in one batch at most.
pub const BATCH_CHANGES_MAX: usize = 256;
/// Key and value bytes in one batch: a batch is closed once it holds this many.
pub const BATCH_BYTES_MAX: usize = 64 * 1024;
/// Log entries one watcher examines per turn at most, so catching up from far back
/// never holds the node loop for long.
pub const ENTRIES_PER_TURN_MAX: u64 = 4_096;
/// A watcher that got nothing for this long gets a batch of no changes that says how
/// far it is complete: the consumer tells "quiet" from "stalled" by it.
pub const PROGRESS_INTERVAL_US: u64 = 1_000_000;

/// A watcher's number on its node.
pub type WatchId = u64;

/// One change to the map: the key was set to `value` (`None`: deleted) by the entry at
/// `index` of `term`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub index: u64,
    pub term: u64,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// Changes for one watcher, complete through `through_index`: every change under its
/// prefix up to that index is in this batch or an earlier one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub changes: Vec<Change>,
    pub through_index: u64,
}

/// Why a watcher was ended. Each says where a consumer may start again without a gap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The entries from `next_index` on are no longer held here (compacted into a
    /// snapshot): read the keys as of an index M (a scan) and watch from M + 1, or
    /// from `oldest_index` on if a gap is acceptable.
    Compacted { next_index: u64, oldest_index: u64 },
    /// This node discarded the entries from `from_index` on (async mode: they were never
    /// acknowledged under a mode that keeps them), and the watcher may have seen some:
    /// what it saw from there on is void. Watch again from `from_index`.
    Discarded { from_index: u64 },
}

/// Why a watch was not opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The node serves [`WATCHERS_MAX`] watchers already.
    TooMany { max: usize },
}

/// Where batches go: the driver's channels, or a model in tests.
pub trait Sink {
    /// Whether the watcher's consumer can take another batch now.
    fn has_room(&self, id: WatchId) -> bool;
    /// Hands over a batch; `false`: the consumer is gone (the watcher is dropped).
    fn deliver(&mut self, id: WatchId, batch: Batch) -> bool;
    /// The watcher is ended (always delivered, after the batches before it).
    fn end(&mut self, id: WatchId, end: End);
}

/// What [`Watchers::pump`] reads the log through: an entry's term and payload.
pub trait Log {
    fn entry(&self, index: u64) -> Option<(u64, Vec<u8>)>;
}

impl<F: Fn(u64) -> Option<(u64, Vec<u8>)>> Log for F {
    fn entry(&self, index: u64) -> Option<(u64, Vec<u8>)> {
        self(index)
    }
}

/// The change an applied entry made, if it changed the map (`changed`, from
/// [`ChangedBits`]): a put, a delete of a present key, or a compare-and-set that
/// matched, in a session or not.
pub fn change_of(index: u64, term: u64, payload: &[u8], changed: bool) -> Option<Change> {
    if !changed || payload.is_empty() {
        return None;
    }
    let command = postcard::from_bytes::<Command>(payload).ok()?;
    let (key, value) = match command.write() {
        Command::Put { key, value } => (key.clone(), Some(value.clone())),
        Command::Delete { key } => (key.clone(), None),
        Command::Cas { key, new, .. } => (key.clone(), new.clone()),
        Command::Revoke { .. }
        | Command::Session { .. }
        | Command::SessionById { .. }
        | Command::SessionByNumber { .. }
        | Command::Members(_) => return None,
    };
    Some(Change { index, term, key, value })
}

#[derive(Clone, Debug)]
struct Watcher {
    prefix: Vec<u8>,
    /// The index it started from.
    start_index: u64,
    /// The next log index to examine for it.
    next_index: u64,
    /// When it was last handed a batch (`None`: never, so the first turn tells it
    /// where it stands, even with nothing to report).
    last_batch_at_us: Option<u64>,
}

impl Watcher {
    /// Whether it should hear from the node now even with nothing to report.
    fn progress_due(&self, now_us: u64) -> bool {
        self.last_batch_at_us.is_none_or(|at| now_us.saturating_sub(at) >= PROGRESS_INTERVAL_US)
    }
}

/// What the node's watchers have done since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub opened: u64,
    pub refused: u64,
    pub changes_delivered: u64,
    pub ended_compacted: u64,
    pub ended_discarded: u64,
}

/// Every watcher on this node.
#[derive(Debug, Default)]
pub struct Watchers {
    watchers: BTreeMap<WatchId, Watcher>,
    next_id: WatchId,
    counters: Counters,
}

impl Watchers {
    pub fn new() -> Watchers {
        Watchers::default()
    }

    pub fn len(&self) -> usize {
        self.watchers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.watchers.is_empty()
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Opens a watch of `prefix` from `from_index` (0: from the next entry this node
    /// applies, `applied_index + 1`).
    pub fn open(&mut self, prefix: Vec<u8>, from_index: u64, applied_index: u64) -> Result<WatchId, Refusal> {
        if self.watchers.len() >= WATCHERS_MAX {
            self.counters.refused += 1;
            return Err(Refusal::TooMany { max: WATCHERS_MAX });
        }
        let next_index = if from_index == 0 { applied_index + 1 } else { from_index };
        self.next_id += 1;
        self.watchers
            .insert(self.next_id, Watcher { prefix, start_index: next_index, next_index, last_batch_at_us: None });
        self.counters.opened += 1;
        Ok(self.next_id)
    }

    /// The consumer went away.
    pub fn close(&mut self, id: WatchId) {
        self.watchers.remove(&id);
    }

    /// The watchers with applied entries left to examine (with room, the node should
    /// turn again soon rather than wait for new input).
    pub fn behind(&self, applied_index: u64) -> impl Iterator<Item = WatchId> + '_ {
        self.watchers.iter().filter(move |(_, watcher)| watcher.next_index <= applied_index).map(|(id, _)| *id)
    }

    /// Entries from `from_index` on were discarded (async mode) after being applied:
    /// every watcher that may have seen one is ended.
    pub fn on_discarded(&mut self, from_index: u64, sink: &mut impl Sink) {
        let saw_one = |watcher: &Watcher| watcher.next_index > from_index.max(watcher.start_index);
        let ended: Vec<WatchId> = self.watchers.iter().filter(|(_, w)| saw_one(w)).map(|(id, _)| *id).collect();
        for id in ended {
            self.watchers.remove(&id);
            self.counters.ended_discarded += 1;
            sink.end(id, End::Discarded { from_index });
        }
    }

    /// Moves every watcher with room on through the applied log. `oldest_index`: the
    /// oldest entry both the log and `changed` still hold.
    pub fn pump(
        &mut self,
        now_us: u64,
        applied_index: u64,
        oldest_index: u64,
        changed: &ChangedBits,
        log: &impl Log,
        sink: &mut impl Sink,
    ) {
        let oldest_index = oldest_index.max(changed.first_index());
        let mut ended = Vec::new();
        let mut gone = Vec::new();
        for (&id, watcher) in &mut self.watchers {
            if watcher.next_index < oldest_index {
                // Also when it has no room: a stalled consumer is cut off here.
                ended.push((id, End::Compacted { next_index: watcher.next_index, oldest_index }));
                continue;
            }
            if !sink.has_room(id) {
                continue;
            }
            if watcher.next_index > applied_index + 1 {
                // Not applied here yet (a lagging node, a rebuild, a start ahead): say
                // so now and then, so the consumer knows the node is alive.
                if watcher.progress_due(now_us) {
                    watcher.last_batch_at_us = Some(now_us);
                    let mark = Batch { changes: Vec::new(), through_index: watcher.next_index - 1 };
                    if !sink.deliver(id, mark) {
                        gone.push(id);
                    }
                }
                continue;
            }
            let Some(batch) = next_batch(watcher, applied_index, changed, log) else {
                ended.push((id, End::Compacted { next_index: watcher.next_index, oldest_index: applied_index + 1 }));
                continue;
            };
            let advanced = batch.through_index + 1 > watcher.next_index;
            let progress_due = watcher.progress_due(now_us);
            watcher.next_index = batch.through_index + 1;
            if batch.changes.is_empty() && !(progress_due && (advanced || watcher.next_index == applied_index + 1)) {
                continue; // Nothing to say yet.
            }
            self.counters.changes_delivered += batch.changes.len() as u64;
            watcher.last_batch_at_us = Some(now_us);
            if !sink.deliver(id, batch) {
                gone.push(id);
            }
        }
        for id in gone {
            self.watchers.remove(&id);
        }
        for (id, end) in ended {
            self.watchers.remove(&id);
            self.counters.ended_compacted += 1;
            sink.end(id, end);
        }
    }
}

/// The watcher's next batch, from its position through at most the applied index;
/// `None` if an entry that changed the map is missing from the log.
fn next_batch(watcher: &Watcher, applied_index: u64, changed: &ChangedBits, log: &impl Log) -> Option<Batch> {
    let mut batch = Batch { changes: Vec::new(), through_index: watcher.next_index - 1 };
    let last = applied_index.min(watcher.next_index + ENTRIES_PER_TURN_MAX - 1);
    let mut bytes = 0;
    for index in watcher.next_index..=last {
        if changed.changed(index)? {
            let (term, payload) = log.entry(index)?;
            if let Some(change) = change_of(index, term, &payload, true) {
                if change.key.starts_with(&watcher.prefix) {
                    bytes += change.key.len() + change.value.as_ref().map_or(0, Vec::len);
                    batch.changes.push(change);
                }
            }
        }
        batch.through_index = index;
        if batch.changes.len() >= BATCH_CHANGES_MAX || bytes >= BATCH_BYTES_MAX {
            break;
        }
    }
    Some(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::Kv;
    use std::collections::{BTreeMap, HashSet};

    /// A model consumer per watcher: what it got, its room, whether it is gone.
    #[derive(Default)]
    struct Consumers {
        got: BTreeMap<WatchId, Vec<Batch>>,
        ended: BTreeMap<WatchId, End>,
        full: HashSet<WatchId>,
        gone: HashSet<WatchId>,
    }

    impl Sink for Consumers {
        fn has_room(&self, id: WatchId) -> bool {
            !self.full.contains(&id)
        }
        fn deliver(&mut self, id: WatchId, batch: Batch) -> bool {
            self.got.entry(id).or_default().push(batch);
            !self.gone.contains(&id)
        }
        fn end(&mut self, id: WatchId, end: End) {
            self.ended.insert(id, end);
        }
    }

    impl Consumers {
        fn changes(&self, id: WatchId) -> Vec<(u64, Vec<u8>, Option<Vec<u8>>)> {
            let batches = self.got.get(&id).map(Vec::as_slice).unwrap_or_default();
            batches.iter().flat_map(|b| b.changes.iter()).map(|c| (c.index, c.key.clone(), c.value.clone())).collect()
        }
    }

    /// A log and the state machine applied from it.
    struct Node {
        log: Vec<(u64, Vec<u8>)>,
        kv: Kv,
    }

    impl Node {
        fn new() -> Node {
            Node { log: Vec::new(), kv: Kv::default() }
        }
        fn apply(&mut self, command: Command) {
            let payload = command.encode();
            self.log.push((1, payload.clone()));
            let index = self.log.len() as u64;
            self.kv.apply(index, 1, &payload);
        }
        fn entry(&self) -> impl Fn(u64) -> Option<(u64, Vec<u8>)> + '_ {
            |index| self.log.get(index.checked_sub(1)? as usize).cloned()
        }
    }

    fn put(key: &str, value: &str) -> Command {
        Command::Put { key: key.into(), value: value.into() }
    }

    /// Goal: a watcher gets exactly the changes under its prefix, in order, from the
    /// index it asked for: puts, deletes of present keys, compare-and-sets that matched;
    /// never a delete of a missing key, a cas that did not match, or a duplicate
    /// session write. A watch from 0 starts at the next applied entry.
    #[test]
    fn a_watcher_gets_each_change_under_its_prefix_once_in_order() {
        let mut node = Node::new();
        let mut watchers = Watchers::new();
        let mut sink = Consumers::default();
        let all = watchers.open(b"a/".to_vec(), 1, 0).unwrap();
        node.apply(put("a/1", "x"));
        node.apply(put("b/1", "y"));
        node.apply(Command::Delete { key: b"a/missing".to_vec() });
        node.apply(Command::Cas { key: b"a/1".to_vec(), expected: Some(b"wrong".to_vec()), new: None });
        node.apply(Command::Cas { key: b"a/1".to_vec(), expected: Some(b"x".to_vec()), new: Some(b"z".to_vec()) });
        let session =
            |seq| Command::Session { id: [7; 16], seq, acked_seq: 0, at_ms: 1, write: Box::new(put("a/2", "s")) };
        node.apply(session(1));
        node.apply(session(1)); // Resent: a duplicate, not applied again.
        let later = watchers.open(b"a/".to_vec(), 0, node.kv.applied_index()).unwrap();
        node.apply(Command::Delete { key: b"a/1".to_vec() });
        watchers.pump(0, node.kv.applied_index(), 1, node.kv.changed(), &node.entry(), &mut sink);
        let expected = vec![
            (1, b"a/1".to_vec(), Some(b"x".to_vec())),
            (5, b"a/1".to_vec(), Some(b"z".to_vec())),
            (6, b"a/2".to_vec(), Some(b"s".to_vec())),
            (8, b"a/1".to_vec(), None),
        ];
        assert_eq!(sink.changes(all), expected);
        assert_eq!(sink.changes(later), expected[3..]);
        assert_eq!(sink.got[&all].last().unwrap().through_index, 8);
        // Nothing new: nothing delivered until a progress mark is due.
        watchers.pump(10, 8, 1, node.kv.changed(), &node.entry(), &mut sink);
        assert_eq!(sink.got[&all].len(), 1);
        watchers.pump(PROGRESS_INTERVAL_US, 8, 1, node.kv.changed(), &node.entry(), &mut sink);
        assert_eq!(sink.got[&all].last().unwrap(), &Batch { changes: vec![], through_index: 8 });
    }

    /// Goal: a watcher with no room does not move; once it has room it gets what it
    /// missed, from the log, without a gap; one whose next entry was compacted away is
    /// ended with the index it needed and the oldest one held, never skipped ahead.
    #[test]
    fn a_slow_watcher_catches_up_or_is_ended_explicitly() {
        let mut node = Node::new();
        let mut watchers = Watchers::new();
        let mut sink = Consumers::default();
        let slow = watchers.open(Vec::new(), 1, 0).unwrap();
        sink.full.insert(slow);
        for i in 0..10_000 {
            node.apply(put(&format!("k{i}"), "v"));
        }
        watchers.pump(0, 10_000, 1, node.kv.changed(), &node.entry(), &mut sink);
        assert!(sink.got.is_empty() && watchers.behind(10_000).next().is_some());
        sink.full.clear();
        while watchers.behind(10_000).next().is_some() {
            watchers.pump(0, 10_000, 1, node.kv.changed(), &node.entry(), &mut sink);
        }
        let indexes: Vec<u64> = sink.changes(slow).iter().map(|c| c.0).collect();
        assert_eq!(indexes, (1..=10_000).collect::<Vec<_>>(), "every change once, in order");
        assert!(sink.got[&slow].iter().all(|b| b.changes.len() <= BATCH_CHANGES_MAX));

        let behind = watchers.open(Vec::new(), 500, 10_000).unwrap();
        sink.full.insert(behind); // A stalled consumer is ended too.
        node.kv.forget_changes_before(1_000);
        watchers.pump(0, 10_000, 900, node.kv.changed(), &node.entry(), &mut sink);
        assert_eq!(sink.ended[&behind], End::Compacted { next_index: 500, oldest_index: 961 });
        assert!(!sink.got.contains_key(&behind), "nothing after the gap");
        assert_eq!(watchers.len(), 1);
    }

    /// Goal: discarded entries end exactly the watchers that may have seen them; a
    /// consumer that went away is dropped; the limit on watchers holds.
    #[test]
    fn discards_gone_consumers_and_the_limit() {
        let mut node = Node::new();
        let mut watchers = Watchers::new();
        let mut sink = Consumers::default();
        let early = watchers.open(Vec::new(), 1, 0).unwrap();
        for i in 0..5 {
            node.apply(put(&format!("k{i}"), "v"));
        }
        let late = watchers.open(Vec::new(), 10, 5).unwrap();
        watchers.pump(0, 5, 1, node.kv.changed(), &node.entry(), &mut sink);
        let mark = Batch { changes: vec![], through_index: 9 };
        assert_eq!(sink.got[&late], [mark], "a watch from ahead hears the node is alive");
        watchers.on_discarded(4, &mut sink);
        assert_eq!(sink.ended.get(&early), Some(&End::Discarded { from_index: 4 }));
        assert_eq!(sink.ended.get(&late), None, "it saw nothing yet");
        sink.gone.insert(late);
        for i in 5..10 {
            node.apply(put(&format!("k{i}"), "v"));
        }
        watchers.pump(0, 10, 1, node.kv.changed(), &node.entry(), &mut sink);
        assert!(watchers.is_empty(), "the gone consumer is dropped");
        for _ in 0..WATCHERS_MAX {
            watchers.open(Vec::new(), 0, 10).unwrap();
        }
        assert_eq!(watchers.open(Vec::new(), 0, 10), Err(Refusal::TooMany { max: WATCHERS_MAX }));
    }
}
