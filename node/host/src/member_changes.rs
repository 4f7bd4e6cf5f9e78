//! An operator's membership change (`baton member ...`), and the leader's own promotions
//! of caught-up learners, decided by the leader's host: which member a name means, the
//! id a new node gets (ids are never reused), the upstream a cascading learner names,
//! the core's verdict (`Replica::handle_propose_membership`), and the record that goes
//! into the log. The driver checks the request's syntax (a name a certificate can
//! carry, an address that parses) before, and appends the record's payload after; the
//! simulator's operator asks through here too, so the node's own rules are what it runs.

use crate::members::{MemberEntry, MemberRecord};
use crate::node::Host;
use baton_common::{Change, Micros, NodeId, Proposal, Refusal, Role};

/// What an operator asks, naming members as their certificates do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberRequest {
    /// A new node at `addr`: a learner that counts toward nothing until promoted (by
    /// the leader once caught up, unless `learner_only`), or a witness (`witness`: it
    /// votes, stores positions only, never leads).
    Add {
        name: String,
        addr: String,
        priority: u8,
        learner_only: bool,
        upstream: Option<String>,
        witness: bool,
    },
    Promote {
        name: String,
    },
    Remove {
        name: String,
    },
    SetPriority {
        name: String,
        priority: u8,
    },
    /// Which member `name` receives the log through (`None`: the leader).
    SetUpstream {
        name: String,
        upstream: Option<String>,
    },
}

impl MemberRequest {
    /// The member (or the new node) the request is about.
    pub fn name(&self) -> &str {
        match self {
            MemberRequest::Add { name, .. }
            | MemberRequest::Promote { name }
            | MemberRequest::Remove { name }
            | MemberRequest::SetPriority { name, .. }
            | MemberRequest::SetUpstream { name, .. } => name,
        }
    }
}

/// Why a change is refused: in words decided here, or the core's reason (which the
/// driver puts in words, with the members' names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberRefusal {
    Words(String),
    Core(Refusal),
}

/// The host's answer to a [`MemberRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberDecision {
    /// Only the leader changes the membership.
    NotLeader,
    /// Refused, with every reason. `node_id`: the node it is about (0: none yet).
    Refused { node_id: u8, reasons: Vec<MemberRefusal> },
    /// A dry run that would pass: the record it would leave, and the quorums of the
    /// membership in it.
    Judged { node_id: u8, next: MemberRecord, write_quorum: u8, election_quorum: u8 },
    /// Made: the core appended the change at `proposal`, and this host's records hold
    /// `record` there. The driver appends `Command::Members(record)` at that position
    /// and then reports it with [`Host::appended_own`], like a client's write.
    Proposed { node_id: u8, proposal: Proposal, record: MemberRecord },
}

