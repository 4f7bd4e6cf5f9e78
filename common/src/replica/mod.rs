//! The replica: one node's replication state machine, sans-IO.
//!
//! # Call order
//!
//! The host owns the clock, the network and the disk; the replica owns every decision.
//!
//! 1. Build it with [`Replica::new`] from the config and what storage recovered.
//! 2. Feed it inputs, each with the current monotonic time in microseconds:
//!    [`Replica::handle_message`], [`Replica::handle_timeout`],
//!    [`Replica::handle_persisted`], [`Replica::handle_propose`], the operator commands
//!    ([`Replica::handle_switchover`], [`Replica::handle_campaign`],
//!    [`Replica::handle_set_paused`]) and the snapshot calls.
//! 3. After every input, drain [`Replica::poll_output`] until it returns `None` and carry
//!    each output out in order. Persistence outputs may be batched and made durable
//!    later, in order; report them with `handle_persisted`.
//! 4. Sleep until [`Replica::poll_timeout`] (or the next input), then call
//!    `handle_timeout`. A spurious or early `handle_timeout` is harmless.
//!
//! # Guarantees
//!
//! - Nothing is acknowledged, and no vote is granted, before storage reported it durable.
//! - At most one leader per term; a leader acknowledges writes only while it holds a
//!   lease from enough voters that no other election can succeed (see [`crate::mode`]).
//! - In every mode but `async`, an acknowledged write is in every later leader's log.
//! - In `async` mode, every truncation of entries that may have been acknowledged is
//!   reported as [`Event::Discarded`].

mod election;
mod follower;
mod leader;
mod membership;
mod switchover;

pub use membership::MembershipProposal;

use crate::config::Config;
use crate::limits::{NODES_MAX, OUTPUTS_MAX, PERSIST_PENDING_MAX};
use crate::log::LogTerms;
use crate::membership::{Membership, MembershipLog};
use crate::message::{ElectionCause, Message, VoteResponse, VoteVerdict};
use crate::output::{Counters, Event, Output, PersistSeq, StepDownReason, TransferOutcome};
use crate::progress::{Progress, ReplicationState};
use crate::rng::Rng;
use crate::types::{HardState, LogIndex, Micros, NodeId, Position, Term};
use heapless::{Deque, Vec};

/// What a node plays right now.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    /// Asking for pre-votes: would the others vote for it? Nothing changes yet.
    PreCandidate,
    Candidate,
    Leader,
}

/// The core's timers; each has one slot in the timer table.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Timer {
    /// Follower and candidates: campaign when it fires.
    Election = 0,
    /// Leader: send heartbeats and check followers.
    Heartbeat = 1,
    /// Leader: the lease runs out; step down unless renewed.
    Lease = 2,
    /// Leader: a switchover gives up.
    Transfer = 3,
}

const TIMER_COUNT: usize = 4;

/// What storage recovered at start-up.
#[derive(Clone, Debug)]
pub struct Recovered {
    pub hard_state: HardState,
    /// The snapshot point and the terms of every entry after it (all durable).
    pub log: LogTerms,
    /// The membership at the snapshot and every membership entry in the log after it,
    /// in order (`None`: the one the config was formed with, at index 0).
    pub memberships: Option<MembershipLog>,
}

impl Recovered {
    /// A brand-new node: no state, no log.
    pub fn empty() -> Self {
        Recovered { hard_state: HardState::default(), log: LogTerms::new(Position::ZERO), memberships: None }
    }
}

#[derive(Copy, Clone, Debug)]
struct PendingPersist {
    seq: PersistSeq,
    /// The log's last index once this request is durable (lowered by later truncations).
    last_index: LogIndex,
}

#[derive(Copy, Clone, Debug)]
struct Transfer {
    target: NodeId,
    /// Once the target was told to campaign, the leader stops committing.
    handoff_sent: bool,
}

#[derive(Copy, Clone, Debug)]
struct PendingVote {
    seq: PersistSeq,
    to: NodeId,
    response: VoteResponse,
}

/// A snapshot of one node's replication state, for status displays.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub id: NodeId,
    pub role: Role,
    pub term: Term,
    pub leader: Option<NodeId>,
    pub last: Position,
    pub commit_index: LogIndex,
    pub durable_index: LogIndex,
    pub snapshot: Position,
    pub paused: bool,
    pub transfer_target: Option<NodeId>,
    /// Leader only: when its lease runs out.
    pub lease_until_us: Option<Micros>,
}

