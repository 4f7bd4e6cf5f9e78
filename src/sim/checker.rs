//! The simulator's safety checkers. They watch a history as it happens (elections,
//! acknowledgements, applies, discards) and record every violation in words.
//!
//! Each checker is fed plain facts, not simulator state, so the tests below can feed it
//! a bad history and show that it catches the violation.

use std::collections::BTreeMap;

/// One log entry as the simulator stores it: its term, the client write it carries (0
/// for a leader's no-op), and the session number the leader named the write's session
/// by when it appended it (0: by id, or no session; see `baton_host::session`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct SimEntry {
    pub term: u64,
    pub write_id: u64,
    pub session_number: u64,
}

impl SimEntry {
    pub fn new(term: u64, write_id: u64) -> SimEntry {
        SimEntry { term, write_id, session_number: 0 }
    }
}

/// A write a leader acknowledged to its client.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct AckedWrite {
    pub at_us: u64,
    pub node: u8,
    /// The term of the leader that acknowledged it: the write committed in that term.
    pub term: u64,
    pub index: u64,
    pub entry: SimEntry,
}

#[derive(Debug, Default)]
pub struct Checker {
    pub async_mode: bool,
    pub election_timeout_us: u64,
    leaders: BTreeMap<u64, u8>,
    newest_elected_term: u64,
    acked: Vec<AckedWrite>,
    applied: BTreeMap<u8, Vec<SimEntry>>,
    /// The first entry any node ever applied at each index, and which node: what a
    /// state machine applies is final, even once the node that applied it has crashed
    /// and forgotten (outside async mode).
    ever_applied: BTreeMap<u64, (u8, SimEntry)>,
    discarded: Vec<(u8, u64, u64, u64)>,
    /// The longest time an isolated leader kept acknowledging after losing its quorum.
    pub isolated_ack_window_us: u64,
    pub violations: Vec<String>,
}

impl Checker {
    pub fn new(async_mode: bool, election_timeout_us: u64) -> Self {
        Checker { async_mode, election_timeout_us, ..Checker::default() }
    }

    /// A violation found outside the checker, at `at_us`.
    pub fn violation_at(&mut self, at_us: u64, text: String) {
        self.violation(format!("t={at_us}us: {text}"));
    }

    fn violation(&mut self, text: String) {
        if self.violations.len() < 20 {
            self.violations.push(text);
        }
    }

    pub fn acked(&self) -> &[AckedWrite] {
        &self.acked
    }

    /// `node` became leader of `term`; `log_at(index)` reads its log at that moment. It
    /// must hold every write acknowledged in an earlier term (leader completeness); a
    /// leader of a term older than the newest may lack later ones (a candidate that
    /// resumes from a pause to find its old votes, say: it cannot commit anything).
    pub fn on_leader(&mut self, at_us: u64, node: u8, term: u64, log_at: &dyn Fn(u64) -> Option<SimEntry>) {
        if let Some(&other) = self.leaders.get(&term) {
            if other != node {
                self.violation(format!("t={at_us}us: two leaders in term {term}: n{other} and n{node}"));
            }
        }
        self.leaders.insert(term, node);
        self.newest_elected_term = self.newest_elected_term.max(term);
        if !self.async_mode {
            let missing: Vec<AckedWrite> =
                self.acked.iter().filter(|w| w.term < term && log_at(w.index) != Some(w.entry)).copied().collect();
            for write in missing.into_iter().take(3) {
                self.violation(format!(
                    "t={at_us}us: leader n{node} of term {term} lacks acknowledged write {} at index {} (acked by n{} at t={}us)",
                    write.entry.write_id, write.index, write.node, write.at_us
                ));
            }
        }
    }

