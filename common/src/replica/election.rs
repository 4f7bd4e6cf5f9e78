//! Elections: the randomised timer, pre-votes, votes, and becoming leader.
//!
//! A follower that hears nothing from a leader for its election timeout first asks for
//! pre-votes (would you vote for me?), which change no state, and only then starts a real
//! election in a new term. A voter refuses both while it has heard from a live leader
//! within the minimum election timeout (Raft thesis §4.2.3), which is what makes the
//! leader's lease sound; only a switchover's target, announced by the leader itself, is
//! exempt. Votes go to candidates whose log is at least as up to date; among equals, a
//! voter with a higher priority refuses a first-attempt pre-vote because it will win
//! itself. The timer is earlier for higher-priority nodes, so the preferred node usually
//! campaigns first and no vote splits.

use super::{Replica, Role, Timer};
use crate::membership::Membership;
use crate::message::{ElectionCause, Message, TimeoutNow, VoteRequest, VoteResponse, VoteVerdict};
use crate::output::{Event, Output, Refusal};
use crate::progress::Progress;
use crate::types::{Micros, NodeId, Position};

impl Replica {
    /// Arms the election timer: `T_min + slot * width + jitter`, within `[T_min, T)`.
    pub(super) fn reset_election_timer(&mut self) {
        if !self.may_campaign() {
            self.set_timer(Timer::Election, None);
            return;
        }
        let minimum = self.config.election_timeout_min_us();
        let window = self.config.election_timeout_us - minimum;
        let eligible = self.config.members.iter().filter(|m| m.eligible()).count().max(1) as u64;
        let slot_width = (window / eligible).max(1);
        let delay = minimum + self.config.election_slot(self.leader) * slot_width + self.rng.below(slot_width);
        self.set_timer(Timer::Election, Some(self.now_us + delay));
    }

    pub(super) fn on_election_timeout(&mut self) {
        match self.role {
            Role::Leader => {}
            Role::PreCandidate | Role::Candidate => {
                // The round ran out without a result.
                self.lose_election();
                if self.election_cause == ElectionCause::Timeout && !self.hard.paused {
                    self.start_pre_vote(ElectionCause::Timeout);
                }
            }
            // (A node whose removal committed since the timer was armed stops here.)
            Role::Follower if self.hard.paused || !self.may_campaign() => self.reset_election_timer(),
            Role::Follower => self.start_pre_vote(ElectionCause::Timeout),
        }
    }

    /// Operator's manual failover: campaign now, skipping the timeout. Voters still apply
    /// every rule but the pause, so this cannot unseat a live leader. With `dry_run`,
    /// only says whether this node would campaign (pair it with
    /// [`crate::estimate_failover_loss`] for what it would lose).
    pub fn handle_campaign(&mut self, now: Micros, dry_run: bool) -> Result<(), Refusal> {
        self.observe_now(now);
        let me = self.candidate_member(self.config.id);
        let result = if !me.voter {
            Err(Refusal::NotAVoter)
        } else if me.priority == 0 {
            Err(Refusal::PriorityZero)
        } else if self.role == Role::Leader {
            Err(Refusal::TargetIsLeader)
        } else if self.within_leader_lease() {
            Err(Refusal::LeaderReachable { last_contact_age_us: self.now_us - self.last_leader_contact_us })
        } else {
            Ok(())
        };
        let campaigning =
            matches!(self.role, Role::PreCandidate | Role::Candidate) && self.election_cause == ElectionCause::Manual;
        // Already campaigning on an operator's word: restarting would only abandon votes
        // on their way.
        if result.is_ok() && !dry_run && !campaigning {
            self.attempt = 0;
            self.start_pre_vote(ElectionCause::Manual);
        }
        self.assert_invariants();
        result
    }

