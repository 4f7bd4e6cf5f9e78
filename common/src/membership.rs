//! Who is in the cluster, as the replicated log says: memberships, the single-node
//! changes between them, and the short history of memberships a replica keeps so that a
//! truncation can take an uncommitted change back.
//!
//! # Rules (see docs/replication.md, "Membership")
//!
//! - A membership lives in a log entry and takes effect on every node as soon as that
//!   entry is in its log (appended, not committed), as Raft requires.
//! - One change at a time, one node at a time: a leader appends a change only after an
//!   entry of its own term has committed and the previous change has committed
//!   (Ongaro, raft-dev 2015-07-10).
//! - While a change is uncommitted, the leader commits and keeps its lease only with a
//!   quorum of the old voters *and* one of the new: with flexible quorums (`sync:W`,
//!   `all`) one node's difference does not by itself make every old write quorum meet
//!   every new election quorum.
//! - Ids are never reused: every id below `next_id` that is not a member was removed
//!   and is refused for ever (a tombstone costs no space).

use crate::config::Member;
use crate::limits::{MEMBERSHIPS_KEPT_MAX, NODES_MAX, PRIORITY_MAX};
use crate::mode::{ModeError, WriteMode};
use crate::types::{LogIndex, NodeId};
use heapless::Vec;
use serde::{Deserialize, Serialize};

/// The members at one point of the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub members: Vec<Member, NODES_MAX>,
    /// The next id to hand out. Ids below it that are not members were removed.
    pub next_id: u8,
}

/// One single-node change.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// A new node, as a learner: it replicates and counts toward nothing.
    AddLearner {
        id: NodeId,
        priority: u8,
    },
    /// A new witness, as a learner (promoted like any learner): it stores positions,
    /// no data, and never leads.
    AddWitness {
        id: NodeId,
    },
    /// A learner becomes a voter.
    Promote {
        id: NodeId,
    },
    /// A member leaves for good; its id is never accepted again.
    Remove {
        id: NodeId,
    },
    SetPriority {
        id: NodeId,
        priority: u8,
    },
}

impl Change {
    pub fn node(&self) -> NodeId {
        match *self {
            Change::AddLearner { id, .. }
            | Change::AddWitness { id }
            | Change::Promote { id }
            | Change::Remove { id }
            | Change::SetPriority { id, .. } => id,
        }
    }
}

/// Why a change does not fit the membership it would apply to.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ChangeError {
    AlreadyMember,
    NotMember,
    /// The id was removed earlier; ids are never reused.
    Removed,
    NotALearner,
    TooManyMembers,
    PriorityTooHigh,
    /// A witness never leads: its priority stays 0.
    WitnessNeverLeads,
    /// As many voting witnesses as a write needs copies: a write could be
    /// acknowledged with no data node holding it but the leader.
    TooManyWitnesses {
        witnesses: u8,
        write_quorum: u8,
    },
    NoVoterLeft,
    /// Fewer voters could lead (priority above 0) than an election needs votes: if the
    /// priority-0 voters held the longest logs, no node could ever be elected.
    TooFewEligibleVoters {
        eligible: u8,
        election_quorum: u8,
    },
    /// The write mode would not fit the new number of voters.
    Mode(ModeError),
}

impl Membership {
    /// The membership of a cluster formed with `members`: ids are handed out after the
    /// highest one.
    pub fn new(members: Vec<Member, NODES_MAX>) -> Membership {
        let next_id = members.iter().map(|m| m.id.0).max().unwrap_or(0).saturating_add(1);
        Membership { members, next_id }
    }

