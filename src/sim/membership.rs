//! The simulator's membership checkers: across configurations, a node that applied its
//! own removal never leads again (until then it may: Raft thesis 4.2.2, it can be the
//! only node able to commit its removal) and no removed id becomes a member again, and every acknowledged write is
//! durable on a write quorum of the voters in effect (learners and removed nodes count
//! for nothing). Fed plain facts, so the tests below can show each catches its bug.

use std::collections::BTreeMap;

/// Write ids at and above this carry a membership change instead of a client write.
pub const MEMBERSHIP_WRITE_ID_BASE: u64 = 1 << 48;

/// Whether the entry with this write id is a membership change.
pub fn is_membership_write(write_id: u64) -> bool {
    write_id >= MEMBERSHIP_WRITE_ID_BASE
}

/// One voter set a leader's acknowledgement had to hold in: its voters' ids, which of
/// them durably held the write, and how many must.
#[derive(Clone, Debug)]
pub struct QuorumFacts {
    pub voters: Vec<u8>,
    /// The voters that are witnesses (they hold positions, not data, in the node).
    pub witnesses: Vec<u8>,
    pub holders: Vec<u8>,
    pub need: u8,
}

#[derive(Debug, Default)]
pub struct MembershipChecker {
    async_mode: bool,
    initial_members: Vec<u8>,
    /// The member ids of each membership entry applied anywhere, by index.
    applied: BTreeMap<u64, Vec<u8>>,
    /// Ids whose removal was applied: final outside async mode.
    removed: BTreeMap<u8, u64>,
    /// Leaders that applied their own removal: since when, and its index.
    removed_leaders: BTreeMap<u8, (u64, u64)>,
    /// Membership changes applied, and acknowledgements checked against voter sets.
    pub changes_applied: usize,
    pub violations: Vec<String>,
}

impl MembershipChecker {
    pub fn new(async_mode: bool, initial_members: Vec<u8>) -> Self {
        MembershipChecker { async_mode, initial_members, ..MembershipChecker::default() }
    }

    fn violation(&mut self, text: String) {
        if self.violations.len() < 10 {
            self.violations.push(text);
        }
    }

    /// `node` applied the membership entry at `index`, whose members are `members`.
    /// (An async cluster may discard an applied entry, a membership change too: its
    /// removals are not final there, as docs/replication.md says.)
    /// `leading`: whether `node` leads as it applies it.
    /// `change`: the record makes a change (not only the cluster's id or an upstream).
    pub fn on_applied(&mut self, at_us: u64, node: u8, index: u64, members: Vec<u8>, leading: bool, change: bool) {
        // (In async mode a leader applies its own removal on its own copy, and leads on
        // until the removal holds on a majority, which may take a lagging voter long.)
        if leading && !members.contains(&node) && !self.async_mode {
            self.removed_leaders.entry(node).or_insert((at_us, index));
        }
        if self.applied.contains_key(&index) {
            return; // The first node to apply it recorded it; the others must agree (checked by the log checkers).
        }
        self.changes_applied += usize::from(change);
        let previous = self.applied.range(..index).next_back().map_or(&self.initial_members, |(_, m)| m).clone();
        if let Some((&id, &at)) = self.removed.iter().find(|(id, _)| members.contains(id)) {
            self.violation(format!(
                "n{node} applied a membership at index {index} holding n{id}, removed at index {at}"
            ));
        }
        if !self.async_mode {
            for id in previous.iter().filter(|id| !members.contains(id)) {
                self.removed.insert(*id, index);
            }
        }
        self.applied.insert(index, members);
    }

    /// `node` leads at `at_us`. One that applied its own removal while leading hands
    /// over, and must have stopped leading within `handover_us` (an election timeout).
    pub fn on_leading(&mut self, at_us: u64, node: u8, handover_us: u64) {
        let Some(&(since_us, index)) = self.removed_leaders.get(&node) else { return };
        if at_us > since_us + handover_us {
            self.removed_leaders.remove(&node);
            self.violation(format!(
                "t={at_us}us: n{node} applied its own removal at index {index} at t={since_us}us and still leads"
            ));
        }
    }

    /// `node` stopped leading.
    pub fn on_stepped_down(&mut self, node: u8) {
        self.removed_leaders.remove(&node);
    }

    /// `node`, a witness in its own membership, became leader of `term`.
    pub fn on_witness_leader(&mut self, at_us: u64, node: u8, term: u64) {
        self.violation(format!("t={at_us}us: witness n{node} became leader of term {term}: it holds no data"));
    }

    /// `node` became leader of `term`, having applied its log through `applied_index`.
    /// A node whose removal is in its log but not known committed may lead, to commit
    /// it; one that applied it knows it committed and must not.
    pub fn on_leader(&mut self, at_us: u64, node: u8, term: u64, applied_index: u64) {
        if let Some(&at) = self.removed.get(&node).filter(|at| **at <= applied_index) {
            self.violation(format!(
                "t={at_us}us: n{node} applied its removal at index {at} and became leader of term {term}"
            ));
        }
    }

