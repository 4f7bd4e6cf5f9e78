//! The simulated clients' history: every write (a put of its write id on one of
//! `KEYS` registers) and every `--read leader` read, with invocation and completion,
//! checked for linearizability at the end of a seed (`crate::linearizable`).
//!
//! The simulator knows which writes took effect, and in which order: the final leader's
//! applied log. A write that never took effect leaves the history (a read that returned
//! it read a value that was never written), and every other one enters it as what it
//! was, a compare-and-set from the value before it in the log to its own. The search
//! then follows the log's order instead of trying every order of overlapping writes
//! (writes stalled by a fault and committed together overlap by the dozen, and the
//! search is exponential in that); it checks more, too: a read must agree with the
//! order the state machines applied. A write that took effect without an
//! acknowledgement (its leader stepped down first) completes, for the check, when a node
//! first applied it: the moment it committed, which no outside client could know, so
//! the check is stronger than a client's (a read invoked after a commit must see it).
//! Left unknown, each such write could take effect anywhere later, and the search
//! would be exponential in how many there are.
//!
//! Async mode promises no linearizability, and the simulator shows why: a leader elected
//! without the last writes its predecessor acknowledged serves reads without them, and
//! if it is deposed before it overwrites them (its own no-op never left it), they come
//! back (seeds 4851 and 17160 of 20,000). Neither lost nor discarded, they are in no
//! journal. So in async mode a read is checked only for returning a value some write
//! had proposed before the read completed (or none); the discarded-writes checker
//! covers the writes async mode loses.

use crate::linearizable::{self, Op, Operation, Verdict};
use std::collections::HashMap;

/// Registers the clients write and read: few, so reads and writes collide.
pub const KEYS: u64 = 3;

/// The register a write id writes.
pub fn key_of(write_id: u64) -> u32 {
    (write_id % KEYS) as u32
}

/// The value `key` holds after applying `applied` in order (write id 0 is a no-op).
pub fn value_in(applied: &[super::checker::SimEntry], key: u32) -> Option<u64> {
    applied.iter().rev().map(|e| e.write_id).find(|&id| id != 0 && key_of(id) == key)
}

/// A point in the history: nanoseconds, strictly increasing. Events of one simulated
/// microsecond are ordered as the simulator ran them (the linearizability search reads
/// an equal time as "at once").
pub type Stamp = u64;

#[derive(Debug, Default)]
/// Events are recorded as they happen, in time order.
pub struct History {
    last_stamp: Stamp,
    /// Every write invoked: write id → (invoked, acknowledged at).
    writes: HashMap<u64, (Stamp, Option<Stamp>)>,
    /// When each write was first applied by any node.
    first_applied: HashMap<u64, Stamp>,
    /// Every read served: (key, value, invoked, completed).
    reads: Vec<(u32, Option<u64>, Stamp, Stamp)>,
    /// Every `after:INDEX` read served: (INDEX, the write acknowledged there, value).
    after_reads: Vec<(u64, u64, Option<u64>)>,
}

impl History {
    /// The stamp of something that happens now.
    pub fn stamp(&mut self, now_us: u64) -> Stamp {
        self.last_stamp = (self.last_stamp + 1).max(now_us * 1_000);
        self.last_stamp
    }

    pub fn invoke_write(&mut self, now_us: u64, write_id: u64) {
        let at = self.stamp(now_us);
        let previous = self.writes.insert(write_id, (at, None));
        assert!(previous.is_none(), "write ids are unique");
    }

    pub fn complete_write(&mut self, now_us: u64, write_id: u64) {
        let at = self.stamp(now_us);
        let write = self.writes.get_mut(&write_id).expect("only invoked writes are acknowledged");
        assert!(write.1.is_none(), "a write is acknowledged once");
        write.1 = Some(at);
    }

    pub fn on_applied(&mut self, now_us: u64, write_id: u64) {
        if !self.first_applied.contains_key(&write_id) {
            let at = self.stamp(now_us);
            self.first_applied.insert(write_id, at);
        }
    }

    /// A read invoked at `invoked` (a stamp taken then) is served now with `value`.
    pub fn read(&mut self, key: u32, value: Option<u64>, invoked: Stamp, now_us: u64) {
        let completed = self.stamp(now_us);
        self.reads.push((key, value, invoked, completed));
    }

