//! What a node's status says that the host decides: how far each follower is behind (in
//! entries, bytes and time, and how long it has not moved), what a failover now would
//! lose, and this node's part in the membership. The driver adds names, addresses and
//! its own counters (`baton status`, the console).

use crate::node::Host;
use baton_common::{PeerStatus, Role};

/// One follower as a leader sees it.
#[derive(Clone, Debug)]
pub struct FollowerView {
    pub peer: PeerStatus,
    /// Payload bytes of the entries it lacks that are in the recent entries.
    pub lag_bytes: u64,
    /// How long ago the oldest entry it lacks was appended (a lower bound when it lacks
    /// more than the recent entries hold), microseconds.
    pub lag_us: u64,
    /// How long its match index has not moved while it was behind, microseconds.
    pub stuck_us: u64,
}

/// This node's part in the membership in effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipRole {
    Witness,
    Voter,
    Learner,
    /// Its removal is in the log.
    Removed,
    /// A joining node that has not yet heard of its addition.
    NotYetMember,
}

impl MembershipRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MembershipRole::Witness => "witness",
            MembershipRole::Voter => "voter",
            MembershipRole::Learner => "learner",
            MembershipRole::Removed => "removed",
            MembershipRole::NotYetMember => "not yet a member",
        }
    }
}

/// What a failover now would lose, as a leader knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailoverLoss {
    /// Committed (acknowledged) entries no follower that could take over holds.
    pub entries: u64,
    /// `Some(entries == 0)` on a leader; `None` elsewhere (it does not know).
    pub safe: Option<bool>,
}

impl<W, R> Host<W, R> {
    /// Each follower as this node sees it at `now_us` (none unless it leads).
    pub fn followers(&self, now_us: u64) -> Vec<FollowerView> {
        self.replica
            .peer_statuses()
            .map(|peer| {
                let behind = match peer.lag_entries {
                    0 => Default::default(),
                    _ => self.recent.behind(peer.match_index, now_us),
                };
                let stuck_us = self.progress.stuck_us(peer.id, now_us);
                FollowerView { peer, lag_bytes: behind.bytes, lag_us: behind.age_us, stuck_us }
            })
            .collect()
    }

    /// What a failover now would lose: the committed entries beyond the best log among
    /// the followers that could take over (data voters: a witness holds positions, not
    /// writes, and a learner cannot lead). In async mode that is what the leader has not
    /// replicated yet; in the other modes it is 0 unless a witness made up the quorum
    /// (the entries are then on this leader alone, with their positions on the witness,
    /// which keeps the data follower from winning an election without them).
    pub fn failover_loss(&self) -> FailoverLoss {
        if self.replica.role() != Role::Leader {
            return FailoverLoss { entries: 0, safe: None };
        }
        let config = self.replica.config();
        let could_lead = |peer: &PeerStatus| config.member(peer.id).is_some_and(|m| m.voter && !m.witness);
        let best = self.replica.peer_statuses().filter(could_lead).map(|peer| peer.match_index).max();
        // No follower could take over: a failover cannot happen, so it loses nothing.
        let entries = best.map_or(0, |best| self.replica.commit_index().saturating_sub(best));
        FailoverLoss { entries, safe: Some(entries == 0) }
    }

    /// This node's part in the membership in effect.
    pub fn membership_role(&self) -> MembershipRole {
        let me = self.replica.id();
        let membership = &self.records.current().membership;
        match membership.member(me) {
            Some(member) if member.witness => MembershipRole::Witness,
            Some(member) if member.voter => MembershipRole::Voter,
            Some(_) => MembershipRole::Learner,
            None if membership.is_removed(me) => MembershipRole::Removed,
            None => MembershipRole::NotYetMember,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::one_voter_host;

    /// Goal: a node that does not lead does not claim a failover is safe; a lone voter
    /// is a voter and has no followers.
    #[test]
    fn a_follower_does_not_know_what_a_failover_loses() {
        let host = one_voter_host::<(), ()>();
        assert_eq!(host.failover_loss(), FailoverLoss { entries: 0, safe: None });
        assert_eq!(host.membership_role(), MembershipRole::Voter);
        assert!(host.followers(0).is_empty());
    }
}
