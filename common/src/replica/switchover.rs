//! Operator commands on a leader: planned switchover (leadership transfer) and pausing
//! automatic failover.
//!
//! A switchover checks its target, stops taking writes, waits until the target holds
//! every entry and everything is committed, then tells the target to campaign at once
//! and stops acknowledging. The target's voters accept it despite the live leader only
//! because the leader announced it in its heartbeats. If nobody takes over within an
//! election timeout the old leader resumes, but acknowledges again only after a fresh
//! lease from heartbeats that no longer announce the handoff.

use super::{Replica, Role, Timer, Transfer};
use crate::message::{Message, TimeoutNow};
use crate::output::{Event, Refusal, Refused, TransferOutcome};
use crate::types::{Micros, NodeId};
use heapless::Vec;

impl Replica {
    /// Starts a switchover to `target`, or to the best caught-up follower. With
    /// `dry_run`, only says whom it would pick, or every reason it refuses.
    pub fn handle_switchover(&mut self, now: Micros, target: Option<NodeId>, dry_run: bool) -> Result<NodeId, Refused> {
        self.observe_now(now);
        let verdict = self.check_switchover(target);
        if let (Ok(chosen), false) = (&verdict, dry_run) {
            self.start_transfer(*chosen);
        }
        self.assert_invariants();
        verdict
    }

    pub(super) fn check_switchover(&self, target: Option<NodeId>) -> Result<NodeId, Refused> {
        if self.role != Role::Leader {
            return Err(Refused::one(target, Refusal::NotLeader { leader_hint: self.leader }));
        }
        if let Some(transfer) = self.transfer {
            return Err(Refused::one(target, Refusal::TransferInProgress { target: transfer.target }));
        }
        if let Some(id) = target {
            let reasons = self.target_refusals(id);
            return if reasons.is_empty() { Ok(id) } else { Err(Refused { target, reasons }) };
        }
        // The best target: most entries, then highest priority, then lowest id.
        let mut best: Option<(u64, u8, NodeId)> = None;
        let mut closest: Option<(u64, NodeId)> = None;
        for peer in &self.peers {
            let priority = self.config.member(peer.id).map_or(0, |m| m.priority);
            if closest.is_none_or(|(m, _)| peer.match_index > m) {
                closest = Some((peer.match_index, peer.id));
            }
            if !self.target_refusals(peer.id).is_empty() {
                continue;
            }
            let better = best.is_none_or(|(m, p, id)| {
                (peer.match_index, priority, core::cmp::Reverse(peer.id)) > (m, p, core::cmp::Reverse(id))
            });
            if better {
                best = Some((peer.match_index, priority, peer.id));
            }
        }
        match (best, closest) {
            (Some((_, _, id)), _) => Ok(id),
            (None, closest) => {
                let mut refused = Refused::one(None, Refusal::NoEligibleTarget);
                if let Some((_, id)) = closest {
                    refused.target = Some(id);
                    for reason in self.target_refusals(id) {
                        let _ = refused.reasons.push(reason);
                    }
                }
                Err(refused)
            }
        }
    }

    /// Every reason `id` cannot take over now (empty: eligible).
    fn target_refusals(&self, id: NodeId) -> Vec<Refusal, { crate::limits::REFUSALS_MAX }> {
        let mut reasons = Vec::new();
        if id == self.config.id {
            let _ = reasons.push(Refusal::TargetIsLeader);
            return reasons;
        }
        let Some(member) = self.config.member(id) else {
            let _ = reasons.push(Refusal::UnknownNode);
            return reasons;
        };
        if !member.voter {
            let _ = reasons.push(Refusal::NotAVoter);
        }
        if member.priority == 0 {
            let _ = reasons.push(Refusal::PriorityZero);
        }
        if let Some(peer) = self.peers.iter().find(|p| p.id == id) {
            if !peer.reachable(self.now_us, self.config.election_timeout_us) {
                let _ = reasons.push(Refusal::Unreachable { last_contact_age_us: peer.last_ack_age_us(self.now_us) });
            }
            let behind_entries = self.log.last_index().saturating_sub(peer.match_index);
            if behind_entries > self.config.max_lag_entries {
                let _ = reasons.push(Refusal::Lagging { behind_entries });
            }
        }
        reasons
    }