    /// A client's `after:INDEX` read of the key of its write `write_id`, acknowledged at
    /// INDEX, answered `value`.
    pub fn after_read(&mut self, index: u64, write_id: u64, value: Option<u64>) {
        self.after_reads.push((index, write_id, value));
    }

    /// Client operations recorded (writes and reads of every kind).
    pub fn operations(&self) -> usize {
        self.writes.len() + self.reads.len() + self.after_reads.len()
    }

    /// `after:INDEX` reads reflect every write up to INDEX: each returned the value its
    /// key has in the final applied log (`final_applied`, write ids by index, 0 for a
    /// no-op) at INDEX or at a later index. In async mode, only reads whose write is
    /// still at INDEX in the final log are checked (the rest were discarded), and a
    /// value from past INDEX may be one discarded since: only an older value fails.
    pub fn check_after_reads(&self, final_applied: &[u64], async_mode: bool) -> Option<String> {
        self.after_reads.iter().find_map(|&(index, write_id, value)| {
            let key = key_of(write_id);
            let upto = (index as usize).min(final_applied.len());
            if async_mode && final_applied.get(upto.wrapping_sub(1)) != Some(&write_id) {
                return None;
            }
            let of_key = |id: &u64| *id != 0 && key_of(*id) == key;
            let at_index = final_applied[..upto].iter().rev().find(|id| of_key(id)).copied();
            let later = match value {
                Some(v) if async_mode => !final_applied[..upto].contains(&v),
                Some(v) => final_applied[upto..].iter().any(|id| of_key(id) && *id == v),
                None => false,
            };
            (value != at_index && !later).then(|| {
                format!("an after:{index} read of key {key} returned {value:?}; at {index} the key held {at_index:?}")
            })
        })
    }

    pub fn reads(&self) -> usize {
        self.reads.len()
    }

    /// `took_effect`: the write ids of the final applied log, in its order. `None` when
    /// the history is linearizable, else the violation in words.
    pub fn check(&self, took_effect: &[u64], async_mode: bool) -> Option<String> {
        if async_mode {
            return self.check_reads_saw_writes();
        }
        let mut operations: Vec<Operation> = Vec::with_capacity(self.operations());
        let mut latest: HashMap<u32, u64> = HashMap::new();
        for &write_id in took_effect {
            let key = key_of(write_id);
            let previous = latest.insert(key, write_id);
            let &(invoked, acked) = self.writes.get(&write_id).expect("only invoked writes are applied");
            operations.push(Operation {
                client: write_id as u32,
                key,
                op: Op::Cas { expected: previous, new: write_id, applied: Some(true) },
                invoked_ns: invoked,
                completed_ns: acked.or_else(|| self.first_applied.get(&write_id).copied()),
            });
        }
        for (reader, &(key, value, invoked, completed)) in self.reads.iter().enumerate() {
            operations.push(Operation {
                client: u32::MAX - reader as u32,
                key,
                op: Op::Read { value },
                invoked_ns: invoked,
                completed_ns: Some(completed),
            });
        }
        // A stable order, so a seed's verdict and window replay exactly.
        operations.sort_by_key(|o| (o.invoked_ns, o.completed_ns, o.client));
        match linearizable::check(&operations) {
            Verdict::Linearizable => None,
            Verdict::Unknown { key } => Some(format!("linearizability of key {key}: the search ran out of steps")),
            Verdict::Violation { key, window } => {
                let shown: Vec<String> = window
                    .iter()
                    .map(|o| {
                        let done = o.completed_ns.map_or("?".to_string(), |c| format!("{}us", c / 1_000));
                        format!("{:?} {}us..{done}", o.op, o.invoked_ns / 1_000)
                    })
                    .collect();
                Some(format!("key {key} is not linearizable: {}", shown.join("; ")))
            }
        }
    }

