//! The follower's side of replication: checking and storing append requests, installing
//! snapshots, acknowledging what is durable, and following the leader's commit index.
//!
//! A follower acknowledges an index only when it is both durable and known to match the
//! leader's log (`verified_index`). Heartbeats are answered at once, without waiting for
//! storage, so a slow disk never looks like a dead node.

use super::{Replica, Role};
use crate::message::{AppendOutcome, AppendRequest, AppendResponse, Message};
use crate::mode::WriteMode;
use crate::output::{Event, Output};
use crate::types::{LogIndex, Micros, NodeId, Position, Term};

impl Replica {
    pub(super) fn on_append_request(&mut self, from: NodeId, request: AppendRequest) {
        if request.term < self.hard.term {
            // A deposed leader: tell it the newer term so it steps down.
            self.counters.stale_messages += 1;
            let outcome = AppendOutcome::Rejected { rejected_prev_index: request.prev.index, hint_index: 0 };
            self.reply_append(from, outcome, request.sent_at_us);
            return;
        }
        if self.role == Role::Leader && request.term == self.hard.term {
            // Two leaders in one term would be a bug in some peer's core; refuse it loudly.
            debug_assert!(false, "two leaders in term {}", request.term);
            self.counters.stale_messages += 1;
            return;
        }
        self.become_follower(request.term, Some(from));
        self.last_leader_contact_us = self.now_us;
        self.contact_was_vote_for = None;
        self.attempt = 0;
        self.reset_election_timer();
        // Messages may arrive out of order: only the newest word of the leader on the
        // handoff and the pause counts, or a stale announcement could resurface.
        let newest = request.sent_at_us >= self.leader_sent_at_seen_us;
        self.leader_sent_at_seen_us = self.leader_sent_at_seen_us.max(request.sent_at_us);
        if newest {
            self.handoff_seen = request.handoff_to;
        }
        if newest && request.paused != self.hard.paused {
            self.hard.paused = request.paused;
            self.persist_hard_state();
            self.event(Event::PausedChanged { paused: request.paused });
        }
        self.leader_commit_seen = self.leader_commit_seen.max(request.leader_commit);

        let snapshot = self.log.snapshot();
        // Entries at or below the snapshot are committed, so they match any leader's log.
        let prev_known = request.prev.index <= snapshot.index || self.log.matches(request.prev);
        if !prev_known {
            self.counters.appends_rejected += 1;
            let hint_index = if request.prev.index > self.log.last_index() {
                self.log.last_index() + 1
            } else {
                self.log.run_start(request.prev.index)
            };
            let outcome = AppendOutcome::Rejected { rejected_prev_index: request.prev.index, hint_index };
            self.reply_append(from, outcome, request.sent_at_us);
            return;
        }

        let request_last = request.last_index();
        if !self.store_entries(&request) {
            self.counters.appends_refused_log_full += 1;
            let hint_index = self.log.last_index() + 1;
            let outcome = AppendOutcome::Rejected { rejected_prev_index: request.prev.index, hint_index };
            self.reply_append(from, outcome, request.sent_at_us);
            return;
        }
        self.verified_index = self.verified_index.max(request_last.min(self.log.last_index()));
        self.follower_advance_commit();
        let acknowledged = self.follower_match_index();
        if request.is_heartbeat() || acknowledged >= request_last {
            self.reply_append(from, AppendOutcome::Accepted { match_index: acknowledged }, request.sent_at_us);
        } else {
            self.pending_ack = Some(request.sent_at_us);
        }
    }

    /// Truncates a conflicting suffix and appends what is new. Returns false if the term
    /// table is full (the leader retries after the host compacts).
    fn store_entries(&mut self, request: &AppendRequest) -> bool {
        let request_last = request.last_index();
        let start = (request.prev.index + 1).max(self.log.first_index());
        if request.entry_count == 0 || start > request_last {
            return true;
        }
        // Our entries from `start` agree with the batch while their term is the batch's.
        let mut first_new = start;
        if start <= self.log.last_index() {
            first_new =
                if self.log.term_at(start) == Some(request.entries_term) { self.log.run_end(start) + 1 } else { start };
            if first_new <= self.log.last_index() && first_new <= request_last {
                self.discard_from(first_new);
            }
        }
        if first_new > request_last {
            return true;
        }
        if self.log.would_overflow(request.entries_term) {
            return false;
        }
        let count = request_last - first_new + 1;
        self.log.append(request.entries_term, count).expect("checked by would_overflow");
        let seq = self.next_persist_seq();
        self.push(Output::AppendReceived {
            seq,
            first_index: first_new,
            last_index: request_last,
            term: request.entries_term,
        });
        true
    }

    /// Drops a divergent suffix from `from_index`. Committed entries never diverge in a
    /// mode that keeps acknowledged writes; in async mode the dropped entries may have
    /// been acknowledged, and each span is reported.
    fn discard_from(&mut self, from_index: LogIndex) {
        assert!(from_index > self.safe_index, "truncating safe entry {from_index}");
        if self.config.mode == WriteMode::Async {
            self.report_discarded(from_index, self.log.last_index());
            self.commit_index = self.commit_index.min(from_index - 1);
        } else {
            assert!(from_index > self.commit_index, "truncating committed entry {from_index}");
        }
        self.truncate_log(from_index);
    }

