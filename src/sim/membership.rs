//! The simulator's membership checkers: across configurations, a node whose removal
//! took effect never leads or becomes a member again, and every acknowledged write is
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
    pub fn on_applied(&mut self, node: u8, index: u64, members: Vec<u8>) {
        if self.applied.contains_key(&index) {
            return; // The first node to apply it recorded it; the others must agree (checked by the log checkers).
        }
        self.changes_applied += 1;
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

    /// `node` became leader of `term`.
    pub fn on_leader(&mut self, at_us: u64, node: u8, term: u64) {
        if let Some(&at) = self.removed.get(&node) {
            self.violation(format!("t={at_us}us: n{node}, removed at index {at}, became leader of term {term}"));
        }
    }

    /// `node` acknowledged the write at `index`; `sets` are the voter sets it had to hold in.
    pub fn on_ack(&mut self, at_us: u64, node: u8, index: u64, sets: &[QuorumFacts]) {
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
        checker.on_applied(1, 5, vec![1, 2]);
        checker.on_leader(10, 2, 4);
        assert!(checker.violations.is_empty(), "{:?}", checker.violations);
        checker.on_applied(1, 9, vec![1, 2, 3]);
        checker.on_leader(20, 3, 5);
        assert_eq!(checker.violations.len(), 2, "{:?}", checker.violations);
        assert!(checker.violations[0].contains("holding n3, removed at index 5"));
        assert!(checker.violations[1].contains("n3, removed at index 5, became leader"));
    }

    /// Goal: an acknowledgement counting a learner's or a removed node's copy is caught.
    #[test]
    fn catches_an_ack_without_a_quorum_of_voters() {
        let mut checker = MembershipChecker::new(false, vec![1, 2, 3]);
        let fine = QuorumFacts { voters: vec![1, 2, 3], holders: vec![1, 3], need: 2 };
        checker.on_ack(1, 1, 4, &[fine]);
        assert!(checker.violations.is_empty());
        // n4 is a learner: its copy does not count.
        let learner = QuorumFacts { voters: vec![1, 2, 3], holders: vec![1, 4], need: 2 };
        checker.on_ack(2, 1, 5, &[learner]);
        assert!(checker.violations[0].contains("by 1 of the voters"), "{:?}", checker.violations);
    }
}