    /// `node`, leading `term`, acknowledged the write at `index`. `quorum_lost_at_us` is
    /// when it last had its lease quorum of voters reachable, if it does not now.
    pub fn on_ack(
        &mut self,
        at_us: u64,
        node: u8,
        term: u64,
        index: u64,
        entry: SimEntry,
        quorum_lost_at_us: Option<u64>,
    ) {
        if !self.async_mode && self.newest_elected_term > term {
            self.violation(format!(
                "t={at_us}us: n{node} acknowledged index {index} in term {term} after a leader of term {} was elected",
                self.newest_elected_term
            ));
        }
        if let Some(lost_at) = quorum_lost_at_us {
            let window = at_us - lost_at;
            self.isolated_ack_window_us = self.isolated_ack_window_us.max(window);
            if window > self.election_timeout_us {
                self.violation(format!(
                    "t={at_us}us: isolated leader n{node} still acknowledged {window}us after losing its quorum"
                ));
            }
        }
        self.acked.push(AckedWrite { at_us, node, term, index, entry });
    }

    /// `node` applied `entry` at `index`.
    pub fn on_apply(&mut self, node: u8, index: u64, entry: SimEntry) {
        let applied = self.applied.entry(node).or_default();
        if applied.len() as u64 + 1 != index {
            let expected = applied.len() + 1;
            self.violation(format!("n{node} applied index {index} out of order (expected {expected})"));
            return;
        }
        applied.push(entry);
        if self.async_mode {
            return; // Async replicas may diverge until a discard; compared at the end.
        }
        let (first_node, first) = *self.ever_applied.entry(index).or_insert((node, entry));
        if first != entry {
            self.violation(format!(
                "n{node} applied {entry:?} at index {index}, where n{first_node} had applied {first:?}"
            ));
        }
    }

    /// `node` reset its state machine to `prefix` (a restart, or a snapshot install).
    pub fn on_state_reset(&mut self, node: u8, prefix: &[SimEntry]) {
        self.applied.insert(node, prefix.to_vec());
    }

    /// `node` rolled its state machine back to before `from_index` after a discard.
    pub fn on_unapply(&mut self, node: u8, from_index: u64) {
        if let Some(applied) = self.applied.get_mut(&node) {
            applied.truncate(from_index as usize - 1);
        }
    }

    /// `node` reported discarding entries of `term` from `from_index` to `to_index`.
    pub fn on_discarded(&mut self, node: u8, term: u64, from_index: u64, to_index: u64) {
        if !self.async_mode {
            self.violation(format!("n{node} discarded entries {from_index}..={to_index} outside async mode"));
        }
        self.discarded.push((node, term, from_index, to_index));
    }

    /// Leader `node` handed leadership to `target` (sent it TimeoutNow). The handoff is
    /// only safe, and only quick, once the target durably holds the leader's last entry
    /// and everything is committed: else the target campaigns with a log the voters
    /// refuse, or wins with committed entries missing.
    pub fn on_handoff(&mut self, at_us: u64, node: u8, target: u8, last: u64, commit: u64, target_has_last: bool) {
        if commit != last || !target_has_last {
            self.violation(format!(
                "t={at_us}us: n{node} handed over to n{target} with its log at {last}, committed to {commit}, and the target {} it",
                if target_has_last { "holding" } else { "not holding" }
            ));
        }
    }

    /// End of the run: `final_log_at` reads the final leader's log, `logs` every node's.
    /// `departed` are the nodes the final membership no longer holds: in async mode,
    /// what one of them acknowledged and lost is recorded in no member's journal (the
    /// node never rejoins the leader's log to discard it), as docs/replication.md says.
    pub fn finish(
        &mut self,
        final_log_at: &dyn Fn(u64) -> Option<SimEntry>,
        logs: &[(u8, Vec<Option<SimEntry>>)],
        departed: &[u8],
    ) {
        let acked = self.acked.clone();
        for write in acked {
            if final_log_at(write.index) == Some(write.entry) {
                continue;
            }
            if self.async_mode && departed.contains(&write.node) {
                continue;
            }
            let covered = self
                .discarded
                .iter()
                .any(|&(_, term, from, to)| term == write.entry.term && from <= write.index && write.index <= to);
            if !self.async_mode {
                self.violation(format!(
                    "acknowledged write {} at index {} was lost",
                    write.entry.write_id, write.index
                ));
            } else if !covered {
                self.violation(format!(
                    "async write {} at index {} (term {}) was lost without a Discarded event",
                    write.entry.write_id, write.index, write.entry.term
                ));
            }
        }
        self.check_log_matching(logs);
        if self.async_mode {
            // A departed node applied its own commits and never rejoins to discard them.
            self.applied.retain(|node, _| !departed.contains(node));
        }
        self.check_applied_prefixes();
    }

