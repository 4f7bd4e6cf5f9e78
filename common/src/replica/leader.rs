//! The leader's side of replication: accepting writes, feeding each follower within its
//! in-flight window, heartbeats, the in-sync set, the lease, and the commit index.
//!
//! Commit rule: an entry of the leader's own term is committed once the write quorum of
//! voters (the leader's own durable copy included) hold it durably, and only while the
//! leader's lease is valid, so a deposed leader acknowledges nothing. Earlier entries
//! commit with it.

use super::{Replica, Role, Timer};
use crate::limits::{BATCH_ENTRIES_MAX, NODES_MAX};
use crate::message::{AppendOutcome, AppendRequest, AppendResponse, Message};
use crate::mode::WriteMode;
use crate::output::{Event, Output, Proposal, ProposeError, ReadError};
use crate::progress::ReplicationState;
use crate::types::{LogIndex, Micros, NodeId, Position};
use heapless::Vec;

impl Replica {
    /// A client write. On success the host stores the payload at the returned position,
    /// and acknowledges the client once `Output::Commit` covers it.
    pub fn handle_propose(&mut self, now: Micros) -> Result<Proposal, ProposeError> {
        self.observe_now(now);
        let result = self.propose();
        self.assert_invariants();
        result
    }

    fn propose(&mut self) -> Result<Proposal, ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader_hint: self.leader });
        }
        if self.transfer.is_some() {
            return Err(ProposeError::TransferInProgress);
        }
        let (have, need) = self.in_sync_shortfall();
        if have < need {
            return Err(ProposeError::NotEnoughInSync { have, need });
        }
        if self.log.would_overflow(self.hard.term) {
            return Err(ProposeError::LogFull);
        }
        self.log.append(self.hard.term, 1).expect("checked by would_overflow");
        let seq = self.next_persist_seq();
        Ok(Proposal { position: self.log.last_position(), seq })
    }

    /// Whether `handle_propose` would take a write now: this node leads, no switchover
    /// is under way, and enough voters are in sync (a full term table aside).
    pub fn accepts_writes(&self) -> bool {
        let (have, need) = self.in_sync_shortfall();
        self.role == Role::Leader && self.transfer.is_none() && have >= need
    }

    /// Voters in sync (the leader included) and the write quorum, in the voter set where
    /// the margin is smallest (two sets while a membership change is in flight).
    fn in_sync_shortfall(&self) -> (u8, u8) {
        let (_, have, need) = self.lowest_over_quorum_sets(|membership, need| {
            let me = u8::from(membership.is_voter(self.config.id));
            let peers = self.peers.iter().filter(|p| membership.is_voter(p.id) && p.in_sync).count() as u8;
            let have = me + peers;
            (i16::from(have) - i16::from(need), have, need)
        });
        (have, need)
    }

    /// A linearizable read may be served at the returned commit index once the state
    /// machine has applied it. This is a lease read: valid because no other leader can be
    /// elected while the lease holds (clock drift bounded by `LEASE_DRIFT_DIVISOR`).
    pub fn read_index(&mut self, now: Micros) -> Result<LogIndex, ReadError> {
        self.observe_now(now);
        if self.role != Role::Leader {
            return Err(ReadError::NotLeader { leader_hint: self.leader });
        }
        if !self.may_acknowledge() || self.commit_index < self.term_start_index {
            return Err(ReadError::NotReady);
        }
        Ok(self.commit_index)
    }

    pub(super) fn append_noop(&mut self) {
        self.log.append(self.hard.term, 1).expect("checked before campaigning");
        self.term_start_index = self.log.last_index();
        let seq = self.next_persist_seq();
        let position = self.log.last_position();
        self.push(Output::AppendNoop { seq, position });
    }

    // ----- lease -----

    /// The lease ends `lease_duration` after the `L`-th most recent send time that a
    /// voter acknowledged (`L` = the lease quorum; the leader's own is now). Only
    /// acknowledgements of requests sent at or after `floor` count.
    fn lease_until_since(&self, floor: Micros) -> Micros {
        self.lowest_over_quorum_sets(|membership, _| self.lease_until_in(membership, floor))
    }

    fn lease_until_in(&self, membership: &crate::membership::Membership, floor: Micros) -> Micros {
        let needed = usize::from(self.config.mode.lease_quorum(membership.voters()));
        let mut sent: Vec<Micros, NODES_MAX> = Vec::new();
        if membership.is_voter(self.config.id) {
            let _ = sent.push(self.now_us);
        }
        for peer in self.peers.iter().filter(|p| membership.is_voter(p.id)) {
            if let Some(at) = peer.lease_ack_sent_at_us.filter(|at| *at >= floor) {
                let _ = sent.push(at);
            }
        }
        if sent.len() < needed {
            return 0;
        }
        sent.sort_unstable_by(|a, b| b.cmp(a));
        sent[needed - 1] + self.config.lease_duration_us()
    }

    pub(super) fn lease_until_us(&self) -> Micros {
        self.lease_until_since(0)
    }

    /// Whether this leader may acknowledge writes and serve reads right now.
    fn may_acknowledge(&self) -> bool {
        let handing_off = self.transfer.is_some_and(|t| t.handoff_sent);
        !handing_off && self.now_us < self.lease_until_since(self.lease_floor_us)
    }

    pub(super) fn arm_lease_timer(&mut self) {
        let until = self.lease_until_us();
        self.set_timer(Timer::Lease, Some(until));
    }

    // ----- commit -----

    pub(super) fn maybe_commit(&mut self) {
        if self.role != Role::Leader || !self.may_acknowledge() {
            return;
        }
        let term = self.hard.term;
        let current_term = |replica: &Replica, index: LogIndex| replica.log.term_at(index) == Some(term);
        let mut candidate = self.lowest_over_quorum_sets(|m, copies| self.quorum_match(m, copies));
        if self.config.mode == WriteMode::Async {
            // Acknowledged when durable on the leader: a follower's copy alone would let
            // the write vanish with no node to report it, should the leader crash before
            // its fsync and that follower be removed before it rejoins (seed 70760).
            candidate = candidate.min(self.durable_index);
        }
        if candidate > self.commit_index && current_term(self, candidate) {
            self.commit_index = candidate;
            self.push(Output::Commit { commit_index: candidate });
        }
        if self.config.mode == WriteMode::Async {
            let majority = self.lowest_over_quorum_sets(|m, _| self.quorum_match(m, crate::mode::majority(m.voters())));
            if majority > self.safe_index && current_term(self, majority) {
                self.safe_index = majority;
            }
        } else {
            // (Never below what this node knew safe before a restart: see `Replica::new`.)
            self.safe_index = self.safe_index.max(self.commit_index);
        }
        self.persist_committed_membership();
        self.prune_departed_peers();
        self.maybe_send_timeout_now();
        self.step_down_if_removed();
    }

    /// The highest index that `copies` voters of `membership` (the leader's own durable
    /// log included) hold.
    fn quorum_match(&self, membership: &crate::membership::Membership, copies: u8) -> LogIndex {
        let mut matches: Vec<LogIndex, NODES_MAX> = Vec::new();
        if membership.is_voter(self.config.id) {
            let _ = matches.push(self.durable_index);
        }
        for peer in self.peers.iter().filter(|p| membership.is_voter(p.id)) {
            let _ = matches.push(peer.match_index);
        }
        matches.sort_unstable_by(|a, b| b.cmp(a));
        matches.get(usize::from(copies).max(1) - 1).copied().unwrap_or(0)
    }

    // ----- sending -----

    /// Called by `poll_output` when the queue is empty: one batch per follower that has
    /// room in its window.
    pub(super) fn generate_appends(&mut self) {
        for index in 0..self.peers.len() {
            if let Some(output) = self.next_batch(index) {
                self.push(output);
            }
        }
    }

    fn next_batch(&mut self, index: usize) -> Option<Output> {
        let last = self.log.last_index();
        let peer = &self.peers[index];
        let has_room = match peer.state {
            ReplicationState::Snapshot => false,
            ReplicationState::Probe => peer.probe_sent_at_us.is_none(),
            ReplicationState::Replicate => !peer.inflight.is_full(),
        };
        let last = last.min(self.witness_limit(peer));
        if !has_room || peer.next_index > last {
            return None;
        }
        let from = peer.next_index;
        let to = peer.id;
        let Some(prev_term) = self.log.term_at(from - 1) else {
            // The entries it needs were compacted away: it gets the snapshot instead.
            let peer = &mut self.peers[index];
            peer.state = ReplicationState::Snapshot;
            peer.snapshot_sent_at_us = Some(self.now_us);
            return Some(Output::SendSnapshot { to, term: self.hard.term });
        };
        let end = self.log.run_end(from).min(from + BATCH_ENTRIES_MAX as u64 - 1).min(last);
        let entries_term = self.log.term_at(from).expect("from is within the log");
        let request = self.append_request(Position::new(prev_term, from - 1), entries_term, end - from + 1);
        let now = self.now_us;
        let peer = &mut self.peers[index];
        match peer.state {
            ReplicationState::Probe => peer.probe_sent_at_us = Some(now),
            _ => {
                let _ = peer.inflight.push_back(crate::progress::Inflight { last_index: end, sent_at_us: now });
                peer.next_index = end + 1;
            }
        }
        Some(Output::Send { to, message: Message::AppendRequest(request) })
    }

    /// How far a follower may be sent entries: a witness no further than a healthy
    /// data voter holds (reachable within an election timeout), so that it never makes
    /// a quorum with the leader alone while another data node could. With no healthy
    /// data voter, as far as the log goes: the witness then lets the leader commit
    /// alone, which is what it is for.
    fn witness_limit(&self, peer: &crate::progress::Progress) -> LogIndex {
        let is_witness = |id| self.config.member(id).is_some_and(|m| m.witness);
        if !is_witness(peer.id) {
            return LogIndex::MAX;
        }
        let window = self.config.election_timeout_us;
        let healthy = self.peers.iter().filter(|p| p.voter && !is_witness(p.id) && p.reachable(self.now_us, window));
        healthy.map(|p| p.match_index).max().unwrap_or(LogIndex::MAX)
    }

    fn append_request(&self, prev: Position, entries_term: u64, count: u64) -> AppendRequest {
        debug_assert!(count <= BATCH_ENTRIES_MAX as u64);
        AppendRequest {
            term: self.hard.term,
            prev,
            entries_term,
            entry_count: count as u16,
            // Followers apply only what survives a failover.
            leader_commit: self.safe_index,
            sent_at_us: self.now_us,
            paused: self.hard.paused,
            handoff_to: self.transfer.filter(|t| t.handoff_sent).map(|t| t.target),
        }
    }

    /// Heartbeats to every follower. Each names the follower's acknowledged position, so
    /// it always matches unless the follower lost data; or, while the follower is probed
    /// and has acknowledged nothing this term, the probe's position (a new leader's
    /// last entry before its no-op). A follower that holds it answers with that match at
    /// once, without waiting for an fsync, so a new leader learns within one round trip
    /// which followers are in sync, instead of after the no-op is durable on them, and
    /// never resends a log they already hold.
    pub(super) fn broadcast_heartbeats(&mut self) {
        for index in 0..self.peers.len() {
            let peer = &self.peers[index];
            let unknown_match = peer.state == ReplicationState::Probe && peer.match_index == 0;
            let probe_at = (peer.next_index - 1).min(self.log.last_index());
            let prev = match (unknown_match, self.log.term_at(probe_at), self.log.term_at(peer.match_index)) {
                (true, Some(term), _) => Position::new(term, probe_at),
                (_, _, Some(term)) => Position::new(term, peer.match_index),
                (_, _, None) => Position::ZERO,
            };
            let to = peer.id;
            let request = self.append_request(prev, self.hard.term, 0);
            self.send(to, Message::AppendRequest(request));
        }
    }

    pub(super) fn on_heartbeat_tick(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let now = self.now_us;
        let interval = self.config.heartbeat_interval_us;
        let snapshot_timeout = self.config.snapshot_timeout_us;
        for index in 0..self.peers.len() {
            let peer = &mut self.peers[index];
            match peer.state {
                ReplicationState::Probe => {
                    if peer.probe_sent_at_us.is_some_and(|at| now >= at + interval) {
                        peer.probe_sent_at_us = None;
                    }
                }
                ReplicationState::Replicate => {
                    // A batch unanswered for two heartbeats was probably lost: resend.
                    if peer.inflight.front().is_some_and(|b| now >= b.sent_at_us + 2 * interval) {
                        let next = peer.match_index + 1;
                        peer.become_probe(next);
                    }
                }
                ReplicationState::Snapshot => {
                    if peer.snapshot_sent_at_us.is_some_and(|at| now >= at + snapshot_timeout) {
                        let next = peer.match_index + 1;
                        peer.become_probe(next);
                    }
                }
            }
            self.update_in_sync(index);
        }
        if self.removal_stalled() {
            self.step_down(crate::output::StepDownReason::RemovalStalled);
            return;
        }
        self.broadcast_heartbeats();
        self.set_timer(Timer::Heartbeat, Some(now + interval));
    }

    fn update_in_sync(&mut self, index: usize) {
        let last = self.log.last_index();
        let now = self.now_us;
        let window = self.config.election_timeout_us;
        let max_lag = self.config.max_lag_entries;
        let peer = &mut self.peers[index];
        let in_sync = peer.reachable(now, window) && last - peer.match_index.min(last) <= max_lag;
        if in_sync != peer.in_sync {
            peer.in_sync = in_sync;
            let node = peer.id;
            self.event(Event::InSyncChanged { node, in_sync });
        }
    }

    // ----- answers from followers -----

    pub(super) fn on_append_response(&mut self, from: NodeId, response: AppendResponse) {
        if response.term > self.hard.term {
            self.become_follower(response.term, None);
            return;
        }
        if self.role != Role::Leader || response.term < self.hard.term {
            self.counters.stale_messages += 1;
            return;
        }
        let Some(index) = self.peers.iter().position(|p| p.id == from) else {
            self.counters.messages_from_unknown_nodes += 1;
            return;
        };
        let last = self.log.last_index();
        let snapshot_index = self.log.snapshot().index;
        let now = self.now_us;
        let peer = &mut self.peers[index];
        peer.last_ack_at_us = Some(now);
        peer.lease_ack_sent_at_us = peer.lease_ack_sent_at_us.max(Some(response.echo_sent_at_us));
        peer.reported_last_index = response.last_index;
        match response.outcome {
            AppendOutcome::Accepted { match_index } if match_index > last => {
                // It cannot hold more of this term's log than the leader: a confused peer.
                self.counters.stale_messages += 1;
            }
            AppendOutcome::Accepted { match_index } => match peer.state {
                ReplicationState::Replicate => {
                    peer.advance_match(match_index);
                }
                ReplicationState::Probe | ReplicationState::Snapshot => {
                    peer.match_index = peer.match_index.max(match_index);
                    peer.become_replicate();
                }
            },
            AppendOutcome::Rejected { hint_index, .. }
                if peer.state == ReplicationState::Snapshot && hint_index <= snapshot_index =>
            {
                // It still lacks what the snapshot under way brings (a heartbeat's
                // answer): keep sending it; the snapshot timeout covers a lost transfer.
            }
            AppendOutcome::Rejected { rejected_prev_index, hint_index } => {
                if rejected_prev_index < peer.match_index {
                    self.counters.stale_messages += 1;
                } else if hint_index <= peer.match_index {
                    // It rejected a position it had acknowledged: its disk lost data.
                    peer.match_index = hint_index.saturating_sub(1);
                    peer.become_probe(hint_index.max(1));
                    let (node, match_index) = (peer.id, peer.match_index);
                    self.event(Event::PeerRegressed { node, match_index });
                } else {
                    let next = hint_index.min(rejected_prev_index).max(peer.match_index + 1);
                    peer.become_probe(next);
                }
            }
        }
        self.update_in_sync(index);
        self.arm_lease_timer();
        self.maybe_commit();
    }
}
