//! The small value types every part of the core shares: node ids, terms, log positions
//! and the hard state that must be durable before the core relies on it.

use serde::{Deserialize, Serialize};

/// A term: a logical clock that increases with every election.
pub type Term = u64;

/// A position in the replicated log. Index 0 is the empty prefix: no entry has it.
pub type LogIndex = u64;

/// Time as the host passes it in: microseconds from an arbitrary, monotonic origin.
pub type Micros = u64;

/// The id of a node. Hosts map their human names ("n1") to these small numbers.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u8);

impl core::fmt::Display for NodeId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// The term and index of one log entry. Positions order by term first, then index, which
/// is exactly Raft's "at least as up to date" comparison.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    pub term: Term,
    pub index: LogIndex,
}

impl Position {
    /// The position before the first entry of an empty log.
    pub const ZERO: Position = Position { term: 0, index: 0 };

    pub const fn new(term: Term, index: LogIndex) -> Self {
        Position { term, index }
    }
}

/// What a node must keep on durable storage and reload after a crash, besides its log:
/// the current term, its vote in that term, and whether automatic failover is paused.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    pub term: Term,
    pub voted_for: Option<NodeId>,
    pub paused: bool,
    /// The index of the newest membership change this node knows committed (0: none):
    /// the commit index is not durable, and a restarted node that took a committed
    /// change for one in flight would need the previous voters to elect anyone, though
    /// they may be gone for good.
    pub membership_committed: LogIndex,
}