    pub fn member(&self, id: NodeId) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.member(id).is_some_and(|m| m.voter)
    }

    pub fn voters(&self) -> u8 {
        self.members.iter().filter(|m| m.voter).count() as u8
    }

    /// Whether `id` was a member once and was removed.
    pub fn is_removed(&self, id: NodeId) -> bool {
        id.0 >= 1 && id.0 < self.next_id && self.member(id).is_none()
    }

    /// The membership after `change`, checked against `mode`.
    pub fn apply(&self, change: Change, mode: WriteMode) -> Result<Membership, ChangeError> {
        let mut next = self.clone();
        match change {
            Change::AddLearner { id, .. } | Change::AddWitness { id } => {
                if self.member(id).is_some() {
                    return Err(ChangeError::AlreadyMember);
                }
                if self.is_removed(id) || id.0 == 0 {
                    return Err(ChangeError::Removed);
                }
                let member = match change {
                    Change::AddLearner { priority, .. } if priority > PRIORITY_MAX => {
                        return Err(ChangeError::PriorityTooHigh)
                    }
                    Change::AddLearner { priority, .. } => Member::learner(id, priority),
                    _ => Member { witness: true, ..Member::learner(id, 0) },
                };
                next.members.push(member).map_err(|_| ChangeError::TooManyMembers)?;
                next.next_id = id.0.saturating_add(1);
            }
            Change::Promote { id } => {
                let member = next.members.iter_mut().find(|m| m.id == id).ok_or(self.missing(id))?;
                if member.voter {
                    return Err(ChangeError::NotALearner);
                }
                member.voter = true;
            }
            Change::Remove { id } => {
                let position = next.members.iter().position(|m| m.id == id).ok_or(self.missing(id))?;
                next.members.remove(position);
            }
            Change::SetPriority { id, priority } => {
                if priority > PRIORITY_MAX {
                    return Err(ChangeError::PriorityTooHigh);
                }
                let member = next.members.iter_mut().find(|m| m.id == id).ok_or(self.missing(id))?;
                if member.witness && priority > 0 {
                    return Err(ChangeError::WitnessNeverLeads);
                }
                member.priority = priority;
            }
        }
        if next.voters() == 0 {
            return Err(ChangeError::NoVoterLeft);
        }
        mode.validate(next.voters()).map_err(ChangeError::Mode)?;
        // Every write quorum must hold a data node, or a write could be acknowledged
        // with its only data on one node that then fails. (Async: the leader's own copy
        // is always one of them.)
        let witnesses = next.members.iter().filter(|m| m.voter && m.witness).count() as u8;
        let write_quorum = mode.write_quorum(next.voters());
        if mode != WriteMode::Async && witnesses >= write_quorum {
            return Err(ChangeError::TooManyWitnesses { witnesses, write_quorum });
        }
        let eligible = next.members.iter().filter(|m| m.eligible()).count() as u8;
        let election_quorum = mode.election_quorum(next.voters());
        if eligible < election_quorum {
            return Err(ChangeError::TooFewEligibleVoters { eligible, election_quorum });
        }
        Ok(next)
    }

    fn missing(&self, id: NodeId) -> ChangeError {
        if self.is_removed(id) {
            ChangeError::Removed
        } else {
            ChangeError::NotMember
        }
    }
}

/// The memberships a replica knows, oldest first: the one in effect at the oldest point
/// it may need (the snapshot, or a committed entry), then every later one in its log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembershipLog {
    entries: Vec<(LogIndex, Membership), MEMBERSHIPS_KEPT_MAX>,
}

impl MembershipLog {
    /// A log whose membership at `index` (a snapshot point, or 0) is `membership`.
    pub fn new(index: LogIndex, membership: Membership) -> MembershipLog {
        let mut entries = Vec::new();
        let _ = entries.push((index, membership));
        MembershipLog { entries }
    }

    /// The membership at the end of the log: the one in effect.
    pub fn current(&self) -> &Membership {
        &self.entries.last().expect("never empty").1
    }

    /// The index of the entry that made the current membership.
    pub fn current_index(&self) -> LogIndex {
        self.entries.last().expect("never empty").0
    }

    /// The membership before the current one, if this log still knows it.
    pub fn previous(&self) -> Option<&Membership> {
        let len = self.entries.len();
        (len >= 2).then(|| &self.entries[len - 2].1)
    }

    pub fn iter(&self) -> impl Iterator<Item = &(LogIndex, Membership)> {
        self.entries.iter()
    }