    fn start_pre_vote(&mut self, cause: ElectionCause) {
        self.role = Role::PreCandidate;
        self.leader = None;
        self.election_cause = cause;
        self.votes.clear();
        let _ = self.votes.push((self.config.id, VoteVerdict::Granted));
        self.counters.elections_started += 1;
        self.event(Event::ElectionStarted { term: self.hard.term + 1, cause, pre_vote: true });
        self.reset_election_timer();
        self.send_vote_requests(true);
    }

    fn become_candidate(&mut self, cause: ElectionCause) {
        self.role = Role::Candidate;
        self.leader = None;
        self.election_cause = cause;
        self.hard.term += 1;
        self.hard.voted_for = Some(self.config.id);
        self.handoff_seen = None;
        self.votes.clear();
        let _ = self.votes.push((self.config.id, VoteVerdict::Granted));
        self.event(Event::ElectionStarted { term: self.hard.term, cause, pre_vote: false });
        // The self-vote must be durable before anyone is asked.
        self.campaign_seq = Some(self.persist_hard_state());
        self.reset_election_timer();
    }

    pub(super) fn send_vote_requests(&mut self, pre_vote: bool) {
        let request = VoteRequest {
            term: if pre_vote { self.hard.term + 1 } else { self.hard.term },
            last: self.log.last_position(),
            pre_vote,
            cause: self.election_cause,
            attempt: self.attempt,
        };
        self.campaign_sent_at_us = self.now_us;
        // The voters of the current membership and, while a change is uncommitted here,
        // of the previous one: the election must be won in both (see `tally_votes`).
        for id in self.quorum_member_ids() {
            let previous_voter = self.pending_previous_membership().is_some_and(|m| m.is_voter(id));
            let voter = self.config.member(id).is_some_and(|m| m.voter) || previous_voter;
            if voter && id != self.config.id {
                self.send(id, Message::VoteRequest(request));
            }
        }
        self.tally_votes();
    }

    pub(super) fn on_timeout_now(&mut self, from: NodeId, message: TimeoutNow) {
        let from_leader = self.role == Role::Follower && self.leader == Some(from);
        if message.term == self.hard.term && from_leader && self.may_campaign() {
            self.attempt = 0;
            self.become_candidate(ElectionCause::Switchover);
        } else {
            self.counters.stale_messages += 1;
        }
    }

    /// Whether a leader may still count on this node's promise not to vote for anyone
    /// else, itself included: it heard from a leader, granted a vote, or started, within
    /// the minimum election timeout.
    pub(super) fn within_leader_lease(&self) -> bool {
        self.now_us < self.last_leader_contact_us.saturating_add(self.config.election_timeout_min_us())
    }

    /// Whether this node has heard from a live leader recently enough that granting a
    /// vote could undermine that leader's lease.
    fn heard_from_leader_recently(&self, candidate: NodeId) -> bool {
        self.role == Role::Leader || (self.within_leader_lease() && self.contact_was_vote_for != Some(candidate))
    }

    /// Whether `candidate` is the switchover target the current leader announced.
    fn is_announced_target(&self, candidate: NodeId) -> bool {
        match self.transfer {
            Some(transfer) => transfer.handoff_sent && transfer.target == candidate,
            None => self.leader.is_some() && self.handoff_seen == Some(candidate),
        }
    }

    pub(super) fn on_vote_request(&mut self, from: NodeId, request: VoteRequest) {
        let verdict = self.judge_vote(from, request);
        if request.pre_vote || verdict != VoteVerdict::Granted {
            let term = if verdict == VoteVerdict::Granted { request.term } else { self.hard.term };
            let response = VoteResponse { term, pre_vote: request.pre_vote, verdict, safe: self.safe_position() };
            self.send(from, Message::VoteResponse(response));
            return;
        }
        // A real vote: record it durably before answering.
        self.hard.voted_for = Some(from);
        let seq = self.persist_hard_state();
        let response = VoteResponse { term: self.hard.term, pre_vote: false, verdict, safe: self.safe_position() };
        self.pending_vote = Some(super::PendingVote { seq, to: from, response });
        self.last_leader_contact_us = self.now_us;
        self.contact_was_vote_for = Some(from);
        self.reset_election_timer();
    }