    fn report_discarded(&mut self, first: LogIndex, last: LogIndex) {
        let mut spans: heapless::Vec<crate::log::Span, { crate::limits::TERM_RUNS_MAX }> = heapless::Vec::new();
        for span in self.log.runs_between(first, last) {
            let _ = spans.push(span);
        }
        for span in spans {
            self.event(Event::Discarded { term: span.term, from_index: span.first_index, to_index: span.last_index });
        }
    }

    /// What this follower can acknowledge: durable and matching the leader.
    fn follower_match_index(&self) -> LogIndex {
        self.verified_index.min(self.durable_index)
    }

    fn reply_append(&mut self, to: NodeId, outcome: AppendOutcome, echo_sent_at_us: Micros) {
        let response =
            AppendResponse { term: self.hard.term, outcome, last_index: self.log.last_index(), echo_sent_at_us };
        self.send(to, Message::AppendResponse(response));
    }

    /// After storage caught up: acknowledge what is now durable.
    pub(super) fn send_pending_ack(&mut self) {
        let Some(echo) = self.pending_ack else { return };
        let Some(leader) = self.leader.filter(|_| self.role == Role::Follower) else {
            self.pending_ack = None;
            return;
        };
        let acknowledged = self.follower_match_index();
        self.reply_append(leader, AppendOutcome::Accepted { match_index: acknowledged }, echo);
        if acknowledged >= self.verified_index {
            self.pending_ack = None;
        }
    }

    /// Follows the leader's commit index, as far as this log matches and is durable.
    pub(super) fn follower_advance_commit(&mut self) {
        if self.role != Role::Follower {
            return;
        }
        let commit = self.leader_commit_seen.min(self.follower_match_index());
        if commit > self.commit_index {
            self.commit_index = commit;
            self.push(Output::Commit { commit_index: commit });
        }
        self.safe_index = self.safe_index.max(commit);
        self.persist_committed_membership();
    }

    /// The host received a whole snapshot at `snapshot` from `from`, a leader in `term`.
    /// The core decides whether to install it; the answer to the leader follows once the
    /// install is durable.
    /// `membership` is the one the snapshot carries (in effect at its last entry).
    pub fn handle_snapshot_received(
        &mut self,
        now: Micros,
        from: NodeId,
        term: Term,
        snapshot: Position,
        membership: crate::membership::Membership,
    ) {
        self.observe_now(now);
        if self.refuses_sender(from) {
            self.counters.messages_from_unknown_nodes += 1;
            return;
        }
        if term < self.hard.term || (self.role == Role::Leader && term == self.hard.term) {
            self.counters.stale_messages += 1;
            let outcome = AppendOutcome::Rejected { rejected_prev_index: snapshot.index, hint_index: 0 };
            self.reply_append(from, outcome, 0);
            return;
        }
        self.become_follower(term, Some(from));
        self.last_leader_contact_us = self.now_us;
        self.contact_was_vote_for = None;
        self.reset_election_timer();
        if snapshot.index <= self.safe_index || (self.log.matches(snapshot) && snapshot.index <= self.durable_index) {
            // Nothing to install: this log already holds it.
            self.verified_index = self.verified_index.max(snapshot.index.min(self.log.last_index()));
        } else {
            if self.log.matches(snapshot) {
                self.log.compact_to(snapshot);
                self.memberships.compact_to(snapshot.index);
            } else {
                if self.config.mode == WriteMode::Async {
                    // Entries of the snapshot's own term at or below it are in it (one
                    // leader per term, and log matching); anything else may be lost.
                    let same_term_through = self
                        .log
                        .runs_between(self.log.first_index(), snapshot.index)
                        .filter(|span| span.term == snapshot.term)
                        .map(|span| span.last_index)
                        .last();
                    let from = same_term_through.map_or(self.log.first_index(), |through| through + 1);
                    self.report_discarded(from, self.log.last_index());
                }
                // Only what the old snapshot covered is certainly the same in the new
                // one; the rest counts as durable once the install is.
                let floor = self.log.snapshot().index;
                self.log = crate::log::LogTerms::new(snapshot);
                self.memberships = crate::membership::MembershipLog::new(snapshot.index, membership);
                self.adopt_current_membership();
                self.durable_index = self.durable_index.min(floor);
                for pending in self.pending_persists.iter_mut() {
                    pending.last_index = pending.last_index.min(floor);
                }
            }
            self.commit_index = snapshot.index;
            self.safe_index = snapshot.index;
            self.verified_index = snapshot.index;
            let seq = self.next_persist_seq();
            self.push(Output::InstallSnapshot { seq, snapshot });
        }
        self.pending_ack = Some(0);
        self.send_pending_ack();
        self.assert_invariants();
    }

    /// The host wrote a snapshot at `snapshot` (an applied position) durably and dropped
    /// the log entries it covers.
    pub fn handle_compacted(&mut self, now: Micros, snapshot: Position) {
        self.observe_now(now);
        assert!(snapshot.index <= self.compactable_index(), "snapshot beyond the compactable index");
        assert!(self.log.matches(snapshot) || snapshot.index <= self.log.snapshot().index);
        self.log.compact_to(snapshot);
        self.memberships.compact_to(snapshot.index);
        self.assert_invariants();
    }
}
