//! Everything the core asks of its host, and the answers to its host's requests.
//!
//! Outputs come out of `Replica::poll_output` in the order the host must carry them
//! out. Persistence outputs carry a sequence number: the host performs them in order and
//! reports the highest one that is durable with `handle_persisted`, so one fsync can
//! cover many (group commit).

use crate::limits::REFUSALS_MAX;
use crate::message::{ElectionCause, Message, VoteVerdict};
use crate::types::{HardState, LogIndex, Micros, NodeId, Position, Term};

/// Numbers persistence requests; the host reports durability by the highest one done.
pub type PersistSeq = u64;

/// One thing for the host to do.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send `message` to `to`. For an append request with entries, the host reads
    /// entries `prev.index + 1 ..= prev.index + entry_count` from its log and ships them
    /// with the header.
    Send { to: NodeId, message: Message },
    /// Write the hard state durably.
    PersistHardState { seq: PersistSeq, hard_state: HardState },
    /// Drop every log entry at or after `from_index`.
    TruncateLog { seq: PersistSeq, from_index: LogIndex },
    /// Append entries `first_index..=last_index`, all of `term`, taken from the append
    /// request the host has just handed to the core.
    AppendReceived { seq: PersistSeq, first_index: LogIndex, last_index: LogIndex, term: Term },
    /// Append an empty entry at `position`: a new leader's first entry in its term.
    AppendNoop { seq: PersistSeq, position: Position },
    /// Install the snapshot the host has just received, at `snapshot`, replacing the
    /// state machine and every log entry it covers (the whole log if it does not match).
    InstallSnapshot { seq: PersistSeq, snapshot: Position },
    /// Entries up to and including `commit_index` are committed: apply them in order.
    Commit { commit_index: LogIndex },
    /// Stream the latest snapshot to `to`; when it is installed there, that node answers.
    SendSnapshot { to: NodeId, term: Term },
    /// Something an operator should see.
    Event(Event),
}

/// Why a leader stopped leading.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum StepDownReason {
    /// It saw a newer term.
    HigherTerm,
    /// Too few voters acknowledged it within the lease: it may be cut off. This is the
    /// fencing of an old leader: from here on it acknowledges nothing.
    LeaseExpired,
    /// It handed over to a switchover target.
    Switchover,
    /// The membership change that removed it committed (it led only to commit it).
    Removed,
    /// It is being removed and could not commit the first entry of its term within an
    /// election timeout: the other voters know its removal committed and ignore it.
    RemovalStalled,
}

/// How a switchover ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TransferOutcome {
    /// The target leads.
    Completed,
    /// The target did not take over within an election timeout; the old leader resumed.
    TimedOut,
    /// Someone else took over, or the leader stepped down for another reason.
    Aborted,
}

/// Events for operators; the host logs them, counts them and shows them.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Event {
    ElectionStarted {
        term: Term,
        cause: ElectionCause,
        pre_vote: bool,
    },
    /// An election round ended without a win; `verdict` is the most common refusal
    /// (`None`: nobody answered in time).
    ElectionFailed {
        term: Term,
        cause: ElectionCause,
        verdict: Option<VoteVerdict>,
    },
    BecameLeader {
        term: Term,
        cause: ElectionCause,
    },
    BecameFollower {
        term: Term,
        leader: Option<NodeId>,
    },
    SteppedDown {
        term: Term,
        reason: StepDownReason,
    },
    InSyncChanged {
        node: NodeId,
        in_sync: bool,
    },
    /// This node dropped entries `from_index..=to_index` of `term` that may have been
    /// acknowledged (async mode only). Nothing is lost silently.
    Discarded {
        term: Term,
        from_index: LogIndex,
        to_index: LogIndex,
    },
    TransferStarted {
        term: Term,
        target: NodeId,
    },
    TransferFinished {
        term: Term,
        target: NodeId,
        outcome: TransferOutcome,
    },
    PausedChanged {
        paused: bool,
    },
    /// A follower reported that it lost entries it had acknowledged (its disk lost data).
    PeerRegressed {
        node: NodeId,
        match_index: LogIndex,
    },
}

/// Why a write was not accepted.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ProposeError {
    /// Send it to the leader, if one is known.
    NotLeader { leader_hint: Option<NodeId> },
    /// A switchover is moving leadership; retry shortly.
    TransferInProgress,
    /// Too few in-sync replicas for the write mode: it could not be acknowledged.
    NotEnoughInSync { have: u8, need: u8 },
    /// The term table is full until the host compacts the log.
    LogFull,
}

impl ProposeError {
    /// Whether the same write may succeed if retried shortly (here or at the leader).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, ProposeError::LogFull)
    }
}

/// A write the core accepted: the host stores its payload at `position` and reports it
/// durable with `seq`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    pub position: Position,
    pub seq: PersistSeq,
}

/// Why a switchover target, or a manual failover, was refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    NotLeader {
        leader_hint: Option<NodeId>,
    },
    TransferInProgress {
        target: NodeId,
    },
    UnknownNode,
    TargetIsLeader,
    NotAVoter,
    PriorityZero,
    /// Not heard from within the election timeout (`None`: never heard from).
    Unreachable {
        last_contact_age_us: Option<Micros>,
    },
    Lagging {
        behind_entries: u64,
    },
    NoEligibleTarget,
    /// Manual failover: this node heard from a live leader (or restarted) within the
    /// minimum election timeout; campaigning would break that leader's lease. Use a
    /// switchover to move a live leader.
    LeaderReachable {
        last_contact_age_us: Micros,
    },
    /// Membership: the leader has not yet committed an entry of its own term (it was
    /// just elected); retry shortly.
    TermNotCommitted,
    /// Membership: the change at `index` is not committed yet; one at a time.
    ChangeInFlight {
        index: LogIndex,
    },
    /// Membership: the change does not fit the current membership.
    Change(crate::membership::ChangeError),
    /// Membership: the leader cannot remove itself; move leadership first.
    RemovesLeader,
    /// Membership: after the change only `live` voters could be reached, and writes need
    /// `need`.
    NoLiveQuorum {
        live: u8,
        need: u8,
    },
    /// The term table is full until the log is compacted.
    LogFull,
}

/// The verdict of a switchover check: the target it would use, or every reason not to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub target: Option<NodeId>,
    pub reasons: heapless::Vec<Refusal, REFUSALS_MAX>,
}

impl Refused {
    pub fn one(target: Option<NodeId>, reason: Refusal) -> Self {
        let mut reasons = heapless::Vec::new();
        let _ = reasons.push(reason);
        Refused { target, reasons }
    }
}

/// Why a linearizable read cannot be served here right now.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ReadError {
    NotLeader {
        leader_hint: Option<NodeId>,
    },
    /// The leader has not yet committed an entry of its term, or its lease lapsed.
    NotReady,
}

/// Counters of refused or odd input; operating errors are counted, never panics.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub messages_from_unknown_nodes: u64,
    pub stale_messages: u64,
    pub appends_rejected: u64,
    pub appends_refused_log_full: u64,
    pub outputs_dropped: u64,
    pub elections_started: u64,
    pub leader_terms: u64,
    /// Uncommitted memberships a follower had to forget (more in its log than it keeps).
    pub memberships_forgotten: u64,
}
