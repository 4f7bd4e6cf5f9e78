//! The simulated clients' history and its checks: every write (a put, delete or
//! compare-and-set on one of `KEYS` registers, its value its write id) with invocation
//! and completion, every `--read leader` read, every `after:INDEX` read and every `any`
//! read, checked at the end of a seed against the order the final applied log put the
//! writes in.
//!
//! Linearizability, exactly and in linear time. The simulator knows which writes took
//! effect and in which order: the final leader's applied log, replayed here through a
//! model register per key (a compare-and-set takes effect iff its expected value is the
//! key's value at its place in the log). The history is linearizable iff each write can
//! be given a point within [invoked, completed], in log order, and each read a point
//! within its own span between the points of the write it read and of the next write of
//! its key. A read of a value names the write it read (values are unique), so the points
//! are found by one pass forward (each write's earliest point: after its invocation, the
//! previous write's point and the invocation of every read of the value before it) and
//! checked against the latest (its completion and the completion of every read of its
//! value). A compare-and-set that did not match is a read of the value it found. A read
//! of nothing (the key before its first write or after a delete) may have read any such
//! state: it passes if one of them fits the points the other reads allow (exact for each
//! such read alone; two such reads that could each fit only at the other's expense pass).
//! A general search (`crate::linearizable`, the fault suite's) was exponential here: a
//! read overlapping a long-pending write may take effect before or after it, and writes
//! stalled by a fault and committed together overlap by the dozen.
//!
//! A write that never took effect leaves the history (a read that returned it read a
//! value that was never written). One that took effect without an acknowledgement (its
//! leader stepped down first) completes, for the check, when a node first applied it:
//! the moment it committed, which no outside client could know, so the check is
//! stronger than a client's (a read invoked after a commit must see it). Each answer a
//! client got must agree with the model: "written" for a write that took effect, "did
//! not match, the value is V" for a compare-and-set that did not.
//!
//! Async mode promises no linearizability, and the simulator shows why: a leader elected
//! without the last writes its predecessor acknowledged serves reads without them, and
//! if it is deposed before it overwrites them (its own no-op never left it), they come
//! back (seeds 4851 and 17160 of 20,000). Neither lost nor discarded, they are in no
//! journal. So in async mode a read is checked only for returning a value some write
//! had proposed before the read completed (or none); the discarded-writes checker
//! covers the writes async mode loses.

use super::checker::SimEntry;
use baton_host::kv::Command;
use std::collections::HashMap;

/// Registers the clients write and read: few, so reads and writes collide.
pub const KEYS: u64 = 3;

/// The register a write id writes.
pub fn key_of(write_id: u64) -> u32 {
    (write_id % KEYS) as u32
}

/// A register's key in the node's key-value map.
pub fn key_bytes(key: u32) -> Vec<u8> {
    format!("k{key}").into_bytes()
}

/// The value a write stores: its write id, in decimal.
fn value_bytes(write_id: u64) -> Vec<u8> {
    write_id.to_string().into_bytes()
}

/// The write id a stored value names; a value no simulated write stores reads as
/// `u64::MAX`, which no write has.
pub fn value_of(bytes: &[u8]) -> u64 {
    std::str::from_utf8(bytes).ok().and_then(|text| text.parse().ok()).unwrap_or(u64::MAX)
}

/// What a simulated client's write does to its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    Put,
    Delete,
    /// Writes its id if the key holds `expected` (the write id there, `None` for none).
    Cas {
        expected: Option<u64>,
    },
}

impl WriteKind {
    /// The log entry's command for write `write_id` of this kind.
    pub fn command(self, write_id: u64) -> Command {
        let key = key_bytes(key_of(write_id));
        match self {
            WriteKind::Put => Command::Put { key, value: value_bytes(write_id) },
            WriteKind::Delete => Command::Delete { key },
            WriteKind::Cas { expected } => {
                Command::Cas { key, expected: expected.map(value_bytes), new: Some(value_bytes(write_id)) }
            }
        }
    }

    /// The key's value after this write, applied to `current`; `None` if it does not
    /// take effect (a compare-and-set that does not match).
    fn effect(self, write_id: u64, current: Option<u64>) -> Option<Option<u64>> {
        match self {
            WriteKind::Put => Some(Some(write_id)),
            WriteKind::Delete => Some(None),
            WriteKind::Cas { expected } => (expected == current).then_some(Some(write_id)),
        }
    }
}

