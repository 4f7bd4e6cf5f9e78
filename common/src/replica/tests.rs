//! Focused tests of the replica, written as conversations: feed one input, look at the
//! exact outputs. Each test opens with the rule it checks.

use super::*;
use crate::message::{AppendOutcome, AppendRequest, AppendResponse, ElectionCause, VoteRequest, VoteResponse};
use crate::output::{ProposeError, Refusal};
use crate::{Member, WriteMode};
use std::vec::Vec as StdVec;

const N1: NodeId = NodeId(1);
const N2: NodeId = NodeId(2);
const N3: NodeId = NodeId(3);
const MS: Micros = 1_000;

pub(super) fn config(id: NodeId, mode: WriteMode) -> Config {
    let mut config = Config::new(id, &[N1, N2, N3]).unwrap();
    config.mode = mode;
    config
}

pub(super) fn drain(replica: &mut Replica) -> StdVec<Output> {
    core::iter::from_fn(|| replica.poll_output()).collect()
}

fn sends(outputs: &[Output]) -> StdVec<(NodeId, Message)> {
    outputs
        .iter()
        .filter_map(|o| if let Output::Send { to, message } = o { Some((*to, *message)) } else { None })
        .collect()
}

fn last_persist_seq(outputs: &[Output]) -> Option<PersistSeq> {
    outputs.iter().rev().find_map(|o| match o {
        Output::PersistHardState { seq, .. }
        | Output::TruncateLog { seq, .. }
        | Output::AppendReceived { seq, .. }
        | Output::AppendNoop { seq, .. }
        | Output::InstallSnapshot { seq, .. } => Some(*seq),
        _ => None,
    })
}

pub(super) fn heartbeat(term: Term, prev: Position, commit: LogIndex, sent_at_us: Micros) -> AppendRequest {
    AppendRequest {
        term,
        prev,
        entries_term: term,
        entry_count: 0,
        leader_commit: commit,
        sent_at_us,
        paused: false,
        handoff_to: None,
    }
}

/// Makes `N1` leader of a 3-node cluster at term 1 with every write durable at once, and
/// both followers caught up. Returns the leader and the time.
pub(super) fn elected_leader(mode: WriteMode) -> (Replica, Micros) {
    let mut leader = Replica::new(config(N1, mode), Recovered::empty(), 0);
    let mut now = 2_000 * MS;
    leader.handle_timeout(now);
    drain(&mut leader);
    for voter in [N2, N3] {
        leader.handle_message(
            now,
            voter,
            Message::VoteResponse(VoteResponse {
                term: 1,
                pre_vote: true,
                verdict: VoteVerdict::Granted,
                safe: Position::ZERO,
            }),
        );
    }
    let outputs = drain(&mut leader);
    leader.handle_persisted(now, last_persist_seq(&outputs).unwrap());
    drain(&mut leader);
    leader.handle_message(
        now,
        N2,
        Message::VoteResponse(VoteResponse {
            term: 1,
            pre_vote: false,
            verdict: VoteVerdict::Granted,
            safe: Position::ZERO,
        }),
    );
    assert_eq!(leader.role(), Role::Leader);
    let outputs = drain(&mut leader);
    leader.handle_persisted(now, last_persist_seq(&outputs).unwrap());
    drain(&mut leader);
    now += MS;
    for follower in [N2, N3] {
        ack(&mut leader, now, follower, 1);
    }
    drain(&mut leader);
    (leader, now)
}

pub(super) fn ack(leader: &mut Replica, now: Micros, from: NodeId, match_index: LogIndex) {
    let response = AppendResponse {
        term: leader.term(),
        outcome: AppendOutcome::Accepted { match_index },
        last_index: match_index,
        echo_sent_at_us: now,
    };
    leader.handle_message(now, from, Message::AppendResponse(response));
}

