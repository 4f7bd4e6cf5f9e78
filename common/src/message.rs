//! The messages replicas exchange, and their postcard encoding.
//!
//! These are headers only: an append request names the entries it carries (how many,
//! and their one shared term) while the host ships their payloads beside it, read from
//! its own log. Every enum has explicit discriminants that equal serde's variant index,
//! which is what postcard puts on the wire. They are append-only: a new variant gets the
//! next number and an old one is never reused. The golden-bytes tests below freeze the
//! format; a change that breaks them breaks compatibility between nodes.

use crate::limits::{BATCH_ENTRIES_MAX, MESSAGE_BYTES_MAX};
use crate::types::{LogIndex, Micros, NodeId, Position, Term};
use serde::{Deserialize, Serialize};

/// Why an election started.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum ElectionCause {
    /// The follower heard nothing from a leader for its election timeout.
    Timeout = 0,
    /// The leader handed leadership over in a planned switchover.
    Switchover = 1,
    /// An operator told this node to campaign now.
    Manual = 2,
}

/// A leader's append request: entries `prev.index + 1 ..= prev.index + entry_count`, all
/// of term `entries_term`. With no entries it is a heartbeat.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendRequest {
    pub term: Term,
    pub prev: Position,
    pub entries_term: Term,
    pub entry_count: u16,
    pub leader_commit: LogIndex,
    /// The leader's clock when it sent this; echoed back, it dates the leader's lease.
    pub sent_at_us: Micros,
    /// Whether automatic failover is paused, as the leader knows it.
    pub paused: bool,
    /// Set once the leader has told this node to take over in a switchover.
    pub handoff_to: Option<NodeId>,
}

impl AppendRequest {
    pub fn is_heartbeat(&self) -> bool {
        self.entry_count == 0
    }

    pub fn last_index(&self) -> LogIndex {
        self.prev.index + u64::from(self.entry_count)
    }
}

/// A follower's answer to an append request.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum AppendOutcome {
    /// The follower's log matches the leader's up to `match_index`, and that much is
    /// durable.
    Accepted { match_index: LogIndex } = 0,
    /// The previous position did not match. `hint_index` is where the leader should try
    /// next: the start of the follower's conflicting term, or its last index plus one.
    Rejected { rejected_prev_index: LogIndex, hint_index: LogIndex } = 1,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendResponse {
    pub term: Term,
    pub outcome: AppendOutcome,
    /// The follower's last log index, durable or not, for lag reporting.
    pub last_index: LogIndex,
    /// The `sent_at_us` of the request this answers.
    pub echo_sent_at_us: Micros,
}

/// A request for a vote, or with `pre_vote` for a vote that changes nothing yet.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteRequest {
    /// The term the candidate will use (for a pre-vote, its current term plus one).
    pub term: Term,
    pub last: Position,
    pub pre_vote: bool,
    pub cause: ElectionCause,
    /// How many times in a row this candidate has campaigned without winning.
    pub attempt: u8,
}

/// Why a vote was granted or refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum VoteVerdict {
    Granted = 0,
    /// The voter is in a newer term.
    StaleTerm = 1,
    /// The voter's log is more up to date than the candidate's.
    LogBehind = 2,
    /// The voter already voted for someone else in this term.
    AlreadyVoted = 3,
    /// The voter heard from a live leader within the minimum election timeout.
    LeaderAlive = 4,
    /// Automatic failover is paused and this election was started by a timeout.
    Paused = 5,
    /// The voter is as up to date and has a higher priority; it will campaign itself.
    PreferredPeer = 6,
    /// The candidate is not an eligible voter in the voter's config.
    NotEligible = 7,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteResponse {
    pub term: Term,
    pub pre_vote: bool,
    pub verdict: VoteVerdict,
    /// The newest entry the voter knows to be committed for good (its safe index and
    /// that entry's term). A candidate holding the same entry learns it committed: a
    /// voter removed by a change it knows committed, whose log is longer, would
    /// otherwise refuse for ever a candidate that still counts it as a previous voter.
    pub safe: Position,
}

/// The leader's word to a switchover target: campaign now.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutNow {
    pub term: Term,
}

/// Everything replicas say to each other.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Message {
    AppendRequest(AppendRequest) = 0,
    AppendResponse(AppendResponse) = 1,
    VoteRequest(VoteRequest) = 2,
    VoteResponse(VoteResponse) = 3,
    TimeoutNow(TimeoutNow) = 4,
}

impl Message {
    /// The term the sender was in.
    pub fn term(&self) -> Term {
        match self {
            Message::AppendRequest(m) => m.term,
            Message::AppendResponse(m) => m.term,
            Message::VoteRequest(m) => m.term,
            Message::VoteResponse(m) => m.term,
            Message::TimeoutNow(m) => m.term,
        }
    }
}

/// Why bytes did not become a message, or a message did not become bytes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    /// postcard could not decode the bytes.
    Malformed,
    /// The bytes decoded, with bytes left over.
    TrailingBytes,
    /// A field is out of range (for example more entries than a batch holds).
    OutOfRange,
    /// The output buffer is too small.
    BufferTooSmall,
}

