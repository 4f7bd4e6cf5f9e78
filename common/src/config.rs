//! A replica's configuration: who is in the cluster, the write mode and the timers.
//!
//! The config is plain data checked once by [`Config::validate`]; the core never reads
//! a file or an environment variable.

use crate::limits::{ELECTION_WINDOW_DIVISOR, LEASE_DRIFT_DIVISOR, NODES_MAX, PRIORITY_MAX};
use crate::mode::{ModeError, WriteMode};
use crate::types::{Micros, NodeId};
use heapless::Vec;
use serde::{Deserialize, Serialize};

/// One member of the cluster.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: NodeId,
    /// 0 means never leader; higher wins an election tie.
    pub priority: u8,
    /// Voters count towards quorums. Non-voters replicate and serve reads only.
    pub voter: bool,
    /// A witness stores log positions and no data: it votes (as a voter) and never
    /// leads (its priority is always 0). The leader sends it entries no further than a
    /// healthy data voter holds, so that while the data nodes are healthy every
    /// acknowledged write is on two of them (docs/replication.md, "Witness").
    pub witness: bool,
}

impl Member {
    pub const fn voter(id: NodeId, priority: u8) -> Self {
        Member { id, priority, voter: true, witness: false }
    }

    /// A member that replicates and counts toward nothing, as every new member starts.
    pub const fn learner(id: NodeId, priority: u8) -> Self {
        Member { id, priority, voter: false, witness: false }
    }

    /// Whether this member may ever lead.
    pub fn eligible(&self) -> bool {
        self.voter && self.priority > 0
    }
}

/// Everything a replica needs to know before it starts.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node.
    pub id: NodeId,
    /// Every member, this node included, in any order: the membership the cluster was
    /// formed with. Once running, the replica keeps this as the membership in effect
    /// (the newest in its log, see [`crate::membership`]).
    pub members: Vec<Member, NODES_MAX>,
    pub mode: WriteMode,
    /// How often the leader sends heartbeats.
    pub heartbeat_interval_us: Micros,
    /// A follower that hears nothing from a leader for this long campaigns. The actual
    /// timeout is randomised in `[T - T/8, T)`, earlier for higher priority.
    pub election_timeout_us: Micros,
    /// A follower further behind than this leaves the in-sync set.
    pub max_lag_entries: u64,
    /// How long a leader waits for a snapshot transfer before it offers it again.
    pub snapshot_timeout_us: Micros,
    /// Seeds the election jitter; different nodes should get different seeds.
    pub seed: u64,
}

/// Why a config was refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// This node's id is not among the members.
    SelfNotMember,
    /// Two members share an id.
    DuplicateMember(NodeId),
    /// A priority above [`PRIORITY_MAX`].
    PriorityTooHigh(NodeId),
    /// No voter at all.
    NoVoters,
    /// The election timeout must be at least 4 heartbeat intervals, so that one lost
    /// heartbeat never starts an election.
    ElectionTimeoutTooShort,
    /// The heartbeat interval must be positive.
    HeartbeatIntervalZero,
    /// The write mode does not fit the number of voters.
    Mode(ModeError),
}

impl Config {
    /// A config with the usual defaults: quorum mode, heartbeat 100 ms, election timeout
    /// 1000 ms, every member a voter with priority 1.
    pub fn new(id: NodeId, member_ids: &[NodeId]) -> Result<Config, ConfigError> {
        let mut members = Vec::new();
        for &member in member_ids {
            members.push(Member::voter(member, 1)).map_err(|_| ConfigError::DuplicateMember(member))?;
        }
        let config = Config {
            id,
            members,
            mode: WriteMode::Quorum,
            heartbeat_interval_us: 100_000,
            election_timeout_us: 1_000_000,
            max_lag_entries: 1_000,
            snapshot_timeout_us: 30_000_000,
            seed: u64::from(id.0).wrapping_mul(0x2545_F491_4F6C_DD1D),
        };
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.members.iter().any(|m| m.id == self.id) {
            return Err(ConfigError::SelfNotMember);
        }
        for (position, member) in self.members.iter().enumerate() {
            if self.members[..position].iter().any(|m| m.id == member.id) {
                return Err(ConfigError::DuplicateMember(member.id));
            }
            if member.priority > PRIORITY_MAX {
                return Err(ConfigError::PriorityTooHigh(member.id));
            }
        }
        if self.voters() == 0 {
            return Err(ConfigError::NoVoters);
        }
        if self.heartbeat_interval_us == 0 {
            return Err(ConfigError::HeartbeatIntervalZero);
        }
        if self.election_timeout_us < 4 * self.heartbeat_interval_us {
            return Err(ConfigError::ElectionTimeoutTooShort);
        }
        self.mode.validate(self.voters()).map_err(ConfigError::Mode)
    }

    pub fn voters(&self) -> u8 {
        self.members.iter().filter(|m| m.voter).count() as u8
    }

    pub fn member(&self, id: NodeId) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// This node as the current membership has it: a node that was removed (or is not
    /// yet added) is a learner with priority 0, which never campaigns and counts for
    /// nothing.
    pub fn me(&self) -> Member {
        self.member(self.id).copied().unwrap_or(Member::learner(self.id, 0))
    }

    /// The shortest randomised election timeout. No follower campaigns, and no voter
    /// grants a vote, within this long of hearing from a live leader.
    pub fn election_timeout_min_us(&self) -> Micros {
        self.election_timeout_us - self.election_timeout_us / ELECTION_WINDOW_DIVISOR
    }

    /// How long a quorum's acknowledgement of a heartbeat keeps the leader's lease: the
    /// minimum election timeout less the clock-drift margin.
    pub fn lease_duration_us(&self) -> Micros {
        let minimum = self.election_timeout_min_us();
        minimum - minimum / LEASE_DRIFT_DIVISOR
    }

    /// This node's slot in the election order: 0 for the highest priority (ties broken
    /// by the lower id). Earlier slots campaign first, so the preferred node usually wins
    /// without a split vote. The leader that just went silent is left out of the
    /// ranking: it is the one not answering.
    pub fn election_slot(&self, silent_leader: Option<NodeId>) -> u64 {
        let me = self.me();
        self.members
            .iter()
            .filter(|m| m.eligible() && m.id != me.id && Some(m.id) != silent_leader)
            .filter(|m| m.priority > me.priority || (m.priority == me.priority && m.id < me.id))
            .count() as u64
    }
}