/// What a client was told of its write once it committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Written,
    /// A compare-and-set that did not match, and the value the node said it found.
    CasFailed {
        current: Option<u64>,
    },
    /// Anything else the state machine said (a simulated write is never refused).
    Refused,
}

/// A point in the history: nanoseconds, strictly increasing. Events of one simulated
/// microsecond are ordered as the simulator ran them.
pub type Stamp = u64;

/// A write's session: which one (any number naming it), and its client's last
/// answered number when it sent the write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionWrite {
    pub session: u32,
    pub acked_seq: u64,
}

#[derive(Clone, Copy, Debug)]
struct Write {
    kind: WriteKind,
    /// The session that sent it (numbered by its write id, resent until answered: it
    /// may be in the log more than once, and takes effect once), with the last number
    /// that session had had answered when it sent it.
    session: Option<SessionWrite>,
    invoked: Stamp,
    answered: Option<(Stamp, Answer)>,
}

/// An `any` read: served at once by whichever node the client asked, from what it had
/// applied.
#[derive(Clone, Copy, Debug)]
struct AnyRead {
    /// The node and its incarnation (a restart starts it over from its snapshot).
    node: u8,
    incarnation: u64,
    key: u32,
    value: Option<u64>,
    applied_index: u64,
    completed: Stamp,
}

/// One key's values in the final log: (log index of the change, write id, value after
/// it), starting with (0, 0, None).
type Timeline = Vec<(usize, u64, Option<u64>)>;

/// The final log replayed through the model.
#[derive(Debug, Default)]
struct Replay {
    timelines: HashMap<u32, Timeline>,
    /// Compare-and-sets that did not match: (write id, the timeline state they found),
    /// once per time in the log.
    failed_cas: Vec<(u64, usize)>,
}

#[derive(Debug, Default)]
/// Events are recorded as they happen, in time order.
pub struct History {
    last_stamp: Stamp,
    writes: HashMap<u64, Write>,
    /// When each write was first applied by any node.
    first_applied: HashMap<u64, Stamp>,
    /// Every `--read leader` read served: (key, value, invoked, completed).
    reads: Vec<(u32, Option<u64>, Stamp, Stamp)>,
    /// Every `after:INDEX` read served: (INDEX, the write acknowledged there, value).
    after_reads: Vec<(u64, SimEntry, Option<u64>)>,
    any_reads: Vec<AnyRead>,
}

impl History {
    /// The stamp of something that happens now.
    pub fn stamp(&mut self, now_us: u64) -> Stamp {
        self.last_stamp = (self.last_stamp + 1).max(now_us * 1_000);
        self.last_stamp
    }

    pub fn invoke_write(&mut self, now_us: u64, write_id: u64, kind: WriteKind, session: Option<SessionWrite>) {
        let invoked = self.stamp(now_us);
        let previous = self.writes.insert(write_id, Write { kind, session, invoked, answered: None });
        assert!(previous.is_none(), "write ids are unique");
    }