/// Rule: a follower acknowledges entries only after storage reported them durable, but
/// answers a heartbeat at once, without waiting for fsync.
#[test]
fn follower_acknowledges_only_durable_entries() {
    let mut follower = Replica::new(config(N2, WriteMode::Quorum), Recovered::empty(), 0);
    let request = AppendRequest { entry_count: 2, ..heartbeat(1, Position::ZERO, 0, 10) };
    follower.handle_message(MS, N1, Message::AppendRequest(request));
    let outputs = drain(&mut follower);
    let seq = outputs
        .iter()
        .find_map(|o| match o {
            Output::AppendReceived { seq, first_index: 1, last_index: 2, term: 1 } => Some(*seq),
            _ => None,
        })
        .expect("asks to persist entries 1..=2");
    assert!(sends(&outputs).is_empty(), "no acknowledgement before durability: {outputs:?}");

    // A heartbeat meanwhile is answered at once, with what is durable: nothing yet.
    follower.handle_message(2 * MS, N1, Message::AppendRequest(heartbeat(1, Position::ZERO, 0, 20)));
    let answer = sends(&drain(&mut follower));
    assert!(matches!(
        answer.as_slice(),
        [(N1, Message::AppendResponse(AppendResponse { outcome: AppendOutcome::Accepted { match_index: 0 }, .. }))]
    ));

    follower.handle_persisted(3 * MS, seq);
    let answer = sends(&drain(&mut follower));
    assert!(matches!(
        answer.as_slice(),
        [(N1, Message::AppendResponse(AppendResponse { outcome: AppendOutcome::Accepted { match_index: 2 }, .. }))]
    ));
}

/// Rule: a vote is sent only once it is durable.
#[test]
fn vote_is_granted_only_after_it_is_durable() {
    let mut voter = Replica::new(config(N2, WriteMode::Quorum), Recovered::empty(), 0);
    let now = 2_000 * MS; // Past the start-up quiet period.
    let request =
        VoteRequest { term: 1, last: Position::ZERO, pre_vote: false, cause: ElectionCause::Timeout, attempt: 0 };
    voter.handle_message(now, N1, Message::VoteRequest(request));
    let outputs = drain(&mut voter);
    assert!(sends(&outputs).is_empty(), "{outputs:?}");
    let seq = outputs
        .iter()
        .find_map(|o| match o {
            Output::PersistHardState { seq, hard_state } if hard_state.voted_for == Some(N1) => Some(*seq),
            _ => None,
        })
        .expect("persists the vote");
    voter.handle_persisted(now, seq);
    let answer = sends(&drain(&mut voter));
    assert!(matches!(
        answer.as_slice(),
        [(N1, Message::VoteResponse(VoteResponse { term: 1, verdict: VoteVerdict::Granted, .. }))]
    ));
}

/// Rule: the leader acknowledges (commits) a write only once the write quorum holds it
/// durably, its own copy included.
#[test]
fn leader_commits_only_durable_quorum() {
    let (mut leader, now) = elected_leader(WriteMode::All);
    let proposal = leader.handle_propose(now).unwrap();
    let outputs = drain(&mut leader);
    assert!(!outputs.iter().any(|o| matches!(o, Output::Commit { .. })));
    ack(&mut leader, now, N2, proposal.position.index);
    ack(&mut leader, now, N3, proposal.position.index);
    let outputs = drain(&mut leader);
    assert!(!outputs.iter().any(|o| matches!(o, Output::Commit { .. })), "leader's own copy is not durable yet");
    leader.handle_persisted(now, proposal.seq);
    let outputs = drain(&mut leader);
    assert!(outputs.contains(&Output::Commit { commit_index: proposal.position.index }), "{outputs:?}");
}

/// Rule: an async leader acknowledges a write once its own copy is durable, never on a
/// follower's copy alone: should it crash before its fsync and that follower be removed
/// before rejoining, no node would ever report the write discarded (churn seed 70760).
#[test]
fn async_leader_acknowledges_on_its_own_durable_copy() {
    let (mut leader, now) = elected_leader(WriteMode::Async);
    let proposal = leader.handle_propose(now).unwrap();
    drain(&mut leader);
    ack(&mut leader, now, N2, proposal.position.index);
    let outputs = drain(&mut leader);
    assert!(!outputs.iter().any(|o| matches!(o, Output::Commit { .. })), "{outputs:?}");
    leader.handle_persisted(now, proposal.seq);
    let outputs = drain(&mut leader);
    assert!(outputs.contains(&Output::Commit { commit_index: proposal.position.index }), "{outputs:?}");
}

/// Rule: with too few in-sync replicas for the mode, a write fails fast, never hangs.
#[test]
fn write_fails_fast_without_enough_in_sync_replicas() {
    let (mut leader, now) = elected_leader(WriteMode::All);
    // N3 goes silent for longer than an election timeout; N2 keeps answering.
    let later = now + 1_200 * MS;
    for step in 1..=12 {
        let at = now + step * 100 * MS;
        ack(&mut leader, at, N2, 1);
        leader.handle_timeout(at);
        drain(&mut leader);
    }
    assert_eq!(leader.role(), Role::Leader, "N2's answers keep the lease");
    assert_eq!(leader.handle_propose(later), Err(ProposeError::NotEnoughInSync { have: 2, need: 3 }));
}

