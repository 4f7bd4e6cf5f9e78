//! Focused tests of membership changes in the core: the one-at-a-time rule, learners,
//! promotion, removal, both quorums while a change is in flight, and followers adopting
//! a membership on append and dropping it on truncation.

use super::tests::{ack, drain, elected_leader, heartbeat};
use super::*;
use crate::membership::{Change, ChangeError};
use crate::message::{AppendRequest, TimeoutNow, VoteResponse, VoteVerdict};
use crate::output::Event;
use crate::output::{Refusal, Refused};
use crate::types::Term;
use crate::{Member, WriteMode};

const N1: NodeId = NodeId(1);
const N2: NodeId = NodeId(2);
const N3: NodeId = NodeId(3);
const N4: NodeId = NodeId(4);
const MS: Micros = 1_000;

fn propose(leader: &mut Replica, now: Micros, change: Change) -> Result<LogIndex, Refused> {
    let accepted = leader.handle_propose_membership(now, change, false)?;
    let proposal = accepted.proposal.expect("not a dry run");
    leader.handle_persisted(now, proposal.seq);
    drain(leader);
    Ok(proposal.position.index)
}

fn write(leader: &mut Replica, now: Micros) -> LogIndex {
    let proposal = leader.handle_propose(now).expect("takes writes");
    leader.handle_persisted(now, proposal.seq);
    drain(leader);
    proposal.position.index
}

fn first_reason(result: Result<LogIndex, Refused>) -> Refusal {
    result.expect_err("refused").reasons[0]
}

/// Rule: a leader appends a change only once an entry of its term committed, one change
/// at a time; an added node is a learner that counts toward no quorum.
#[test]
fn one_change_at_a_time_and_learners_count_for_nothing() {
    let (mut leader, now) = elected_leader(WriteMode::Quorum);
    assert_eq!(leader.commit_index(), 1, "the no-op of its term committed");
    let index = propose(&mut leader, now, Change::AddLearner { id: N4, priority: 1 }).unwrap();
    assert!(leader.membership_change_pending());
    assert_eq!(leader.config().member(N4), Some(&Member::learner(N4, 1)));
    assert_eq!(first_reason(propose(&mut leader, now, Change::Remove { id: N3 })), Refusal::ChangeInFlight { index });
    // N2 alone with the leader is a majority of the three voters; N4 is not needed.
    ack(&mut leader, now + MS, N2, index);
    assert_eq!(leader.commit_index(), index);
    assert!(!leader.membership_change_pending());
    let next = write(&mut leader, now + 2 * MS);
    ack(&mut leader, now + 3 * MS, N2, next);
    assert_eq!(leader.commit_index(), next, "a learner counts toward nothing");
}

/// Rule: a learner is promoted only once it is reachable and caught up; while the
/// promotion is uncommitted the leader commits only with a quorum of the old voters and
/// one of the new (here sync:2: {N1, N4} is a write quorum of the new four voters but
/// not of the old three).
#[test]
fn while_a_change_is_in_flight_both_quorums_count() {
    let (mut leader, now) = elected_leader(WriteMode::Sync(2));
    let added = propose(&mut leader, now, Change::AddLearner { id: N4, priority: 1 }).unwrap();
    ack(&mut leader, now + MS, N2, added);
    assert_eq!(leader.commit_index(), added);
    assert!(matches!(
        first_reason(propose(&mut leader, now + MS, Change::Promote { id: N4 })),
        Refusal::Unreachable { .. }
    ));
    ack(&mut leader, now + 2 * MS, N4, added);
    leader.handle_timeout(now + 100 * MS);
    drain(&mut leader);
    let promoted = propose(&mut leader, now + 100 * MS, Change::Promote { id: N4 }).unwrap();
    assert_eq!(leader.config().voters(), 4);
    ack(&mut leader, now + 101 * MS, N4, promoted);
    assert_eq!(leader.commit_index(), added, "the new quorum alone does not commit the change");
    ack(&mut leader, now + 102 * MS, N3, promoted);
    assert_eq!(leader.commit_index(), promoted);
    let next = write(&mut leader, now + 103 * MS);
    ack(&mut leader, now + 104 * MS, N4, next);
    assert_eq!(leader.commit_index(), next, "once committed, the new quorums alone");
}