    /// `node` acknowledged the write at `index`; `sets` are the voter sets it had to hold in.
    pub fn on_ack(&mut self, at_us: u64, node: u8, index: u64, sets: &[QuorumFacts]) {
        if let Some(set) = sets.first() {
            // A witness's copy carries no data: a data voter must hold every write.
            if !set.holders.iter().any(|id| set.voters.contains(id) && !set.witnesses.contains(id)) {
                self.violation(format!(
                    "t={at_us}us: n{node} acknowledged index {index} held durably by no data node (holders {:?}, \
                     witnesses {:?})",
                    set.holders, set.witnesses
                ));
            }
        }
        for set in sets {
            let held = set.holders.iter().filter(|id| set.voters.contains(id)).count();
            if held < usize::from(set.need) {
                self.violation(format!(
                    "t={at_us}us: n{node} acknowledged index {index} held durably by {held} of the voters {:?} \
                     (holders {:?}); the mode needs {}",
                    set.voters, set.holders, set.need
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a removed id that is a member again, or leads again, is caught.
    #[test]
    fn catches_a_removed_node_coming_back() {
        let mut checker = MembershipChecker::new(false, vec![1, 2, 3]);
        checker.on_applied(0, 1, 5, vec![1, 2], true, true);
        checker.on_leader(10, 2, 4, 5);
        // n3 has not applied its removal: it may lead to commit it (Raft thesis 4.2.2).
        checker.on_leader(11, 3, 5, 4);
        assert!(checker.violations.is_empty(), "{:?}", checker.violations);
        checker.on_applied(12, 1, 9, vec![1, 2, 3], false, true);
        checker.on_leader(20, 3, 6, 9);
        assert_eq!(checker.violations.len(), 2, "{:?}", checker.violations);
        assert!(checker.violations[0].contains("holding n3, removed at index 5"));
        assert!(checker.violations[1].contains("n3 applied its removal at index 5 and became leader"));
    }

    /// Goal: a leader that applies its own removal and does not hand over within an
    /// election timeout is caught.
    #[test]
    fn catches_a_removed_leader_that_keeps_leading() {
        let mut checker = MembershipChecker::new(false, vec![1, 2, 3]);
        checker.on_applied(100, 3, 5, vec![1, 2], true, true);
        checker.on_leading(150, 3, 100);
        checker.on_stepped_down(3);
        checker.on_leading(250, 3, 100);
        assert!(checker.violations.is_empty(), "it handed over in time");
        checker.on_applied(300, 2, 7, vec![1, 2], true, true);
        checker.on_leading(350, 2, 100);
        assert!(checker.violations.is_empty(), "n2 is a member");
        let mut checker = MembershipChecker::new(false, vec![1, 2, 3]);
        checker.on_applied(100, 3, 5, vec![1, 2], true, true);
        checker.on_leading(201, 3, 100);
        assert!(checker.violations[0].contains("n3 applied its own removal at index 5 at t=100us and still leads"));
    }

    /// Goal: an acknowledgement counting a learner's or a removed node's copy is caught.
    #[test]
    fn catches_an_ack_without_a_quorum_of_voters() {
        let mut checker = MembershipChecker::new(false, vec![1, 2, 3]);
        let fine = QuorumFacts { voters: vec![1, 2, 3], witnesses: vec![], holders: vec![1, 3], need: 2 };
        checker.on_ack(1, 1, 4, &[fine]);
        assert!(checker.violations.is_empty());
        // n4 is a learner: its copy does not count.
        let learner = QuorumFacts { voters: vec![1, 2, 3], witnesses: vec![], holders: vec![1, 4], need: 2 };
        checker.on_ack(2, 1, 5, &[learner]);
        assert!(checker.violations[0].contains("by 1 of the voters"), "{:?}", checker.violations);
    }

    /// Goal: a write whose only durable copies are on witnesses is caught, as is a
    /// witness that leads.
    #[test]
    fn catches_a_write_held_only_by_witnesses_and_a_witness_leader() {
        let mut checker = MembershipChecker::new(false, vec![1, 2, 3]);
        let fine = QuorumFacts { voters: vec![1, 2, 3], witnesses: vec![3], holders: vec![1, 3], need: 2 };
        checker.on_ack(1, 1, 4, &[fine]);
        assert!(checker.violations.is_empty(), "{:?}", checker.violations);
        let bad = QuorumFacts { voters: vec![1, 2, 3, 4, 5], witnesses: vec![4, 5], holders: vec![4, 5], need: 2 };
        checker.on_ack(2, 1, 5, &[bad]);
        assert!(checker.violations[0].contains("held durably by no data node"), "{:?}", checker.violations);
        checker.on_witness_leader(3, 3, 7);
        assert!(checker.violations[1].contains("witness n3 became leader of term 7"));
    }
}