/// Rule: a leader that hears from too few voters for its lease steps down and stops
/// acknowledging (check-quorum, the fencing of an old leader).
#[test]
fn isolated_leader_steps_down_within_the_lease() {
    let (mut leader, now) = elected_leader(WriteMode::Quorum);
    let lease_end = leader.status().lease_until_us.unwrap();
    assert!(lease_end <= now + leader.config().election_timeout_us);
    leader.handle_timeout(lease_end);
    let outputs = drain(&mut leader);
    assert!(outputs.contains(&Output::Event(Event::SteppedDown { term: 1, reason: StepDownReason::LeaseExpired })));
    assert_eq!(leader.handle_propose(lease_end), Err(ProposeError::NotLeader { leader_hint: None }));
}

/// Rule: a follower truncates a divergent suffix, and a rejection carries a hint that
/// skips the whole conflicting term.
#[test]
fn conflicting_suffix_is_hinted_then_truncated() {
    let mut log = LogTerms::new(Position::ZERO);
    log.append(1, 2).unwrap();
    log.append(2, 3).unwrap(); // indices 3..=5 of term 2 that the new leader never had
    let recovered = Recovered {
        hard_state: HardState { term: 2, voted_for: None, paused: false, membership_committed: 0 },
        log,
        memberships: None,
    };
    let mut follower = Replica::new(config(N2, WriteMode::Quorum), recovered, 0);
    // The leader of term 3 probes at (3, 5): mismatch, hint = start of the term-2 run.
    follower.handle_message(MS, N1, Message::AppendRequest(heartbeat(3, Position::new(3, 5), 0, 1)));
    let answer = sends(&drain(&mut follower));
    assert!(matches!(
        answer.as_slice(),
        [(
            _,
            Message::AppendResponse(AppendResponse {
                outcome: AppendOutcome::Rejected { rejected_prev_index: 5, hint_index: 3 },
                ..
            })
        )]
    ));
    // Then sends entries 3..=4 of term 3 after (1, 2).
    let request = AppendRequest { entry_count: 2, ..heartbeat(3, Position::new(1, 2), 0, 2) };
    follower.handle_message(2 * MS, N1, Message::AppendRequest(request));
    let outputs = drain(&mut follower);
    assert!(outputs.iter().any(|o| matches!(o, Output::TruncateLog { from_index: 3, .. })));
    assert!(outputs.iter().any(|o| matches!(o, Output::AppendReceived { first_index: 3, last_index: 4, term: 3, .. })));
    assert!(!outputs.iter().any(|o| matches!(o, Output::Event(Event::Discarded { .. }))), "not async");
    assert_eq!(follower.log().last_position(), Position::new(3, 4));
}

/// Rule: in async mode every truncation of entries that may have been acknowledged is
/// reported, per term.
#[test]
fn async_truncation_reports_discarded() {
    let mut log = LogTerms::new(Position::ZERO);
    log.append(1, 2).unwrap();
    log.append(2, 3).unwrap();
    let recovered = Recovered {
        hard_state: HardState { term: 2, voted_for: Some(N2), paused: false, membership_committed: 0 },
        log,
        memberships: None,
    };
    let mut follower = Replica::new(config(N2, WriteMode::Async), recovered, 0);
    let request = AppendRequest { entry_count: 1, ..heartbeat(3, Position::new(1, 2), 0, 2) };
    follower.handle_message(MS, N1, Message::AppendRequest(request));
    let outputs = drain(&mut follower);
    assert!(outputs.contains(&Output::Event(Event::Discarded { term: 2, from_index: 3, to_index: 5 })), "{outputs:?}");
}