    /// Async mode's check: every read returned nothing or a value proposed to its key
    /// before the read completed.
    fn check_reads_saw_writes(&self) -> Option<String> {
        self.reads.iter().find_map(|&(key, value, _, completed)| {
            let value = value?;
            let written = self.writes.get(&value).is_some_and(|&(invoked, _)| invoked < completed);
            (!written || key_of(value) != key)
                .then(|| format!("a read of key {key} returned {value}, which no write had proposed by then"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read of `key` invoked at `at_us` and answered a microsecond later.
    fn read(history: &mut History, key: u32, value: Option<u64>, at_us: u64) {
        let invoked = history.stamp(at_us);
        history.read(key, value, invoked, at_us + 1);
    }

    fn took_effect(ids: &[u64]) -> Vec<u64> {
        ids.to_vec()
    }

    #[test]
    fn a_read_after_an_acknowledged_write_must_see_it() {
        let mut history = History::default();
        history.invoke_write(10, 3);
        history.complete_write(20, 3);
        read(&mut history, 0, Some(3), 30);
        assert_eq!(history.check(&took_effect(&[3]), false), None);
        // A stale read: the acknowledged write is not visible after its ack.
        read(&mut history, 0, None, 40);
        assert!(history.check(&took_effect(&[3]), false).is_some());
    }

    #[test]
    fn a_read_of_a_write_that_never_took_effect_fails_except_for_async_discards() {
        let mut history = History::default();
        history.invoke_write(10, 6);
        history.complete_write(20, 6);
        read(&mut history, 0, Some(6), 30);
        // Write 6 is not in the final log: it was lost (or discarded, in async mode).
        assert!(history.check(&took_effect(&[]), false).is_some());
        assert_eq!(history.check(&took_effect(&[]), true), None);
        // Async mode still fails a read of a value never proposed, or not yet.
        read(&mut history, 0, Some(9), 40);
        assert!(history.check(&took_effect(&[]), true).is_some());
        let mut history = History::default();
        let early = history.stamp(5);
        history.invoke_write(10, 12);
        history.reads.push((0, Some(12), early, early + 1));
        assert!(history.check(&took_effect(&[12]), true).is_some());
    }

    #[test]
    fn an_unacknowledged_write_that_took_effect_completes_when_first_applied() {
        let mut history = History::default();
        history.invoke_write(10, 9);
        read(&mut history, 0, None, 30);
        history.on_applied(40, 9);
        history.on_applied(45, 9);
        read(&mut history, 0, Some(9), 50);
        assert_eq!(history.check(&took_effect(&[9]), false), None);
        // It cannot be unseen once it committed (at 40), even though no client knew.
        read(&mut history, 0, None, 60);
        assert!(history.check(&took_effect(&[9]), false).is_some());
    }

    /// Goal: an `after:INDEX` read that misses the write at INDEX, or returns a value the
    /// key never held at or after INDEX, is caught; one that sees INDEX or later passes.
    #[test]
    fn after_reads_reflect_every_write_up_to_their_index() {
        // Write ids by index 1..=4: 3 (key 0), 0 (no-op), 6 (key 0), 4 (key 1).
        let log = [3, 0, 6, 4];
        let check = |reads: &[(u64, u64, Option<u64>)], async_mode: bool| {
            let mut history = History::default();
            for &(index, write_id, value) in reads {
                history.after_read(index, write_id, value);
            }
            history.check_after_reads(&log, async_mode)
        };
        assert_eq!(check(&[(1, 3, Some(3)), (1, 3, Some(6)), (3, 6, Some(6)), (4, 4, Some(4))], false), None);
        assert!(check(&[(3, 6, Some(3))], false).is_some(), "served before index 3 was applied");
        assert!(check(&[(1, 3, None)], false).is_some(), "missed the write at its index");
        assert!(check(&[(4, 4, Some(7))], false).is_some(), "a value the key never held");
        // Async: a later value since discarded passes, an older one still fails.
        assert_eq!(check(&[(1, 3, Some(9))], true), None);
        assert!(check(&[(3, 6, Some(3))], true).is_some());
    }

    #[test]
    fn reads_follow_the_order_the_log_applied_writes_in() {
        let mut history = History::default();
        // Two overlapping writes to key 0; the log applied 6 and then 3.
        history.invoke_write(10, 3);
        history.invoke_write(11, 6);
        history.complete_write(20, 3);
        history.complete_write(21, 6);
        read(&mut history, 0, Some(3), 30);
        assert_eq!(history.check(&took_effect(&[6, 3]), false), None);
        // Had the log applied 3 and then 6, reading 3 after both were acknowledged is
        // stale, although some order of the two writes would explain it.
        assert!(history.check(&took_effect(&[3, 6]), false).is_some());
    }
}