impl<W, R> Host<W, R> {
    /// Decides an operator's membership change at `now_us` (only judged, on a
    /// `dry_run`).
    pub fn decide_members(&mut self, now_us: Micros, request: MemberRequest, dry_run: bool) -> MemberDecision {
        let record = self.records.current().clone();
        let refused = |node_id: NodeId, reason: String| MemberDecision::Refused {
            node_id: node_id.0,
            reasons: vec![MemberRefusal::Words(reason)],
        };
        let name = request.name().to_string();
        let member = record.id_of(&name).filter(|id| record.membership.member(*id).is_some());
        let (change, added) = match request {
            MemberRequest::Add { name, addr, priority, learner_only, upstream, witness } => {
                if member.is_some() {
                    return refused(NodeId(0), format!("{name} is already a member"));
                }
                // Ids are never reused: a stale process of the removed node, or its old
                // data, must never pass for the new machine.
                if let Some(removed) = record.id_of(&name).filter(|id| record.membership.is_removed(*id)) {
                    let reason = format!(
                        "{name} was removed from this cluster (as id {}), and ids are never reused. Fix: give the \
                         new machine a new id (`baton certs --out DIR --nodes NEWID`), then `baton member add NEWID ADDR`",
                        removed.0
                    );
                    return refused(removed, reason);
                }
                let upstream = match upstream_id(&record, &name, upstream) {
                    Ok(upstream) => upstream,
                    Err(reason) => return refused(NodeId(0), reason),
                };
                let id = NodeId(record.membership.next_id);
                let promote_when_caught_up = !learner_only;
                let entry = MemberEntry { id: id.0, name, addr, promote_when_caught_up, upstream };
                let change = if witness { Change::AddWitness { id } } else { Change::AddLearner { id, priority } };
                (change, Some(entry))
            }
            MemberRequest::SetUpstream { name, upstream } => {
                let Some(id) = member else { return refused(NodeId(0), format!("{name} is not a member")) };
                return self.set_upstream(now_us, record, id, upstream, dry_run);
            }
            request => {
                let Some(id) = member else { return refused(NodeId(0), format!("{name} is not a member")) };
                let change = match request {
                    MemberRequest::Remove { .. } => Change::Remove { id },
                    MemberRequest::SetPriority { priority, .. } => Change::SetPriority { id, priority },
                    _ => Change::Promote { id },
                };
                (change, None)
            }
        };
        let node_id = change.node().0;
        match self.replica.handle_propose_membership(now_us, change, dry_run) {
            Err(refused) if matches!(refused.reasons.first(), Some(Refusal::NotLeader { .. })) => {
                MemberDecision::NotLeader
            }
            Err(refused) => MemberDecision::Refused {
                node_id,
                reasons: refused.reasons.iter().map(|r| MemberRefusal::Core(*r)).collect(),
            },
            Ok(accepted) => {
                let next = record.changed(change, accepted.membership, added);
                match accepted.proposal {
                    None => MemberDecision::Judged {
                        node_id,
                        next,
                        write_quorum: accepted.write_quorum,
                        election_quorum: accepted.election_quorum,
                    },
                    Some(proposal) => {
                        self.records.push(proposal.position.index, next.clone());
                        MemberDecision::Proposed { node_id, proposal, record: next }
                    }
                }
            }
        }
    }

    /// A record that changes nothing the core counts, only `id`'s upstream: appended
    /// as a plain entry.
    fn set_upstream(
        &mut self,
        now_us: Micros,
        mut record: MemberRecord,
        id: NodeId,
        upstream: Option<String>,
        dry_run: bool,
    ) -> MemberDecision {
        let name = record.name_of(id).unwrap_or_default().to_string();
        let upstream = match upstream_id(&record, &name, upstream) {
            Ok(upstream) => upstream,
            Err(reason) => {
                return MemberDecision::Refused { node_id: id.0, reasons: vec![MemberRefusal::Words(reason)] }
            }
        };
        if self.replica.role() != Role::Leader {
            return MemberDecision::NotLeader;
        }
        record.change = None;
        if let Some(entry) = record.directory.iter_mut().find(|e| e.id == id.0) {
            entry.upstream = upstream;
        }
        if dry_run {
            let (mode, voters) = (self.replica.config().mode, record.membership.voters());
            let (write_quorum, election_quorum) = (mode.write_quorum(voters), mode.election_quorum(voters));
            return MemberDecision::Judged { node_id: id.0, next: record, write_quorum, election_quorum };
        }
        match self.replica.handle_propose(now_us) {
            Ok(proposal) => {
                self.records.push(proposal.position.index, record.clone());
                MemberDecision::Proposed { node_id: id.0, proposal, record }
            }
            Err(_) => MemberDecision::NotLeader,
        }
    }