/// Rule: a priority-0 node never campaigns; a paused node neither campaigns nor votes in
/// a timeout election.
#[test]
fn priority_zero_and_pause_prevent_campaigns() {
    let mut config = config(N2, WriteMode::Quorum);
    config.members[1] = Member::voter(N2, 0);
    let mut never = Replica::new(config, Recovered::empty(), 0);
    assert_eq!(never.poll_timeout(), None, "no election timer at all");
    assert_eq!(never.handle_campaign(MS, false), Err(Refusal::PriorityZero));

    let paused = HardState { term: 1, voted_for: None, paused: true, membership_committed: 0 };
    let recovered = Recovered { hard_state: paused, log: LogTerms::new(Position::ZERO), memberships: None };
    let mut follower = Replica::new(super::tests::config(N3, WriteMode::Quorum), recovered, 0);
    follower.handle_timeout(10_000 * MS);
    assert_eq!(follower.role(), Role::Follower, "paused: no campaign");
    let request =
        VoteRequest { term: 2, last: Position::ZERO, pre_vote: true, cause: ElectionCause::Timeout, attempt: 0 };
    follower.handle_message(10_000 * MS, N1, Message::VoteRequest(request));
    let answer = sends(&drain(&mut follower));
    assert!(matches!(
        answer.as_slice(),
        [(_, Message::VoteResponse(VoteResponse { verdict: VoteVerdict::Paused, .. }))]
    ));
    // A manual failover still works; its dry run changes nothing.
    assert_eq!(follower.handle_campaign(10_000 * MS, true), Ok(()));
    assert_eq!(follower.role(), Role::Follower);
    assert_eq!(follower.handle_campaign(10_000 * MS, false), Ok(()));
    assert_eq!(follower.role(), Role::PreCandidate);
}

/// Rule: a switchover dry run names every reason a target is refused; the best target
/// is the most caught-up eligible one; a second switchover is refused while one runs.
#[test]
fn switchover_verdicts() {
    let (mut leader, now) = elected_leader(WriteMode::Quorum);
    assert_eq!(leader.handle_switchover(now, Some(N2), true), Ok(N2));
    let refused = leader.handle_switchover(now, Some(N1), true).unwrap_err();
    assert_eq!(refused.reasons.as_slice(), [Refusal::TargetIsLeader]);
    let refused = leader.handle_switchover(now, Some(NodeId(9)), true).unwrap_err();
    assert_eq!(refused.reasons.as_slice(), [Refusal::UnknownNode]);

    // 2,000 writes that only N2 acknowledges: N3 lags beyond max_lag_entries.
    let mut now = now;
    for _ in 0..2_000 {
        let proposal = leader.handle_propose(now).unwrap();
        leader.handle_persisted(now, proposal.seq);
        ack(&mut leader, now, N2, proposal.position.index);
        drain(&mut leader);
        now += 10;
    }
    let refused = leader.handle_switchover(now, Some(N3), true).unwrap_err();
    assert_eq!(refused.reasons.as_slice(), [Refusal::Lagging { behind_entries: 2_000 }]);
    assert_eq!(leader.handle_switchover(now, None, true), Ok(N2), "the best target");

    // Start one: writes are refused as retryable, and a second switchover is refused.
    assert!(leader.accepts_writes());
    assert_eq!(leader.handle_switchover(now, None, false), Ok(N2));
    let outputs = drain(&mut leader);
    assert!(
        sends(&outputs).iter().any(|(to, m)| *to == N2 && matches!(m, Message::TimeoutNow(_))),
        "caught up: hand over"
    );
    assert_eq!(leader.handle_propose(now), Err(ProposeError::TransferInProgress));
    assert!(!leader.accepts_writes(), "says what handle_propose does");
    let refused = leader.handle_switchover(now, Some(N3), true).unwrap_err();
    assert_eq!(refused.reasons.as_slice(), [Refusal::TransferInProgress { target: N2 }]);
}

/// Rule: a switchover that does not finish within an election timeout gives up and the
/// old leader resumes taking writes.
#[test]
fn switchover_times_out_and_leader_resumes() {
    let (mut leader, now) = elected_leader(WriteMode::Quorum);
    leader.handle_switchover(now, Some(N2), false).unwrap();
    drain(&mut leader);
    let deadline = now + leader.config().election_timeout_us;
    // Followers keep answering heartbeats, so the lease holds.
    for step in 1..=9 {
        let at = now + step * 100 * MS;
        ack(&mut leader, at, N2, 1);
        ack(&mut leader, at, N3, 1);
        leader.handle_timeout(at);
        drain(&mut leader);
    }
    leader.handle_timeout(deadline);
    let outputs = drain(&mut leader);
    assert!(outputs
        .iter()
        .any(|o| matches!(o, Output::Event(Event::TransferFinished { outcome: TransferOutcome::TimedOut, .. }))));
    assert_eq!(leader.role(), Role::Leader);
    assert!(leader.handle_propose(deadline).is_ok());
}

