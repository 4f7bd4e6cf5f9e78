//! What the core knows about the replicated log: its bounds and the term of every entry.
//!
//! The core never holds payloads; the host's storage does. The core keeps the snapshot
//! point and the terms of the retained entries as runs (a run is a stretch of entries
//! that share a term, so a log of a million entries written in three terms costs three
//! runs). This is all the core needs to check an append's previous position, find a
//! conflict, compare logs in an election and cut batches at term boundaries.

use crate::limits::TERM_RUNS_MAX;
use crate::types::{LogIndex, Position, Term};
use heapless::Vec;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct TermRun {
    term: Term,
    /// The first index of the run; the run ends where the next one starts, or at the
    /// last index.
    start: LogIndex,
}

/// A span of entries sharing one term, as reported by [`LogTerms::runs_between`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Span {
    pub term: Term,
    pub first_index: LogIndex,
    pub last_index: LogIndex,
}

/// The term runs table is full: the host must compact the log before more terms fit.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TermRunsFull;

#[derive(Clone, Debug)]
pub struct LogTerms {
    snapshot: Position,
    runs: Vec<TermRun, TERM_RUNS_MAX>,
    last_index: LogIndex,
}

impl LogTerms {
    /// An empty log that starts right after `snapshot` (use [`Position::ZERO`] for none).
    pub fn new(snapshot: Position) -> Self {
        LogTerms { snapshot, runs: Vec::new(), last_index: snapshot.index }
    }

    pub fn snapshot(&self) -> Position {
        self.snapshot
    }

    pub fn first_index(&self) -> LogIndex {
        self.snapshot.index + 1
    }

    pub fn last_index(&self) -> LogIndex {
        self.last_index
    }

    pub fn last_position(&self) -> Position {
        match self.runs.last() {
            Some(run) => Position::new(run.term, self.last_index),
            None => self.snapshot,
        }
    }