    /// Leader of a cluster whose id is not chosen yet (one formed with `--peer`): the
    /// record that chooses `random_id()` (made nonzero), proposed, and in this host's
    /// records; every later record carries the id. A truncation that takes the record
    /// away leaves the id to be chosen again. The driver appends it as for
    /// [`MemberDecision::Proposed`].
    pub fn choose_cluster_id(
        &mut self,
        now_us: Micros,
        random_id: impl FnOnce() -> Option<u64>,
    ) -> Option<(Proposal, MemberRecord)> {
        if self.replica.role() != Role::Leader || self.records.cluster_id() != 0 {
            return None;
        }
        let mut record = self.records.current().clone();
        record.cluster_id = random_id()?.max(1);
        record.change = None;
        let proposal = self.replica.handle_propose(now_us).ok()?;
        self.records.push(proposal.position.index, record.clone());
        Some((proposal, record))
    }

    /// Leader: the promotion to make now, if a learner marked to be promoted once
    /// caught up has caught up (the core decides that): proposed, and in this host's
    /// records. One change at a time. The driver appends it as for
    /// [`MemberDecision::Proposed`].
    pub fn promote_caught_up(&mut self, now_us: Micros) -> Option<(Proposal, MemberRecord)> {
        if self.replica.role() != Role::Leader {
            return None;
        }
        let learners: Vec<NodeId> = self.records.current().learners_to_promote().collect();
        for id in learners {
            let change = Change::Promote { id };
            if self.replica.handle_propose_membership(now_us, change, true).is_err() {
                continue;
            }
            let Ok(accepted) = self.replica.handle_propose_membership(now_us, change, false) else { continue };
            let Some(proposal) = accepted.proposal else { continue };
            let next = self.records.current().changed(change, accepted.membership, None);
            self.records.push(proposal.position.index, next.clone());
            return Some((proposal, next));
        }
        None
    }
}