    /// Decides a vote, adopting a newer term when the request is a real one that may be
    /// heard.
    fn judge_vote(&mut self, from: NodeId, request: VoteRequest) -> VoteVerdict {
        let my_last = self.log.last_position();
        // A candidate whose log is ahead of this one may know a newer membership (one
        // that added or promoted it): then its own view decides whether it may lead.
        // One whose removal is uncommitted here may still lead (`may_campaign`).
        let candidate = self.candidate_member(from);
        if !candidate.eligible() && request.last <= my_last {
            return VoteVerdict::NotEligible;
        }
        if request.term < self.hard.term {
            return VoteVerdict::StaleTerm;
        }
        let announced = request.cause == ElectionCause::Switchover
            && !request.pre_vote
            && request.term == self.hard.term + 1
            && self.is_announced_target(from);
        if self.heard_from_leader_recently(from) && !announced {
            return VoteVerdict::LeaderAlive;
        }
        if self.hard.paused && request.cause == ElectionCause::Timeout {
            return VoteVerdict::Paused;
        }
        if request.last < my_last {
            return VoteVerdict::LogBehind;
        }
        if request.pre_vote {
            let me = self.config.me();
            let preferred = request.attempt == 0
                && request.cause == ElectionCause::Timeout
                && request.last == my_last
                && me.eligible()
                && me.priority > candidate.priority;
            return if preferred { VoteVerdict::PreferredPeer } else { VoteVerdict::Granted };
        }
        if request.term > self.hard.term {
            if self.role == Role::Leader {
                self.step_down(crate::output::StepDownReason::Switchover);
            }
            self.become_follower(request.term, None);
        }
        match self.hard.voted_for {
            Some(voted) if voted != from => VoteVerdict::AlreadyVoted,
            _ => VoteVerdict::Granted,
        }
    }

    pub(super) fn on_vote_response(&mut self, from: NodeId, response: VoteResponse) {
        let expecting_pre_vote = match self.role {
            Role::PreCandidate => true,
            Role::Candidate => false,
            _ => return,
        };
        // Whatever the verdict, what the voter knows committed is a fact about the
        // entry it names; learning it first may end a change in flight here, and with
        // it the need for the previous voters' votes (see `learn_safe_from_voter`).
        self.learn_safe_from_voter(response.safe);
        if !self.may_campaign() {
            // It learned that its own removal committed.
            self.lose_election();
            return;
        }
        if response.pre_vote != expecting_pre_vote {
            self.counters.stale_messages += 1;
            return;
        }
        if response.verdict != VoteVerdict::Granted && response.term > self.hard.term {
            self.become_follower(response.term, None);
            return;
        }
        let round_term = if expecting_pre_vote { self.hard.term + 1 } else { self.hard.term };
        let counts = response.verdict != VoteVerdict::Granted || response.term == round_term;
        if !counts || self.votes.iter().any(|(voter, _)| *voter == from) {
            self.counters.stale_messages += 1;
            return;
        }
        let _ = self.votes.push((from, response.verdict));
        self.tally_votes();
    }

    /// The newest entry this node knows committed for good, as a voter names it.
    pub(super) fn safe_position(&self) -> Position {
        let term = self.log.term_at(self.safe_index).expect("the safe index is at or past the snapshot");
        Position::new(term, self.safe_index)
    }

    /// Candidate: a voter knows the entry at `safe` committed for good. If this log holds
    /// the same entry (same index and term: the logs agree up to there), so is this
    /// node's copy, as far as it is durable here. This is how a node whose removal of
    /// others is in flight here learns it committed from a removed voter that refuses it
    /// (its log is longer, and knowing itself removed it never campaigns): without it the
    /// candidate would need that voter's vote for ever (simulator seeds 74854, 96904).
    fn learn_safe_from_voter(&mut self, safe: Position) {
        let learned = safe.index.min(self.durable_index);
        if learned <= self.safe_index || self.log.term_at(safe.index) != Some(safe.term) {
            return;
        }
        self.safe_index = learned;
        if learned > self.commit_index {
            self.commit_index = learned;
            self.push(Output::Commit { commit_index: learned });
        }
        self.persist_committed_membership();
        self.adopt_current_membership();
    }

