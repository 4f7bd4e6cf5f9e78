//! The driver's part in live membership (see `baton_host::members` and
//! docs/replication.md, "In the node"): keeping the membership records and the shared
//! directory in step with the log, starting and stopping peer links, operators'
//! changes (`baton member`), the leader's own records (the cluster's id, promotions of
//! caught-up learners), and cascading learners' relays. It decides nothing the core
//! decides: every change to who counts goes through `Replica::handle_propose_membership`.

use super::Driver;
use crate::frame::{ErrorCode, Frame, Json, Response};
use crate::kv::Command;
use baton_common::{Message, NodeId, Role};
use baton_host::member_changes::{MemberDecision, MemberRefusal, MemberRequest};
use baton_host::members::{MemberRecord, MemberRecords};
use std::time::Instant;
use tokio::sync::oneshot;

impl Driver {
    /// The membership records recovered from the snapshot and the log, and how to start
    /// links to the members: one link to each is started now.
    pub fn with_members(mut self, records: MemberRecords, links: crate::transport::Links) -> Driver {
        self.host.records = records;
        self.links = Some(links);
        self.members_changed();
        self
    }

    /// The records changed (appended, truncated, installed): the shared view follows,
    /// and links start to new members and stop to members gone from every record kept.
    pub(super) fn members_changed(&mut self) {
        // The host's records and the core's memberships move together (appends,
        // truncations, snapshots): the newest record that made a change is the core's.
        let core = self.host.replica.memberships().current();
        let host = self.host.records.membership_log();
        if host.current() != core {
            tracing::error!(?core, host = ?host.current(), "the membership records diverge from the core's");
            debug_assert!(false, "the membership records diverge from the core's: {core:?} vs {:?}", host.current());
        }
        let me = self.membership.me();
        let was_member = self.membership.record().membership.member(me).is_some();
        self.membership.replace(self.host.records.current().clone());
        if was_member && self.host.records.current().membership.is_removed(me) {
            tracing::warn!(
                "this node's removal from the cluster is in its log: once that commits it takes no further part \
                 (its id is never accepted again). Fix: stop it then; to bring this machine back, empty its data \
                 directory and `baton member add` it under a new id"
            );
        }
        let mine = self.host.records.current().membership.member(me).copied();
        if let Some(member) = mine.filter(|m| self.started_as_witness && !m.witness) {
            let role = if member.voter { "voter" } else { "learner" };
            self.stop(format!(
                "this node was started with --witness, but the cluster holds it as a data member ({role}), which \
                 stores every write. Fix: start it without --witness, or `baton member remove` it and add a new id \
                 with `baton member add ID ADDR --witness`"
            ));
        }
        let Some(links) = &self.links else { return };
        let wanted = self.host.links_wanted(me);
        for &peer in &wanted {
            if !self.outbound.contains_key(&peer) && self.host.may_dial(peer) {
                let (sender, state) = links.start(peer);
                tracing::info!(peer = %self.membership.name_of(peer), "starting the link to a member");
                self.outbound.insert(peer, sender);
                self.link_states.insert(peer, state);
                self.links_retired_through = 0; // A removed node's link may be among them.
            }
        }
        let gone: Vec<NodeId> = self.outbound.keys().filter(|id| !wanted.contains(id)).copied().collect();
        for peer in gone {
            tracing::info!(peer = %self.membership.name_of(peer), "stopping the link to a node no longer a member");
            self.outbound.remove(&peer);
            self.link_states.remove(&peer);
            links.stopped(peer);
        }
        // A node just added is as far behind as it can be: decide now, not at the next
        // housekeeping tick, whether it gets a snapshot (a short log may be replayed
        // within the tick, and a long one should not start).
        if self.host.replica.role() == Role::Leader {
            self.maybe_compact();
        }
    }