/// The id of the member named `upstream` that `name` is to receive the log through.
fn upstream_id(record: &MemberRecord, name: &str, upstream: Option<String>) -> Result<Option<u8>, String> {
    let Some(upstream) = upstream else { return Ok(None) };
    if upstream == name {
        return Err(format!("{name} cannot receive the log through itself"));
    }
    match record.id_of(&upstream).and_then(|id| record.membership.member(id)) {
        Some(member) if member.witness => Err(format!("{upstream} is a witness: it holds no data to pass on")),
        Some(member) => Ok(Some(member.id.0)),
        None => Err(format!("the upstream {upstream} is not a member")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_common::Output;

    /// A one-voter cluster's host, leading with its term's first entry committed (so it
    /// may change the membership), at the time returned.
    fn leading_host() -> (Host<(), ()>, Micros) {
        let mut host = crate::node::one_voter_host();
        let now = 10_000_000;
        host.replica.handle_timeout(now);
        persist_all(&mut host, now);
        assert_eq!(host.replica.role(), Role::Leader);
        (host, now)
    }

    /// Tells the core every write it asked for is durable, until it asks for no more.
    fn persist_all(host: &mut Host<(), ()>, now: Micros) {
        while let Some(output) = host.replica.poll_output() {
            if let Output::PersistHardState { seq, .. } | Output::AppendNoop { seq, .. } = output {
                host.replica.handle_persisted(now, seq);
            }
        }
    }

    /// The driver appended the proposal's record and it is durable.
    fn made_durable(host: &mut Host<(), ()>, now: Micros, proposal: Proposal) {
        host.replica.handle_persisted(now, proposal.seq);
        persist_all(host, now);
    }

    fn add(name: &str, learner_only: bool) -> MemberRequest {
        let (name, addr) = (name.to_string(), format!("{name}:1"));
        MemberRequest::Add { name, addr, priority: 1, learner_only, upstream: None, witness: false }
    }

    /// Goal: an added node gets the next id as a learner, in the core and in the host's
    /// records at the change's index; a dry run changes nothing; the same name again is
    /// refused while it is a member.
    #[test]
    fn an_added_node_gets_the_next_id_in_the_core_and_the_records() {
        let (mut host, now) = leading_host();
        let judged = host.decide_members(now, add("n2", false), true);
        assert!(matches!(judged, MemberDecision::Judged { node_id: 2, .. }), "{judged:?}");
        assert!(host.records.current().id_of("n2").is_none(), "a dry run changes nothing");
        let MemberDecision::Proposed { node_id, proposal, record } = host.decide_members(now, add("n2", false), false)
        else {
            panic!("not proposed")
        };
        assert_eq!(node_id, 2);
        assert_eq!(host.records.current(), &record);
        assert_eq!(host.records.membership_log().current_index(), proposal.position.index);
        assert!(record.entry(NodeId(2)).is_some_and(|e| e.promote_when_caught_up && e.name == "n2"));
        assert!(!record.membership.member(NodeId(2)).expect("a member").voter, "a learner first");
        let again = host.decide_members(now, add("n2", false), true);
        assert!(matches!(again, MemberDecision::Refused { .. }), "{again:?}");
    }

    /// Goal: a removed name is refused before the core judges it (ids are never
    /// reused), naming the fix; an unknown name and a witness upstream are refused in
    /// words.
    #[test]
    fn removed_and_unknown_names_are_refused_with_reasons() {
        let (mut host, now) = leading_host();
        let MemberDecision::Proposed { proposal, .. } = host.decide_members(now, add("n2", true), false) else {
            panic!("not proposed")
        };
        made_durable(&mut host, now, proposal);
        assert!(host.replica.commit_index() >= proposal.position.index, "a learner counts for nothing");
        let MemberDecision::Proposed { node_id: 2, proposal, .. } =
            host.decide_members(now, MemberRequest::Remove { name: "n2".into() }, false)
        else {
            panic!("not proposed")
        };
        made_durable(&mut host, now, proposal);
        let words = |decision: MemberDecision| match decision {
            MemberDecision::Refused { reasons, .. } => match &reasons[..] {
                [MemberRefusal::Words(words)] => words.clone(),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        let again = words(host.decide_members(now, add("n2", false), true));
        assert!(again.contains("ids are never reused") && again.contains("NEWID"), "{again}");
        let unknown = words(host.decide_members(now, MemberRequest::Promote { name: "n9".into() }, true));
        assert!(unknown.contains("n9 is not a member"), "{unknown}");
    }

    /// Goal: the leader promotes a learner added to be promoted once caught up, by
    /// itself, one change at a time, and never one added as a learner only.
    #[test]
    fn the_leader_promotes_a_caught_up_learner_unless_it_stays_a_learner() {
        let (mut host, now) = leading_host();
        let MemberDecision::Proposed { proposal, .. } = host.decide_members(now, add("n2", true), false) else {
            panic!()
        };
        made_durable(&mut host, now, proposal);
        assert!(host.promote_caught_up(now).is_none(), "added as a learner only");
        let MemberDecision::Proposed { proposal, .. } = host.decide_members(now, add("n3", false), false) else {
            panic!()
        };
        assert!(host.promote_caught_up(now).is_none(), "one change at a time: the add is in flight");
        made_durable(&mut host, now, proposal);
        // n3 acknowledges everything: caught up.
        let last = host.replica.log().last_index();
        let term = host.replica.term();
        let response = baton_common::AppendResponse {
            term,
            outcome: baton_common::AppendOutcome::Accepted { match_index: last },
            last_index: last,
            echo_sent_at_us: now,
        };
        host.replica.handle_message(now, NodeId(3), baton_common::Message::AppendResponse(response));
        persist_all(&mut host, now);
        let (proposal, record) = host.promote_caught_up(now).expect("n3 is promoted");
        assert_eq!(record.change, Some(Change::Promote { id: NodeId(3) }));
        assert_eq!(host.records.membership_log().current_index(), proposal.position.index);
        assert!(record.membership.member(NodeId(3)).expect("a member").voter);
    }
}