/// A leader's view of one follower.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    pub id: NodeId,
    pub voter: bool,
    pub match_index: LogIndex,
    pub next_index: LogIndex,
    pub reported_last_index: LogIndex,
    pub lag_entries: u64,
    pub last_ack_age_us: Option<Micros>,
    pub in_sync: bool,
    pub state: ReplicationState,
}

#[derive(Debug)]
pub struct Replica {
    /// Its `members` are always the membership in effect: `memberships.current()`.
    config: Config,
    memberships: MembershipLog,
    rng: Rng,
    hard: HardState,
    log: LogTerms,
    durable_index: LogIndex,
    /// The highest index acknowledged to clients (leader) or applied (follower).
    commit_index: LogIndex,
    /// The highest index that survives every failover: `commit_index` in every mode but
    /// async; in async, what a majority holds. Followers apply and hosts compact only up
    /// to here, so a snapshot never holds a write a failover could discard.
    safe_index: LogIndex,
    next_seq: PersistSeq,
    pending_persists: Deque<PendingPersist, PERSIST_PENDING_MAX>,
    role: Role,
    leader: Option<NodeId>,
    /// Last contact from a live leader (or a granted vote, or start-up): no vote is
    /// granted within the minimum election timeout of it.
    last_leader_contact_us: Micros,
    /// Set when that contact was this node granting its vote to this candidate: the
    /// candidate itself may still be answered.
    contact_was_vote_for: Option<NodeId>,
    /// Follower: the highest index known to match the current leader's log.
    verified_index: LogIndex,
    /// Follower: the leader's commit index as last heard.
    leader_commit_seen: LogIndex,
    /// Follower: send an acknowledgement once storage catches up (echo time).
    pending_ack: Option<Micros>,
    /// Follower: the switchover target the current leader announced.
    handoff_seen: Option<NodeId>,
    /// Follower: the newest send time seen from the current leader.
    leader_sent_at_seen_us: Micros,
    pending_vote: Option<PendingVote>,
    /// Candidates: the replies of this round.
    votes: Vec<(NodeId, VoteVerdict), NODES_MAX>,
    election_cause: ElectionCause,
    attempt: u8,
    /// Candidate: the hard state write to wait for before asking for votes.
    campaign_seq: Option<PersistSeq>,
    campaign_sent_at_us: Micros,
    /// Leader: one entry per other member.
    peers: Vec<Progress, NODES_MAX>,
    /// Leader: the index of its no-op, the first entry of its term.
    term_start_index: LogIndex,
    /// Leader: lease acknowledgements sent before this time do not allow commits.
    lease_floor_us: Micros,
    transfer: Option<Transfer>,
    timers: [Option<Micros>; TIMER_COUNT],
    outputs: Deque<Output, OUTPUTS_MAX>,
    counters: Counters,
    now_us: Micros,
}

impl Replica {
    /// Starts a replica as a follower. It neither campaigns nor votes for a minimum
    /// election timeout, since it cannot know whether a leader is alive.
    pub fn new(mut config: Config, recovered: Recovered, now: Micros) -> Self {
        config.validate().expect("the host validates the config first");
        let log = recovered.log;
        let memberships =
            recovered.memberships.unwrap_or_else(|| MembershipLog::new(0, Membership::new(config.members.clone())));
        config.members = memberships.current().members.clone();
        let mut hard = recovered.hard_state;
        // The current term is never below the last log term. A data directory restored
        // from a backup holds a snapshot from another cluster's term and no hard state:
        // catch up as if a message of that term had arrived (a vote cast in an older
        // term does not carry over). Otherwise the first election here would run in a
        // lower term than the log's end.
        if hard.term < log.last_position().term {
            hard = HardState { term: log.last_position().term, voted_for: None, ..hard };
        }
        // What this node knew committed before it stopped: at least its snapshot, and the
        // newest membership change it learned had committed (as far as its log reaches).
        let safe_index = hard.membership_committed.min(log.last_index()).max(log.snapshot().index);
        let mut replica = Replica {
            rng: Rng::new(config.seed),
            hard,
            durable_index: log.last_index(),
            commit_index: log.snapshot().index,
            safe_index,
            log,
            next_seq: 1,
            pending_persists: Deque::new(),
            role: Role::Follower,
            leader: None,
            last_leader_contact_us: now,
            contact_was_vote_for: None,
            verified_index: 0,
            leader_commit_seen: 0,
            pending_ack: None,
            handoff_seen: None,
            leader_sent_at_seen_us: 0,
            pending_vote: None,
            votes: Vec::new(),
            election_cause: ElectionCause::Timeout,
            attempt: 0,
            campaign_seq: None,
            campaign_sent_at_us: now,
            peers: Vec::new(),
            term_start_index: 0,
            lease_floor_us: 0,
            transfer: None,
            timers: [None; TIMER_COUNT],
            outputs: Deque::new(),
            counters: Counters::default(),
            now_us: now,
            config,
            memberships,
        };
        replica.reset_election_timer();
        replica.assert_invariants();
        replica
    }