    /// Log matching: if two logs hold an entry of the same term at the same index, they
    /// agree on everything before it.
    pub fn check_log_matching(&mut self, logs: &[(u8, Vec<Option<SimEntry>>)]) {
        for (a, (node_a, log_a)) in logs.iter().enumerate() {
            for (node_b, log_b) in &logs[a + 1..] {
                let common = log_a.len().min(log_b.len());
                let highest_same =
                    (0..common).rev().find(|&i| matches!((log_a[i], log_b[i]), (Some(x), Some(y)) if x.term == y.term));
                if let Some(top) = highest_same {
                    let differs = (0..=top).find(|&i| matches!((log_a[i], log_b[i]), (Some(x), Some(y)) if x != y));
                    if let Some(i) = differs {
                        self.violation(format!(
                            "log matching broken between n{node_a} and n{node_b} at index {}",
                            i + 1
                        ));
                    }
                }
            }
        }
    }

    /// Replicas applied the same sequence: every pair agrees on their common prefix.
    fn check_applied_prefixes(&mut self) {
        let applied: Vec<(u8, Vec<SimEntry>)> = self.applied.iter().map(|(n, l)| (*n, l.clone())).collect();
        for (a, (node_a, log_a)) in applied.iter().enumerate() {
            for (node_b, log_b) in &applied[a + 1..] {
                if let Some(i) = log_a.iter().zip(log_b).position(|(x, y)| x != y) {
                    self.violation(format!("n{node_a} and n{node_b} applied different sequences from index {}", i + 1));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_000_000;
    fn entry(term: u64, write_id: u64) -> SimEntry {
        SimEntry::new(term, write_id)
    }

    /// Goal: two leaders in one term are caught.
    #[test]
    fn catches_two_leaders_in_a_term() {
        let mut checker = Checker::new(false, T);
        checker.on_leader(1, 1, 5, &|_| None);
        checker.on_leader(2, 2, 5, &|_| None);
        assert!(checker.violations[0].contains("two leaders in term 5"), "{:?}", checker.violations);
    }

    /// Goal: a switchover handoff before the target caught up, or before the leader's log
    /// committed, is caught; a proper one is not.
    #[test]
    fn catches_a_handoff_before_catch_up() {
        let mut checker = Checker::new(false, T);
        checker.on_handoff(1, 1, 2, 10, 10, true);
        assert!(checker.violations.is_empty());
        checker.on_handoff(2, 1, 2, 10, 10, false);
        checker.on_handoff(3, 1, 2, 10, 9, true);
        assert_eq!(checker.violations.len(), 2, "{:?}", checker.violations);
    }

    /// Goal: an entry applied and then replaced is caught even after the node that
    /// applied it forgot it (crashed and restarted from an older snapshot).
    #[test]
    fn catches_an_applied_entry_replaced_after_a_crash() {
        let mut checker = Checker::new(false, T);
        checker.on_apply(1, 1, entry(2, 5));
        checker.on_state_reset(1, &[]);
        checker.on_apply(2, 1, entry(3, 0));
        assert!(checker.violations[0].contains("had applied"), "{:?}", checker.violations);
    }

    /// Goal: a new leader missing an acknowledged write is caught.
    #[test]
    fn catches_leader_missing_acked_write() {
        let mut checker = Checker::new(false, T);
        checker.on_leader(1, 1, 1, &|_| None);
        checker.on_ack(2, 1, 1, 1, entry(1, 7), None);
        checker.on_leader(3, 2, 2, &|_| None);
        assert!(checker.violations[0].contains("lacks acknowledged write 7"), "{:?}", checker.violations);
    }

    /// Goal: an acknowledgement by a stale leader after a newer election is caught.
    #[test]
    fn catches_ack_after_newer_leader() {
        let mut checker = Checker::new(false, T);
        checker.on_leader(1, 1, 1, &|_| None);
        checker.on_leader(2, 2, 2, &|_| None);
        checker.on_ack(3, 1, 1, 1, entry(1, 9), None);
        assert!(checker.violations[0].contains("after a leader of term 2"), "{:?}", checker.violations);
    }

    /// Goal: an isolated leader acknowledging past one election timeout is caught, and
    /// the window is measured.
    #[test]
    fn catches_isolated_leader_acking_too_long() {
        let mut checker = Checker::new(true, T);
        checker.on_leader(0, 1, 1, &|_| None);
        checker.on_ack(200, 1, 1, 1, entry(1, 1), Some(100));
        assert!(checker.violations.is_empty());
        assert_eq!(checker.isolated_ack_window_us, 100);
        checker.on_ack(100 + T + 1, 1, 1, 2, entry(1, 2), Some(100));
        assert!(checker.violations[0].contains("isolated leader n1"), "{:?}", checker.violations);
    }

    /// Goal: diverging applies are caught.
    #[test]
    fn catches_diverging_applies() {
        let mut checker = Checker::new(false, T);
        checker.on_apply(1, 1, entry(1, 1));
        checker.on_apply(2, 1, entry(1, 2));
        assert!(checker.violations[0].contains("at index 1, where n1 had applied"), "{:?}", checker.violations);
        let mut checker = Checker::new(false, T);
        checker.on_apply(1, 2, entry(1, 1));
        assert!(checker.violations[0].contains("out of order"));
    }

    /// Goal: broken log matching is caught.
    #[test]
    fn catches_broken_log_matching() {
        let mut checker = Checker::new(false, T);
        let a = vec![Some(entry(1, 1)), Some(entry(2, 2))];
        let b = vec![Some(entry(1, 3)), Some(entry(2, 2))];
        checker.check_log_matching(&[(1, a), (2, b)]);
        assert!(checker.violations[0].contains("log matching broken"), "{:?}", checker.violations);
    }

    /// Goal: in async mode, a lost acknowledged write without a Discarded event is
    /// caught, and one with a covering event is not.
    #[test]
    fn catches_silent_async_loss() {
        let mut checker = Checker::new(true, T);
        checker.on_ack(1, 1, 1, 3, entry(1, 5), None);
        checker.finish(&|_| None, &[], &[]);
        assert!(checker.violations[0].contains("without a Discarded event"), "{:?}", checker.violations);
        // Unless the node that acknowledged it left the cluster before it could rejoin.
        let mut checker = Checker::new(true, T);
        checker.on_ack(1, 1, 1, 3, entry(1, 5), None);
        checker.finish(&|_| None, &[], &[1]);
        assert!(checker.violations.is_empty(), "{:?}", checker.violations);

        let mut checker = Checker::new(true, T);
        checker.on_ack(1, 1, 1, 3, entry(1, 5), None);
        checker.on_discarded(1, 1, 2, 4);
        checker.finish(&|_| None, &[], &[]);
        assert!(checker.violations.is_empty(), "{:?}", checker.violations);
    }

    /// Goal: in a non-async mode, any lost acknowledged write is caught at the end, and
    /// a discard at all is a violation.
    #[test]
    fn catches_lost_write_and_discard_outside_async() {
        let mut checker = Checker::new(false, T);
        checker.on_ack(1, 1, 1, 3, entry(1, 5), None);
        checker.on_discarded(1, 1, 3, 3);
        checker.finish(&|_| None, &[], &[1]);
        assert!(checker.violations.iter().any(|v| v.contains("outside async")));
        assert!(checker.violations.iter().any(|v| v.contains("was lost")));
    }
}
