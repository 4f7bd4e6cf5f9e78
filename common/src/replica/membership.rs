//! Membership changes in the core: a leader proposing one, a follower recording one it
//! appended, and which members a leader's quorums are counted over while one is in
//! flight. The rules are in [`crate::membership`].

use super::{Replica, Role};
use crate::config::Member;
use crate::limits::NODES_MAX;
use crate::membership::{Change, Membership};
use crate::output::{Proposal, Refusal, Refused};
use crate::progress::Progress;
use crate::types::{LogIndex, Micros, NodeId};
use heapless::Vec;

/// A membership change the core accepted (or, on a dry run, would accept).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembershipProposal {
    /// Where the host stores the change's entry and when it is durable (`None`: dry run).
    pub proposal: Option<Proposal>,
    /// The membership once the change is in the log.
    pub membership: Membership,
    /// Copies that acknowledge a write, and votes that win an election, once it is.
    pub write_quorum: u8,
    pub election_quorum: u8,
}

impl Replica {
    /// Proposes one single-node change. On success the host stores an entry carrying the
    /// returned membership at `proposal.position` (with whatever else it needs, such as
    /// addresses); the change is in effect at once and done once committed. With
    /// `dry_run`, only says whether it would be accepted and what the quorums would be.
    pub fn handle_propose_membership(
        &mut self,
        now: Micros,
        change: Change,
        dry_run: bool,
    ) -> Result<MembershipProposal, Refused> {
        self.observe_now(now);
        let membership = self.check_membership_change(change)?;
        let voters = membership.voters();
        let mut accepted = MembershipProposal {
            proposal: None,
            write_quorum: self.config.mode.write_quorum(voters),
            election_quorum: self.config.mode.election_quorum(voters),
            membership,
        };
        if !dry_run {
            self.log.append(self.hard.term, 1).expect("checked by would_overflow");
            let seq = self.next_persist_seq();
            let position = self.log.last_position();
            accepted.proposal = Some(Proposal { position, seq });
            self.record_membership(position.index, accepted.membership.clone());
        }
        self.assert_invariants();
        Ok(accepted)
    }

    fn check_membership_change(&self, change: Change) -> Result<Membership, Refused> {
        let target = Some(change.node());
        let refuse = |reason| Err(Refused::one(target, reason));
        if self.role != Role::Leader {
            return refuse(Refusal::NotLeader { leader_hint: self.leader });
        }
        if let Some(transfer) = self.transfer {
            return refuse(Refusal::TransferInProgress { target: transfer.target });
        }
        // (The safe index: in async mode the leader's commit is its own alone, and a
        // change needs an entry of its term that every later leader holds.)
        if self.safe_index < self.term_start_index {
            return refuse(Refusal::TermNotCommitted);
        }
        if self.membership_change_pending() {
            return refuse(Refusal::ChangeInFlight { index: self.memberships.current_index() });
        }
        if let Change::Remove { id } = change {
            if id == self.config.id {
                return refuse(Refusal::RemovesLeader);
            }
        }
        let next = match self.memberships.current().apply(change, self.config.mode) {
            Ok(next) => next,
            Err(error) => return refuse(Refusal::Change(error)),
        };
        let window = self.config.election_timeout_us;
        if let Change::Promote { id } = change {
            let Some(peer) = self.peers.iter().find(|p| p.id == id) else {
                return refuse(Refusal::Unreachable { last_contact_age_us: None });
            };
            if !peer.reachable(self.now_us, window) {
                return refuse(Refusal::Unreachable { last_contact_age_us: peer.last_ack_age_us(self.now_us) });
            }
            let behind_entries = self.log.last_index().saturating_sub(peer.match_index);
            if !peer.in_sync || behind_entries > self.config.max_lag_entries {
                return refuse(Refusal::Lagging { behind_entries });
            }
        }
        if matches!(change, Change::Promote { .. } | Change::Remove { .. }) {
            // The new voters must be able to take writes at once: a change that stops
            // writes is the operator's mistake to be told about, not made.
            let me = u8::from(next.is_voter(self.config.id));
            let live = self.peers.iter().filter(|p| next.is_voter(p.id) && p.reachable(self.now_us, window)).count();
            let live = me + live as u8;
            let need = self.config.mode.write_quorum(next.voters());
            if live < need {
                return refuse(Refusal::NoLiveQuorum { live, need });
            }
        }
        if self.log.would_overflow(self.hard.term) {
            return refuse(Refusal::LogFull);
        }
        Ok(next)
    }