/// Rule: bad input is counted, never a panic: unknown senders, full tables.
#[test]
fn bad_input_is_counted_not_fatal() {
    let mut follower = Replica::new(config(N2, WriteMode::Quorum), Recovered::empty(), 0);
    follower.handle_message(MS, NodeId(0), Message::AppendRequest(heartbeat(9, Position::ZERO, 0, 0)));
    follower.handle_message(MS, N2, Message::AppendRequest(heartbeat(9, Position::ZERO, 0, 0)));
    assert_eq!(follower.counters().messages_from_unknown_nodes, 2);
    assert_eq!(follower.term(), 0, "a message from no node, or from itself, changes nothing");
    // A spurious timeout is harmless.
    follower.handle_timeout(2 * MS);
    assert_eq!(follower.role(), Role::Follower);
}

/// Rule: a single voter elects itself, and commits once its own copy is durable.
#[test]
fn single_node_cluster_leads_and_commits() {
    let config = Config::new(N1, &[N1]).unwrap();
    let mut solo = Replica::new(config, Recovered::empty(), 0);
    let at = solo.poll_timeout().unwrap();
    solo.handle_timeout(at);
    let outputs = drain(&mut solo);
    solo.handle_persisted(at, last_persist_seq(&outputs).unwrap());
    let outputs = drain(&mut solo);
    assert_eq!(solo.role(), Role::Leader);
    solo.handle_persisted(at, last_persist_seq(&outputs).unwrap());
    drain(&mut solo);
    let proposal = solo.handle_propose(at).unwrap();
    solo.handle_persisted(at, proposal.seq);
    assert!(drain(&mut solo).contains(&Output::Commit { commit_index: proposal.position.index }));
}

/// Rule: the replica's whole state is fixed-size; print it so a change that grows it is
/// seen (the issue asks for the number).
#[test]
fn replica_state_size() {
    std::println!("size_of::<Replica>() = {} bytes", Replica::STATE_BYTES);
    // The bound itself is a compile-time assertion next to `Replica`.
    assert!(
        core::mem::size_of_val(&Replica::new(config(N1, WriteMode::Quorum), Recovered::empty(), 0))
            <= REPLICA_BYTES_MAX
    );
}

/// Rule: a manual failover cannot unseat a live leader: a node that heard from one
/// within the minimum election timeout refuses, saying how recently.
#[test]
fn manual_failover_refused_while_leader_is_alive() {
    let mut follower = Replica::new(config(N2, WriteMode::Quorum), Recovered::empty(), 0);
    let now = 5_000 * MS;
    follower.handle_message(now, N1, Message::AppendRequest(heartbeat(1, Position::ZERO, 0, now)));
    drain(&mut follower);
    let refusal = follower.handle_campaign(now + 200 * MS, true).unwrap_err();
    assert_eq!(refusal, Refusal::LeaderReachable { last_contact_age_us: 200 * MS });
    assert_eq!(follower.handle_campaign(now + 2_000 * MS, true), Ok(()), "leader silent long enough");
}

/// Rule: with no leader to replicate a resume, an operator can resume a node alone; it
/// then campaigns on its timeout again.
#[test]
fn local_resume_clears_the_pause() {
    let paused = HardState { term: 1, voted_for: None, paused: true, membership_committed: 0 };
    let recovered = Recovered { hard_state: paused, log: LogTerms::new(Position::ZERO), memberships: None };
    let mut follower = Replica::new(config(N3, WriteMode::Quorum), recovered, 0);
    follower.handle_timeout(10_000 * MS);
    assert_eq!(follower.role(), Role::Follower);
    assert_eq!(follower.handle_local_resume(10_000 * MS), Ok(()));
    let outputs = drain(&mut follower);
    assert!(outputs.iter().any(|o| matches!(o, Output::PersistHardState { hard_state, .. } if !hard_state.paused)));
    let at = follower.poll_timeout().unwrap();
    follower.handle_timeout(at);
    assert_eq!(follower.role(), Role::PreCandidate, "campaigns again");
}

/// Rule: a follower that hears from a live leader refuses to resume alone (the leader's
/// next heartbeat would pause it again); once that leader is silent past the minimum
/// election timeout, it resumes alone.
#[test]
fn local_resume_refused_while_the_leader_is_alive() {
    let mut follower = Replica::new(config(N2, WriteMode::Quorum), Recovered::empty(), 0);
    let now = 5_000 * MS;
    let mut paused_heartbeat = heartbeat(1, Position::ZERO, 0, now);
    paused_heartbeat.paused = true;
    follower.handle_message(now, N1, Message::AppendRequest(paused_heartbeat));
    drain(&mut follower);
    assert!(follower.hard_state().paused);
    let refusal = follower.handle_local_resume(now + 100 * MS).unwrap_err();
    assert_eq!(refusal, Refusal::LeaderReachable { last_contact_age_us: 100 * MS });
    assert!(follower.hard_state().paused, "still paused");
    assert_eq!(follower.handle_local_resume(now + 2_000 * MS), Ok(()), "leader silent long enough");
    assert!(!follower.hard_state().paused);
}

