//! Write modes and the quorum arithmetic that makes each mode's promise hold.
//!
//! Among `N` voters, a mode fixes the write quorum `W`: how many durable copies, the
//! leader's included, make a write acknowledged. The election quorum `E` is then derived
//! so that every election quorum intersects every write quorum (`E + W > N`) and any two
//! election quorums intersect (`2E > N`), as in Flexible Paxos. Because of the first
//! property, any new leader has received a vote from a node that holds every
//! acknowledged write, and only a candidate at least as up to date as each voter gets
//! its vote, so acknowledged writes survive every failover. `async` is the exception: it
//! acknowledges on the leader's own copy and uses a plain majority to elect, so a
//! failover may discard acknowledged writes, which the core reports as `Discarded`.
//!
//! | mode      | W            | E                        |
//! |-----------|--------------|--------------------------|
//! | `async`   | 1            | majority                 |
//! | `sync:W`  | W (2..=N)    | max(majority, N - W + 1) |
//! | `quorum`  | majority     | majority                 |
//! | `all`     | N            | majority                 |
//!
//! The leader lease needs `N - E + 1` voters (itself included): once that many have
//! promised not to vote for anyone else for a while, no other election quorum can form.

use serde::{Deserialize, Serialize};

/// How many copies make a write acknowledged. Set per cluster.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum WriteMode {
    /// Acknowledged when durable on the leader. A failover may discard acknowledged
    /// writes; every discarded write is reported.
    Async,
    /// Acknowledged when durable on this many voters, the leader included. `Sync(2)` is
    /// semi-synchronous replication.
    Sync(u8),
    /// Acknowledged when durable on a majority of voters. The default.
    #[default]
    Quorum,
    /// Acknowledged when durable on every voter.
    All,
}

/// Why a write mode does not fit a cluster.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ModeError {
    /// `sync:W` needs `2 <= W <= voters`.
    SyncCopiesOutOfRange { copies: u8, voters: u8 },
}

impl WriteMode {
    /// Parses `async`, `quorum`, `all` or `sync:W`.
    pub fn parse(text: &str) -> Option<WriteMode> {
        match text {
            "async" => Some(WriteMode::Async),
            "quorum" => Some(WriteMode::Quorum),
            "all" => Some(WriteMode::All),
            "semi-sync" | "semisync" => Some(WriteMode::Sync(2)),
            _ => {
                let copies = text.strip_prefix("sync:")?.parse::<u8>().ok()?;
                Some(WriteMode::Sync(copies))
            }
        }
    }

    /// Checks the mode against the number of voters.
    pub fn validate(self, voters: u8) -> Result<(), ModeError> {
        match self {
            WriteMode::Sync(copies) if copies < 2 || copies > voters => {
                Err(ModeError::SyncCopiesOutOfRange { copies, voters })
            }
            _ => Ok(()),
        }
    }

    /// Whether an acknowledged write survives every failover in this mode.
    pub fn survives_failover(self) -> bool {
        !matches!(self, WriteMode::Async)
    }

    /// `W`: durable copies, the leader's included, that acknowledge a write.
    pub fn write_quorum(self, voters: u8) -> u8 {
        debug_assert!(voters >= 1);
        match self {
            WriteMode::Async => 1,
            WriteMode::Sync(copies) => copies.clamp(1, voters),
            WriteMode::Quorum => majority(voters),
            WriteMode::All => voters,
        }
    }

    /// `E`: votes, the candidate's own included, that win an election.
    pub fn election_quorum(self, voters: u8) -> u8 {
        let majority = majority(voters);
        match self {
            WriteMode::Async => majority,
            _ => majority.max(voters - self.write_quorum(voters) + 1),
        }
    }

    /// Copies of a write among `voters` such that every election quorum there holds
    /// one: `voters - E + 1`, at most the write quorum.
    pub fn election_overlap(self, voters: u8) -> u8 {
        voters - self.election_quorum(voters) + 1
    }

    /// Voters, the leader included, whose recent acknowledgements keep the leader's
    /// lease: `N - E + 1`. Fewer than that can no longer stop another election.
    pub fn lease_quorum(self, voters: u8) -> u8 {
        voters - self.election_quorum(voters) + 1
    }

    /// How many node losses an acknowledged write survives: `W - 1` (0 for async).
    pub fn node_losses_survived(self, voters: u8) -> u8 {
        match self {
            WriteMode::Async => 0,
            _ => self.write_quorum(voters) - 1,
        }
    }
}

impl core::fmt::Display for WriteMode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WriteMode::Async => write!(f, "async"),
            WriteMode::Sync(copies) => write!(f, "sync:{copies}"),
            WriteMode::Quorum => write!(f, "quorum"),
            WriteMode::All => write!(f, "all"),
        }
    }
}

/// More than half of `voters`.
pub const fn majority(voters: u8) -> u8 {
    voters / 2 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODES: [WriteMode; 6] = [
        WriteMode::Async,
        WriteMode::Sync(2),
        WriteMode::Sync(3),
        WriteMode::Sync(4),
        WriteMode::Quorum,
        WriteMode::All,
    ];

    /// Goal: for every non-async mode and cluster size, election quorums intersect write
    /// quorums and each other; that intersection is the whole durability argument.
    #[test]
    fn quorums_intersect_for_every_size() {
        for voters in 1..=crate::limits::NODES_MAX as u8 {
            for mode in MODES {
                if mode.validate(voters).is_err() {
                    continue;
                }
                let write = mode.write_quorum(voters);
                let election = mode.election_quorum(voters);
                assert!(2 * election > voters, "{mode} with {voters}: elections may split");
                if mode.survives_failover() {
                    assert!(election + write > voters, "{mode} with {voters}: no intersection");
                }
                let lease = mode.lease_quorum(voters);
                assert!(lease >= 1 && lease + election > voters);
            }
        }
    }

    /// Goal: the table in the module docs is what the code computes.
    #[test]
    fn five_voter_table() {
        assert_eq!((WriteMode::Async.write_quorum(5), WriteMode::Async.election_quorum(5)), (1, 3));
        assert_eq!((WriteMode::Sync(2).write_quorum(5), WriteMode::Sync(2).election_quorum(5)), (2, 4));
        assert_eq!((WriteMode::Quorum.write_quorum(5), WriteMode::Quorum.election_quorum(5)), (3, 3));
        assert_eq!((WriteMode::All.write_quorum(5), WriteMode::All.election_quorum(5)), (5, 3));
    }

    /// Goal: parsing accepts the documented spellings and refuses nonsense.
    #[test]
    fn parse_modes() {
        assert_eq!(WriteMode::parse("sync:3"), Some(WriteMode::Sync(3)));
        assert_eq!(WriteMode::parse("quorum"), Some(WriteMode::Quorum));
        assert_eq!(WriteMode::parse("sync:"), None);
        assert_eq!(WriteMode::parse("fast"), None);
        assert!(WriteMode::Sync(1).validate(3).is_err());
        assert!(WriteMode::Sync(4).validate(3).is_err());
    }
}