    /// The host appended, from a leader's append request, an entry at `index` that
    /// carries `membership`. Call it right after the `Output::AppendReceived` that covers
    /// the entry, before any other input: the membership is in effect from then on.
    pub fn handle_membership_appended(&mut self, now: Micros, index: LogIndex, membership: Membership) {
        self.observe_now(now);
        let in_log = index > self.log.snapshot().index && index <= self.log.last_index();
        if !in_log || index <= self.memberships.current_index() || self.role == Role::Leader {
            self.counters.stale_messages += 1;
            return;
        }
        self.record_membership(index, membership);
        self.assert_invariants();
    }

    /// The memberships this node knows: the one in effect is `current()`.
    pub fn memberships(&self) -> &crate::membership::MembershipLog {
        &self.memberships
    }

    /// Whether the newest membership change in the log is not committed yet: not
    /// through the safe index, so that in async mode too a change is done only once
    /// every later leader will hold it.
    pub fn membership_change_pending(&self) -> bool {
        self.memberships.current_index() > self.safe_index
    }

    /// Once the newest membership change is safe (committed for good), records that in
    /// the hard state: a restarted node must not take it for a change in flight, which
    /// would make it need the previous voters (perhaps shut down for good) to elect
    /// anyone. Rare: once per change.
    pub(super) fn persist_committed_membership(&mut self) {
        let index = self.memberships.current_index();
        if index > self.hard.membership_committed && index <= self.safe_index {
            self.hard.membership_committed = index;
            let _ = self.persist_hard_state();
        }
    }

    fn record_membership(&mut self, index: LogIndex, membership: Membership) {
        if !self.memberships.push(index, membership, self.safe_index) {
            self.counters.memberships_forgotten += 1;
        }
        self.adopt_current_membership();
    }

    /// Makes the newest membership in the log the one in effect: the config's members,
    /// the leader's followers, and whether this node may campaign.
    pub(super) fn adopt_current_membership(&mut self) {
        self.config.members = self.memberships.current().members.clone();
        if self.role == Role::Leader {
            let next_index = self.log.last_index().max(1);
            for id in self.quorum_member_ids() {
                let voter = self.config.member(id).is_some_and(|m| m.voter);
                match self.peers.iter_mut().find(|p| p.id == id) {
                    Some(peer) => peer.voter = voter,
                    None if id != self.config.id => {
                        let _ = self.peers.push(Progress::new(id, voter, next_index));
                    }
                    None => {}
                }
            }
            self.prune_departed_peers();
        } else if self.may_campaign() != self.timers[super::Timer::Election as usize].is_some() {
            // A promoted node may start campaigning; one whose removal is known
            // committed stops.
            self.reset_election_timer();
        }
    }

    /// Whether this node may campaign: it is an eligible voter of the membership in
    /// effect or, while the change that removed it is uncommitted, was one of the
    /// previous membership (Raft thesis 4.2.2). Until its removal commits it may be the
    /// only node holding the longest log, and so the only one that can be elected to
    /// commit it; its own vote counts only where it is a voter (see `tally_votes`), and
    /// as leader it steps down once the removal commits (`step_down_if_removed`).
    pub(super) fn may_campaign(&self) -> bool {
        self.candidate_member(self.config.id).eligible()
    }

    /// How this node sees `id` as a candidate: its entry in the membership in effect
    /// or, while a change is uncommitted, its entry before it (a node being removed);
    /// otherwise a learner of priority 0, which cannot lead.
    pub(super) fn candidate_member(&self, id: NodeId) -> Member {
        let current = self.memberships.current().member(id);
        let previous = || self.pending_previous_membership().and_then(|m| m.member(id));
        current.or_else(previous).copied().unwrap_or(Member::learner(id, 0))
    }

    /// Whether this node knows the change that removed it committed: it never
    /// campaigns, and as leader hands over (`step_down_if_removed`).
    pub(super) fn removed_for_good(&self) -> bool {
        self.memberships.current().member(self.config.id).is_none() && !self.membership_change_pending()
    }