    pub fn complete_write(&mut self, now_us: u64, write_id: u64, answer: Answer) {
        let at = self.stamp(now_us);
        let write = self.writes.get_mut(&write_id).expect("only invoked writes are acknowledged");
        assert!(write.answered.is_none(), "a write is acknowledged once");
        write.answered = Some((at, answer));
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
    pub fn after_read(&mut self, index: u64, acked: SimEntry, value: Option<u64>) {
        self.after_reads.push((index, acked, value));
    }

    /// An `any` read of `key` at node `node` (in its `incarnation`), answered `value`
    /// with the node's applied index.
    pub fn any_read(
        &mut self,
        node: u8,
        incarnation: u64,
        key: u32,
        value: Option<u64>,
        applied_index: u64,
        now_us: u64,
    ) {
        let completed = self.stamp(now_us);
        self.any_reads.push(AnyRead { node, incarnation, key, value, applied_index, completed });
    }

    /// Client operations recorded (writes and reads of every kind).
    pub fn operations(&self) -> usize {
        self.writes.len() + self.reads.len() + self.after_reads.len() + self.any_reads.len()
    }

    /// `after:INDEX` reads and `any` reads recorded.
    pub fn after_and_any_reads(&self) -> (usize, usize) {
        (self.after_reads.len(), self.any_reads.len())
    }

    pub fn reads(&self) -> usize {
        self.reads.len()
    }

    /// The model's value of every key after applying `applied` (write ids by index, 0
    /// for a no-op), in key order: what a node's state machine must hold.
    pub fn model_values(&self, applied: &[u64]) -> Vec<Option<u64>> {
        let replay = self.replay(applied);
        (0..KEYS as u32).map(|key| replay.timelines.get(&key).and_then(|t| t.last()).and_then(|s| s.2)).collect()
    }

    /// The changes the model makes of `applied` (write ids by index, 0 for a no-op):
    /// (index, key, value) for every write that changed the map — a put or a matching
    /// compare-and-set always, a delete only of a present key — in index order: what a
    /// watch of every key from index 1 must report.
    pub fn model_changes(&self, applied: &[u64]) -> Vec<(u64, u32, Option<u64>)> {
        let replay = self.replay(applied);
        let mut changes = Vec::new();
        for (&key, timeline) in &replay.timelines {
            for pair in timeline.windows(2) {
                let (before, after) = (pair[0].2, pair[1]);
                if after.2.is_some() || before.is_some() {
                    changes.push((after.0 as u64, key, after.2));
                }
            }
        }
        changes.sort_unstable();
        changes
    }

    /// `log`: write ids by index (0 for a no-op). A session's writes follow the
    /// session rules (`baton_host::session`): a number below the session's last is not
    /// applied, the last again is not applied again (a compare-and-set that did not
    /// match reads the value again, and is refused if it matches now), a higher one
    /// runs; a write of a session the log
    /// does not know, from a client that had answers in it, is refused (the session
    /// expired, or in async mode its writes were discarded).
    fn replay(&self, log: &[u64]) -> Replay {
        let mut replay = Replay::default();
        // Per session: its last number and whether it took effect.
        let mut sessions: HashMap<u32, (u64, bool)> = HashMap::new();
        for (position, &write_id) in log.iter().enumerate() {
            if write_id == 0 || super::membership::is_membership_write(write_id) {
                continue;
            }
            let write = self.writes.get(&write_id).expect("only invoked writes are applied");
            let timeline = replay.timelines.entry(key_of(write_id)).or_insert_with(|| vec![(0, 0, None)]);
            let current = timeline.last().expect("starts with the initial state").2;
            if let Some(SessionWrite { session, acked_seq }) = write.session {
                match sessions.get(&session) {
                    Some(&(last, _)) if write_id < last => continue,
                    Some(&(last, true)) if write_id == last => continue,
                    Some(&(last, false)) if write_id == last => {
                        // A compare-and-set that did not match never runs again; its
                        // resend reads the value now, if that still does not match.
                        if write.kind.effect(write_id, current).is_none() {
                            replay.failed_cas.push((write_id, timeline.len() - 1));
                        }
                        continue;
                    }
                    None if acked_seq > 0 => continue,
                    _ => {}
                }
            }
            let took_effect = match write.kind.effect(write_id, current) {
                Some(value) => {
                    timeline.push((position + 1, write_id, value));
                    true
                }
                None => {
                    replay.failed_cas.push((write_id, timeline.len() - 1));
                    false
                }
            };
            if let Some(SessionWrite { session, .. }) = write.session {
                sessions.insert(session, (write_id, took_effect));
            }
        }
        replay
    }

    /// `took_effect`: the write ids of the final applied log, in its order (0 for a
    /// no-op). `None` when the history is linearizable and every answer agrees with the
    /// log, else the violation in words.
    pub fn check(&self, took_effect: &[u64], async_mode: bool) -> Option<String> {
        let replay = self.replay(took_effect);
        if let Some(violation) = self.check_answers(&replay, async_mode) {
            return Some(violation);
        }
        if async_mode {
            return self.check_reads_saw_writes();
        }
        let mut keys: Vec<u32> = replay.timelines.keys().copied().collect();
        keys.extend(self.reads.iter().map(|r| r.0));
        keys.sort_unstable();
        keys.dedup();
        keys.into_iter().find_map(|key| self.check_key(key, &replay))
    }

    /// Every answer a client got agrees with what its write did in the final log. A
    /// compare-and-set answered "did not match" must never take effect afterwards. Not
    /// in async mode: there an answer may come from a log since discarded (and a resend
    /// then take effect, or not, anew); the discarded-writes checker covers the
    /// acknowledgements async mode loses.
    fn check_answers(&self, replay: &Replay, async_mode: bool) -> Option<String> {
        if async_mode {
            return None;
        }
        let mut failed: HashMap<u64, Vec<Option<u64>>> = HashMap::new();
        for &(write_id, state) in &replay.failed_cas {
            failed.entry(write_id).or_default().push(replay.timelines[&key_of(write_id)][state].2);
        }
        let mut in_log: HashMap<u64, Option<u64>> = HashMap::new();
        for timeline in replay.timelines.values() {
            for state in 1..timeline.len() {
                // Took effect, over the value before it.
                in_log.insert(timeline[state].1, timeline[state - 1].2);
            }
        }
        let mut answered: Vec<(&u64, &Write)> = self.writes.iter().filter(|(_, w)| w.answered.is_some()).collect();
        answered.sort_by_key(|(id, _)| **id);
        answered.into_iter().find_map(|(&write_id, write)| {
            let (_, answer) = write.answered.expect("filtered");
            let found = failed.get(&write_id);
            let agrees = match answer {
                Answer::Written => in_log.contains_key(&write_id),
                Answer::CasFailed { current } => {
                    found.is_some_and(|f| f.contains(&current)) && !in_log.contains_key(&write_id)
                }
                // Refused after it reached the log (its session had expired, or it is
                // a failed compare-and-set resent): it must never take effect.
                Answer::Refused => !in_log.contains_key(&write_id),
            };
            (!agrees).then(|| {
                format!(
                    "write {write_id} ({:?}) was answered {answer:?}, but in the log it {}",
                    write.kind,
                    match (in_log.get(&write_id), found) {
                        (Some(before), _) => format!("took effect over {before:?}"),
                        (None, Some(current)) => format!("did not match {current:?}"),
                        (None, None) => "is not".to_string(),
                    }
                )
            })
        })
    }

    /// The exact check of one key (see the module's doc).
    fn check_key(&self, key: u32, replay: &Replay) -> Option<String> {
        let initial: Timeline = vec![(0, 0, None)];
        let timeline = replay.timelines.get(&key).unwrap_or(&initial);
        let states = timeline.len();
        // Bounds on each write's point (state j's write, j ≥ 1), with what set them.
        let mut lower: Vec<(Stamp, String)> = vec![(0, String::new()); states];
        let mut upper: Vec<(Stamp, String)> = vec![(Stamp::MAX, String::new()); states];
        for (state, &(_, write_id, _)) in timeline.iter().enumerate().skip(1) {
            let write = &self.writes[&write_id];
            let completed = write.answered.map(|a| a.0).or_else(|| self.first_applied.get(&write_id).copied());
            let completed = completed.expect("a write in the final log was applied");
            lower[state] = (write.invoked, format!("its invocation at {}", us(write.invoked)));
            upper[state] = (completed, format!("its completion at {}", us(completed)));
        }
        // What clients saw of this key: each read, and each compare-and-set answered "did
        // not match", which read the value it was answered with while it ran (its other
        // times in the log, unanswered or after its answer, changed nothing and were seen
        // by no one). (value, invoked, completed, what), in a stable order.
        let mut seen: Vec<(Option<u64>, Stamp, Stamp, String)> = self
            .reads
            .iter()
            .filter(|r| r.0 == key)
            .map(|&(_, value, invoked, completed)| {
                (value, invoked, completed, format!("a read at {}..{}", us(invoked), us(completed)))
            })
            .collect();
        let mut failed_cas: Vec<(u64, Stamp, Stamp, Option<u64>)> = self
            .writes
            .iter()
            .filter(|(&write_id, _)| key_of(write_id) == key)
            .filter_map(|(&write_id, w)| match w.answered {
                Some((completed, Answer::CasFailed { current })) => Some((write_id, w.invoked, completed, current)),
                _ => None,
            })
            .collect();
        failed_cas.sort_unstable();
        seen.extend(failed_cas.into_iter().map(|(write_id, invoked, completed, current)| {
            let what = format!("compare-and-set {write_id} (did not match) at {}..{}", us(invoked), us(completed));
            (current, invoked, completed, what)
        }));
        // Those that name their state (a value names the write of it), and those that
        // saw nothing. (state, invoked, completed, what).
        let mut named: Vec<(usize, Stamp, Stamp, String)> = Vec::new();
        let mut of_nothing: Vec<(Stamp, Stamp)> = Vec::new();
        for (value, invoked, completed, what) in seen {
            match value {
                None => of_nothing.push((invoked, completed)),
                Some(v) => match timeline.iter().position(|s| s.1 == v && s.2 == Some(v)) {
                    Some(state) => named.push((state, invoked, completed, format!("{what} of {v}"))),
                    None => return Some(format!("key {key}: {what} returned {v}, a value the log never wrote there")),
                },
            }
        }
        for (state, invoked, completed, what) in named {
            if state >= 1 && completed < upper[state].0 {
                upper[state] = (completed, what.clone());
            }
            if state + 1 < states && invoked > lower[state + 1].0 {
                lower[state + 1] = (invoked, what);
            }
        }
        // Earliest points forward, then latest points backward.
        let mut earliest = vec![0; states];
        for state in 1..states {
            earliest[state] = lower[state].0.max(earliest[state - 1]);
            if earliest[state] > upper[state].0 {
                let after = if lower[state].0 >= earliest[state - 1] {
                    lower[state].1.clone()
                } else {
                    format!(
                        "the write before it in the log, which cannot take effect before {}",
                        us(earliest[state - 1])
                    )
                };
                return Some(format!(
                    "key {key} is not linearizable: write {} (log index {}) must take effect before {} \
                     and after {after}",
                    timeline[state].1, timeline[state].0, upper[state].1
                ));
            }
        }
        let mut latest = vec![Stamp::MAX; states + 1];
        for state in (1..states).rev() {
            latest[state] = upper[state].0.min(latest[state + 1]);
        }
        for (invoked, completed) in of_nothing {
            let fits = (0..states).filter(|&s| timeline[s].2.is_none()).any(|state| {
                (state == 0 || earliest[state] <= completed) && (state + 1 == states || latest[state + 1] >= invoked)
            });
            if !fits {
                return Some(format!(
                    "key {key} is not linearizable: a read at {}..{} found no value, but the key held one throughout",
                    us(invoked),
                    us(completed)
                ));
            }
        }
        None
    }

    /// `after:INDEX` reads reflect every write up to INDEX: each returned the value its
    /// key has in the final applied log (`final_log`) at INDEX or at a later index. In
    /// async mode, only reads whose acknowledged entry is still at INDEX in the final
    /// log are checked (the rest were discarded), and a value from past INDEX may be
    /// one discarded since: only an older value fails (and nothing, which a discarded
    /// delete leaves too, passes).
    pub fn check_after_reads(&self, final_log: &[SimEntry], async_mode: bool) -> Option<String> {
        let final_applied: Vec<u64> = final_log.iter().map(|e| e.write_id).collect();
        let replay = self.replay(&final_applied);
        let initial: Timeline = vec![(0, 0, None)];
        self.after_reads.iter().find_map(|&(index, acked, value)| {
            let key = key_of(acked.write_id);
            let upto = (index as usize).min(final_log.len());
            if async_mode && final_log.get(upto.wrapping_sub(1)) != Some(&acked) {
                return None;
            }
            let timeline = replay.timelines.get(&key).unwrap_or(&initial);
            let at_index = timeline.iter().rev().find(|s| s.0 <= upto).expect("the initial state is at 0").2;
            let later = match value {
                Some(v) if async_mode => !timeline.iter().any(|s| s.0 <= upto && s.2 == Some(v)),
                // A delete since discarded, or an older state: no telling them apart.
                None if async_mode => true,
                value => timeline.iter().any(|s| s.0 > upto && s.2 == value),
            };
            (value != at_index && !later).then(|| {
                format!("an after:{index} read of key {key} returned {value:?}; at {index} the key held {at_index:?}")
            })
        })
    }

    /// `any` reads: a node's applied index never goes backwards while it runs (a
    /// restart may start it over from its snapshot), and each read returned the key's
    /// value at that index in the final applied log. In async mode a node's applied
    /// writes may be discarded, so there a read is only checked for returning a value
    /// some write had proposed.
    pub fn check_any_reads(&self, final_applied: &[u64], async_mode: bool) -> Option<String> {
        if async_mode {
            return self.any_reads.iter().find_map(|r| self.unproposed(r.key, r.value, r.completed));
        }
        let replay = self.replay(final_applied);
        let initial: Timeline = vec![(0, 0, None)];
        let mut applied_at: HashMap<(u8, u64), u64> = HashMap::new();
        self.any_reads.iter().find_map(|read| {
            let previous = applied_at.insert((read.node, read.incarnation), read.applied_index).unwrap_or(0);
            if read.applied_index < previous {
                return Some(format!(
                    "node {} answered an any read at applied index {} after one at {previous}",
                    read.node, read.applied_index
                ));
            }
            if read.applied_index as usize > final_applied.len() {
                return None; // Past the final log: nothing to compare with.
            }
            let timeline = replay.timelines.get(&read.key).unwrap_or(&initial);
            let expected = timeline.iter().rev().find(|s| s.0 as u64 <= read.applied_index).expect("initial").2;
            (read.value != expected).then(|| {
                format!(
                    "node {} answered an any read of key {} at applied index {} with {:?}; the log there holds {expected:?}",
                    read.node, read.key, read.applied_index, read.value
                )
            })
        })
    }

    /// Why a read of `value` from `key` completed at `completed` read something no write
    /// had proposed by then, if so.
    fn unproposed(&self, key: u32, value: Option<u64>, completed: Stamp) -> Option<String> {
        let value = value?;
        let written = self
            .writes
            .get(&value)
            .is_some_and(|w| w.invoked < completed && w.kind != WriteKind::Delete && key_of(value) == key);
        (!written).then(|| format!("a read of key {key} returned {value}, which no write had proposed by then"))
    }

    /// Async mode's check: every read returned nothing or a value proposed to its key
    /// before the read completed.
    fn check_reads_saw_writes(&self) -> Option<String> {
        self.reads.iter().find_map(|&(key, value, _, completed)| self.unproposed(key, value, completed))
    }
}

/// A stamp in microseconds, for messages.
fn us(stamp: Stamp) -> String {
    format!("{}us", stamp / 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read of `key` invoked at `at_us` and answered a microsecond later.
    fn read(history: &mut History, key: u32, value: Option<u64>, at_us: u64) {
        let invoked = history.stamp(at_us);
        history.read(key, value, invoked, at_us + 1);
    }

    fn put(history: &mut History, write_id: u64, invoked_us: u64, acked_us: u64) {
        history.invoke_write(invoked_us, write_id, WriteKind::Put, None);
        history.complete_write(acked_us, write_id, Answer::Written);
    }

    #[test]
    fn a_read_after_an_acknowledged_write_must_see_it() {
        let mut history = History::default();
        put(&mut history, 3, 10, 20);
        read(&mut history, 0, Some(3), 30);
        assert_eq!(history.check(&[3], false), None);
        // A stale read: the acknowledged write is not visible after its ack.
        read(&mut history, 0, None, 40);
        assert!(history.check(&[3], false).is_some());
    }

    #[test]
    fn a_read_of_a_write_that_never_took_effect_fails_except_for_async_discards() {
        let mut history = History::default();
        history.invoke_write(10, 6, WriteKind::Put, None);
        read(&mut history, 0, Some(6), 30);
        // Write 6 is not in the final log: it was lost (or discarded, in async mode).
        assert!(history.check(&[], false).is_some());
        assert_eq!(history.check(&[], true), None);
        // Async mode still fails a read of a value never proposed, or not yet.
        read(&mut history, 0, Some(9), 40);
        assert!(history.check(&[], true).is_some());
        let mut history = History::default();
        let early = history.stamp(5);
        history.invoke_write(10, 12, WriteKind::Put, None);
        history.reads.push((0, Some(12), early, early + 1));
        assert!(history.check(&[12], true).is_some());
    }

    #[test]
    fn an_unacknowledged_write_that_took_effect_completes_when_first_applied() {
        let mut history = History::default();
        history.invoke_write(10, 9, WriteKind::Put, None);
        read(&mut history, 0, None, 30);
        history.on_applied(40, 9);
        history.on_applied(45, 9);
        read(&mut history, 0, Some(9), 50);
        assert_eq!(history.check(&[9], false), None);
        // It cannot be unseen once it committed (at 40), even though no client knew.
        read(&mut history, 0, None, 60);
        assert!(history.check(&[9], false).is_some());
    }

    /// Goal: a read that overlaps a long-pending write may see it or not, but a read
    /// that saw it and a later read that did not cannot both be (the stale read after a
    /// lease expired, which the general search could only refute by trying every
    /// subset), and reads in between writes must fit between them.
    #[test]
    fn reads_overlapping_a_pending_write_fit_or_are_caught() {
        let mut history = History::default();
        put(&mut history, 3, 10, 20);
        history.invoke_write(30, 6, WriteKind::Put, None);
        for at in (40..100).step_by(10) {
            read(&mut history, 0, Some(3), at);
        }
        history.on_applied(100, 6);
        read(&mut history, 0, Some(6), 110);
        assert_eq!(history.check(&[3, 6], false), None);
        read(&mut history, 0, Some(3), 120);
        let violation = history.check(&[3, 6], false).expect("a stale read after a newer one");
        assert!(violation.contains("not linearizable"), "{violation}");
    }

    /// Goal: deletes and compare-and-sets replay as the node's state machine applies
    /// them; answers that disagree with the log are caught, and so is a read of nothing
    /// that fits no state without a value.
    #[test]
    fn deletes_and_compare_and_sets_follow_the_model() {
        // Key 0: put 3, cas 6 expecting 3 (matches), cas 9 expecting 3 (does not), delete
        // 12; reads of nothing before and after, of 6 in between, and (`stale_read`) of
        // nothing just after 6 was acknowledged, while the key surely held it.
        let history = |stale_read: bool| {
            let mut history = History::default();
            read(&mut history, 0, None, 5);
            put(&mut history, 3, 10, 20);
            history.invoke_write(30, 6, WriteKind::Cas { expected: Some(3) }, None);
            history.complete_write(40, 6, Answer::Written);
            if stale_read {
                read(&mut history, 0, None, 45);
            }
            history.invoke_write(50, 9, WriteKind::Cas { expected: Some(3) }, None);
            history.complete_write(60, 9, Answer::CasFailed { current: Some(6) });
            read(&mut history, 0, Some(6), 65);
            history.invoke_write(70, 12, WriteKind::Delete, None);
            history.complete_write(80, 12, Answer::Written);
            read(&mut history, 0, None, 90);
            history
        };
        let log = [3, 0, 6, 9, 12];
        assert_eq!(history(false).check(&log, false), None);
        assert_eq!(history(false).model_values(&log), vec![None, None, None]);
        assert_eq!(history(false).model_values(&log[..4]), vec![Some(6), None, None]);
        // Had the log put cas 9 before cas 6, 9 matched, and the answers are wrong.
        assert!(history(false).check(&[3, 9, 6, 12], false).unwrap().contains("but in the log it"));
        assert!(history(true).check(&log, false).unwrap().contains("found no value"));
        // A compare-and-set answered "did not match" with the wrong current value.
        let mut history = History::default();
        put(&mut history, 3, 10, 20);
        history.invoke_write(30, 6, WriteKind::Cas { expected: None }, None);
        history.complete_write(40, 6, Answer::CasFailed { current: None });
        assert!(history.check(&[3, 6], false).unwrap().contains("did not match [Some(3)]"));
        // A failed compare-and-set reads the value it found: before that, 3 was written.
        let mut history = History::default();
        history.invoke_write(10, 3, WriteKind::Put, None);
        history.on_applied(50, 3);
        history.invoke_write(20, 6, WriteKind::Cas { expected: None }, None);
        history.complete_write(30, 6, Answer::CasFailed { current: Some(3) });
        assert_eq!(history.check(&[3, 6], false), None);
        // ... but not if the put was invoked after the compare-and-set completed.
        let mut history = History::default();
        history.invoke_write(20, 6, WriteKind::Cas { expected: None }, None);
        history.complete_write(30, 6, Answer::CasFailed { current: Some(3) });
        history.invoke_write(40, 3, WriteKind::Put, None);
        history.complete_write(50, 3, Answer::Written);
        assert!(history.check(&[3, 6], false).unwrap().contains("not linearizable"));
    }

    /// Goal: a session's write resent into the log takes effect once, an older number
    /// is not applied, a resent compare-and-set that did not match runs again, and one
    /// answered "did not match" that later took effect through a resend is caught.
    #[test]
    fn session_writes_take_effect_once_and_a_failed_cas_never_later() {
        let mut history = History::default();
        history.invoke_write(10, 3, WriteKind::Put, Some(SessionWrite { session: 0, acked_seq: 0 }));
        history.invoke_write(11, 4, WriteKind::Put, None);
        history.invoke_write(12, 9, WriteKind::Put, None);
        history.invoke_write(13, 6, WriteKind::Put, Some(SessionWrite { session: 0, acked_seq: 0 }));
        history.invoke_write(
            14,
            12,
            WriteKind::Cas { expected: Some(9) },
            Some(SessionWrite { session: 1, acked_seq: 0 }),
        );
        // A duplicate of 3 changes nothing, even over another client's put in between
        // (the lost update sessions prevent).
        assert_eq!(history.model_values(&[3, 4, 3]), vec![Some(3), Some(4), None]);
        assert_eq!(history.model_values(&[3, 9, 3]), vec![Some(9), None, None]);
        // Session 0 numbered 6 after 3: a late resend of 3 after 6 is stale.
        assert_eq!(history.model_values(&[3, 6, 3]), vec![Some(6), None, None]);
        // A write of a session the log does not know, from a client that had answers in
        // it, is refused.
        history.invoke_write(14, 15, WriteKind::Put, Some(SessionWrite { session: 2, acked_seq: 7 }));
        assert_eq!(history.model_values(&[3, 15]), vec![Some(3), None, None]);
        // Cas 12 fails (nothing there), 9 is put, the resend of 12 never runs again.
        assert_eq!(history.model_values(&[12, 9, 12]), vec![Some(9), None, None]);
        history.on_applied(15, 12);
        history.on_applied(16, 9);
        history.complete_write(20, 12, Answer::CasFailed { current: None });
        assert_eq!(history.check(&[12, 9, 12], false), None);
        // A compare-and-set answered "did not match" that takes effect after is caught.
        let mut late = History::default();
        late.invoke_write(10, 12, WriteKind::Cas { expected: Some(9) }, None);
        late.invoke_write(11, 9, WriteKind::Put, None);
        late.on_applied(12, 9);
        late.complete_write(13, 12, Answer::CasFailed { current: None });
        late.on_applied(14, 12);
        let violation = late.check(&[9, 12], false).unwrap();
        assert!(violation.contains("answered CasFailed"), "{violation}");
    }

    /// Goal: an `after:INDEX` read that misses the write at INDEX, or returns a value the
    /// key never held at or after INDEX, is caught; one that sees INDEX or later passes.
    #[test]
    fn after_reads_reflect_every_write_up_to_their_index() {
        // Write ids by index 1..=4: 3 (key 0), 0 (no-op), 6 (key 0), 4 (key 1).
        let log: Vec<SimEntry> = [3, 0, 6, 4].iter().map(|&write_id| SimEntry::new(1, write_id)).collect();
        let check = |reads: &[(u64, u64, Option<u64>)], async_mode: bool| {
            let mut history = History::default();
            for id in [3, 6, 4, 9, 7] {
                history.invoke_write(1, id, WriteKind::Put, None);
            }
            for &(index, write_id, value) in reads {
                history.after_read(index, SimEntry::new(1, write_id), value);
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

    /// Goal: an `any` read returns the value at the applied index it reports, and a
    /// node's applied index does not go backwards while it runs.
    #[test]
    fn any_reads_match_their_applied_index_which_never_goes_backwards() {
        let log = [3, 6];
        let mut history = History::default();
        put(&mut history, 3, 1, 2);
        put(&mut history, 6, 3, 4);
        history.any_read(1, 0, 0, None, 0, 5);
        history.any_read(1, 0, 0, Some(3), 1, 6);
        history.any_read(2, 0, 0, Some(6), 2, 7);
        history.any_read(1, 1, 0, None, 0, 8); // Restarted from an empty snapshot.
        assert_eq!(history.check_any_reads(&log, false), None);
        history.any_read(2, 0, 0, Some(3), 1, 9);
        assert!(history.check_any_reads(&log, false).unwrap().contains("after one at 2"));
        let mut history = History::default();
        put(&mut history, 3, 1, 2);
        history.any_read(1, 0, 0, Some(3), 0, 5);
        assert!(history.check_any_reads(&[3], false).unwrap().contains("holds None"));
        assert_eq!(history.check_any_reads(&[3], true), None);
        history.any_read(1, 0, 0, Some(8), 0, 6);
        assert!(history.check_any_reads(&[3], true).is_some(), "async: a value never proposed");
    }

    #[test]
    fn reads_follow_the_order_the_log_applied_writes_in() {
        let mut history = History::default();
        // Two overlapping writes to key 0; the log applied 6 and then 3.
        history.invoke_write(10, 3, WriteKind::Put, None);
        history.invoke_write(11, 6, WriteKind::Put, None);
        history.complete_write(20, 3, Answer::Written);
        history.complete_write(21, 6, Answer::Written);
        read(&mut history, 0, Some(3), 30);
        assert_eq!(history.check(&[6, 3], false), None);
        // Had the log applied 3 and then 6, reading 3 after both were acknowledged is
        // stale, although some order of the two writes would explain it.
        assert!(history.check(&[3, 6], false).is_some());
    }
}