    pub(super) fn start_transfer(&mut self, target: NodeId) {
        let deadline_us = self.now_us + self.config.election_timeout_us;
        self.transfer = Some(Transfer { target, handoff_sent: false });
        self.set_timer(Timer::Transfer, Some(deadline_us));
        self.event(Event::TransferStarted { term: self.hard.term, target });
        self.maybe_send_timeout_now();
    }

    /// Hands over once the target holds everything and everything is committed.
    pub(super) fn maybe_send_timeout_now(&mut self) {
        let Some(transfer) = self.transfer.filter(|t| !t.handoff_sent) else {
            return;
        };
        let last = self.log.last_index();
        let caught_up = self.peers.iter().any(|p| p.id == transfer.target && p.match_index == last);
        if !caught_up || self.commit_index != last {
            return;
        }
        self.transfer = Some(Transfer { handoff_sent: true, ..transfer });
        // Voters learn of the handoff before the target's vote request reaches them.
        self.broadcast_heartbeats();
        self.send(transfer.target, Message::TimeoutNow(TimeoutNow { term: self.hard.term }));
    }

    pub(super) fn on_transfer_timeout(&mut self) {
        let Some(transfer) = self.transfer.filter(|_| self.role == Role::Leader) else {
            return;
        };
        self.transfer = None;
        if transfer.handoff_sent {
            // Voters that saw the handoff might still elect the target: acknowledge
            // again only on acknowledgements of heartbeats that withdraw it.
            self.lease_floor_us = self.now_us;
        }
        let outcome = TransferOutcome::TimedOut;
        self.event(Event::TransferFinished { term: self.hard.term, target: transfer.target, outcome });
        if self.removed_for_good() {
            // A leader that was removed does not resume.
            self.step_down(crate::output::StepDownReason::Removed);
            return;
        }
        self.broadcast_heartbeats();
    }

    /// An operator resumes automatic failover on this node alone, for when no leader is
    /// there to replicate a resume (it died while paused). Pausing is not local: it only
    /// holds if the leader replicates it, so this only clears the flag. Refused on a
    /// follower that heard from its leader within the minimum election timeout: that
    /// leader's next heartbeat would pause it again, so the resume must go through it.
    pub fn handle_local_resume(&mut self, now: Micros) -> Result<(), Refusal> {
        self.observe_now(now);
        if self.role != Role::Leader && self.leader.is_some() && self.within_leader_lease() {
            let last_contact_age_us = self.now_us - self.last_leader_contact_us;
            return Err(Refusal::LeaderReachable { last_contact_age_us });
        }
        if self.hard.paused {
            self.hard.paused = false;
            self.persist_hard_state();
            self.event(Event::PausedChanged { paused: false });
            if self.role == Role::Leader {
                self.broadcast_heartbeats();
            }
        }
        self.assert_invariants();
        Ok(())
    }

    /// Pauses or resumes automatic failover (leader only). The flag travels on every
    /// heartbeat; each node persists it and, while it is set, neither starts nor votes in
    /// an election caused by a timeout. Switchovers and manual failovers still work.
    pub fn handle_set_paused(&mut self, now: Micros, paused: bool) -> Result<(), Refusal> {
        self.observe_now(now);
        if self.role != Role::Leader {
            return Err(Refusal::NotLeader { leader_hint: self.leader });
        }
        if self.hard.paused != paused {
            self.hard.paused = paused;
            self.persist_hard_state();
            self.event(Event::PausedChanged { paused });
            self.broadcast_heartbeats();
        }
        self.assert_invariants();
        Ok(())
    }
}