impl Message {
    /// Encodes into `buffer`, returning the used prefix.
    pub fn encode<'b>(&self, buffer: &'b mut [u8]) -> Result<&'b mut [u8], WireError> {
        postcard::to_slice(self, buffer).map_err(|_| WireError::BufferTooSmall)
    }

    /// Encodes into a fixed buffer of [`MESSAGE_BYTES_MAX`].
    pub fn to_bytes(&self) -> heapless::Vec<u8, MESSAGE_BYTES_MAX> {
        let mut buffer = [0u8; MESSAGE_BYTES_MAX];
        let used = self.encode(&mut buffer).expect("MESSAGE_BYTES_MAX fits every message").len();
        heapless::Vec::from_slice(&buffer[..used]).expect("same size")
    }

    /// Decodes exactly one message from `bytes`. Never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
        let (message, rest) = Self::decode_prefix(bytes)?;
        if !rest.is_empty() {
            return Err(WireError::TrailingBytes);
        }
        Ok(message)
    }

    /// Decodes one message from the front of `bytes`, returning the rest.
    pub fn decode_prefix(bytes: &[u8]) -> Result<(Message, &[u8]), WireError> {
        let (message, rest): (Message, &[u8]) = postcard::take_from_bytes(bytes).map_err(|_| WireError::Malformed)?;
        message.validate()?;
        Ok((message, rest))
    }

    fn validate(&self) -> Result<(), WireError> {
        if let Message::AppendRequest(request) = self {
            let count_ok = usize::from(request.entry_count) <= BATCH_ENTRIES_MAX;
            let terms_ok = request.entries_term <= request.term && request.prev.term <= request.term;
            let index_ok = request.prev.index.checked_add(u64::from(request.entry_count)).is_some();
            if !(count_ok && terms_ok && index_ok) {
                return Err(WireError::OutOfRange);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_append() -> Message {
        Message::AppendRequest(AppendRequest {
            term: 3,
            prev: Position::new(2, 10),
            entries_term: 3,
            entry_count: 2,
            leader_commit: 9,
            sent_at_us: 300,
            paused: false,
            handoff_to: None,
        })
    }

    /// Goal: freeze the wire format. If one of these fails, nodes of the old and new
    /// versions can no longer talk; add a variant instead of changing one.
    #[test]
    fn golden_bytes() {
        assert_eq!(sample_append().to_bytes().as_slice(), [0, 3, 2, 10, 3, 2, 9, 172, 2, 0, 0]);
        let response = Message::AppendResponse(AppendResponse {
            term: 3,
            outcome: AppendOutcome::Rejected { rejected_prev_index: 10, hint_index: 7 },
            last_index: 8,
            echo_sent_at_us: 1,
        });
        assert_eq!(response.to_bytes().as_slice(), [1, 3, 1, 10, 7, 8, 1]);
        let vote = Message::VoteRequest(VoteRequest {
            term: 4,
            last: Position::new(3, 12),
            pre_vote: true,
            cause: ElectionCause::Manual,
            attempt: 1,
        });
        assert_eq!(vote.to_bytes().as_slice(), [2, 4, 3, 12, 1, 2, 1]);
        let answer = Message::VoteResponse(VoteResponse {
            term: 4,
            pre_vote: false,
            verdict: VoteVerdict::PreferredPeer,
            safe: Position::new(2, 11),
        });
        assert_eq!(answer.to_bytes().as_slice(), [3, 4, 0, 6, 2, 11]);
        assert_eq!(Message::TimeoutNow(TimeoutNow { term: 9 }).to_bytes().as_slice(), [4, 9]);
    }

    /// Goal: the explicit discriminants are the ones postcard writes (serde's variant
    /// index), so the numbers in the source are the numbers on the wire.
    #[test]
    fn discriminants_are_wire_tags() {
        let verdicts = [
            VoteVerdict::Granted,
            VoteVerdict::StaleTerm,
            VoteVerdict::LogBehind,
            VoteVerdict::AlreadyVoted,
            VoteVerdict::LeaderAlive,
            VoteVerdict::Paused,
            VoteVerdict::PreferredPeer,
            VoteVerdict::NotEligible,
        ];
        for verdict in verdicts {
            let mut buffer = [0u8; 4];
            let bytes = postcard::to_slice(&verdict, &mut buffer).unwrap();
            assert_eq!(bytes, [verdict as u8]);
        }
        for cause in [ElectionCause::Timeout, ElectionCause::Switchover, ElectionCause::Manual] {
            let mut buffer = [0u8; 4];
            assert_eq!(postcard::to_slice(&cause, &mut buffer).unwrap(), [cause as u8]);
        }
    }

    /// Goal: round trips, and refusals of trailing bytes and out-of-range batches.
    #[test]
    fn decode_checks() {
        let bytes = sample_append().to_bytes();
        assert_eq!(Message::decode(&bytes), Ok(sample_append()));
        let mut longer = bytes.clone();
        longer.push(0).unwrap();
        assert_eq!(Message::decode(&longer), Err(WireError::TrailingBytes));
        let mut too_many = [0, 3, 2, 10, 3, 0xff, 0x7f, 9, 1, 0, 0];
        assert_eq!(Message::decode(&too_many), Err(WireError::OutOfRange));
        too_many[0] = 200;
        assert_eq!(Message::decode(&too_many), Err(WireError::Malformed));
        assert_eq!(Message::decode(&[]), Err(WireError::Malformed));
    }

    proptest::proptest! {
        /// Goal: decoding arbitrary bytes never panics.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = Message::decode(&bytes);
        }

        /// Goal: every decodable message re-encodes to the same bytes it came from.
        #[test]
        fn decoded_messages_reencode(bytes in proptest::collection::vec(0u8..8, 1..40)) {
            if let Ok(message) = Message::decode(&bytes) {
                let again = message.to_bytes();
                proptest::prop_assert_eq!(Message::decode(&again), Ok(message));
            }
        }
    }
}
