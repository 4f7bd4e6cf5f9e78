//! Client writes a leader has appended and not yet answered: each is acknowledged when
//! the entry it was appended as is applied, answered "outcome unknown" when leadership
//! changes first or when it waits too long, and never answered twice.
//!
//! `R` is whatever carries the answer back (a channel in the node, a write id in the
//! simulator).

use std::collections::BTreeMap;

/// What a pending write is answered.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Its entry was applied in the term it was appended in, by this node still leading:
    /// the write took effect (the state machine says with what result).
    Acknowledge,
    /// Leadership changed before the acknowledgement: it may or may not take effect.
    OutcomeUnknown,
}

struct Pending<R> {
    term: u64,
    since_us: u64,
    reply: R,
}

/// Pending writes by log index.
pub struct PendingWrites<R> {
    by_index: BTreeMap<u64, Pending<R>>,
}

impl<R> Default for PendingWrites<R> {
    fn default() -> Self {
        PendingWrites { by_index: BTreeMap::new() }
    }
}

impl<R> PendingWrites<R> {
    /// The write appended at `index` in `term`, received at `since_us`.
    pub fn insert(&mut self, index: u64, term: u64, since_us: u64, reply: R) {
        let previous = self.by_index.insert(index, Pending { term, since_us, reply });
        assert!(previous.is_none(), "two pending writes at index {index}");
    }

    /// The entry at `index`, of `term`, was applied; `leading`: this node leads now.
    /// Returns the write waiting on that index, if any, with its verdict.
    pub fn on_applied(&mut self, index: u64, term: u64, leading: bool) -> Option<(R, Verdict)> {
        let pending = self.by_index.remove(&index)?;
        let verdict = if pending.term == term && leading { Verdict::Acknowledge } else { Verdict::OutcomeUnknown };
        Some((pending.reply, verdict))
    }

    /// The write waiting on the entry at `index`, if any.
    pub fn get(&self, index: u64) -> Option<&R> {
        self.by_index.get(&index).map(|p| &p.reply)
    }

    /// This node stepped down: every write still waiting may or may not commit under
    /// the next leader, and is answered so now rather than at its time-out.
    pub fn on_stepped_down(&mut self) -> Vec<R> {
        std::mem::take(&mut self.by_index).into_values().map(|p| p.reply).collect()
    }

    /// Writes waiting longer than `timeout_us` at `now_us`, removed (answered "outcome
    /// unknown": they may still commit), with their index.
    pub fn take_expired(&mut self, now_us: u64, timeout_us: u64) -> Vec<(u64, R)> {
        let expired: Vec<u64> = self
            .by_index
            .iter()
            .filter(|(_, p)| now_us.saturating_sub(p.since_us) > timeout_us)
            .map(|(index, _)| *index)
            .collect();
        expired.into_iter().filter_map(|index| self.by_index.remove(&index).map(|p| (index, p.reply))).collect()
    }

    pub fn len(&self) -> usize {
        self.by_index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_index.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a write is acknowledged only if its own entry (same term) is applied while
    /// this node still leads; otherwise its outcome is unknown.
    #[test]
    fn acknowledged_only_for_its_own_entry_while_leading() {
        let mut writes = PendingWrites::default();
        writes.insert(5, 2, 0, "a");
        writes.insert(6, 2, 0, "b");
        writes.insert(7, 2, 0, "c");
        assert_eq!(writes.on_applied(4, 2, true), None);
        assert_eq!(writes.on_applied(5, 2, true), Some(("a", Verdict::Acknowledge)));
        assert_eq!(writes.on_applied(6, 3, true), Some(("b", Verdict::OutcomeUnknown)));
        assert_eq!(writes.on_applied(7, 2, false), Some(("c", Verdict::OutcomeUnknown)));
        assert!(writes.is_empty());
    }

    /// Goal: a step-down answers every waiting write at once, and nothing is answered twice.
    #[test]
    fn a_step_down_answers_everything_waiting() {
        let mut writes = PendingWrites::default();
        writes.insert(5, 2, 0, "a");
        writes.insert(6, 2, 0, "b");
        assert_eq!(writes.on_stepped_down(), vec!["a", "b"]);
        assert_eq!(writes.on_applied(5, 2, true), None);
    }

    /// Goal: only writes older than the time-out expire.
    #[test]
    fn only_old_writes_expire() {
        let mut writes = PendingWrites::default();
        writes.insert(5, 2, 100, "old");
        writes.insert(6, 2, 900, "new");
        assert_eq!(writes.take_expired(1_200, 1_000), vec![(5, "old")]);
        assert_eq!(writes.len(), 1);
    }
}