    /// Retires the links to nodes whose removal has committed (in no record from the
    /// committed one on, and not the leader): each ends at its next failure rather than
    /// dial again (`LinkState::retire`). Links to them stay in `outbound` until the
    /// records that name them are compacted away, as before.
    pub(super) fn retire_removed_links(&mut self) {
        let commit_index = self.host.replica.commit_index();
        if self.links_retired_through >= commit_index || self.link_states.is_empty() {
            return;
        }
        self.links_retired_through = commit_index;
        let linked = self.link_states.iter().filter(|(_, state)| !state.is_retired()).map(|(peer, _)| *peer);
        for peer in self.host.retired(linked) {
            tracing::info!(peer = %self.membership.name_of(peer), "the link to a removed node ends when it next fails");
            self.link_states[&peer].retire();
        }
    }

    /// Tells the transport whether the newest record's removal is still uncommitted:
    /// until it commits, the node being removed may have to lead to commit it, and its
    /// hellos are let in (`Directory::admit`).
    pub(super) fn sync_removal_pending(&self) {
        self.membership.set_removal_pending(self.host.removal_pending());
    }

    /// The upstream an append request for `to` goes through, if `to` is a cascading
    /// learner whose upstream can take it (`Host::relay_via`).
    pub(super) fn relay_via(&self, to: NodeId, message: &Message) -> Option<NodeId> {
        let link_up = |id: NodeId| self.link_states.get(&id).is_some_and(|state| state.is_up());
        self.host.relay_via(self.membership.me(), to, message, link_up)
    }

    /// As an upstream: sends learner `to` the leader's append request with the entries
    /// from this node's own log, or drops it (counted) and the leader sends it again,
    /// itself (`Host::relay_entries`).
    pub(super) fn relay(&mut self, from: NodeId, to: NodeId, message: Message) {
        match self.host.relay_entries(&self.wal, from, &message) {
            Ok(entries) => {
                self.frames_relayed += 1;
                self.send(to, Frame::Relayed { from: from.0, message, entries });
            }
            Err(_) => self.relays_dropped += 1,
        }
    }

    /// The members as this node knows them (`baton member list`, and a joining node).
    pub(super) fn members_view(&self) -> crate::status::MembersView {
        let record = self.host.records.current().clone();
        let mode = self.host.replica.config().mode;
        let voters = record.membership.voters();
        crate::status::MembersView {
            from: self.membership.my_name().to_string(),
            leader: self.host.replica.leader().map(|id| self.membership.name_of(id)),
            record,
            change_index: self.host.replica.memberships().current_index(),
            // A follower knows the commit index, not the leader's safe index.
            change_pending: match self.host.replica.role() {
                Role::Leader => self.host.replica.membership_change_pending(),
                _ => self.host.replica.memberships().current_index() > self.host.replica.commit_index(),
            },
            mode: mode.to_string(),
            write_quorum: mode.write_quorum(voters),
            election_quorum: mode.election_quorum(voters),
        }
    }