    /// Leader being removed: whether it has failed to make even the first entry of its
    /// term safe within an election timeout of campaigning. It leads only to commit its
    /// removal; voters that know the removal committed ignore it as a tombstone (and the
    /// nodes refuse its links), so it must make way for one of them (churn seed 1129).
    pub(super) fn removal_stalled(&self) -> bool {
        let being_removed = self.memberships.current().member(self.config.id).is_none();
        let waited = self.now_us >= self.campaign_sent_at_us + self.config.election_timeout_us;
        being_removed && self.safe_index < self.term_start_index && waited
    }

    /// Leader: once the change that removed it has committed, it hands over as a
    /// switchover does (no new writes; the best caught-up voter told to campaign once
    /// it holds everything and knows everything committed, so it need not wait for an
    /// election timeout nor for this node's vote), or steps down at once when no voter
    /// can take over. A handover that times out steps down too (`on_transfer_timeout`).
    pub(super) fn step_down_if_removed(&mut self) {
        if self.role != Role::Leader || !self.removed_for_good() || self.transfer.is_some() {
            return;
        }
        match self.check_switchover(None) {
            Ok(target) => self.start_transfer(target),
            Err(_) => self.step_down(crate::output::StepDownReason::Removed),
        }
    }

    /// Leader: once the newest change committed, stops replicating to the members it
    /// removed (they had until then to receive it).
    pub(super) fn prune_departed_peers(&mut self) {
        if self.membership_change_pending() {
            return;
        }
        let current = self.memberships.current();
        self.peers.retain(|p| current.member(p.id).is_some());
    }

    /// Every member a leader keeps followers for: the current members and, while a
    /// change is uncommitted, the previous ones.
    pub(super) fn quorum_member_ids(&self) -> Vec<NodeId, NODES_MAX> {
        let mut ids: Vec<NodeId, NODES_MAX> = self.memberships.current().members.iter().map(|m| m.id).collect();
        if let Some(previous) = self.pending_previous_membership() {
            for member in &previous.members {
                if !ids.contains(&member.id) {
                    let _ = ids.push(member.id);
                }
            }
        }
        ids
    }

    /// While a change is uncommitted, the membership before it: a leader's quorums must
    /// hold in it as well as in the current one.
    pub(super) fn pending_previous_membership(&self) -> Option<&Membership> {
        if self.membership_change_pending() {
            self.memberships.previous()
        } else {
            None
        }
    }

    /// Whether messages from `id` are dropped: this node's own id, id 0, or a node whose
    /// removal has committed (a tombstone: it can never lead or vote again, so nothing
    /// it says counts). Any other sender counts, even one this node has not heard added:
    /// a node whose log is behind learns of its leader's membership from that leader's
    /// appends, and a node that joins knows only the membership it started with.
    pub(super) fn refuses_sender(&self, id: NodeId) -> bool {
        id == self.config.id || id.0 == 0 || self.committed_membership().is_removed(id)
    }

    /// The newest membership this node knows to be committed for good (through the
    /// safe index: in async mode a leader's own commit can still be discarded).
    fn committed_membership(&self) -> &Membership {
        let mut committed = self.memberships.iter().next().map(|(_, m)| m).expect("never empty");
        for (index, membership) in self.memberships.iter() {
            if *index <= self.safe_index {
                committed = membership;
            }
        }
        committed
    }

    /// The lowest of `value` over the voter sets a leader's quorums must hold in, each
    /// given the copies a write needs there. In the current membership that is the
    /// mode's write quorum. In the previous one, while a change is in flight, it is
    /// enough copies that no election there can miss the write (voters less the
    /// election quorum, plus one): with flexible quorums (`sync:W` below a majority) a
    /// node that has not heard of the change could otherwise be elected without it, and
    /// asking the old write quorum instead would make removing a dead node from an
    /// `all` cluster wait for that node for ever.
    pub(super) fn lowest_over_quorum_sets<T: Ord>(&self, value: impl Fn(&Membership, u8) -> T) -> T {
        let current = self.memberships.current();
        let current = value(current, self.config.mode.write_quorum(current.voters()));
        match self.pending_previous_membership() {
            Some(previous) => current.min(value(previous, self.config.mode.election_overlap(previous.voters()))),
            None => current,
        }
    }
}