/// Rule: a leader does not remove itself, nor a voter whose loss leaves too few
/// reachable voters for writes; a removed id is never accepted again and its messages
/// are dropped once the removal committed.
#[test]
fn removals_are_refused_with_reasons_and_removed_ids_stay_out() {
    let (mut leader, now) = elected_leader(WriteMode::Quorum);
    assert_eq!(first_reason(propose(&mut leader, now, Change::Remove { id: N1 })), Refusal::RemovesLeader);
    // N3 falls silent for longer than an election timeout while N2 keeps answering.
    let mut later = now;
    for _ in 0..15 {
        later += 100 * MS;
        ack(&mut leader, later, N2, 1);
        leader.handle_timeout(later);
        drain(&mut leader);
    }
    assert_eq!(leader.role(), Role::Leader);
    assert_eq!(
        first_reason(propose(&mut leader, later, Change::Remove { id: N2 })),
        Refusal::NoLiveQuorum { live: 1, need: 2 }
    );
    let dry = leader.handle_propose_membership(later, Change::Remove { id: N3 }, true).unwrap();
    assert_eq!((dry.proposal, dry.write_quorum, dry.membership.voters()), (None, 2, 2));
    let removed = propose(&mut leader, later, Change::Remove { id: N3 }).unwrap();
    assert_eq!(leader.peer_statuses().count(), 2, "N3 still gets the entry that removes it");
    ack(&mut leader, later + MS, N2, removed);
    assert_eq!(leader.commit_index(), removed);
    assert_eq!(leader.peer_statuses().count(), 1, "then it is dropped");
    let before = leader.counters().messages_from_unknown_nodes;
    ack(&mut leader, later + 2 * MS, N3, removed);
    assert_eq!(leader.counters().messages_from_unknown_nodes, before + 1);
    assert_eq!(
        first_reason(propose(&mut leader, later + 3 * MS, Change::AddLearner { id: N3, priority: 1 })),
        Refusal::Change(ChangeError::Removed)
    );
}

/// Rule: a follower adopts a membership when its entry is appended and a truncation
/// takes it back. A node whose removal is uncommitted may still campaign (Raft thesis
/// 4.2.2; see `a_node_being_removed_may_lead_to_commit_its_removal`).
#[test]
fn followers_adopt_on_append_and_revert_on_truncation() {
    let config = Config::new(N3, &[N1, N2, N3]).unwrap();
    let mut follower = Replica::new(config, Recovered::empty(), 0);
    let request = AppendRequest { entry_count: 2, ..heartbeat(1, Position::ZERO, 0, 10) };
    follower.handle_message(MS, N1, Message::AppendRequest(request));
    drain(&mut follower);
    let without_n3 = follower.memberships().current().apply(Change::Remove { id: N3 }, WriteMode::Quorum).unwrap();
    follower.handle_membership_appended(MS, 2, without_n3.clone());
    drain(&mut follower);
    assert_eq!(follower.memberships().current(), &without_n3);
    assert!(follower.poll_timeout().is_some(), "its removal uncommitted, it may still campaign");
    // A leader of term 2 has another entry at index 2: the removal is taken back.
    let request =
        AppendRequest { term: 2, entries_term: 2, entry_count: 1, ..heartbeat(2, Position::new(1, 1), 0, 20) };
    follower.handle_message(2 * MS, N2, Message::AppendRequest(request));
    drain(&mut follower);
    assert!(follower.config().member(N3).is_some());
    assert!(follower.poll_timeout().is_some(), "a member again: it may campaign");
}

fn persist_all(replica: &mut Replica, now: Micros) {
    for output in drain(replica) {
        match output {
            Output::AppendReceived { seq, .. }
            | Output::PersistHardState { seq, .. }
            | Output::TruncateLog { seq, .. }
            | Output::AppendNoop { seq, .. } => replica.handle_persisted(now, seq),
            _ => {}
        }
    }
    drain(replica);
}

fn grant(replica: &mut Replica, now: Micros, from: NodeId, term: Term, pre_vote: bool) {
    let response = VoteResponse { term, pre_vote, verdict: VoteVerdict::Granted, safe: Position::ZERO };
    replica.handle_message(now, from, Message::VoteResponse(response));
}

/// N3, a follower of N1 in term 1 whose log holds its own removal (index 2),
/// uncommitted.
fn being_removed_n3() -> Replica {
    let config = Config::new(N3, &[N1, N2, N3]).unwrap();
    let mut node = Replica::new(config, Recovered::empty(), 0);
    let request = AppendRequest { entry_count: 2, ..heartbeat(1, Position::ZERO, 0, 10) };
    node.handle_message(MS, N1, Message::AppendRequest(request));
    let without_n3 = node.memberships().current().apply(Change::Remove { id: N3 }, WriteMode::Quorum).unwrap();
    node.handle_membership_appended(MS, 2, without_n3);
    persist_all(&mut node, MS);
    node
}