    // ----- outputs -----

    /// The next thing for the host to do. Drain until `None` after every input.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(output) = self.outputs.pop_front() {
            return Some(output);
        }
        if self.role == Role::Leader {
            self.generate_appends();
        }
        self.outputs.pop_front()
    }

    /// When the host should call `handle_timeout` next, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Micros> {
        self.timers.iter().flatten().copied().min()
    }

    fn push(&mut self, output: Output) {
        if let Err(output) = self.outputs.push_back(output) {
            // Messages are retransmitted by timers, so a dropped one only costs time.
            // Losing a persistence output would break durability: that is a host bug.
            assert!(matches!(output, Output::Send { .. } | Output::Event(_)), "host did not drain outputs");
            self.counters.outputs_dropped += 1;
        }
    }

    fn send(&mut self, to: NodeId, message: Message) {
        self.push(Output::Send { to, message });
    }

    fn event(&mut self, event: Event) {
        self.push(Output::Event(event));
    }

    // ----- time -----

    /// Records the time of an input. Every `handle_*` calls this first, so a leader that
    /// was frozen finds its lease expired before it looks at anything else.
    fn observe_now(&mut self, now: Micros) {
        self.now_us = self.now_us.max(now);
        if self.role == Role::Leader && self.now_us >= self.lease_until_us() {
            self.step_down(StepDownReason::LeaseExpired);
        }
    }

    fn set_timer(&mut self, timer: Timer, at: Option<Micros>) {
        self.timers[timer as usize] = at;
    }

    fn timer_due(&mut self, timer: Timer) -> bool {
        let due = self.timers[timer as usize].is_some_and(|at| at <= self.now_us);
        if due {
            self.timers[timer as usize] = None;
        }
        due
    }

    /// Fires every timer that is due.
    pub fn handle_timeout(&mut self, now: Micros) {
        self.observe_now(now);
        if self.timer_due(Timer::Election) {
            self.on_election_timeout();
        }
        if self.timer_due(Timer::Heartbeat) {
            self.on_heartbeat_tick();
        }
        if self.timer_due(Timer::Lease) && self.role == Role::Leader {
            // observe_now already stepped down if the lease ran out; the timer is re-armed
            // from the renewed lease.
            self.arm_lease_timer();
        }
        if self.timer_due(Timer::Transfer) {
            self.on_transfer_timeout();
        }
        self.assert_invariants();
    }

    // ----- persistence -----

    fn next_persist_seq(&mut self) -> PersistSeq {
        let seq = self.next_seq;
        self.next_seq += 1;
        let pending = PendingPersist { seq, last_index: self.log.last_index() };
        if let Err(pending) = self.pending_persists.push_back(pending) {
            // Merge into the newest entry: its durability report now waits for this one.
            let back = self.pending_persists.back_mut().expect("full, so not empty");
            *back = pending;
        }
        seq
    }

    fn persist_hard_state(&mut self) -> PersistSeq {
        let seq = self.next_persist_seq();
        let hard_state = self.hard;
        self.push(Output::PersistHardState { seq, hard_state });
        seq
    }

    /// Records a truncation: nothing at or after `from_index` counts as durable anymore.
    fn truncate_log(&mut self, from_index: LogIndex) {
        self.log.truncate_from(from_index);
        let last = self.log.last_index();
        self.durable_index = self.durable_index.min(last);
        for pending in self.pending_persists.iter_mut() {
            pending.last_index = pending.last_index.min(last);
        }
        self.verified_index = self.verified_index.min(last);
        if self.memberships.truncate_from(from_index) {
            self.adopt_current_membership();
        }
        let seq = self.next_persist_seq();
        self.push(Output::TruncateLog { seq, from_index });
    }

    /// Storage reports every persistence output up to `seq` durable.
    pub fn handle_persisted(&mut self, now: Micros, seq: PersistSeq) {
        self.observe_now(now);
        let mut durable = None;
        while self.pending_persists.front().is_some_and(|p| p.seq <= seq) {
            durable = self.pending_persists.pop_front().map(|p| p.last_index);
        }
        if let Some(durable) = durable {
            self.durable_index = durable.min(self.log.last_index());
        }
        if let Some(vote) = self.pending_vote.filter(|vote| vote.seq <= seq) {
            self.pending_vote = None;
            self.send(vote.to, Message::VoteResponse(vote.response));
        }
        if self.campaign_seq.is_some_and(|campaign| campaign <= seq) {
            self.campaign_seq = None;
            self.send_vote_requests(false);
        }
        match self.role {
            Role::Leader => self.maybe_commit(),
            _ => {
                self.send_pending_ack();
                self.follower_advance_commit();
            }
        }
        self.assert_invariants();
    }

    // ----- inputs from peers -----

    /// A message from `from` arrived. Messages from a node whose removal committed (and
    /// from this node's own id, or id 0) are counted and dropped.
    pub fn handle_message(&mut self, now: Micros, from: NodeId, message: Message) {
        self.observe_now(now);
        if self.refuses_sender(from) {
            self.counters.messages_from_unknown_nodes += 1;
            return;
        }
        match message {
            Message::AppendRequest(request) => self.on_append_request(from, request),
            Message::AppendResponse(response) => self.on_append_response(from, response),
            Message::VoteRequest(request) => self.on_vote_request(from, request),
            Message::VoteResponse(response) => self.on_vote_response(from, response),
            Message::TimeoutNow(timeout_now) => self.on_timeout_now(from, timeout_now),
        }
        self.assert_invariants();
    }

    // ----- role changes shared by every path -----

    /// Adopts `term` if it is newer, forgetting the vote, and persists that.
    fn observe_term(&mut self, term: Term) {
        if term > self.hard.term {
            self.hard.term = term;
            self.hard.voted_for = None;
            self.handoff_seen = None;
            self.persist_hard_state();
        }
    }

    /// Becomes a follower of `leader` (or of no one yet) in `term`.
    fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        let was_leader = self.role == Role::Leader;
        if was_leader && term > self.hard.term {
            self.step_down(StepDownReason::HigherTerm);
        }
        let changed = self.role != Role::Follower || self.leader != leader || term != self.hard.term;
        self.observe_term(term);
        if changed {
            self.role = Role::Follower;
            self.leader = leader;
            self.verified_index = 0;
            self.leader_commit_seen = 0;
            self.leader_sent_at_seen_us = 0;
            self.handoff_seen = None;
            self.pending_ack = None;
            self.campaign_seq = None;
            self.votes.clear();
            self.event(Event::BecameFollower { term: self.hard.term, leader });
            self.reset_election_timer();
        }
    }

    /// A leader stops leading, keeping its term.
    fn step_down(&mut self, reason: StepDownReason) {
        debug_assert_eq!(self.role, Role::Leader);
        let term = self.hard.term;
        if let Some(transfer) = self.transfer.take() {
            let outcome = match reason {
                StepDownReason::Switchover => TransferOutcome::Completed,
                _ => TransferOutcome::Aborted,
            };
            self.event(Event::TransferFinished { term, target: transfer.target, outcome });
        }
        self.event(Event::SteppedDown { term, reason });
        self.role = Role::Follower;
        self.leader = None;
        self.peers.clear();
        self.verified_index = 0;
        self.leader_commit_seen = 0;
        self.set_timer(Timer::Heartbeat, None);
        self.set_timer(Timer::Lease, None);
        self.set_timer(Timer::Transfer, None);
        // Its own lease promised nothing past its expiry.
        self.last_leader_contact_us = 0;
        self.event(Event::BecameFollower { term, leader: None });
        self.reset_election_timer();
    }

    // ----- views -----

    pub fn id(&self) -> NodeId {
        self.config.id
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn term(&self) -> Term {
        self.hard.term
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    pub fn hard_state(&self) -> HardState {
        self.hard
    }

    pub fn log(&self) -> &LogTerms {
        &self.log
    }

    pub fn commit_index(&self) -> LogIndex {
        self.commit_index
    }

    /// The highest index the host may fold into a snapshot: applied, and safe from
    /// every failover.
    pub fn compactable_index(&self) -> LogIndex {
        self.commit_index.min(self.safe_index)
    }

    /// The highest commit index this node knows of: its own, or the leader's as last
    /// heard. A local read's lag is this minus what the host applied.
    pub fn known_commit_index(&self) -> LogIndex {
        self.commit_index.max(self.leader_commit_seen)
    }

    pub fn durable_index(&self) -> LogIndex {
        self.durable_index
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn status(&self) -> Status {
        Status {
            id: self.config.id,
            role: self.role,
            term: self.hard.term,
            leader: self.leader,
            last: self.log.last_position(),
            commit_index: self.commit_index,
            durable_index: self.durable_index,
            snapshot: self.log.snapshot(),
            paused: self.hard.paused,
            transfer_target: self.transfer.map(|t| t.target),
            lease_until_us: (self.role == Role::Leader).then(|| self.lease_until_us()),
        }
    }

    /// The leader's view of each follower (empty on followers).
    pub fn peer_statuses(&self) -> impl Iterator<Item = PeerStatus> + '_ {
        let last = self.log.last_index();
        self.peers.iter().map(move |p| PeerStatus {
            id: p.id,
            voter: p.voter,
            match_index: p.match_index,
            next_index: p.next_index,
            reported_last_index: p.reported_last_index,
            lag_entries: last.saturating_sub(p.match_index),
            last_ack_age_us: p.last_ack_age_us(self.now_us),
            in_sync: p.in_sync,
            state: p.state,
        })
    }

    /// Size of the whole state machine in bytes.
    pub const STATE_BYTES: usize = core::mem::size_of::<Replica>();

    // ----- invariants -----

    /// Checks the invariants that must hold after every input. A failure is a bug in the
    /// core, never a consequence of bad input.
    fn assert_invariants(&self) {
        self.log.assert_invariants();
        let last = self.log.last_index();
        assert!(self.durable_index <= last, "durable {} beyond last {}", self.durable_index, last);
        assert!(self.commit_index <= last, "commit {} beyond last {}", self.commit_index, last);
        assert!(self.commit_index >= self.log.snapshot().index);
        assert!(self.safe_index >= self.log.snapshot().index && self.safe_index <= last);
        assert!(self.verified_index <= last);
        match self.role {
            Role::Leader => {
                assert_eq!(self.leader, Some(self.config.id));
                assert_eq!(self.hard.voted_for, Some(self.config.id));
                let ids = self.quorum_member_ids();
                for id in ids.iter().filter(|id| **id != self.config.id) {
                    assert!(self.peers.iter().any(|p| p.id == *id), "no follower state for member {id}");
                }
                for peer in &self.peers {
                    assert!(ids.contains(&peer.id), "follower state for {} outside the membership", peer.id);
                    assert_eq!(peer.voter, self.config.member(peer.id).is_some_and(|m| m.voter));
                }
                // A leader is a voter, or was one before the uncommitted change that
                // removed it; once that commits, it is handing over.
                let voter = self.candidate_member(self.config.id).voter;
                assert!(voter || self.transfer.is_some(), "a leader is a voter or hands over");
                for peer in &self.peers {
                    assert!(peer.match_index <= last, "match {} beyond last {}", peer.match_index, last);
                    assert!(peer.next_index >= 1 && peer.next_index <= last + 1);
                }
                let start_term = self.log.term_at(self.term_start_index);
                assert!(self.term_start_index >= 1);
                assert!(self.term_start_index <= self.log.snapshot().index || start_term == Some(self.hard.term));
            }
            Role::Candidate => assert_eq!(self.hard.voted_for, Some(self.config.id)),
            Role::Follower | Role::PreCandidate => assert!(self.peers.is_empty()),
        }
        if self.role != Role::Leader {
            assert!(self.transfer.is_none());
        }
        assert_eq!(self.config.members, self.memberships.current().members);
        assert!(self.memberships.current_index() <= last);
    }
}

/// A replica must fit comfortably in a microcontroller's RAM.
pub const REPLICA_BYTES_MAX: usize = 32 * 1024;
const _: () = assert!(Replica::STATE_BYTES <= REPLICA_BYTES_MAX);

#[cfg(test)]
mod membership_tests;
#[cfg(test)]
mod tests;