/// Rule: a new leader's heartbeats to followers it has not heard from this term name its
/// last entry before the no-op, so a caught-up follower answers with that match at once
/// (no fsync) and counts as in sync after one round trip: writes resume without waiting
/// for the no-op to be durable on a follower, and no log the follower holds is resent.
#[test]
fn new_leader_learns_follower_match_from_first_heartbeat() {
    let mut log = LogTerms::new(Position::ZERO);
    log.append(1, 2_000).unwrap(); // More than `max_lag_entries` behind a match of 0.
    let recovered = Recovered {
        hard_state: HardState { term: 1, voted_for: None, paused: false, membership_committed: 0 },
        log,
        memberships: None,
    };
    let mut candidate = Replica::new(config(N2, WriteMode::Quorum), recovered, 0);
    let now = 10_000 * MS;
    candidate.handle_campaign(now, false).unwrap();
    let mut heartbeats = StdVec::new();
    for _ in 0..4 {
        let outputs = drain(&mut candidate);
        if let Some(seq) = last_persist_seq(&outputs) {
            candidate.handle_persisted(now, seq);
        }
        for (to, message) in sends(&outputs) {
            match message {
                Message::VoteRequest(request) if to == N1 => {
                    let verdict = VoteVerdict::Granted;
                    let response =
                        VoteResponse { term: request.term, pre_vote: request.pre_vote, verdict, safe: Position::ZERO };
                    candidate.handle_message(now, N1, Message::VoteResponse(response));
                }
                Message::AppendRequest(request) if request.entry_count == 0 => heartbeats.push((to, request)),
                _ => {}
            }
        }
    }
    assert_eq!(candidate.role(), Role::Leader);
    assert_eq!(candidate.log().last_index(), 2_001, "its no-op follows the old log");
    let to_n1 = heartbeats.iter().find(|(to, _)| *to == N1).expect("a heartbeat to N1").1;
    assert_eq!(to_n1.prev, Position::new(1, 2_000), "names the last entry before the no-op");
    // N1 holds it: it answers at once with match 2,000, and is in sync.
    assert!(!candidate.accepts_writes(), "no follower known in sync yet");
    let response = AppendResponse {
        term: candidate.term(),
        outcome: AppendOutcome::Accepted { match_index: 2_000 },
        last_index: 2_000,
        echo_sent_at_us: to_n1.sent_at_us,
    };
    candidate.handle_message(now + MS, N1, Message::AppendResponse(response));
    assert!(candidate.accepts_writes(), "in sync after one round trip");
    // The next batch to N1 starts after what it holds: only the no-op.
    let batches: StdVec<_> = sends(&drain(&mut candidate))
        .into_iter()
        .filter_map(|(to, m)| match m {
            Message::AppendRequest(request) if to == N1 && request.entry_count > 0 => Some(request),
            _ => None,
        })
        .collect();
    assert!(batches.iter().all(|r| r.prev.index >= 2_000), "nothing N1 holds is resent: {batches:?}");
}

/// Rule: a replica recovered with a log whose last term is above its hard state's term
/// (a data directory restored from a backup: a snapshot from another cluster's term, no
/// hard state) starts in that term with no vote, so its first election runs in a term
/// above every entry it holds.
#[test]
fn restored_snapshot_term_raises_the_current_term() {
    let log = LogTerms::new(Position { index: 500, term: 7 });
    let recovered = Recovered {
        hard_state: HardState { term: 0, voted_for: Some(N3), paused: true, membership_committed: 0 },
        log,
        memberships: None,
    };
    let mut candidate = Replica::new(config(N2, WriteMode::Quorum), recovered, 0);
    assert_eq!(candidate.hard_state(), HardState { term: 7, voted_for: None, paused: true, membership_committed: 0 });
    candidate.handle_campaign(10_000 * MS, false).unwrap();
    let terms: StdVec<Term> = drain(&mut candidate)
        .into_iter()
        .filter_map(|output| match output {
            Output::Send { message: Message::VoteRequest(request), .. } => Some(request.term),
            _ => None,
        })
        .collect();
    assert!(!terms.is_empty() && terms.iter().all(|term| *term == 8), "asks for votes in term 8: {terms:?}");
}