/// Rule (Raft thesis 4.2.2): a node whose own removal is in its log but not committed
/// may still be the only one that can be elected (it holds the longest log; the others
/// need its vote, which it refuses them). So it campaigns, counting its own vote only
/// where it is a voter (the previous membership), leads until the removal commits, and
/// then steps down and stays quiet. Found by 100,000 churn seeds (45964): without it
/// the cluster never elected again.
#[test]
fn a_node_being_removed_may_lead_to_commit_its_removal() {
    let mut node = being_removed_n3();
    assert!(node.membership_change_pending());

    // N1 goes silent: N3 campaigns. In the membership {N1, N2} its own vote does not
    // count, so N2's grant alone is not enough.
    let now = 10 * node.config().election_timeout_us;
    node.handle_timeout(now);
    drain(&mut node);
    assert_eq!(node.role(), Role::PreCandidate);
    grant(&mut node, now, N2, 2, true);
    assert_eq!(node.role(), Role::PreCandidate, "{{N3, N2}} is no quorum of {{N1, N2}}");
    grant(&mut node, now, N1, 2, true);
    assert_eq!(node.role(), Role::Candidate);
    persist_all(&mut node, now);
    grant(&mut node, now, N1, 2, false);
    grant(&mut node, now, N2, 2, false);
    assert_eq!(node.role(), Role::Leader);
    persist_all(&mut node, now);
    assert!(node.handle_propose_membership(now, Change::Remove { id: N2 }, true).is_err(), "no change of its own");

    // Its no-op at index 3 commits with N1 and N2; that commits its removal too.
    ack(&mut node, now + MS, N1, 3);
    assert_eq!(node.role(), Role::Leader, "one voter of {{N1, N2}} is not enough");
    ack(&mut node, now + MS, N2, 3);
    let outputs = drain(&mut node);
    assert_eq!(node.commit_index(), 3);
    // Removed for good, it hands over at once to a caught-up voter (as a switchover),
    // which then knows the removal committed and needs no vote of N3's.
    assert!(outputs.contains(&Output::Event(Event::TransferStarted { term: 2, target: N1 })), "{outputs:?}");
    assert!(outputs.contains(&Output::Send { to: N1, message: Message::TimeoutNow(TimeoutNow { term: 2 }) }));
    assert!(node.handle_propose(now + MS).is_err(), "no new writes");
    // Should nobody take over within an election timeout, it steps down all the same
    // (its lease still fresh: it does not resume).
    let timeout = node.config().election_timeout_us;
    ack(&mut node, now + timeout / 2, N1, 3);
    ack(&mut node, now + timeout / 2, N2, 3);
    drain(&mut node);
    node.handle_timeout(now + MS + timeout);
    let outputs = drain(&mut node);
    let stepped_down = Event::SteppedDown { term: 2, reason: crate::output::StepDownReason::Removed };
    assert!(outputs.contains(&Output::Event(stepped_down)), "{outputs:?}");
    assert_eq!(node.role(), Role::Follower);
    assert_eq!(node.poll_timeout(), None, "removed for good: it never campaigns again");
}

/// Rule: a node whose log is behind follows a leader it has not heard added (it learns
/// of it from that leader's appends), and a node that joins follows the cluster's
/// leader while it knows only the membership it started with. A node whose removal
/// committed is never heard again.
#[test]
fn followers_hear_leaders_they_have_not_heard_added_but_never_removed_ones() {
    let config = Config::new(N2, &[N1, N2, N3]).unwrap();
    let mut follower = Replica::new(config, Recovered::empty(), 0);
    follower.handle_message(MS, N4, Message::AppendRequest(heartbeat(3, Position::ZERO, 0, 10)));
    drain(&mut follower);
    assert_eq!((follower.term(), follower.leader()), (3, Some(N4)));
    assert_eq!(follower.counters().messages_from_unknown_nodes, 0);
    // Entries 1 (remove n3) and 2, committed: n3 is a tombstone from then on.
    let request = AppendRequest { entry_count: 2, ..heartbeat(3, Position::ZERO, 2, 20) };
    follower.handle_message(2 * MS, N4, Message::AppendRequest(request));
    let without_n3 = follower.memberships().current().apply(Change::Remove { id: N3 }, WriteMode::Quorum).unwrap();
    follower.handle_membership_appended(2 * MS, 1, without_n3);
    for output in drain(&mut follower) {
        if let Output::AppendReceived { seq, .. } = output {
            follower.handle_persisted(2 * MS, seq);
        }
    }
    assert_eq!(follower.commit_index(), 2);
    follower.handle_message(3 * MS, N3, Message::AppendRequest(heartbeat(9, Position::new(3, 2), 2, 30)));
    assert_eq!(follower.counters().messages_from_unknown_nodes, 1);
    assert_eq!(follower.term(), 3, "a removed node changes nothing");
}