    fn tally_votes(&mut self) {
        if self.campaign_seq.is_some() {
            return;
        }
        // Only the votes of voters in this node's membership count: a learner, or a
        // node that was removed, may answer but decides nothing. While a membership
        // change is uncommitted in this node's log, the election must be won among the
        // previous voters too: with flexible quorums (`sync:W` below a majority) a
        // leader that has not heard of the change may have committed with the previous
        // voters' write quorum, which the new voters' election quorum need not meet.
        let won_in = |membership: &Membership| {
            let voters = membership.voters();
            let needed = self.config.mode.election_quorum(voters);
            let counted = self.votes.iter().filter(|(id, _)| membership.is_voter(*id));
            let granted = counted.clone().filter(|(_, v)| *v == VoteVerdict::Granted).count() as u8;
            let refused = counted.count() as u8 - granted;
            (granted >= needed, voters - refused < needed)
        };
        let (mut won, mut lost) = won_in(self.memberships().current());
        if let Some(previous) = self.pending_previous_membership() {
            let (won_previous, lost_previous) = won_in(previous);
            won &= won_previous;
            lost |= lost_previous;
        }
        if won {
            match self.role {
                // Voting for itself is a vote like any other: not while a leader's lease
                // may rely on this node.
                Role::PreCandidate if self.within_leader_lease() => self.lose_election(),
                Role::PreCandidate => self.become_candidate(self.election_cause),
                Role::Candidate => self.become_leader(),
                _ => {}
            }
        } else if lost {
            self.lose_election();
        }
    }

    /// Ends a round without a win: report the most common refusal, go back to following.
    fn lose_election(&mut self) {
        let mut most_common: Option<(VoteVerdict, usize)> = None;
        for (_, verdict) in self.votes.iter().filter(|(_, v)| *v != VoteVerdict::Granted) {
            let count = self.votes.iter().filter(|(_, v)| v == verdict).count();
            if most_common.is_none_or(|(_, best)| count > best) {
                most_common = Some((*verdict, count));
            }
        }
        let term = if self.role == Role::PreCandidate { self.hard.term + 1 } else { self.hard.term };
        let cause = self.election_cause;
        self.event(Event::ElectionFailed { term, cause, verdict: most_common.map(|(v, _)| v) });
        self.attempt = self.attempt.saturating_add(1);
        self.role = Role::Follower;
        self.campaign_seq = None;
        self.votes.clear();
        self.reset_election_timer();
    }

    fn become_leader(&mut self) {
        let term = self.hard.term;
        self.role = Role::Leader;
        self.leader = Some(self.config.id);
        self.attempt = 0;
        self.transfer = None;
        self.lease_floor_us = 0;
        self.set_timer(Timer::Election, None);
        let next_index = self.log.last_index() + 1;
        self.peers.clear();
        for id in self.quorum_member_ids() {
            if id == self.config.id {
                continue;
            }
            let voter = self.config.member(id).is_some_and(|m| m.voter);
            let mut progress = Progress::new(id, voter, next_index);
            if self.votes.iter().any(|(voter, v)| *voter == id && *v == VoteVerdict::Granted) {
                // A voter that granted this vote promised, from when the request went
                // out, not to vote for anyone else for a minimum election timeout.
                progress.lease_ack_sent_at_us = Some(self.campaign_sent_at_us);
                progress.last_ack_at_us = Some(self.now_us);
                progress.in_sync = true;
            }
            let _ = self.peers.push(progress);
        }
        self.votes.clear();
        self.counters.leader_terms += 1;
        self.event(Event::BecameLeader { term, cause: self.election_cause });
        self.append_noop();
        self.on_heartbeat_tick();
        self.arm_lease_timer();
    }
}