    /// An operator's membership change: refused with every reason, judged (dry run), or
    /// appended and answered `Written` once committed (see `baton_common::membership`).
    /// `baton member ...`: the request's syntax is checked here (a name a certificate
    /// can carry, an address that parses), the change is decided by the host
    /// (`baton_host::member_changes`), and a change made is appended here.
    pub(super) fn change_members(
        &mut self,
        now: u64,
        change: crate::frame::MemberChange,
        dry_run: bool,
        reply: oneshot::Sender<Response>,
    ) {
        use crate::frame::MemberChange;
        let request = match change {
            MemberChange::Add { name, addr, priority, learner_only, upstream } => {
                MemberRequest::Add { name, addr, priority, learner_only, upstream, witness: false }
            }
            MemberChange::AddWitness { name, addr } => {
                MemberRequest::Add { name, addr, priority: 0, learner_only: false, upstream: None, witness: true }
            }
            MemberChange::Promote { name } => MemberRequest::Promote { name },
            MemberChange::Remove { name } => MemberRequest::Remove { name },
            MemberChange::SetPriority { name, priority } => MemberRequest::SetPriority { name, priority },
            MemberChange::SetUpstream { name, upstream } => MemberRequest::SetUpstream { name, upstream },
        };
        let name = request.name().to_string();
        if let MemberRequest::Add { addr, .. } = &request {
            let syntax = crate::certs::check_name(&name).map_err(|e| e.to_string()).and_then(|()| {
                addr.parse::<crate::addr::NodeAddr>().map(|_| ()).map_err(|e| format!("address {addr:?}: {e}"))
            });
            if let Err(reason) = syntax {
                let _ = reply.send(refusal(dry_run, &name, reason));
                return;
            }
        }
        let verdict = match self.host.decide_members(now, request, dry_run) {
            MemberDecision::NotLeader => {
                let _ = reply.send(self.error(ErrorCode::NotLeader, "membership changes go through the leader"));
                return;
            }
            MemberDecision::Proposed { proposal, record, .. } => {
                tracing::info!(change = ?record.change, %name, index = proposal.position.index, "membership change proposed");
                return self.append_own_record(proposal, record, Some(reply));
            }
            MemberDecision::Refused { node_id, reasons } => {
                let removes_leader = reasons.contains(&MemberRefusal::Core(baton_common::Refusal::RemovesLeader));
                let reasons = reasons
                    .iter()
                    .map(|reason| match reason {
                        MemberRefusal::Words(words) => words.clone(),
                        MemberRefusal::Core(refusal) => self.host.describe(refusal),
                    })
                    .collect();
                crate::status::MembersVerdict { dry_run, name, node_id, reasons, removes_leader, ..Default::default() }
            }
            MemberDecision::Judged { node_id, next, write_quorum, election_quorum } => {
                let names = |voter: bool| {
                    let members = next.membership.members.iter().filter(move |m| m.voter == voter);
                    members.map(|m| next.name_of(m.id).unwrap_or("?").to_string()).collect()
                };
                crate::status::MembersVerdict {
                    accepted: true,
                    dry_run,
                    name,
                    node_id,
                    voters: names(true),
                    learners: names(false),
                    write_quorum,
                    election_quorum,
                    ..Default::default()
                }
            }
        };
        let _ = reply.send(Response::MembersVerdict(Json(verdict)));
    }

    /// Appends this leader's membership record at `proposal` (a change the core
    /// accepted, or the record choosing the cluster's id), already in its host's records;
    /// `reply` hears once it commits.
    pub(super) fn append_own_record(
        &mut self,
        proposal: baton_common::Proposal,
        record: MemberRecord,
        reply: Option<oneshot::Sender<Response>>,
    ) {
        let position = proposal.position;
        let payload = Command::Members(record).encode();
        if !self.append(position.index, position.term, payload) {
            return;
        }
        self.members_changed();
        let since = Instant::now();
        let since_us = since.saturating_duration_since(self.started).as_micros() as u64;
        // A change nobody waits for (a promotion the leader made itself): its answer
        // goes nowhere.
        let reply = reply.unwrap_or_else(|| oneshot::channel().0);
        self.host.appended_own(position, proposal.seq, since_us, (since, reply));
    }

    /// Leader's housekeeping for the membership: a cluster whose id is not chosen yet
    /// gets one (random, in a record of its own); a learner marked to be promoted once
    /// caught up is promoted as soon as the core accepts it.
    pub(super) fn tend_members(&mut self) {
        if self.host.replica.role() != Role::Leader || self.fatal.is_some() {
            return;
        }
        let now = self.now();
        let random_id = || {
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).ok().map(|()| u64::from_le_bytes(bytes))
        };
        if let Some((proposal, record)) = self.host.choose_cluster_id(now, random_id) {
            tracing::info!(cluster_id = format!("{:016x}", record.cluster_id), "chose the cluster's id");
            self.append_own_record(proposal, record, None);
        }
        if let Some((proposal, record)) = self.host.promote_caught_up(now) {
            let promoted = record.change.map_or(NodeId(0), |change| change.node());
            tracing::info!(member = %self.membership.name_of(promoted), "the learner caught up: promoting it to voter");
            self.append_own_record(proposal, record, None);
        }
        self.pump(None);
    }
}

/// A change refused for one reason, before the host judged it.
fn refusal(dry_run: bool, name: &str, reason: String) -> Response {
    let verdict =
        crate::status::MembersVerdict { dry_run, name: name.to_string(), reasons: vec![reason], ..Default::default() };
    Response::MembersVerdict(Json(verdict))
}
