//! A simulated node's storage: the log, the snapshot and the hard state, kept twice:
//! what the process has written (memory) and what has reached the disk (durable). A
//! crash keeps only the durable copy.

use super::checker::SimEntry;
use baton_common::{HardState, LogTerms, Position};

#[derive(Clone, Debug, Default)]
pub struct Storage {
    pub hard: HardState,
    pub snapshot: Position,
    /// The state machine at the snapshot: the entries it covers, in order.
    pub snapshot_entries: Vec<SimEntry>,
    /// Entries after the snapshot.
    pub log: Vec<SimEntry>,
    /// A failed fsync lost writes this disk was given (`World::fail_fsync`): the log's
    /// recovery stops at the first record missing, so an append that does not follow
    /// the log as the disk holds it never counts. Cleared when the node starts again.
    pub gap: bool,
}

/// One write the process has issued but the disk may not have yet.
#[derive(Clone, Debug)]
pub enum Op {
    Hard(HardState),
    Truncate(u64),
    Append(u64, SimEntry),
    Install(Position, Vec<SimEntry>),
}

impl Storage {
    pub fn last_index(&self) -> u64 {
        self.snapshot.index + self.log.len() as u64
    }

    pub fn entry(&self, index: u64) -> Option<SimEntry> {
        if index == 0 {
            None
        } else if index <= self.snapshot.index {
            self.snapshot_entries.get(index as usize - 1).copied()
        } else {
            self.log.get((index - self.snapshot.index - 1) as usize).copied()
        }
    }

    /// Entries `1..=last`, for the log-matching checker.
    pub fn full_log(&self) -> Vec<Option<SimEntry>> {
        (1..=self.last_index()).map(|i| self.entry(i)).collect()
    }

    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Hard(hard) => self.hard = *hard,
            Op::Truncate(from) => {
                if *from > self.snapshot.index {
                    self.log.truncate((from - self.snapshot.index - 1) as usize);
                }
            }
            Op::Append(index, entry) => {
                if *index <= self.snapshot.index {
                    return; // Already covered by a snapshot written since.
                }
                if self.gap && *index != self.last_index() + 1 {
                    return; // After the gap: recovery never reads it.
                }
                assert_eq!(*index, self.last_index() + 1, "appends are contiguous");
                self.log.push(*entry);
            }
            Op::Install(snapshot, entries) => self.install(*snapshot, entries.clone()),
        }
    }

    /// Replaces everything up to `snapshot`; keeps the suffix only if it follows on.
    pub fn install(&mut self, snapshot: Position, entries: Vec<SimEntry>) {
        assert_eq!(entries.len() as u64, snapshot.index);
        let matches =
            snapshot.index <= self.last_index() && self.entry(snapshot.index).map(|e| e.term) == Some(snapshot.term);
        if snapshot.index <= self.snapshot.index {
            return;
        }
        if matches {
            self.log.drain(..(snapshot.index - self.snapshot.index) as usize);
        } else {
            self.log.clear();
        }
        self.snapshot = snapshot;
        self.snapshot_entries = entries;
    }

    /// What the core needs at start-up: the snapshot point and the terms after it.
    pub fn log_terms(&self) -> LogTerms {
        let mut terms = LogTerms::new(self.snapshot);
        for entry in &self.log {
            terms.append(entry.term, 1).expect("the simulator compacts before the term table fills");
        }
        terms
    }
}