    /// The term of the entry at `index`, if the core still knows it: the snapshot point
    /// or a retained entry. Index 0 always has term 0.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot.index {
            return Some(self.snapshot.term);
        }
        if index < self.snapshot.index || index > self.last_index {
            return None;
        }
        self.runs.iter().rev().find(|run| run.start <= index).map(|run| run.term)
    }

    /// Whether the entry at `position.index` has `position.term`.
    pub fn matches(&self, position: Position) -> bool {
        self.term_at(position.index) == Some(position.term)
    }

    /// The first index of the run holding `index`: the conflict hint a follower sends
    /// back, so the leader skips the whole divergent term at once.
    pub fn run_start(&self, index: LogIndex) -> LogIndex {
        self.runs.iter().rev().find(|run| run.start <= index).map_or(self.first_index(), |run| run.start)
    }

    /// The last index of the run that starts at or before `index` and ends at or after
    /// it, so a batch from `index` never crosses a term boundary.
    pub fn run_end(&self, index: LogIndex) -> LogIndex {
        let position = self.runs.iter().rposition(|run| run.start <= index);
        match position.and_then(|p| self.runs.get(p + 1)) {
            Some(next) => next.start - 1,
            None => self.last_index,
        }
    }

    /// Appends `count` entries of `term` after the last index.
    pub fn append(&mut self, term: Term, count: u64) -> Result<(), TermRunsFull> {
        assert!(term >= self.last_position().term, "log terms never decrease");
        if count == 0 {
            return Ok(());
        }
        match self.runs.last() {
            Some(run) if run.term == term => {}
            _ => self.runs.push(TermRun { term, start: self.last_index + 1 }).map_err(|_| TermRunsFull)?,
        }
        self.last_index += count;
        Ok(())
    }

    /// Whether appending an entry of `term` needs a free run slot that is not there.
    pub fn would_overflow(&self, term: Term) -> bool {
        self.runs.is_full() && self.runs.last().is_some_and(|run| run.term != term)
    }

    /// Drops every entry at or after `from_index`.
    pub fn truncate_from(&mut self, from_index: LogIndex) {
        assert!(from_index > self.snapshot.index, "never truncate into the snapshot");
        if from_index > self.last_index {
            return;
        }
        while self.runs.last().is_some_and(|run| run.start >= from_index) {
            self.runs.pop();
        }
        self.last_index = from_index - 1;
    }

    /// Moves the snapshot point forward to `snapshot`, dropping the entries it covers. A
    /// snapshot beyond the last index leaves an empty log after it.
    pub fn compact_to(&mut self, snapshot: Position) {
        if snapshot.index <= self.snapshot.index {
            return;
        }
        if snapshot.index >= self.last_index {
            *self = LogTerms::new(snapshot);
            return;
        }
        let keep_from = snapshot.index + 1;
        let first_kept = self.runs.iter().rposition(|run| run.start <= keep_from).unwrap_or(0);
        let mut kept: Vec<TermRun, TERM_RUNS_MAX> = Vec::new();
        for (position, run) in self.runs.iter().enumerate().skip(first_kept) {
            let start = if position == first_kept { keep_from } else { run.start };
            // Cannot fail: `kept` is never longer than `runs`.
            let _ = kept.push(TermRun { term: run.term, start });
        }
        self.runs = kept;
        self.snapshot = snapshot;
    }

    /// The spans of entries in `first..=last`, one per term, oldest first.
    pub fn runs_between(&self, first: LogIndex, last: LogIndex) -> impl Iterator<Item = Span> + '_ {
        let last = last.min(self.last_index);
        self.runs.iter().enumerate().filter_map(move |(position, run)| {
            let end = self.runs.get(position + 1).map_or(self.last_index, |next| next.start - 1);
            let from = run.start.max(first);
            let to = end.min(last);
            (from <= to).then_some(Span { term: run.term, first_index: from, last_index: to })
        })
    }

    /// Checks the table's own invariants; called at the end of every `handle_*`.
    pub fn assert_invariants(&self) {
        assert!(self.last_index >= self.snapshot.index);
        let mut previous: Option<&TermRun> = None;
        for run in &self.runs {
            assert!(run.start > self.snapshot.index && run.start <= self.last_index);
            assert!(run.term >= self.snapshot.term);
            if let Some(previous) = previous {
                assert!(run.start > previous.start && run.term > previous.term);
            }
            previous = Some(run);
        }
        assert_eq!(self.runs.is_empty(), self.last_index == self.snapshot.index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: terms are looked up per run, and batches stop at term boundaries.
    #[test]
    fn runs_answer_terms_and_boundaries() {
        let mut log = LogTerms::new(Position::ZERO);
        log.append(1, 3).unwrap();
        log.append(2, 2).unwrap();
        log.append(2, 1).unwrap();
        log.assert_invariants();
        assert_eq!(log.last_position(), Position::new(2, 6));
        assert_eq!(log.term_at(0), Some(0));
        assert_eq!(log.term_at(3), Some(1));
        assert_eq!(log.term_at(4), Some(2));
        assert_eq!(log.term_at(7), None);
        assert_eq!(log.run_end(1), 3);
        assert_eq!(log.run_end(4), 6);
        assert_eq!(log.run_start(5), 4);
    }

    /// Goal: truncation and compaction keep the table consistent.
    #[test]
    fn truncate_and_compact() {
        let mut log = LogTerms::new(Position::ZERO);
        log.append(1, 3).unwrap();
        log.append(3, 3).unwrap();
        log.truncate_from(5);
        log.assert_invariants();
        assert_eq!(log.last_position(), Position::new(3, 4));
        log.compact_to(Position::new(1, 2));
        log.assert_invariants();
        assert_eq!(log.first_index(), 3);
        assert_eq!(log.term_at(2), Some(1));
        assert_eq!(log.term_at(1), None);
        let spans: std::vec::Vec<Span> = log.runs_between(1, 10).collect();
        assert_eq!(
            spans,
            [Span { term: 1, first_index: 3, last_index: 3 }, Span { term: 3, first_index: 4, last_index: 4 }]
        );
        log.compact_to(Position::new(5, 9));
        log.assert_invariants();
        assert_eq!(log.last_position(), Position::new(5, 9));
    }

    /// Goal: a full table is a returned error, never a panic.
    #[test]
    fn full_table_is_an_error() {
        let mut log = LogTerms::new(Position::ZERO);
        for term in 1..=TERM_RUNS_MAX as u64 {
            log.append(term, 1).unwrap();
        }
        assert!(log.would_overflow(TERM_RUNS_MAX as u64 + 1));
        assert_eq!(log.append(TERM_RUNS_MAX as u64 + 1, 1), Err(TermRunsFull));
        assert_eq!(log.append(TERM_RUNS_MAX as u64, 1), Ok(()));
    }
}