/// Rule: a node that learned a membership change committed keeps that across a restart
/// (the commit index itself is not durable). Found by 100,000 churn seeds (82236): the
/// last voter, restarted after removing the other (who was then shut down for good),
/// took the removal for a change in flight and waited for the removed node's vote for
/// ever.
#[test]
fn a_restarted_last_voter_knows_its_removal_of_the_other_committed() {
    let (mut leader, now) = elected_leader(WriteMode::Quorum);
    let removed_n3 = propose(&mut leader, now, Change::Remove { id: N3 }).unwrap();
    ack(&mut leader, now + MS, N2, removed_n3);
    let removed_n2 = propose(&mut leader, now + 2 * MS, Change::Remove { id: N2 }).unwrap();
    // The last voter commits alone once its own copy is durable (both quorums: {N1}).
    let outputs = drain(&mut leader);
    assert_eq!(leader.commit_index(), removed_n2, "{outputs:?}");
    let hard_state = leader.hard_state();
    assert_eq!(hard_state.membership_committed, removed_n2, "recorded in the hard state");

    // Restarted: its log and memberships as its host recovers them.
    let restart = |hard_state: HardState| {
        let mut memberships = leader.memberships().clone();
        memberships.compact_to(0);
        let recovered = Recovered { hard_state, log: leader.log().clone(), memberships: Some(memberships) };
        let mut config = super::tests::config(N1, WriteMode::Quorum);
        config.members = leader.memberships().current().members.clone();
        Replica::new(config, recovered, 100 * MS)
    };
    let mut restarted = restart(hard_state);
    assert!(!restarted.membership_change_pending());
    let later = 100 * MS + 10 * restarted.config().election_timeout_us;
    restarted.handle_timeout(later);
    for output in drain(&mut restarted) {
        if let Output::PersistHardState { seq, .. } = output {
            restarted.handle_persisted(later, seq);
        }
    }
    drain(&mut restarted);
    assert_eq!(restarted.role(), Role::Leader, "alone, it leads again");

    // Without the record (a build before it), it waits for N2 for ever.
    let mut forgetful = restart(HardState { membership_committed: 0, ..hard_state });
    assert!(forgetful.membership_change_pending());
    forgetful.handle_timeout(later);
    drain(&mut forgetful);
    assert_ne!(forgetful.role(), Role::Leader);

    // Rule: a voter's refusal names what it knows committed. N2, removed and knowing
    // it, refuses (its log is longer: simulator seeds 74854, 96904); a refusal naming
    // another entry at that index teaches nothing, one naming the change ends the wait.
    let term = hard_state.term;
    let refuse = |node: &mut Replica, safe: Position| {
        let response = VoteResponse { term, pre_vote: true, verdict: VoteVerdict::LogBehind, safe };
        node.handle_message(later, N2, Message::VoteResponse(response));
        for output in drain(node) {
            if let Output::PersistHardState { seq, .. } = output {
                node.handle_persisted(later, seq);
            }
        }
        drain(node);
    };
    refuse(&mut forgetful, Position::new(term + 1, removed_n2));
    assert!(forgetful.membership_change_pending(), "another history's entry at that index");
    forgetful.handle_timeout(later + 10 * forgetful.config().election_timeout_us);
    drain(&mut forgetful);
    refuse(&mut forgetful, Position::new(term, removed_n2));
    assert!(!forgetful.membership_change_pending());
    assert_eq!(forgetful.hard_state().membership_committed, removed_n2);
    assert_eq!(forgetful.role(), Role::Leader, "alone, it leads without N2's vote");
}

/// Rule: a leader being removed that cannot commit even the first entry of its term
/// within an election timeout steps down (churn seed 1129: the others knew its removal
/// committed and ignored it; it held their lease for ever and nobody else could lead).
#[test]
fn a_leader_being_removed_that_cannot_commit_steps_down() {
    let mut node = being_removed_n3();
    let now = 10 * node.config().election_timeout_us;
    node.handle_timeout(now);
    drain(&mut node);
    for pre_vote in [true, false] {
        grant(&mut node, now, N1, 2, pre_vote);
        grant(&mut node, now, N2, 2, pre_vote);
        persist_all(&mut node, now);
    }
    assert_eq!(node.role(), Role::Leader);
    // Both answer (the lease holds), but N2 never takes its no-op at index 3.
    let timeout = node.config().election_timeout_us;
    let mut at = now;
    while node.role() == Role::Leader && at < now + 3 * timeout {
        at += timeout / 10;
        ack(&mut node, at, N1, 3);
        ack(&mut node, at, N2, 2);
        node.handle_timeout(at);
        let outputs = drain(&mut node);
        let stalled = Event::SteppedDown { term: 2, reason: crate::output::StepDownReason::RemovalStalled };
        if node.role() != Role::Leader {
            assert!(outputs.contains(&Output::Event(stalled)), "{outputs:?}");
        }
    }
    assert_eq!(node.role(), Role::Follower);
    assert!(at >= now + timeout && at <= now + timeout + timeout / 5, "after about an election timeout");
}