    /// Records `membership` from the entry at `index`, the newest in the log. When the
    /// table is full the oldest entry is folded into the next one (it is only needed to
    /// undo a truncation below `committed_index`, which never happens). Returns false if
    /// an uncommitted membership had to be forgotten (counted by the caller).
    pub fn push(&mut self, index: LogIndex, membership: Membership, committed_index: LogIndex) -> bool {
        assert!(index > self.current_index(), "memberships are recorded in log order");
        let mut kept_everything = true;
        if self.entries.is_full() {
            kept_everything = self.entries[1].0 <= committed_index;
            self.entries.remove(0);
        }
        let _ = self.entries.push((index, membership));
        kept_everything
    }

    /// Forgets every membership from an entry at or after `from_index`. Returns whether
    /// the current membership changed.
    pub fn truncate_from(&mut self, from_index: LogIndex) -> bool {
        let before = self.entries.len();
        while self.entries.len() > 1 && self.entries.last().is_some_and(|(index, _)| *index >= from_index) {
            self.entries.pop();
        }
        self.entries.len() != before
    }

    /// Drops memberships superseded at or before `index` (a snapshot or commit point).
    pub fn compact_to(&mut self, index: LogIndex) {
        while self.entries.len() > 1 && self.entries[1].0 <= index {
            self.entries.remove(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Membership {
        let mut members = Vec::new();
        for id in 1..=3 {
            let _ = members.push(Member::voter(NodeId(id), 1));
        }
        Membership::new(members)
    }

    #[test]
    fn ids_are_never_reused() {
        let m = three();
        assert_eq!(m.next_id, 4);
        let m = m.apply(Change::Remove { id: NodeId(2) }, WriteMode::Quorum).unwrap();
        assert!(m.is_removed(NodeId(2)));
        assert_eq!(
            m.apply(Change::AddLearner { id: NodeId(2), priority: 1 }, WriteMode::Quorum),
            Err(ChangeError::Removed)
        );
        let m = m.apply(Change::AddLearner { id: NodeId(4), priority: 1 }, WriteMode::Quorum).unwrap();
        assert_eq!(m.next_id, 5);
        assert!(!m.is_voter(NodeId(4)));
        let m = m.apply(Change::Promote { id: NodeId(4) }, WriteMode::Quorum).unwrap();
        assert_eq!(m.voters(), 3);
        assert_eq!(m.apply(Change::Promote { id: NodeId(4) }, WriteMode::Quorum), Err(ChangeError::NotALearner));
    }

    #[test]
    fn a_change_that_breaks_the_mode_is_refused() {
        let m = three().apply(Change::Remove { id: NodeId(3) }, WriteMode::Sync(3));
        assert!(matches!(m, Err(ChangeError::Mode(_))));
    }

    #[test]
    fn truncation_takes_uncommitted_memberships_back() {
        let base = three();
        let mut log = MembershipLog::new(0, base.clone());
        let added = base.apply(Change::AddLearner { id: NodeId(4), priority: 1 }, WriteMode::Quorum).unwrap();
        assert!(log.push(10, added.clone(), 0));
        assert_eq!(log.current(), &added);
        assert!(!log.truncate_from(11));
        assert!(log.truncate_from(10));
        assert_eq!(log.current(), &base);
        assert!(!log.truncate_from(1), "the base is never dropped");
    }

    #[test]
    fn a_full_table_folds_committed_memberships() {
        let mut m = three();
        let mut log = MembershipLog::new(0, m.clone());
        for step in 0..(2 * MEMBERSHIPS_KEPT_MAX as u8) {
            m = m.apply(Change::SetPriority { id: NodeId(1), priority: step }, WriteMode::Quorum).unwrap();
            let index = u64::from(step) + 1;
            assert!(log.push(index, m.clone(), index));
        }
        assert_eq!(log.current(), &m);
        log.compact_to(100);
        assert_eq!(log.iter().count(), 1);
        assert_eq!(log.current(), &m);
    }
}
